"""RefCOCO/+/g (refer layout), REC rows files (VLM-R1, Curr-ReFT) and Curr-ReFT's RefCOCO categories."""

from __future__ import annotations

import collections
import json
import pickle

import fixtures_refer as fx
import pytest

import tasks.classification.refcoco_categories  # noqa: F401  (registers refcoco_cls_*, curr_reft_cls)
from harness import data
from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.errors import UsageError
from harness.protocol import get_profile
from harness.registry import SUITES
from harness.taskspec import make_task, resolve
from tasks.grounding.rows import read_rows, rows_task

CONV = ModelConventions()
STRICT = get_profile("strict")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_config", data._config)  # restored after the test: configure() below is process-wide
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    data.configure(None, {})  # $HARNESS_DATA, no options
    return tmp_path


def _check(task, expected):
    samples = list(task.samples())
    assert [s.id for s in samples] == [e["id"] for e in expected]
    for s, e in zip(samples, expected):
        assert s.fields["expression"] == e["expression"]
        assert s.target == e["box"]
        assert s.images[0].size == tuple(e["size"])
        assert s.images[0].uri.endswith(e["image"])
        if "others" in e:
            assert s.fields["others"] == e["others"]
            assert s.metadata["ref_id"] == e["ref_id"] and s.metadata["ann_id"] == e["ann_id"]
            assert s.metadata["image_id"] == e["image_id"] and s.metadata["category"] == e["category"]
    return samples


# ----- refer layout ------------------------------------------------------------------------------

def test_refcoco_splits_exact(root):
    expected = fx.write_refer(root, "refcoco", "unc")
    for split in ("train", "val", "testA", "testB"):
        task = make_task(f"refcoco_{split}")
        assert task.role == ("train" if split == "train" else "id")
        _check(task, expected[split])
    train = list(make_task("refcoco_train").samples())
    # pickle order of refs, then sentence order; ids are sent_ids
    assert [s.id for s in train] == ["12", "11", "3", "20"]
    assert train[2].target == [10.5, 4.0, 30.5, 34.25]  # xywh [10.5, 4, 20, 30.25] -> xyxy
    assert train[2].fields["others"] == [[40.0, 20.0, 52.0, 30.0], [0.0, 0.0, 8.0, 6.0]]
    assert train[2].images[0].uri == str(root / "coco" / "train2014" / "COCO_train2014_000000581857.jpg")
    assert train[2].metadata["split"] == "train" and train[2].metadata["dataset"] == "refcoco"
    assert train[2].images[0].load().size == (64, 48)
    assert make_task("refcoco_val").get_sample("31").fields["expression"] == "person on left"


def test_refcocoplus_and_refcocog(root):
    exp_plus = fx.write_refer(root, "refcoco+", "unc")
    _check(make_task("refcocoplus_testB"), exp_plus["testB"])
    exp_umd = fx.write_refer(root, "refcocog", "umd")
    exp_google = fx.write_refer(root, "refcocog", "google")
    for split in ("train", "val", "test"):
        _check(make_task(f"refcocog_{split}"), exp_umd[split])
    for split in ("train", "val"):
        _check(make_task(f"refcocog_google_{split}"), exp_google[split])
    assert [s.id for s in make_task("refcocog_test").samples()] == ["40", "50"]


def test_coco_images_option(root, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("coco") / "train2014"
    expected = fx.write_refer(root, "refcoco", "unc", images=elsewhere)
    with pytest.raises(DatasetMissing, match="coco_images"):
        make_task("refcoco_val").read_index()
    data.configure(root, {"coco_images": str(elsewhere)})
    samples = _check(make_task("refcoco_val"), expected["val"])
    assert samples[0].images[0].uri == str(elsewhere / "COCO_train2014_000000000200.jpg")


def test_missing_dataset_names_layout(root):
    with pytest.raises(DatasetMissing) as exc:
        make_task("refcoco_val").read_index()
    msg = str(exc.value)
    assert "refer/refcoco" in msg and "instances.json" in msg and "refs(unc).p" in msg and "Found" in msg
    fx.write_refer(root, "refcocog", "umd")
    with pytest.raises(DatasetMissing, match=r"missing refs\(google\)\.p.*refs\(umd\)\.p"):
        make_task("refcocog_google_val").read_index()
    ok, why = make_task("refcocoplus_val").data_status()
    assert not ok and "refcoco+" in why


def test_no_data_root(monkeypatch):
    monkeypatch.setattr(data, "_config", data._config)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    data.configure(None, {})
    with pytest.raises(DatasetMissing, match="no data root"):
        make_task("refcoco_val").read_index()


def _refs_path(root):
    return root / "refer" / "refcoco" / "refs(unc).p"


def test_truncated_instances(root):
    fx.write_refer(root)
    path = root / "refer" / "refcoco" / "instances.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(DatasetMissing, match=r"instances\.json is not valid JSON"):
        make_task("refcoco_val").read_index()


def test_truncated_refs_pickle(root):
    fx.write_refer(root)
    blob = _refs_path(root).read_bytes()
    _refs_path(root).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetMissing, match=r"refs\(unc\)\.p.*truncated"):
        make_task("refcoco_val").read_index()


def test_pickle_with_objects_refused_without_running(root):
    marker = root / "pwned.txt"
    fx.write_refer(root, refs=[fx.FileMaker(marker)])
    with pytest.raises(DatasetMissing, match=r"refusing to load (builtins|io)\.open"):
        make_task("refcoco_val").read_index()
    assert not marker.exists()
    # an OrderedDict is harmless but still a global: refused by name
    refs = [collections.OrderedDict(r) for r in fx.refs_list()]
    fx.write_refer(root / "other", refs=refs)
    data.configure(root / "other", {})
    with pytest.raises(DatasetMissing, match="refusing to load collections.OrderedDict"):
        make_task("refcoco_val").read_index()


def test_ref_to_missing_annotation(root):
    refs = fx.refs_list()
    refs[3]["ann_id"] = 999
    fx.write_refer(root, refs=refs)
    with pytest.raises(DatasetMissing, match="ref 9 points to annotation 999"):
        make_task("refcoco_val").read_index()


@pytest.mark.parametrize("bbox", [[1, 2, 3], [1, 2, 3, "4"], "1 2 3 4", [1, 2, 3, None]])
def test_bbox_not_four_numbers(root, bbox):
    inst = fx.instances_json()
    inst["annotations"][1]["bbox"] = bbox
    fx.write_refer(root, instances=inst)
    with pytest.raises(DatasetMissing, match=r"annotation 17: bbox must be 4 numbers"):
        make_task("refcoco_val").read_index()


@pytest.mark.parametrize("change, message", [
    (lambda i: i.pop("images"), "'images' is missing or not a list"),
    (lambda i: i["images"][0].pop("width"), r"images\[0\] needs"),
    (lambda i: i["annotations"][0].update(image_id=5), "image_id 5 is not in 'images'"),
])
def test_bad_instances_fields(root, change, message):
    inst = fx.instances_json()
    change(inst)
    fx.write_refer(root, instances=inst)
    with pytest.raises(DatasetMissing, match=message):
        make_task("refcoco_train").read_index()


@pytest.mark.parametrize("change, message", [
    (lambda r: r.__setitem__(0, ["not", "a", "dict"]), r"ref \[0\] is a list"),
    (lambda r: r[1].pop("sentences"), "needs a list 'sentences'"),
    (lambda r: r[1]["sentences"][0].pop("sent"), "each sentence needs"),
    (lambda r: r[2].update(image_id=200), "ref 7 says image 200"),
])
def test_bad_refs(root, change, message):
    refs = fx.refs_list()
    change(refs)
    fx.write_refer(root, refs=refs)
    with pytest.raises(DatasetMissing, match=message):
        make_task("refcoco_train").read_index()


def test_refs_not_a_list(root):
    fx.write_refer(root, refs={"refs": []})
    with pytest.raises(DatasetMissing, match="expected a list of refs"):
        make_task("refcoco_val").read_index()


def test_perfect_answers_score_one(root):
    fx.write_refer(root)
    for name in ("refcoco_train", "refcoco_val", "refcoco_testA", "refcoco_testB"):
        task = make_task(name)
        for sample in task.samples():
            _, scores = task.evaluate(task.answer_text(sample, CONV), sample, CONV, STRICT)
            assert scores["acc@0.5"] == scores["acc@0.75"] == scores["acc@0.9"] == 1.0
            assert scores["miou"] > 0.97  # 0-1000 rounding of a 64-px image
    # in original-pixel space with integer boxes the answer is exact
    abs_conv = ModelConventions(box_space="abs")
    task = make_task("refcoco_val")
    for sample in task.samples():
        _, scores = task.evaluate(task.answer_text(sample, abs_conv), sample, abs_conv, STRICT)
        assert scores == {"acc@0.5": 1.0, "acc@0.75": 1.0, "acc@0.9": 1.0, "miou": 1.0}


def test_mc_distractors_are_other_objects(root):
    fx.write_refer(root)
    task = make_task("refcoco_train", "mc")
    sample = task.get_sample("3")  # image 581857: the dog and the car are the other objects
    prompt = task.prompt(sample, CONV).text
    target = task.target(sample, CONV)
    assert task.prompt(sample, CONV).text == prompt and task.target(sample, CONV) == target  # deterministic
    others = {CONV.from_pixels(tuple(b), sample.images[0].size) for b in sample.fields["others"]}
    from harness.boxes import format_box
    for box in others:
        assert format_box(box) in prompt
    _, scores = task.evaluate(target, sample, CONV, STRICT)
    assert scores["acc"] == 1.0
    yesno = make_task("refcoco_val", "yesno")
    s = yesno.get_sample("30")
    assert yesno.target(s, CONV) in ("yes", "no")
    assert yesno.evaluate(yesno.target(s, CONV), s, CONV, STRICT)[1]["acc"] == 1.0


def test_index_is_json_and_fingerprint_changes(root):
    fx.write_refer(root)
    task = make_task("refcoco_val")
    json.dumps(task.index())
    before = task.fingerprint()
    refs = fx.refs_list()
    refs[3]["sentences"][0]["sent"] = "leftmost guy"
    fx.write_refer(root / "b", refs=refs)
    data.configure(root / "b", {})
    assert make_task("refcoco_val").fingerprint() != before


# ----- rows files -----------------------------------------------------------------------------------

def test_vlmr1_json_rows(root):
    expected = fx.write_vlmr1(root, "refcoco_val")
    task = make_task("vlmr1_refcoco_val")
    samples = _check(task, expected)
    assert [s.id for s in samples] == ["refcoco_val:0", "refcoco_val:1", "refcoco_val:2"]
    assert samples[1].target == [10.5, 4.0, 30.5, 34.25]
    assert samples[0].images[0].uri == str(root / "coco" / "train2014" / "COCO_train2014_000000000200.jpg")
    assert samples[0].metadata["problem"].endswith("describes: left guy.")
    for s in samples:
        _, scores = task.evaluate(task.answer_text(s, CONV), s, CONV, STRICT)
        assert scores["acc@0.9"] == 1.0
    assert make_task("vlmr1_refcocog_train").role == "train"


def test_vlmr1_missing_and_images_option(root, tmp_path_factory):
    with pytest.raises(DatasetMissing, match=r"vlm_r1/rec_jsons_processed/refcocop_val\.json"):
        make_task("vlmr1_refcocop_val").read_index()
    fx.write_vlmr1(root, "refcocop_val", images=False)
    with pytest.raises(DatasetMissing, match="vlmr1_images"):
        make_task("vlmr1_refcocop_val").read_index()
    coco = tmp_path_factory.mktemp("mycoco")
    fx.write_images(coco / "train2014")
    data.configure(root, {"vlmr1_images": str(coco)})
    assert len(make_task("vlmr1_refcocop_val")) == 3


def test_jsonl_rows_and_factory(root):
    path = root / "mine" / "rec_val.jsonl"
    expected = fx.write_jsonl_rows(path)
    fx.write_images(root / "coco" / "train2014")
    entries = read_rows(path)
    assert [e["id"] for e in entries] == [e["id"] for e in expected]
    assert [e["expression"] for e in entries] == [e["expression"] for e in expected]
    assert [e["box"] for e in entries] == [e["box"] for e in expected]
    assert entries[1]["metadata"]["task"] == "detection"
    cls = rows_task("rows_test_rec_val", "mine/rec_val.jsonl", "coco", role="ood", register=False)
    task = cls()
    samples = list(task.samples())
    assert [s.id for s in samples] == ["7", "rec_val:3", "rec_val:4"]
    assert samples[0].images[0].size == (40, 30)  # read from the header: rows carry no size
    assert task.role == "ood"
    for s in samples:
        _, scores = task.evaluate(task.answer_text(s, CONV), s, CONV, STRICT)
        assert scores["acc@0.9"] == 1.0
    # absolute paths need no data root
    absolute = rows_task("rows_abs", str(path), str(root / "coco"), register=False)()
    assert len(absolute) == 3


@pytest.mark.parametrize("line, message", [
    ('{"image": "a.jpg", "problem": "x", "solution": [1, 2, 3', r"line 2 is not valid JSON"),
    ('{"image": "a.jpg", "problem": "x", "solution": [1, 2, 3]}', r"line 2: solution must be 4 numbers"),
    ('{"image": "a.jpg", "problem": "x", "solution": "<answer>none</answer>"}', r"line 2: expected one \[x1"),
    ('{"image": "a.jpg", "problem": "x", "solution": [5, 5, 1, 1]}', r"line 2: solution .* x1 <= x2"),
    ('{"image": "a.jpg", "problem": "x"}', r"line 2 has no 'solution'"),
    ('{"problem": "x", "solution": [1, 2, 3, 4]}', r"line 2: 'image' must be one image path"),
    ('[1, 2]', r"line 2 is a list, not a JSON object"),
])
def test_bad_jsonl_line(root, line, message):
    path = root / "bad.jsonl"
    good = json.dumps({"image": "a.jpg", "problem": "x", "solution": [1, 2, 3, 4]})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DatasetMissing, match=message):
        read_rows(path)


def test_bad_rows_files(root):
    bad = root / "rows.json"
    bad.write_text('[{"image": "a.jpg", "solution": [1, 2, 3, 4], "problem": "x"}, ')
    with pytest.raises(DatasetMissing, match="is not valid JSON"):
        read_rows(bad)
    bad.write_text('{"image": "a.jpg"}')
    with pytest.raises(DatasetMissing, match="expected a JSON list of rows"):
        read_rows(bad)
    good = {"image": "a.jpg", "solution": [1, 2, 3, 4], "problem": "x"}
    rows = [good, {**good, "image": 3}]
    bad.write_text(json.dumps(rows))
    with pytest.raises(DatasetMissing, match="row 1: 'image' must be one image path"):
        read_rows(bad)
    with pytest.raises(UsageError, match=r"must end in \.json"):
        read_rows(root / "rows.csv")
    dup = root / "dup.jsonl"
    row = {"id": 1, "image": "a.jpg", "problem": "x", "solution": [1, 2, 3, 4]}
    dup.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    (root / "imgs").mkdir()
    with pytest.raises(DatasetMissing, match="'1' occurs more than once"):
        rows_task("rows_dup", "dup.jsonl", "imgs", register=False)().index()


# ----- Curr-ReFT categories ---------------------------------------------------------------------------

def test_refcoco_categories(root):
    fx.write_refer(root)
    train, val = make_task("refcoco_cls_train"), make_task("refcoco_cls_val")
    assert train.role == "train" and val.role == "id"
    assert val.notes()["images_count"] == 1 and "val" in val.notes()["images"]
    for task, split in ((train, "train"), (val, "val")):
        samples = list(task.samples())
        assert [(s.id, s.target) for s in samples] == fx.expected_categories(split)
    first = next(train.samples())
    assert first.id == "581857" and first.target == ["car", "dog", "person"]
    assert first.images[0].size == (64, 48)
    assert first.images[0].uri == str(root / "coco" / "train2014" / "COCO_train2014_000000581857.jpg")
    for task in (train, val):
        for s in task.samples():
            _, scores = task.evaluate(task.answer_text(s, CONV), s, CONV, STRICT)
            assert scores["acc"] == 1.0 and scores["category_iou"] == 1.0
    mc = make_task("refcoco_cls_train", "mc")
    s = mc.get_sample("100")
    assert mc.evaluate(mc.target(s, CONV), s, CONV, STRICT)[1]["acc"] == 1.0


def test_refcoco_categories_missing(root):
    with pytest.raises(DatasetMissing, match=r"refer/refcoco"):
        make_task("refcoco_cls_val").read_index()


# ----- suites -----------------------------------------------------------------------------------------

def test_suites_resolve():
    refs = resolve("refcoco")
    assert [r.name for r in refs] == ["refcoco_val", "refcoco_testA", "refcoco_testB", "refl4_val_noncoco",
                                      "lisa_test"]
    assert [r.role for r in refs] == ["id", "id", "id", "ood", "ood"]
    assert SUITES.get("refcoco").train == "refcoco_train"
    cls = resolve("curr_reft_cls:mc")
    assert [(r.full_name, r.role) for r in cls] == [("refcoco_cls_val:mc", "id"), ("voc_cls:mc", "ood")]
    assert SUITES.get("curr_reft_cls").train == "refcoco_cls_train"


def test_pickle_protocol_two_plain_data_loads(tmp_path):
    from harness import safe_pickle

    path = tmp_path / "refs.p"
    with open(path, "wb") as f:
        pickle.dump(fx.refs_list(), f, protocol=2)
    assert safe_pickle.load(path) == fx.refs_list()
