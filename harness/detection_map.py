"""COCO-style detection AP computed by pycocotools, the reference implementation.

Each record is one (image, queried category) pair, as in Visual-RFT's per-category
detection prompts; its target and parsed value are lists of xyxy pixel boxes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np


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
        # Only the 'all' area range: the small/medium/large breakdown quadruples the work
        # (it dominated bootstrap time) and is not reported.
        ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.evaluate()
        ev.accumulate()
    # What COCOeval.summarize() reports as AP and AP50 (area 'all', maxDets 100).
    precision = ev.eval["precision"][..., 0, ev.params.maxDets.index(100)]  # [iou, recall, class]
    at50 = precision[int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))]
    return {"map": _mean_valid(precision), "map50": _mean_valid(at50)}


def _mean_valid(values) -> float:
    valid = values[values > -1]  # -1 marks (iou, class) cells without ground truth
    return float(valid.mean()) if valid.size else 0.0
