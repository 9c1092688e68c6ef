"""Open-vocabulary and few-shot object detection on COCO and LVIS (Visual-RFT's protocol).

One sample per (image, queried category): id ``<image_id>:<category_id>`` (the dataset's
own ids), target = every non-crowd box of that category in that image (xyxy, original
pixels; possibly none). Index entries are ``{"id", "image", "size", "image_id",
"category_id", "category", "boxes", "areas", "crowd", "others", "metadata"}``.

Which categories are queried per image is a recorded protocol (``notes()``):

- ``ground_truth`` (default): the selected categories annotated in the image;
- ``existence_map``: a JSON file ``{"<image_id>": ["category name", ...]}`` (Visual-RFT's
  ``exist_map_*_baseline.json``: the categories the base model said were present), given
  with ``--data_args coco_det_queries=FILE`` / ``lvis_det_queries=FILE``. A queried
  category absent from the image is a sample with an empty target; an annotated category
  the map does not query is never asked, and its boxes still count as misses in mAP (as
  COCOeval on the annotation file counts them).

Answers are read by :func:`harness.boxes.parse_detections` (or Visual-RFT's own parser
under its profile); mAP comes from pycocotools on the real ids
(:class:`harness.detection_map.CategoryEval`). docs/tasks/detection.md has the details.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import data
from harness.boxes import (
    answer_box_to_pixels,
    detection_scores,
    format_box,
    iou,
    parse_detections,
    parse_detections_visual_rft,
    rank_score,
)
from harness.data import DatasetMissing
from harness.dataset_task import DatasetTask
from harness.errors import UsageError
from harness.parsed import Parsed
from harness.sample import ImageRef, Sample
from harness.stats import Resample
from harness.validation import read_json_file

#: distractor boxes kept per entry for :mc / :yesno (other objects of the image)
MAX_OTHERS = 4

GROUND_TRUTH, EXISTENCE_MAP = "ground_truth", "existence_map"


# ----------------------------------------------------------------------------- annotations
@dataclass
class Annotations:
    """What a COCO instances / LVIS v1 file says, reduced to what detection needs."""

    path: str
    #: image id -> {"file": path relative to the image root, "size": [w, h], "neg": [...], "not_exhaustive": [...]}
    images: dict[int, dict[str, Any]]
    #: category id -> name, and (LVIS) -> frequency "r" / "c" / "f"
    categories: dict[int, str]
    frequency: dict[int, str]
    #: (image id, category id) -> [(xyxy box, area, iscrowd)] in file order
    objects: dict[tuple[int, int], list[tuple[list[float], float, bool]]] = field(default_factory=dict)
    #: image id -> the category ids annotated in it, ascending
    image_categories: dict[int, list[int]] = field(default_factory=dict)

    def category_id(self, name: str) -> int:
        for cid, cname in self.categories.items():
            if cname == name:
                return cid
        raise DatasetMissing(f"{self.path}: no category named {name!r} (this split needs it)")


_ANNOTATION_CACHE: dict[tuple, Annotations] = {}
_INT, _NUM = {int}, {int, float}  # exact types: bool is not a number here


def read_annotations(path: Path, dataset: str, lvis: bool) -> Annotations:
    """A COCO instances or LVIS v1 JSON file, checked; cached per process and file version.

    COCO: ``images[] {id, file_name, width, height}``, ``annotations[] {id, image_id,
    category_id, bbox [x, y, w, h], area, iscrowd}``, ``categories[] {id, name}``; an
    image's file is ``<split>/<file_name>`` under the COCO 2017 image root (the split from
    the file name ``instances_<split>.json``). LVIS v1: images carry ``coco_url``
    (``http://images.cocodataset.org/val2017/000000397133.jpg``: the file is its last two
    parts, as Visual-RFT and detectron2 read it), ``neg_category_ids`` and
    ``not_exhaustive_category_ids``; categories carry ``frequency``; no ``iscrowd``.
    """
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, lvis)
    if key in _ANNOTATION_CACHE:
        return _ANNOTATION_CACHE[key]
    try:
        raw = read_json_file(path, f"{dataset} annotations")
    except UsageError as exc:
        raise DatasetMissing(str(exc)) from None

    def bad(what: str) -> DatasetMissing:
        return DatasetMissing(f"{dataset}: {path}: {what}")

    if not isinstance(raw, dict):
        raise bad(f"expected a JSON object with images, annotations and categories, got {type(raw).__name__}")
    for k in ("images", "annotations", "categories"):
        if not isinstance(raw.get(k), list):
            raise bad(f"'{k}' is missing or not a list")
    categories: dict[int, str] = {}
    frequency: dict[int, str] = {}
    for i, cat in enumerate(raw["categories"]):
        if not isinstance(cat, dict) or type(cat.get("id")) not in _INT or not isinstance(cat.get("name"), str):
            raise bad(f"categories[{i}] needs an integer 'id' and a string 'name', got {cat!r:.120}")
        if lvis and cat.get("frequency") not in ("r", "c", "f"):
            raise bad(f"categories[{i}] ({cat['name']}) needs 'frequency' 'r', 'c' or 'f' (LVIS v1), "
                      f"got {cat.get('frequency')!r}")
        categories[cat["id"]] = cat["name"]
        if lvis:
            frequency[cat["id"]] = cat["frequency"]
    split = path.stem.rsplit("_", 1)[-1]  # instances_val2017.json -> val2017
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(raw["images"]):
        ok = (isinstance(img, dict) and type(img.get("id")) in _INT
              and all(type(img.get(k)) in _INT and img[k] > 0 for k in ("width", "height")))
        name_key = "coco_url" if lvis else "file_name"
        if not ok or not isinstance(img.get(name_key), str) or not img[name_key]:
            raise bad(f"images[{i}] needs an integer 'id', a string '{name_key}' and positive integer 'width' and "
                      f"'height', got {img!r:.160}")
        entry: dict[str, Any] = {"size": [img["width"], img["height"]]}
        if lvis:
            parts = img["coco_url"].rstrip("/").split("/")
            if len(parts) < 2:
                raise bad(f"images[{i}]: coco_url {img['coco_url']!r} does not end in <split>/<file name>")
            entry["file"] = "/".join(parts[-2:])
            for k, short in (("neg_category_ids", "neg"), ("not_exhaustive_category_ids", "not_exhaustive")):
                ids = img.get(k)
                if not isinstance(ids, list) or not all(type(v) in _INT for v in ids):
                    raise bad(f"images[{i}] (id {img['id']}) needs '{k}' as a list of integer category ids")
                entry[short] = ids
        else:
            entry["file"] = f"{split}/{img['file_name']}"
        images[img["id"]] = entry
    objects: dict[tuple[int, int], list] = {}
    for i, ann in enumerate(raw["annotations"]):
        if (type(ann) is not dict or type(ann.get("image_id")) not in _INT
                or type(ann.get("category_id")) not in _INT):
            raise bad(f"annotations[{i}] needs integer 'image_id' and 'category_id', got {ann!r:.160}")
        bbox = ann.get("bbox")
        if (type(bbox) is not list or len(bbox) != 4 or not all(type(v) in _NUM for v in bbox)
                or not math.isfinite(sum(bbox))):
            raise bad(f"annotations[{i}]: bbox must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
        if bbox[2] < 0 or bbox[3] < 0:
            raise bad(f"annotations[{i}]: bbox {bbox} has a negative width or height")
        if ann["image_id"] not in images:
            raise bad(f"annotations[{i}]: image_id {ann['image_id']} is not in 'images'")
        if ann["category_id"] not in categories:
            raise bad(f"annotations[{i}]: category_id {ann['category_id']} is not in 'categories'")
        area = ann.get("area", bbox[2] * bbox[3])
        if type(area) not in _NUM or not math.isfinite(area):
            raise bad(f"annotations[{i}]: area must be a number, got {area!r:.40}")
        crowd = bool(ann.get("iscrowd", 0)) and not lvis
        x, y, w, h = (float(v) for v in bbox)
        objects.setdefault((ann["image_id"], ann["category_id"]), []).append(([x, y, x + w, y + h], float(area), crowd))
    image_categories: dict[int, list[int]] = {}
    for image_id, cat in objects:
        image_categories.setdefault(image_id, []).append(cat)
    for cats in image_categories.values():
        cats.sort()
    result = Annotations(str(path), images, categories, frequency, objects, image_categories)
    _ANNOTATION_CACHE.clear()  # one file at a time: train2017's annotations are large
    _ANNOTATION_CACHE[key] = result
    return result


def read_existence_map(path: Path, dataset: str, ann: Annotations) -> dict[int, list[str]]:
    """Visual-RFT's ``exist_map_*.json``: ``{"<image id>": ["category name", ...]}``."""
    try:
        raw = read_json_file(path, f"{dataset} existence map")
    except UsageError as exc:
        raise DatasetMissing(str(exc)) from None
    if not isinstance(raw, dict):
        raise DatasetMissing(f"{dataset}: existence map {path}: expected a JSON object "
                             f"{{\"<image id>\": [category names]}}, got {type(raw).__name__}")
    names = set(ann.categories.values())
    out: dict[int, list[str]] = {}
    for key, value in raw.items():
        if not str(key).lstrip("-").isdigit():
            raise DatasetMissing(f"{dataset}: existence map {path}: key {key!r} is not an image id")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DatasetMissing(f"{dataset}: existence map {path}: image {key} must map to a list of category "
                                 f"names, got {value!r:.80}")
        unknown = [v for v in value if v not in names]
        if unknown:
            raise DatasetMissing(f"{dataset}: existence map {path}: image {key} names {unknown[0]!r}, which is not a "
                                 f"category of {Path(ann.path).name}")
        out[int(key)] = list(dict.fromkeys(value))  # a name listed twice is asked once
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- the family
_EVAL_DATA: dict[tuple, dict[str, Any]] = {}


class DetectionTask(DatasetTask):
    """One split of (image, category) queries; subclasses say which file and categories."""

    family = "detection"
    answer_kind = "box"
    open_metrics = ("f1", "precision", "recall")
    max_new_tokens = 1024  # Visual-RFT's generate(max_new_tokens=1024)
    corpus_fields = ("sample_id", "parsed", "failure")
    id_doc = "<image_id>:<category_id> (the annotation file's ids)"
    protocol = ("open: Visual-RFT's per-category prompt (boxes and confidences, or 'No Objects'); parser "
                "boxes.parse_detections in the model's space; per-sample f1/precision/recall at the profile's IoU; "
                "corpus mAP (IoU 0.50:0.95), mAP50 and per-category AP by pycocotools on the real ids")
    #: the selected category names (the mean runs over these)
    categories: tuple[str, ...] = ()
    #: LVIS's federated evaluation rules (neg / not-exhaustive lists, 300 detections per image)
    lvis: bool = False
    #: the --data_args key of an existence map (None: this split always queries ground truth)
    queries_option: str | None = None

    # ----- to implement -------------------------------------------------------------------
    def annotation_file(self) -> Path:
        raise NotImplementedError

    def image_root(self) -> Path:
        return self.dataset.image_dir()

    def select_images(self, ann: Annotations, category_ids: dict[int, str]) -> list[int] | None:
        """The images of the split (None: every image of the file, in file order)."""
        return None

    # ----- the index -----------------------------------------------------------------------
    def read_index(self) -> list[dict[str, Any]]:
        self.dataset.check()
        path = self.annotation_file()
        ann = read_annotations(path, self.dataset.name, self.lvis)
        first = next(iter(ann.images.values()), None)
        if first is not None:
            folder = self.image_root() / first["file"].split("/")[0]
            if not folder.is_dir():
                raise DatasetMissing(f"{self.dataset.name}: image folder {folder} not found (images of "
                                     f"{path.name}). Expected layout: {self.dataset.layout_line()}")
        cats = {ann.category_id(name): name for name in self.categories}
        images = self.select_images(ann, cats)
        image_ids = list(ann.images) if images is None else images
        map_path = data.option(self.queries_option) if self.queries_option else None
        exist = read_existence_map(map_path, self.dataset.name, ann) if map_path else None
        if exist is not None:
            missing = [i for i in image_ids if i not in exist]
            if missing:
                raise DatasetMissing(f"{self.dataset.name}: existence map {map_path} has no entry for image "
                                     f"{missing[0]} ({len(missing)} of the split's {len(image_ids)} images missing)")
        name_to_id = {n: c for c, n in cats.items()}
        entries, unqueried = [], []
        queried_absent = 0
        for image_id in image_ids:
            img = ann.images[image_id]
            annotated = [c for c in ann.image_categories.get(image_id, ()) if c in cats]
            if exist is None:
                asked = self.ground_truth_queries(image_id, annotated)
            else:
                asked = [name_to_id[n] for n in exist[image_id] if n in name_to_id]
                for c in annotated:
                    if c not in asked:
                        unqueried.append(self._unit(ann, image_id, c))
            for c in asked:
                entry = self._entry(ann, image_id, c, cats[c], img)
                queried_absent += not entry["boxes"]
                entries.append(entry)
        notes: dict[str, Any] = {
            "annotations": str(path), "categories": {str(c): n for c, n in sorted(cats.items())},
            "images": len(image_ids), "queried_pairs": len(entries), "queried_without_objects": queried_absent,
            "queries": EXISTENCE_MAP if exist is not None else GROUND_TRUTH,
        }
        if exist is not None:
            notes.update(existence_map=str(map_path), existence_map_sha256=file_digest(map_path),
                         unqueried_gt_pairs=len(unqueried), unqueried_gt_boxes=sum(len(u["gt"]) for u in unqueried))
        notes.update(self.extra_notes())
        lvis_images = {i: {"neg": ann.images[i]["neg"], "not_exhaustive": ann.images[i]["not_exhaustive"]}
                       for i in image_ids} if self.lvis else None
        _EVAL_DATA[self.cache_key()] = {"unqueried": unqueried, "lvis": lvis_images, "categories": cats,
                                        "notes": notes}
        return entries

    def ground_truth_queries(self, image_id: int, annotated: list[int]) -> list[int]:
        """The categories asked of an image under the ground-truth protocol (default: every
        selected category annotated in it; a few-shot set asks only those it was drawn for)."""
        return annotated

    def extra_notes(self) -> dict[str, Any]:
        return {}

    def _unit(self, ann: Annotations, image_id: int, cat: int) -> dict[str, Any]:
        objs = ann.objects.get((image_id, cat), [])
        return {"image_id": image_id, "category_id": cat,
                "gt": [b for b, _, crowd in objs if not crowd], "gt_area": [a for _, a, crowd in objs if not crowd],
                "crowd": [b for b, _, crowd in objs if crowd], "dets": []}

    def _entry(self, ann: Annotations, image_id: int, cat: int, name: str, img: dict[str, Any]) -> dict[str, Any]:
        unit = self._unit(ann, image_id, cat)
        others = self._others(ann, image_id, cat)
        return {"id": f"{image_id}:{cat}", "image": img["file"], "size": list(img["size"]), "image_id": image_id,
                "category_id": cat, "category": name, "boxes": unit["gt"], "areas": unit["gt_area"],
                "crowd": unit["crowd"], "others": others,
                "metadata": {"image_id": image_id, "category_id": cat, "category": name,
                             "n_objects": len(unit["gt"])}}

    @staticmethod
    def _others(ann: Annotations, image_id: int, cat: int) -> list[list[float]]:
        """Boxes of other categories' objects in the image: the :mc distractors."""
        out: list[list[float]] = []
        for c in ann.image_categories.get(image_id, ()):
            if c == cat:
                continue
            for box, _, crowd in ann.objects.get((image_id, c), ()):
                if not crowd:
                    out.append(box)
                    if len(out) >= MAX_OTHERS:
                        return out
        return out

    def evaluation_data(self) -> dict[str, Any]:
        """Unqueried ground truth, LVIS per-image lists and notes, from the same read as the index."""
        self.index()
        key = self.cache_key()
        if key not in _EVAL_DATA:  # the index was cached before this module's side data (not expected)
            self.read_index()
        return _EVAL_DATA[key]

    def notes(self) -> dict[str, Any]:
        return dict(self.evaluation_data()["notes"])

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        image = ImageRef.from_path(str(self.image_root() / entry["image"]), size=tuple(entry["size"]))  # type: ignore[arg-type]
        return Sample(id=entry["id"], images=(image,),
                      fields={"category": entry["category"], "others": entry.get("others", [])},
                      target=[list(b) for b in entry["boxes"]], metadata=dict(entry.get("metadata", {})))

    # ----- the open-ended form ----------------------------------------------------------------
    def stem(self, sample, conv):
        return f"Where are all objects of the category '{sample.fields['category']}'?"

    def question(self, sample, conv):
        # Visual-RFT's prompt (coco_evaluation/Qwen2_VL_coco_infere.py) without its
        # <think>/<answer> sentence (the harness adds the output format) and with the
        # model family's coordinate space instead of "between 0 and 1000, integer"
        category = sample.fields["category"]
        return (f"Detect all objects belonging to the category '{category}' in the image, and provide the bounding "
                f"boxes (in {conv.describe_space()}) and confidence (between 0 and 1, with two decimal places).\n"
                f"If no object belonging to the category '{category}' in the image, return 'No Objects'.\n"
                "The output answer format should be as follows:\n"
                "[{'Position': [x1, y1, x2, y2], 'Confidence': number}, ...]\n"
                "Please strictly follow the format.")

    def _write(self, boxes, sample, conv) -> str:
        if not boxes:
            return "No Objects"
        size = sample.images[0].size
        return "[" + ", ".join(f"{{'Position': {format_box(conv.from_pixels(tuple(b), size))}, 'Confidence': 1.0}}"
                               for b in boxes) + "]"

    def answer_text(self, sample, conv):
        return self._write(sample.target, sample, conv)

    def parse_open(self, answer, sample, conv, profile) -> Parsed:
        value, failure = read_detections(answer, sample.images[0].size, conv, profile)
        return Parsed(answer, value) if failure is None else Parsed(answer, failure=failure)

    def score_open(self, value, sample, profile):
        ranked = sorted(value, key=lambda d: -d[4])  # stable: answer order among equal scores
        return detection_scores([tuple(d[:4]) for d in ranked], [tuple(b) for b in sample.target], profile)

    def wrong_answers(self, sample, conv, rng, k):
        """Deterministic distractors: other objects' boxes, a missed or an extra instance,
        'No Objects' when there are objects, then random boxes overlapping no target."""
        gold = self.answer_text(sample, conv)
        target = [list(b) for b in sample.target]
        others = [list(b) for b in sample.fields.get("others", [])]
        rng.shuffle(others)
        candidates: list[list] = []
        if target:
            candidates.append([])
            if len(target) > 1:
                candidates.append(target[:-1])
        if others:
            candidates.append(others[:1])
            candidates.append(target + others[:1])
            candidates.extend([b] for b in others[1:])
        out: list[str] = []
        for cand in candidates:
            text = self._write(cand, sample, conv)
            if text != gold and text not in out:
                out.append(text)
        w, h = sample.images[0].size
        tries = 0
        while len(out) < k:
            tries += 1
            bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.5) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = [x, y, x + bw, y + bh]
            text = self._write([b], sample, conv)
            if ((all(iou(tuple(b), tuple(g)) < 0.3 for g in target) or tries > 1000)
                    and text != gold and text not in out):
                out.append(text)
        return out[:k]

    # ----- corpus metrics -----------------------------------------------------------------------
    def corpus_metrics(self, records, profile):
        """mAP (IoU 0.50:0.95), mAP50 and AP per selected category (``ap_<name>``), by
        pycocotools' COCOeval on the real image and category ids (LVIS: its federated
        rules). Unqueried ground truth (existence-map protocol) counts as missed."""

        if isinstance(records, Resample) and records.intact():
            ev = records.cache.get("detection_category_eval")
            if ev is None:
                ev = records.cache["detection_category_eval"] = self._category_eval(records.base)
            return ev.resampled(records.indices)
        return self._category_eval(records).resampled()

    def _category_eval(self, records):
        from harness.detection_map import CategoryEval

        extra = self.evaluation_data()
        by_id = {e["id"]: e for e in self.index()}
        units = []
        for rec in records:
            entry = by_id.get(rec.get("sample_id"))
            if entry is None:
                raise UsageError(f"{self.name}: record for sample {rec.get('sample_id')!r} is not in this split "
                                 "(records from another data version or query protocol?)")
            parsed = rec.get("parsed")
            dets = parsed if rec.get("failure") is None and isinstance(parsed, list) else []
            units.append({"image_id": entry["image_id"], "category_id": entry["category_id"], "gt": entry["boxes"],
                          "gt_area": entry["areas"], "crowd": entry["crowd"], "dets": dets})
        fixed = extra["unqueried"]
        return CategoryEval(units + fixed, extra["categories"], lvis=extra["lvis"], n_fixed=len(fixed))


def read_detections(answer: str, size: tuple[int, int], conv, profile) -> tuple[list[list[float]] | None, str | None]:
    """An answer's detections as ``[x1, y1, x2, y2, score]`` in original pixels, in answer
    order, or (None, why not). The profile decides the parser (``det_format``), the box
    space, corner order and clipping (``answer_box_to_pixels``), duplicates (``det_dedup``)
    and confidences (``det_confidence``: clip to [0, 1] or keep). A box with a NaN or
    infinite coordinate is dropped; a detection without a usable confidence (missing,
    text, NaN, infinite) scores :func:`harness.boxes.rank_score` of its position.
    'No Objects' (any case), an empty list, or nothing readable under Visual-RFT's parser
    when the text says no object, is a valid empty answer; other text without boxes is a
    parse failure.
    """
    if size[0] <= 0 or size[1] <= 0:
        return None, "image size unknown (unreadable image)"
    raw = parse_detections_visual_rft(answer) if profile.det_format == "visual_rft" else parse_detections(answer)
    if not raw:
        # Visual-RFT's script records nothing for an answer it cannot read: no detections
        if raw is not None or profile.det_format == "visual_rft" or "no object" in answer.lower():
            return [], None
        return None, "no box found"
    out: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    for rank, det in enumerate(raw):
        if profile.det_dedup:
            if det.box in seen:
                continue
            seen.add(det.box)
        box = answer_box_to_pixels(det.box, size, conv, profile)
        if box is None:
            continue
        score = det.confidence
        if score is None or not math.isfinite(score):
            score = rank_score(rank)
        elif profile.det_confidence == "clip":
            score = min(1.0, max(0.0, score))
        out.append([*box, float(score)])
    return out, None
