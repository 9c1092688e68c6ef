"""COCO-style detection AP computed by pycocotools, the reference implementation.

Each record is one (image, queried category) pair, as in Visual-RFT's per-category
detection prompts; its target and parsed value are lists of xyxy pixel boxes.

COCOeval matches each image's detections to its ground truth independently of every
other image; only the accumulation (sorting all detections by score into one
precision/recall curve) spans the corpus. So pycocotools matches the records in
chunks of images (its per-image state would otherwise grow with the split), the
per-image results are kept as a few flat arrays, and they are accumulated exactly as
``COCOeval.accumulate`` does (tests/test_detection_map.py checks the numbers against
pycocotools end to end). A bootstrap resample (:class:`harness.stats.Resample`) is
not matched again: its images' results are gathered in resample order and
accumulated, which is what running COCOeval on the resampled records gives.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from harness.stats import Resample


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]


def _boxes(rec: dict[str, Any]) -> tuple[list, list]:
    """(ground-truth boxes, detected boxes in output order) of one record."""
    parsed = rec.get("parsed")
    dets = parsed if rec.get("failure") is None and isinstance(parsed, list) else []
    return rec.get("target") or [], dets


def coco_eval(records: list[dict[str, Any]]):
    """pycocotools' COCOeval over the records (image id = position), matched
    (``evaluate``) but not accumulated.

    One extra image with one detection and no ground truth is appended after the
    records: ``loadRes`` refuses an empty result list, and the extra image changes no
    other image's evaluation (``evalImgs[:len(records)]`` are the records').
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, gts, dets = [], [], []
    for i, rec in enumerate(records):
        images.append({"id": i})
        targets, parsed = _boxes(rec)
        for box in targets:
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": 1, "bbox": _xywh(box),
                        "area": _xywh(box)[2] * _xywh(box)[3], "iscrowd": 0})
        # Outputs carry no confidences: every box scores 1.0, ranked in output order.
        for rank, box in enumerate(parsed):
            dets.append({"image_id": i, "category_id": 1, "bbox": _xywh(box), "score": 1.0 - 1e-3 * rank})
    images.append({"id": len(records)})
    dets.append({"image_id": len(records), "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 1.0})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "object"}]}
        coco.createIndex()
        result = coco.loadRes(dets)
        ev = COCOeval(coco, result, "bbox")
        # Only the 'all' area range: the small/medium/large breakdown quadruples the work
        # and is not reported.
        ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.evaluate()
    return ev


def detection_map(records: list[dict[str, Any]]) -> dict[str, float]:
    """What COCOeval.summarize() reports as AP (IoU 0.50:0.95) and AP50, area 'all',
    at most 100 detections per image; 0 for both without ground truth or detections."""
    if isinstance(records, Resample) and records.intact():
        per_image = records.cache.get("detection_map")
        if per_image is None:
            per_image = records.cache["detection_map"] = PerImageEval(records.base)
        return per_image.resampled(records.indices)
    return PerImageEval(records).resampled(np.arange(len(records)))


def summary(precision: np.ndarray, iou_thrs: np.ndarray) -> dict[str, float]:
    """AP and AP50 from COCOeval precisions [iou threshold, recall threshold, ...]."""
    at50 = precision[int(np.argmin(np.abs(iou_thrs - 0.5)))]
    return {"map": _mean_valid(precision), "map50": _mean_valid(at50)}


def _mean_valid(values) -> float:
    valid = values[values > -1]  # -1 marks (iou, class) cells without ground truth
    return float(valid.mean()) if valid.size else 0.0


class PerImageEval:
    """COCOeval's per-image matching of ``records``, accumulated for any multiset of them.

    Keeps, per detection, its score and, per IoU threshold, whether it matched and
    whether it is ignored: flat arrays, not COCOeval's per-image dicts.
    """

    CHUNK = 1000  # images per COCOeval pass

    def __init__(self, records: list[dict[str, Any]]) -> None:
        n = len(records)
        self.n_gt = np.zeros(n, dtype=np.int64)
        self.n_dt = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)  # detections kept per image (at most 100)
        self.regular_gt = np.zeros(n, dtype=np.int64)  # ground truth not ignored, per image
        scores, matched, ignored = [], [], []
        self.iou_thrs = self.rec_thrs = None
        for lo in range(0, n, self.CHUNK):
            chunk = records[lo:lo + self.CHUNK]
            for i, rec in enumerate(chunk, lo):
                targets, parsed = _boxes(rec)
                self.n_gt[i], self.n_dt[i] = len(targets), len(parsed)
            ev = coco_eval(chunk)
            p = ev.params
            self.iou_thrs, self.rec_thrs = p.iouThrs, p.recThrs
            max_det = p.maxDets[-1]  # 100: what the reported AP uses
            assert max_det == 100 and len(ev.evalImgs) == len(chunk) + 1
            for i, e in enumerate(ev.evalImgs[:len(chunk)], lo):
                if e is None:  # neither ground truth nor detections
                    continue
                s = np.asarray(e["dtScores"][:max_det], dtype=np.float64)
                self.count[i] = s.size
                self.regular_gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
                scores.append(s)
                matched.append(np.asarray(e["dtMatches"][:, :max_det]) != 0)
                ignored.append(np.asarray(e["dtIgnore"][:, :max_det]).astype(bool))
            del ev
        t = len(self.iou_thrs) if self.iou_thrs is not None else 0
        self.scores = np.concatenate(scores) if scores else np.zeros(0)
        self.matched = np.concatenate(matched, axis=1) if matched else np.zeros((t, 0), bool)
        self.ignored = np.concatenate(ignored, axis=1) if ignored else np.zeros((t, 0), bool)
        self.start = np.cumsum(self.count) - self.count  # first detection of each image

    def resampled(self, indices: np.ndarray) -> dict[str, float]:
        """detection_map([records[i] for i in indices]), from the per-image results."""
        indices = np.asarray(indices, dtype=np.int64)
        if not self.n_gt[indices].any() or not self.n_dt[indices].any():
            return {"map": 0.0, "map50": 0.0}
        t, r = len(self.iou_thrs), len(self.rec_thrs)
        npig = int(self.regular_gt[indices].sum())
        if npig == 0:  # all ground truth ignored: no valid cell
            return summary(-np.ones((t, r)), self.iou_thrs)
        # From here on, COCOeval.accumulate for one class, area 'all', 100 detections:
        # the drawn images' detections concatenated in draw order (an image drawn twice
        # comes twice), stably sorted by score.
        counts = self.count[indices]
        det = np.repeat(self.start[indices] - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        order = np.argsort(-self.scores[det], kind="mergesort")
        dtm = self.matched[:, det][:, order]
        dt_ig = self.ignored[:, det][:, order]
        tps = np.logical_and(dtm, np.logical_not(dt_ig))
        fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
        tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
        fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
        precision = np.zeros((t, r))
        for k in range(t):
            tp, fp = tp_sum[k], fp_sum[k]
            nd = len(tp)
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            if nd:  # precision made monotone from the right, as accumulate's loop does
                pr = np.maximum.accumulate(pr[::-1])[::-1]
            pos = np.searchsorted(rc, self.rec_thrs, side="left")
            hit = pos < nd  # recall levels never reached keep precision 0
            precision[k, hit] = pr[pos[hit]]
        return summary(precision, self.iou_thrs)
