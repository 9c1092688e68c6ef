"""The pipelined eval loop (harness/pipeline.py): prepared in worker processes, scored in a
thread, and the same records as the serial loop, whatever fails where."""

from __future__ import annotations

import json
import os
import signal

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.cli import main, parse_workers  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.evaluator import run_eval  # noqa: E402
from harness.pipeline import Batch, OrderedSink, plan_batches, resolve_num_workers  # noqa: E402
from harness.rundir import RunDir  # noqa: E402
from harness.taskspec import make_task  # noqa: E402

try:
    from fake_backend import LIMIT, TASKS, FakeBackend, config
except ImportError:  # pragma: no cover
    from tests.fake_backend import LIMIT, TASKS, FakeBackend, config

pytestmark = pytest.mark.usefixtures("no_git")


class PreparingFake(FakeBackend):
    """A FakeBackend with a CPU part: prepare() looks the samples up (in the worker) and
    generate() uses that, recording which process prepared each batch."""

    def __init__(self, fail_prepare=(), kill_worker_at=None, **kw) -> None:
        super().__init__(**kw)
        self.fail_prepare = set(fail_prepare)  # {(task, index)}: prepare raises for that batch
        self.kill_worker_at = kill_worker_at  # (task, index): the worker SIGKILLs itself there
        self.prepared_by: list[int | None] = []

    def prepare(self, prompts, params):
        found = [self.lookup[(p.images[0].uri, p.text)] for p in prompts]
        for t, i, _ in found:
            if (t, i) == self.kill_worker_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if (t, i) in self.fail_prepare:
                raise OSError(f"cannot decode image of sample {i}")
        return {"found": found, "pid": os.getpid()}

    def generate(self, prompts, params, prepared=None):
        if prepared is not None:
            expect = [self.lookup[(p.images[0].uri, p.text)] for p in prompts]
            assert [tuple(x) for x in prepared["found"]] == expect, "prepared inputs of another batch"
        self.prepared_by.append(None if prepared is None else prepared["pid"])
        return super().generate(prompts, params)


def _records(path) -> dict[str, list[dict]]:
    run = RunDir(path)
    out = {}
    for spec in TASKS:
        lines = run.records_path(spec).read_text().splitlines()
        out[spec] = [{k: v for k, v in json.loads(x).items() if k != "latency_s"} for x in lines]
    return out


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "run"
    result = run_eval(config(path, num_workers=0), backend=PreparingFake())
    return _records(path), result.aggregates


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_prepare_every_batch_and_records_equal_the_serial_run(tmp_path, serial, workers):
    backend = PreparingFake()
    result = run_eval(config(tmp_path / "run", num_workers=workers), backend=backend)
    assert _records(tmp_path / "run") == serial[0]  # same records, same order in each file
    assert result.aggregates == serial[1]
    pids = backend.prepared_by
    assert None not in pids and os.getpid() not in pids  # every batch was prepared in a worker
    assert len(set(pids)) == workers


def test_serial_run_prepares_nothing_off_process(tmp_path):
    backend = PreparingFake()
    run_eval(config(tmp_path / "run", num_workers=0), backend=backend)
    assert set(backend.prepared_by) == {None}


def test_a_batch_the_worker_cannot_prepare_goes_the_serial_way(tmp_path, serial):
    # prepare fails for sample 5 (its batch: 4-7); generation fails for it too (a corrupt image):
    # the batch is redone serially, which records the one failure exactly as a serial run does
    bad = ("synth_cls_id", 5)
    serial_path = tmp_path / "serial"
    run_eval(config(serial_path, num_workers=0), backend=PreparingFake(fail=[bad]))
    backend = PreparingFake(fail=[bad], fail_prepare=[bad])
    run_eval(config(tmp_path / "run", num_workers=1), backend=backend)
    got, want = _records(tmp_path / "run"), _records(serial_path)
    assert got == want
    failed = [r for r in got["synth_cls_id"] if r["failure"]]
    assert [r["index"] for r in failed] == [5] and "cannot identify image" in failed[0]["failure"]
    assert backend.prepared_by.count(None) >= 1  # that batch (then one call per prompt) was not prepared


def test_a_killed_worker_turns_the_rest_serial_without_losing_a_sample(tmp_path, serial, caplog):
    backend = PreparingFake(kill_worker_at=("synth_ground_id", 2))
    result = run_eval(config(tmp_path / "run", num_workers=1), backend=backend)
    assert _records(tmp_path / "run") == serial[0]
    assert result.aggregates == serial[1]
    assert "prepared serially" in caplog.text
    assert backend.prepared_by[0] is not None and backend.prepared_by[-1] is None


def test_scoring_error_in_the_thread_stops_the_run_and_keeps_earlier_batches(tmp_path, monkeypatch):
    import harness.evaluator as evaluator

    real = evaluator.score_output

    def score(task, sample, index, *a, **kw):
        if task.full_name == "synth_ground_id" and index == 5:
            raise ZeroDivisionError("a bug in a scorer")
        return real(task, sample, index, *a, **kw)

    monkeypatch.setattr(evaluator, "score_output", score)
    path = tmp_path / "run"
    with pytest.raises(ZeroDivisionError):
        run_eval(config(path, num_workers=1), backend=PreparingFake())
    run = RunDir(path)
    assert len(run.read("synth_cls_id")) == LIMIT  # the first task was complete and written
    assert sorted(r["index"] for r in run.read("synth_ground_id")) == [0, 1, 2, 3]


@pytest.mark.parametrize("workers", [0, 1])
def test_interrupt_keeps_every_generated_batch_then_resume_is_exact(tmp_path, serial, workers):
    path = tmp_path / "run"
    first = PreparingFake(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(path, num_workers=workers), backend=first)
    run = RunDir(path)
    recorded = {(spec, r["index"]) for spec in TASKS for r in run.read(spec)}
    assert recorded == first.asked() and len(recorded) == 4 + 4 + 2 + 4  # 4 batches: none lost in the queue
    result = run_eval(config(path, num_workers=workers), backend=PreparingFake())
    assert result.aggregates == serial[1]
    assert {s: sorted(r["index"] for r in v) for s, v in _records(path).items()} == \
        {s: sorted(r["index"] for r in v) for s, v in serial[0].items()}


def test_plan_batches_keeps_block_boundaries_on_resume():
    task = make_task("synth_cls_id")
    chosen = {task.full_name: list(range(10))}
    done = {task.full_name: {f"{i:06d}" for i in (0, 1, 2, 3, 5)}}
    got = [(b.block, [i for i, _ in b.items], b.recorded) for b in plan_batches([task], chosen, done, lambda b: True, 4)]
    # block 0 was done; block 1 is generated whole (as sampling draws for the whole batch), 5 not written again
    assert got == [(1, [4, 5, 6, 7], {"000005"}), (2, [8, 9], set())]
    mine = [b.block for b in plan_batches([task], chosen, {task.full_name: set()}, lambda b: b % 2 == 1, 4)]
    assert mine == [1]
    assert isinstance(Batch(0, 0, []).ids(), list)


def test_ordered_sink_runs_in_order_and_reports_the_first_error():
    done = []
    sink = OrderedSink(threaded=True)
    for i in range(5):
        sink.submit(lambda i=i: done.append(i))
    sink.close()
    assert done == [0, 1, 2, 3, 4]

    sink = OrderedSink(threaded=True)
    sink.submit(lambda: done.append("a"))
    sink.submit(lambda: 1 / 0)
    sink.submit(lambda: done.append("never"))
    with pytest.raises(ZeroDivisionError):
        sink.close()
    assert done[-1] == "a"


def test_num_workers_options():
    assert parse_workers("auto") is None and parse_workers("3") == 3
    with pytest.raises(UsageError, match="num_workers"):
        parse_workers("many")
    with pytest.raises(UsageError, match=">= 0"):
        parse_workers("-1")
    assert resolve_num_workers(0) == 0 and resolve_num_workers(2) == 2
    assert resolve_num_workers(None) in (0, 1)
    with pytest.raises(UsageError, match="num_workers"):
        config("unused", num_workers=-2).validate(check_backend=False)


def test_cli_rejects_bad_num_workers(capsys):
    assert main(["eval", "--model", "tiny", "--tasks", "synth_cls_id", "--num_workers", "lots"]) == 2
    assert "--num_workers" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_model_records_equal_for_every_worker_count(tiny_model_dir, tmp_path):
    """The hf backend's prepare() (processor run in a worker, tensors sent back) gives the
    inputs generate() would have made: the same outputs, parses and scores; sampled decoding too."""
    from harness.evaluator import EvalConfig

    def records(path):
        out = {}
        for f in sorted((path / "records").glob("*.jsonl")):
            out[f.name] = [{k: v for k, v in json.loads(x).items() if k != "latency_s"}
                           for x in f.read_text().splitlines()]
        return out

    tasks = ["synth_cls_id", "synth_ground_id", "synth_count_arith:mc", "synth_detect_base"]
    runs = {}
    for workers in (0, 1, 2):
        path = tmp_path / f"w{workers}"
        cfg = EvalConfig(model="tiny", tasks=tasks, limit=10, batch_size=4, n_boot=50, output_path=str(path),
                         progress=False, num_workers=workers, temperature=0.7, num_samples=2)
        aggregates = run_eval(cfg).aggregates
        runs[workers] = (records(path), aggregates)
    assert sum(len(v) for v in runs[0][0].values()) == 40
    assert runs[1] == runs[0] and runs[2] == runs[0]
