"""What a parser read from a model output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parsed:
    """The extracted answer text, a JSON-able value in internal conventions (absolute
    pixels for boxes), or why it failed."""

    answer: str
    value: Any = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None
