"""Optional LLM-judge answer extraction through an OpenAI-compatible chat-completions endpoint.

Off by default. MathVista's official scoring asks GPT to extract the answer from a free-form
response (evaluation/extract_answer.py) whenever the response is not already a choice or a
bare number; with a judge configured, the ``mathvista``/``lmms-eval`` rules ask it at that
point and ``strict`` asks it before its own rules (falling back to them when the judge
returns nothing). Without one, our rule-based extractor stands in (harness/math_answers.py).

Configure it with :func:`configure` (a :class:`JudgeConfig`) or the environment:
``HARNESS_MATH_JUDGE_URL`` (base URL, e.g. ``http://localhost:8000/v1``),
``HARNESS_MATH_JUDGE_MODEL`` and optionally ``HARNESS_MATH_JUDGE_KEY_ENV`` (the *name* of the
variable holding the API key; the key itself is never recorded). :func:`settings` is what a
run records in its config. Only ``urllib`` is used; the judge's reply is plain text, never
executed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from harness.math_answers import MULTI_CHOICE, MathProblem

ENV_URL, ENV_MODEL, ENV_KEY = "HARNESS_MATH_JUDGE_URL", "HARNESS_MATH_JUDGE_MODEL", "HARNESS_MATH_JUDGE_KEY_ENV"
PROMPT_VERSION = "harness-math-extract-v1"

# Our wording of the task MathVista's demo prompt sets (evaluation/prompts/ext_ans.py): a few
# worked extractions, one per answer type, then the query and the response.
_INSTRUCTIONS = """Read the question and the model response, then write only the final answer the response gives.
Write an option letter for multiple-choice questions, a number for numeric questions (no units), and a Python list
such as [1, 2] for list questions. If the response gives no answer, write nothing.

Question: How many marbles are left? Answer with an integer.
Model response: After taking two away, 7 marbles remain.
Extracted answer: 7

Question: What is the ratio of red to blue bars? Answer with a number with two decimal places.
Model response: Red is 3 and blue is 8, so the ratio is 0.375, about 0.38.
Extracted answer: 0.38

Question: In which two years was the value highest? Answer with a Python list.
Model response: The peak is shared by 2011 and 2013.
Extracted answer: [2011, 2013]

Question: Which angle is largest?
Choices:
(A) 30°
(B) 60°
(C) 90°
Model response: The right angle, so (C) 90°.
Extracted answer: C"""


@dataclass(frozen=True)
class JudgeConfig:
    url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 60.0
    max_tokens: int = 256

    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"


_CONFIG: JudgeConfig | None = None
_CACHE: dict[tuple, str | None] = {}


def configure(config: JudgeConfig | None) -> None:
    """Set (or, with None, clear) the judge for this process."""
    global _CONFIG
    _CONFIG = config
    _CACHE.clear()


def current() -> JudgeConfig | None:
    """The configured judge: :func:`configure`'s, else the environment's, else None (off)."""
    if _CONFIG is not None:
        return _CONFIG
    url, model = os.environ.get(ENV_URL), os.environ.get(ENV_MODEL)
    if url and model:
        return JudgeConfig(url=url, model=model, api_key_env=os.environ.get(ENV_KEY) or None)
    return None


def settings() -> dict[str, Any] | None:
    """What a run records about the judge (no key): endpoint, model, prompt version; None when off."""
    cfg = current()
    if cfg is None:
        return None
    out = asdict(cfg)
    out.update(endpoint=cfg.endpoint(), prompt=PROMPT_VERSION)
    return out


def parse_spec(spec: str, option: str = "--math_judge") -> JudgeConfig:
    """``URL,MODEL[,KEY_ENV]`` (the ``--math_judge`` option, RS-SFT's ``judge``) -> a judge configuration."""
    from harness.errors import UsageError

    parts = [p.strip() for p in spec.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"{option} {spec!r}: expected URL,MODEL or URL,MODEL,KEY_ENV (the name of the "
                         "environment variable that holds the API key), e.g. http://localhost:8000/v1,qwen2.5-7b")
    if not parts[0].startswith(("http://", "https://")):
        raise UsageError(f"{option} URL must start with http:// or https://, got {parts[0]!r}")
    return JudgeConfig(url=parts[0], model=parts[1], api_key_env=parts[2] if len(parts) == 3 else None)


def build_prompt(response: str, problem: MathProblem) -> str:
    query = problem.query.strip()
    if not query:
        query = "(question not given)"
    if problem.question_type == MULTI_CHOICE and "Choices:" not in query:
        query += "\nChoices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(problem.choices))
    return f"{_INSTRUCTIONS}\n\nQuestion: {query}\nModel response: {response}\nExtracted answer:"


def extract(response: str, problem: MathProblem, config: JudgeConfig | None = None) -> str | None:
    """The judge's extraction, or None when the request fails or the reply is empty
    (MathVista's script then scores an empty extraction)."""
    cfg = config or current()
    if cfg is None:
        return None
    prompt = build_prompt(response, problem)
    key = (cfg.endpoint(), cfg.model, prompt)
    if key in _CACHE:  # the metric and the reward read the same output: ask once
        return _CACHE[key]
    result = complete(cfg, prompt)
    _CACHE[key] = result
    return result


def complete(cfg: JudgeConfig, prompt: str, max_tokens: int | None = None) -> str | None:
    """One chat completion from an OpenAI-compatible endpoint at temperature 0: the reply's
    text, or None when the request fails or the reply is empty (callers record that)."""
    body = json.dumps({"model": cfg.model, "temperature": 0, "max_tokens": max_tokens or cfg.max_tokens,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    headers = {"Content-Type": "application/json"}
    if cfg.api_key_env and os.environ.get(cfg.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[cfg.api_key_env]}"
    request = urllib.request.Request(cfg.endpoint(), data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout_s) as reply:
            payload = json.loads(reply.read().decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
        return content.strip() if isinstance(content, str) and content.strip() else None
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def judge_callable() -> Any:
    """``(response, problem) -> str | None`` for harness.math_answers.score_math, or None when off."""
    return (lambda response, problem: extract(response, problem)) if current() is not None else None
