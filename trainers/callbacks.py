"""transformers callbacks of a training run: the log, cost, checkpoint hand-off, progress bar.

Kept apart from trainers/train_log.py because importing transformers takes seconds:
configs and checks must not pay for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from trainers.train_log import LOG_FILE, CostMeter, clean_number


class HarnessCallback(TrainerCallback):
    """Writes the log, keeps the cost meter, saves at ``max_steps`` and publishes checkpoints.

    ``publish(trl_checkpoint_dir, step, cost, metrics, final)`` turns TRL's
    checkpoint into an eval-ready one and returns the :class:`Checkpoint`;
    ``on_checkpoint`` then gets it, synchronously. ``counters()`` returns trainer-specific
    cumulative counts to keep in the cost record (e.g. SFT's trained tokens).
    """

    def __init__(self, output_dir: Path, rows_per_step: int, meter: CostMeter,
                 publish: Callable[..., Any], on_checkpoint: Callable[[Any], None] | None,
                 counters: Callable[[], dict[str, float]] | None = None) -> None:
        self.log_path = Path(output_dir) / LOG_FILE
        self.rows_per_step = rows_per_step
        self.meter = meter
        self.publish = publish
        self.on_checkpoint = on_checkpoint
        self.counters = counters
        self.last_metrics: dict[str, float] = {}
        #: True once a step has begun: the resume state (weights, optimizer, RNG) has loaded
        self.started = False
        self._wall_offset = meter.wall_time_s
        self._t0 = time.perf_counter()

    def _sync(self, state) -> None:
        self.meter.wall_time_s = self._wall_offset + time.perf_counter() - self._t0
        self.meter.optimizer_steps = state.global_step
        self.meter.examples = state.global_step * self.rows_per_step
        if self.counters is not None:
            self.meter.extra.update(self.counters())

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = True

    def on_step_end(self, args, state, control, **kwargs):
        self._sync(state)
        if state.global_step >= state.max_steps:
            control.should_save = True  # the final weights are always a checkpoint

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:  # the end-of-training summary is not a step
            return
        self._sync(state)
        metrics = {k: clean_number(v) for k, v in logs.items() if isinstance(v, (int, float))}
        self.last_metrics = {k: v for k, v in metrics.items() if v is not None}
        row = {"step": state.global_step, **metrics, **self.meter.to_dict()}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def on_save(self, args, state, control, **kwargs):
        self._sync(state)
        step = state.global_step
        ckpt = self.publish(Path(args.output_dir) / f"checkpoint-{step}", step, self.meter.to_dict(),
                            dict(self.last_metrics), step >= state.max_steps)
        if self.on_checkpoint is not None:
            paused = time.perf_counter()
            with isolated_from_training():
                self.on_checkpoint(ckpt)
            self._wall_offset -= time.perf_counter() - paused  # scoring is not training time


@contextlib.contextmanager
def isolated_from_training() -> Iterator[None]:
    """What a checkpoint callback does (an eval seeds torch, sets thread counts) must not
    change what training does next: the RNG streams and the thread count are restored, so
    an uninterrupted run samples exactly what a run resumed from this checkpoint (whose
    saved RNG state predates the callback) samples."""
    import random

    import numpy as np
    import torch

    threads = torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


class NamedProgress(ProgressCallback):
    """transformers' progress bar, labelled with the trainer's name, without printing every log dict
    (they go to train_log.jsonl)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.name)
            self.training_bar.unit = "step"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs:
            shown = {k: logs[k] for k in ("loss", "reward") if isinstance(logs.get(k), (int, float))}
            if shown:
                self.training_bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
