"""Small runs for the viewer tests (not a test module): made by the evaluator with a fake backend."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.evaluator import run_eval
from harness.records import read_records
from harness.taskspec import make_task, split_format

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import FakeBackend, config, garbage_index
except ImportError:  # pragma: no cover
    from tests.fake_backend import FakeBackend, config, garbage_index

TASKS = ("synth_ground_id", "synth_detect_base", "synth_ground_long", "synth_cls_id", "synth_ground_id:mc")
CORRECT_AT = 0.5  # what the viewer calls correct (difficulty profiling's cut), restated as the tests' oracle


def wrong_answer(full_name: str, index: int, gold: str, conv) -> str:
    """A plausible wrong answer, written as the task expects (parses, scores low)."""
    name, fmt = split_format(full_name)
    if fmt == "mc":
        return "ABCD"[("ABCD".index(gold) + 1) % 4]
    task = make_task(name, fmt)
    return task.wrong_answers(task.make_sample(index), conv, random.Random(index), 1)[0]


class MixedBackend(FakeBackend):
    """Gold answers; garbage (a parse failure) at fake_backend.garbage_index; a wrong answer
    where ``wrong(task, index)``."""

    def __init__(self, wrong=lambda task, i: i % 3 == 1, **kw) -> None:
        super().__init__(**kw)
        self.wrong = wrong

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            task, i, gold = self.lookup[(p.images[0].uri, p.text)]
            if garbage_index(i):
                out.append(["blah"])
            elif self.wrong(task, i):
                out.append([wrong_answer(task, i, gold, self._conv)])
            else:
                out.append([gold])
        return out


def make_run(path: Path, tasks=TASKS, limit: int = 10, wrong=lambda task, i: i % 3 == 1, conv=None) -> Path:
    backend = MixedBackend(wrong=wrong, specs=list(tasks), limit=limit, conv=conv)
    run_eval(config(path, tasks=list(tasks), limit=limit, n_boot=20), backend=backend)
    return Path(path)


def records(run: Path, task: str) -> list[dict]:
    return read_records(Path(run) / "records" / f"{task.replace(':', '@')}.jsonl")


def expected_status(rec: dict, primary: str) -> str:
    if rec.get("failure"):
        return "parse"
    return "correct" if rec["scores"][primary] >= CORRECT_AT else "wrong"


def page_blob(html: str) -> dict:
    """The page's JSON data, read back out of the HTML."""
    start = html.index('<script type="application/json" id="view-data">') + len(
        '<script type="application/json" id="view-data">')
    return json.loads(html[start:html.index("</script>", start)])
