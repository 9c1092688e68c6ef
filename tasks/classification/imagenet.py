"""ImageNet-1K, DC-SFT's ImageNet-100 subset, and ImageNet-R / ImageNet-A as its OOD splits.

=====================  =====  ===============================================================
task                   role   samples
=====================  =====  ===============================================================
``imagenet_val``       id     every val image of every class in the mapping (50,000)
``imagenet100_train``  train  100 seeded train images of each ImageNet-100 class
``imagenet100_val``    id     every val image of the ImageNet-100 classes
``imagenet_r``         ood    ImageNet-R images of the ImageNet-100 classes it has
``imagenet_a``         ood    ImageNet-A images of the ImageNet-100 classes it has
=====================  =====  ===============================================================

ImageNet-100 (DC-SFT, Sec. 4.1: "randomly selecting 100 single-word object categories,
each containing 100 images") is a seeded choice of 100 classes whose canonical name (the
first name on its line of ``LOC_synset_mapping.txt``) is one word, with neither spaces
nor hyphens. The choice needs only the mapping file, so the OOD splits make the same one
without the train images. Labels and synonyms of every split come from that file: the
label is the first name, the other names count as correct too. docs/tasks/imagenet.md
says how DC-SFT's released files differ.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.dataset_task import _INDEX_CACHE, seeded_subset
from harness.registry import SUITES, TASKS
from harness.suite import Suite
from tasks.classification.base import ClassificationTask

MAPPING = "LOC_synset_mapping.txt"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# DC-SFT's ImageNet-100: how many classes, how many train images each, and our seed
# (the paper gives no seed; the selection is recorded in notes() so a run can be compared)
SEED = 0
N_CLASSES = 100
PER_CLASS = 100

_SOURCE = "https://image-net.org/challenges/LSVRC/2012/ (LOC_synset_mapping.txt as in the Kaggle ILSVRC release)"
_LAYOUT = (f"imagenet/{MAPPING} (lines 'n01440764 tench, Tinca tinca'), imagenet/train/<wnid>/*.JPEG, "
           "imagenet/val/<wnid>/*.JPEG (val sorted into class folders, e.g. by valprep.sh)")
IMAGENET_TRAIN = DatasetSpec("ImageNet-1K", "imagenet", _SOURCE, _LAYOUT, required=(MAPPING,), images="train")
IMAGENET_VAL = DatasetSpec("ImageNet-1K", "imagenet", _SOURCE, _LAYOUT, required=(MAPPING,), images="val")
IMAGENET_R = DatasetSpec(
    "ImageNet-R", "imagenet-r", "https://github.com/hendrycks/imagenet-r (imagenet-r.tar)",
    f"imagenet-r/<wnid>/*.jpg (200 class folders, README.txt); labels come from imagenet/{MAPPING}")
IMAGENET_A = DatasetSpec(
    "ImageNet-A", "imagenet-a", "https://github.com/hendrycks/natural-adv-examples (imagenet-a.tar)",
    f"imagenet-a/<wnid>/*.jpg (200 class folders, README.txt); labels come from imagenet/{MAPPING}")

_LINE = re.compile(r"^(n\d{8})\s+(\S.*)$")


@dataclass(frozen=True)
class Synset:
    wnid: str
    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.names[0]

    @property
    def synonyms(self) -> list[str]:
        return list(self.names[1:])


_MAPPING_CACHE: dict[tuple, dict[str, Synset]] = {}


def read_mapping(path: Path, dataset: str = "ImageNet-1K") -> dict[str, Synset]:
    """``LOC_synset_mapping.txt``: ``<wnid> <name>[, <name>...]`` per line, in wnid order."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _MAPPING_CACHE:
        return _MAPPING_CACHE[key]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetMissing(f"{dataset}: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out: dict[str, Synset] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        names = tuple(n.strip() for n in m.group(2).split(",")) if m else ()
        if m is None or not all(names):
            raise DatasetMissing(f"{dataset}: {path} line {number}: expected '<wnid> <name>[, <name>...]' like "
                                 f"'n01440764 tench, Tinca tinca', got {line[:80]!r}")
        if m.group(1) in out:
            raise DatasetMissing(f"{dataset}: {path} line {number}: class {m.group(1)} is listed twice")
        out[m.group(1)] = Synset(m.group(1), tuple(dict.fromkeys(names)))
    if not out:
        raise DatasetMissing(f"{dataset}: {path} lists no classes")
    _MAPPING_CACHE[key] = dict(sorted(out.items()))
    return _MAPPING_CACHE[key]


def is_single_word(name: str) -> bool:
    # DC-SFT's "single-word object categories"; a hyphen joins words ("go-kart"), so it does not count
    return bool(name) and not any(ch.isspace() or ch == "-" for ch in name)


def imagenet100(mapping: dict[str, Synset]) -> list[str]:
    """The ImageNet-100 wnids (sorted): ``N_CLASSES`` single-word classes, seeded (all if fewer)."""
    eligible = [w for w, s in sorted(mapping.items()) if is_single_word(s.label)]
    return seeded_subset(eligible, N_CLASSES, SEED, "imagenet100_classes")


def _images(folder: Path) -> list[str]:
    """Image file names in one class folder, sorted (other files and hidden ones are not samples)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_file()
                      and e.name.lower().endswith(IMAGE_SUFFIXES))


def class_folders(root: Path, mapping: dict[str, Synset], mapping_path: Path, dataset: str) -> list[str]:
    """The class folders under a split root (sorted wnids); a folder that is not a class is an error."""
    with os.scandir(root) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    folders = sorted(e.name for e in entries if e.is_dir())
    if not folders and any(e.name.lower().endswith(IMAGE_SUFFIXES) for e in entries):
        raise DatasetMissing(f"{dataset}: {root} holds images but no class folders; expected {root}/<wnid>/*.JPEG "
                             "(sort the flat ImageNet val images into class folders first, e.g. with valprep.sh)")
    unknown = [f for f in folders if f not in mapping]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} folders)" if len(unknown) > 5 else "")
        raise DatasetMissing(f"{dataset}: {root} has folders that are not classes in {mapping_path}: {shown}")
    return folders


def _entry(wnid: str, filename: str, synset: Synset) -> dict[str, Any]:
    rel = f"{wnid}/{filename}"
    return {"id": rel, "path": rel, "label": synset.label, "synonyms": synset.synonyms, "metadata": {"wnid": wnid}}


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


class ImageNetTask(ClassificationTask):
    """A split labelled through ImageNet's mapping file."""

    noun = "object"
    id_doc = "the image path relative to the split root, e.g. n01440764/ILSVRC2012_val_00000293.JPEG"

    def mapping_path(self) -> Path:
        return IMAGENET_VAL.path() / MAPPING

    def mapping(self) -> dict[str, Synset]:
        return read_mapping(self.mapping_path(), self.dataset.name)

    def _store_notes(self, notes: dict[str, Any]) -> None:
        _INDEX_CACHE[("notes",) + self.cache_key()] = notes  # type: ignore[assignment]

    def notes(self) -> dict[str, Any]:
        key = ("notes",) + self.cache_key()
        if key not in _INDEX_CACHE:
            self.read_index()  # the notes are made with the index
        return dict(_INDEX_CACHE[key])  # type: ignore[arg-type]

    def subset_notes(self, mapping: dict[str, Synset], chosen: list[str]) -> dict[str, Any]:
        eligible = sum(is_single_word(s.label) for s in mapping.values())
        notes: dict[str, Any] = {
            "subset": "ImageNet-100 (DC-SFT)",
            "rule": f"seeded_subset of the classes whose first name in {MAPPING} has no space or hyphen",
            "seed": SEED, "classes_wanted": N_CLASSES, "single_word_classes": eligible, "classes_chosen": len(chosen),
            "classes": [{"wnid": w, "label": mapping[w].label} for w in chosen],
        }
        if eligible < N_CLASSES:
            notes["note"] = f"only {eligible} single-word classes in the mapping: all of them are used"
        return notes

    def subset_labels(self) -> list[str]:
        """ImageNet-100's label space: distractors for :mc and :yesno come from the classes trained on."""
        key = ("labels",) + self.cache_key()
        if key not in _INDEX_CACHE:
            mapping = self.mapping()
            _INDEX_CACHE[key] = sorted({mapping[w].label for w in imagenet100(mapping)})  # type: ignore[assignment]
        return _INDEX_CACHE[key]  # type: ignore[return-value]


class _ImageNetSplit(ImageNetTask):
    """Images of ImageNet-1K's own train or val split (class-folder layout)."""

    def split_root(self) -> Path:
        return self.dataset.image_dir()

    def read_class(self, wnid: str) -> list[str]:
        folder = self.split_root() / wnid
        if not folder.is_dir():
            raise DatasetMissing(f"{self.name}: class folder {folder} is missing (class {wnid} "
                                 f"{self.mapping()[wnid].label!r} of {self.mapping_path()})")
        files = _images(folder)
        if not files:
            raise DatasetMissing(f"{self.name}: {folder} holds no images (.JPEG, .jpg, .jpeg or .png)")
        return files

    def checked(self) -> tuple[dict[str, Synset], list[str]]:
        self.dataset.check()
        mapping = self.mapping()
        return mapping, class_folders(self.split_root(), mapping, self.mapping_path(), self.name)


class ImageNetVal(_ImageNetSplit):
    name = "imagenet_val"
    role = "id"
    dataset = IMAGENET_VAL
    description = "ImageNet-1K val: every image of every class in the mapping, labelled by its first WordNet name"

    def read_index(self) -> list[dict[str, Any]]:
        mapping, folders = self.checked()
        present = set(folders)
        missing = [w for w in mapping if w not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} classes)" if len(missing) > 5 else "")
            raise DatasetMissing(f"{self.name}: {self.split_root()} lacks the class folders of {shown} "
                                 f"(every class in {self.mapping_path()} has val images)")
        entries = [_entry(w, f, mapping[w]) for w in mapping for f in self.read_class(w)]
        by_label: dict[str, list[str]] = {}
        for w, s in mapping.items():
            by_label.setdefault(s.label, []).append(w)
        self._store_notes({"classes": len(mapping), "images": len(entries),
                           # ImageNet names some classes alike ("crane" the bird and the machine)
                           "shared_labels": {k: v for k, v in by_label.items() if len(v) > 1}})
        return entries


class ImageNet100Train(_ImageNetSplit):
    name = "imagenet100_train"
    role = "train"
    dataset = IMAGENET_TRAIN
    description = "DC-SFT's ImageNet-100 train set: 100 seeded single-word classes x 100 seeded train images"

    def labels(self) -> list[str]:
        return self.subset_labels()

    def read_index(self) -> list[dict[str, Any]]:
        mapping, _ = self.checked()
        chosen = imagenet100(mapping)
        entries: list[dict[str, Any]] = []
        per_class: dict[str, dict[str, int]] = {}
        for wnid in chosen:
            files = self.read_class(wnid)
            picked = seeded_subset(files, PER_CLASS, SEED, "imagenet100_train", wnid)
            per_class[wnid] = {"available": len(files), "chosen": len(picked)}
            entries += [_entry(wnid, f, mapping[wnid]) for f in picked]
        notes = self.subset_notes(mapping, chosen)
        notes.update({"train_per_class_wanted": PER_CLASS,
                      "train_rule": f"seeded_subset(sorted file names, {PER_CLASS}, {SEED}, 'imagenet100_train', wnid)",
                      "train_per_class": per_class, "train_images": len(entries),
                      "train_ids_sha256": _ids_digest([e["id"] for e in entries])})
        self._store_notes(notes)
        return entries


class ImageNet100Val(_ImageNetSplit):
    name = "imagenet100_val"
    role = "id"
    dataset = IMAGENET_VAL
    description = "DC-SFT's ImageNet-100 ID test: every ImageNet-1K val image of the 100 classes"

    def labels(self) -> list[str]:
        return self.subset_labels()

    def read_index(self) -> list[dict[str, Any]]:
        mapping, _ = self.checked()
        chosen = imagenet100(mapping)
        entries = [_entry(w, f, mapping[w]) for w in chosen for f in self.read_class(w)]
        notes = self.subset_notes(mapping, chosen)
        notes["val_images"] = len(entries)
        self._store_notes(notes)
        return entries


class _OODSplit(ImageNetTask):
    """ImageNet-R or -A (``<root>/<wnid>/*.jpg``), kept to the classes it shares with ImageNet-100."""

    role = "ood"
    id_doc = "the image path relative to the dataset directory, e.g. n01443537/art_0.jpg"

    def labels(self) -> list[str]:
        return self.subset_labels()

    def read_index(self) -> list[dict[str, Any]]:
        base = self.dataset.check()
        mapping_path = require_file(self.mapping_path(), self.dataset.name,
                                    f"the ImageNet class mapping (imagenet/{MAPPING}: {self.dataset.name} labels and "
                                    "synonyms come from it)")
        mapping = read_mapping(mapping_path, self.dataset.name)
        folders = class_folders(base, mapping, mapping_path, self.name)
        chosen = imagenet100(mapping)
        overlap = sorted(set(folders) & set(chosen))
        entries = [_entry(w, f, mapping[w]) for w in overlap for f in _images(base / w)]
        self._store_notes({
            "restricted_to": "the ImageNet-100 classes (seeded, see imagenet100_train's notes)", "seed": SEED,
            "subset_classes": len(chosen), "ood_classes": len(folders), "overlap": len(overlap),
            "images_kept": len(entries), "overlap_classes": [{"wnid": w, "label": mapping[w].label} for w in overlap],
        })
        return entries


class ImageNetR(_OODSplit):
    name = "imagenet_r"
    dataset = IMAGENET_R
    description = "ImageNet-R renditions (art, cartoons, sketches...) of the ImageNet-100 classes it covers"


class ImageNetA(_OODSplit):
    name = "imagenet_a"
    dataset = IMAGENET_A
    description = "ImageNet-A natural adversarial photos of the ImageNet-100 classes it covers"


for _cls in (ImageNetVal, ImageNet100Train, ImageNet100Val, ImageNetR, ImageNetA):
    TASKS.register(_cls.name, _cls)

SUITES.register("imagenet", Suite(
    "imagenet", "imagenet100_train", ("imagenet100_val",), ("imagenet_r", "imagenet_a"),
    "DC-SFT's image classification benchmark: ImageNet-100 (100 single-word classes x 100 images); "
    "OOD: ImageNet-R renditions and ImageNet-A adversarial photos of those classes"))
