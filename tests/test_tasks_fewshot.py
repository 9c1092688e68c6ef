"""Few-shot fine-grained classification (Flowers102, Pets, FGVC-Aircraft, Stanford Cars) on tiny
upstream-format fixtures."""

from __future__ import annotations

import fixtures_fewshot as fx
import numpy as np
import pytest
import scipy.io

from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.protocol import get_profile
from harness.registry import SUITES, TASK_GROUPS, TASKS
from harness.taskspec import resolve
from tasks.classification import fewshot as fs

DATASETS = ("flowers102", "pets", "aircraft", "cars")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def written(root):
    return fx.write_all(root)


def task(name, fmt="open"):
    return TASKS.get(name)(fmt)


# ----- reading the upstream layouts -----------------------------------------------------------


@pytest.mark.parametrize("key", DATASETS)
def test_test_split_exact_ids_labels_order(written, key):
    t = task(f"{key}_test")
    assert [(e["id"], e["label"]) for e in t.index()] == written[key].test
    assert len(t) == len(written[key].test)
    sample = next(t.samples())
    assert sample.id == written[key].test[0][0] and sample.target == written[key].test[0][1]
    assert sample.images[0].size == (32, 24)  # the file exists where the entry says
    assert t.notes()["size"] == len(written[key].test)


def test_class_ids_and_paths(written):
    flowers = task("flowers102_test").index()
    assert flowers[0]["path"] == "image_00019.jpg" and flowers[0]["metadata"]["class_id"] == 3
    pets = task("pets_test").index()
    assert pets[0]["path"] == "Abyssinian_106.jpg" and pets[0]["metadata"]["class_id"] == 1
    assert pets[1]["label"] == "american bulldog" and pets[1]["synonyms"] == ["american_bulldog"]
    aircraft = task("aircraft_test").index()
    assert [e["metadata"]["class_id"] for e in aircraft] == [1, 2, 3, 4, 1, 3]
    assert aircraft[2]["label"] == "Cessna 172"  # a variant with a space
    cars = task("cars_test").index()
    assert cars[0] == {"id": "00001.jpg", "path": "cars_test/00001.jpg", "label": "2000 AM General Hummer SUV",
                       "synonyms": ["AM General Hummer SUV 2000"], "metadata": {"class_id": 1}}
    assert task("cars_train_16shot").index()[0]["path"] == "cars_train/00001.jpg"


def test_car_label_moves_the_year_first():
    assert fs.car_label("Acura RL Sedan 2012") == "2012 Acura RL Sedan"
    assert fs.car_label("Ram C/V Cargo Van Minivan 2012") == "2012 Ram C/V Cargo Van Minivan"
    assert fs.car_label("No Year Here") == "No Year Here"


def test_flower_names():
    assert len(fs.FLOWER_NAMES) == 102 == len(set(fs.FLOWER_NAMES))
    assert fs.FLOWER_NAMES[0] == "pink primrose" and fs.FLOWER_NAMES[-1] == "blackberry lily"


# ----- the k-shot sampler ---------------------------------------------------------------------


@pytest.mark.parametrize("key", DATASETS)
def test_kshot_per_class_order_notes(written, key):
    pool = written[key].pool
    by_class = written[key].pool_by_class()
    short_label = written[key].classes[2]  # one pool image only
    previous: set[str] = set()
    for k in fs.SHOTS:
        t = task(f"{key}_train_{k}shot")
        assert t.role == "train"
        entries = t.index()
        ids = [e["id"] for e in entries]
        # pool order preserved
        assert ids == [i for i, _ in pool if i in set(ids)]
        counts = {label: sum(e["label"] == label for e in entries) for label in by_class}
        assert counts == {label: min(k, len(items)) for label, items in by_class.items()}
        # nested: every smaller selection is inside the larger one
        assert previous <= set(ids)
        previous = set(ids)
        notes = t.notes()
        assert notes["seed"] == 0 and notes["k"] == k and notes["dataset"] == key and notes["nested"] is True
        assert notes["pool_size"] == len(pool) and notes["selected"] == len(ids) and notes["classes"] == 4
        assert notes["chosen"] == {label: [e["id"] for e in entries if e["label"] == label] for label in by_class}
        expected_short = {label: len(items) for label, items in by_class.items() if len(items) < k}
        assert notes["short_classes"] == expected_short
        if k >= 2:
            assert short_label in notes["short_classes"]
    assert previous == {i for i, _ in pool}  # 16 shots keep every fixture image


def test_kshot_reproducible_across_cache(written):
    from harness import dataset_task

    first = [e["id"] for e in task("pets_train_2shot").index()]
    dataset_task._INDEX_CACHE.clear()
    assert [e["id"] for e in task("pets_train_2shot").index()] == first


def _pool(n_classes=3, per_class=20):
    return [{"id": f"{c}_{i}", "label": f"class{c}"} for i in range(per_class) for c in range(n_classes)]


def test_select_shots_seeded_and_keyed_per_dataset():
    pool = _pool()
    a, notes_a = fs.select_shots(pool, 4, 0, "flowers102")
    again, _ = fs.select_shots(pool, 4, 0, "flowers102")
    assert a == again
    other_dataset, _ = fs.select_shots(pool, 4, 0, "pets")
    other_seed, _ = fs.select_shots(pool, 4, 1, "flowers102")
    assert [e["id"] for e in a] != [e["id"] for e in other_dataset]
    assert [e["id"] for e in a] != [e["id"] for e in other_seed]
    assert all(len(v) == 4 for v in notes_a["chosen"].values()) and notes_a["short_classes"] == {}
    # order preserved; nested over k
    assert [e for e in pool if e in a] == a
    for small, large in zip(fs.SHOTS, fs.SHOTS[1:]):
        s = {e["id"] for e in fs.select_shots(pool, small, 0, "cars")[0]}
        lg = {e["id"] for e in fs.select_shots(pool, large, 0, "cars")[0]}
        assert s < lg


def test_select_shots_short_class():
    pool = _pool(2, 3) + [{"id": "lonely", "label": "rare"}]
    entries, notes = fs.select_shots(pool, 4, 0, "aircraft")
    assert notes["short_classes"] == {"class0": 3, "class1": 3, "rare": 1}
    assert entries == pool


# ----- missing and malformed data ---------------------------------------------------------------


@pytest.mark.parametrize("key", DATASETS)
def test_missing_dataset(root, key):
    (root / "something_else").mkdir()
    with pytest.raises(DatasetMissing) as err:
        task(f"{key}_test").index()
    msg = str(err.value)
    assert "not found" in msg and fs.BY_KEY[key].spec.directory in msg and "something_else" in msg
    assert "\n" not in msg
    assert task(f"{key}_train_4shot").data_status()[0] is False


def test_no_data_root(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    with pytest.raises(DatasetMissing, match="no data root"):
        task("flowers102_test").index()


def test_incomplete_dataset_names_missing_file(root):
    fx.write_flowers102(root)
    (root / "flowers-102" / "setid.mat").unlink()
    with pytest.raises(DatasetMissing, match=r"missing setid\.mat.*Found: .*imagelabels\.mat"):
        task("flowers102_test").index()


def test_cars_split_files_checked(root):
    fx.write_cars(root)
    (root / "stanford_cars" / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DatasetMissing, match="missing cars_test_annos_withlabels.mat"):
        task("cars_test").index()
    assert len(task("cars_train_1shot")) == 4  # the train side is still complete


def _error(name):
    with pytest.raises(DatasetMissing) as err:
        task(name).index()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_truncated_mat(root):
    fx.write_flowers102(root)
    path = root / "flowers-102" / "imagelabels.mat"
    path.write_bytes(path.read_bytes()[:60])
    msg = _error("flowers102_test")
    assert "imagelabels.mat is not a readable .mat file" in msg


def test_mat_wrong_key(root):
    fx.write_flowers102(root)
    scipy.io.savemat(root / "flowers-102" / "imagelabels.mat", {"lbls": np.array([[1, 2]])})
    msg = _error("flowers102_test")
    assert "imagelabels.mat has no key 'labels'" in msg and "lbls" in msg


def test_mat_wrong_shape(root):
    fx.write_flowers102(root)
    scipy.io.savemat(root / "flowers-102" / "imagelabels.mat", {"labels": np.ones((3, 7))})
    assert "key 'labels' must be a non-empty vector of integers" in _error("flowers102_test")


def test_flowers_label_out_of_range(root):
    fx.write_flowers102(root)
    labels = scipy.io.loadmat(root / "flowers-102" / "imagelabels.mat")["labels"]
    labels[0, -1] = 103
    scipy.io.savemat(root / "flowers-102" / "imagelabels.mat", {"labels": labels})
    assert "label 103, outside 1..102" in _error("flowers102_test")


def test_flowers_setid_out_of_range(root):
    fx.write_flowers102(root)
    setid = scipy.io.loadmat(root / "flowers-102" / "setid.mat")
    scipy.io.savemat(root / "flowers-102" / "setid.mat",
                     {"trnid": setid["trnid"], "valid": setid["valid"], "tstid": np.array([[1, 9999]])})
    assert "image id 9999, outside 1..19" in _error("flowers102_test")


@pytest.mark.parametrize("line,expected", [
    ("Abyssinian_100 1 1", "expected 'IMAGE_ID CLASS_ID SPECIES BREED_ID'"),
    ("Abyssinian_100 one 1 1", "expected 'IMAGE_ID CLASS_ID SPECIES BREED_ID'"),
    ("Abyssinian_100 38 1 1", "class id 38 outside 1..37"),
    ("Bengal_100 1 1 1", "class id 1 is given to both 'Abyssinian' and 'Bengal'"),
    ("Abyssinian 1 1 1", "is not <Breed_Name>_<n>"),
])
def test_pets_malformed_line(root, line, expected):
    fx.write_pets(root)
    path = root / "oxford-iiit-pet" / "annotations" / "test.txt"
    path.write_text(path.read_text() + line + "\n")
    msg = _error("pets_test")
    assert expected in msg and "test.txt line 7" in msg


def test_pets_missing_split_file(root):
    fx.write_pets(root)
    (root / "oxford-iiit-pet" / "annotations" / "trainval.txt").unlink()
    assert "missing split file" in _error("pets_train_4shot")


@pytest.mark.parametrize("line,expected", [
    ("1234567", "expected 'IMAGE_ID VARIANT'"),
    ("1234567 747-400", "variant '747-400' is not in variants.txt"),
])
def test_aircraft_malformed_line(root, line, expected):
    fx.write_aircraft(root)
    path = root / "fgvc-aircraft-2013b" / "data" / "images_variant_trainval.txt"
    path.write_text(line + "\n" + path.read_text())
    msg = _error("aircraft_train_1shot")
    assert expected in msg and "line 1" in msg


def test_cars_struct_missing_field(root):
    fx.write_cars(root)
    arr = np.zeros((1, 1), dtype=[("fname", "O"), ("label", "O")])
    arr[0, 0] = (np.array(["00001.jpg"]), np.array([[1]]))
    scipy.io.savemat(root / "stanford_cars" / "cars_test_annos_withlabels.mat", {"annotations": arr})
    msg = _error("cars_test")
    assert "must be a struct array with field 'class'" in msg and "fname, label" in msg


def test_cars_class_out_of_range(root):
    fx.write_cars(root)
    scipy.io.savemat(root / "stanford_cars" / "cars_test_annos_withlabels.mat",
                     {"annotations": fx.cars_struct([("00001.jpg", 1), ("00002.jpg", 5)])})
    assert "annotation 2 (00002.jpg): class 5 outside 1..4" in _error("cars_test")


def test_cars_meta_wrong_key(root):
    fx.write_cars(root)
    scipy.io.savemat(root / "stanford_cars" / "devkit" / "cars_meta.mat", {"names": np.array([["a"]], dtype=object)})
    assert "cars_meta.mat has no key 'class_names'" in _error("cars_train_2shot")


# ----- prompts, formats and scoring -------------------------------------------------------------


@pytest.mark.parametrize("key,sentence", [
    ("flowers102", "This is an image containing a plant. Please identify the species of the plant based on the image."),
    ("aircraft",
     "This is an image containing an aircraft. Please identify the model of the aircraft based on the image."),
    ("pets", "This is an image containing a pet. Please identify the species of the pet based on the image."),
    ("cars", "This is an image containing a car. Please identify the model of the car based on the image."),
])
def test_open_prompt_and_perfect_score(written, key, sentence):
    conv, profile = ModelConventions(), get_profile("strict")
    t = task(f"{key}_test")
    for sample in t.samples():
        text = t.prompt(sample, conv).text
        assert text.startswith(sentence) and text.endswith("Answer with its category name.")
        parsed, scores = t.evaluate(t.answer_text(sample, conv), sample, conv, profile)
        assert parsed.ok and scores == {"acc": 1.0}
        wrong = next(lab for lab in written[key].classes if lab != sample.target)
        assert t.evaluate(wrong, sample, conv, profile)[1] == {"acc": 0.0}


def test_synonyms_score(written):
    conv, profile = ModelConventions(), get_profile("strict")
    t = task("cars_test")
    sample = t.get_sample("00001.jpg")
    assert t.evaluate("AM General Hummer SUV 2000", sample, conv, profile)[1] == {"acc": 1.0}


@pytest.mark.parametrize("key", DATASETS)
def test_mc_and_yesno(written, key):
    conv, profile = ModelConventions(), get_profile("strict")
    mc, yn = task(f"{key}_test", "mc"), task(f"{key}_test", "yesno")
    for sample in mc.samples():
        prompt = mc.prompt(sample, conv).text
        assert prompt.startswith(fs.BY_KEY[key].prompt + "\nOptions:\nA. ")
        assert prompt == mc.prompt(sample, conv).text  # deterministic distractors
        options = [line[3:] for line in prompt.splitlines() if line[:3] in ("A. ", "B. ", "C. ", "D. ")]
        assert sorted(options) == sorted(written[key].classes)  # 4 classes: every class is an option
        gold = mc.target(sample, conv)
        assert options["ABCD".index(gold)] == sample.target
        assert mc.evaluate(gold, sample, conv, profile)[1] == {"acc": 1.0}
        yprompt = yn.prompt(sample, conv).text
        assert yprompt.startswith(fs.BY_KEY[key].prompt + "\nIs the answer ") and yprompt.endswith("Answer yes or no.")
        assert yn.evaluate(yn.target(sample, conv), sample, conv, profile)[1] == {"acc": 1.0}


# ----- registration ---------------------------------------------------------------------------


def test_tasks_suites_groups_registered():
    for key in DATASETS:
        assert TASKS.get(f"{key}_test").role == "id"
        assert TASK_GROUPS.get(f"fewshot_{key}") == tuple(f"fewshot_{key}_{k}shot" for k in fs.SHOTS)
        for k in fs.SHOTS:
            suite = SUITES.get(f"fewshot_{key}_{k}shot")
            assert (suite.train, suite.id, suite.ood) == (f"{key}_train_{k}shot", (f"{key}_test",), ())
            assert TASKS.get(f"{key}_train_{k}shot").role == "train"
    assert TASK_GROUPS.get("fewshot_cls") == tuple(f"fewshot_{key}_4shot" for key in DATASETS)


def test_suites_and_groups_resolve():
    refs = resolve("fewshot_cls")
    assert [(r.name, r.fmt, r.role) for r in refs] == [(f"{key}_test", "open", "id") for key in DATASETS]
    assert [r.full_name for r in resolve("fewshot_pets_8shot:mc")] == ["pets_test:mc"]
    assert [r.name for r in resolve("fewshot_aircraft")] == ["aircraft_test"]
    assert [(r.name, r.role) for r in resolve("flowers102_train_16shot,cars_test:yesno")] == [
        ("flowers102_train_16shot", "train"), ("cars_test", "id")]
