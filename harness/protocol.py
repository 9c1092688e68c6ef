"""Protocol profiles: every scoring choice that changes numbers, named and logged.

A run records the profile it was scored under; ``harness score --profile`` re-scores
saved outputs under another one and ``harness compare-profiles RUN`` under all of
them, so differences between evaluation scripts become a table instead of a mystery.

``strict`` is our default. The paper profiles reproduce what each paper's (or tool's)
evaluation script does, setting by setting; where a script is lenient or buggy the
profile reproduces the bug on purpose, and its ``source`` says where the behaviour
comes from. docs/profiles.md has the table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.errors import UnknownName, UsageError

# How a class answer is compared with the label (and its synonyms):
EXACT = "exact"  # normalised prediction equals a normalised name
WHOLE_WORD = "lenient"  # a normalised name occurs in the prediction as whole words
# Visual-RFT: ``gt in pred or pred in gt`` on stripped, lower-cased text: lenient both ways,
# and an empty answer is "in" every label, so it counts as correct
TWO_WAY_SUBSTRING = "two_way_substring"
LABEL_MATCHING = (EXACT, WHOLE_WORD, TWO_WAY_SUBSTRING)

# How the answer is taken out of the output:
TAGS = "tags"  # the text inside <answer>...</answer> when present, else the output without <think>
RAW = "raw"  # the whole output
ANSWER_EXTRACTION = (TAGS, RAW)


@dataclass(frozen=True)
class ProtocolProfile:
    name: str = "strict"
    # Detection matching threshold (grounding reports ACC at 0.5, 0.75 and 0.9).
    iou_threshold: float = 0.5
    # True: a hit is IoU >= threshold; False: IoU > threshold (scripts differ).
    iou_inclusive: bool = True
    # Legacy inclusive-pixel area convention (w = x2 - x1 + 1).
    plus_one_pixel: bool = False
    # Take the text inside <answer>...</answer> when the output has one.
    use_answer_tags: bool = True
    label_matching: str = EXACT
    # Clip predicted boxes to the image before IoU.
    clip_boxes: bool = True
    # Put a box written with x2 < x1 (or y2 < y1) back in order; False: such a box is
    # degenerate and scores IoU 0 (what scripts that compute IoU on the raw box get).
    reorder_corners: bool = True
    # Read boxes in this coordinate space whatever the model family's convention
    # (lmms-eval asks every model for 0-1 boxes); None: the model's own.
    box_space: str | None = None
    # Which box of an answer that writes several is scored: "first" or "last".
    box_pick: str = "first"
    description: str = "exact match after normalisation; IoU >= threshold; boxes in the model's own space"
    source: str = "harness"

    def __post_init__(self) -> None:
        if self.label_matching not in LABEL_MATCHING:
            raise UsageError(f"profile {self.name}: label_matching must be one of {LABEL_MATCHING}")
        if self.box_pick not in ("first", "last"):
            raise UsageError(f"profile {self.name}: box_pick must be 'first' or 'last'")

    def iou_hit(self, value: float, threshold: float | None = None) -> bool:
        t = self.iou_threshold if threshold is None else threshold
        return value >= t if self.iou_inclusive else value > t

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolProfile:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def settings(self) -> dict[str, Any]:
        """The settings that change numbers (no name or prose)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("name", "description", "source")}


STRICT = ProtocolProfile()
LENIENT = replace(STRICT, name="lenient", label_matching=WHOLE_WORD,
                          description="as strict, but a label counts when it occurs in the answer as whole words")

PROFILES: dict[str, ProtocolProfile] = {p.name: p for p in (STRICT, LENIENT)}


def register_profile(profile: ProtocolProfile) -> ProtocolProfile:
    if profile.name in PROFILES and PROFILES[profile.name] != profile:
        raise ValueError(f"protocol profile {profile.name!r} is already registered")
    PROFILES[profile.name] = profile
    return profile


def get_profile(name: str) -> ProtocolProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownName(f"unknown protocol profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def profile_names() -> list[str]:
    """strict first, then the rest in registration order (the order of comparison tables)."""
    return list(PROFILES)
