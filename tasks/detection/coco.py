"""COCO 2017 detection: the open-vocabulary split (65 base / 15 novel categories) of Visual-RFT."""

from __future__ import annotations

from pathlib import Path

from harness.data import DatasetSpec, require_file
from harness.registry import define_task
from tasks.detection.base import DetectionTask

COCO = DatasetSpec(
    name="COCO 2017 detection", directory="coco",
    source="https://cocodataset.org/#download (2017 Train/Val images, 2017 Train/Val annotations)",
    layout="coco/annotations/instances_train2017.json, coco/annotations/instances_val2017.json, "
           "coco/train2017/<file_name>.jpg, coco/val2017/<file_name>.jpg "
           "(or --data_args coco2017_images=DIR holding train2017/ and val2017/)",
    image_option="coco2017_images", images=".")

# The 80 COCO categories in id order (instances_*2017.json 'categories').
COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
# Visual-RFT's 15 novel categories (coco_evaluation/Qwen2_VL_coco_infere.py, selected_cate)
COCO_NOVEL = ("mouse", "fork", "hot dog", "cat", "airplane", "suitcase", "parking meter", "sandwich", "train",
              "hair drier", "toilet", "toaster", "snowboard", "frisbee", "bear")
COCO_BASE = tuple(c for c in COCO_CATEGORIES if c not in COCO_NOVEL)
assert len(COCO_CATEGORIES) == 80 and len(COCO_BASE) == 65 and set(COCO_NOVEL) <= set(COCO_CATEGORIES)


class CocoDetection(DetectionTask):
    dataset = COCO
    split = "val2017"

    def annotation_file(self) -> Path:
        return require_file(self.dataset.path() / "annotations" / f"instances_{self.split}.json", self.dataset.name,
                            f"{self.split} annotations")


def coco_task(name: str, role: str, description: str, split: str, categories: tuple[str, ...], **attrs) -> type:
    # an existence map describes evaluation images: training splits always query ground truth
    options = {"queries_option": "coco_det_queries"} if split == "val2017" else {}
    return define_task(attrs.pop("base", CocoDetection), name, role, description, split=split,
                       categories=categories, **options, **attrs)


coco_task("coco_ov_base_train", "train", "COCO train2017, the 65 base categories (Visual-RFT OV training)",
          "train2017", COCO_BASE)
coco_task("coco_ov_base_val", "id", "COCO val2017, the 65 base categories", "val2017", COCO_BASE)
coco_task("coco_ov_novel_val", "ood", "COCO val2017, Visual-RFT's 15 novel categories", "val2017", COCO_NOVEL)
