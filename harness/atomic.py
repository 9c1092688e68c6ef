"""Crash-safe file writing: whole files by temp-file + rename, logs by fsynced appends."""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

# this process's temporary files being written now (a thread may write while another cleans)
_writing: set[str] = set()
_lock = threading.Lock()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``path`` whole or not at all: into ``.<name>.<pid>-<random>.tmp`` beside it, then
    renamed over it. A process killed in between leaves that file behind; the next write of
    the same path (a rerun redoes the write that did not happen) removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    with _lock:
        _writing.add(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        with _lock:
            _writing.discard(tmp)


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of ``path`` whose writer is gone (killed between writing and renaming)."""
    prefix = f".{path.name}."
    for tmp in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*.tmp")):
        pid = os.path.basename(tmp)[len(prefix):].split("-", 1)[0]
        if not pid.isdigit():
            continue  # not named by this module (or by a version before pids were in the name)
        with _lock:
            if tmp in _writing:
                continue
        if int(pid) == os.getpid() or not _alive(int(pid)):
            Path(tmp).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
