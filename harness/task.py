"""Task = a split's samples + prompt formats + parser + scorer + aggregates.

A family implements the open-ended form (question, gold answer, parser, scorer)
and how to make wrong answers; multiple-choice and yes/no forms are derived here
once for every family, because Curr-RL poses the same samples in all three.

The scorer that computes a metric is also the RL reward (:meth:`Task.reward`):
one concept, one place.
"""

from __future__ import annotations

import hashlib
import random
import string
from abc import ABC, abstractmethod
from typing import Any, Iterator

from harness import answers
from harness.conventions import ModelConventions
from harness.errors import UnknownName, UsageError
from harness.parsed import Parsed
from harness.prompt import Prompt
from harness.protocol import ProtocolProfile
from harness.sample import Sample

OPEN, MC, YESNO = "open", "mc", "yesno"
FORMATS = (OPEN, MC, YESNO)
ROLES = ("train", "id", "ood", "pretrain")


def stable_rng(*parts: Any) -> random.Random:
    """A random stream that depends only on its key, so choices are reproducible
    across processes and resumed runs (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class Task(ABC):
    #: registry name without format suffix, e.g. ``synth_cls_id``
    name: str = ""
    family: str = ""
    role: str = "id"
    description: str = ""
    #: per-sample metrics of the open-ended form; the first is the primary one
    open_metrics: tuple[str, ...] = ("acc",)
    max_new_tokens: int = 32
    n_options: int = 4
    #: "text" or "box": which of the profile's answer-extraction rules applies to the open form
    answer_kind: str = "text"

    def __init__(self, fmt: str = OPEN) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r} for task {self.name}; choose one of {FORMATS}")
        self.fmt = fmt

    # ----- identity -------------------------------------------------------------
    @property
    def full_name(self) -> str:
        return self.name if self.fmt == OPEN else f"{self.name}:{self.fmt}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.open_metrics if self.fmt == OPEN else ("acc",)

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def fingerprint(self) -> str:
        """Identifies the data: changes when samples or targets would change."""
        return hashlib.sha256(f"{self.name}|{len(self)}".encode()).hexdigest()[:16]

    # ----- data -----------------------------------------------------------------
    @abstractmethod
    def samples(self) -> Iterator[Sample]:
        """Stream the split in a fixed order; never materialise it."""

    @abstractmethod
    def __len__(self) -> int: ...

    def get_sample(self, sample_id: str) -> Sample:
        for sample in self.samples():
            if sample.id == sample_id:
                return sample
        raise UnknownName(f"{self.name}: no sample with id {sample_id!r}")

    # ----- the open-ended form (families implement) ------------------------------
    @abstractmethod
    def question(self, sample: Sample, conv: ModelConventions) -> str:
        """The open-ended question, including how to write the answer."""

    @abstractmethod
    def answer_text(self, sample: Sample, conv: ModelConventions) -> str:
        """The gold open-ended answer as the model should write it (SFT target)."""

    @abstractmethod
    def parse_open(self, answer: str, sample: Sample, conv: ModelConventions, profile: ProtocolProfile) -> Parsed:
        """Read an answer; boxes come back in absolute pixels of the original image."""

    @abstractmethod
    def score_open(self, value: Any, sample: Sample, profile: ProtocolProfile) -> dict[str, float]:
        """Per-sample metrics for a successfully parsed value."""

    @abstractmethod
    def wrong_answers(self, sample: Sample, conv: ModelConventions, rng: random.Random, k: int) -> list[str]:
        """``k`` distinct plausible wrong answers, written like :meth:`answer_text`."""

    # ----- derived formats ---------------------------------------------------------
    def _options(self, sample: Sample, conv: ModelConventions) -> tuple[list[str], int]:
        rng = stable_rng(self.name, sample.id, "options")
        options = self.wrong_answers(sample, conv, rng, self.n_options - 1)
        correct = rng.randrange(len(options) + 1)
        options.insert(correct, self.answer_text(sample, conv))
        return options, correct

    def _claim(self, sample: Sample, conv: ModelConventions) -> tuple[str, bool]:
        rng = stable_rng(self.name, sample.id, "claim")
        truth = rng.random() < 0.5
        claim = self.answer_text(sample, conv) if truth else self.wrong_answers(sample, conv, rng, 1)[0]
        return claim, truth

    def prompt(self, sample: Sample, conv: ModelConventions) -> Prompt:
        q = self.question(sample, conv)
        if self.fmt == MC:
            options, _ = self._options(sample, conv)
            lines = [f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(options)]
            q = f"{self.stem(sample, conv)}\nOptions:\n" + "\n".join(lines) + "\nAnswer with the option's letter."
        elif self.fmt == YESNO:
            claim, _ = self._claim(sample, conv)
            q = f"{self.stem(sample, conv)}\nIs the answer {claim}? Answer yes or no."
        return Prompt(text=q, images=sample.images)

    def stem(self, sample: Sample, conv: ModelConventions) -> str:
        """The question without answer-format instructions (for MC and yes/no)."""
        return self.question(sample, conv)

    def target(self, sample: Sample, conv: ModelConventions) -> str:
        """The gold output for this task's format (what SFT trains on)."""
        if self.fmt == MC:
            options, correct = self._options(sample, conv)
            return string.ascii_uppercase[correct]
        if self.fmt == YESNO:
            return "yes" if self._claim(sample, conv)[1] else "no"
        return self.answer_text(sample, conv)

    def parse(self, output: str, sample: Sample, conv: ModelConventions, profile: ProtocolProfile) -> Parsed:
        answer = answers.extract_answer(output, profile, self.answer_kind if self.fmt == OPEN else "text")
        if answer is None:
            return Parsed("", failure="no <answer> tag")
        if self.fmt == OPEN:  # the family decides about an empty answer (a profile may accept it)
            return self.parse_open(answer, sample, conv, profile)
        if not answer:
            return Parsed(answer, failure="empty answer")
        if self.fmt == MC:
            idx = answers.parse_choice(answer, self.n_options)
            return Parsed(answer, idx) if idx is not None else Parsed(answer, failure="no option letter")
        yn = answers.parse_yesno(answer)
        return Parsed(answer, yn) if yn is not None else Parsed(answer, failure="no yes/no")

    def score(self, parsed: Parsed, sample: Sample, conv: ModelConventions, profile: ProtocolProfile) -> dict[str, float]:
        if not parsed.ok:
            return {m: 0.0 for m in self.metrics}
        if self.fmt == MC:
            return {"acc": float(parsed.value == self._options(sample, conv)[1])}
        if self.fmt == YESNO:
            return {"acc": float(parsed.value == self._claim(sample, conv)[1])}
        return self.score_open(parsed.value, sample, profile)

    def evaluate(
        self, output: str, sample: Sample, conv: ModelConventions, profile: ProtocolProfile
    ) -> tuple[Parsed, dict[str, float]]:
        parsed = self.parse(output, sample, conv, profile)
        return parsed, self.score(parsed, sample, conv, profile)

    def reward(self, output: str, sample: Sample, conv: ModelConventions, profile: ProtocolProfile) -> float:
        """The RL reward of one completion: the task's own primary metric."""
        return self.evaluate(output, sample, conv, profile)[1][self.primary_metric]

    # ----- aggregates --------------------------------------------------------------
    #: the record fields ``corpus_metrics`` reads; aggregation keeps only these of each
    #: record (None: whole records), so its memory stays flat however large the split
    corpus_fields: tuple[str, ...] | None = None

    def corpus_metrics(self, records: list[dict[str, Any]], profile: ProtocolProfile) -> dict[str, float]:
        """Metrics that are not means of per-sample scores (e.g. mAP). Default: none."""
        return {}

    def target_json(self, sample: Sample) -> Any:
        """The target as stored in records (JSON-able)."""
        return sample.target
