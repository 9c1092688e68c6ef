"""Tiny RefCOCO-family fixtures in the upstream formats (lichengunc/refer; VLM-R1 and Curr-ReFT rows).

``write_refer`` writes ``<root>/refer/<dataset>/instances.json`` and ``refs(<split_by>).p``
(pickle protocol 2 of plain dicts and lists, as refer's Python 2 files are) and tiny
COCO-named JPEGs whose sizes match instances.json. Each writer returns what it wrote so
tests can assert exact values.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from PIL import Image

CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 18, "name": "dog", "supercategory": "animal"},
              {"id": 37, "name": "sports ball", "supercategory": "sports"}]

# image id -> (width, height)
IMAGES = {581857: (64, 48), 100: (40, 30), 200: (32, 24), 300: (48, 32), 400: (36, 36)}

# ann id -> (image id, category id, bbox xywh); file order as written
ANNOTATIONS = {
    16: (581857, 1, [10.5, 4.0, 20.0, 30.25]),
    17: (581857, 18, [40.0, 20.0, 12.0, 10.0]),
    18: (581857, 3, [0.0, 0.0, 8.0, 6.0]),  # referred by no ref: still a distractor
    21: (100, 3, [5.0, 5.0, 20.0, 10.0]),
    22: (100, 37, [30.0, 2.0, 6.0, 6.0]),
    31: (200, 1, [2.0, 2.0, 10.0, 15.0]),
    32: (200, 1, [15.0, 3.0, 10.0, 15.0]),
    41: (300, 1, [4.0, 4.0, 20.0, 20.0]),
    51: (400, 18, [6.0, 8.0, 14.0, 12.0]),
}

# (ref_id, ann_id, split per split_by, [(sent_id, sent, raw)]) in pickle order (not sorted on purpose)
REFS = [
    (5, 17, {"unc": "train", "umd": "train", "google": "train"},
     [(12, "dog on right", "Dog on right."), (11, "brown dog", "brown DOG")]),
    (2, 16, {"unc": "train", "umd": "train", "google": "train"}, [(3, "man in red", "Man in red")]),
    (7, 21, {"unc": "train", "umd": "train", "google": "train"}, [(20, "white car", "white car!")]),
    (9, 31, {"unc": "val", "umd": "val", "google": "val"},
     [(30, "left guy", "Left guy"), (31, "person on left", "person on left")]),
    (10, 32, {"unc": "val", "umd": "val", "google": "val"}, [(32, "right guy", "right guy")]),
    (11, 41, {"unc": "testA", "umd": "test", "google": "val"}, [(40, "woman", "Woman")]),
    (12, 51, {"unc": "testB", "umd": "test", "google": "val"}, [(50, "small dog", "Small dog")]),
]


def coco_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def xyxy(b: list[float]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def write_images(image_dir: Path, sizes: dict[int, tuple[int, int]] = IMAGES) -> list[Path]:
    image_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (image_id, size) in enumerate(sizes.items()):
        path = image_dir / coco_name(image_id)
        Image.new("RGB", size, (40 * i % 256, 90, 160)).save(path, "JPEG")
        out.append(path)
    return out


def instances_json() -> dict[str, Any]:
    return {
        "info": {"description": "fixture"},
        "images": [{"id": i, "file_name": coco_name(i), "width": w, "height": h} for i, (w, h) in IMAGES.items()],
        "annotations": [{"id": a, "image_id": img, "category_id": cat, "bbox": list(b), "area": b[2] * b[3],
                         "iscrowd": 0, "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3]]]}
                        for a, (img, cat, b) in ANNOTATIONS.items()],
        "categories": CATEGORIES,
    }


def refs_list(split_by: str = "unc") -> list[dict[str, Any]]:
    out = []
    for ref_id, ann_id, splits, sents in REFS:
        image_id, cat, _ = ANNOTATIONS[ann_id]
        out.append({
            "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": cat, "split": splits[split_by],
            # refer's own file_name carries the ann id and names no file on disk
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sent_ids": [s for s, _, _ in sents],
            "sentences": [{"sent_id": s, "sent": sent, "raw": raw, "tokens": sent.split()} for s, sent, raw in sents],
        })
    return out


def write_refer(root: Path, dataset: str = "refcoco", split_by: str = "unc", images: Path | None = None,
                refs: list | None = None, instances: dict | None = None) -> dict[str, Any]:
    """The refer files for ``dataset`` under ``root/refer/<dataset>`` and images under
    ``images`` (default ``root/coco/train2014``). Returns the expected samples per split."""
    base = root / "refer" / dataset
    base.mkdir(parents=True, exist_ok=True)
    (base / "instances.json").write_text(json.dumps(instances if instances is not None else instances_json()))
    with open(base / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs if refs is not None else refs_list(split_by), f, protocol=2)
    write_images(images if images is not None else root / "coco" / "train2014")
    return expected_samples(split_by)


def expected_samples(split_by: str = "unc") -> dict[str, list[dict[str, Any]]]:
    names = {c["id"]: c["name"] for c in CATEGORIES}
    out: dict[str, list[dict[str, Any]]] = {}
    for ref_id, ann_id, splits, sents in REFS:
        image_id, cat, bbox = ANNOTATIONS[ann_id]
        others = [xyxy(b) for a, (img, _, b) in ANNOTATIONS.items() if img == image_id and a != ann_id]
        for sent_id, sent, _ in sents:
            out.setdefault(splits[split_by], []).append({
                "id": str(sent_id), "expression": sent, "image": coco_name(image_id), "size": IMAGES[image_id],
                "box": xyxy(bbox), "others": others, "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id,
                "category": names[cat]})
    return out


def expected_categories(split: str) -> list[tuple[str, list[str]]]:
    """(image id, sorted category names) per image of a unc split, in order of first ref."""
    names = {c["id"]: c["name"] for c in CATEGORIES}
    out: list[tuple[str, list[str]]] = []
    for _, ann_id, splits, _ in REFS:
        image_id = ANNOTATIONS[ann_id][0]
        if splits["unc"] == split and str(image_id) not in [i for i, _ in out]:
            labels = sorted({names[c] for img, c, _ in ANNOTATIONS.values() if img == image_id})
            out.append((str(image_id), labels))
    return out


# ----- rows files -------------------------------------------------------------------------------

VLMR1_PROBLEM = "Please provide the bounding box coordinate of the region this sentence describes: {}."


def vlmr1_rows() -> list[dict[str, Any]]:
    """VLM-R1 ``rec_jsons_processed`` rows: image relative to the COCO folder, pixel xyxy solution."""
    rows = []
    for image_id, expr, ann_id in ((200, "left guy", 31), (581857, "man in red", 16), (100, "white car", 21)):
        rows.append({"image": f"train2014/{coco_name(image_id)}", "problem": VLMR1_PROBLEM.format(expr),
                     "solution": xyxy(ANNOTATIONS[ann_id][2]), "normal_caption": expr})
    return rows


def write_vlmr1(root: Path, stem: str = "refcoco_val", images: bool = True) -> list[dict[str, Any]]:
    """``root/vlm_r1/rec_jsons_processed/<stem>.json`` and images under ``root/coco/train2014``."""
    rows = vlmr1_rows()
    path = root / "vlm_r1" / "rec_jsons_processed" / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    if images:
        write_images(root / "coco" / "train2014")
    return [{"id": f"{stem}:{i}", "image": r["image"], "expression": r["normal_caption"], "box": r["solution"],
             "size": IMAGES[int(r["image"][-16:-4])]} for i, r in enumerate(rows)]


def write_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """A ``.jsonl`` mixing VLM-R1 ``grpo_jsonl`` rows (with ``id``) and Curr-ReFT rows (without),
    with a blank line. Images are relative to a COCO folder holding ``train2014/``."""
    lines = [
        json.dumps({"id": 7, "image": f"train2014/{coco_name(100)}", "conversations": [
            {"from": "human", "value": "<image>" + VLMR1_PROBLEM.format("white car")},
            {"from": "gpt", "value": "<answer>[5, 5, 25, 15]</answer>"}]}),
        "",
        json.dumps({"problem": VLMR1_PROBLEM.format("dog on right"), "task": "detection",
                    "solution": "<thinking>the dog</thinking><answer>[40.0, 20.0, 52.0, 30.0]</answer>",
                    "image": f"train2014/{coco_name(581857)}"}),
        json.dumps({"problem": "Find the small dog.", "solution": "<answer>[6, 8, 20, 20]</answer>",
                    "image": [f"train2014/{coco_name(400)}"]}),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return [
        {"id": "7", "expression": "white car", "box": [5.0, 5.0, 25.0, 15.0], "image": f"train2014/{coco_name(100)}"},
        {"id": f"{path.stem}:3", "expression": "dog on right", "box": [40.0, 20.0, 52.0, 30.0],
         "image": f"train2014/{coco_name(581857)}"},
        {"id": f"{path.stem}:4", "expression": "Find the small dog.", "box": [6.0, 8.0, 20.0, 20.0],
         "image": f"train2014/{coco_name(400)}"},
    ]


class FileMaker:
    """A pickled object whose unpickling would create a file: the restricted unpickler must refuse it
    before calling anything."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))
