"""The training log (``train_log.jsonl``), cost accounting, checkpoint hand-off and the progress bar.

One JSON line per logging step, appended and fsynced, with TRL's own keys
(``loss``, ``grad_norm``, ``learning_rate``; GRPO: ``reward``, ``reward_std``,
``rewards/<component>/mean`` and ``/std``, ``kl`` when beta > 0,
``completions/mean_length``, ``frac_reward_zero_std``, ``entropy``, ``step_time``)
plus ours: ``step``, ``optimizer_steps``, ``examples`` (rows consumed),
``generated_tokens`` (cumulative), ``wall_time_s`` (cumulative over resumed
segments). A resumed run first cuts the log back to its checkpoint's step, so
the redone steps are not logged twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic

LOG_FILE = "train_log.jsonl"


@dataclass
class CostMeter:
    """What a run has spent so far; restored from the checkpoint a run resumes from."""

    wall_time_s: float = 0.0
    generated_tokens: int = 0
    optimizer_steps: int = 0
    examples: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {"wall_time_s": round(self.wall_time_s, 3), "generated_tokens": self.generated_tokens,
                "optimizer_steps": self.optimizer_steps, "examples": self.examples, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostMeter:
        known = {"wall_time_s", "generated_tokens", "optimizer_steps", "examples"}
        return cls(wall_time_s=float(data.get("wall_time_s", 0.0)), generated_tokens=int(data.get("generated_tokens", 0)),
                   optimizer_steps=int(data.get("optimizer_steps", 0)), examples=int(data.get("examples", 0)),
                   extra={k: v for k, v in data.items() if k not in known})


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The log's complete lines (a line torn by a kill is skipped)."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_log(path: str | Path, last_step: int) -> None:
    """Keep the lines of steps <= ``last_step`` (the checkpoint a run resumes from)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_log(path) if int(r.get("step", 0)) <= last_step]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


def clean_number(value: Any) -> Any:
    """NaN and infinities as null: JSON readers choke on them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
