"""ImageNet-1K / ImageNet-100 / ImageNet-R / ImageNet-A and Pascal VOC loaders on tiny upstream-format fixtures."""

from __future__ import annotations

import pytest
from fixtures_imagenet import (
    A_CLASSES,
    MAPPING,
    R_CLASSES,
    SINGLE_WORD,
    VOC_NOT_IN_TEST,
    voc_xml,
    write_imagenet,
    write_imagenet_a,
    write_imagenet_r,
    write_voc,
)

from harness import data
from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.dataset_task import _INDEX_CACHE
from harness.protocol import get_profile
from harness.registry import SUITES, TASKS
from harness.taskspec import resolve
from tasks.classification import imagenet

CONV = ModelConventions()
STRICT = get_profile("strict")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_config", data.DataConfig())
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def full(root):
    return {"imagenet": write_imagenet(root), "r": write_imagenet_r(root), "a": write_imagenet_a(root),
            "voc": write_voc(root), "root": root}


def task(name, fmt="open"):
    return TASKS.get(name)(fmt)


def flat(by_class, wnids):
    return [i for w in wnids for i in by_class[w]]


# ----- ImageNet-1K val ----------------------------------------------------------------------------

def test_imagenet_val_ids_labels_order(full):
    t = task("imagenet_val")
    samples = list(t.samples())
    assert [s.id for s in samples] == flat(full["imagenet"]["val"], sorted(MAPPING))
    assert samples[0].id.startswith("n01440764/ILSVRC2012_val_")
    by_id = {s.id: s for s in samples}
    tench = by_id[full["imagenet"]["val"]["n01440764"][0]]
    assert tench.target == "tench" and tench.fields["synonyms"] == ("Tinca tinca",)
    assert tench.metadata["wnid"] == "n01440764" and tench.images[0].size == (8, 8)
    shark = by_id[full["imagenet"]["val"]["n01484850"][0]]
    assert shark.target == "great white shark"
    assert shark.fields["synonyms"] == ("white shark", "man-eater", "man-eating shark", "Carcharodon carcharias")
    assert t.role == "id" and len(t) == 16
    assert t.notes()["classes"] == 8 and t.notes()["images"] == 16


def test_image_suffixes_case_insensitive_and_other_files_ignored(root):
    written = write_imagenet(root)
    folder = root / "imagenet" / "val" / "n01440764"
    from fixtures_imagenet import _image

    _image(folder / "extra_b.png")
    _image(folder / "extra_a.JPG")
    _image(folder / "extra_c.jpeg")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.JPEG").write_bytes(b"")
    (root / "imagenet" / "val" / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")
    ids = [s.id for s in task("imagenet_val").samples() if s.id.startswith("n01440764/")]
    assert ids == sorted(written["val"]["n01440764"] + [f"n01440764/extra_{x}" for x in ("a.JPG", "b.png", "c.jpeg")])


def test_synonym_scores_under_strict(full):
    t = task("imagenet_val")
    tench = t.get_sample(full["imagenet"]["val"]["n01440764"][0])
    for answer in ("tench", "Tinca tinca", "tinca tinca", "Tench."):
        assert t.evaluate(answer, tench, CONV, STRICT)[1]["acc"] == 1.0, answer
    assert t.evaluate("goldfish", tench, CONV, STRICT)[1]["acc"] == 0.0
    shark = t.get_sample(full["imagenet"]["val"]["n01484850"][0])
    assert t.evaluate("man-eating shark", shark, CONV, STRICT)[1]["acc"] == 1.0


# ----- ImageNet-100 ---------------------------------------------------------------------------------

def test_imagenet100_takes_all_single_word_classes_when_fewer_than_100(full):
    train, val = task("imagenet100_train"), task("imagenet100_val")
    assert [s.id for s in train.samples()] == flat(full["imagenet"]["train"], SINGLE_WORD)
    assert [s.id for s in val.samples()] == flat(full["imagenet"]["val"], SINGLE_WORD)
    assert train.role == "train" and val.role == "id"
    notes = train.notes()
    assert notes["seed"] == 0 and notes["classes_wanted"] == 100 and notes["single_word_classes"] == 5
    assert notes["classes"] == [{"wnid": w, "label": MAPPING[w][0]} for w in SINGLE_WORD]
    assert "only 5 single-word classes" in notes["note"]
    assert notes["train_per_class"] == {w: {"available": 3, "chosen": 3} for w in SINGLE_WORD}
    assert notes["train_images"] == 15 and len(notes["train_ids_sha256"]) == 16
    assert val.notes()["classes"] == notes["classes"] and val.notes()["val_images"] == 10
    # Shih-Tzu (hyphen) and the multi-word classes are never chosen
    assert {s.target for s in val.samples()} == {"tench", "goldfish", "hammerhead", "stingray", "cock"}


def test_imagenet100_seeded_selection_recorded_and_reproducible(root, monkeypatch):
    written = write_imagenet(root, train_per_class=5)
    write_imagenet_r(root)
    monkeypatch.setattr(imagenet, "N_CLASSES", 3)
    monkeypatch.setattr(imagenet, "PER_CLASS", 2)

    def build():
        _INDEX_CACHE.clear()
        train, val, r = task("imagenet100_train"), task("imagenet100_val"), task("imagenet_r")
        return [s.id for s in train.samples()], train.notes(), val.notes(), [s.id for s in val.samples()], r.notes()

    ids, notes, val_notes, val_ids, r_notes = build()
    assert build() == (ids, notes, val_notes, val_ids, r_notes)
    chosen = [c["wnid"] for c in notes["classes"]]
    assert len(chosen) == 3 and set(chosen) <= set(SINGLE_WORD) and chosen == sorted(chosen)
    assert chosen == imagenet.imagenet100(imagenet.read_mapping(root / "imagenet" / "LOC_synset_mapping.txt"))
    assert "note" not in notes and notes["classes_chosen"] == 3
    assert notes["train_per_class"] == {w: {"available": 5, "chosen": 2} for w in chosen}
    assert len(ids) == 6 and all(i in written["train"][i.split("/")[0]] for i in ids)
    # the same classes for val and the OOD overlap
    assert val_notes["classes"] == notes["classes"]
    assert val_ids == flat(written["val"], chosen)
    assert r_notes["subset_classes"] == 3 and r_notes["overlap"] == len(set(chosen) & set(R_CLASSES))
    # another seed gives another (recorded) choice of train images
    monkeypatch.setattr(imagenet, "SEED", 1)
    other = build()
    assert other[1]["seed"] == 1 and other[1]["train_ids_sha256"] != notes["train_ids_sha256"]


# ----- ImageNet-R / -A --------------------------------------------------------------------------------

def test_ood_restricted_to_overlap(full):
    r, a = task("imagenet_r"), task("imagenet_a")
    assert r.role == a.role == "ood"
    assert [s.id for s in r.samples()] == flat(full["r"], ["n01440764", "n01494475"])
    assert [s.id for s in a.samples()] == flat(full["a"], ["n01443537", "n01498041"])
    assert [s.id for s in r.samples()][:2] == ["n01440764/art_0.jpg", "n01440764/sketch_3.jpg"]
    assert {s.target for s in r.samples()} == {"tench", "hammerhead"}
    a_sample = next(iter(a.samples()))
    assert a_sample.id == "n01443537/0.000116_digital clock _ digital clock_0.865662.jpg"
    assert a_sample.target == "goldfish" and a_sample.fields["synonyms"] == ("Carassius auratus",)
    rn, an = r.notes(), a.notes()
    assert (rn["subset_classes"], rn["ood_classes"], rn["overlap"], rn["images_kept"]) == (5, len(R_CLASSES), 2, 4)
    assert (an["subset_classes"], an["ood_classes"], an["overlap"], an["images_kept"]) == (5, len(A_CLASSES), 2, 4)
    assert rn["overlap_classes"] == [{"wnid": "n01440764", "label": "tench"}, {"wnid": "n01494475", "label": "hammerhead"}]


def test_ood_needs_the_imagenet_mapping(root):
    write_imagenet_r(root)
    with pytest.raises(DatasetMissing) as exc:
        len(task("imagenet_r"))
    msg = str(exc.value)
    assert "imagenet/LOC_synset_mapping.txt" in msg and "labels" in msg and "\n" not in msg


def test_ood_missing(root):
    write_imagenet(root)
    with pytest.raises(DatasetMissing) as exc:
        len(task("imagenet_a"))
    msg = str(exc.value)
    assert "ImageNet-A: not found" in msg and "imagenet-a/<wnid>/*.jpg" in msg and "LOC_synset_mapping.txt" in msg
    assert "imagenet/" in msg  # what was found at the data root


def test_ood_folder_not_in_mapping(full):
    (full["root"] / "imagenet-r" / "n09999999").mkdir()
    with pytest.raises(DatasetMissing, match=r"not classes in .*LOC_synset_mapping.txt: n09999999"):
        len(task("imagenet_r"))


# ----- missing and malformed ImageNet -------------------------------------------------------------

def test_no_data_root(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_config", data.DataConfig())
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    for name in ("imagenet_val", "imagenet100_train", "imagenet_r", "voc_cls"):
        with pytest.raises(DatasetMissing, match="no data root; pass --data_root DIR or set \\$HARNESS_DATA"):
            len(task(name))
    found, why = task("imagenet_val").data_status()
    assert not found and "LOC_synset_mapping.txt" in why


def test_missing_mapping_file(root):
    write_imagenet(root)
    (root / "imagenet" / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(DatasetMissing) as exc:
        len(task("imagenet_val"))
    msg = str(exc.value)
    assert "missing LOC_synset_mapping.txt" in msg and "imagenet/val/<wnid>/*.JPEG" in msg
    assert "holds: train/, val/" in msg


def test_missing_val_dir(root):
    write_imagenet(root)
    import shutil

    shutil.rmtree(root / "imagenet" / "val")
    with pytest.raises(DatasetMissing) as exc:
        len(task("imagenet100_val"))
    msg = str(exc.value)
    assert "imagenet/val" in msg and "Expected layout" in msg and "LOC_synset_mapping.txt, train/" in msg
    assert len(task("imagenet100_train")) == 15  # train does not need val


def test_missing_class_folder_and_flat_val(root):
    write_imagenet(root)
    import shutil

    shutil.rmtree(root / "imagenet" / "val" / "n01514668")
    with pytest.raises(DatasetMissing, match=r"lacks the class folders of n01514668"):
        len(task("imagenet_val"))
    with pytest.raises(DatasetMissing, match=r"class folder .*n01514668 is missing \(class n01514668 'cock'"):
        len(task("imagenet100_val"))
    shutil.rmtree(root / "imagenet" / "val")
    from fixtures_imagenet import _image

    _image(root / "imagenet" / "val" / "ILSVRC2012_val_00000001.JPEG")
    _INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing, match="holds images but no class folders.*valprep.sh"):
        len(task("imagenet_val"))


@pytest.mark.parametrize("line, problem", [
    ("n01440764", "line 3: expected '<wnid> <name>"),
    ("tench, Tinca tinca", "line 3: expected '<wnid> <name>"),
    ("n01440764 tench,, Tinca tinca", "line 3: expected"),
    ("n01443537 goldfish", "line 3: class n01443537 is listed twice"),
])
def test_malformed_mapping(root, line, problem):
    write_imagenet(root)
    path = root / "imagenet" / "LOC_synset_mapping.txt"
    lines = path.read_text().splitlines()
    lines.insert(2, line)
    path.write_text("\n".join(lines) + "\n")
    for name in ("imagenet_val", "imagenet100_train"):
        with pytest.raises(DatasetMissing) as exc:
            len(task(name))
        assert problem in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_empty_or_binary_mapping(root):
    write_imagenet(root)
    path = root / "imagenet" / "LOC_synset_mapping.txt"
    path.write_text("\n")
    with pytest.raises(DatasetMissing, match="lists no classes"):
        len(task("imagenet_val"))
    path.write_bytes(b"\xff\xfe\x00n014")
    with pytest.raises(DatasetMissing, match="is not UTF-8 text"):
        len(task("imagenet_val"))


def test_val_folder_not_in_mapping(root):
    write_imagenet(root)
    (root / "imagenet" / "val" / "n09999999").mkdir()
    with pytest.raises(DatasetMissing, match=r"folders that are not classes in .*: n09999999"):
        len(task("imagenet_val"))


# ----- Pascal VOC ---------------------------------------------------------------------------------------

def test_voc_ids_labels_sizes(full):
    t = task("voc_cls")
    samples = list(t.samples())
    voc = full["voc"]
    assert [s.id for s in samples] == voc["ids"] and VOC_NOT_IN_TEST not in [s.id for s in samples]
    assert {s.id: s.target for s in samples} == voc["labels"]
    assert {s.id: list(s.images[0].size) for s in samples} == voc["sizes"]
    assert samples[0].images[0].uri.endswith("VOCdevkit/VOC2007/JPEGImages/000001.jpg")
    assert samples[2].metadata["difficult_only"] == ["tv monitor"] and "difficult_only" not in samples[0].metadata
    assert samples[2].metadata["n_objects"] == 5
    assert t.role == "ood" and t.notes()["images_with_difficult_only_labels"] == 1
    assert t.notes()["readable_names"]["tvmonitor"] == "tv monitor"
    parsed, scores = t.evaluate("potted plant, dining table and chair; tv monitor", samples[2], CONV, STRICT)
    assert scores == {"acc": 1.0, "category_iou": 1.0}


def _set_xml(voc, image_id, text):
    (voc["base"] / "Annotations" / f"{image_id}.xml").write_text(text)


@pytest.mark.parametrize("mutate, problem", [
    (lambda x: x[: len(x) // 2], "is not well-formed XML"),
    (lambda x: x.replace("</object>", "</objet>", 1), "is not well-formed XML"),
    (lambda x: x.replace("<size>", "<dims>").replace("</size>", "</dims>"), "has no <size> with <width> and <height>"),
    (lambda x: x.replace("<width>24</width>", ""), "has no <size> with <width> and <height>"),
    (lambda x: x.replace("<height>32</height>", "<height>tall</height>"), "<size><height> is 'tall', not a number"),
    (lambda x: x.replace("<name>train</name>", ""), "<object> 1 has no <name>"),
    (lambda x: x.replace("<name>train</name>", "<name> </name>"), "<object> 1 has no <name>"),
    (lambda x: "<annotations/>", "root element is <annotations>"),
])
def test_voc_malformed_annotation(full, mutate, problem):
    voc = full["voc"]
    path = voc["base"] / "Annotations" / "000002.xml"
    path.write_text(mutate(path.read_text()))
    with pytest.raises(DatasetMissing) as exc:
        len(task("voc_cls"))
    assert problem in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_voc_no_objects_missing_annotation_and_bad_ids(full):
    voc = full["voc"]
    _set_xml(voc, "000002", voc_xml("000002", 24, 32, []))
    with pytest.raises(DatasetMissing, match="000002.xml has no <object>"):
        len(task("voc_cls"))
    (voc["base"] / "Annotations" / "000002.xml").unlink()
    _INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing, match="missing the annotation of 000002 .*000002.xml"):
        len(task("voc_cls"))
    test_txt = voc["base"] / "ImageSets" / "Main" / "test.txt"
    test_txt.write_text("\n\n")
    with pytest.raises(DatasetMissing, match="test.txt lists no image ids"):
        len(task("voc_cls"))
    test_txt.write_text("000001 1\n")
    with pytest.raises(DatasetMissing, match="'000001 1' is not an image id"):
        len(task("voc_cls"))


def test_voc_missing(root):
    with pytest.raises(DatasetMissing) as exc:
        len(task("voc_cls"))
    msg = str(exc.value)
    assert "Pascal VOC 2007: not found" in msg and "ImageSets/Main/test.txt" in msg and "does not exist" in msg
    write_voc(root)
    (root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(DatasetMissing, match="missing ImageSets/Main/test.txt.*Found: .*Annotations/"):
        len(task("voc_cls"))


def test_voc_scores_partial_answers(full):
    t = task("voc_cls")
    s = t.get_sample("000001")
    assert t.evaluate("dog", s, CONV, STRICT)[1] == {"acc": 0.0, "category_iou": 0.5}


# ----- formats, perfect answers, suite --------------------------------------------------------------

@pytest.mark.parametrize("name", ["imagenet_val", "imagenet100_train", "imagenet100_val", "imagenet_r", "imagenet_a",
                                  "voc_cls"])
@pytest.mark.parametrize("fmt", ["open", "mc", "yesno"])
def test_formats_and_perfect_answers(full, name, fmt):
    t = task(name, fmt)
    for sample in t.samples():
        gold = t.target(sample, CONV)
        assert t.evaluate(gold, sample, CONV, STRICT)[1][t.primary_metric] == 1.0
        prompt = t.prompt(sample, CONV)
        assert prompt.text == task(name, fmt).prompt(sample, CONV).text  # distractors are deterministic
        if fmt == "mc":
            assert "Options:\nA. " in prompt.text and len(set(prompt.text.split("\n")[2:6])) == 4
        if fmt == "yesno":
            assert prompt.text.endswith("Answer yes or no.") and gold in ("yes", "no")
    if name != "voc_cls" and fmt == "open":
        assert t.prompt(sample, CONV).text == "What is the object in the image? Answer with its category name."


def test_ood_distractors_come_from_imagenet100(full):
    t = task("imagenet_r", "mc")
    subset_labels = {"tench", "goldfish", "hammerhead", "stingray", "cock"}
    assert t.labels() == sorted(subset_labels)
    for sample in t.samples():
        options = t.prompt(sample, CONV).text.split("\n")[2:6]
        assert {o[3:] for o in options} <= subset_labels


def test_suite_resolves(full):
    suite = SUITES.get("imagenet")
    assert suite.train == "imagenet100_train" and suite.id == ("imagenet100_val",)
    assert suite.ood == ("imagenet_r", "imagenet_a") and "DC-SFT" in suite.description
    refs = resolve("imagenet")
    assert [(r.name, r.role) for r in refs] == [("imagenet100_val", "id"), ("imagenet_r", "ood"), ("imagenet_a", "ood")]
    assert [r.full_name for r in resolve("imagenet:mc")] == ["imagenet100_val:mc", "imagenet_r:mc", "imagenet_a:mc"]
    assert [r.role for r in resolve("imagenet_val,voc_cls")] == ["id", "ood"]


def test_fingerprint_changes_with_the_data(full):
    t = task("imagenet100_val")
    before = t.fingerprint()
    from fixtures_imagenet import _image

    _image(full["root"] / "imagenet" / "val" / "n01440764" / "ILSVRC2012_val_00049999.JPEG")
    _INDEX_CACHE.clear()
    assert task("imagenet100_val").fingerprint() != before
