"""RecordWriter: every batch reaches the OS at once; fsync at most every sync_interval and at sync()."""

from __future__ import annotations

import os

import pytest

import harness.records
from harness.records import RecordWriter, read_records

try:
    from fake_backend import TASKS, FakeBackend, config
except ImportError:  # pragma: no cover
    from tests.fake_backend import TASKS, FakeBackend, config


@pytest.fixture
def fsyncs(monkeypatch):
    """Paths fsynced, in order."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(harness.records.os, "fsync", spy)
    return seen


def test_batches_are_readable_at_once_and_synced_at_most_every_interval(tmp_path, fsyncs):
    path = tmp_path / "r.jsonl"
    w = RecordWriter(path, sync_interval=3600)
    w.append([{"i": 0}])
    assert len(fsyncs) == 1  # the first batch
    for i in range(1, 5):
        w.append([{"i": i}])
        assert [r["i"] for r in read_records(path)] == list(range(i + 1))  # written through, not buffered
    assert len(fsyncs) == 1
    w.sync()
    w.sync()  # nothing new: no second fsync
    assert fsyncs == [str(path), str(path)]


def test_interval_zero_syncs_every_batch(tmp_path, fsyncs):
    w = RecordWriter(tmp_path / "r.jsonl", sync_interval=0)
    for i in range(3):
        w.append([{"i": i}])
    w.sync()
    assert len(fsyncs) == 3


def test_eval_syncs_each_task_at_its_end(tmp_path, no_git, monkeypatch):
    from harness.evaluator import run_eval
    from harness.rundir import RunDir

    events = []
    append = RecordWriter.append
    monkeypatch.setattr(RecordWriter, "append", lambda self, recs: (events.append(("write", str(self.path))),
                                                                      append(self, recs))[-1])
    monkeypatch.setattr(harness.records.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))))
    run_eval(config(tmp_path / "run"), backend=FakeBackend())
    for task in TASKS:
        path = str(RunDir(tmp_path / "run").records_path(task))
        assert [e for e in events if e[1] == path][-1] == ("fsync", path)  # nothing written after the last fsync
