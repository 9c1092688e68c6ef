"""harness.detection_map: the chunked, resample-aware AP gives exactly pycocotools' numbers."""

from __future__ import annotations

import contextlib
import io
import random

import numpy as np
import pytest

from harness.detection_map import PerImageEval, detection_map
from harness.stats import Resample, bootstrap_ci


def pycocotools_map(records) -> dict[str, float]:
    """The reference: one COCOeval over all records, evaluate + accumulate, as summarize() reads it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [b[0], b[1], max(0.0, b[2] - b[0]), max(0.0, b[3] - b[1])]

    images, gts, dets = [], [], []
    for i, rec in enumerate(records):
        images.append({"id": i})
        for box in rec.get("target") or []:
            w, h = xywh(box)[2:]
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": 1, "bbox": xywh(box), "area": w * h,
                        "iscrowd": 0})
        parsed = rec.get("parsed")
        if rec.get("failure") is None and isinstance(parsed, list):
            for rank, box in enumerate(parsed):
                dets.append({"image_id": i, "category_id": 1, "bbox": xywh(box), "score": 1.0 - 1e-3 * rank})
    if not gts or not dets:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "object"}], "info": {}}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][..., 0, ev.params.maxDets.index(100)]
    at50 = precision[int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))]

    def mean_valid(v):
        v = v[v > -1]
        return float(v.mean()) if v.size else 0.0

    return {"map": mean_valid(precision), "map50": mean_valid(at50)}


def _box(rng, near=None):
    if near is not None and rng.random() < 0.7:  # a detection near a target: IoUs across the thresholds
        j = rng.uniform(0, 12)
        return [c + rng.uniform(-j, j) for c in near]
    x, y = rng.uniform(0, 80), rng.uniform(0, 80)
    return [x, y, x + rng.uniform(5, 40), y + rng.uniform(5, 40)]


def make_records(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        targets = [_box(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        parsed = [_box(rng, rng.choice(targets) if targets else None) for _ in range(rng.choice([0, 1, 1, 2, 3, 4]))]
        failure = None
        if rng.random() < 0.1:
            failure, parsed = "no box found", None
        out.append({"index": i, "target": targets, "parsed": parsed, "failure": failure})
    return out


@pytest.mark.parametrize("seed", range(12))
def test_matches_pycocotools(seed):
    recs = make_records(seed, [1, 3, 17, 64][seed % 4])
    assert detection_map(recs) == pycocotools_map(recs)


@pytest.mark.parametrize("seed", range(6))
def test_resamples_match_pycocotools_on_the_resampled_records(seed):
    recs = make_records(100 + seed, 40)
    per_image = PerImageEval(recs)
    rng = np.random.default_rng(seed)
    for _ in range(15):
        idx = rng.integers(0, len(recs), size=len(recs))
        assert per_image.resampled(idx) == pycocotools_map([recs[i] for i in idx])


def test_chunking_does_not_change_the_numbers(monkeypatch):
    recs = make_records(7, 50)
    monkeypatch.setattr(PerImageEval, "CHUNK", 7)  # chunks with and without ground truth or detections
    recs[14:21] = [{"index": i, "target": [], "parsed": [[1, 1, 9, 9]], "failure": None} for i in range(14, 21)]
    recs[21:28] = [{"index": i, "target": [[1, 1, 9, 9]], "parsed": [], "failure": None} for i in range(21, 28)]
    rng = np.random.default_rng(0)
    for idx in [np.arange(len(recs))] + [rng.integers(0, len(recs), size=len(recs)) for _ in range(10)]:
        assert PerImageEval(recs).resampled(idx) == pycocotools_map([recs[i] for i in idx])


def test_more_than_100_detections_per_image():
    rng = random.Random(3)
    recs = make_records(3, 6)
    recs[2] = {"index": 2, "target": recs[2]["target"] or [[10, 10, 40, 40]],
               "parsed": [_box(rng, [10, 10, 40, 40]) for _ in range(130)], "failure": None}
    assert detection_map(recs) == pycocotools_map(recs)


@pytest.mark.parametrize("recs", [
    [],
    [{"index": 0, "target": [], "parsed": [[1, 1, 5, 5]], "failure": None}],
    [{"index": 0, "target": [[1, 1, 5, 5]], "parsed": [], "failure": None}],
    [{"index": 0, "target": [[1, 1, 5, 5]], "parsed": None, "failure": "no box found"}],
    [{"index": 0, "target": [[1, 1, 5, 5]], "parsed": [[1, 1, 5, 5]], "failure": None}],
])
def test_edge_cases(recs):
    assert detection_map(recs) == pycocotools_map(recs)


def test_bootstrap_ci_is_the_one_of_resampled_lists():
    recs = make_records(11, 64)
    fast = bootstrap_ci(recs, detection_map, n_boot=60, seed=4)
    slow = bootstrap_ci(recs, lambda items: pycocotools_map(list(items)), n_boot=60, seed=4)
    assert fast == slow


def test_a_reordered_resample_is_evaluated_as_given():
    recs = make_records(12, 30)
    sample = Resample(recs, np.random.default_rng(0).integers(0, len(recs), size=len(recs)), {})
    sample.reverse()  # no longer base[indices]: the per-image shortcut must not be taken
    assert not sample.intact()
    assert detection_map(sample) == pycocotools_map(list(sample))


# ----------------------------------------------------------------------------- CategoryEval (real ids)
def _units(seed: int, n_images: int = 30):
    rng = random.Random(seed)
    cats = {1: "a", 5: "b", 9: "c", 12: "d"}  # d never has ground truth

    def box():
        x, y = rng.uniform(0, 60), rng.uniform(0, 60)
        return [x, y, x + rng.uniform(2, 30), y + rng.uniform(2, 30)]

    units = []
    for img in rng.sample(range(1, 10_000), n_images):
        for c in cats:
            if rng.random() < 0.4:
                continue
            gt = [box() for _ in range(rng.randint(0, 3))] if c != 12 else []
            crowd = [box()] if rng.random() < 0.15 else []
            dets = [[*(g if rng.random() < 0.6 else box()), rng.choice((0.3, 0.5, 0.9, rng.random()))] for g in gt]
            dets += [[*box(), rng.random()] for _ in range(rng.randint(0, 2))]
            units.append({"image_id": img, "category_id": c, "gt": gt, "crowd": crowd, "dets": dets})
    return units, cats


def _pycocotools_units(units, cats):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    gts, dets = [], []
    for u in units:
        for g, crowd in [(g, 0) for g in u["gt"]] + [(g, 1) for g in u["crowd"]]:
            gts.append({"id": len(gts) + 1, "image_id": u["image_id"], "category_id": u["category_id"],
                        "bbox": xywh(g), "area": xywh(g)[2] * xywh(g)[3], "iscrowd": crowd})
        for d in u["dets"]:
            dets.append({"image_id": u["image_id"], "category_id": u["category_id"], "bbox": xywh(d[:4]),
                         "score": d[4]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": i} for i in sorted({u["image_id"] for u in units})], "annotations": gts,
                        "categories": [{"id": c, "name": n} for c, n in cats.items()], "info": {}}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per = {}
    for k, c in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        per[cats[c]] = float(p[p > -1].mean()) if (p > -1).any() else None
    return ev.stats[0], ev.stats[1], per


@pytest.mark.parametrize("seed", range(4))
def test_category_eval_matches_pycocotools(seed):
    from harness.detection_map import CategoryEval

    units, cats = _units(seed)
    got = CategoryEval(units, cats).resampled()
    ap, ap50, per = _pycocotools_units(units, cats)
    assert got["map"] == ap and got["map50"] == ap50
    for name, value in per.items():
        assert (value is None and f"ap_{name}" not in got) or got[f"ap_{name}"] == value


def test_category_eval_chunking_and_subsets(monkeypatch):
    from harness.detection_map import CategoryEval

    units, cats = _units(7, n_images=40)
    whole = CategoryEval(units, cats)
    monkeypatch.setattr(CategoryEval, "CHUNK", 3)
    chunked = CategoryEval(units, cats)
    assert chunked.resampled() == pytest.approx(whole.resampled(), nan_ok=True)
    rng = np.random.default_rng(0)
    for _ in range(5):  # a subset (no repeats) is evaluated as pycocotools would evaluate those units alone
        idx = np.sort(rng.choice(len(units), size=len(units) // 2, replace=False))
        fresh = CategoryEval([units[i] for i in idx], cats).resampled()
        assert whole.resampled(idx) == pytest.approx(fresh, nan_ok=True)


def test_category_eval_fixed_units_are_in_every_resample():
    from harness.detection_map import CategoryEval

    units, cats = _units(3)
    missed = [{"image_id": 99_999, "category_id": 1, "gt": [[0, 0, 10, 10]], "crowd": [], "dets": []}]
    ev = CategoryEval(units + missed, cats, n_fixed=1)
    assert ev.resampled() == pytest.approx(CategoryEval(units + missed, cats).resampled(), nan_ok=True)
    idx = np.arange(len(units))[::2]
    assert ev.resampled(idx) == pytest.approx(CategoryEval([units[i] for i in idx] + missed, cats).resampled(),
                                              nan_ok=True)
