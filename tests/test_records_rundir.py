"""harness.records, harness.rundir, harness.atomic: durable, resumable run directories."""

from __future__ import annotations

import json

import pytest

from harness.atomic import read_json, write_json_atomic, write_text_atomic
from harness.errors import UsageError
from harness.records import RecordWriter, read_records
from harness.rundir import ConfigMismatch, RunDir

# ----------------------------------------------------------------------------- records


def test_append_and_read(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    w = RecordWriter(path)  # creates the parent directory
    assert path.parent.is_dir()
    w.append([{"a": 1}, {"b": [1, 2]}])
    w.append([{"c": "x"}])
    w.append([])  # nothing to write: no empty line either
    assert read_records(path) == [{"a": 1}, {"b": [1, 2]}, {"c": "x"}]
    assert path.read_text().count("\n") == 3


def test_records_are_json_lines_with_sorted_keys(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordWriter(path).append([{"z": 1, "a": 2}])
    assert path.read_text() == '{"a": 2, "z": 1}\n'


def test_non_json_values_are_stringified(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordWriter(path).append([{"p": tmp_path}])
    assert read_records(path) == [{"p": str(tmp_path)}]


def test_missing_file_reads_empty(tmp_path):
    assert read_records(tmp_path / "nope.jsonl") == []


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    w = RecordWriter(path)
    w.append([{"i": 0}, {"i": 1}])
    full = json.dumps({"i": 2, "output": "a long output"})
    with open(path, "a") as f:
        f.write(full[: len(full) // 2])  # killed mid-write
    before = path.read_text()

    assert read_records(path) == [{"i": 0}, {"i": 1}]
    assert path.read_text() == before  # without repair the file is left alone

    assert read_records(path, repair=True) == [{"i": 0}, {"i": 1}]
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n'
    w.append([{"i": 2}])
    assert read_records(path) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_unrepaired_torn_line_corrupts_the_next_append(tmp_path):
    # Documents why the evaluator must read with repair=True before appending.
    path = tmp_path / "r.jsonl"
    RecordWriter(path).append([{"i": 0}])
    with open(path, "a") as f:
        f.write('{"i": 1, "out')
    RecordWriter(path).append([{"i": 2}, {"i": 3}])
    with pytest.raises(ValueError, match="corrupt record line"):
        read_records(path)


def test_complete_last_line_without_newline_is_kept_and_repaired(tmp_path):
    # A kill between the last '}' and its '\n': the record is complete and must be kept, and
    # the next append must not glue a new record onto the same line.
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')
    assert read_records(path, repair=True) == [{"i": 0}, {"i": 1}]
    RecordWriter(path).append([{"i": 2}])
    assert read_records(path) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_corrupt_line_in_the_middle_raises(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\n{"i": 1, broken\n{"i": 2}\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:2: corrupt record line"):
        read_records(path)
    with pytest.raises(ValueError):
        read_records(path, repair=True)
    assert path.read_text() == '{"i": 0}\n{"i": 1, broken\n{"i": 2}\n'  # never silently rewritten


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"i": 0}\n\n   \n{"i": 1}\n')
    assert read_records(path) == [{"i": 0}, {"i": 1}]


# ----------------------------------------------------------------------------- atomic


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    target = tmp_path / "d" / "x.json"
    for i in range(3):
        write_json_atomic(target, {"i": i, "path": tmp_path})
    assert read_json(target) == {"i": 2, "path": str(tmp_path)}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_write_text_atomic_failure_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    write_text_atomic(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("harness.atomic.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_write_json_atomic_unserialisable_leaves_old_file(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"x": _Circular()})
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


class _Circular:
    """json's default=str turns unknown objects into strings; a str() that raises aborts the dump."""

    def __str__(self):
        raise ValueError("cannot stringify")


# ----------------------------------------------------------------------------- rundir

IDENTITY = {"model": "m", "seed": 0, "limit": 5, "model_args": {"dtype": "float32"}}


def test_prepare_new_then_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.prepare(IDENTITY, {"tasks": ["a"]}) is False
    assert run.config_path.exists()
    assert run.read_config() == {"tasks": ["a"], "identity": IDENTITY}
    assert RunDir(tmp_path / "run").prepare(dict(IDENTITY), {"tasks": ["a", "b"]}) is True
    assert run.read_config()["tasks"] == ["a", "b"]


def test_prepare_mismatch_names_the_key(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare(IDENTITY, {})
    with pytest.raises(ConfigMismatch) as exc:
        run.prepare({**IDENTITY, "seed": 1}, {})
    msg = str(exc.value)
    assert "seed: recorded 0, now 1" in msg
    assert "model:" not in msg and "limit:" not in msg  # only differing keys are listed
    assert "--overwrite" in msg


def test_prepare_mismatch_on_added_or_removed_key(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare(IDENTITY, {})
    with pytest.raises(ConfigMismatch, match="temperature: recorded None, now 0.7"):
        run.prepare({**IDENTITY, "temperature": 0.7}, {})
    with pytest.raises(ConfigMismatch, match="model_args.dtype: recorded 'float32', now 'bfloat16'"):
        run.prepare({**IDENTITY, "model_args": {"dtype": "bfloat16"}}, {})
    # a refused prepare does not touch the recorded configuration
    assert run.read_config()["identity"] == IDENTITY


def test_prepare_overwrite_wipes(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare(IDENTITY, {})
    run.writer("synth_cls_id").append([{"sample_id": "000000", "index": 0, "scores": {}}])
    run.write_aggregates([{"task": "x"}])
    assert run.read("synth_cls_id")
    assert run.prepare({**IDENTITY, "seed": 9}, {}, overwrite=True) is False
    assert run.read("synth_cls_id") == []
    assert not (run.path / "aggregates.json").exists()
    assert run.read_config()["identity"]["seed"] == 9


def test_records_path_is_safe_for_formats_and_slashes(tmp_path):
    run = RunDir(tmp_path)
    assert run.records_path("synth_cls_id:mc") == tmp_path / "records" / "synth_cls_id@mc.jsonl"
    assert run.records_path("org/task") == tmp_path / "records" / "org_task.jsonl"
    rec = {"sample_id": "000000", "index": 0, "scores": {}}
    run.writer("synth_cls_id:mc").append([rec])
    assert run.read("synth_cls_id:mc") == [rec]
    assert run.read("synth_cls_id") == []


def test_provenance_and_aggregates_written(tmp_path):
    run = RunDir(tmp_path)
    run.write_provenance({"seed": 3})
    run.write_aggregates([{"task": "t", "n": 1}])
    assert read_json(tmp_path / "provenance.json") == {"seed": 3}
    assert read_json(tmp_path / "aggregates.json") == [{"task": "t", "n": 1}]


def test_run_records_must_be_harness_records(tmp_path):
    run = RunDir(tmp_path)
    run.writer("synth_cls_id").append([{"sample_id": "000000", "index": 0, "scores": {}}, {"sample_id": "000001"}])
    with pytest.raises(UsageError, match=r"synth_cls_id.jsonl:2: not a record .*sample_id, index, scores"):
        run.read("synth_cls_id")
