"""Tiny Ref-L4, LISA ReasonSeg and RefGTA datasets in their upstream formats.

Each writer takes a data root, writes its dataset under the directory the loader expects,
and returns what a correct loader must produce (ids in order, expressions, xyxy boxes,
sizes), so tests can assert exact values. Other tests (CLI) may reuse them.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from PIL import Image


def tiny_image(path: Path, size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (120, 80, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


# ----- Ref-L4 ------------------------------------------------------------------------------------

def refl4_rows() -> dict[str, list[dict[str, Any]]]:
    """Parquet rows as the HF dataset has them (columns and types of ref-l4-{val,test}.parquet)."""

    def row(id_, caption, bbox, image_id, file_name, split, w=64, h=48, cat="o365_1", rewrite=False):
        return {"id": id_, "caption": caption, "bbox": [float(v) for v in bbox], "bbox_area": float(bbox[2] * bbox[3]),
                "bbox_id": f"{image_id.split('_')[0]}_{id_ + 1000}", "ori_category_id": cat, "image_id": image_id,
                "height": h, "width": w, "file_name": file_name, "is_rewrite": rewrite, "split": split}

    return {
        "val": [
            row(7, "The man on the motorcycle closest to the camera, wearing a red helmet.", [4.5, 6.0, 20.0, 30.0],
                "coco_128974", "COCO_train2014_000000128974.jpg", "val", cat="refcoco_1"),
            row(3, "A small blue cup standing on the left edge of the wooden table.", [30.0, 10.0, 16.0, 12.0],
                "o365_55", "objects365_v2_00000055.jpg", "val", rewrite=True),
            row(12, "The second motorcycle, partly hidden behind the first one.", [26.0, 8.0, 30.0, 34.0],
                "coco_128974", "COCO_train2014_000000128974.jpg", "val", cat="refcoco_4"),
            row(5, "The round clock hanging above the doorway of the shop.", [10.0, 2.0, 12.0, 12.0],
                "o365_56", "objects365_v2_00000056.jpg", "val", w=40, h=40),
        ],
        "test": [
            row(40, "A green umbrella held by the woman crossing the street.", [8.0, 4.0, 24.0, 20.0],
                "o365_90", "objects365_v2_00000090.jpg", "test"),
            row(41, "The white dog lying on the rug next to the sofa.", [1.0, 20.0, 30.0, 20.0],
                "coco_77", "COCO_train2014_000000000077.jpg", "test", cat="refcoco_18"),
        ],
    }


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def write_refl4(root: Path, images: bool = True) -> dict[str, Any]:
    """``<root>/ref-l4/ref-l4-{val,test}.parquet`` and ``images/`` (images.tar.gz extracted)."""
    base = Path(root) / "ref-l4"
    rows = refl4_rows()
    for split, split_rows in rows.items():
        write_parquet(base / f"ref-l4-{split}.parquet", split_rows)
        if images:
            for r in split_rows:
                tiny_image(base / "images" / r["file_name"], (r["width"], r["height"]))
    expected = {}
    for split, split_rows in rows.items():
        expected[split] = [{"id": str(r["id"]), "image": r["file_name"], "size": [r["width"], r["height"]],
                            "expression": r["caption"], "coco": r["image_id"].startswith("coco_"),
                            "box": [r["bbox"][0], r["bbox"][1],
                                    r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]}
                           for r in split_rows]
    return {"dir": base, "rows": rows, "expected": expected}


# ----- LISA ReasonSeg ----------------------------------------------------------------------------

def lisa_annotations() -> dict[str, dict[str, dict[str, Any]]]:
    """split -> image stem -> the LabelMe-style JSON LISA ships."""
    return {
        "val": {
            "1234_abc": {
                "text": ["What part of the bicycle lets the rider stop it safely?"],
                "is_sentence": True,
                "shapes": [
                    {"label": "target", "points": [[10, 12], [20.5, 12], [20.5, 30], [10, 30]], "group_id": None,
                     "shape_type": "polygon", "flags": {}},
                    {"label": "ignore", "points": [[0, 0], [63, 0], [63, 5]], "group_id": None,
                     "shape_type": "polygon", "flags": {}},
                    {"label": "target", "points": [[30, 8], [44, 10], [40, 25.25]], "group_id": None,
                     "shape_type": "polygon", "flags": {}},
                ],
                "imagePath": "1234_abc.jpg", "imageData": None, "imageHeight": 48, "imageWidth": 64,
            },
            "0007_xyz": {
                "text": ["the thing you would sit on to rest", "something to sit on"],
                "is_sentence": False,
                "shapes": [{"label": "target", "points": [[2, 3], [30, 3], [30, 20], [2, 20]]}],
            },
        },
        "test": {
            "9_q": {
                "text": ["Which object would keep you dry in the rain?"],
                "is_sentence": True,
                "shapes": [
                    {"label": "flag", "points": [[1, 1], [2, 2]]},
                    {"label": "target", "points": [[5, 6], [25, 6], [25, 40], [5, 40]]},
                ],
                "imageHeight": 48, "imageWidth": 64,
            },
        },
    }


LISA_SIZES = {"1234_abc": (64, 48), "0007_xyz": (40, 32), "9_q": (64, 48)}


def write_lisa(root: Path, encoding: str = "utf-8") -> dict[str, Any]:
    """``<root>/lisa/ReasonSeg/{val,test}/<stem>.jpg`` + ``<stem>.json``."""
    base = Path(root) / "lisa" / "ReasonSeg"
    annotations = lisa_annotations()
    for split, items in annotations.items():
        for stem, anno in items.items():
            tiny_image(base / split / f"{stem}.jpg", LISA_SIZES[stem])
            (base / split / f"{stem}.json").write_text(json.dumps(anno, indent=2), encoding=encoding)
    # a stray annotation without its image: upstream lists images, so it is not a sample
    (base / "val" / "orphan.json").write_text(json.dumps(annotations["val"]["0007_xyz"]))
    expected = {
        "val": [  # sorted by file name
            {"id": "val/0007_xyz", "image": "val/0007_xyz.jpg", "size": (40, 32),
             "expression": "the thing you would sit on to rest", "box": [2.0, 3.0, 30.0, 20.0], "n_targets": 1},
            {"id": "val/1234_abc", "image": "val/1234_abc.jpg", "size": (64, 48),
             "expression": "What part of the bicycle lets the rider stop it safely?",
             "box": [10.0, 8.0, 44.0, 30.0], "n_targets": 2},  # union of both targets, not the ignore shape
        ],
        "test": [
            {"id": "test/9_q", "image": "test/9_q.jpg", "size": (64, 48),
             "expression": "Which object would keep you dry in the rain?", "box": [5.0, 6.0, 25.0, 40.0],
             "n_targets": 1},
        ],
    }
    return {"dir": base, "annotations": annotations, "expected": expected}


# ----- RefGTA ------------------------------------------------------------------------------------

def refgta_files() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(instances.json, refs(utokyo).p) as mikittt/easy-to-understand-REG's refer2 reads them."""
    instances = {
        "images": [
            {"id": 11640, "file_name": "dont_specify/final/GTA_CvMod_2018-04-25_18-07-48_final_0000011640.png",
             "width": 64, "height": 48},
            {"id": 22, "file_name": "black_wearing/final/GTA_CvMod_2018-05-01_10-00-00_final_0000000022.png",
             "width": 48, "height": 40},
        ],
        "annotations": [
            {"id": 501, "image_id": 11640, "bbox": [4.0, 10.0, 12.0, 30.0], "category_id": 1, "area": 360.0},
            {"id": 502, "image_id": 11640, "bbox": [30.0, 8.0, 14.0, 34.0], "category_id": 1, "area": 476.0},
            {"id": 503, "image_id": 22, "bbox": [10.5, 5.0, 20.0, 30.0], "category_id": 1, "area": 600.0},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }

    def sent(sid, text):
        return {"sent_id": sid, "sent": text, "raw": text.capitalize() + ".", "tokens": text.split(),
                "info": [{"if_true": 1, "time": 2300}]}

    refs = [
        {"ref_id": 1, "ann_id": 501, "image_id": 11640, "split": "train", "category_id": 1,
         "file_name": "GTA_0000011640_501.png", "sent_ids": [10], "sentences": [sent(10, "a man in a blue shirt")]},
        {"ref_id": 2, "ann_id": 502, "image_id": 11640, "split": "test", "category_id": 1,
         "file_name": "GTA_0000011640_502.png", "sent_ids": [21, 20],
         "sentences": [sent(21, "the man walking on the right"), sent(20, "a tall man near the car")]},
        {"ref_id": 3, "ann_id": 503, "image_id": 22, "split": "val", "category_id": 1,
         "file_name": "GTA_0000000022_503.png", "sent_ids": [30], "sentences": [sent(30, "woman in black")]},
        {"ref_id": 4, "ann_id": 501, "image_id": 11640, "split": "test", "category_id": 1,
         "file_name": "GTA_0000011640_501.png", "sent_ids": [40], "sentences": [sent(40, "person on the left")]},
    ]
    return instances, refs


def write_refgta(root: Path, images: bool = True) -> dict[str, Any]:
    """``<root>/refgta/instances.json``, ``refs(utokyo).p`` (pickle protocol 2) and the GTA images."""
    base = Path(root) / "refgta"
    base.mkdir(parents=True, exist_ok=True)
    instances, refs = refgta_files()
    (base / "instances.json").write_text(json.dumps(instances))
    with open(base / "refs(utokyo).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    if images:
        for img in instances["images"]:
            tiny_image(base / "gtav_cv_mod_data" / img["file_name"], (img["width"], img["height"]))
    expected = {
        "test": [
            {"id": "21", "expression": "the man walking on the right", "box": [30.0, 8.0, 44.0, 42.0],
             "image": instances["images"][0]["file_name"], "size": (64, 48), "others": [[4.0, 10.0, 16.0, 40.0]]},
            {"id": "20", "expression": "a tall man near the car", "box": [30.0, 8.0, 44.0, 42.0],
             "image": instances["images"][0]["file_name"], "size": (64, 48), "others": [[4.0, 10.0, 16.0, 40.0]]},
            {"id": "40", "expression": "person on the left", "box": [4.0, 10.0, 16.0, 40.0],
             "image": instances["images"][0]["file_name"], "size": (64, 48), "others": [[30.0, 8.0, 44.0, 42.0]]},
        ],
        "val": [
            {"id": "30", "expression": "woman in black", "box": [10.5, 5.0, 30.5, 35.0],
             "image": instances["images"][1]["file_name"], "size": (48, 40), "others": []},
        ],
    }
    return {"dir": base, "instances": instances, "refs": refs, "expected": expected}
