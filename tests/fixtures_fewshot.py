"""Tiny Flowers102, Oxford-IIIT Pets, FGVC-Aircraft and Stanford Cars in their upstream layouts.

Each writer takes a data root, writes its dataset under the directory the loader expects
(``.mat`` files through ``scipy.io.savemat`` in the upstream structure, txt files as
upstream writes them, 32x24 JPEGs) and returns a :class:`Written` with the exact
``(id, label)`` lists of the test split and of the few-shot pool, in file order.

Every dataset has four classes; the third class has a single pool image, so 2-shot
and larger selections exercise the "class with fewer than k images" case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


@dataclass
class Written:
    directory: Path
    classes: list[str]
    test: list[tuple[str, str]] = field(default_factory=list)
    pool: list[tuple[str, str]] = field(default_factory=list)

    def pool_by_class(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sample_id, label in self.pool:
            out.setdefault(label, []).append(sample_id)
        return out


# pool / test images per class (class 3 is short)
POOL_COUNTS = (5, 4, 1, 3)
TEST_COUNTS = (2, 1, 2, 1)


def _jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (shade % 256, (shade * 37) % 256, (shade * 91) % 256)).save(path, "JPEG")


def _interleaved(counts: tuple[int, ...]) -> list[int]:
    """Class indices (0-based) interleaved round-robin, so file order is not class order."""
    remaining, out = list(counts), []
    while any(remaining):
        for c, n in enumerate(remaining):
            if n:
                out.append(c)
                remaining[c] -= 1
    return out


def write_flowers102(root: Path) -> Written:
    from tasks.classification.fewshot import FLOWER_NAMES

    base = Path(root) / "flowers-102"
    classes = list(FLOWER_NAMES[:4])
    # image ids: pool (trnid, then valid), then test; labels 1-based as in imagelabels.mat
    pool_classes, test_classes = _interleaved(POOL_COUNTS), _interleaved(TEST_COUNTS)
    all_classes = pool_classes + test_classes
    labels = np.array([[c + 1 for c in all_classes]], dtype=np.uint8)  # 1xN like upstream
    n_pool = len(pool_classes)
    trnid = list(range(1, n_pool // 2 + 1))
    valid = list(range(n_pool // 2 + 1, n_pool + 1))
    tstid = list(range(len(all_classes), n_pool, -1))  # upstream tstid is not sorted either
    for image_id in range(1, len(all_classes) + 1):
        _jpeg(base / "jpg" / f"image_{image_id:05d}.jpg", image_id)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": labels})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([trnid], dtype=np.uint16),
                                          "valid": np.array([valid], dtype=np.uint16),
                                          "tstid": np.array([tstid], dtype=np.uint16)})
    name = "image_{:05d}.jpg".format
    return Written(base, classes,
                   test=[(name(i), classes[all_classes[i - 1]]) for i in tstid],
                   pool=[(name(i), classes[all_classes[i - 1]]) for i in trnid + valid])


PETS_BREEDS = (("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 6, 1), ("great_pyrenees", 16, 2))


def write_pets(root: Path) -> Written:
    base = Path(root) / "oxford-iiit-pet"
    classes = [breed.replace("_", " ").lower() for breed, _, _ in PETS_BREEDS]
    written = Written(base, classes)
    counter = [100, 100, 100, 100]
    for split, counts, target in (("trainval", POOL_COUNTS, written.pool), ("test", TEST_COUNTS, written.test)):
        lines = []
        for c in _interleaved(counts):
            breed, class_id, species = PETS_BREEDS[c]
            counter[c] += 1
            image_id = f"{breed}_{counter[c]}"
            _jpeg(base / "images" / f"{image_id}.jpg", counter[c] + c)
            lines.append(f"{image_id} {class_id} {species} {c + 1}")
            target.append((image_id, classes[c]))
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return written


AIRCRAFT_VARIANTS = ("707-320", "A300B4", "Cessna 172", "F-16A/B")


def write_aircraft(root: Path) -> Written:
    base = Path(root) / "fgvc-aircraft-2013b"
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    classes = list(AIRCRAFT_VARIANTS)
    (data / "variants.txt").write_text("\n".join(classes) + "\n")
    written = Written(base, classes)
    next_id = 1025794
    split_lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    plan = ((POOL_COUNTS, written.pool, ("train", "val")), (TEST_COUNTS, written.test, ("test",)))
    for counts, target, splits in plan:
        for i, c in enumerate(_interleaved(counts)):
            image_id = f"{next_id:07d}"
            next_id += 3
            _jpeg(data / "images" / f"{image_id}.jpg", next_id)
            split_lines[splits[i % len(splits)]].append(f"{image_id} {classes[c]}")
            target.append((image_id, classes[c]))
    # trainval lists the train and val images in the pool's order
    trainval = [f"{i} {lab}" for i, lab in written.pool]
    for split, lines in (*split_lines.items(), ("trainval", trainval)):
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return written


CAR_NAMES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012", "Acura TL Type-S 2008")


def cars_struct(rows: list[tuple[str, int]]) -> np.ndarray:
    """A 1xN MATLAB struct array like the devkit's ``annotations`` (bbox_x1..bbox_y2, class, fname)."""
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    arr = np.zeros((1, len(rows)), dtype=dtype)
    for j, (fname, class_id) in enumerate(rows):
        arr[0, j] = (np.array([[1]], dtype=np.uint8), np.array([[2]], dtype=np.uint8), np.array([[30]], dtype=np.uint8),
                     np.array([[20]], dtype=np.uint8), np.array([[class_id]], dtype=np.uint8), np.array([fname]))
    return arr


def write_cars(root: Path) -> Written:
    base = Path(root) / "stanford_cars"
    # the loader's labels put the year first, as Visual-RFT's label list does
    classes = [" ".join([n.rsplit(" ", 1)[1], n.rsplit(" ", 1)[0]]) for n in CAR_NAMES]
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    names = np.empty((1, len(classes)), dtype=object)
    for j, name in enumerate(CAR_NAMES):
        names[0, j] = name
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names})
    written = Written(base, classes)
    plan = (("cars_train", base / "devkit" / "cars_train_annos.mat", POOL_COUNTS, written.pool),
            ("cars_test", base / "cars_test_annos_withlabels.mat", TEST_COUNTS, written.test))
    for folder, mat, counts, target in plan:
        rows = []
        for n, c in enumerate(_interleaved(counts), 1):
            fname = f"{n:05d}.jpg"
            _jpeg(base / folder / fname, n * 5 + c)
            rows.append((fname, c + 1))
            target.append((fname, classes[c]))
        scipy.io.savemat(mat, {"annotations": cars_struct(rows)})
    return written


WRITERS = {"flowers102": write_flowers102, "pets": write_pets, "aircraft": write_aircraft, "cars": write_cars}


def write_all(root: Path) -> dict[str, Written]:
    """All four datasets under ``root``."""
    return {key: writer(root) for key, writer in WRITERS.items()}
