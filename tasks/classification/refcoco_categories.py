"""Curr-ReFT's in-domain classification task, rebuilt from the RefCOCO (unc) refer files:
name every object category annotated in the image.

Curr-ReFT ("3,000 training images from RefCOCO and RefCOCOg, 1,000 in-domain testing")
ships its rows in ``grpo_sft_data.zip`` (``classify_v2_coco_{train,val,test}.jsonl``), which
records the sampled images but not how they were drawn. Here the images come from the
RefCOCO unc split, which is split by image: ``refcoco_cls_train`` holds every image with a
ref in the train split, ``refcoco_cls_val`` every image with a ref in the val split (the
same images as the grounding ID split ``refcoco_val``; testA/testB are left out because
they were selected for people (A) or other objects (B) and would skew the category mix).
RefCOCOg is not used: its umd splits are not image-disjoint from RefCOCO's, so its
"test" images can be RefCOCO training images.

Labels are the distinct category names of *all* the image's annotations in instances.json
(every COCO instance of the image, not only the referred ones), sorted. The sample id is
the COCO image id as a string; images are in order of first appearance in the refs pickle.
"""

from __future__ import annotations

from typing import Any

from harness.data import DatasetMissing
from harness.registry import SUITES, define_task
from harness.suite import Suite
from tasks.classification.multilabel import MultiLabelClassificationTask
from tasks.grounding.refer import in_split, load_instances, load_refs, refer_spec


class RefcocoCategories(MultiLabelClassificationTask):
    refer_splits: tuple[str, ...] = ("val",)
    id_doc = "COCO image id (instances.json images[].id), as a string"

    def notes(self) -> dict[str, Any]:
        return {"images": f"every image of a RefCOCO (unc) ref in split(s) {', '.join(self.refer_splits)}",
                "labels": "distinct category names of all the image's annotations in instances.json",
                "images_count": len(self.index())}

    def read_index(self) -> list[dict[str, Any]]:
        self.dataset.check()
        inst = load_instances(self.dataset)
        refs = load_refs(self.dataset, "unc")
        seen: set[int] = set()
        out: list[dict[str, Any]] = []
        for ref in refs:
            image_id = ref["image_id"]
            if image_id in seen or not any(in_split(ref["split"], s) for s in self.refer_splits):
                continue
            seen.add(image_id)
            image = inst.images.get(image_id)
            if image is None:
                raise DatasetMissing(f"{self.dataset.name}: ref {ref['ref_id']} names image {image_id}, which "
                                     "instances.json does not have (mismatched files?)")
            labels = sorted({inst.categories[inst.ann_category[a]] for a in inst.image_anns.get(image_id, [])})
            if not labels:
                raise DatasetMissing(f"{self.dataset.name}: image {image_id} has no annotations in instances.json")
            out.append({"id": str(image_id), "path": image["file_name"], "size": image["size"], "labels": labels,
                        "metadata": {"image_id": image_id, "split": ref["split"]}})
        return out


_SPEC = refer_spec("refcoco", "unc")
for _name, _role, _splits, _what in (
    ("refcoco_cls_train", "train", ("train",), "train"),
    ("refcoco_cls_val", "id", ("val",), "val"),
):
    define_task(RefcocoCategories, _name, _role,
                f"name every object category in RefCOCO (unc) {_what} images (Curr-ReFT classification)",
                refer_splits=_splits, dataset=_SPEC)

SUITES.register("curr_reft_cls", Suite(
    "curr_reft_cls", "refcoco_cls_train", ("refcoco_cls_val",), ("voc_cls",),
    "multi-label category recognition on RefCOCO images; OOD: Pascal VOC (Curr-ReFT)"))
