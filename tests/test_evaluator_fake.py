"""harness.evaluator with a fake backend: records, failures, resume, rescoring, config checks."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from dataclasses import replace  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from harness.atomic import read_json  # noqa: E402
from harness.backends.base import SamplingParams  # noqa: E402
from harness.conventions import ModelConventions  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.evaluator import (
    _generate_and_score,  # noqa: E402
    run_eval,  # noqa: E402
)
from harness.protocol import STRICT  # noqa: E402
from harness.records import read_records  # noqa: E402
from harness.rescoring import score_predictions  # noqa: E402
from harness.rundir import ConfigMismatch, RunDir  # noqa: E402
from harness.taskspec import make_task, split_format  # noqa: E402
from tasks.synthetic.families import ShapeClassification  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import BATCH, LIMIT, REQUIRED, TASKS, FakeBackend, config, garbage_index  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.fake_backend import BATCH, LIMIT, REQUIRED, TASKS, FakeBackend, config, garbage_index  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_git")




@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """One uninterrupted run, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("clean") / "run"
    backend = FakeBackend()
    result = run_eval(config(path), backend=backend)
    return path, result, backend


def test_records_and_aggregates_written(clean_run):
    path, result, backend = clean_run
    assert result.run_dir == path and result.resumed is False
    run = RunDir(path)
    for spec in TASKS:
        records = run.read(spec)
        assert len(records) == LIMIT
        assert sorted(r["index"] for r in records) == list(range(LIMIT))
        for r in records:
            assert REQUIRED <= set(r), REQUIRED - set(r)
            assert r["task"] == spec and r["sample_id"] == f"{r['index']:06d}"
            assert r["images"] == [f"synthetic://{spec.split(':')[0]}/{r['index']}"]
            assert isinstance(r["prompt"], str) and r["prompt"]
            assert r["latency_s"] >= 0
            if garbage_index(r["index"]):
                assert r["output"] == "blah"
                assert r["scores"][make_task(*split_format(spec)).primary_metric] == 0.0
            else:
                assert r["failure"] is None
                assert r["scores"][make_task(*split_format(spec)).primary_metric] == 1.0
    assert read_json(path / "aggregates.json") == result.aggregates
    assert [a["task"] for a in result.aggregates] == TASKS
    cfg = read_json(path / "config.json")
    assert cfg["tasks"] == TASKS and cfg["identity"]["model_fingerprint"] == "fake-weights-0"
    assert cfg["conventions"] == ModelConventions().to_dict() and cfg["profile_settings"]["name"] == "strict"
    prov = read_json(path / "provenance.json")
    assert prov["model"]["fingerprint"] == "fake-weights-0" and set(prov["datasets"]) == set(TASKS)
    assert prov["git"] == {"commit": "test"} and prov["seed"] == 0
    # every planned sample was asked for exactly once, in batches of at most BATCH
    assert sorted(k for c in backend.calls for k in c) == sorted((t, i) for t in TASKS for i in range(LIMIT))
    assert max(len(c) for c in backend.calls) == BATCH


def test_aggregate_values(clean_run):
    _, result, _ = clean_run
    by_task = {a["task"]: a for a in result.aggregates}
    cls = by_task["synth_cls_id"]
    assert cls["n"] == LIMIT and cls["role"] == "id" and cls["family"] == "classification"
    assert cls["metrics"]["acc"]["value"] == pytest.approx(0.6)  # 6 of 10 gold answers
    lo, hi = cls["metrics"]["acc"]["ci"]
    assert 0.0 <= lo <= 0.6 <= hi <= 1.0
    assert cls["parse_failures"] == 0  # "blah" is a wrong label, not a parse failure
    ground = by_task["synth_ground_id"]
    assert ground["metrics"]["acc@0.5"]["value"] == pytest.approx(0.6)
    assert ground["parse_failures"] == 4  # "blah" has no box
    mc = by_task["synth_count_arith:mc"]
    assert mc["role"] == "ood" and mc["primary_metric"] == "acc" and set(mc["metrics"]) == {"acc"}
    assert mc["metrics"]["acc"]["value"] == pytest.approx(0.6) and mc["parse_failures"] == 4


def test_sampling_params(clean_run):
    _, _, backend = clean_run
    expected = {"synth_cls_id": 8, "synth_ground_id": 24, "synth_count_arith:mc": 6}
    for task, params in backend.params:
        assert params.max_new_tokens == expected[task] == make_task(*split_format(task)).max_new_tokens
        assert params.greedy and params.n == 1
    seeds = [p.seed for _, p in backend.params]
    assert len(set(seeds)) == len(seeds)  # per-batch seeds


def test_failed_generation_becomes_one_failed_record(tmp_path):
    backend = FakeBackend(fail={("synth_cls_id", 5)})
    result = run_eval(config(tmp_path / "run", tasks=["synth_cls_id"]), backend=backend)
    records = {r["index"]: r for r in RunDir(tmp_path / "run").read("synth_cls_id")}
    assert len(records) == LIMIT
    bad = records[5]
    assert bad["failure"].startswith("generation error: OSError: cannot identify image file")
    assert bad["output"] == "" and bad["answer"] is None and bad["parsed"] is None
    assert bad["scores"] == {"acc": 0.0}
    # the rest of its batch (4..7) is scored normally
    for i in (4, 7):
        assert records[i]["failure"] is None and records[i]["scores"] == {"acc": 1.0}
    assert records[6]["output"] == "blah" and records[6]["scores"] == {"acc": 0.0}
    agg = result.aggregates[0]
    assert agg["n"] == LIMIT and agg["parse_failures"] == 1
    assert agg["metrics"]["acc"]["value"] == pytest.approx(0.5)  # indices 1, 2, 4, 7, 8 correct
    # rescoring keeps the sample failed (it never reached the model)
    rescored = score_predictions("synth_cls_id", RunDir(tmp_path / "run").records_path("synth_cls_id"))
    assert rescored == agg


def test_short_backend_answer_does_not_lose_samples(tmp_path):
    # A backend that returns fewer outputs than prompts must not silently drop samples.
    backend = FakeBackend(drop_last=True)
    result = run_eval(config(tmp_path / "run", tasks=["synth_cls_id"]), backend=backend)
    records = RunDir(tmp_path / "run").read("synth_cls_id")
    assert sorted(r["index"] for r in records) == list(range(LIMIT))
    assert all(r["failure"] is None for r in records)  # retried one by one, every sample was answered
    assert result.aggregates[0]["n"] == LIMIT
    assert result.aggregates[0]["metrics"]["acc"]["value"] == pytest.approx(0.6)


@pytest.mark.parametrize("k", [1, 4])
def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path, clean_run, k):
    _, clean, _ = clean_run
    path = tmp_path / "run"
    first = FakeBackend(interrupt_after=k)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(path), backend=first)
    run = RunDir(path)
    recorded = {(spec, r["index"]) for spec in TASKS for r in run.read(spec)}
    assert len(recorded) == len(first.asked()) > 0  # whole batches were written before the kill
    assert not (path / "aggregates.json").exists()

    second = FakeBackend()
    result = run_eval(config(path), backend=second)
    assert result.resumed is True
    assert not second.asked() & recorded  # recorded samples are not generated again
    assert second.asked() | recorded == {(t, i) for t in TASKS for i in range(LIMIT)}
    assert result.aggregates == clean.aggregates
    for spec in TASKS:
        assert len(run.read(spec)) == LIMIT


def test_resume_after_torn_write(tmp_path, clean_run):
    _, clean, _ = clean_run
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(path), backend=FakeBackend(interrupt_after=2))
    records_file = RunDir(path).records_path("synth_cls_id")
    lines = records_file.read_text().splitlines(keepends=True)
    assert len(lines) == 8
    # the kill hit in the middle of the second batch's write: its last record is half written
    records_file.write_text("".join(lines[:7]) + lines[7][: len(lines[7]) // 2])
    second = FakeBackend()
    result = run_eval(config(path), backend=second)
    assert ("synth_cls_id", 7) in second.asked()
    # the torn record's batch is generated whole again (sampling draws for the whole batch), as an
    # uninterrupted run generated it; only its lost record is written (LIMIT records below, no duplicate)
    assert [("synth_cls_id", i) for i in range(4, 8)] in second.calls
    assert ("synth_cls_id", 3) not in second.asked()
    assert result.aggregates == clean.aggregates
    assert len(read_records(records_file)) == LIMIT


def _seeds(backend):
    return {key: params.seed for call, (_, params) in zip(backend.calls, backend.params, strict=True) for key in call}


def test_resume_after_torn_write_keeps_batch_boundaries(tmp_path, clean_run):
    # The evaluator's docstring: "Batches restart at the same boundaries, so a resumed run computes
    # exactly what an uninterrupted one would have." The rest of a torn batch must keep its
    # batch-mates and sampling seed rather than be merged into the next batch.
    _, _, clean_backend = clean_run
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(path), backend=FakeBackend(interrupt_after=2))
    records_file = RunDir(path).records_path("synth_cls_id")
    lines = records_file.read_text().splitlines(keepends=True)
    records_file.write_text("".join(lines[:7]) + lines[7][:10])
    second = FakeBackend()
    run_eval(config(path), backend=second)
    clean_seeds, resumed_seeds = _seeds(clean_backend), _seeds(second)
    assert {k: resumed_seeds[k] for k in resumed_seeds} == {k: clean_seeds[k] for k in resumed_seeds}


def test_rerun_of_finished_run_generates_nothing(tmp_path):
    path = tmp_path / "run"
    first = run_eval(config(path), backend=FakeBackend())
    again = FakeBackend()
    second = run_eval(config(path), backend=again)
    assert again.calls == [] and second.resumed is True
    assert second.aggregates == first.aggregates


@pytest.mark.parametrize("spec", TASKS)
def test_rescoring_reproduces_eval_aggregates(clean_run, spec):
    path, result, _ = clean_run
    agg = next(a for a in result.aggregates if a["task"] == spec)
    rescored = score_predictions(spec, RunDir(path).records_path(spec))
    assert rescored == agg


def test_rescoring_detection_with_corpus_metrics(tmp_path):
    path = tmp_path / "run"
    result = run_eval(config(path, tasks=["synth_detect_base"], limit=6, n_boot=20),
                      backend=FakeBackend(specs=["synth_detect_base"], limit=6))
    agg = result.aggregates[0]
    assert {"f1", "precision", "recall", "map", "map50"} == set(agg["metrics"])
    assert agg["metrics"]["f1"]["value"] == pytest.approx(4 / 6)
    assert 0.0 < agg["metrics"]["map"]["value"] < 1.0
    assert score_predictions("synth_detect_base", RunDir(path).records_path("synth_detect_base")) == agg


def test_rescoring_under_another_profile_and_plain_predictions(clean_run, tmp_path):
    path, result, _ = clean_run
    recs = RunDir(path).read("synth_cls_id")
    # a bare predictions file (no run config next to it) with verbose outputs
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": r["sample_id"], "output": f"It is a {r['target']}."}) + "\n"
                             for r in recs))
    strict = score_predictions("synth_cls_id", preds, n_boot=10)
    lenient = score_predictions("synth_cls_id", preds, profile="lenient", n_boot=10)
    assert strict["metrics"]["acc"]["value"] == 0.0 and strict["profile"] == "strict"
    assert lenient["metrics"]["acc"]["value"] == 1.0 and lenient["profile"] == "lenient"
    assert lenient["n"] == LIMIT


def test_rescoring_rejects_unknown_samples(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"sample_id": "999999", "output": "circle"}) + "\n")
    with pytest.raises(KeyError, match="999999"):
        score_predictions("synth_cls_id", preds)
    with pytest.raises(UsageError, match="no predictions file"):
        score_predictions("synth_cls_id", tmp_path / "missing.jsonl")


def test_config_mismatch_on_rerun(tmp_path):
    path = tmp_path / "run"
    run_eval(config(path, tasks=["synth_cls_id"], limit=3), backend=FakeBackend(specs=["synth_cls_id"], limit=3))
    with pytest.raises(ConfigMismatch, match="seed: recorded 0, now 1"):
        run_eval(config(path, tasks=["synth_cls_id"], limit=3, seed=1),
                 backend=FakeBackend(specs=["synth_cls_id"], limit=3))
    with pytest.raises(ConfigMismatch, match="limit: recorded 3, now 2"):
        run_eval(config(path, tasks=["synth_cls_id"], limit=2), backend=FakeBackend(specs=["synth_cls_id"], limit=3))
    # --overwrite starts over
    fresh = FakeBackend(specs=["synth_cls_id"], limit=3)
    result = run_eval(config(path, tasks=["synth_cls_id"], limit=3, seed=1, overwrite=True), backend=fresh)
    assert result.resumed is False and len(fresh.asked()) == 3


def test_default_output_path_depends_on_identity():
    a = config(None)
    assert a.default_output_path().startswith("harness_runs/fake-model-")
    assert a.default_output_path() == config(None).default_output_path()
    assert a.default_output_path() != config(None, seed=1).default_output_path()
    assert a.default_output_path() == config(None, tasks=["synth_cls_id"]).default_output_path()  # tasks can be added


def test_corrupt_image_file_is_one_failed_record(tmp_path):
    """A real file that is not an image: ImageRef.from_path streams past it and the
    sample fails alone with the decoder's reason, through the real evaluator."""
    from harness.backends.base import Backend
    from harness.sample import ImageRef

    good = tmp_path / "good.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    refs = [ImageRef.from_path(str(good)), ImageRef.from_path(str(bad)), ImageRef.from_path(str(good))]
    assert refs[0].size == (20, 10) and refs[1].size == (0, 0)

    class Decoding(Backend):
        name = "decoding"
        conventions = ModelConventions()

        def generate(self, prompts, params):
            return [[f"{p.images[0].load().size[0]}"] for p in prompts]

        def fingerprint(self):
            return "decoding"

    class FileTask(ShapeClassification):
        name, split, size = "files", "files", 3

        def make_sample(self, index):
            sample = super().make_sample(index)
            return replace(sample, images=(refs[index],), target="20")

    backend = Decoding()
    task = FileTask()
    records = _generate_and_score(backend, task, [(i, task.make_sample(i)) for i in range(3)],
                                  SamplingParams(), backend.conventions, STRICT)
    assert [r["failure"] is None for r in records] == [True, False, True]
    assert "generation error" in records[1]["failure"] and "bad.png" in records[1]["failure"]
    assert [r["scores"]["acc"] for r in records] == [1.0, 0.0, 1.0]
