"""A training run's directory: identity, complete checkpoints, resume point, crash debris.

TRL writes ``checkpoint-N`` (weights, optimizer, scheduler, RNG, trainer state)
file by file, so a kill can leave it half-written. After it is written we fsync
it and publish ``checkpoints/step-N``: the model files hard-linked (copied where
links fail) into ``checkpoints/.tmp-step-N`` with ``harness_checkpoint.json``
(step, cost, metrics, and the size of every resume file), then renamed. The
rename is atomic, so ``checkpoints/step-N`` exists if and only if both
directories are complete; anything else is debris of a killed save.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.atomic import write_json_atomic
from harness.errors import HarnessError, UsageError
from harness.validation import identity_diff, read_json_file
from trainers.base import CHECKPOINT_INFO, Checkpoint, TrainerConfig

RUN_FILE = "trainer.json"
CHECKPOINTS = "checkpoints"
INCOMPLETE = "incomplete"
# TRL/transformers resume state: not part of the model a checkpoint evaluates as
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_config(trainer: str, config: TrainerConfig) -> None:
    if not config.output_dir:
        raise UsageError(f"{trainer}: output_dir is not set; give the directory for checkpoints and logs")
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()


def step_dir(output_dir: Path, step: int) -> Path:
    return output_dir / CHECKPOINTS / f"step-{step:06d}"


def prepare_run(output_dir: Path, identity: dict[str, Any]) -> bool:
    """Record the run's identity, or check it against the recorded one. True if the run existed."""
    path = output_dir / RUN_FILE
    if path.exists():
        subkeys = identity_diff(read_json_file(path, "training run file"), identity)
        if subkeys:
            raise UsageError(f"{output_dir} holds a run with a different configuration ({', '.join(subkeys)}); "
                             "use another output_dir, or delete this one to start over")
        return True
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, identity)
    return False


def complete_checkpoints(output_dir: Path) -> list[Checkpoint]:
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    out = [Checkpoint.from_dir(p) for p in sorted(root.glob("step-*")) if p.is_dir()]
    return sorted(out, key=lambda c: c.step)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(output_dir: Path, trl_dir: Path, step: int, info: dict[str, Any]) -> Checkpoint:
    """Make ``checkpoints/step-N`` from TRL's complete ``checkpoint-N`` (see module docstring)."""
    _fsync_tree(trl_dir)
    final = step_dir(output_dir, step)
    tmp = final.parent / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    resume_files = {}
    for p in sorted(trl_dir.iterdir()):
        if not p.is_file():
            continue
        resume_files[p.name] = p.stat().st_size
        if p.name in RESUME_ONLY or p.name.startswith("rng_state"):
            continue
        try:
            os.link(p, tmp / p.name)
        except OSError:
            shutil.copy2(p, tmp / p.name)
    payload = {**info, "step": step, "resume_dir": trl_dir.name, "resume_files": resume_files}
    write_json_atomic(tmp / CHECKPOINT_INFO, payload)
    _fsync_tree(tmp)
    if final.exists():  # only after a crash between rename and the next step: identical content
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return Checkpoint.from_dir(final)


def resume_point(output_dir: Path, checkpoints: list[Checkpoint]) -> Path | None:
    """The TRL checkpoint to resume from (None: start), after moving crash debris aside.

    A TRL ``checkpoint-N`` without a published ``step-N`` is half-written: it is
    moved to ``incomplete/`` (never deleted, never resumed from). A published
    checkpoint whose resume files are missing or have the wrong size is corrupt:
    that is an error naming the directories to delete.
    """
    published = {c.step for c in checkpoints}
    for tmp in (output_dir / CHECKPOINTS).glob(".tmp-step-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for trl_dir in output_dir.glob("checkpoint-*"):
        try:
            step = int(trl_dir.name.split("-", 1)[1])
        except ValueError:
            continue
        if step not in published:
            aside = output_dir / INCOMPLETE / trl_dir.name
            if aside.exists():
                shutil.rmtree(aside)
            aside.parent.mkdir(exist_ok=True)
            os.rename(trl_dir, aside)
    if not checkpoints:
        return None
    last = checkpoints[-1]
    info = json.loads((Path(last.path) / CHECKPOINT_INFO).read_text(encoding="utf-8"))
    trl_dir = output_dir / info.get("resume_dir", f"checkpoint-{last.step}")
    previous = f"step {checkpoints[-2].step}" if len(checkpoints) > 1 else "the start"
    fix = (f"delete {last.path} and {trl_dir} to resume from {previous}")
    for name, size in info.get("resume_files", {}).items():
        p = trl_dir / name
        if not p.is_file():
            raise UsageError(f"checkpoint {trl_dir} is corrupt: {name} is missing; {fix}")
        if p.stat().st_size != size:
            raise UsageError(f"checkpoint {trl_dir} is corrupt: {name} has {p.stat().st_size} bytes, "
                             f"{size} were written; {fix}")
    return trl_dir


def looks_like_disk_full(exc: BaseException, output_dir: Path) -> bool:
    """ENOSPC/EDQUOT, or a failed write (torch.save reports a full disk as a RuntimeError
    "file write failed") while the disk has under 16 MiB free."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    text = str(exc)
    if "No space left on device" in text:
        return True
    if "write failed" in text or "failed writing" in text:
        try:
            return shutil.disk_usage(output_dir).free < 16 << 20
        except OSError:
            return False
    return False


def disk_full_error(output_dir: Path, exc: BaseException, checkpoints: list[Checkpoint]) -> HarnessError:
    last = f"step {checkpoints[-1].step}" if checkpoints else "the start"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "No space left on device"
    return HarnessError(f"disk full while training into {output_dir} ({reason}): free space there and "
                        f"rerun the same command; it resumes from {last}, the last complete checkpoint")
