"""Protocol profiles: every scoring choice that changes numbers, named and logged.

A run records the profile it was scored under; ``harness score --profile`` re-scores
saved outputs under another one, so differences between evaluation scripts become
a table instead of a mystery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.errors import UnknownName


@dataclass(frozen=True)
class ProtocolProfile:
    name: str = "strict"
    iou_threshold: float = 0.5
    # True: a hit is IoU >= threshold; False: IoU > threshold (scripts differ).
    iou_inclusive: bool = True
    # Legacy inclusive-pixel area convention (w = x2 - x1 + 1).
    plus_one_pixel: bool = False
    # Take the text inside <answer>...</answer> when the output has one.
    use_answer_tags: bool = True
    # "exact": normalised prediction equals the label; "lenient": the label occurs
    # in the prediction as a whole word (what many reference scripts do).
    label_matching: str = "exact"
    # Clip predicted boxes to the image before IoU.
    clip_boxes: bool = True

    def iou_hit(self, value: float) -> bool:
        return value >= self.iou_threshold if self.iou_inclusive else value > self.iou_threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolProfile:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


STRICT = ProtocolProfile()
LENIENT = replace(STRICT, name="lenient", label_matching="lenient")

PROFILES: dict[str, ProtocolProfile] = {p.name: p for p in (STRICT, LENIENT)}


def get_profile(name: str) -> ProtocolProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownName(f"unknown protocol profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
