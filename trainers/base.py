"""The trainer plug-in contract.

A trainer turns (base model, suite, config) into checkpoints. It reads the suite's
train split through the task's own prompts and targets, and uses the task's
scorer as its reward (``Task.reward``), so a metric and its reward can never drift
apart. ``train-and-eval`` scores every checkpoint it yields like any other model.
Implementations register in ``harness.registry.TRAINERS`` (built-ins) or through
the ``harness.trainers`` entry-point group (third parties).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

from harness.suite import Suite


@dataclass
class TrainerConfig:
    """Options every trainer shares; a trainer extends it with its own dataclass."""

    output_dir: str
    seed: int = 0
    max_steps: int = 100
    learning_rate: float = 1e-5
    per_device_batch_size: int = 8
    save_steps: int = 50
    formats: tuple[str, ...] = ("open",)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    path: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer(ABC):
    name: str = ""
    config_class: type[TrainerConfig] = TrainerConfig

    @abstractmethod
    def train(self, model: str, suite: Suite, config: TrainerConfig) -> Iterator[Checkpoint]:
        """Train on ``suite.train`` and yield each saved checkpoint as soon as it exists."""
