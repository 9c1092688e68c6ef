"""COCO / LVIS open-vocabulary and few-shot detection; importing registers their tasks and suites."""

from harness.registry import SUITES
from harness.suite import Suite
from tasks.detection import coco, fewshot, lvis  # noqa: F401

SUITES.register("coco_ov", Suite(
    "coco_ov", "coco_ov_base_train", ("coco_ov_base_val",), ("coco_ov_novel_val", "lvis_rare13_val"),
    "Open-vocabulary detection (Visual-RFT): COCO 65 base categories -> 15 novel categories; LVIS 13 rare as a "
    "second OOD"))
