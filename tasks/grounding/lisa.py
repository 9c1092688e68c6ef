"""LISA's ReasonSeg (Lai et al., 2024) as box grounding: reasoning queries, one target region.

Upstream is github.com/dvlab-research/LISA (data from its Google Drive link). Under the
data root, as LISA's own ``dataset/reason_seg/ReasonSeg``::

    lisa/ReasonSeg/{train,val,test}/<name>.jpg
    lisa/ReasonSeg/{train,val,test}/<name>.json    LabelMe-style annotation of that image

The JSON has ``text`` (the query sentences; val/test usually hold one, train up to
five rephrasings), ``is_sentence`` (long reasoning sentence vs short phrase) and
``shapes`` (``{"label", "points": [[x, y], ...], ...}`` polygons in pixels). LabelMe's
``imageWidth``/``imageHeight`` give the size when present; otherwise the JPEG header is
read when the sample is made.

One sample per image, with the first query, as LISA's own validation loader does
(``utils/dataset.py``: ``sampled_sents = [sampled_sents[0]]``) and Visual-RFT's LISA
evaluation (``item["instruction"][0]``). The sample id is ``<split>/<image stem>``.

The box is the extent of all target polygons together: LISA's ``get_mask_from_json``
fills every shape except ``flag`` into one mask, ``ignore`` shapes as "not evaluated"
and all others as target, so the target region is the union of the non-ignore,
non-flag polygons (an ignore polygon painted over part of a target is not subtracted).
Visual-RFT's ``gen_box_ann.py`` instead boxes only ``shapes[0]`` whatever its label; that
box is kept in the metadata as ``first_shape_box``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec
from harness.registry import define_task
from tasks.grounding.base import GroundingTask

LISA = DatasetSpec(
    name="lisa",
    directory="lisa",
    source="https://github.com/dvlab-research/LISA (ReasonSeg)",
    layout="lisa/ReasonSeg/{train,val,test}/<name>.jpg with <name>.json (LabelMe-style: text, is_sentence, shapes)",
    required=("ReasonSeg",),
    images="ReasonSeg",
)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_annotation(path: Path) -> dict[str, Any]:
    """The JSON object, read as LISA reads it (UTF-8, else cp1252), or one DatasetMissing line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetMissing(f"lisa: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    try:
        anno = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetMissing(f"lisa: {path} is not valid JSON (line {exc.lineno}: {exc.msg}); truncated?") from None
    if not isinstance(anno, dict):
        raise DatasetMissing(f"lisa: {path}: expected a JSON object, got {type(anno).__name__}")
    return anno


def _polygon_box(points: Any, where: str) -> list[float]:
    if not isinstance(points, list) or len(points) < 3:
        raise DatasetMissing(f"{where}: 'points' must be a polygon of at least 3 [x, y] points, got {points!r:.80}")
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(_is_num(v) for v in p):
            raise DatasetMissing(f"{where}: polygon point {p!r:.40} is not two numbers [x, y]")
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def _extent(points: Any) -> list[float] | None:
    """Visual-RFT's box of a shape: min/max of its points, whatever the label (None if unusable)."""
    if not isinstance(points, list) or not points:
        return None
    if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_num(v) for v in p) for p in points):
        return None
    return [min(float(p[0]) for p in points), min(float(p[1]) for p in points),
            max(float(p[0]) for p in points), max(float(p[1]) for p in points)]


def is_target(label: str) -> bool:
    """LISA's rule: 'flag' shapes are dropped, labels containing 'ignore' are not evaluated,
    every other label is target."""
    low = label.lower()
    return low != "flag" and "ignore" not in low


def parse_annotation(anno: dict[str, Any], path: Path) -> dict[str, Any]:
    """texts, is_sentence, the target box (union extent), the first shape's box and the size."""
    where = f"lisa: {path}"
    for key in ("text", "is_sentence", "shapes"):
        if key not in anno:
            raise DatasetMissing(f"{where}: missing key '{key}' (found: {', '.join(sorted(anno)) or 'none'})")
    texts = anno["text"]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DatasetMissing(f"{where}: 'text' must be a non-empty list of query strings, got {texts!r:.80}")
    if anno["is_sentence"] not in (True, False):  # also admits 0/1, which LISA's truth test reads alike
        raise DatasetMissing(f"{where}: 'is_sentence' must be true or false, got {anno['is_sentence']!r}")
    shapes = anno["shapes"]
    if not isinstance(shapes, list):
        raise DatasetMissing(f"{where}: 'shapes' must be a list, got {type(shapes).__name__}")
    boxes: list[list[float]] = []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise DatasetMissing(f"{where}: shapes[{i}] needs a string 'label', got {shape!r:.80}")
        if is_target(shape["label"]):
            boxes.append(_polygon_box(shape.get("points"), f"{where}: shapes[{i}] ({shape['label']!r})"))
    if not boxes:
        labels = sorted({s["label"] for s in shapes})
        raise DatasetMissing(f"{where}: no target shape (labels found: {', '.join(map(repr, labels)) or 'none'})")
    box = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    w, h = anno.get("imageWidth"), anno.get("imageHeight")
    size = [w, h] if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)) else None
    return {"texts": [t.strip() for t in texts], "is_sentence": bool(anno["is_sentence"]), "box": box,
            "n_targets": len(boxes), "first_shape_box": _extent(shapes[0].get("points")) if shapes else None,
            "size": size}


class LisaTask(GroundingTask):
    dataset = LISA
    #: ReasonSeg split directory: "train", "val" or "test"
    split = "val"
    id_doc = "'<split>/<image stem>' (ReasonSeg file name without .jpg)"

    def read_index(self) -> list[dict[str, Any]]:
        base = self.dataset.check(extra=(f"ReasonSeg/{self.split}",))
        split_dir = base / "ReasonSeg" / self.split
        images = sorted(p for p in split_dir.iterdir() if p.suffix == ".jpg" and p.is_file())
        if not images:
            raise DatasetMissing(f"lisa: {split_dir} holds no .jpg images. "
                                 f"Expected layout: {self.dataset.layout_line()}")
        entries = []
        for image in images:
            path = image.with_suffix(".json")
            if not path.is_file():
                raise DatasetMissing(f"lisa: {image.name} has no annotation {path}")
            ann = parse_annotation(read_annotation(path), path)
            entries.append({
                "id": f"{self.split}/{image.stem}",
                "image": f"{self.split}/{image.name}",
                "size": ann["size"],
                "expression": ann["texts"][0],
                "box": ann["box"],
                "others": [],
                "metadata": {"split": self.split, "is_sentence": ann["is_sentence"], "n_texts": len(ann["texts"]),
                             "n_targets": ann["n_targets"], "first_shape_box": ann["first_shape_box"]},
            })
        return entries


def _define(name: str, split: str, description: str) -> type:
    return define_task(LisaTask, name, "ood", description, split=split)


_define("lisa_val", "val", "LISA ReasonSeg val as box grounding: reasoning queries (200 images)")
_define("lisa_test", "test", "LISA ReasonSeg test as box grounding: reasoning queries (779 images)")
