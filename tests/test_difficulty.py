"""n-sampling in the evaluator and difficulty profiling (harness/difficulty.py, `harness profile-difficulty`).

Most tests use ``NSampleBackend``: for the sample at split index i it answers the gold
target in the first ``i % (G + 1)`` of its G completions and garbage in the rest, so
every sample's label is known in advance (0 correct: hard, G: easy, else medium). The
tiny-model tests check real sampling: identical labels for a fixed seed, resume, reuse
without loading the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.backends.base import Backend  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.conventions import ModelConventions  # noqa: E402
from harness.difficulty import (  # noqa: E402
    DIFFICULTY_FILE,
    LABELS,
    ProfileConfig,
    accepted_outputs,
    load_difficulty,
    profile_difficulty,
)
from harness.errors import HarnessError, UsageError  # noqa: E402
from harness.evaluator import EvalConfig, planned_indices, run_eval  # noqa: E402
from harness.protocol import STRICT  # noqa: E402
from harness.registry import BACKENDS  # noqa: E402
from harness.taskspec import make_task  # noqa: E402

SPLIT = "synth_cls_train"


def split_index(prompt) -> int:
    return int(prompt.images[0].uri.rsplit("/", 1)[1])


def expected_label(index: int, g: int) -> str:
    correct = index % (g + 1)
    return "hard" if correct == 0 else "easy" if correct == g else "medium"


class NSampleBackend(Backend):
    """G completions per prompt: gold for the first ``index % (G + 1)``, garbage for the rest."""

    name = "fake-n"

    def __init__(self, model: str = "fake-model", fail: frozenset[int] = frozenset(), **_: object) -> None:
        self.task = make_task(SPLIT)
        self.fail = fail
        self.calls = 0

    @property
    def conventions(self) -> ModelConventions:
        return ModelConventions()

    def fingerprint(self) -> str:
        return "fake-n-weights"

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for p in prompts:
            i = split_index(p)
            if i in self.fail:
                raise OSError(f"cannot identify image file for sample {i}")
            gold = self.task.target(self.task.make_sample(i), self.conventions)
            correct = i % (params.n + 1)
            out.append([gold] * correct + [f"blah{k}" for k in range(params.n - correct)])
        return out


@pytest.fixture
def fake_n(monkeypatch):
    """Registers the backend as 'fake-n'; the fixture's value lists the instances made."""
    made: list[NSampleBackend] = []

    def factory(model, **kw):
        made.append(NSampleBackend(model, **kw))
        return made[-1]

    monkeypatch.setitem(BACKENDS._items, "fake-n", factory)
    monkeypatch.setattr("harness.provenance.git_commit", lambda: {"commit": "test"})
    return made


def profile_cfg(path: Path, **kw) -> ProfileConfig:
    base = dict(model="fake-model", task="synth_cls", backend="fake-n", num_generations=4, limit=20, batch_size=4,
                output_path=str(path), progress=False)
    return ProfileConfig(**{**base, **kw})


# ------------------------------------------------------------------ n-sampling


def test_num_samples_keeps_every_output_and_its_score(tmp_path, fake_n):
    cfg = EvalConfig(model="fake-model", tasks=[SPLIT], backend="fake-n", limit=10, batch_size=4, temperature=1.0,
                     num_samples=3, n_boot=0, output_path=str(tmp_path / "run"), progress=False)
    result = run_eval(cfg, backend=NSampleBackend())
    records = [json.loads(line) for line in (result.run_dir / "records" / f"{SPLIT}.jsonl").read_text().splitlines()]
    task = make_task(SPLIT)
    assert len(records) == 10
    for rec in records:
        correct = rec["index"] % 4
        assert len(rec["outputs"]) == 3 and rec["output"] == rec["outputs"][0]
        # the task's own scorer on each output; the record's scores are the first output's
        sample = task.make_sample(rec["index"])
        assert rec["sample_scores"] == [task.reward(o, sample, ModelConventions(), STRICT) for o in rec["outputs"]]
        assert rec["sample_scores"] == [1.0] * min(correct, 3) + [0.0] * (3 - min(correct, 3))
        assert rec["scores"]["acc"] == rec["sample_scores"][0]
    (agg,) = result.aggregates
    assert agg["metrics"]["acc"]["value"] == sum(r["sample_scores"][0] for r in records) / 10
    assert json.loads((result.run_dir / "config.json").read_text())["identity"]["num_samples"] == 3


def test_one_sample_keeps_the_old_records_and_identity(tmp_path):
    cfg = EvalConfig(model="fake-model", tasks=[SPLIT], backend="fake-n", limit=4, batch_size=4, n_boot=0,
                     output_path=str(tmp_path / "run"), progress=False)
    assert "num_samples" not in cfg.identity() and "skip_first" not in cfg.identity()
    # the default run directory name of an n = 1 run is what it was before num_samples existed
    assert "num_samples" not in json.dumps(cfg.identity())
    result = run_eval(cfg, backend=NSampleBackend())
    rec = json.loads((result.run_dir / "records" / f"{SPLIT}.jsonl").read_text().splitlines()[1])
    assert "outputs" not in rec and "sample_scores" not in rec
    assert EvalConfig(model="m", tasks=["x"], num_samples=2, temperature=1.0).identity()["num_samples"] == 2
    assert EvalConfig(model="m", tasks=["x"], skip_first=5).identity()["skip_first"] == 5


@pytest.mark.parametrize("kw, message", [
    ({"num_samples": 0}, "--num_samples must be >= 1"),
    ({"num_samples": 4}, "--num_samples 4 needs sampling: set --temperature > 0"),
    ({"skip_first": -1}, "skip_first must be >= 0"),
])
def test_num_samples_is_validated(kw, message):
    with pytest.raises(UsageError, match=message):
        EvalConfig(model="tiny", tasks=[SPLIT], **kw).validate()


def test_eval_cli_num_samples_without_temperature_is_one_line(capsys):
    assert main(["eval", "--model", "tiny", "--tasks", SPLIT, "--num_samples", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs sampling" in err


def test_skip_first_applies_before_limit_and_subsample():
    task = make_task("synth_cls_id")  # 300 samples
    assert planned_indices(task, 3, None, 0, skip_first=10) == [10, 11, 12]
    picked = planned_indices(task, None, 20, 0, skip_first=100)
    assert len(picked) == 20 and min(picked) >= 100 and picked == sorted(picked)
    assert planned_indices(task, None, None, 0, skip_first=295) == [295, 296, 297, 298, 299]
    assert planned_indices(task, None, 7, 0) == planned_indices(task, None, 7, 0, skip_first=0)


# ------------------------------------------------------------------ profiling


def test_labels_follow_the_taxonomy_and_counts_sum(tmp_path, fake_n):
    path = profile_difficulty(profile_cfg(tmp_path / "p"))
    diff = load_difficulty(path)
    assert diff.task == SPLIT and diff.profiled == 20 and not diff.failed
    assert diff.labels == {i: expected_label(i, 4) for i in range(20)}
    assert diff.pass_rates[7] == (7 % 5) / 4
    assert sum(diff.counts.values()) == diff.profiled == 20
    assert diff.counts == {"easy": 4, "medium": 12, "hard": 4}
    assert diff.indices("hard") == [0, 5, 10, 15] and diff.indices("easy", "medium") == sorted(
        set(range(20)) - {0, 5, 10, 15})
    assert diff.cost["prompts"] == 20 and diff.cost["completions"] == 80 and diff.cost["wall_s"] >= 0
    assert diff.cost["generated_tokens"] is None  # no local tokenizer for a fake model: not guessed
    doc = json.loads((path / DIFFICULTY_FILE).read_text())
    assert doc["counts"] == {"easy": 4, "medium": 12, "hard": 4, "profiled": 20, "failed": 0}
    assert doc["settings"]["num_generations"] == 4 and doc["settings"]["temperature"] == 0.9
    with pytest.raises(UsageError, match="unknown difficulty label 'medium-hard'"):
        diff.indices("medium-hard")


def test_holdout_and_subsample_pick_what_is_profiled(tmp_path, fake_n):
    diff = load_difficulty(profile_difficulty(profile_cfg(tmp_path / "p", limit=None, subsample=12, holdout=50)))
    assert len(diff.labels) == 12 and min(diff.labels) >= 50
    assert all(label == expected_label(i, 4) for i, label in diff.labels.items())
    again = load_difficulty(profile_difficulty(profile_cfg(tmp_path / "q", limit=None, subsample=12, holdout=50)))
    assert again.labels == diff.labels and again.fingerprint == diff.fingerprint


def test_failed_generations_get_no_label(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS._items, "fake-n", lambda model, **kw: NSampleBackend(model, fail=frozenset({3, 6})))
    monkeypatch.setattr("harness.provenance.git_commit", lambda: {"commit": "test"})
    diff = load_difficulty(profile_difficulty(profile_cfg(tmp_path / "p", limit=12)))
    assert diff.failed == (3, 6) and 3 not in diff.labels and 6 not in diff.labels
    assert sum(diff.counts.values()) == diff.profiled == 10
    assert diff.cost["prompts"] == 12 and diff.cost["completions"] == 40


def test_resume_after_lost_records_gives_the_same_labels(tmp_path, fake_n):
    path = profile_difficulty(profile_cfg(tmp_path / "p"))
    before = json.loads((path / DIFFICULTY_FILE).read_text())
    records = path / "records" / f"{SPLIT}.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    # a kill: the last batches and the end-of-run files never reached the disk, the last line is torn
    records.write_text("".join(lines[:9]) + lines[9][:40])
    (path / "aggregates.json").unlink()
    (path / DIFFICULTY_FILE).unlink()
    calls_before = sum(b.calls for b in fake_n)
    profile_difficulty(profile_cfg(tmp_path / "p"))
    # the rest of batch 2 (9 records kept, the 10th torn), then batches 3 and 4
    assert sum(b.calls for b in fake_n) - calls_before == 3
    after = json.loads((path / DIFFICULTY_FILE).read_text())
    assert after["samples"] == before["samples"] and after["fingerprint"] == before["fingerprint"]


def test_a_finished_profile_is_reused_and_relabelled_without_generating(tmp_path, fake_n):
    path = profile_difficulty(profile_cfg(tmp_path / "p"))
    made = len(fake_n)
    assert profile_difficulty(profile_cfg(tmp_path / "p")) == path
    # another threshold: the same generations, labels recomputed from the records
    profile_difficulty(profile_cfg(tmp_path / "p", correct_threshold=1.0))
    assert sum(b.calls for b in fake_n[made:]) == 0
    assert load_difficulty(path).settings["correct_threshold"] == 1.0


def test_another_profile_in_the_same_directory_is_refused(tmp_path, fake_n):
    profile_difficulty(profile_cfg(tmp_path / "p"))
    with pytest.raises(HarnessError, match="different configuration"):
        profile_difficulty(profile_cfg(tmp_path / "p", num_generations=3))
    with pytest.raises(UsageError, match="not a profile of synth_count_train"):
        profile_difficulty(profile_cfg(tmp_path / "p", task="synth_count"))


def test_accepted_outputs_are_the_answers_the_scorer_accepts(tmp_path, fake_n):
    path = profile_difficulty(profile_cfg(tmp_path / "p", limit=10))
    accepted = accepted_outputs(path)
    task = make_task(SPLIT)
    assert set(accepted) == {i for i in range(10) if i % 5}  # hard samples have none
    for i, outputs in accepted.items():
        gold = task.target(task.make_sample(i), ModelConventions())
        assert outputs == [gold] * (i % 5)


@pytest.mark.parametrize("kw, message", [
    ({"num_generations": 1}, "at least 2 answers per prompt"),
    ({"temperature": 0.0}, "give a temperature > 0"),
    ({"correct_threshold": 0.0}, "--correct_threshold must be > 0"),
    ({"holdout": 20000}, "none would be left to profile"),
    ({"task": "synth_cls_id:mc"}, "open-ended form"),
    ({"task": "nope"}, "unknown task or suite 'nope'"),
    ({"limit": 5, "subsample": 5}, "exclude each other"),
])
def test_bad_profile_options(tmp_path, fake_n, kw, message):
    with pytest.raises((UsageError, KeyError), match=message):
        profile_difficulty(profile_cfg(tmp_path / "p", **kw))
    assert not fake_n  # refused before a backend was made


def test_load_difficulty_errors(tmp_path, fake_n):
    with pytest.raises(UsageError, match="no such directory"):
        load_difficulty(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a finished difficulty profile"):
        load_difficulty(tmp_path / "empty")
    path = profile_difficulty(profile_cfg(tmp_path / "p"))
    doc = json.loads((path / DIFFICULTY_FILE).read_text())
    doc["samples"][0]["label"] = "easy" if doc["samples"][0]["label"] != "easy" else "hard"
    (path / DIFFICULTY_FILE).write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="inconsistent"):
        load_difficulty(path)
    (path / DIFFICULTY_FILE).write_text("{not json")
    with pytest.raises(UsageError, match="damaged"):
        load_difficulty(path / DIFFICULTY_FILE)


def test_cli_prints_the_counts_and_the_path(tmp_path, fake_n, capsys):
    out_dir = tmp_path / "p"
    assert main(["profile-difficulty", "--model", "fake-model", "--backend", "fake-n", "--task", "synth_cls",
                 "--num_generations", "4", "--limit", "20", "--batch_size", "4", "--output_path", str(out_dir),
                 "--no_progress"]) == 0
    out = capsys.readouterr().out
    for label, n in (("easy", 4), ("medium", 12), ("hard", 4), ("total", 20)):
        assert any(line.split()[:2] == [label, str(n)] for line in out.splitlines()), out
    assert str(out_dir / DIFFICULTY_FILE) in out


@pytest.mark.parametrize("args, message", [
    (["--num_generations", "1"], "at least 2 answers"),
    (["--temperature", "0"], "temperature > 0"),
    (["--limit", "0"], "--limit must be >= 1"),
])
def test_cli_bad_inputs_are_one_line(capsys, args, message):
    assert main(["profile-difficulty", "--model", "tiny", "--task", "synth_cls", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error:") and err.count("\n") == 0 and message in err


# ------------------------------------------------------------------ the tiny model


@pytest.mark.slow
def test_tiny_model_profile_is_deterministic_resumable_and_reused(tmp_path, tiny_model_dir, no_git, monkeypatch):
    cfg = dict(model="tiny", task="synth_cls", num_generations=4, limit=16, batch_size=4, progress=False)
    first = profile_difficulty(ProfileConfig(**cfg, output_path=str(tmp_path / "a")))
    diff = load_difficulty(first)
    assert diff.profiled == 16 and sum(diff.counts.values()) == 16 and set(diff.labels.values()) <= set(LABELS)
    assert diff.cost["completions"] == 64 and diff.cost["generated_tokens"] >= 64  # at least one token each
    records = [json.loads(x) for x in (first / "records" / f"{SPLIT}.jsonl").read_text().splitlines()]
    assert all(len(r["outputs"]) == 4 and len(r["sample_scores"]) == 4 for r in records)
    assert len({tuple(r["outputs"]) for r in records}) > 1

    # interrupted after two of four batches, then resumed: what an uninterrupted run gives
    second = tmp_path / "b"
    second.mkdir()
    for name in ("config.json", "provenance.json"):
        (second / name).write_text((first / name).read_text())
    (second / "records").mkdir()
    kept = (first / "records" / f"{SPLIT}.jsonl").read_text().splitlines(keepends=True)[:8]
    (second / "records" / f"{SPLIT}.jsonl").write_text("".join(kept))
    resumed = load_difficulty(profile_difficulty(ProfileConfig(**cfg, output_path=str(second))))
    assert resumed.labels == diff.labels and resumed.fingerprint == diff.fingerprint
    again = [json.loads(x) for x in (second / "records" / f"{SPLIT}.jsonl").read_text().splitlines()]
    assert [r["outputs"] for r in again] == [r["outputs"] for r in records]

    # a finished profile is read, not rerun: no model is loaded
    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("harness.backends.hf.HFBackend.__init__", no_model)
    assert load_difficulty(profile_difficulty(ProfileConfig(**cfg, output_path=str(first)))).labels == diff.labels
