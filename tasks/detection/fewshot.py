"""Few-shot detection as in Visual-RFT: COCO-8 (k = 1, 2, 4, 8, 16 images per category) and
LVIS-6 (the paper's "10-shot": every training image of each category, at most 10).

A k-shot training set draws, per category, k images of the training split that hold a
(non-crowd) object of it: the category's images (file order) are shuffled once with a
key of (seed, dataset, category) and the first k taken, so the sets are nested (the
2-shot set contains the 1-shot set). A sample is (drawn image, the category it was drawn
for): exactly k images per category; an image drawn for two categories is asked about
both. ``notes()`` records the seed, k, the drawn image ids per category and every
category with fewer than k images. Evaluation is the category's queries on the val split
(ground truth or an existence map, as every detection split).
"""

from __future__ import annotations

from typing import Any

from harness.registry import SUITES, TASK_GROUPS
from harness.suite import Suite
from harness.task import stable_rng
from tasks.detection.base import Annotations, DetectionTask
from tasks.detection.coco import CocoDetection, coco_task
from tasks.detection.lvis import LvisDetection, lvis_task

SEED = 0
# Visual-RFT's few-shot categories (the commented selected_cate lists of its eval scripts)
COCO8 = ("bus", "train", "fire hydrant", "stop sign", "cat", "dog", "bed", "toilet")
LVIS6 = ("horse_buggy", "die", "kitchen_table", "omelet", "papaya", "stepladder")
COCO8_SHOTS = (1, 2, 4, 8, 16)  # paper Table 3
LVIS6_SHOTS = (10,)  # paper Table 4: "between 1 and 10 images" per category, "approximated as a 10-shot setting"


class FewShotMixin:
    shots: int = 1

    def select_images(self: Any, ann: Annotations, category_ids: dict[int, str]) -> list[int]:
        drawn: dict[int, set[int]] = {}
        per_category: dict[str, list[int]] = {}
        short: dict[str, int] = {}
        order = {i: n for n, i in enumerate(ann.images)}
        for cat, name in sorted(category_ids.items()):
            pool = [i for i in ann.images if any(not crowd for _, _, crowd in ann.objects.get((i, cat), ()))]
            stable_rng(SEED, self.dataset.name, name).shuffle(pool)
            chosen = pool[:self.shots]
            if len(chosen) < self.shots:
                short[name] = len(chosen)
            per_category[name] = sorted(chosen, key=order.__getitem__)
            for i in chosen:
                drawn.setdefault(i, set()).add(cat)
        self._drawn = drawn
        self._fewshot_notes = {"seed": SEED, "shots": self.shots, "drawn_images": per_category,
                               "categories_short_of_k": short}
        return [i for i in ann.images if i in drawn]

    def ground_truth_queries(self: Any, image_id: int, annotated: list[int]) -> list[int]:
        return [c for c in annotated if c in self._drawn.get(image_id, ())]

    def extra_notes(self) -> dict[str, Any]:
        return dict(self._fewshot_notes)


class CocoFewShot(FewShotMixin, CocoDetection):
    pass


class LvisFewShot(FewShotMixin, LvisDetection):
    pass


coco_task("fewshot_det_coco8_val", "id", "COCO val2017, Visual-RFT's 8 few-shot categories", "val2017", COCO8)
for _k in COCO8_SHOTS:
    coco_task(f"fewshot_det_coco8_train_{_k}shot", "train",
              f"COCO train2017, {_k} image(s) per category of the 8 few-shot categories, seed {SEED}", "train2017",
              COCO8, base=CocoFewShot, shots=_k)
    SUITES.register(f"fewshot_det_coco8_{_k}shot", Suite(
        f"fewshot_det_coco8_{_k}shot", f"fewshot_det_coco8_train_{_k}shot", ("fewshot_det_coco8_val",), (),
        f"COCO-8 few-shot detection (Visual-RFT), {_k} image(s) per category; no OOD split"))

lvis_task("fewshot_det_lvis6_val", "id", "LVIS v1 val, Visual-RFT's 6 few-shot rare categories", "val", LVIS6)
for _k in LVIS6_SHOTS:
    lvis_task(f"fewshot_det_lvis6_train_{_k}shot", "train",
              f"LVIS v1 train, up to {_k} images per category of the 6 few-shot categories, seed {SEED}", "train",
              LVIS6, base=LvisFewShot, shots=_k)
    SUITES.register(f"fewshot_det_lvis6_{_k}shot", Suite(
        f"fewshot_det_lvis6_{_k}shot", f"fewshot_det_lvis6_train_{_k}shot", ("fewshot_det_lvis6_val",), (),
        f"LVIS-6 few-shot detection (Visual-RFT), up to {_k} images per category; no OOD split"))

TASK_GROUPS.register("fewshot_det", tuple(f"fewshot_det_coco8_{k}shot" for k in COCO8_SHOTS)
                     + tuple(f"fewshot_det_lvis6_{k}shot" for k in LVIS6_SHOTS))

__all__ = ["COCO8", "LVIS6", "COCO8_SHOTS", "LVIS6_SHOTS", "SEED", "DetectionTask"]
