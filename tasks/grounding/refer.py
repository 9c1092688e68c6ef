"""RefCOCO, RefCOCO+ and RefCOCOg in the ``lichengunc/refer`` layout.

Under the data root::

    refer/refcoco/instances.json     COCO-style: images, annotations (bbox xywh), categories
    refer/refcoco/refs(unc).p        pickle: list of refs {ref_id, ann_id, image_id, split,
                                     category_id, file_name, sentences: [{sent_id, sent, raw, tokens}]}
    refer/refcoco+/...               refs(unc).p
    refer/refcocog/...               refs(umd).p and/or refs(google).p
    coco/train2014/COCO_train2014_*.jpg   (or --data_args coco_images=DIR)

As in refer.py, the image file is the ``file_name`` of the instances.json image with the
ref's ``image_id``; the ref's own ``file_name`` carries an ann-id suffix
(``COCO_train2014_000000581857_16.jpg``) and names no file.

One sample per sentence, in pickle order of the refs and then sentence order. The sample
id is the sentence's ``sent_id`` (unique within a dataset, and what refer's ``Sents``
index is keyed by). The expression is ``sent``, the tokenised lower-case form that
every REC paper and VLM-R1's processed files use; ``raw`` keeps the annotator's
capitals and punctuation, and varies in ways the benchmarks never scored.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import data, safe_pickle
from harness.data import DatasetMissing, DatasetSpec
from harness.errors import UsageError
from harness.registry import SUITES, define_task
from harness.suite import Suite
from harness.validation import read_json_file
from tasks.grounding.base import GroundingTask

REFER_SOURCE = "https://github.com/lichengunc/refer (annotations), COCO train2014 (images)"


class CocoImagesSpec(DatasetSpec):
    """A refer dataset whose images are COCO train2014, shared by RefCOCO/+/g and kept
    once under the data root (``images`` is relative to the root, not the dataset)."""

    def image_dir(self) -> Path:
        if self.image_option and data.option(self.image_option) is not None:
            return data.option(self.image_option)  # type: ignore[return-value]
        root = data.data_root()
        if root is None:
            self.path()  # raises the no-data-root error
        return root / (self.images or "")  # type: ignore[operator]


def refer_spec(dataset: str, split_by: str) -> DatasetSpec:
    return CocoImagesSpec(
        name=f"{dataset} ({split_by} split)",
        directory=f"refer/{dataset}",
        source=REFER_SOURCE,
        layout=(f"refer/{dataset}/instances.json, refer/{dataset}/refs({split_by}).p (lichengunc/refer); images "
                "coco/train2014/COCO_train2014_*.jpg under the data root, or --data_args coco_images=DIR"),
        required=("instances.json", f"refs({split_by}).p"),
        image_option="coco_images",
        images="coco/train2014",
    )


# ----- reading and checking the two files ------------------------------------------------------

def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class Instances:
    """instances.json, checked: what the loaders need and nothing decoded twice."""

    images: dict[int, dict[str, Any]]  # id -> {"file_name", "size": [w, h]}
    boxes: dict[int, list[float]]  # ann id -> xyxy (shared list objects: entries point at them)
    ann_image: dict[int, int]  # ann id -> image id
    ann_category: dict[int, int]
    image_anns: dict[int, list[int]]  # image id -> ann ids in file order
    categories: dict[int, str]


def read_instances(path: Path, dataset: str) -> Instances:
    try:
        raw = read_json_file(path, f"{dataset} annotations")
    except UsageError as exc:
        raise DatasetMissing(str(exc)) from None

    def bad(what: str) -> DatasetMissing:
        return DatasetMissing(f"{dataset}: {path}: {what}")

    if not isinstance(raw, dict):
        raise bad(f"expected a JSON object with images, annotations and categories, got {type(raw).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise bad(f"'{key}' is missing or not a list")
    categories: dict[int, str] = {}
    for i, cat in enumerate(raw["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise bad(f"categories[{i}] needs an integer 'id' and a string 'name', got {cat!r:.120}")
        categories[cat["id"]] = cat["name"]
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(raw["images"]):
        ok = (isinstance(img, dict) and _is_id(img.get("id")) and isinstance(img.get("file_name"), str)
              and all(_is_id(img.get(k)) and img[k] > 0 for k in ("width", "height")))
        if not ok:
            raise bad(f"images[{i}] needs an integer 'id', a string 'file_name' and positive integer 'width' and "
                      f"'height', got {img!r:.160}")
        images[img["id"]] = {"file_name": img["file_name"], "size": [img["width"], img["height"]]}
    boxes: dict[int, list[float]] = {}
    ann_image: dict[int, int] = {}
    ann_category: dict[int, int] = {}
    image_anns: dict[int, list[int]] = {}
    int_, num = {int}, {int, float}  # exact types: bool is not a number here, and this loop runs 200k times
    for i, ann in enumerate(raw["annotations"]):
        if (type(ann) is not dict or type(ann.get("id")) not in int_ or type(ann.get("image_id")) not in int_
                or type(ann.get("category_id")) not in int_):
            raise bad(f"annotations[{i}] needs integer 'id', 'image_id' and 'category_id', got {ann!r:.160}")
        bbox = ann.get("bbox")
        if (type(bbox) is not list or len(bbox) != 4 or not all(type(v) in num for v in bbox)
                or not math.isfinite(sum(bbox))):
            raise bad(f"annotation {ann['id']}: bbox must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise bad(f"annotation {ann['id']}: bbox {bbox} has a negative width or height")
        ann_id, image_id = ann["id"], ann["image_id"]
        if image_id not in images:
            raise bad(f"annotation {ann_id}: image_id {image_id} is not in 'images'")
        if ann["category_id"] not in categories:
            raise bad(f"annotation {ann_id}: category_id {ann['category_id']} is not in 'categories'")
        x, y, w, h = bbox
        boxes[ann_id] = [float(x), float(y), float(x + w), float(y + h)]
        ann_image[ann_id] = image_id
        ann_category[ann_id] = ann["category_id"]
        image_anns.setdefault(image_id, []).append(ann_id)
    return Instances(images, boxes, ann_image, ann_category, image_anns, categories)


def read_refs(path: Path, dataset: str) -> list[dict[str, Any]]:
    """The refs pickle, through the restricted unpickler (plain lists and dicts only), checked."""
    try:
        refs = safe_pickle.load(path, f"{dataset} refs pickle")
    except UsageError as exc:
        raise DatasetMissing(str(exc)) from None
    if not isinstance(refs, list):
        raise DatasetMissing(f"{dataset}: {path}: expected a list of refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        where = f"{dataset}: {path}: ref [{i}]"
        if not isinstance(ref, dict):
            raise DatasetMissing(f"{where} is a {type(ref).__name__}, not a dict")
        for key in ("ref_id", "ann_id", "image_id"):
            if not _is_id(ref.get(key)):
                raise DatasetMissing(f"{where} needs an integer '{key}', got {ref.get(key)!r:.60}")
        if not isinstance(ref.get("split"), str):
            raise DatasetMissing(f"{where} (ref_id {ref['ref_id']}) needs a string 'split'")
        sents = ref.get("sentences")
        if not isinstance(sents, list):
            raise DatasetMissing(f"{where} (ref_id {ref['ref_id']}) needs a list 'sentences'")
        for sent in sents:
            if not isinstance(sent, dict) or not _is_id(sent.get("sent_id")) or not isinstance(sent.get("sent"), str):
                raise DatasetMissing(f"{where} (ref_id {ref['ref_id']}): each sentence needs an integer 'sent_id' "
                                     f"and a string 'sent', got {sent!r:.120}")
    return refs


def _stamp(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


# instances.json is tens of MB and shared by every split (and the category tasks): read once
_INSTANCES: dict[tuple, Instances] = {}
_REFS: dict[tuple, list[dict[str, Any]]] = {}


def load_instances(spec: DatasetSpec) -> Instances:
    base = spec.check()
    path = base / "instances.json"
    key = _stamp(path)
    if key not in _INSTANCES:
        _INSTANCES.clear()  # one dataset's at a time: they are large
        _INSTANCES[key] = read_instances(path, spec.name)
    return _INSTANCES[key]


def load_refs(spec: DatasetSpec, split_by: str) -> list[dict[str, Any]]:
    path = spec.check() / f"refs({split_by}).p"
    key = _stamp(path)
    if key not in _REFS:
        _REFS.clear()
        _REFS[key] = read_refs(path, spec.name)
    return _REFS[key]


def in_split(ref_split: str, split: str) -> bool:
    """refer.py's getRefIds rule: testA/testB match any test split holding that letter
    (testAB too), 'test' any test split, train/val exactly."""
    if split in ("testA", "testB", "testC"):
        return ref_split.startswith("test") and split[-1] in ref_split[4:]
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def ref_entries(spec: DatasetSpec, split_by: str, split: str, nonempty: bool = False) -> list[dict[str, Any]]:
    """One entry per sentence of the refs in ``split``. ``nonempty``: strip each ``sent`` and reject an
    empty one (RefGTA); RefCOCO/+/g keep ``sent`` exactly as refer.py returns it."""
    inst = load_instances(spec)
    refs = load_refs(spec, split_by)
    refs_file = spec.path() / f"refs({split_by}).p"
    dataset = spec.directory.split("/")[-1]
    out: list[dict[str, Any]] = []
    others_by_ann: dict[int, list[list[float]]] = {}
    for ref in refs:
        if not in_split(ref["split"], split):
            continue
        ann_id = ref["ann_id"]
        if ann_id not in inst.boxes:
            raise DatasetMissing(f"{spec.name}: {refs_file}: ref {ref['ref_id']} points to annotation {ann_id}, "
                                 "which instances.json does not have (mismatched files?)")
        image_id = inst.ann_image[ann_id]
        if ref["image_id"] != image_id:
            raise DatasetMissing(f"{spec.name}: {refs_file}: ref {ref['ref_id']} says image {ref['image_id']} but its "
                                 f"annotation {ann_id} is on image {image_id} (mismatched files?)")
        image = inst.images[image_id]
        if ann_id not in others_by_ann:
            # shared by the ref's sentences: the index stays small on 140k-sentence splits
            others_by_ann[ann_id] = [inst.boxes[a] for a in inst.image_anns[image_id] if a != ann_id]
        meta = {"dataset": dataset, "split": ref["split"], "ref_id": ref["ref_id"], "ann_id": ann_id,
                "image_id": image_id, "category": inst.categories[inst.ann_category[ann_id]]}
        for sent in ref["sentences"]:
            expression = sent["sent"].strip() if nonempty else sent["sent"]
            if nonempty and not expression:
                raise DatasetMissing(f"{spec.name}: {refs_file}: ref {ref['ref_id']}: sentence {sent['sent_id']} "
                                     "has an empty 'sent'")
            out.append({"id": str(sent["sent_id"]), "image": image["file_name"], "size": image["size"],
                        "expression": expression, "box": inst.boxes[ann_id], "others": others_by_ann[ann_id],
                        "metadata": meta})
    return out


class ReferTask(GroundingTask):
    """One split of one refer-layout dataset (instances.json + refs(<split_by>).p under ``dataset``'s
    directory); subclasses set ``dataset``, ``split_by`` and ``refer_split``. Where the images live is the
    spec's business (COCO train2014 for RefCOCO/+/g, the dataset's own image root for RefGTA)."""

    refer_dataset: str = "refcoco"
    split_by: str = "unc"
    refer_split: str = "val"
    nonempty_expressions: bool = False
    id_doc = "sent_id from refs(<split_by>).p, as a string"

    def read_index(self) -> list[dict[str, Any]]:
        self.dataset.check()
        return ref_entries(self.dataset, self.split_by, self.refer_split, self.nonempty_expressions)


def _define(name: str, dataset: str, split_by: str, split: str, label: str) -> type:
    return define_task(ReferTask, name, "train" if split == "train" else "id",
                       f"{label} ({split_by} split) {split}: one sample per referring expression",
                       refer_dataset=dataset, split_by=split_by, refer_split=split, dataset=refer_spec(dataset, split_by))


for _split in ("train", "val", "testA", "testB"):
    _define(f"refcoco_{_split}", "refcoco", "unc", _split, "RefCOCO")
    _define(f"refcocoplus_{_split}", "refcoco+", "unc", _split, "RefCOCO+")
for _split in ("train", "val", "test"):
    _define(f"refcocog_{_split}", "refcocog", "umd", _split, "RefCOCOg")
for _split in ("train", "val"):
    _define(f"refcocog_google_{_split}", "refcocog", "google", _split, "RefCOCOg")

SUITES.register("refcoco", Suite(
    "refcoco", "refcoco_train", ("refcoco_val", "refcoco_testA", "refcoco_testB"), ("refl4_val_noncoco", "lisa_test"),
    "RefCOCO (unc) grounding; OOD: Ref-L4 val without COCO images (DC-SFT's set) and LISA reasoning expressions "
    "(DC-SFT, VLM-R1)"))
