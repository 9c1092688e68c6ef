"""A fake inference backend for the evaluator and CLI tests (not a test module)."""

from __future__ import annotations

from harness.backends.base import Backend, SamplingParams
from harness.conventions import ModelConventions
from harness.evaluator import EvalConfig
from harness.taskspec import make_task, split_format

TASKS = ["synth_cls_id", "synth_ground_id", "synth_count_arith:mc"]
LIMIT = 10
BATCH = 4
REQUIRED = {"prompt", "output", "parsed", "scores", "failure", "target", "index", "sample_id", "task", "answer",
            "metadata", "images"}


def garbage_index(index: int) -> bool:
    return index % 3 == 0  # indices 0, 3, 6, 9 of 10 get a garbage answer


class FakeBackend(Backend):
    """Answers with the gold target, except for garbage_index samples; looks samples up by prompt."""

    name = "fake"

    def __init__(self, specs=TASKS, limit=LIMIT, conv: ModelConventions | None = None, fail: set | None = None,
                 interrupt_after: int | None = None, drop_last: bool = False) -> None:
        self._conv = conv or ModelConventions()
        self.fail = fail or set()  # {(full task name, index)}: generation raises (a corrupt image)
        self.interrupt_after = interrupt_after  # raise KeyboardInterrupt after this many generate calls
        self.drop_last = drop_last  # return one output too few for multi-prompt batches
        self.calls: list[list[tuple[str, int]]] = []
        self.params: list[tuple[str, SamplingParams]] = []
        self.lookup: dict[tuple[str, str], tuple[str, int, str]] = {}
        for spec in specs:
            name, fmt = split_format(spec)
            task = make_task(name, fmt)
            for i in range(limit):
                sample = task.make_sample(i)
                prompt = task.prompt(sample, self._conv)
                key = (prompt.images[0].uri, prompt.text)
                assert key not in self.lookup
                self.lookup[key] = (task.full_name, i, task.target(sample, self._conv))

    @property
    def conventions(self) -> ModelConventions:
        return self._conv

    def fingerprint(self) -> str:
        return "fake-weights-0"

    def generate(self, prompts, params):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        found = [self.lookup[(p.images[0].uri, p.text)] for p in prompts]
        self.calls.append([(t, i) for t, i, _ in found])
        self.params.append((found[0][0], params))
        for t, i, _ in found:
            if (t, i) in self.fail:
                raise OSError(f"cannot identify image file for sample {i}")
        out = [["blah"] if garbage_index(i) else [gold] for _, i, gold in found]
        return out[:-1] if self.drop_last and len(out) > 1 else out

    def asked(self) -> set[tuple[str, int]]:
        return {key for call in self.calls for key in call}


def config(path, **kw) -> EvalConfig:
    base = dict(model="fake-model", tasks=list(TASKS), backend="fake", limit=LIMIT, batch_size=BATCH, n_boot=50,
                output_path=str(path), progress=False)
    return EvalConfig(**{**base, **kw})


class RuleBackend(FakeBackend):
    """Gold answers, except where ``wrong(task, index)``: then a wrong label."""

    def __init__(self, wrong, **kw) -> None:
        super().__init__(**kw)
        self.wrong = wrong

    def generate(self, prompts, params):
        found = [self.lookup[(p.images[0].uri, p.text)] for p in prompts]
        return [["blah"] if self.wrong(t, i) else [gold] for t, i, gold in found]
