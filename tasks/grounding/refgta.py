"""RefGTA (Tanaka et al., ICCV 2019): referring expressions for people in GTA V scenes.

Curr-ReFT's out-of-domain detection split. Upstream is github.com/mikittt/easy-to-understand-REG
(``pyutils/refer2``, a refer API with ``REFER(data_root, image_root, 'refgta', 'utokyo')``);
annotations and images come from its Google Drive links. Under the data root::

    refgta/instances.json         COCO-style: images {id, file_name, width, height},
                                  annotations {id, image_id, bbox [x, y, w, h], category_id}, categories
    refgta/refs(utokyo).p         pickle: list of refs {ref_id, ann_id, image_id, split, category_id,
                                  sentences: [{sent_id, sent, raw, tokens, ...}]}
    refgta/gtav_cv_mod_data/<file_name>   the GTA images (upstream's default gta_image_root, holding
                                  dont_specify/, black_wearing/, white_wearing/), or --data_args refgta_images=DIR

As in refer.py, the image is the instances.json image with the ref's ``image_id`` and the
box that of the ref's ``ann_id``. One sample per sentence, in pickle order of refs and then
sentences; the sample id is the ``sent_id``, the expression ``sent``. Splits follow
refer's ``getRefIds``: ``val`` is ``split == 'val'``, ``test`` every split containing ``test``.

Curr-ReFT evaluates a 1,000-sample subsample (``refgta_subsample_resize.json``, with images
downscaled into ``final_resize``) that its repository does not ship in a readable form;
these tasks are the whole upstream splits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness import safe_pickle
from harness.data import DatasetMissing, DatasetSpec
from harness.errors import UsageError
from harness.registry import SUITES, TASKS
from harness.suite import Suite
from harness.validation import read_json_file
from tasks.grounding.base import GroundingTask, xywh_to_xyxy

SPLIT_BY = "utokyo"
REFS_FILE = f"refs({SPLIT_BY}).p"

REFGTA = DatasetSpec(
    name="refgta",
    directory="refgta",
    source="https://github.com/mikittt/easy-to-understand-REG (pyutils/refer2; annotations and GTA images "
           "from its Google Drive links)",
    layout=(f"refgta/instances.json, refgta/{REFS_FILE}, refgta/gtav_cv_mod_data/<file_name> (the GTA image "
            "root holding dont_specify/, black_wearing/, white_wearing/; or --data_args refgta_images=DIR)"),
    required=("instances.json", REFS_FILE),
    image_option="refgta_images",
    images="gtav_cv_mod_data",
)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_instances(path: Path) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[int, str]]:
    """images by id, annotations by id (box xyxy), category names by id; checked."""
    try:
        raw = read_json_file(path, "refgta annotations")
    except UsageError as exc:
        raise DatasetMissing(f"refgta: {exc}") from None
    where = f"refgta: {path}"
    if not isinstance(raw, dict):
        raise DatasetMissing(f"{where}: expected a JSON object with images, annotations, categories, "
                             f"got {type(raw).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise DatasetMissing(f"{where}: '{key}' is missing or not a list")
    categories: dict[int, str] = {}
    for i, cat in enumerate(raw["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise DatasetMissing(f"{where}: categories[{i}] needs an integer 'id' and a string 'name', "
                                 f"got {cat!r:.120}")
        categories[cat["id"]] = cat["name"]
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(raw["images"]):
        if not (isinstance(img, dict) and _is_id(img.get("id")) and isinstance(img.get("file_name"), str)
                and img["file_name"] and all(_is_id(img.get(k)) and img[k] > 0 for k in ("width", "height"))):
            raise DatasetMissing(f"{where}: images[{i}] needs an integer 'id', a 'file_name' and positive integer "
                                 f"'width' and 'height', got {img!r:.160}")
        images[img["id"]] = {"file_name": img["file_name"], "size": [img["width"], img["height"]], "anns": []}
    anns: dict[int, dict[str, Any]] = {}
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or not all(_is_id(ann.get(k)) for k in ("id", "image_id", "category_id")):
            raise DatasetMissing(f"{where}: annotations[{i}] needs integer 'id', 'image_id' and 'category_id', "
                                 f"got {ann!r:.160}")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
            raise DatasetMissing(f"{where}: annotation {ann['id']}: bbox must be 4 numbers [x, y, w, h], "
                                 f"got {bbox!r:.80}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise DatasetMissing(f"{where}: annotation {ann['id']}: bbox {bbox} has a negative width or height")
        if ann["image_id"] not in images:
            raise DatasetMissing(f"{where}: annotation {ann['id']}: image_id {ann['image_id']} is not in 'images'")
        anns[ann["id"]] = {"image_id": ann["image_id"], "box": xywh_to_xyxy(bbox), "category_id": ann["category_id"]}
        images[ann["image_id"]]["anns"].append(ann["id"])
    return images, anns, categories


def read_refs(path: Path) -> list[dict[str, Any]]:
    """The refs pickle through the restricted unpickler (plain containers only), checked."""
    try:
        refs = safe_pickle.load(path, "refgta refs pickle")
    except UsageError as exc:
        raise DatasetMissing(f"refgta: {exc}") from None
    if not isinstance(refs, list):
        raise DatasetMissing(f"refgta: {path}: expected a list of refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        where = f"refgta: {path}: ref [{i}]"
        if not isinstance(ref, dict):
            raise DatasetMissing(f"{where} is a {type(ref).__name__}, not a dict")
        for key in ("ref_id", "ann_id", "image_id"):
            if not _is_id(ref.get(key)):
                raise DatasetMissing(f"{where}: '{key}' must be an integer, got {ref.get(key)!r:.60}")
        if not isinstance(ref.get("split"), str):
            raise DatasetMissing(f"{where}: 'split' must be a string, got {ref.get('split')!r:.60}")
        sents = ref.get("sentences")
        if not isinstance(sents, list):
            raise DatasetMissing(f"{where}: 'sentences' must be a list, got {sents!r:.60}")
        for j, s in enumerate(sents):
            if not isinstance(s, dict) or not _is_id(s.get("sent_id")) or not isinstance(s.get("sent"), str) \
                    or not s["sent"].strip():
                raise DatasetMissing(f"{where}: sentences[{j}] needs an integer 'sent_id' and a non-empty 'sent', "
                                     f"got {s!r:.120}")
    return refs


def in_split(ref_split: str, split: str) -> bool:
    """refer's getRefIds: 'test' takes every split containing 'test' (testA, testAB, ...)."""
    return "test" in ref_split if split == "test" else ref_split == split


class RefGTATask(GroundingTask):
    dataset = REFGTA
    split = "test"
    id_doc = "the sentence's sent_id in refs(utokyo).p"

    def read_index(self) -> list[dict[str, Any]]:
        base = self.dataset.check()
        images, anns, categories = read_instances(base / "instances.json")
        refs = read_refs(base / REFS_FILE)
        entries = []
        for ref in refs:
            if not in_split(ref["split"], self.split):
                continue
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise DatasetMissing(f"refgta: ref {ref['ref_id']}: ann_id {ref['ann_id']} is not in instances.json")
            image = images.get(ref["image_id"])
            if image is None:
                raise DatasetMissing(f"refgta: ref {ref['ref_id']}: image_id {ref['image_id']} "
                                     "is not in instances.json")
            others = [anns[a]["box"] for a in image["anns"] if a != ref["ann_id"]]
            meta = {"ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "image_id": ref["image_id"],
                    "split": ref["split"], "category": categories.get(ann["category_id"], str(ann["category_id"]))}
            for sent in ref["sentences"]:
                entries.append({"id": str(sent["sent_id"]), "image": image["file_name"], "size": image["size"],
                                "expression": sent["sent"].strip(), "box": ann["box"], "others": others,
                                "metadata": meta})
        return entries


def _define(name: str, split: str, description: str) -> type:
    cls = type("".join(p.title() for p in name.split("_")), (RefGTATask,),
               {"name": name, "role": "ood", "split": split, "description": description})
    TASKS.register(name, cls)
    return cls


_define("refgta_val", "val", "RefGTA val (GTA V people, utokyo split): synthetic-domain referring expressions")
_define("refgta_test", "test", "RefGTA test (GTA V people, utokyo split): Curr-ReFT's OOD detection split")

SUITES.register("curr_reft_det", Suite(
    "curr_reft_det", "refcoco_train", ("refcoco_val",), ("refgta_test",),
    "Curr-ReFT visual detection: RefCOCO grounding; OOD: RefGTA (GTA V renderings)"))
