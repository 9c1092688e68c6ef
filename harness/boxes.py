"""Boxes: the one place for box parsing, IoU and matching.

Internal convention everywhere after parsing: absolute pixels of the *original*
image, ``(x1, y1, x2, y2)`` floats. Model-specific coordinate spaces live in
:mod:`harness.conventions`; scoring choices (IoU ``>`` vs ``>=``, +1 pixel) live
in :mod:`harness.protocol`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from harness.conventions import ModelConventions
    from harness.protocol import ProtocolProfile

Box = tuple[float, float, float, float]

_NUM = r"[-+]?\d+(?:\.\d+)?"
# [x1, y1, x2, y2] (JSON-ish lists; what our prompts ask for and what Visual-RFT emits)
_BRACKET_BOX = re.compile(
    rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
)
# (x1,y1),(x2,y2): Qwen2-VL's native grounding format inside <|box_start|>...<|box_end|>
_PAIR_BOX = re.compile(
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
)


# What paper scripts accept (protocol.BOX_SYNTAXES); "any" is ours: both forms above.
_INT_PAIRS = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")  # Visual-RFT LISA
_FLOAT = r"\s*(-?\d*\.?\d+)\s*"
_FLOAT_LIST = re.compile(rf"\[{_FLOAT},{_FLOAT},{_FLOAT},{_FLOAT}\]")  # lmms-eval, DC-SFT, Curr-ReFT
# VLM-R1: integers in a list inside a {...} JSON object; the greedy .* makes it the last such list
_JSON_INT = re.compile(r"\{.*\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)]\s*.*\}", re.DOTALL)


def parse_boxes(text: str, syntax: str = "any") -> list[Box]:
    """All boxes written in ``text``, in order of appearance, in the text's own space.

    ``any`` accepts ``[x1, y1, x2, y2]`` and ``(x1,y1),(x2,y2)``; the other syntaxes are
    the narrower patterns of paper scripts (see :mod:`harness.protocol`). Coordinates are
    not validated here (a model may write x2 < x1); :func:`normalize_box` does that.
    """
    if syntax == "json_int":
        m = _JSON_INT.search(text)
        return [tuple(float(g) for g in m.groups())] if m else []  # type: ignore[list-item]
    patterns = {"any": (_BRACKET_BOX, _PAIR_BOX), "pairs_int": (_INT_PAIRS,), "list_float": (_FLOAT_LIST,)}[syntax]
    found: list[tuple[int, Box]] = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            found.append((m.start(), tuple(float(g) for g in m.groups())))  # type: ignore[misc]
    found.sort(key=lambda item: item[0])
    return [box for _, box in found]


def normalize_box(box: Sequence[float]) -> Box:
    """Order corners so that x1 <= x2 and y1 <= y2."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def clip_box(box: Box, size: tuple[int, int]) -> Box:
    w, h = size
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))


def box_area(box: Box, plus_one: bool = False) -> float:
    extra = 1.0 if plus_one else 0.0
    return max(0.0, box[2] - box[0] + extra) * max(0.0, box[3] - box[1] + extra)


def iou(a: Box, b: Box, plus_one: bool = False, min_overlap: float = 0.0) -> float:
    """Intersection over union. ``plus_one`` is the legacy inclusive-pixel convention
    (width = x2 - x1 + 1) used by some evaluation scripts; ``min_overlap``: an overlap no
    wider or taller than this counts as none (VLM-R1's formula drops <= 1 px). Both are
    protocol choices."""
    extra = 1.0 if plus_one else 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0]) + extra
    ih = min(a[3], b[3]) - max(a[1], b[1]) + extra
    if iw <= min_overlap or ih <= min_overlap:
        return 0.0
    inter = iw * ih
    union = box_area(a, plus_one) + box_area(b, plus_one) - inter
    return inter / union if union > 0 else 0.0


def _num(v: float) -> str:
    v = float(v)
    return str(int(round(v))) if v.is_integer() else f"{v:.3f}".rstrip("0")


def format_box(box: Sequence[float]) -> str:
    """How boxes are written in prompts and training targets: ``[x1, y1, x2, y2]``.
    Integer spaces (0-1000, pixels) come from the conventions already rounded and
    print as integers; the 0-1 space keeps three decimals."""
    return "[" + ", ".join(_num(v) for v in box) + "]"


def is_finite_box(box: Sequence[float]) -> bool:
    return len(box) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)


def read_answer_box(answer: str, size: tuple[int, int], conv: ModelConventions,
                    profile: ProtocolProfile) -> tuple[Box | None, str | None]:
    """The box an answer gives, in original-image pixels, or (None, why not).

    One place for every grounding parser and reward: which box of several counts
    (``profile.box_pick``), the model's coordinate space (or the profile's forced one),
    corner order and clipping are all decided here. Never raises on model output.
    """
    boxes = parse_boxes(answer, profile.box_syntax)
    if not boxes:
        return None, "no box found"
    if size[0] <= 0 or size[1] <= 0:
        return None, "image size unknown (unreadable image)"
    box = answer_box_to_pixels(boxes[0] if profile.box_pick == "first" else boxes[-1], size, conv, profile)
    return (box, None) if box is not None else (None, "box coordinates too large to represent")


def answer_box_to_pixels(raw: Box, size: tuple[int, int], conv: ModelConventions,
                         profile: ProtocolProfile) -> Box | None:
    """A box as written by the model -> original-image pixels under the profile (None: not finite)."""
    if profile.int_coords and is_finite_box(raw):
        raw = tuple(float(int(v)) for v in raw)  # type: ignore[assignment]
    if profile.box_space and profile.box_space != conv.box_space:
        conv = conv.with_overrides(box_space=profile.box_space)
    box = conv.to_pixels(raw, size)
    if not is_finite_box(box):
        return None
    if profile.reorder_corners:
        box = normalize_box(box)
    if profile.clip_boxes:
        box = clip_box(box, size)
    return box


#: the ACC@t thresholds every grounding task reports (RefCOCO / Ref-L4 convention)
GROUNDING_THRESHOLDS = (0.5, 0.75, 0.9)


def grounding_scores(pred: Sequence[float], gold: Sequence[float], profile: ProtocolProfile) -> dict[str, float]:
    """Per-sample grounding metrics: ``acc@t`` for each threshold (``>=`` or ``>`` by the
    profile) and ``miou`` (this sample's IoU; its mean over samples is mIoU)."""
    v = iou(tuple(pred), tuple(gold), plus_one=profile.plus_one_pixel, min_overlap=profile.min_overlap_px)  # type: ignore[arg-type]
    scores = {f"acc@{t:g}": float(profile.iou_hit(v, t)) for t in GROUNDING_THRESHOLDS}
    scores["miou"] = v
    return scores


GROUNDING_METRICS = tuple(f"acc@{t:g}" for t in GROUNDING_THRESHOLDS) + ("miou",)


def greedy_match(preds: Sequence[Box], gts: Sequence[Box], hit) -> int:
    """Number of true positives when each prediction (in the given order) claims the
    unmatched ground truth with the highest IoU, if ``hit(iou)`` accepts it."""
    used = [False] * len(gts)
    tp = 0
    for p in preds:
        best, best_j = -1.0, -1
        for j, g in enumerate(gts):
            if used[j]:
                continue
            v = iou(p, g)
            if v > best:
                best, best_j = v, j
        if best_j >= 0 and hit(best):
            used[best_j] = True
            tp += 1
    return tp
