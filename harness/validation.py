"""Checks of arguments and input files that run before any slow work (a model load,
generation, a training run), so a bad value costs a second, not a wasted hour.

Every check raises :class:`~harness.errors.UsageError` with one line that names the
problem and what to do; the CLI prints it as ``harness: error: ...`` and exits 2.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from harness.errors import UsageError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False, exclusive_minimum: bool = False, allow_none: bool = True) -> None:
    """``value`` is a finite number in range (``None`` passes when ``allow_none``)."""
    if value is None:
        if allow_none:
            return
        raise UsageError(f"{name} is required")
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise UsageError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        bound = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
        raise UsageError(f"{name} must be {bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be <= {maximum:g}, got {value!r}")


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file the user handed us, with an error that names it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise UsageError(f"{what} {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix or remove it") from None


def identity_diff(old: Any, new: dict[str, Any], keys: set[str] | None = None) -> list[str]:
    """The keys (``key.subkey`` one level into mappings) on which a recorded identity and a
    new one differ: what every resumable directory (run, training run, study) checks."""
    old = old if isinstance(old, dict) else {}
    keys = set(old) | set(new) if keys is None else keys
    out: list[str] = []
    for k in sorted(keys):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        else:
            out.append(k)
    return out


def check_model_dir(path: Path) -> None:
    """A Hugging Face model directory: a readable ``config.json`` naming a
    ``model_type``, and weight files (or a sharded index)."""
    config = read_json_file(path / "config.json", "model config") if (path / "config.json").exists() else None
    if config is None:
        raise UsageError(f"model directory {path} has no config.json: point --model at a saved Hugging Face "
                         "model (config.json + weights) or a PEFT adapter directory")
    if not isinstance(config, dict) or not config.get("model_type"):
        raise UsageError(f"{path / 'config.json'} names no model_type: not a Hugging Face model config")
    weights = [p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    if not weights and not any(path.glob("*.index.json")):
        raise UsageError(f"model directory {path} holds no weights (*.safetensors or *.bin); "
                         "was the save interrupted?")
    for w in weights:
        if w.stat().st_size == 0:
            raise UsageError(f"weights file {w} is empty; was the save interrupted?")


def adapter_base(path: Path) -> str | Path:
    """The base model a PEFT adapter directory names: a directory (as stored, or relative
    to the adapter when only that exists) or a hub id."""
    cfg = read_json_file(path / "adapter_config.json", "adapter config")
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise UsageError(f"{path / 'adapter_config.json'} has no base_model_name_or_path")
    stored = Path(str(base)).expanduser()
    if not stored.exists() and (path / stored).exists():
        return path / stored
    return stored if stored.exists() else str(base)


def check_adapter_dir(path: Path) -> str | Path:
    """A PEFT adapter directory; returns its base model (a directory is checked too)."""
    base = adapter_base(path)
    if not any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise UsageError(f"adapter directory {path} holds no adapter_model.safetensors; was the save interrupted?")
    if isinstance(base, Path) and base.is_dir():
        check_model_dir(base)
    return base


def check_output_dir(path: Path, *, marker: str = "config.json", what: str = "run") -> None:
    """An output directory we may create or reuse: not a file, not a foreign non-empty
    directory (``--overwrite`` deletes, so it must only ever delete our own), writable."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output_path {path} is a file; give a directory path")
    # a kill between creating a temporary file and renaming it leaves only that file behind
    ours = [p for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))] if path.is_dir() else []
    if ours and not (path / marker).exists():
        raise UsageError(f"--output_path {path} is a non-empty directory that holds no {what} ({marker} is missing); "
                         f"choose a new or empty directory")
    check_writable(path)


def check_output_file(path: Path, option: str = "--output_path", example: str | None = None) -> None:
    """A file we may create or replace: not a directory, in a directory we can create and write."""
    if path.is_dir():
        such = f" such as {path / example}" if example else ""
        raise UsageError(f"{option} {path} is a directory; give a file path{such}")
    try:
        check_writable(path.parent)
    except UsageError as exc:
        raise UsageError(f"{option} {path}: {exc}") from None


def check_writable(directory: Path) -> None:
    """``directory`` exists or can be created (no file on its path) and we may write there."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot create {directory}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {existing} (permission denied)")
