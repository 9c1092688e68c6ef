"""DC-SFT's released ImageNet-100 splits on a full-size tree of tiny images in the upstream layouts.

The tree has every class folder and as many images per class as DC-SFT's files list, with the
train file names it lists, so counts, ids and overlaps are checked at full scale.
"""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from harness import data
from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.dataset_task import _INDEX_CACHE
from harness.protocol import get_profile
from harness.registry import SUITES, TASKS
from harness.taskspec import resolve
from tasks.classification import imagenet_dcsft as dc

CONV = ModelConventions()
STRICT = get_profile("strict")
DCSFT = get_profile("dc-sft")
PROMPT = "Please provide the object name in the image. Output the answer using one word."

# classes in the R/A trees that DC-SFT's files leave out (their names have spaces) and an extra
# mapping line with synonyms; "sundial" gets an invented synonym to test that strict accepts it
EXTRA = {"n01484850": "great white shark, white shark", "n02317335": "starfish, sea star",
         "n01440764": "tench, Tinca tinca"}
SUNDIAL = "n04355338"


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (120, 30, 200)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def write_mapping(root):
    lines = {w: label for w, label in dc.LABELS.items()}
    lines.update(EXTRA)
    lines[SUNDIAL] = "sundial, sun clock"
    base = root / "imagenet"
    base.mkdir(parents=True, exist_ok=True)
    (base / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in sorted(lines.items())))


def write_files(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(JPEG)


def val_names(wnid, n):
    k = int(wnid[1:]) % 997
    return [f"ILSVRC2012_val_{(k * 50 + i) % 50000 + 1:08d}.JPEG" for i in range(n)]


def r_names(n):
    kinds = ["art", "sketch", "toy"]
    return [f"{kinds[i % 3]}_{i // 3}.jpg" for i in range(n)]


def a_names(label, n):
    return [f"0.{i:06d}_{label} _ {label}_0.5{i}.jpg" for i in range(n)]


def write_tree(root, classes=None):
    """The four upstream trees for DC-SFT's classes (or the given subset); returns expected ids."""
    write_mapping(root)
    classes = set(classes or dc.CLASSES)
    ids: dict[str, list[str]] = {"train": [], "val": [], "r": [], "a": []}
    listed = dc.train_files()
    for w in dc.TRAIN_CLASSES:
        if w not in classes:
            continue
        names = listed[w]["cold_start"] + listed[w]["pool"]
        write_files(root / "imagenet" / "train" / w, names + [f"{w}_999999.JPEG"])  # one image DC-SFT does not list
        ids["train"] += [f"{w}/{n}" for n in sorted(names)]
        vn = val_names(w, dc.EXPECTED["val"][w])
        write_files(root / "imagenet" / "val" / w, vn)
        ids["val"] += [f"{w}/{n}" for n in sorted(vn)]
    for key, sub, make in (("r", "imagenet-r", lambda w, n: r_names(n)),
                           ("a", "imagenet-a", lambda w, n: a_names(dc.LABELS[w], n))):
        for w, n in dc.EXPECTED[key].items():
            if w in classes:
                names = make(w, n)
                write_files(root / sub / w, names)
                ids[key] += [f"{w}/{x}" for x in sorted(names)]
        # a class of the 200 that DC-SFT leaves out, and the README upstream ships
        write_files(root / sub / "n01484850", ["art_0.jpg", "art_1.jpg"])
        (root / sub / "README.txt").write_text("200 classes\n")
    # a val and train class outside DC-SFT's 100
    write_files(root / "imagenet" / "val" / "n01440764", ["ILSVRC2012_val_00000293.JPEG"])
    write_files(root / "imagenet" / "train" / "n01440764", ["n01440764_10026.JPEG"])
    return ids


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("dcsft")
    start = time.time()
    ids = write_tree(root)
    assert time.time() - start < 120
    return root, ids


@pytest.fixture
def full(tree, monkeypatch):
    monkeypatch.setattr(data, "_config", data.DataConfig())
    monkeypatch.setenv("HARNESS_DATA", str(tree[0]))
    return tree


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_config", data.DataConfig())
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    return tmp_path


def task(name, fmt="open"):
    return TASKS.get(name)(fmt)


# ----- the shipped class lists --------------------------------------------------------------------

def test_class_lists_as_released():
    assert dc.SOURCE_COMMIT == "87b87b788fb0589ecab8edb328beb71fd9b26004"
    assert len(dc.CLASSES) == 186 and len(dc.TRAIN_CLASSES) == 100
    assert len(dc.R_CLASSES) == 68 and len(dc.A_CLASSES) == 87
    assert sum(dc.EXPECTED["val"].values()) == 5000 and set(dc.EXPECTED["val"].values()) == {50}
    assert sum(dc.EXPECTED["r"].values()) == 10741 and sum(dc.EXPECTED["a"].values()) == 3015
    assert len(set(dc.R_CLASSES) & set(dc.TRAIN_CLASSES)) == 16
    assert len(set(dc.A_CLASSES) & set(dc.TRAIN_CLASSES)) == 24
    # their labels: one name, no space; hyphens only in three OOD-only or trained classes
    assert all(" " not in label for label in dc.LABELS.values())
    assert {label for label in dc.LABELS.values() if "-" in label} == {"Shih-Tzu", "go-kart", "jack-o'-lantern"}
    assert dc.LABELS["n04355338"] == "sundial" and dc.LABELS["n02085620"] == "Chihuahua"
    listed = dc.train_files()
    assert list(listed) == list(dc.TRAIN_CLASSES)
    assert {len(v["cold_start"]) for v in listed.values()} == {4} and {len(v["pool"]) for v in listed.values()} == {96}
    assert "n04355338_11786.JPEG" in listed["n04355338"]["cold_start"]
    assert "n04355338_6196.JPEG" in listed["n04355338"]["pool"]


# ----- the splits on the full-size tree ------------------------------------------------------------

def test_train_is_the_listed_images(full):
    _, ids = full
    t = task("imagenet100dcsft_train")
    entries = t.index()
    assert [e["id"] for e in entries] == ids["train"] and len(entries) == 10000
    assert all(not e["id"].endswith("_999999.JPEG") for e in entries)
    first = t.get_sample("n04355338/n04355338_11786.JPEG")
    assert first.target == "sundial" and first.metadata["dcsft_part"] == "cold_start"
    assert t.get_sample("n04355338/n04355338_6196.JPEG").metadata["dcsft_part"] == "pool"
    notes = t.notes()
    assert notes["images"] == 10000 and notes["cold_start_images"] == 400 and notes["classes"] == 100
    assert t.role == "train"


def test_val_ids_labels_order(full):
    _, ids = full
    t = task("imagenet100dcsft_val")
    samples = list(t.samples())
    assert [s.id for s in samples] == ids["val"] and len(samples) == 5000
    assert [s.id.split("/")[0] for s in samples[::50]] == list(dc.TRAIN_CLASSES)
    assert all(s.target == dc.LABELS[s.metadata["wnid"]] for s in samples)
    notes = t.notes()
    assert notes["counts_match_dcsft"] is True and notes["images"] == notes["dcsft_images"] == 5000
    assert notes["class_list"][0] == {"wnid": "n01498041", "label": "stingray"}


@pytest.mark.parametrize("name,key,n,classes,trained", [
    ("imagenet_r_dcsft", "r", 10741, 68, 16), ("imagenet_a_dcsft", "a", 3015, 87, 24)])
def test_ood_sets_cover_classes_outside_the_100(full, name, key, n, classes, trained):
    _, ids = full
    t = task(name)
    entries = t.index()
    assert [e["id"] for e in entries] == ids[key] and len(entries) == n
    assert not any(e["id"].startswith("n01484850/") for e in entries)  # a class with a space: left out
    wnids = {e["metadata"]["wnid"] for e in entries}
    assert len(wnids) == classes and len(wnids - set(dc.TRAIN_CLASSES)) == classes - trained
    notes = t.notes()
    assert notes["among_training_classes"] == trained and notes["outside_training_classes"] == classes - trained
    assert notes["counts_match_dcsft"] is True and notes["images"] == n
    assert t.labels() == sorted(dc.LABELS[w] for w in (dc.R_CLASSES if key == "r" else dc.A_CLASSES))
    hen = [e for e in entries if e["metadata"]["wnid"] == "n01514859"]
    if key == "r":
        assert hen and hen[0]["label"] == "hen" and "n01514859" not in dc.TRAIN_CLASSES


def test_prompt_and_perfect_answers(full):
    for name in ("imagenet100dcsft_train", "imagenet100dcsft_val", "imagenet_r_dcsft", "imagenet_a_dcsft"):
        t = task(name)
        entries = t.index()
        for entry in entries[::157] + entries[-1:]:
            sample = t.get_sample(entry["id"])
            assert t.prompt(sample, CONV).text == PROMPT
            gold = t.answer_text(sample, CONV)
            assert gold == dc.LABELS[sample.metadata["wnid"]]
            for profile in (STRICT, DCSFT):
                assert t.evaluate(gold, sample, CONV, profile)[1]["acc"] == 1.0, (name, gold, profile.name)
                assert t.evaluate(gold.upper() + ".", sample, CONV, profile)[1]["acc"] == 1.0
        assert t.evaluate("a stingray", t.get_sample(entries[0]["id"]), CONV, DCSFT)[1]["acc"] == 0.0


def test_synonyms_from_the_mapping(full):
    t = task("imagenet100dcsft_val")
    sample = t.get_sample(t.index()[[e["metadata"]["wnid"] for e in t.index()].index(SUNDIAL)]["id"])
    assert sample.target == "sundial" and sample.fields["synonyms"] == ("sun clock",)
    assert t.evaluate("sun clock", sample, CONV, STRICT)[1]["acc"] == 1.0
    assert t.evaluate("sun clock", sample, CONV, DCSFT)[1]["acc"] == 0.0  # DC-SFT's scorer has no synonyms
    assert t.evaluate("Jack-o'-lantern", sample, CONV, STRICT)[1]["acc"] == 0.0


def test_hyphenated_labels_score(full):
    t = task("imagenet_r_dcsft")
    sample = next(t.get_sample(e["id"]) for e in t.index() if e["label"] == "Shih-Tzu")
    for profile in (STRICT, DCSFT):
        assert t.evaluate("Shih-Tzu", sample, CONV, profile)[1]["acc"] == 1.0


@pytest.mark.parametrize("fmt", ["mc", "yesno"])
def test_mc_and_yesno(full, fmt):
    t = task("imagenet_a_dcsft", fmt)
    for entry in t.index()[::301]:
        sample = t.get_sample(entry["id"])
        prompt = t.prompt(sample, CONV).text
        assert prompt == task("imagenet_a_dcsft", fmt).prompt(sample, CONV).text
        gold = t.target(sample, CONV)
        assert t.evaluate(gold, sample, CONV, STRICT)[1][t.primary_metric] == 1.0
        if fmt == "mc":
            options = {o[3:] for o in prompt.split("\n")[2:6]}
            assert len(options) == 4 and options <= set(t.labels())


def test_suite_resolves(full):
    suite = SUITES.get("imagenet_dcsft")
    assert suite.train == "imagenet100dcsft_train" and suite.id == ("imagenet100dcsft_val",)
    assert suite.ood == ("imagenet_r_dcsft", "imagenet_a_dcsft")
    assert suite.description == ("DC-SFT's released ImageNet-100 splits (fixed classes; OOD over all single-word "
                                 "R/A classes)")
    assert [(r.name, r.role) for r in resolve("imagenet_dcsft")] == [
        ("imagenet100dcsft_val", "id"), ("imagenet_r_dcsft", "ood"), ("imagenet_a_dcsft", "ood")]


# ----- missing data ----------------------------------------------------------------------------------

def test_missing_class_folders_named(root):
    write_tree(root, classes=dc.CLASSES.keys() - {"n04355338", "n01855672", "n02086240"})
    with pytest.raises(DatasetMissing, match=r"lacks the class folders of 2 of DC-SFT's 100 classes: "
                                             r"n01855672 \(goose\), n04355338 \(sundial\)$"):
        task("imagenet100dcsft_val").index()
    with pytest.raises(DatasetMissing, match=r"n01855672 \(goose\), n04355338 \(sundial\)$"):
        task("imagenet100dcsft_train").index()
    with pytest.raises(DatasetMissing, match=r"imagenet-r lacks the class folders of 2 of DC-SFT's 68 classes: "
                                             r"n01855672 \(goose\), n02086240 \(Shih-Tzu\)$"):
        task("imagenet_r_dcsft").index()
    with pytest.raises(DatasetMissing, match=r"2 of DC-SFT's 87 classes: n01855672 \(goose\), n04355338 \(sundial\)$"):
        task("imagenet_a_dcsft").index()


def test_missing_train_image_named(root, monkeypatch):
    write_tree(root, classes=dc.TRAIN_CLASSES[:2])
    missing = dc.train_files()["n01498041"]["pool"][0]
    (root / "imagenet" / "train" / "n01498041" / missing).unlink()
    with pytest.raises(DatasetMissing, match="lacks the class folders of 98"):
        task("imagenet100dcsft_train").index()
    # with the class list cut to the two written classes, the one absent image is named
    monkeypatch.setattr(dc.ImageNet100DCSFTTrain, "classes", dc.TRAIN_CLASSES[:2])
    _INDEX_CACHE.clear()
    with pytest.raises(DatasetMissing, match=f"lacks train images DC-SFT lists: n01498041/{missing}$"):
        task("imagenet100dcsft_train").index()
    _INDEX_CACHE.clear()


def test_missing_dataset_and_mapping(root):
    with pytest.raises(DatasetMissing, match="ImageNet-R: not found. Expected .*imagenet-r/ laid out as"):
        task("imagenet_r_dcsft").index()
    write_files(root / "imagenet-a" / "n01498041", ["0.1_stingray _ stingray_0.5.jpg"])
    with pytest.raises(DatasetMissing, match="missing the ImageNet class mapping"):
        task("imagenet_a_dcsft").index()


def test_mapping_without_a_dcsft_class(root):
    write_tree(root, classes=dc.A_CLASSES)
    text = (root / "imagenet" / "LOC_synset_mapping.txt").read_text()
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith("n04355338 ")]
    (root / "imagenet" / "LOC_synset_mapping.txt").write_text("".join(kept))
    # checked before the folders (which would otherwise be "not classes of the mapping")
    with pytest.raises(DatasetMissing, match=r"LOC_synset_mapping.txt lacks DC-SFT classes n04355338 \(sundial\)$"):
        task("imagenet_a_dcsft").index()


def test_count_differences_reported(root):
    write_tree(root, classes=dc.R_CLASSES)
    (root / "imagenet-r" / "n01855672" / "art_0.jpg").unlink()
    notes = task("imagenet_r_dcsft").notes()
    assert notes["counts_match_dcsft"] is False
    assert notes["count_differences"] == {"n01855672": {"dcsft": dc.EXPECTED["r"]["n01855672"],
                                                        "found": dc.EXPECTED["r"]["n01855672"] - 1}}
