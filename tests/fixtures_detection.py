"""Tiny COCO 2017 instances and LVIS v1 fixtures in their upstream formats, plus Visual-RFT's
existence maps.

``write_coco`` writes ``<root>/coco/annotations/instances_<split>.json`` (the 80 COCO
categories with their real ids, images, annotations with ``bbox`` [x, y, w, h], ``area``,
``iscrowd``, ``segmentation``) and tiny JPEGs under ``<root>/coco/<split>/``.
``write_lvis`` writes ``<root>/lvis/lvis_v1_<split>.json`` (categories with
``frequency``; images with ``coco_url``, ``neg_category_ids``,
``not_exhaustive_category_ids``; annotations without ``iscrowd``), whose images are COCO
2017 files (written under ``<root>/coco/`` too). Each returns what it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from tasks.detection.coco import COCO_CATEGORIES

# the real COCO ids of the 80 categories, in order (1..90 with gaps)
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
            34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
            62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
COCO_CAT_ID = dict(zip(COCO_CATEGORIES, COCO_IDS))

# image id -> (width, height), in file order (not sorted on purpose)
COCO_IMAGES = {
    "val2017": {397133: (64, 48), 37777: (48, 40), 252219: (40, 32), 87038: (32, 32)},
    "train2017": {9: (40, 30), 25: (32, 24), 30: (48, 32), 34: (40, 40), 36: (32, 32), 42: (40, 30)},
}
# (image id, category name, [x, y, w, h], iscrowd) in file order
COCO_ANNOTATIONS = {
    "val2017": [
        (397133, "cat", [4, 4, 20, 16], 0),
        (397133, "person", [2, 20, 10, 20], 0),
        (397133, "cat", [30, 10, 16, 20], 0),
        (397133, "person", [40, 2, 20, 40], 1),
        (37777, "mouse", [5, 5, 10, 8], 0),
        (37777, "car", [20, 10, 20, 20], 0),
        (252219, "person", [0, 0, 15, 30], 0),
        (252219, "dog", [18, 4, 20, 20], 0),
        (87038, "bus", [2, 2, 28, 20], 0),
        (87038, "person", [0, 20, 10, 10], 1),  # a category present only as a crowd region
    ],
    "train2017": [
        (9, "bus", [1, 1, 30, 20], 0), (9, "person", [2, 2, 5, 10], 0),
        (25, "dog", [3, 3, 20, 15], 0), (25, "cat", [1, 1, 6, 6], 0),
        (30, "bus", [5, 5, 30, 20], 0), (30, "car", [0, 0, 8, 8], 0),
        (34, "cat", [4, 4, 20, 20], 0), (34, "bed", [0, 10, 40, 30], 0),
        (36, "toilet", [8, 8, 12, 16], 0), (36, "dog", [0, 0, 10, 10], 1),
        (42, "train", [0, 5, 40, 20], 0), (42, "stop sign", [30, 1, 8, 8], 0),
    ],
}


def _jpeg(path: Path, size: tuple[int, int], shade: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 90, 60)).save(path, "JPEG")


def coco_file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def write_coco(root: Path, split: str = "val2017") -> dict[str, Any]:
    base = Path(root) / "coco"
    images = [{"id": i, "file_name": coco_file_name(i), "width": w, "height": h, "license": 1,
               "coco_url": f"http://images.cocodataset.org/{split}/{coco_file_name(i)}", "date_captured": ""}
              for i, (w, h) in COCO_IMAGES[split].items()]
    annotations = []
    for n, (image_id, name, (x, y, w, h), crowd) in enumerate(COCO_ANNOTATIONS[split], 1):
        annotations.append({"id": 1000 + n, "image_id": image_id, "category_id": COCO_CAT_ID[name],
                            "bbox": [x, y, w, h], "area": float(w * h) * 0.8, "iscrowd": crowd,
                            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    categories = [{"id": COCO_CAT_ID[n], "name": n, "supercategory": "thing"} for n in COCO_CATEGORIES]
    path = base / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {"year": 2017}, "licenses": [], "images": images,
                                "annotations": annotations, "categories": categories}))
    for i, size in COCO_IMAGES[split].items():
        _jpeg(base / split / coco_file_name(i), size)
    return {"path": path, "images": images, "annotations": annotations}


# LVIS: category id -> (name, frequency); ids are the fixture's own
LVIS_CATEGORIES = {
    1: ("casserole", "r"), 2: ("die", "r"), 3: ("egg_roll", "r"), 4: ("futon", "r"), 5: ("garbage", "r"),
    6: ("handsaw", "r"), 7: ("hippopotamus", "r"), 8: ("kitchen_table", "r"), 9: ("mallet", "r"),
    10: ("omelet", "r"), 11: ("shot_glass", "r"), 12: ("stepladder", "r"), 13: ("sugar_bowl", "r"),
    14: ("horse_buggy", "r"), 15: ("papaya", "r"), 16: ("person", "f"), 17: ("cup", "c"),
}
LVIS_ID = {name: cid for cid, (name, _) in LVIS_CATEGORIES.items()}
# image id -> (coco split, width, height, neg category names, not-exhaustive category names)
LVIS_IMAGES = {
    "val": {
        397133: ("val2017", 64, 48, ["mallet", "egg_roll"], ["kitchen_table"]),
        9: ("train2017", 40, 30, ["casserole"], []),
        37777: ("val2017", 48, 40, [], []),
    },
    "train": {
        25: ("train2017", 32, 24, [], []), 30: ("train2017", 48, 32, ["papaya"], []),
        34: ("train2017", 40, 40, [], []),
    },
}
LVIS_ANNOTATIONS = {
    "val": [
        (397133, "casserole", [4, 4, 20, 16]),
        (397133, "kitchen_table", [0, 24, 60, 20]),
        (397133, "kitchen_table", [2, 2, 10, 8]),
        (397133, "person", [2, 20, 10, 20]),
        (9, "die", [10, 10, 4, 4]),
        (9, "omelet", [1, 1, 20, 12]),
        (37777, "die", [30, 5, 5, 5]),
        (37777, "sugar_bowl", [5, 20, 12, 10]),
    ],
    "train": [
        (25, "die", [2, 2, 5, 5]), (30, "horse_buggy", [1, 1, 40, 20]), (30, "die", [40, 20, 4, 4]),
        (34, "stepladder", [5, 5, 10, 30]),
    ],
}


def write_lvis(root: Path, split: str = "val", annotations_dir: bool = False) -> dict[str, Any]:
    base = Path(root) / "lvis"
    images = []
    for i, (coco_split, w, h, neg, nel) in LVIS_IMAGES[split].items():
        images.append({"id": i, "width": w, "height": h, "license": 1, "date_captured": "", "flickr_url": "",
                       "coco_url": f"http://images.cocodataset.org/{coco_split}/{coco_file_name(i)}",
                       "neg_category_ids": [LVIS_ID[n] for n in neg],
                       "not_exhaustive_category_ids": [LVIS_ID[n] for n in nel]})
        _jpeg(Path(root) / "coco" / coco_split / coco_file_name(i), (w, h), shade=200)
    annotations = []
    for n, (image_id, name, (x, y, w, h)) in enumerate(LVIS_ANNOTATIONS[split], 1):
        annotations.append({"id": n, "image_id": image_id, "category_id": LVIS_ID[name], "bbox": [x, y, w, h],
                            "area": float(w * h), "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    categories = [{"id": cid, "name": name, "frequency": freq, "synset": f"{name}.n.01", "synonyms": [name],
                   "def": "", "image_count": 1, "instance_count": 1} for cid, (name, freq) in LVIS_CATEGORIES.items()]
    path = base / ("annotations" if annotations_dir else "") / f"lvis_v1_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations,
                                "categories": categories}))
    return {"path": path, "images": images, "annotations": annotations}


def write_existence_map(path: Path, mapping: dict[int, list[str]]) -> Path:
    """Visual-RFT's exist_map_*_baseline.json: ``{"<image id>": [category names]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(k): v for k, v in mapping.items()}, indent=4))
    return path
