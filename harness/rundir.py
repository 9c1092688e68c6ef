"""A run directory: the durable result of one eval.

    <run>/config.json        resolved configuration (what decides the numbers)
    <run>/provenance.json    versions, git commit, model and dataset fingerprints
    <run>/records/<task>.jsonl  per-sample records (append-only)
    <run>/aggregates.json    per-task aggregates with bootstrap CIs

Re-running with the same configuration and directory resumes; a different
configuration is refused rather than silently mixed into the same records.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from harness.atomic import write_json_atomic, write_text_atomic
from harness.errors import HarnessError, UsageError
from harness.records import RecordWriter, iter_records, read_records
from harness.validation import identity_diff, read_json_file

# What the evaluator relies on in every record it reads back.
RECORD_KEYS = ("sample_id", "index", "scores")


def retry_on_resume(record: dict[str, Any]) -> bool:
    """A record of a sample whose generation failed (the backend raised: an engine error, a
    server that was down, an unreadable image): a resumed run generates it again."""
    failure = record.get("failure")
    return isinstance(failure, str) and failure.startswith("generation error")


class ConfigMismatch(HarnessError):
    """The run directory holds a run with another configuration."""


def _safe(name: str) -> str:
    return name.replace("/", "_").replace(":", "@")


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def records_path(self, task_full_name: str) -> Path:
        return self.path / "records" / f"{_safe(task_full_name)}.jsonl"

    def recorded_config(self) -> dict[str, Any] | None:
        """The config of the run already here (None if there is none)."""
        if not self.config_path.exists():
            return None
        cfg = read_json_file(self.config_path, "run config")
        if not isinstance(cfg, dict):
            raise UsageError(f"run config {self.config_path} is not a JSON object; fix it, or --overwrite the run")
        return cfg

    def check_identity(self, identity: dict[str, Any], keys: set[str] | None = None) -> None:
        """Refuse to continue a recorded run whose identity differs (on ``keys``, default:
        all of ``identity``'s); a check before a model is loaded passes a partial identity."""
        cfg = self.recorded_config()
        if cfg is None:
            return
        old = cfg.get("identity", {})
        diff = identity_diff(old, identity, keys)
        if diff:
            def at(d: dict, key: str):
                for part in key.split("."):
                    d = d.get(part) if isinstance(d, dict) else None
                return d

            lines = "\n".join(f"  {k}: recorded {at(old, k)!r}, now {at(identity, k)!r}" for k in diff)
            raise ConfigMismatch(
                f"{self.path} holds a run with a different configuration:\n{lines}\n"
                "Use another --output_path, or --overwrite to discard the old run."
            )

    def prepare(self, identity: dict[str, Any], config: dict[str, Any], overwrite: bool = False) -> bool:
        """Create or reopen the run. Returns True when resuming an existing run."""
        if overwrite and self.path.exists():
            # renamed away first: a kill while deleting leaves a hidden leftover, never a
            # half-deleted run (records without config.json) that no command accepts
            doomed = self.path.with_name(f".{self.path.name}.deleting-{os.getpid()}")
            os.rename(self.path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        resuming = self.config_path.exists()
        if resuming:
            self.check_identity(identity)
        write_json_atomic(self.config_path, {**config, "identity": identity})
        return resuming

    def read(self, task_full_name: str, repair: bool = False) -> list[dict[str, Any]]:
        return read_records(self.records_path(task_full_name), repair=repair, required=RECORD_KEYS)

    def iter(self, task_full_name: str) -> Iterator[dict[str, Any]]:
        """The task's records one at a time (strict: after the run repaired the file)."""
        return iter_records(self.records_path(task_full_name), required=RECORD_KEYS)

    def writer(self, task_full_name: str, rank: int | None = None) -> RecordWriter:
        """Appends to the task's records file, or with ``rank`` to that process's shard
        (data-parallel eval: every process writes its own file; :meth:`consolidate` merges)."""
        return RecordWriter(self.records_path(task_full_name) if rank is None else self.shard_path(task_full_name, rank))

    def shard_path(self, task_full_name: str, rank: int) -> Path:
        return self.path / "records" / f"{_safe(task_full_name)}.rank{rank}.jsonl"

    def shard_paths(self, task_full_name: str) -> list[Path]:
        folder = self.path / "records"
        return sorted(folder.glob(f"{_safe(task_full_name)}.rank*.jsonl")) if folder.is_dir() else []

    def consolidate(self, task_full_name: str) -> list[dict[str, Any]]:
        """The task's records, made whole: shards of a data-parallel run merged into the
        task's file, torn lines dropped, and records of samples whose generation failed
        (an engine or server error, a sample that never reached the model) dropped so
        that they are generated again. The file is rewritten (atomically, in split order)
        only when something changed; shard files are removed after that."""
        main = self.records_path(task_full_name)
        shards = self.shard_paths(task_full_name)
        records = read_records(main, repair=True, required=RECORD_KEYS)
        n_main = len(records)
        for shard in shards:
            records += read_records(shard, required=RECORD_KEYS)
        kept: dict[str, dict[str, Any]] = {}
        for rec in records:
            if not retry_on_resume(rec) and rec["sample_id"] not in kept:
                kept[rec["sample_id"]] = rec
        if shards or len(kept) != n_main:
            ordered = sorted(kept.values(), key=lambda r: r["index"])
            write_text_atomic(main, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in ordered))
            for shard in shards:
                shard.unlink()
            return ordered
        return records

    def write_provenance(self, provenance: dict[str, Any]) -> None:
        write_json_atomic(self.path / "provenance.json", provenance)

    def write_aggregates(self, aggregates: list[dict[str, Any]]) -> None:
        write_json_atomic(self.path / "aggregates.json", aggregates)

    def read_config(self) -> dict[str, Any]:
        cfg = self.recorded_config()
        if cfg is None:
            raise UsageError(f"{self.path} is not a run directory (no config.json)")
        return cfg
