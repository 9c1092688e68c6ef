"""The backend contract: (prompts, sampling params) -> n completions per prompt.

A backend never knows a task. It exposes the model's conventions (box space,
image sizing) so that tasks can write and read coordinates the model understands.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from harness.conventions import ModelConventions
from harness.prompt import Prompt


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 32
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    n: int = 1
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class Backend(ABC):
    name: str = ""

    @classmethod
    def check_args(cls, model: str, **model_args) -> None:
        """Reject a bad model or option before anything is loaded (raise UsageError).
        Backends override this; the default accepts everything."""

    @property
    @abstractmethod
    def conventions(self) -> ModelConventions: ...

    @abstractmethod
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        """``params.n`` completions for each prompt, in prompt order.

        A backend that overrides :meth:`prepare` also accepts ``prepared=`` (what
        ``prepare`` returned for these prompts) and then skips that work."""

    def prepare(self, prompts: list[Prompt], params: SamplingParams) -> Any:
        """Optional: the CPU-side part of ``generate`` (decode images, apply the chat
        template, run the processor) as a picklable value. The evaluator calls it in a
        forked worker process for the next batch while this one generates, so it must not
        touch the model or any device. Not overridden: nothing is prepared off-process."""
        return None

    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies the weights (and adapter) so results can be traced to a model."""

    def describe(self) -> dict:
        return {"backend": self.name, "conventions": self.conventions.to_dict(), "fingerprint": self.fingerprint()}

    def close(self) -> None:
        """Release resources (engines, servers)."""


def check_backend_args(factory, model: str, **model_args) -> None:
    """Run a registered backend's argument check: a Backend class's ``check_args``, or
    the one a factory function carries; a plug-in without one is checked when built."""
    check = getattr(factory, "check_args", None)
    if check is not None:
        check(model, **model_args)
