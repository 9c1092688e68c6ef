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

# pycocotools 2.0.10's loadRes copies the ground truth's "info" (KeyError without one);
# other versions ignore these keys
COCO_HEADER = {"info": {}, "licenses": []}


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
        coco.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "object"}],
                        **COCO_HEADER}
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


# ----------------------------------------------------------------------------- real datasets
# COCO and LVIS detection (tasks/detection): one record per (image, queried category),
# evaluated on the dataset's real image and category ids. COCOeval (and LVISEval) match
# every (image, category) pair on its own, so a pair is the unit here: each is matched
# once by pycocotools, and any multiset of pairs (the point estimate, a bootstrap
# resample) is accumulated per category exactly as COCOeval.accumulate does.

#: LVIS's official cap: at most 300 detections per image (over all categories), the
#: highest-scored kept (lvis.LVISResults); COCO keeps 100 per image and category.
LVIS_MAX_DETS = 300
COCO_MAX_DETS = 100


def category_metric_name(name: str) -> str:
    """The corpus-metric key of one category's AP: ``ap_hot_dog``, ``ap_egg_roll``."""
    return "ap_" + "_".join(name.replace("_", " ").split())


class CategoryEval:
    """Per-category AP over (image, category) units, pycocotools' matching and accumulation.

    ``units``: dicts with ``image_id``, ``category_id``, ``gt`` (xyxy boxes), ``gt_area``
    (the annotations' ``area``, else the box areas), ``crowd`` (xyxy boxes of ``iscrowd``
    annotations: matched detections are ignored, as COCOeval does), ``dets`` (``[x1, y1,
    x2, y2, score]`` in answer order). ``categories``: id -> name, the categories
    averaged over. ``lvis``: None for COCO rules, else LVIS's federated rules with, per
    image id, ``{"neg": [...], "not_exhaustive": [...]}`` (``neg_category_ids``,
    ``not_exhaustive_category_ids``): detections of a category neither annotated nor
    verified absent in the image are dropped, unmatched detections of a not-exhaustively
    annotated category are ignored, and at most 300 detections per image are kept.
    ``n_fixed``: the last units are always included, whatever the resample (ground truth
    of pairs that were never queried: misses in every resample).
    """

    CHUNK = 2000  # images per COCOeval pass

    def __init__(self, units: list[dict[str, Any]], categories: dict[int, str], lvis: dict | None = None,
                 n_fixed: int = 0) -> None:
        self.categories = dict(categories)
        self.n_fixed = n_fixed
        self.max_dets = LVIS_MAX_DETS if lvis is not None else COCO_MAX_DETS
        units = [dict(u) for u in units]
        if lvis is not None:
            _lvis_filter(units, lvis)
        n = len(units)
        self.n_units = n
        self.cat = np.array([u["category_id"] for u in units], dtype=np.int64)
        self.image = np.array([u["image_id"] for u in units], dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.regular_gt = np.zeros(n, dtype=np.int64)
        # units in COCOeval's accumulation order: by category, then image id (stable)
        self.order = np.lexsort((np.arange(n), self.image, self.cat)) if n else np.zeros(0, np.int64)
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.order] = np.arange(n)
        per_unit: dict[int, tuple] = {}
        self.iou_thrs = self.rec_thrs = None
        image_ids = sorted(set(self.image.tolist()))
        for lo in range(0, len(image_ids), self.CHUNK):
            chunk = set(image_ids[lo:lo + self.CHUNK])
            idx = [i for i in range(n) if units[i]["image_id"] in chunk]
            ev = _coco_eval_units([units[i] for i in idx], sorted(self.categories), self.max_dets)
            p = ev.params
            self.iou_thrs, self.rec_thrs = p.iouThrs, p.recThrs
            n_img = len(p.imgIds)
            pos_img = {img: j for j, img in enumerate(p.imgIds)}
            pos_cat = {c: k for k, c in enumerate(p.catIds)}
            for i in idx:
                u = units[i]
                e = ev.evalImgs[pos_cat[u["category_id"]] * n_img + pos_img[u["image_id"]]]
                if e is None:
                    continue
                s = np.asarray(e["dtScores"][:self.max_dets], dtype=np.float64)
                m = np.asarray(e["dtMatches"][:, :self.max_dets]) != 0
                ig = np.asarray(e["dtIgnore"][:, :self.max_dets]).astype(bool)
                if lvis is not None and u["category_id"] in set(lvis.get(u["image_id"], {}).get("not_exhaustive", ())):
                    ig = ig | ~m  # LVIS: an unmatched detection of a not-exhaustive category is not a false positive
                self.count[i] = s.size
                self.regular_gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
                per_unit[i] = (s, m, ig)
            del ev
        t = len(self.iou_thrs) if self.iou_thrs is not None else 10
        # flat arrays in accumulation order
        ordered = [per_unit[i] for i in self.order.tolist() if i in per_unit]
        self.scores = np.concatenate([o[0] for o in ordered]) if ordered else np.zeros(0)
        self.matched = np.concatenate([o[1] for o in ordered], axis=1) if ordered else np.zeros((t, 0), bool)
        self.ignored = np.concatenate([o[2] for o in ordered], axis=1) if ordered else np.zeros((t, 0), bool)
        # categories with ground truth in the split: the only ones given an ap_<name> key
        # (the keys must not depend on the resample)
        self.present = {int(c) for c in np.unique(self.cat[self.regular_gt > 0])}
        counts_sorted = self.count[self.order]
        self.start = np.empty(n, dtype=np.int64)
        self.start[self.order] = np.cumsum(counts_sorted) - counts_sorted

    def resampled(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """AP per category, their mean (``map``) and the mean AP50 (``map50``) over the units
        ``indices`` (of the first ``n_units - n_fixed``; None: all) plus the fixed ones.
        Only categories with ground truth in the split get an ``ap_<name>``; one with none
        among the drawn units has no AP (NaN) and is left out of the means, as COCOeval
        leaves out -1 cells; no category at all gives 0."""
        n_var = self.n_units - self.n_fixed
        idx = np.arange(n_var) if indices is None else np.asarray(indices, dtype=np.int64)
        idx = np.concatenate([idx, np.arange(n_var, self.n_units)])
        # COCOeval's order: category, then image; a unit drawn twice comes twice
        idx = idx[np.argsort(self.rank[idx], kind="stable")]
        out: dict[str, float] = {}
        aps, ap50s = [], []
        t50 = int(np.argmin(np.abs(self.iou_thrs - 0.5))) if self.iou_thrs is not None else 0
        for cat_id, name in sorted(self.categories.items()):
            if cat_id not in self.present:
                continue
            mine = idx[self.cat[idx] == cat_id]
            npig = int(self.regular_gt[mine].sum())
            if npig == 0 or self.iou_thrs is None:
                out[category_metric_name(name)] = float("nan")
                continue
            counts = self.count[mine]
            det = np.repeat(self.start[mine] - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
            precision = accumulate_precision(self.scores[det], self.matched[:, det], self.ignored[:, det], npig,
                                             self.rec_thrs)
            out[category_metric_name(name)] = float(precision.mean())
            aps.append(precision)
            ap50s.append(precision[t50])
        # as COCOeval.summarize: one mean over every valid cell (equal to the mean of the
        # per-category APs up to rounding; this is the exact number pycocotools prints)
        # (cells in its [iou, recall, category] order: the floating-point sum is the same too)
        out["map"] = float(np.stack(aps, axis=2).ravel().mean()) if aps else 0.0
        out["map50"] = float(np.stack(ap50s, axis=1).ravel().mean()) if ap50s else 0.0
        return out


def accumulate_precision(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, npig: int,
                         rec_thrs: np.ndarray) -> np.ndarray:
    """COCOeval.accumulate's precision [iou threshold, recall threshold] for one category
    and area range: detections (already in image order) stably sorted by score."""
    order = np.argsort(-scores, kind="mergesort")
    dtm, dt_ig = matched[:, order], ignored[:, order]
    tp_sum = np.cumsum(np.logical_and(dtm, ~dt_ig), axis=1).astype(float)
    fp_sum = np.cumsum(np.logical_and(~dtm, ~dt_ig), axis=1).astype(float)
    precision = np.zeros((matched.shape[0], len(rec_thrs)))
    for k in range(matched.shape[0]):
        tp, fp = tp_sum[k], fp_sum[k]
        nd = len(tp)
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        if nd:
            pr = np.maximum.accumulate(pr[::-1])[::-1]
        pos = np.searchsorted(rc, rec_thrs, side="left")
        hit = pos < nd
        precision[k, hit] = pr[pos[hit]]
    return precision


def _lvis_filter(units: list[dict[str, Any]], lvis: dict) -> None:
    """LVIS's result loading and federated filter, in place: per image, the 300
    highest-scored detections over all its units (stable in unit order, as
    LVISResults.limit_dets_per_image sorts); then no detections for a category that the
    image neither annotates nor lists in ``neg_category_ids``."""
    by_image: dict[int, list[tuple[int, int]]] = {}
    for i, u in enumerate(units):
        by_image.setdefault(u["image_id"], []).extend((i, j) for j in range(len(u.get("dets") or [])))
    keep: set[tuple[int, int]] = set()
    for refs in by_image.values():
        if len(refs) > LVIS_MAX_DETS:
            refs = sorted(refs, key=lambda r: units[r[0]]["dets"][r[1]][4], reverse=True)[:LVIS_MAX_DETS]
        keep.update(refs)
    positives: dict[int, set[int]] = {}
    for u in units:
        if u.get("gt"):
            positives.setdefault(u["image_id"], set()).add(u["category_id"])
    for i, u in enumerate(units):
        verified = positives.get(u["image_id"], set()) | set(lvis.get(u["image_id"], {}).get("neg", ()))
        dets = u.get("dets") or []
        u["dets"] = [d for j, d in enumerate(dets) if (i, j) in keep] if u["category_id"] in verified else []
        u["crowd"] = []  # LVIS has no crowd annotations


def _coco_eval_units(units: list[dict[str, Any]], category_ids: list[int], max_dets: int):
    """COCOeval (bbox, area 'all') over units, matched but not accumulated, on their real ids."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted({u["image_id"] for u in units})
    gts, dets = [], []
    for u in units:
        areas = u.get("gt_area") or [None] * len(u.get("gt") or [])
        for box, area in zip(u.get("gt") or [], areas):
            xywh = _xywh(box[:4])
            gts.append({"id": len(gts) + 1, "image_id": u["image_id"], "category_id": u["category_id"], "bbox": xywh,
                        "area": xywh[2] * xywh[3] if area is None else float(area), "iscrowd": 0})
        for box in u.get("crowd") or []:
            xywh = _xywh(box[:4])
            gts.append({"id": len(gts) + 1, "image_id": u["image_id"], "category_id": u["category_id"], "bbox": xywh,
                        "area": xywh[2] * xywh[3], "iscrowd": 1})
        for d in u.get("dets") or []:
            dets.append({"image_id": u["image_id"], "category_id": u["category_id"], "bbox": _xywh(d[:4]),
                         "score": float(d[4])})
    # loadRes refuses an empty list: one detection on an extra image with no ground truth
    # (it changes no other image's evaluation and is never read back)
    spare = (min(image_ids) - 1) if image_ids else 0
    cats = category_ids or [0]
    dets.append({"image_id": spare, "category_id": cats[0], "bbox": [0.0, 0.0, 1.0, 1.0], "score": 1.0})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": i} for i in [*image_ids, spare]], "annotations": gts,
                        "categories": [{"id": c, "name": str(c)} for c in cats], **COCO_HEADER}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.imgIds = image_ids
        ev.params.catIds = list(cats)
        ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.params.maxDets = [max_dets]
        ev.evaluate()
    return ev
