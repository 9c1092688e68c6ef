"""RS-SFT: rejection-sampled self-improvement (Curr-ReFT, Sec. 3.3), after any trainer.

The model a run starts from (the base, or the previous trainer's final checkpoint
when chained: ``--trainers curr_rl,rs_sft``) samples ``num_samples`` answers to each
of ``sample_prompts`` train prompts (a seeded subsample after the holdout) through the
evaluator's n-sampling: the same run directory and code as ``harness
profile-difficulty`` (harness/difficulty.py), kept in ``<output_dir>/samples``. The
answers an acceptor keeps become SFT targets, trained at a low learning rate with
the ``sft`` trainer's rows and loss (the prompt is the evaluator's; the completion is
the model's own accepted answer instead of the gold target).

Acceptors:

- the task's verifiable scorer (default): an answer is kept when its primary-metric
  score is >= ``accept_threshold`` (null: the profile's ``correct_threshold``, 0.5);
- an LLM judge through an OpenAI-compatible endpoint (``judge: URL,MODEL[,KEY_ENV]``),
  which grades each sampled answer 0-100 against the reference answer, kept when the
  grade is >= ``judge_threshold`` (85, the paper's GPT-4o threshold). Off by default;
  a failed request keeps nothing for that answer and is counted.

Distinct accepted answers of a prompt take turns across epochs. The paper's
self-improvement set mixes several domains (1,520 examples); here it is the suite's
train split. Learning rate: Curr-ReFT uses 2e-7 for this phase against 1e-6 for its SFT
baseline (1/5); the tiny default is 1e-4 against SFT's 5e-4.

Cost: a checkpoint's cost includes the run it started from (its
``harness_checkpoint.json``) and the sampling, so an RS-SFT row is the whole pipeline's
cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.suite import Suite
from trainers.base import CHECKPOINT_INFO, Checkpoint, OnCheckpoint, TrainerConfig
from trainers.rows import Row
from trainers.sft import SFTTrainer, SFTTrainerConfig
from trainers.trl_run import RunContext, check_model_dir

SAMPLES_DIR = "samples"
JUDGE_PROMPT = (
    "You grade answers to a visual question. Reference answer: {reference}\nCandidate answer: {answer}\n"
    "Grade the candidate from 0 to 100 for accuracy against the reference, format compliance and fluency. "
    "Reply with the number only.")


@dataclass
class RSSFTConfig(SFTTrainerConfig):
    learning_rate: float = 1e-4
    #: train prompts sampled (a seeded subsample of the split after the holdout)
    sample_prompts: int = 1000
    #: answers sampled per prompt, and how
    num_samples: int = 4
    sample_temperature: float = 1.0
    sample_top_p: float = 1.0
    #: keep an answer whose primary-metric score is >= this (null: the profile's threshold, 0.5)
    accept_threshold: float | None = None
    #: an LLM judge instead of the scorer: "URL,MODEL[,KEY_ENV]" (OpenAI-compatible chat completions)
    judge: str | None = None
    judge_threshold: float = 85.0

    def validate(self) -> None:
        super().validate()
        if self.sample_prompts <= 0:
            raise UsageError(f"sample_prompts must be > 0, got {self.sample_prompts}")
        if self.num_samples < 2:
            raise UsageError(f"num_samples must be >= 2 (the sampling is shared with difficulty profiling), "
                             f"got {self.num_samples}")
        if self.sample_temperature <= 0:
            raise UsageError(f"sample_temperature must be > 0 (answers are sampled), got {self.sample_temperature}")
        if self.accept_threshold is not None and not 0 < self.accept_threshold <= 1:
            raise UsageError(f"accept_threshold must be in (0, 1] or null, got {self.accept_threshold}")
        if not 0 <= self.judge_threshold <= 100:
            raise UsageError(f"judge_threshold is a 0-100 grade, got {self.judge_threshold}")
        if self.judge is not None:
            parse_judge(self.judge)


def grade(judge: Any, reference: str, answer: str) -> float | None:
    """The judge's 0-100 grade of an answer against the reference, or None when the request or
    its reply fails (the shared OpenAI-compatible client of harness/math_judge.py)."""
    from harness.math_judge import complete

    reply = complete(judge, JUDGE_PROMPT.format(reference=reference, answer=answer), max_tokens=8)
    try:
        return float(reply.split()[0].strip(".%")) if reply else None
    except ValueError:
        return None


def parse_judge(spec: str) -> Any:
    from harness.math_judge import parse_spec

    return parse_spec(spec, option="rs_sft judge")


class RSSFTTrainer(SFTTrainer):
    name = "rs_sft"
    config_class = RSSFTConfig
    #: in ``harness train-and-eval --trainers a,rs_sft`` it trains from a's final checkpoint
    chains = True
    presets = {
        "tiny": {},
        "curr-reft": {"learning_rate": 2e-7, "batch_size": 8},
    }

    def __init__(self) -> None:
        self._pairs: list[tuple[int, list[str]]] | None = None
        self._start_cost: dict[str, Any] = {}

    def train(self, model_dir: str, suite: Suite | str, config: TrainerConfig,
              on_checkpoint: OnCheckpoint | None = None) -> list[Checkpoint]:
        from harness.difficulty import ProfileConfig, load_difficulty, profile_difficulty

        c: RSSFTConfig = config  # type: ignore[assignment]
        suite = self.check(suite, c)
        model_path = check_model_dir(model_dir)
        out = Path(c.output_dir).expanduser().resolve()
        samples = profile_difficulty(ProfileConfig(
            model=str(model_path), task=suite.train, num_generations=c.num_samples, temperature=c.sample_temperature,
            top_p=c.sample_top_p, seed=c.seed, subsample=c.sample_prompts, holdout=c.holdout,
            output_path=str(out / SAMPLES_DIR), progress=c.progress))
        accepted, judged = self._accept(samples, c, suite)
        if not accepted:
            counts = load_difficulty(samples).describe_counts()
            raise UsageError(f"rs_sft: no sampled answer was accepted among {c.sample_prompts} prompts x "
                             f"{c.num_samples} samples ({counts}); sample more, raise sample_temperature, or lower "
                             "the acceptance threshold")
        self._pairs = sorted(accepted.items())
        diff = load_difficulty(samples)
        before = _checkpoint_cost(model_path)
        self._start_cost = {
            "wall_time_s": float(before.get("wall_time_s", 0) or 0) + float(diff.cost.get("wall_s") or 0),
            "generated_tokens": int(before.get("generated_tokens", 0) or 0) + int(diff.cost.get("generated_tokens") or 0),
            "started_from_cost": before, "rs_accepted_prompts": len(accepted),
            "rs_accepted_answers": sum(len(v) for v in accepted.values()), **judged}
        return super().train(model_dir, suite, c, on_checkpoint)

    def _accept(self, samples: Path, c: RSSFTConfig, suite: Suite) -> tuple[dict[int, list[str]], dict[str, int]]:
        from harness.difficulty import accepted_outputs, load_difficulty

        if c.judge is None:
            return {i: sorted(set(v)) for i, v in accepted_outputs(samples, c.accept_threshold).items()}, {}
        from harness.taskspec import make_task

        judge = parse_judge(c.judge)
        task = make_task(suite.train)
        samples_by_index = dict(enumerate(task.samples()))
        kept: dict[int, list[str]] = {}
        failed = 0
        for rec in load_difficulty(samples).records():
            sample = samples_by_index.get(int(rec["index"]))
            if sample is None:
                continue
            reference = task.answer_text(sample, None)
            for answer in sorted(set(rec.get("outputs") or [rec.get("output", "")])):
                grade_ = grade(judge, reference, answer)
                failed += grade_ is None
                if grade_ is not None and grade_ >= c.judge_threshold:
                    kept.setdefault(int(rec["index"]), []).append(answer)
        return kept, {"judge_failures": failed}

    def _accepted(self) -> list[tuple[int, list[str]]]:
        if self._pairs is None:
            raise RuntimeError("rs_sft used before train() sampled its answers")
        return self._pairs

    def identity(self, model_dir: Path, suite: Suite, config: Any) -> dict[str, Any]:
        import hashlib

        digest = hashlib.sha256(json.dumps(self._accepted()).encode()).hexdigest()[:16]
        return {**super().identity(model_dir, suite, config), "accepted": digest}

    def train_indices(self, config: Any) -> list[int] | None:
        return [i for i, _ in self._accepted()]

    def starting_cost(self, config: Any) -> dict[str, Any]:
        return dict(self._start_cost)

    def target(self, row: Row, ctx: RunContext) -> str:
        """The accepted answer for this row: a prompt's distinct answers take turns across epochs."""
        if "turns" not in ctx.cache:
            answers = dict(self._accepted())
            seen: dict[int, int] = {}
            turns = []
            for split_index in ctx.rows.order:
                k = seen.get(split_index, 0)
                seen[split_index] = k + 1
                options = answers[split_index]
                turns.append(options[k % len(options)])
            ctx.cache["turns"] = turns
        return ctx.cache["turns"][row.index]


def _checkpoint_cost(model_path: Path) -> dict[str, Any]:
    """The cost recorded in a harness checkpoint (what produced the model sampled from); {} for a base model."""
    info = model_path / CHECKPOINT_INFO
    if not info.is_file():
        return {}
    try:
        return dict(json.loads(info.read_text(encoding="utf-8")).get("cost", {}))
    except (OSError, ValueError, AttributeError):
        return {}
