"""Per-sample records: append-only JSONL, one line per (task, sample).

Appends are flushed per batch, so a SIGKILL loses at most the batch in flight, and
fsynced every few seconds and at the end of a task (see :class:`RecordWriter`). A
torn last line (the process died mid-write) is dropped when the file is reopened,
and the file is repaired before new lines are appended.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.atomic import write_text_atomic
from harness.errors import UsageError

# the types of the keys that readers of a run's records rely on (sorting, joining, averaging)
_TYPES = {"sample_id": (str,), "index": (int,), "scores": (dict,), "doc_id": (int, str)}


def _check(path: Path, lineno: int, rec: Any, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(rec, dict) or any(k not in rec for k in required):
        need = f" with {', '.join(required)}" if required else ""
        raise UsageError(f"{path}:{lineno}: not a record (a JSON object{need}); was the file edited? "
                         "Rerun with --overwrite to start the run afresh")
    for k in required:
        if k in _TYPES and (not isinstance(rec[k], _TYPES[k]) or isinstance(rec[k], bool)):
            raise UsageError(f"{path}:{lineno}: the record's {k!r} is {type(rec[k]).__name__} "
                             f"{json.dumps(rec[k], default=str)[:40]}; was the file edited? "
                             "Rerun with --overwrite to start the run afresh")
    return rec


def iter_records(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The records of a file one at a time, so a split of any size is never held whole.
    Strict: for a file already repaired by :func:`read_records` (a run's file after it
    started), where only whole lines were appended since."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        try:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise UsageError(f"{path}:{i + 1}: corrupt record line; was the file edited during the run?") from None
                yield _check(path, i + 1, rec, required)
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text; was the file edited during the run?") from None


def read_records(path: str | Path, repair: bool = False, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """All complete records in the file. With ``repair``, rewrite it without a torn tail.
    Every record must be a JSON object holding the ``required`` keys."""
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    good_lines: list[str] = []
    torn = False
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text: not a records file") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # only the last line can be torn by a kill
                torn = True
                continue
            raise UsageError(f"{path}:{i + 1}: corrupt record line (not at the end of the file); "
                             "rerun with --overwrite to start the run afresh") from None
        records.append(_check(path, i + 1, rec, required))
        good_lines.append(line)
    if lines[-1].strip():
        # No newline after the last line: a kill right before it. The record may be complete
        # (kept above), but the next append would glue onto its line, so repair that too.
        torn = True
    if torn and repair:
        write_text_atomic(path, "".join(line + "\n" for line in good_lines))
    return records


class RecordWriter:
    """Appends whole batches of records: one write per batch, flushed to the OS, so a
    killed process loses at most the batch in flight.

    fsync (surviving an OS crash or power loss as well) cost 0.3-5 ms per call on these
    machines, up to 5 % of a tiny-model eval when done per batch; it runs at most every
    ``sync_interval`` seconds and on :meth:`sync`. A machine crash loses at most the
    batches of the last interval, and a torn line it may leave is dropped on resume
    like one torn by a kill.
    """

    def __init__(self, path: str | Path, sync_interval: float = 2.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync_interval = sync_interval
        self._synced_at = float("-inf")  # the first batch is synced at once
        self._unsynced = False

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        if not data:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            self._unsynced = True
            if time.monotonic() - self._synced_at >= self.sync_interval:
                self._fsync(f.fileno())

    def sync(self) -> None:
        """Make every appended record durable (the end of a task)."""
        if self._unsynced:
            with open(self.path, "rb") as f:
                self._fsync(f.fileno())

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced_at, self._unsynced = time.monotonic(), False
