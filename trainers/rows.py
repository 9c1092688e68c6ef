"""Training rows: which samples of the train split a run sees, in which order and format.

Row ``i`` of a run is a pure function of (seed, i): the split's indices are
shuffled per epoch with a stable RNG keyed by the seed (optionally restricted to a
fixed pool of ``train_samples`` samples, the few-shot setting of Visual-RFT), and
row ``i`` is posed in ``formats[i % len(formats)]``. Trainers feed rows to TRL in this order with
shuffling off, so the optimizer step ``s`` always sees rows
``s*batch .. (s+1)*batch-1``: a resumed run continues the same stream.

Only the rows a run needs (``max_steps x batch``) are kept, as lightweight
:class:`~harness.sample.Sample` objects; images are decoded when TRL asks for the
row (a ``datasets`` transform), never all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.conventions import ModelConventions
from harness.errors import UsageError
from harness.prompt import Prompt
from harness.registry import SUITES, TASKS
from harness.sample import Sample
from harness.suite import Suite
from harness.task import FORMATS, Task, stable_rng


def resolve_train_suite(suite: Suite | str, formats: tuple[str, ...] = ("open",)) -> Suite:
    """The suite (by name or object), checked to have a registered train split."""
    if isinstance(suite, str):
        suite = SUITES.get(suite)  # UnknownName lists the known suites
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"formats: {', '.join(bad) or '(empty)'} not valid; choose from {', '.join(FORMATS)}")
    if not suite.train:
        with_train = [n for n in SUITES.names() if SUITES.get(n).train]
        raise UsageError(f"suite {suite.name!r} has no train split, so it cannot be trained on; "
                         f"suites with one: {', '.join(with_train) or 'none'}")
    if suite.train not in TASKS:
        raise UsageError(f"suite {suite.name!r} names train split {suite.train!r}, which is not a registered task")
    return suite


@dataclass(frozen=True)
class Row:
    index: int
    task: Task
    sample: Sample


class TrainRows:
    """The first ``n`` rows of a run's deterministic stream over ``suite.train``."""

    def __init__(self, suite: Suite, formats: tuple[str, ...], n: int, seed: int, shuffle: bool = True,
                 pool: int | None = None, holdout: int = 0, indices: list[int] | None = None) -> None:
        from harness.taskspec import make_task

        self.tasks = [make_task(suite.train, fmt) for fmt in formats]
        size = len(self.tasks[0])
        if size == 0:
            raise UsageError(f"train split {suite.train!r} of suite {suite.name!r} is empty")
        if not 0 <= holdout < size:
            raise UsageError(f"holdout {holdout}: the train split {suite.train!r} has {size} samples; the held-out "
                             "validation samples must leave some to train on")
        # ``holdout``: the split's first N samples are a validation split (checkpoint selection),
        # never trained on. ``indices``: a subset of the split (e.g. DC-SFT's medium samples).
        if indices is not None:
            bad = [i for i in indices if not 0 <= i < size]
            if bad:
                raise UsageError(f"train subset names sample index {bad[0]}, outside the train split "
                                 f"{suite.train!r} (0..{size - 1})")
            universe = sorted({i for i in indices if i >= holdout})
        else:
            universe = list(range(holdout, size))
        if not universe:
            raise UsageError(f"no training samples left in {suite.train!r} after the holdout of {holdout}")
        if shuffle:
            stable_rng("train-pool", suite.train, seed).shuffle(universe)
        if pool is not None:
            universe = universe[:pool]  # a fixed few-shot pool, cycled in epochs
        order: list[int] = []
        epoch = 0
        while len(order) < n:
            block = list(universe)
            if shuffle and epoch:
                stable_rng("train-rows", suite.train, seed, epoch).shuffle(block)
            order += block[: n - len(order)]
            epoch += 1
        self.order = order
        needed = set(order)
        found: dict[int, Sample] = {}
        last = max(needed)
        for i, sample in enumerate(self.tasks[0].samples()):  # one streaming pass, keeping what is used
            if i in needed:
                found[i] = sample
            if i >= last:
                break
        if len(found) < len(needed):
            raise UsageError(f"train split {suite.train!r} yielded {len(found)} of the {len(needed)} samples its "
                             f"length ({size}) promised")
        self._samples = found

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> Row:
        return Row(i, self.tasks[i % len(self.tasks)], self._samples[self.order[i]])

    def dataset(self, make: Callable[[Row], dict[str, Any]]):
        """A ``datasets.Dataset`` of row numbers whose items are ``make(row)``, built on access."""
        from datasets import Dataset

        return Dataset.from_dict({"row": list(range(len(self)))}).with_transform(_RowTransform(self, make))


class _RowTransform:
    """The dataset transform: builds rows on access.

    ``datasets`` fingerprints a transform by pickling it with dill, which walked everything
    this references (every sample, the processor, the task objects): minutes for a
    5,600-row run (measured: two GRPO jobs spent over 3 CPU-minutes each before their first
    step). It is therefore pickled as a key of what decides its rows: the split, the row order
    and the formats. (Nothing unpickles it: TRL reads rows in-process, ``num_workers`` 0.)
    """

    def __init__(self, rows: TrainRows, make: Callable[[Row], dict[str, Any]]) -> None:
        self.rows = rows
        self.make = make
        #: the rows the last call built or reused, by row number
        self._last: dict[int, dict[str, Any]] = {}

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        # GRPO asks for each row G times in one call (TRL's RepeatSampler; the DataLoader
        # fetches a batch with one call), and again in the next call when num_iterations > 1:
        # a row is built (its images decoded or rendered) once and its copies share the
        # objects. Downstream only reads them (TRL builds new messages around the images).
        # Keeping the last call's rows only bounds the cache by what the trainer holds anyway.
        built: dict[int, dict[str, Any]] = {}
        for i in batch["row"]:
            if i not in built:
                built[i] = self._last[i] if i in self._last else self.make(self.rows[i])
        self._last = built
        items = [built[i] for i in batch["row"]]
        return {k: [b[k] for b in items] for k in items[0]}

    def __reduce__(self):
        import hashlib
        import json

        key = json.dumps([[t.full_name for t in self.rows.tasks], self.rows.order])
        return (_not_unpicklable, (hashlib.sha256(key.encode()).hexdigest(),))


def _not_unpicklable(key: str):
    raise TypeError(f"a training-row transform ({key[:12]}) cannot be rebuilt in another process; "
                    "keep dataloader_num_workers at 0")


def images_of(sample: Sample) -> list:
    return [ref.load() for ref in sample.images]


def with_instruction(prompt: Prompt, instruction: str | None) -> Prompt:
    if not instruction:
        return prompt
    return Prompt(text=f"{prompt.text}\n{instruction}", images=prompt.images, system=prompt.system)


def model_conventions(model_dir: str | Path, processor: Any) -> ModelConventions:
    """The conventions the ``hf`` backend will use for this model, without loading its weights."""
    import json

    from harness.backends.hf import processor_conventions

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return processor_conventions(config.get("model_type"), processor)


def assistant_affixes(processor: Any) -> tuple[str, str]:
    """(before, after): what the chat template writes around an assistant answer, up to and
    including its end-of-turn token but without the whitespace after it.

    TRL's conversational prompt-completion path keeps the template's trailing ``\\n``
    after ``<|im_end|>``, a token the model then learns to emit but generation never
    reaches (MEASURED.md); the evaluator stops at the end-of-turn token.
    """
    user = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    marker = "@@harness-answer@@"
    prompt = processor.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(
        user + [{"role": "assistant", "content": [{"type": "text", "text": marker}]}], tokenize=False)
    if full.startswith(prompt) and marker in full[len(prompt):]:
        before, _, after = full[len(prompt):].partition(marker)
        return before, after.rstrip()
    tokenizer = getattr(processor, "tokenizer", processor)
    return "", tokenizer.eos_token or ""
