"""COCO-style detection AP computed by pycocotools, the reference implementation.

Each record is one (image, queried category) pair, as in Visual-RFT's per-category
detection prompts; its target and parsed value are lists of xyxy pixel boxes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]


def detection_map(records: list[dict[str, Any]]) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gts, dets = [], [], []
    for i, rec in enumerate(records):
        images.append({"id": i})
        for box in rec.get("target") or []:
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": 1, "bbox": _xywh(box),
                        "area": _xywh(box)[2] * _xywh(box)[3], "iscrowd": 0})
        parsed = rec.get("parsed")
        if rec.get("failure") is None and isinstance(parsed, list):
            # Outputs carry no confidences: every box scores 1.0, ranked in output order.
            for rank, box in enumerate(parsed):
                dets.append({"image_id": i, "category_id": 1, "bbox": _xywh(box), "score": 1.0 - 1e-3 * rank})
    if not gts or not dets:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "object"}]}
        coco.createIndex()
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}
