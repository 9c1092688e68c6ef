"""COCO / LVIS open-vocabulary and few-shot detection on upstream-format fixtures: loaders,
query protocols, errors, prompts, parsing, and mAP cross-checked against pycocotools and
the lvis package run here on the same detections."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
import types

import fixtures_detection as fx
import numpy as np
import pytest

from harness import data
from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.protocol import get_profile
from harness.registry import SUITES, TASK_GROUPS, TASKS
from harness.scoring import aggregate, score_output
from harness.taskspec import resolve

STRICT = get_profile("strict")
PIXELS = ModelConventions(box_space="abs")  # answers in original pixels: reference boxes are exact


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    yield tmp_path
    data.configure(None, {})


@pytest.fixture
def written(root):
    return {"coco_val": fx.write_coco(root), "coco_train": fx.write_coco(root, "train2017"),
            "lvis_val": fx.write_lvis(root), "lvis_train": fx.write_lvis(root, "train")}


def task(name, fmt="open"):
    return TASKS.get(name)(fmt)


def ids(name):
    return [e["id"] for e in task(name).index()]


# ----------------------------------------------------------------------------- loaders
def test_coco_splits_exact_ids_boxes_sizes(written, root):
    novel = task("coco_ov_novel_val").index()
    assert [(e["id"], e["boxes"], e["size"]) for e in novel] == [
        ("397133:17", [[4.0, 4.0, 24.0, 20.0], [30.0, 10.0, 46.0, 30.0]], [64, 48]),
        ("37777:74", [[5.0, 5.0, 15.0, 13.0]], [48, 40])]
    base = task("coco_ov_base_val").index()
    # image file order, then category id; the crowd-only pair (87038, person) is asked with an empty target
    assert [e["id"] for e in base] == ["397133:1", "37777:3", "252219:1", "252219:18", "87038:1", "87038:6"]
    assert base[0]["boxes"] == [[2.0, 20.0, 12.0, 40.0]] and base[0]["crowd"] == [[40.0, 2.0, 60.0, 42.0]]
    assert base[4]["boxes"] == [] and base[4]["crowd"] == [[0.0, 20.0, 10.0, 30.0]]
    assert base[0]["areas"] == [160.0]  # the annotation's own area (segmentation area), not the box's
    t = task("coco_ov_base_val")
    sample = t.get_sample("397133:1")
    assert sample.images[0].uri == str(root / "coco" / "val2017" / "000000397133.jpg")
    assert sample.metadata == {"image_id": 397133, "category_id": 1, "category": "person", "n_objects": 1}
    assert ids("coco_ov_base_train") == ["9:1", "9:6", "25:18", "30:3", "30:6", "34:65", "36:18", "42:13"]
    notes = task("coco_ov_novel_val").notes()
    assert notes["queries"] == "ground_truth" and notes["queried_pairs"] == 2 and len(notes["categories"]) == 15


def test_lvis_reads_coco_url_and_both_layouts(written, root):
    entries = task("lvis_rare13_val").index()
    assert [e["id"] for e in entries] == ["397133:1", "397133:8", "9:2", "9:10", "37777:2", "37777:13"]
    assert entries[1]["boxes"] == [[0.0, 24.0, 60.0, 44.0], [2.0, 2.0, 12.0, 10.0]]
    # LVIS val holds COCO train2017 images: the file is coco_url's last two parts
    assert task("lvis_rare13_val").get_sample("9:2").images[0].uri == str(root / "coco/train2017/000000000009.jpg")
    (root / "lvis" / "lvis_v1_val.json").unlink()
    fx.write_lvis(root, annotations_dir=True)  # Visual-RFT's lvis/annotations/ layout
    assert [e["id"] for e in task("lvis_rare13_val").read_index()] == [e["id"] for e in entries]


def test_fewshot_samplers_are_seeded_nested_and_recorded(written):
    drawn = {}
    for k in (1, 2, 4, 8, 16):
        notes = task(f"fewshot_det_coco8_train_{k}shot").notes()
        assert notes["seed"] == 0 and notes["shots"] == k
        for cat, images in notes["drawn_images"].items():
            assert len(images) == min(k, {"bus": 2, "cat": 2}.get(cat, 1 if cat in ("dog", "bed", "toilet", "train",
                                                                                       "stop sign") else 0))
            assert set(drawn.get(cat, ())) <= set(images)  # nested
            drawn[cat] = images
    assert drawn["dog"] == [25]  # image 36's dog is a crowd region: never drawn
    assert task("fewshot_det_coco8_train_16shot").notes()["categories_short_of_k"]["fire hydrant"] == 0
    one = task("fewshot_det_coco8_train_1shot").index()
    assert len(one) == 7 and all(e["boxes"] for e in one)  # one image per category that has any
    assert ids("fewshot_det_coco8_train_1shot") == ids("fewshot_det_coco8_train_1shot")  # deterministic
    lvis = task("fewshot_det_lvis6_train_10shot")
    assert ids("fewshot_det_lvis6_train_10shot") == ["25:2", "30:2", "30:14", "34:12"]
    assert lvis.notes()["drawn_images"] == {"die": [25, 30], "kitchen_table": [], "omelet": [], "stepladder": [34],
                                            "horse_buggy": [30], "papaya": []}
    assert ids("fewshot_det_coco8_val") == ["397133:17", "252219:18", "87038:6"]
    assert ids("fewshot_det_lvis6_val") == ["397133:8", "9:2", "9:10", "37777:2"]


def test_tasks_suites_and_groups_resolve():
    assert SUITES.get("coco_ov").ood == ("coco_ov_novel_val", "lvis_rare13_val")
    assert [(r.name, r.role) for r in resolve("coco_ov")] == [
        ("coco_ov_base_val", "id"), ("coco_ov_novel_val", "ood"), ("lvis_rare13_val", "ood")]
    assert TASK_GROUPS.get("fewshot_det") == ("fewshot_det_coco8_1shot", "fewshot_det_coco8_2shot",
                                              "fewshot_det_coco8_4shot", "fewshot_det_coco8_8shot",
                                              "fewshot_det_coco8_16shot", "fewshot_det_lvis6_10shot")
    assert [r.name for r in resolve("fewshot_det")] == ["fewshot_det_coco8_val", "fewshot_det_lvis6_val"]
    assert SUITES.get("fewshot_det_coco8_4shot").train == "fewshot_det_coco8_train_4shot"
    assert [r.full_name for r in resolve("fewshot_det_lvis6_10shot:mc")] == ["fewshot_det_lvis6_val:mc"]


# ----------------------------------------------------------------------------- errors
def test_missing_dataset_names_layout(root):
    with pytest.raises(DatasetMissing, match=r"coco/annotations/instances_train2017.json.*Found"):
        task("coco_ov_novel_val").read_index()
    (root / "coco").mkdir()
    with pytest.raises(DatasetMissing, match="missing val2017 annotations .*instances_val2017.json"):
        task("coco_ov_novel_val").read_index()
    with pytest.raises(DatasetMissing, match="LVIS v1: not found.*lvis_v1_val.json"):
        task("lvis_rare13_val").read_index()


def test_missing_image_folder(root):
    fx.write_coco(root)
    for p in (root / "coco" / "val2017").iterdir():
        p.unlink()
    (root / "coco" / "val2017").rmdir()
    with pytest.raises(DatasetMissing, match="image folder .*val2017 not found"):
        task("coco_ov_novel_val").read_index()


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: "{\"images\": [", "not valid JSON"),
    (lambda raw: {**raw, "annotations": None}, "'annotations' is missing or not a list"),
    (lambda raw: {**raw, "annotations": [{**raw["annotations"][0], "bbox": [1, 2, 3]}]}, "bbox must be 4 numbers"),
    (lambda raw: {**raw, "annotations": [{**raw["annotations"][0], "bbox": [1, 2, -3, 4]}]}, "negative width"),
    (lambda raw: {**raw, "annotations": [{**raw["annotations"][0], "image_id": 5}]}, "image_id 5 is not in 'images'"),
    (lambda raw: {**raw, "images": [{"id": 1, "file_name": "a.jpg"}]}, r"images\[0\] needs"),
    (lambda raw: {**raw, "categories": [{"id": "1", "name": "person"}]}, r"categories\[0\] needs an integer"),
])
def test_malformed_coco_annotations(root, mutate, message):
    path = fx.write_coco(root)["path"]
    raw = json.loads(path.read_text())
    new = mutate(raw)
    path.write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(DatasetMissing, match=message):
        task("coco_ov_novel_val").read_index()


def test_malformed_lvis_annotations(root):
    path = fx.write_lvis(root)["path"]
    raw = json.loads(path.read_text())
    raw["categories"][0].pop("frequency")
    path.write_text(json.dumps(raw))
    with pytest.raises(DatasetMissing, match="needs 'frequency'"):
        task("lvis_rare13_val").read_index()
    raw = json.loads(path.read_text())
    raw["categories"][0]["frequency"] = "r"
    raw["images"][0].pop("neg_category_ids")
    path.write_text(json.dumps(raw))
    with pytest.raises(DatasetMissing, match="needs 'neg_category_ids'"):
        task("lvis_rare13_val").read_index()


# ----------------------------------------------------------------------------- existence maps
NOVEL_MAP = {397133: ["cat", "dog", "toaster"], 37777: [], 252219: ["mouse", "mouse"], 87038: []}


def test_existence_map_queries(written, root):
    path = fx.write_existence_map(root / "exist_map_coco.json", NOVEL_MAP)
    data.configure(None, {"coco_det_queries": str(path)})
    t = task("coco_ov_novel_val")
    entries = t.index()
    # map order; 'dog' is a base category (skipped); a name listed twice is asked once
    assert [(e["id"], e["boxes"]) for e in entries] == [
        ("397133:17", [[4.0, 4.0, 24.0, 20.0], [30.0, 10.0, 46.0, 30.0]]), ("397133:80", []), ("252219:74", [])]
    notes = t.notes()
    assert notes["queries"] == "existence_map" and notes["existence_map"] == str(path)
    assert notes["unqueried_gt_pairs"] == 1 and notes["unqueried_gt_boxes"] == 1  # the mouse of 37777
    assert notes["queried_without_objects"] == 2 and len(notes["existence_map_sha256"]) == 16
    # training splits always ask ground truth
    assert ids("coco_ov_base_train")[0] == "9:1"


@pytest.mark.parametrize("content, message", [
    ([1, 2], "expected a JSON object"),
    ({"397133": ["cat"]}, "has no entry for image 37777"),
    ({"397133": ["kitty"], "37777": [], "252219": [], "87038": []}, "names 'kitty', which is not a category"),
    ({"397133": "cat", "37777": [], "252219": [], "87038": []}, "must map to a list of category names"),
])
def test_existence_map_errors(written, root, content, message):
    path = root / "map.json"
    path.write_text(json.dumps(content))
    data.configure(None, {"coco_det_queries": str(path)})
    with pytest.raises(DatasetMissing, match=message):
        task("coco_ov_novel_val").read_index()


# ----------------------------------------------------------------------------- prompts, gold answers, formats
VAL_TASKS = ("coco_ov_base_val", "coco_ov_novel_val", "lvis_rare13_val", "fewshot_det_coco8_val",
             "fewshot_det_lvis6_val")


def test_prompt_and_gold_answers_score_one(written):
    conv = ModelConventions()
    t = task("coco_ov_novel_val")
    sample = t.get_sample("397133:17")
    q = t.prompt(sample, conv).text
    assert q.startswith("Detect all objects belonging to the category 'cat' in the image")
    assert "return 'No Objects'" in q and "[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]" in q
    assert "0-1000 relative coordinates" in q
    assert t.answer_text(sample, conv) == ("[{'Position': [62, 83, 375, 417], 'Confidence': 1.0}, "
                                           "{'Position': [469, 208, 719, 625], 'Confidence': 1.0}]")
    for name in VAL_TASKS + ("coco_ov_base_train",):
        t = task(name)
        for sample in t.samples():
            gold = t.answer_text(sample, conv)
            assert (gold == "No Objects") == (not sample.target)
            found = float(bool(sample.target))
            expected = {"f1": 1.0, "precision": found, "recall": found}
            assert t.evaluate(gold, sample, conv, STRICT)[1] == expected, (name, sample.id)


@pytest.mark.parametrize("name", VAL_TASKS)
def test_mc_and_yesno(written, name):
    conv = ModelConventions()
    mc, yn = task(name, "mc"), task(name, "yesno")
    for sample in mc.samples():
        prompt = mc.prompt(sample, conv).text
        assert prompt == mc.prompt(sample, conv).text and "\nOptions:\nA. " in prompt
        options = [line[3:] for line in prompt.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
        assert len(set(options)) == 4 and mc.answer_text(sample, conv) in options
        assert mc.evaluate(mc.target(sample, conv), sample, conv, STRICT)[1] == {"acc": 1.0}
        assert yn.evaluate(yn.target(sample, conv), sample, conv, STRICT)[1] == {"acc": 1.0}
        assert yn.prompt(sample, conv).text.endswith("Answer yes or no.")


# ----------------------------------------------------------------------------- parsing edge cases
def _parse(text, profile=STRICT, conv=PIXELS, size=(64, 48)):
    from tasks.detection.base import read_detections

    return read_detections(text, size, conv, profile)


def test_detection_answers_edge_cases():
    assert _parse("No Objects") == ([], None)
    assert _parse("<think>none</think>no objects.") == ([], None)
    assert _parse("[]") == ([], None)
    assert _parse("I cannot tell") == (None, "no box found")
    assert _parse("") == (None, "no box found")
    # JSON, Python literal, bbox_2d, bare lists, pairs; no confidence: rank score 1 - 0.001 * position
    assert _parse('[{"Position": [1, 2, 10, 20], "Confidence": 0.5}]')[0] == [[1, 2, 10, 20, 0.5]]
    assert _parse("[{'Position': [1, 2, 10, 20], 'Confidence': 0.5}]")[0] == [[1, 2, 10, 20, 0.5]]
    assert _parse('```json\n[{"bbox_2d": [1, 2, 10, 20], "label": "cat"}, {"bbox_2d": [3, 3, 9, 9]}]\n```')[0] == [
        [1, 2, 10, 20, 1.0], [3, 3, 9, 9, 0.999]]
    assert _parse("[[1, 2, 10, 20], [3, 3, 9, 9]]")[0] == [[1, 2, 10, 20, 1.0], [3, 3, 9, 9, 0.999]]
    assert _parse("(1,2),(10,20)")[0] == [[1, 2, 10, 20, 1.0]]
    # truncated by the token limit: the complete entries are kept
    assert _parse("[{'Position': [1, 2, 10, 20], 'Confidence': 0.9}, {'Position': [30, 4")[0] == [[1, 2, 10, 20, 0.9]]
    # a malformed entry is skipped, the others kept
    assert _parse("[{'Position': [1, 2, 3]}, {'Position': [1, 2, 10, 20], 'Confidence': 0.4}]")[0] == [
        [1, 2, 10, 20, 0.4]]
    # duplicates stay (a duplicate is a false positive under strict)
    assert len(_parse("[{'Position': [1, 2, 10, 20], 'Confidence': 0.9}, "
                      "{'Position': [1, 2, 10, 20], 'Confidence': 0.9}]")[0]) == 2
    # outside the image: clipped; NaN / huge coordinates: that box is dropped
    assert _parse("[{'Position': [-5, -5, 100, 100], 'Confidence': 0.9}]")[0] == [[0, 0, 64, 48, 0.9]]
    assert _parse('[{"Position": [NaN, 2, 10, 20], "Confidence": 0.9}, {"Position": [1, 2, 10, 20]}]')[0] == [
        [1, 2, 10, 20, 0.999]]
    huge = "9" * 400
    assert _parse(f"[{{'Position': [{huge}, 2, 10, 20]}}, {{'Position': [1e400, 2, 3, 4]}}]") == ([], None)
    # confidences: clipped to [0, 1]; text, NaN or booleans: rank score
    got = _parse('[{"Position": [1, 2, 10, 20], "Confidence": 1.7}, {"Position": [2, 2, 10, 20], "Confidence": -3},'
                 ' {"Position": [3, 2, 10, 20], "Confidence": "high"}, {"Position": [4, 2, 10, 20], "Confidence": NaN},'
                 ' {"Position": [5, 2, 10, 20], "Confidence": true},'
                 ' {"Position": [6, 2, 10, 20], "Confidence": "0.25"}]')
    assert [d[4] for d in got[0]] == [1.0, 0.0, 0.998, 0.997, 0.996, 0.25]
    assert [d[4] for d in _parse('[{"Position": [1, 2, 10, 20], "Confidence": 1.7}]',
                                 get_profile("visual-rft"), ModelConventions())[0]] == [1.7]
    # never evaluates code
    assert _parse("[__import__('os').system('echo hi')]") == (None, "no box found")
    assert _parse("[" * 100_000) == (None, "no box found")


# ----------------------------------------------------------------------------- mAP cross-checks
def coco_reference(ann_path, dets, cat_ids):
    """pycocotools on the annotation file itself, as Visual-RFT's coco_evaluation.py runs it, with
    the evaluation restricted to the selected categories: (AP, AP50, AP per category id)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.catIds = sorted(cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]
    per = {}
    for k, c in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per[c] = float(p[p > -1].mean()) if (p > -1).any() else None
    return ev.stats[0], ev.stats[1], per


def run(t, outputs, profile=STRICT, conv=PIXELS, n_boot=20):
    recs = [score_output(t, s, i, outputs.get(s.id, "No Objects"), conv, profile) for i, s in enumerate(t.samples())]
    return recs, aggregate(t, recs, profile, n_boot=n_boot)


def det(box, score):
    x1, y1, x2, y2 = box
    return {"Position": [x1, y1, x2, y2], "Confidence": score}


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


# one answer per query of coco_ov_base_val (pixel coordinates); the reference detections are
# what each should become: clipped to the image, confidence clipped, rank score without one
BASE_OUTPUTS = {
    "397133:1": json.dumps([det([2, 21, 12, 40], 0.8), det([40, 2, 60, 42], 0.95), det([2, 21, 12, 40], 0.8)]),
    "37777:3": "<think>a car</think>[{'Position': [18, 8, 42, 33], 'Confidence': 1.6}, {'Position': [0, 0, 4, 4]",
    "252219:1": '[{"bbox_2d": [-4, -1, 15, 29]}, {"bbox_2d": [20, 5, 30, 30]}]',
    "252219:18": "No Objects",
    "87038:1": json.dumps([det([0, 20, 10, 30], 0.7), det([20, 20, 30, 30], 0.6)]),
    "87038:6": "garbage with no box",
}
BASE_REFERENCE = [
    (397133, 1, [2, 21, 12, 40], 0.8), (397133, 1, [40, 2, 60, 42], 0.95), (397133, 1, [2, 21, 12, 40], 0.8),
    (37777, 3, [18, 8, 42, 33], 1.0),
    (252219, 1, [0, 0, 15, 29], 1.0), (252219, 1, [20, 5, 30, 30], 0.999),
    (87038, 1, [0, 20, 10, 30], 0.7), (87038, 1, [20, 20, 30, 30], 0.6),
]


def test_coco_map_equals_pycocotools_on_the_annotation_file(written):
    t = task("coco_ov_base_val")
    recs, agg = run(t, BASE_OUTPUTS)
    assert [r["failure"] for r in recs] == [None, None, None, None, None, "no box found"]
    dets = [{"image_id": i, "category_id": c, "bbox": xywh(b), "score": s} for i, c, b, s in BASE_REFERENCE]
    ap, ap50, per = coco_reference(written["coco_val"]["path"], dets, [int(c) for c in t.notes()["categories"]])
    m = agg["metrics"]
    assert m["map"]["value"] == ap and m["map50"]["value"] == ap50
    assert m["ap_person"]["value"] == per[1] and m["ap_car"]["value"] == per[3]
    assert m["ap_dog"]["value"] == per[18] == 0.0 and m["ap_bus"]["value"] == per[6] == 0.0
    assert "ap_bicycle" not in m and per[2] is None  # no ground truth in the split: no AP, not in the mean
    lo, hi = m["map"]["ci"]
    assert lo <= hi


def test_harness_score_gives_pycocotools_map(written, tmp_path, capsys):
    """The command line on a predictions file from another tool (ids are <image_id>:<category_id>)."""
    from harness.cli import main

    t = task("coco_ov_base_val")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"sample_id": sid, "output": out}) + "\n" for sid, out in BASE_OUTPUTS.items()))
    assert main(["score", "--task", "coco_ov_base_val", "--predictions", str(preds), "--box_space", "abs",
                 "--format", "json", "--bootstrap", "0"]) == 0
    agg = json.loads(capsys.readouterr().out)
    dets = [{"image_id": i, "category_id": c, "bbox": xywh(b), "score": s} for i, c, b, s in BASE_REFERENCE]
    ap, ap50, _ = coco_reference(written["coco_val"]["path"], dets, [int(c) for c in t.notes()["categories"]])
    assert agg["metrics"]["map"]["value"] == ap and agg["metrics"]["map50"]["value"] == ap50 and agg["n"] == 6


def test_coco_existence_map_counts_unqueried_ground_truth_as_missed(written, root):
    path = fx.write_existence_map(root / "exist_map_coco.json", NOVEL_MAP)
    data.configure(None, {"coco_det_queries": str(path)})
    t = task("coco_ov_novel_val")
    outputs = {"397133:17": json.dumps([det([4, 4, 24, 20], 0.9), det([29, 10, 46, 31], 0.3)]),
               "397133:80": json.dumps([det([1, 1, 9, 9], 0.99)]),  # no toaster there: a false positive
               "252219:74": "No Objects"}
    _, agg = run(t, outputs)
    dets = [{"image_id": 397133, "category_id": 17, "bbox": xywh([4, 4, 24, 20]), "score": 0.9},
            {"image_id": 397133, "category_id": 17, "bbox": xywh([29, 10, 46, 31]), "score": 0.3},
            {"image_id": 397133, "category_id": 80, "bbox": xywh([1, 1, 9, 9]), "score": 0.99}]
    ap, ap50, per = coco_reference(written["coco_val"]["path"], dets, [int(c) for c in t.notes()["categories"]])
    m = agg["metrics"]
    assert m["map"]["value"] == ap and m["map50"]["value"] == ap50
    assert m["ap_cat"]["value"] == per[17] and m["ap_mouse"]["value"] == per[74] == 0.0  # mouse never asked
    assert "ap_toaster" not in m and per[80] is None


def test_no_predictions_at_all(written):
    t = task("coco_ov_novel_val")
    recs, agg = run(t, {s: "nothing" for s in ids("coco_ov_novel_val")})
    assert all(r["failure"] == "no box found" for r in recs)
    assert agg["metrics"]["map"]["value"] == 0.0 and agg["metrics"]["ap_cat"]["value"] == 0.0
    assert agg["metrics"]["f1"]["value"] == 0.0


def lvis_modules(monkeypatch):
    """The lvis package's LVIS and LVISEval, imported without its package __init__ (which
    imports cv2 for visualisation only); np.float, which its accumulate still uses, restored."""
    spec = importlib.util.find_spec("lvis")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lvis is not installed (pip install --no-deps lvis==0.5.3)")
    for name in [m for m in sys.modules if m == "lvis" or m.startswith("lvis.")]:
        monkeypatch.delitem(sys.modules, name)
    pkg = types.ModuleType("lvis")
    pkg.__path__ = list(spec.submodule_search_locations)
    monkeypatch.setitem(sys.modules, "lvis", pkg)
    monkeypatch.setattr(np, "float", float, raising=False)
    from lvis.eval import LVISEval
    from lvis.lvis import LVIS

    yield LVIS, LVISEval
    for name in [m for m in sys.modules if m.startswith("lvis.")]:
        sys.modules.pop(name, None)


@pytest.fixture
def lvis_api(monkeypatch):
    yield from lvis_modules(monkeypatch)


def lvis_reference(LVIS, LVISEval, ann_path, dets, cat_ids):
    """LVISEval on the annotation file (official 300 detections per image), restricted to the
    selected categories: (AP, AP50, AP per category id)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = LVIS(str(ann_path))
        ev = LVISEval(gt, [dict(d) for d in dets], "bbox")
        ev.params.cat_ids = sorted(cat_ids)
        ev.run()
    precision = ev.eval["precision"]
    per = {}
    for k, c in enumerate(ev.params.cat_ids):
        p = precision[:, :, k, 0]
        per[c] = float(p[p > -1].mean()) if (p > -1).any() else None
    return ev.results["AP"], ev.results["AP50"], per


def test_lvis_map_equals_lvis_eval_with_federated_rules(written, root, lvis_api):
    LVIS, LVISEval = lvis_api
    ann_path = written["lvis_val"]["path"]
    # ask futon (neither annotated nor verified absent in 397133: LVIS ignores its boxes), mallet
    # (verified absent: a false positive) and kitchen_table (not exhaustively annotated:
    # its unmatched boxes are ignored)
    path = fx.write_existence_map(root / "exist_map_lvis.json", {
        397133: ["casserole", "kitchen_table", "mallet", "futon"], 9: ["die"], 37777: ["sugar_bowl", "die"]})
    data.configure(None, {"lvis_det_queries": str(path)})
    t = task("lvis_rare13_val")
    assert ids("lvis_rare13_val") == ["397133:1", "397133:8", "397133:9", "397133:4", "9:2", "37777:13", "37777:2"]
    outputs = {
        "397133:1": json.dumps([det([4, 5, 24, 20], 0.9), det([30, 30, 40, 40], 0.95)]),
        "397133:8": json.dumps([det([0, 24, 60, 44], 0.8), det([40, 0, 60, 10], 0.7)]),
        "397133:9": json.dumps([det([1, 1, 5, 5], 0.99)]),
        "397133:4": json.dumps([det([1, 1, 5, 5], 0.99)]),
        "9:2": json.dumps([det([10, 10, 14, 15], 0.6), det([10, 10, 14, 15], 0.6)]),
        "37777:13": "No Objects",
        "37777:2": "[{'Position': [30, 5, 35, 10], 'Confidence': 0.5}, {'Position': [3",
    }
    _, agg = run(t, outputs)
    ref = [(397133, 1, [4, 5, 24, 20], 0.9), (397133, 1, [30, 30, 40, 40], 0.95),
           (397133, 8, [0, 24, 60, 44], 0.8), (397133, 8, [40, 0, 60, 10], 0.7),
           (397133, 9, [1, 1, 5, 5], 0.99), (397133, 4, [1, 1, 5, 5], 0.99),
           (9, 2, [10, 10, 14, 15], 0.6), (9, 2, [10, 10, 14, 15], 0.6), (37777, 2, [30, 5, 35, 10], 0.5)]
    dets = [{"image_id": i, "category_id": c, "bbox": xywh(b), "score": s} for i, c, b, s in ref]
    cats = [int(c) for c in t.notes()["categories"]]
    ap, ap50, per = lvis_reference(LVIS, LVISEval, ann_path, dets, cats)
    m = agg["metrics"]
    assert m["map"]["value"] == ap and m["map50"]["value"] == ap50
    for cid, name in t.notes()["categories"].items():
        expected = per[int(cid)]
        assert (f"ap_{name}" not in m and expected is None) or m[f"ap_{name}"]["value"] == expected, name
    # the unqueried omelet of image 9 is a miss
    assert m["ap_omelet"]["value"] == 0.0 and per[fx.LVIS_ID["omelet"]] == 0.0


def test_lvis_caps_detections_per_image_at_300(written, lvis_api):
    LVIS, LVISEval = lvis_api
    t = task("lvis_rare13_val")
    rng = np.random.default_rng(0)
    outputs, ref = {}, []
    for sid in ids("lvis_rare13_val"):
        image, cat = (int(v) for v in sid.split(":"))
        boxes = []
        for _ in range(120):
            x, y = (round(float(v), 2) for v in rng.uniform(0, 20, size=2))
            s = round(float(rng.uniform(0, 1)), 4)
            boxes.append(det([float(x), float(y), float(x) + 8, float(y) + 8], s))
            ref.append({"image_id": image, "category_id": cat, "bbox": [float(x), float(y), 8.0, 8.0], "score": s})
        outputs[sid] = json.dumps(boxes)
    _, agg = run(t, outputs, n_boot=1)
    cats = [int(c) for c in t.notes()["categories"]]
    ap, _, _ = lvis_reference(LVIS, LVISEval, written["lvis_val"]["path"], ref, cats)
    assert agg["metrics"]["map"]["value"] == ap


# ----------------------------------------------------------------------------- profiles
# Per-sample f1 of one answer for the cat query of image 397133 (64x48, cats at [4, 4, 24, 20]
# and [30, 10, 46, 30]) under strict and visual-rft, for a Qwen2-VL model (0-1000 space):
# cat 1 = [62, 83, 375, 417], cat 2 = [469, 208, 719, 625].
C1, C2 = "[62, 83, 375, 417]", "[469, 208, 719, 625]"
PROFILE_ROWS = [
    # output                                                                   strict  visual-rft
    (f"<answer>[{{'Position': {C1}, 'Confidence': 0.9}}, {{'Position': {C2}, 'Confidence': 0.8}}]</answer>", 1.0, 1.0),
    (f'<answer>[{{"bbox_2d": {C1}}}, {{"bbox_2d": {C2}}}]</answer>', 1.0, 0.0),  # visual-rft: no Position key
    (f"<answer>[{C1}, {C2}]</answer>", 1.0, 0.0),
    (f"<answer>({C1[1:-1].replace(', ', ',', 1)}),(1,1)</answer>".replace("(62,83, 375, 417)", "(62,83),(375,417)"),
     2 / 3, 0.0),
    # truncated, no closing tag: strict keeps the complete entry; Visual-RFT's repair fails on the tag
    (f"<answer>[{{'Position': {C1}, 'Confidence': 0.9}}, {{'Position': [469, 2", 2 / 3, 0.0),
    # truncated without tags: both keep the complete entry
    (f"[{{'Position': {C1}, 'Confidence': 0.9}}, {{'Position': [469, 2", 2 / 3, 2 / 3),
    # a duplicate: a false positive under strict, dropped by visual-rft
    (f"<answer>[{{'Position': {C1}, 'Confidence': 0.9}}, {{'Position': {C1}, 'Confidence': 0.9}}, "
     f"{{'Position': {C2}, 'Confidence': 0.8}}]</answer>", 0.8, 1.0),
    ("<answer>No Objects</answer>", 0.0, 0.0),
    ("<answer>I see none</answer>", 0.0, 0.0),  # strict: a parse failure; visual-rft: no detections
]


@pytest.mark.parametrize("output, strict, vrft", PROFILE_ROWS)
def test_where_strict_and_visual_rft_differ(written, output, strict, vrft):
    conv = ModelConventions()
    t = task("coco_ov_novel_val")
    sample = t.get_sample("397133:17")
    assert t.evaluate(output, sample, conv, STRICT)[1]["f1"] == pytest.approx(strict)
    assert t.evaluate(output, sample, conv, get_profile("visual-rft"))[1]["f1"] == pytest.approx(vrft)


def test_profiles_differ_on_map(written):
    """The same outputs, scored under each profile: clipping, confidences and duplicates
    change mAP; a Qwen2.5-VL model's pixel answers are read as 0-1000 by visual-rft."""
    t = task("coco_ov_novel_val")
    conv = ModelConventions()
    outputs = {"397133:17": f"[{{'Position': {C1}, 'Confidence': 0.9}}, {{'Position': [0, 700, 200, 1000], "
                            f"'Confidence': 1.2}}, {{'Position': {C2}, 'Confidence': 1.5}}, "
                            f"{{'Position': {C1}, 'Confidence': 0.95}}]",
               "37777:74": "[{'Position': [104, 125, 312, 325], 'Confidence': 0.9}]"}
    results = {}
    for name in ("strict", "visual-rft", "curr-reft"):
        _, agg = run(t, outputs, get_profile(name), conv, n_boot=1)
        results[name] = agg["metrics"]["map"]["value"]
    # strict: confidences clipped to 1.0 tie, so the false positive (listed first) ranks above the
    # second cat, and the duplicate is one more false positive; visual-rft keeps 1.5 > 1.2 and
    # drops the duplicate; curr-reft reads the 0-1000 boxes as pixels (no clipping): no hit
    assert results["visual-rft"] > results["strict"] > results["curr-reft"] == 0.0
