"""LVIS v1 detection on COCO 2017 images: Visual-RFT's 13 rare categories (open vocabulary)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.data import DatasetSpec, require_file
from harness.registry import define_task
from tasks.detection.base import DetectionTask

LVIS = DatasetSpec(
    name="LVIS v1", directory="lvis",
    source="https://www.lvisdataset.org/dataset (lvis_v1_train.json.zip, lvis_v1_val.json.zip; images are COCO 2017)",
    layout="lvis/lvis_v1_val.json and lvis/lvis_v1_train.json (or under lvis/annotations/, Visual-RFT's layout); "
           "images <data_root>/coco/train2017/ and <data_root>/coco/val2017/ as named by each image's coco_url "
           "(or --data_args coco2017_images=DIR holding train2017/ and val2017/)",
    image_option="coco2017_images", images="../coco")

# Visual-RFT's 13 rare categories (lvis_evaluation/Qwen2_VL_lvis_infere.py, selected_cate)
LVIS_RARE13 = ("casserole", "die", "egg_roll", "futon", "garbage", "handsaw", "hippopotamus", "kitchen_table",
               "mallet", "omelet", "shot_glass", "stepladder", "sugar_bowl")


class LvisDetection(DetectionTask):
    dataset = LVIS
    lvis = True
    split = "val"

    def image_root(self) -> Path:
        # <data_root>/coco, written without the "lvis/.." the spec's default goes through
        return Path(os.path.normpath(self.dataset.image_dir()))

    def annotation_file(self) -> Path:
        base = self.dataset.path()
        name = f"lvis_v1_{self.split}.json"
        for candidate in (base / name, base / "annotations" / name):
            if candidate.is_file():
                return candidate
        return require_file(base / name, self.dataset.name, f"{self.split} annotations")


def lvis_task(name: str, role: str, description: str, split: str, categories: tuple[str, ...], **attrs) -> type:
    options = {"queries_option": "lvis_det_queries"} if split == "val" else {}
    return define_task(attrs.pop("base", LvisDetection), name, role, description, split=split,
                       categories=categories, **options, **attrs)


lvis_task("lvis_rare13_val", "ood", "LVIS v1 val, Visual-RFT's 13 rare categories (federated LVIS AP)", "val",
          LVIS_RARE13)
