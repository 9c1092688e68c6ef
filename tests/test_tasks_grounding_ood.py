"""Ref-L4, LISA (ReasonSeg as boxes) and RefGTA loaders on tiny fixtures in the upstream formats."""

from __future__ import annotations

import json
import pickle

import pytest
from fixtures_grounding_ood import write_lisa, write_parquet, write_refgta, write_refl4

import tasks  # noqa: F401  (registers the tasks)
from harness import dataset_task
from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.protocol import get_profile
from harness.registry import SUITES, TASKS
from harness.taskspec import make_task, resolve

CONV = ModelConventions()
STRICT = get_profile("strict")


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    dataset_task._INDEX_CACHE.clear()
    yield tmp_path
    dataset_task._INDEX_CACHE.clear()


def _check_samples(task, expected):
    samples = list(task.samples())
    assert [s.id for s in samples] == [e["id"] for e in expected]
    for s, e in zip(samples, expected):
        assert s.fields["expression"] == e["expression"]
        assert s.target == pytest.approx(e["box"])
        assert tuple(s.images[0].size) == tuple(e["size"])
        assert s.images[0].uri.endswith(e["image"])
    return samples


def _perfect_scores(task):
    for s in task.samples():
        parsed, scores = task.evaluate(task.answer_text(s, CONV), s, CONV, STRICT)
        assert parsed.ok, parsed.failure
        assert scores["acc@0.5"] == 1.0 and scores["acc@0.9"] == 1.0
        assert scores["miou"] == pytest.approx(1.0, abs=1e-2)


def _formats_work(name):
    for fmt in ("mc", "yesno"):
        task = make_task(name, fmt)
        for s in task.samples():
            p1, p2 = task.prompt(s, CONV), task.prompt(s, CONV)
            assert p1.text == p2.text  # distractors are deterministic
            target = task.target(s, CONV)
            assert task.evaluate(target, s, CONV, STRICT)[1] == {"acc": 1.0}
            if fmt == "mc":
                assert p1.text.count("\n") >= 5 and "Options:" in p1.text


# ----- Ref-L4 ------------------------------------------------------------------------------------

def test_refl4_reads_rows_in_order(data_root):
    fx = write_refl4(data_root)
    for split in ("val", "test"):
        task = make_task(f"refl4_{split}")
        samples = _check_samples(task, fx["expected"][split])
        assert task.role == "ood"
    first = make_task("refl4_val").get_sample("7")
    assert first.target == [4.5, 6.0, 24.5, 36.0]  # xywh -> xyxy
    assert first.metadata["source"] == "coco" and first.metadata["ori_category_id"] == "refcoco_1"
    assert first.fields["others"] == [[26.0, 8.0, 56.0, 42.0]]  # the other annotation of the same image
    assert samples[0].metadata["source"] == "o365"


def test_refl4_noncoco_excludes_coco_images(data_root):
    fx = write_refl4(data_root)
    val = make_task("refl4_val_noncoco")
    want = [e for e in fx["expected"]["val"] if not e["coco"]]
    _check_samples(val, want)
    assert [s.id for s in val.samples()] == ["3", "5"]
    notes = val.notes()
    assert notes["excluded_coco"] == 2 and notes["kept"] == 2 and notes["upstream_rows"] == 4
    assert notes["rows_by_image_source"] == {"coco": 2, "o365": 2}
    test = make_task("refl4_test_noncoco")
    assert [s.id for s in test.samples()] == ["40"]
    assert test.notes()["excluded_coco"] == 1
    # a fresh instance (index already cached) reports the same notes
    assert make_task("refl4_val_noncoco").notes() == notes
    assert "excluded_coco" not in make_task("refl4_val").notes()


def test_refl4_perfect_answers_and_formats(data_root):
    write_refl4(data_root)
    _perfect_scores(make_task("refl4_val"))
    _formats_work("refl4_val_noncoco")


def test_refl4_missing(data_root):
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("refl4_val"))
    assert "ref-l4" in str(exc.value) and "ref-l4-val.parquet" in str(exc.value)
    fx = write_refl4(data_root, images=False)
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("refl4_val"))
    assert "images" in str(exc.value) and "tar -xzf" in str(exc.value)
    (fx["dir"] / "images").mkdir()
    (fx["dir"] / "ref-l4-test.parquet").unlink()
    with pytest.raises(DatasetMissing, match="ref-l4-test.parquet"):
        len(make_task("refl4_test"))


def _bad_refl4(data_root, mutate):
    fx = write_refl4(data_root)
    rows = fx["rows"]["val"]
    mutate(rows)
    write_parquet(fx["dir"] / "ref-l4-val.parquet", rows)
    dataset_task._INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("refl4_val"))
    msg = str(exc.value)
    assert "\n" not in msg and "ref-l4-val.parquet" in msg
    return msg


def test_refl4_malformed(data_root):
    assert "'bbox' must be 4 numbers" in _bad_refl4(data_root, lambda rows: rows[1].update(bbox=[1.0, 2.0, 3.0]))
    assert "non-positive" in _bad_refl4(data_root, lambda rows: rows[0].update(bbox=[1.0, 2.0, 0.0, 3.0]))
    assert "'caption'" in _bad_refl4(data_root, lambda rows: rows[2].update(caption=""))
    assert "missing column(s) caption" in _bad_refl4(data_root, lambda rows: [r.pop("caption") for r in rows])
    assert "row 3" in _bad_refl4(data_root, lambda rows: rows[3].update(width=0))
    # a truncated parquet file
    path = data_root / "ref-l4" / "ref-l4-val.parquet"
    path.write_bytes(path.read_bytes()[:50])
    dataset_task._INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing, match="not a readable parquet file"):
        len(make_task("refl4_val"))


# ----- LISA --------------------------------------------------------------------------------------

def test_lisa_reads_one_sample_per_image(data_root):
    fx = write_lisa(data_root)
    for split in ("val", "test"):
        task = make_task(f"lisa_{split}")
        samples = _check_samples(task, fx["expected"][split])
        for s, e in zip(samples, fx["expected"][split]):
            assert s.metadata["n_targets"] == e["n_targets"]
    s = make_task("lisa_val").get_sample("val/0007_xyz")
    assert s.metadata["n_texts"] == 2 and s.metadata["is_sentence"] is False
    # the size came from the JPEG header: the JSON has no imageWidth/imageHeight
    assert s.images[0].size == (40, 32)
    t = make_task("lisa_test").get_sample("test/9_q")
    assert t.metadata["first_shape_box"] == [1.0, 1.0, 2.0, 2.0]  # Visual-RFT's shapes[0] box (a flag here)
    assert make_task("lisa_val").index()[1]["size"] == [64, 48]  # from the JSON, no header read


def test_lisa_cp1252_annotation(data_root):
    fx = write_lisa(data_root)
    path = fx["dir"] / "val" / "0007_xyz.json"
    anno = json.loads(path.read_text())
    anno["text"] = ["the caf\u00e9 chair"]
    path.write_bytes(json.dumps(anno, ensure_ascii=False).encode("cp1252"))
    assert make_task("lisa_val").get_sample("val/0007_xyz").fields["expression"] == "the caf\u00e9 chair"


def test_lisa_perfect_answers_and_formats(data_root):
    write_lisa(data_root)
    _perfect_scores(make_task("lisa_val"))
    _perfect_scores(make_task("lisa_test"))
    _formats_work("lisa_val")


def test_lisa_missing(data_root):
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("lisa_val"))
    assert "lisa/ReasonSeg" in str(exc.value)
    fx = write_lisa(data_root)
    (fx["dir"] / "val" / "1234_abc.json").unlink()
    with pytest.raises(DatasetMissing, match="1234_abc.jpg has no annotation"):
        len(make_task("lisa_val"))
    for p in (fx["dir"] / "test").iterdir():
        p.unlink()
    with pytest.raises(DatasetMissing, match="no .jpg images"):
        len(make_task("lisa_test"))


def _bad_lisa(data_root, mutate, raw: str | None = None):
    fx = write_lisa(data_root)
    path = fx["dir"] / "val" / "1234_abc.json"
    anno = json.loads(path.read_text())
    mutate(anno)
    path.write_text(raw if raw is not None else json.dumps(anno))
    dataset_task._INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("lisa_val"))
    msg = str(exc.value)
    assert "\n" not in msg and "1234_abc.json" in msg
    return msg


def test_lisa_malformed(data_root):
    assert "not valid JSON" in _bad_lisa(data_root, lambda a: None, raw='{"text": ["a"], "shapes": [')
    assert "missing key 'shapes'" in _bad_lisa(data_root, lambda a: a.pop("shapes"))
    assert "'text'" in _bad_lisa(data_root, lambda a: a.update(text=[]))
    assert "at least 3" in _bad_lisa(data_root, lambda a: a["shapes"][0].update(points=[[1, 2], [3, 4]]))
    assert "not two numbers" in _bad_lisa(data_root, lambda a: a["shapes"][2].update(points=[[1, 2], ["x", 4], [5, 6]]))
    assert "no target shape" in _bad_lisa(data_root, lambda a: a.update(shapes=[a["shapes"][1]]))
    assert "'label'" in _bad_lisa(data_root, lambda a: a["shapes"][0].pop("label"))
    assert "expected a JSON object" in _bad_lisa(data_root, lambda a: None, raw="[1, 2]")


# ----- RefGTA ------------------------------------------------------------------------------------

def test_refgta_reads_sentences(data_root):
    fx = write_refgta(data_root)
    for split in ("test", "val"):
        task = make_task(f"refgta_{split}")
        samples = _check_samples(task, fx["expected"][split])
        for s, e in zip(samples, fx["expected"][split]):
            assert s.fields["others"] == e["others"]
        assert task.role == "ood"
    s = make_task("refgta_test").get_sample("20")
    assert s.metadata == {"dataset": "refgta", "ref_id": 2, "ann_id": 502, "image_id": 11640, "split": "test",
                          "category": "person"}
    # refer.py's readers, with RefGTA's own image root (not COCO's)
    assert s.images[0].uri == str(data_root / "refgta" / "gtav_cv_mod_data" / fx["instances"]["images"][0]["file_name"])


def test_refgta_perfect_answers_and_formats(data_root):
    write_refgta(data_root)
    _perfect_scores(make_task("refgta_test"))
    _formats_work("refgta_test")


def test_refgta_missing(data_root):
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("refgta_test"))
    assert "refs(utokyo).p" in str(exc.value) and "instances.json" in str(exc.value)
    write_refgta(data_root, images=False)
    with pytest.raises(DatasetMissing, match="gtav_cv_mod_data"):
        len(make_task("refgta_test"))


def _bad_refgta(data_root, instances=None, refs=None, refs_bytes=None):
    fx = write_refgta(data_root)
    if instances is not None:
        (fx["dir"] / "instances.json").write_text(instances if isinstance(instances, str) else json.dumps(instances))
    if refs is not None:
        (fx["dir"] / "refs(utokyo).p").write_bytes(pickle.dumps(refs, protocol=2))
    if refs_bytes is not None:
        (fx["dir"] / "refs(utokyo).p").write_bytes(refs_bytes)
    dataset_task._INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing) as exc:
        len(make_task("refgta_test"))
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_refgta_malformed(data_root):
    from fixtures_grounding_ood import refgta_files

    inst, refs = refgta_files()
    assert "not valid JSON" in _bad_refgta(data_root, instances=json.dumps(inst)[:40])
    bad = json.loads(json.dumps(inst))
    bad["annotations"][1]["bbox"] = [1, 2, "3", 4]
    assert "bbox must be 4 numbers" in _bad_refgta(data_root, instances=bad)
    bad = json.loads(json.dumps(inst))
    del bad["categories"]
    assert "'categories' is missing" in _bad_refgta(data_root, instances=bad)
    good = pickle.dumps(refs, protocol=2)
    assert "truncated" in _bad_refgta(data_root, refs_bytes=good[: len(good) // 2])
    assert "refusing" in _bad_refgta(data_root, refs_bytes=pickle.dumps({1, 2}, protocol=2))
    bad_refs = [dict(r) for r in refs]
    del bad_refs[1]["sentences"]
    assert "'sentences'" in _bad_refgta(data_root, refs=bad_refs)
    bad_refs = [dict(r) for r in refs]
    bad_refs[3]["ann_id"] = 999
    msg = _bad_refgta(data_root, refs=bad_refs)
    assert "annotation 999" in msg and "instances.json does not have" in msg and "refs(utokyo).p" in msg
    bad_refs = [dict(r) for r in refs]
    bad_refs[1]["image_id"] = 22
    assert "mismatched files" in _bad_refgta(data_root, refs=bad_refs)
    bad_refs = [dict(r) for r in refs]
    bad_refs[1]["sentences"] = [dict(bad_refs[1]["sentences"][0], sent="  ")]
    assert "sentence 21 has an empty 'sent'" in _bad_refgta(data_root, refs=bad_refs)


def test_refgta_strips_expressions(data_root):
    from fixtures_grounding_ood import refgta_files

    fx = write_refgta(data_root)
    _, refs = refgta_files()
    refs[2]["sentences"] = [dict(refs[2]["sentences"][0], sent=" woman in black ")]
    (fx["dir"] / "refs(utokyo).p").write_bytes(pickle.dumps(refs, protocol=2))
    assert make_task("refgta_val").get_sample("30").fields["expression"] == "woman in black"


# ----- registry ----------------------------------------------------------------------------------

def test_registered_names_and_suite():
    for name in ("refl4_val", "refl4_test", "refl4_val_noncoco", "refl4_test_noncoco", "lisa_val", "lisa_test",
                 "refgta_val", "refgta_test"):
        assert TASKS.get(name).role == "ood"
    suite = SUITES.get("curr_reft_det")
    assert (suite.train, suite.id, suite.ood) == ("refcoco_train", ("refcoco_val",), ("refgta_test",))
    refs = resolve("curr_reft_det")
    assert [(r.name, r.role) for r in refs] == [("refcoco_val", "id"), ("refgta_test", "ood")]
    assert [r.full_name for r in resolve("curr_reft_det:mc")] == ["refcoco_val:mc", "refgta_test:mc"]
