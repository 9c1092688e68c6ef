"""Boxes: the one place for box parsing, IoU and matching.

Internal convention everywhere after parsing: absolute pixels of the *original*
image, ``(x1, y1, x2, y2)`` floats. Model-specific coordinate spaces live in
:mod:`harness.conventions`; scoring choices (IoU ``>`` vs ``>=``, +1 pixel) live
in :mod:`harness.protocol`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Sequence

from harness.errors import UsageError

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
    try:
        box = answer_box_to_pixels(boxes[0] if profile.box_pick == "first" else boxes[-1], size, conv, profile)
    except UsageError as exc:  # the image has no size in the model's space (an aspect ratio over 200)
        return None, f"image size unusable: {exc}"
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


# ----------------------------------------------------------------------------- detection answers
# A detection answer lists boxes with optional confidences. Models write it in several
# shapes: Visual-RFT's JSON or Python-literal ``[{'Position': [x1, y1, x2, y2],
# 'Confidence': 0.9}, ...]``, Qwen2.5-VL's ``[{"bbox_2d": [...], "label": ...}]``, bare
# ``[[x1, y1, x2, y2], ...]`` or ``(x1,y1),(x2,y2)`` pairs, and lists cut off by the
# token limit. :func:`parse_detections` reads all of them, literals only (json, then
# ``ast.literal_eval``; never ``eval``).

#: dictionary keys that hold a box / a confidence (compared in lower case)
_DET_BOX_KEYS = ("position", "bbox_2d", "bbox", "box", "bounding_box", "coordinates")
_DET_SCORE_KEYS = ("confidence", "score", "conf", "probability")
# longest answer text handed to a literal parser (literal_eval of a huge or deeply nested
# literal costs memory and recursion; real answers are far shorter)
_DET_MAX_LITERAL = 200_000
_DET_MAX_ENTRIES = 1000
# one complete {...} object without nested braces: what survives of a truncated list
_DET_OBJECT = re.compile(r"\{[^{}]*\}")


class RawDetection(tuple):
    """(box as written, confidence as written or None): before any coordinate conversion."""

    __slots__ = ()

    def __new__(cls, box: Sequence[float], confidence: float | None = None):
        return super().__new__(cls, (tuple(box), confidence))

    @property
    def box(self) -> Box:
        return self[0]

    @property
    def confidence(self) -> float | None:
        return self[1]


def _literal(text: str) -> Any:
    """``text`` as a JSON or Python literal, or None (never raises, never evaluates code)."""
    import ast
    import json

    if len(text) > _DET_MAX_LITERAL:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError):
        return None


def _number(value: Any) -> float | None:
    """A float from a JSON/literal number or a numeric string; None for anything else
    (booleans, huge integers that overflow a float, text). NaN and inf pass through:
    callers decide (a box with them is dropped, a confidence ignored)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _as_box(value: Any) -> Box | None:
    """Four numbers ``[x1, y1, x2, y2]`` or two pairs ``[[x1, y1], [x2, y2]]``."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (list, tuple)) and len(v) == 2
                                                                     for v in value):
        value = [*value[0], *value[1]]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    nums = [_number(v) for v in value]
    return tuple(nums) if all(v is not None for v in nums) else None  # type: ignore[return-value]


def _entry(value: Any) -> RawDetection | None:
    """One detection from a dict (box and confidence keys) or a bare box."""
    if isinstance(value, dict):
        keys = {str(k).lower(): v for k, v in value.items()}
        box = next((_as_box(keys[k]) for k in _DET_BOX_KEYS if k in keys), None)
        if box is None:
            return None
        score = next((_number(keys[k]) for k in _DET_SCORE_KEYS if k in keys), None)
        return RawDetection(box, score)
    box = _as_box(value)
    return RawDetection(box) if box is not None else None


def _entries(value: Any) -> list[RawDetection] | None:
    """Detections of a parsed literal: a list of entries, one entry, or a dict wrapping a
    list (``{"objects": [...]}``); None when it holds no detection structure."""
    if isinstance(value, dict):
        one = _entry(value)
        if one is not None:
            return [one]
        lists = [v for v in value.values() if isinstance(v, (list, tuple))]
        return _entries(lists[0]) if len(lists) == 1 else None
    if isinstance(value, (list, tuple)):
        one = _entry(value)  # a bare [x1, y1, x2, y2]
        if one is not None and not any(isinstance(v, (list, tuple, dict)) for v in value):
            return [one]
        out = [e for e in (_entry(v) for v in value[:_DET_MAX_ENTRIES]) if e is not None]
        return out if out or not value else None
    return None


def parse_detections(text: str) -> list[RawDetection] | None:
    """Every detection written in ``text``, in order, in the text's own coordinate space.

    Tried in turn, the first that yields a structure wins:

    1. the text from its first ``[`` (or ``{``) to its last ``]`` (or ``}``) as one JSON or
       Python literal: a list of ``{'Position' | 'bbox_2d' | 'bbox' | 'box': [x1, y1, x2, y2],
       'Confidence' | 'score': c}`` objects (keys in any case), a list of bare boxes, one
       object or one box;
    2. every complete ``{...}`` object on its own (a list cut off by the token limit keeps
       its complete entries; a malformed entry is skipped, the others kept);
    3. boxes written as ``[x1, y1, x2, y2]`` or ``(x1,y1),(x2,y2)`` anywhere (no confidences).

    Returns ``[]`` for an empty list (``[]``) and None when the text holds no detection
    structure at all (the caller decides whether that is "No Objects" or a parse failure).
    Numbers are not validated here: a box with NaN or infinite coordinates, or a
    confidence outside [0, 1], is the caller's to drop or clip.
    """
    for opener, closer in (("[", "]"), ("{", "}")):
        lo, hi = text.find(opener), text.rfind(closer)
        if 0 <= lo < hi:
            found = _entries(_literal(text[lo:hi + 1]))
            if found is not None:
                return found
    objects = [e for e in (_entry(_literal(m.group(0))) for m in _DET_OBJECT.finditer(text)) if e is not None]
    if objects:
        return objects[:_DET_MAX_ENTRIES]
    boxes = parse_boxes(text)
    return [RawDetection(b) for b in boxes[:_DET_MAX_ENTRIES]] if boxes else None


def rank_score(rank: int) -> float:
    """The score of a detection whose answer states no confidence: 1 - 0.001 * rank, its
    position (from 0) among the answer's boxes, so earlier boxes rank first and every
    stated-confidence-free first box ties at 1.0 (as the synthetic detection task scores)."""
    return max(0.0, 1.0 - 1e-3 * rank)


def detection_scores(preds: Sequence[Box], gts: Sequence[Box], profile: ProtocolProfile) -> dict[str, float]:
    """Per-sample f1, precision and recall: ``preds`` (in confidence order) greedily matched
    to ``gts`` at the profile's IoU threshold, as the synthetic detection task scores.
    No predictions and no ground truth ("No Objects", correctly) is f1 1."""
    tp = greedy_match(preds, gts, profile.iou_hit)
    precision = tp / len(preds) if preds else 0.0
    recall = tp / len(gts) if gts else 0.0
    f1 = 2 * tp / (len(preds) + len(gts)) if (preds or gts) else 1.0
    return {"f1": f1, "precision": precision, "recall": recall}


def parse_detections_visual_rft(output: str) -> list[RawDetection]:
    """Visual-RFT's COCO/LVIS evaluation parser, bugs included (``coco_evaluation/
    Qwen2_VL_coco_infere.py`` and ``lvis_evaluation/Qwen2_VL_lvis_infere.py`` @ 9486633):
    ``[[``/``]]`` become ``[``/``]``, new lines and ``, ...`` are deleted; the text inside
    the first ``<answer>...</answer>`` (else the whole output); a text not ending in ``]``
    is cut after its last ``},`` and closed with ``}]``; single quotes become double quotes;
    ``json.loads``. Anything else (Python literals, ``bbox_2d``, bare boxes, 'No Objects')
    gives no detections. Exact duplicate positions are dropped (its ``remove_duplicates``;
    an unhashable position drops the whole answer), then entries are read in order until
    the first malformed one (its loop raises there and keeps what it appended before).
    """
    import json

    text = output.replace("[[", "[").replace("]]", "]").replace("\n", "").replace(", ...", "")
    m = re.search(r"<answer>(.*?)</answer>", text)
    content = m.group(1).strip() if m else text.strip()
    if not content.endswith("]"):
        content = content.rsplit("},", 1)[0] + "}]"
    try:
        items = json.loads(content.replace("'", '"'))
    except (ValueError, RecursionError):
        return []
    # `bbox_list[0]` on a non-list or an empty list raises in the script: no detections
    if not isinstance(items, list) or not items or isinstance(items[0], str):
        return []
    try:
        seen, unique = set(), []
        for item in items:
            key = tuple(item["Position"])
            if key not in seen:
                seen.add(key)
                unique.append(item)
    except (TypeError, KeyError):
        return []
    out: list[RawDetection] = []
    for item in unique:
        box = item["Position"]
        if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            break  # trans_bbox raises: the rest of the answer is lost
        if "Confidence" not in item:
            break
        score = _number(item["Confidence"])
        out.append(RawDetection(tuple(float(v) for v in box), score))
    return out
