"""Referring-expression grounding over local datasets (RefCOCO/+/g, Ref-L4, LISA, RefGTA).

Index entries are ``{"id", "image", "size", "expression", "box", "others", "metadata"}``:
``image`` relative to the dataset's image directory, ``size`` the original ``[w, h]``
when the annotations give it (else the image header is read when the sample is made),
``box`` the target ``[x1, y1, x2, y2]`` in original-image pixels (loaders convert from
the upstream xywh), ``others`` the boxes of other annotated objects in the same image
(the multiple-choice distractors). Parsing and scoring are
:func:`harness.boxes.read_answer_box` and :func:`harness.boxes.grounding_scores`, the
same code as the synthetic grounding task and the RL reward.
"""

from __future__ import annotations

from typing import Any

from harness.boxes import GROUNDING_METRICS, format_box, grounding_scores, iou, read_answer_box
from harness.dataset_task import DatasetTask
from harness.parsed import Parsed
from harness.sample import ImageRef, Sample


def xywh_to_xyxy(box: list[float]) -> list[float]:
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


class GroundingTask(DatasetTask):
    family = "grounding"
    answer_kind = "box"
    open_metrics = GROUNDING_METRICS
    max_new_tokens = 32
    protocol = ("open: 'Locate <expression>. Answer with its box [x1, y1, x2, y2] in <model space>.'; parser "
                "read_answer_box (first box, model's coordinate space); metrics acc@0.5/0.75/0.9 (IoU >= t), mIoU")

    def image_root(self):
        return self.dataset.image_dir()

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        size = tuple(entry["size"]) if entry.get("size") else None
        image = ImageRef.from_path(str(self.image_root() / entry["image"]), size=size)  # type: ignore[arg-type]
        return Sample(id=entry["id"], images=(image,),
                      fields={"expression": entry["expression"], "others": entry.get("others", [])},
                      target=list(entry["box"]), metadata=dict(entry.get("metadata", {})))

    # ----- the open-ended form ----------------------------------------------------------
    def stem(self, sample, conv):
        return f"Where is {sample.fields['expression']}?"

    def question(self, sample, conv):
        return (f"Locate {sample.fields['expression']}. Answer with its box [x1, y1, x2, y2] in "
                f"{conv.describe_space()}.")

    def answer_text(self, sample, conv):
        return format_box(conv.from_pixels(tuple(sample.target), sample.images[0].size))

    def parse_open(self, answer, sample, conv, profile) -> Parsed:
        box, failure = read_answer_box(answer, sample.images[0].size, conv, profile)
        return Parsed(answer, list(box)) if box is not None else Parsed(answer, failure=failure)

    def score_open(self, value, sample, profile):
        return grounding_scores(value, sample.target, profile)

    def wrong_answers(self, sample, conv, rng, k):
        """Other annotated objects' boxes first (the hard distractors), then random boxes
        that overlap the target little, all deterministic given ``rng``."""
        size = sample.images[0].size
        gold = self.answer_text(sample, conv)
        out: list[str] = []
        others = [list(b) for b in sample.fields.get("others", [])]
        rng.shuffle(others)
        for b in others:
            if iou(tuple(b), tuple(sample.target)) >= 0.5:
                continue  # a near-duplicate of the target is not a wrong answer
            text = format_box(conv.from_pixels(tuple(b), size))
            if text != gold and text not in out:
                out.append(text)
        w, h = size
        tries = 0
        while len(out) < k:
            tries += 1
            bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.5) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = (x, y, x + bw, y + bh)
            text = format_box(conv.from_pixels(b, size))
            if (iou(b, tuple(sample.target)) < 0.3 or tries > 1000) and text != gold and text not in out:
                out.append(text)
        return out[:k]
