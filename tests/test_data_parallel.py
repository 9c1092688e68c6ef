"""Data-parallel eval (torchrun, 2 CPU processes) equals one process; shards resume; failed generations are retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_backend import FakeBackend, config

from harness.cli import _without_option, main
from harness.distributed import World
from harness.evaluator import run_eval
from harness.rundir import RunDir

TASKS = "synth_cls_id,synth_ground_id"
ARGS = ["--model", "tiny", "--tasks", TASKS, "--limit", "20", "--batch_size", "4", "--no_progress", "--bootstrap", "50"]


def harness(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", "eval", *argv], capture_output=True, text=True,
                          env=env, timeout=600)


def records(run: Path, task: str) -> list[dict]:
    out = [json.loads(line) for line in (run / "records" / f"{task}.jsonl").read_text().splitlines()]
    for r in out:
        r.pop("latency_s", None)
    return sorted(out, key=lambda r: r["index"])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    run = tmp_path_factory.mktemp("dp") / "one"
    proc = harness(*ARGS, "--output_path", str(run))
    assert proc.returncode == 0, proc.stderr
    return run


def test_two_processes_equal_one(single, tmp_path):
    run = tmp_path / "two"
    proc = harness(*ARGS, "--output_path", str(run), "--num_processes", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("synth_cls_id") == 1  # one table, printed by rank 0
    assert json.loads((run / "aggregates.json").read_text()) == json.loads((single / "aggregates.json").read_text())
    for task in TASKS.split(","):
        assert records(run, task) == records(single, task)
    assert sorted(p.name for p in (run / "records").iterdir()) == ["synth_cls_id.jsonl", "synth_ground_id.jsonl"]


def test_an_interrupted_data_parallel_run_resumes_from_its_shards(single, tmp_path):
    """A kill leaves per-rank shard files (one with a torn last line) and no merged file:
    rerunning (here with one process) merges them, generates only what is missing and
    ends with exactly the single-process result."""
    run = tmp_path / "resumed"
    (run / "records").mkdir(parents=True)
    (run / "config.json").write_text((single / "config.json").read_text())
    for task in TASKS.split(","):
        lines = (single / "records" / f"{task}.jsonl").read_text().splitlines()
        by_block = {0: [], 1: []}
        for line in lines:
            by_block[(json.loads(line)["index"] // 4) % 2].append(line)
        # rank 0 finished two of its blocks, rank 1 one block and half a line of the next
        (run / "records" / f"{task}.rank0.jsonl").write_text("".join(x + "\n" for x in by_block[0][:8]))
        (run / "records" / f"{task}.rank1.jsonl").write_text("".join(x + "\n" for x in by_block[1][:4])
                                                              + by_block[1][4][:30])
    proc = harness(*ARGS, "--output_path", str(run))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "aggregates.json").read_text()) == json.loads((single / "aggregates.json").read_text())
    for task in TASKS.split(","):
        assert records(run, task) == records(single, task)
        assert not list((run / "records").glob(f"{task}.rank*"))


def test_failed_generations_are_retried_on_resume(tmp_path):
    spec = ["synth_cls_id"]
    cfg = config(tmp_path / "run", tasks=spec, limit=8)
    first = run_eval(cfg, backend=FakeBackend(specs=spec, limit=8, fail={("synth_cls_id", 5)}))
    assert first.aggregates[0]["parse_failures"] == 1  # the failed sample ("blah" answers are wrong labels)
    failed = [r for r in RunDir(first.run_dir).read("synth_cls_id") if r["failure"]]
    assert any(r["failure"].startswith("generation error") for r in failed)
    again = FakeBackend(specs=spec, limit=8)  # the server is back, the image readable
    second = run_eval(cfg, backend=again)
    # the failed sample's batch is generated again whole (composed and seeded as a run without the
    # failure generated it); only the failed sample's record is written again
    assert again.asked() == {("synth_cls_id", i) for i in range(4, 8)}
    recs = RunDir(second.run_dir).read("synth_cls_id")
    assert sorted(r["index"] for r in recs) == list(range(8))  # the retried one appended last
    assert second.aggregates[0]["parse_failures"] == 0
    assert second.aggregates[0]["metrics"]["acc"]["value"] > first.aggregates[0]["metrics"]["acc"]["value"]


def test_consolidate_merges_shards_and_drops_torn_lines(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "records").mkdir()
    rec = lambda i, failure=None: json.dumps({"sample_id": f"{i:06d}", "index": i, "scores": {"acc": 1.0},  # noqa: E731
                                              "failure": failure})
    run.records_path("t").write_text(rec(0) + "\n" + rec(4, "generation error: OSError: x") + "\n")
    run.shard_path("t", 0).write_text(rec(8) + "\n")
    run.shard_path("t", 1).write_text(rec(4) + "\n" + rec(0) + "\n" + rec(12)[:10])
    merged = run.consolidate("t")
    assert [r["index"] for r in merged] == [0, 4, 8]
    assert run.shard_paths("t") == [] and [r["index"] for r in run.read("t")] == [0, 4, 8]
    assert run.consolidate("t") == run.read("t")  # nothing to do: unchanged


def test_blocks_are_dealt_round_robin():
    world = World(rank=1, size=3, local_rank=1)
    assert [b for b in range(9) if world.owns(b)] == [1, 4, 7] and not world.main
    assert World().owns(5) and World().main


def test_num_processes_options(capsys, monkeypatch):
    assert _without_option(["eval", "--num_processes", "2", "--limit", "3", "--num_processes=4"], "--num_processes") \
        == ["eval", "--limit", "3"]
    assert main(["eval", "--model", "tiny", "--tasks", "synth_cls_id", "--num_processes", "0"]) == 2
    assert "--num_processes must be >= 1" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["eval", "--model", "tiny", "--tasks", "synth_cls_id", "--num_processes", "2"]) == 2
    assert "under torchrun or accelerate launch" in capsys.readouterr().err
