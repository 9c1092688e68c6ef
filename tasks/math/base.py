"""The math family: one image, a question, a gold answer typed the way MathVista types it.

Index entries: ``{"id", "image", "size", "question", "question_type", "answer_type",
"answer", "choices", "precision", "unit", "solution", "metadata"}`` (``image`` absolute or
relative to the task's image folder; ``solution`` the gold as the upstream row writes it,
which Curr-ReFT's check searches for in the output). Counting tasks set ``counting = True``
and hold the count as an integer answer.

The prompt states the answer type (MathVista's hints, in our words); the answer is read and
scored by harness/math_answers.py under the profile's ``math_rule`` (``count_rule`` for
counting); docs/tasks/math.md has the rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import answers, math_judge
from harness.dataset_task import DatasetTask
from harness.math_answers import MULTI_CHOICE, MathProblem, fmt_number, numbers, score_count, score_math
from harness.parsed import Parsed
from harness.sample import ImageRef, Sample
from harness.task import OPEN

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])[\).:]\s*(.+?)\s*$")


def parse_choices(question: str) -> list[str]:
    """Options written one per line as "(A) text", "A. text" or "A: text", from A on."""
    found: list[str] = []
    for line in question.splitlines():
        m = _CHOICE_LINE.match(line)
        if m and m.group(1) == LETTERS[len(found)]:
            found.append(m.group(2))
    return found if len(found) >= 2 else []


def infer_problem(question: str, gold: str) -> dict[str, Any] | None:
    """Type a gold answer the upstream file writes as text (Curr-ReFT rows, LLaVA
    conversations): an option letter when the question lists options; a number (integer,
    or float with as many decimals as written); else text. None: no answer in ``gold``."""
    from harness.math_answers import extract_choice, extract_number

    gold = answers.curr_reft_answer_content(gold)
    choices = parse_choices(question)
    if choices:
        idx = extract_choice(gold, choices)
        if idx is not None:
            return {"question_type": MULTI_CHOICE, "answer_type": "text", "answer": choices[idx],
                    "choices": choices, "precision": None}
    value = extract_number(gold)
    if value is not None:
        written = re.findall(r"\d+\.(\d+)", gold)
        if value == int(value) and not (written and int(written[-1] or 0)):
            return {"question_type": "free_form", "answer_type": "integer", "answer": fmt_number(value),
                    "choices": None, "precision": None}
        places = len(written[-1]) if written else 2
        return {"question_type": "free_form", "answer_type": "float", "answer": f"{value:.{places}f}".rstrip("0")
                if places else fmt_number(value), "choices": None, "precision": places}
    text = gold.strip().rstrip(".").strip()
    if text and len(text) <= 60:
        return {"question_type": "free_form", "answer_type": "text", "answer": text, "choices": None,
                "precision": None}
    return None


class MathTask(DatasetTask):
    family = "math"
    open_metrics = ("acc",)
    max_new_tokens = 1024
    counting = False
    protocol = ("open: the question, its options as (A)..., and the answer type's instruction; parser and metric "
                "harness/math_answers.py under the profile's math_rule (count_rule for counting)")

    def image_root(self) -> Path:
        return self.dataset.image_dir()

    def image_path(self, entry: dict[str, Any]) -> str:
        path = Path(entry["image"])
        return str(path if path.is_absolute() else self.image_root() / path)

    def make_image(self, entry: dict[str, Any]) -> ImageRef:
        size = tuple(entry["size"]) if entry.get("size") else None
        return ImageRef.from_path(self.image_path(entry), size=size)  # type: ignore[arg-type]

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        problem = {k: entry.get(k) for k in ("question_type", "answer_type", "answer", "choices", "precision", "unit")}
        fields = {"question": entry["question"], "problem": problem, "solution": entry.get("solution")}
        target: Any = int(entry["answer"]) if self.counting else entry["answer"]
        meta = {"answer_type": entry["answer_type"], "question_type": entry["question_type"],
                **entry.get("metadata", {})}
        return Sample(id=entry["id"], images=(self.make_image(entry),), fields=fields, target=target, metadata=meta)

    # ----- the problem --------------------------------------------------------------------------
    def problem(self, sample: Sample) -> MathProblem:
        p = sample.fields["problem"]
        return MathProblem(question_type=p["question_type"], answer_type=p["answer_type"], answer=str(p["answer"]),
                           choices=tuple(p.get("choices") or ()), precision=p.get("precision"), unit=p.get("unit"),
                           query=self.stem(sample, None))

    def stem(self, sample, conv):
        p = sample.fields["problem"]
        text = sample.fields["question"]
        if p.get("unit"):
            text += f" (Unit: {p['unit']})"
        choices = p.get("choices") or []
        if choices and not parse_choices(sample.fields["question"]):
            text += "\nChoices:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
        return text

    def instruction(self, sample: Sample) -> str:
        p = sample.fields["problem"]
        if self.counting:
            return "Answer with a number."
        if p["question_type"] == MULTI_CHOICE:
            return "Answer with the option's letter."
        if p["answer_type"] == "integer":
            return "Answer with an integer."
        if p["answer_type"] == "float":
            places = int(p["precision"]) if p.get("precision") else None
            return (f"Answer with a number with {places} decimal place{'s' if places != 1 else ''}."
                    if places else "Answer with a number.")
        if p["answer_type"] == "list":
            return "Answer with a Python list, e.g. [1, 2, 3]."
        return "Answer with a word or a short phrase."

    def question(self, sample, conv):
        return f"{self.stem(sample, conv)}\n{self.instruction(sample)}"

    def answer_text(self, sample, conv):
        p = sample.fields["problem"]
        if p["question_type"] == MULTI_CHOICE and p.get("choices"):
            return LETTERS[list(p["choices"]).index(p["answer"])]
        return str(p["answer"])

    # ----- reading and scoring ----------------------------------------------------------------------
    def parse(self, output, sample, conv, profile):
        if self.fmt != OPEN:
            return super().parse(output, sample, conv, profile)
        answer = answers.extract_answer(output, profile)
        if answer is None:
            return Parsed("", failure="no <answer> tag")
        return self._read(answer, output, sample, profile)

    def parse_open(self, answer, sample, conv, profile):
        return self._read(answer, answer, sample, profile)

    def _read(self, answer: str, output: str, sample: Sample, profile) -> Parsed:
        if self.counting:
            result = score_count(answer, output, int(sample.target), profile.count_rule)
        else:
            solution = sample.fields.get("solution")
            if solution is None:
                solution = self.answer_text(sample, None)
            result = score_math(answer, output, self.problem(sample), profile.math_rule, solution=solution,
                                judge=math_judge.judge_callable())
        if result.failure:
            return Parsed(answer, failure=result.failure)
        prediction = result.prediction if isinstance(result.prediction, (str, int, float, list, type(None))) else \
            str(result.prediction)
        return Parsed(answer, {"extraction": result.extraction, "prediction": prediction, "correct": result.correct})

    def score_open(self, value, sample, profile):
        return {"acc": float(bool(value["correct"]))}

    def wrong_answers(self, sample, conv, rng, k):
        p = sample.fields["problem"]
        gold = self.answer_text(sample, conv)
        pool: list[str] = []
        if p["question_type"] == MULTI_CHOICE and p.get("choices"):
            pool = [LETTERS[i] for i in range(len(p["choices"])) if LETTERS[i] != gold]
            pool += [LETTERS[i] for i in range(len(p["choices"]), len(p["choices"]) + k)]  # letters past the options
        elif p["answer_type"] in ("integer", "float") or self.counting:
            value = numbers(gold)[0] if numbers(gold) else 0.0
            places = int(p["precision"]) if p.get("precision") else 0
            step = 10.0 ** -places if p["answer_type"] == "float" else 1.0
            for d in (1, -1, 2, -2, 3, -3, 4, -4, 5, 6, 7, 8):
                v = value + d * step
                if self.counting and v < 0:
                    continue
                pool.append(f"{v:.{places}f}" if p["answer_type"] == "float" and places else fmt_number(round(v, 9)))
        elif p["answer_type"] == "list":
            items = numbers(gold) or [0.0]
            for i in range(len(items)):
                for d in (1, -1, 2):
                    alt = list(items)
                    alt[i] += d
                    pool.append("[" + ", ".join(fmt_number(x) for x in alt) + "]")
        else:
            pool = [f"not {gold}", f"{gold}s", f"no {gold}", "none", "all of them", "unknown"]
        pool = [c for c in dict.fromkeys(pool) if c != gold]
        return rng.sample(pool, k) if len(pool) >= k else pool + [f"{gold} {i}" for i in range(k - len(pool))]
