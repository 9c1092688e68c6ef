"""The synthetic task families: classification, grounding, detection, counting/arithmetic.

Each class is one split of one family. The scene generator gives exact targets;
the parser/scorer here is both the metric and (through ``Task.reward``) the RL
reward. Wrong answers for multiple-choice and yes/no come from the same scene.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from harness import answers
from harness.boxes import (
    GROUNDING_METRICS,
    answer_box_to_pixels,
    format_box,
    greedy_match,
    grounding_scores,
    iou,
    parse_boxes,
    read_answer_box,
)
from harness.errors import UnknownName
from harness.sample import ImageRef, Sample
from harness.task import Parsed, Task
from tasks.synthetic.render import render
from tasks.synthetic.scene import (
    BASE_COLOURS,
    CLUTTER,
    COLOURS,
    FILLED,
    SHAPES,
    SIZE_WORDS,
    Scene,
    background,
    place,
    sample_seed,
)

# Bump when generation changes: it is part of every dataset fingerprint and of the
# tiny model's cache key.
VERSION = "synth-v2"


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


class SyntheticTask(Task):
    split: str = ""
    size: int = 300
    style: str = FILLED

    def __init__(self, fmt: str = "open", size: int | None = None) -> None:
        super().__init__(fmt)
        if size is not None:
            self.size = int(size)

    def __len__(self) -> int:
        return self.size

    def fingerprint(self) -> str:
        from hashlib import sha256

        return sha256(f"{VERSION}|{self.name}|{self.split}|{self.size}".encode()).hexdigest()[:16]

    # --- data -----------------------------------------------------------------------
    def make_scene(self, rng: random.Random, seed: int) -> tuple[Scene, dict[str, Any], Any]:
        """(scene, question fields, target) for one sample."""
        raise NotImplementedError

    def make_sample(self, index: int) -> Sample:
        seed = sample_seed(VERSION, self.split, index)
        rng = random.Random(seed)
        scene, fields, target = self.make_scene(rng, seed)
        image = ImageRef(uri=f"synthetic://{self.split}/{index}", size=scene.size, loader=lambda: render(scene))
        meta = {"style": scene.style, "n_objects": len(scene.objects), **fields.pop("_meta", {})}
        return Sample(id=f"{index:06d}", images=(image,), fields={**fields, "scene": scene}, target=target, metadata=meta)

    def samples(self) -> Iterator[Sample]:
        for i in range(self.size):
            yield self.make_sample(i)

    def get_sample(self, sample_id: str) -> Sample:
        try:
            index = int(sample_id)
        except ValueError:
            raise UnknownName(f"{self.name}: sample ids are integers, got {sample_id!r}") from None
        if not 0 <= index < self.size:
            raise UnknownName(f"{self.name}: sample {sample_id} outside 0..{self.size - 1}")
        return self.make_sample(index)

    def new_scene(self, rng: random.Random, seed: int, specs, style: str | None = None) -> Scene:
        style = style or self.style
        return Scene(objects=place(rng, specs), style=style, seed=seed, background=background(rng), occlude=style == CLUTTER)

    def target_json(self, sample: Sample) -> Any:
        return sample.target


def _random_specs(rng: random.Random, n: int, shapes=SHAPES, unique: bool = False, sizes=None) -> list[tuple[str, str, object]]:
    specs: list[tuple[str, str, object]] = []
    seen: set[tuple[str, str]] = set()
    while len(specs) < n:
        s, c = rng.choice(shapes), rng.choice(tuple(COLOURS))
        if unique and (s, c) in seen:
            continue
        seen.add((s, c))
        specs.append((s, c, sizes))
    return specs


# ----------------------------------------------------------------------------- classification
class ShapeClassification(SyntheticTask):
    """One object; name its shape (ImageNet-like). OOD: renditions, clutter."""

    family = "classification"
    open_metrics = ("acc",)
    max_new_tokens = 8

    object_sizes: tuple[str, ...] = ("large", "xlarge")

    def make_scene(self, rng, seed):
        shape = rng.choice(SHAPES)
        scene = self.new_scene(rng, seed, [(shape, rng.choice(tuple(COLOURS)), rng.choice(self.object_sizes))])
        return scene, {"_meta": {"category": shape}}, shape

    def stem(self, sample, conv):
        return "What shape is in the image?"

    def question(self, sample, conv):
        return "What shape is in the image? Answer with one word."

    def answer_text(self, sample, conv):
        return sample.target

    def parse_open(self, answer, sample, conv, profile):
        return answers.read_label(answer, profile)

    def score_open(self, value, sample, profile):
        return {"acc": float(answers.match_label(value, sample.target, profile))}

    def wrong_answers(self, sample, conv, rng, k):
        return rng.sample([s for s in SHAPES if s != sample.target], k)


class ColourNaming(ShapeClassification):
    """Name the colour of the one object. Not an eval split: an easy auxiliary task in
    the tiny model's pretraining that teaches it to use its vision tower at all before
    the harder families can (without it, pretraining stalled at chance on every task)."""

    family = "colour"

    def make_scene(self, rng, seed):
        scene, fields, _ = super().make_scene(rng, seed)
        return scene, fields, scene.objects[0].colour

    def stem(self, sample, conv):
        return "What colour is the shape?"

    def question(self, sample, conv):
        return "What colour is the shape? Answer with one word."

    def wrong_answers(self, sample, conv, rng, k):
        return rng.sample([c for c in COLOURS if c != sample.target], k)


# ----------------------------------------------------------------------------- grounding
_COLOUR_RIDDLES = {
    "red": "the colour of a fire truck",
    "green": "the colour of fresh grass",
    "blue": "the colour of a clear sky",
    "yellow": "the colour of a ripe banana",
    "purple": "the colour of lavender",
    "orange": "the colour of a pumpkin",
}
_SHAPE_RIDDLES = {
    "circle": "has no corners at all",
    "square": "has four equal sides and four right angles",
    "triangle": "has exactly three corners",
    "cross": "looks like a plus sign",
}


def _relation(target, other) -> str:
    dx, dy = target.cx - other.cx, target.cy - other.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


class Grounding(SyntheticTask):
    """Referring-expression grounding (RefCOCO-like). ``expression`` sets the shift:
    ``short`` (ID), ``long`` (Ref-L4-like: relations and position), ``reason``
    (LISA-like: the referent must be inferred from world knowledge)."""

    family = "grounding"
    answer_kind = "box"
    open_metrics = GROUNDING_METRICS
    max_new_tokens = 24
    expression = "short"
    n_objects: tuple[int, int] = (2, 3)
    # Objects of a box task span at least one image token (28 px) of the tiny model:
    # a 20-px box needs sub-token precision for IoU >= 0.5, out of reach of a model
    # that sees 4x4 tokens (RefCOCO referents are mostly large too).
    object_sizes: tuple[str, ...] = ("large", "xlarge")

    def make_scene(self, rng, seed):
        n = rng.randint(*self.n_objects)
        scene = self.new_scene(rng, seed, _random_specs(rng, n, unique=True, sizes=self.object_sizes))
        t = rng.randrange(n)
        obj = scene.objects[t]
        if self.expression == "short":
            expr = f"the {obj.colour} {obj.shape}"
        elif self.expression == "long":
            other = scene.objects[(t + 1) % n]
            vert = "upper" if obj.cy < scene.size[1] / 2 else "lower"
            horiz = "left" if obj.cx < scene.size[0] / 2 else "right"
            expr = (
                f"the {SIZE_WORDS[obj.size]} {obj.colour} {obj.shape} in the {vert} {horiz} part of the image, "
                f"which is {_relation(obj, other)} the {other.colour} {other.shape}"
            )
        else:
            expr = f"the object that has {_COLOUR_RIDDLES[obj.colour]} and {_SHAPE_RIDDLES[obj.shape]}"
        return scene, {"expression": expr, "target_index": t, "_meta": {"category": obj.shape}}, list(obj.box)

    def stem(self, sample, conv):
        return f"Where is {sample.fields['expression']}?"

    def question(self, sample, conv):
        return f"Locate {sample.fields['expression']}. Answer with its box [x1, y1, x2, y2] in {conv.describe_space()}."

    def answer_text(self, sample, conv):
        return format_box(conv.from_pixels(tuple(sample.target), sample.images[0].size))

    def parse_open(self, answer, sample, conv, profile):
        box, failure = read_answer_box(answer, sample.images[0].size, conv, profile)
        return Parsed(answer, list(box)) if box is not None else Parsed(answer, failure=failure)

    def score_open(self, value, sample, profile):
        return grounding_scores(value, sample.target, profile)

    def wrong_answers(self, sample, conv, rng, k):
        size = sample.images[0].size
        scene = sample.fields["scene"]
        boxes = [o.box for i, o in enumerate(scene.objects) if i != sample.fields["target_index"]]
        rng.shuffle(boxes)
        gold = format_box(conv.from_pixels(tuple(sample.target), size))
        out: list[str] = []
        for b in boxes:
            text = format_box(conv.from_pixels(b, size))
            if text != gold and text not in out:
                out.append(text)
        while len(out) < k:  # random boxes far from the target
            w, h = size
            x, y, s = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7), rng.uniform(12, 35)
            b = (x, y, min(w, x + s), min(h, y + s))
            text = format_box(conv.from_pixels(b, size))
            if iou(b, tuple(sample.target)) < 0.3 and text != gold and text not in out:
                out.append(text)
        return out[:k]


class SingleObjectGrounding(Grounding):
    """Grounding with one object in the scene. Not an eval split: a pretraining-only
    task that teaches the tiny model to read positions off its image tokens before it
    has to pick the right object among several."""

    n_objects = (1, 1)


# ----------------------------------------------------------------------------- detection
class Detection(SyntheticTask):
    """Detect all instances of one queried category (COCO-like, Visual-RFT prompt).

    Categories are colours ("red objects"): ``categories`` are the ones that may be
    queried, base colours in training and ID evaluation, novel colours for the
    open-vocabulary OOD split (named in other tasks, never a detection target).
    Colours rather than shapes keep the split learnable for the tiny model, whose
    shape recognition is weak, so that detection measures localisation.
    """

    family = "detection"
    answer_kind = "box"
    open_metrics = ("f1", "precision", "recall")
    max_new_tokens = 48
    categories: tuple[str, ...] = BASE_COLOURS
    object_sizes: tuple[str, ...] = Grounding.object_sizes
    max_objects = 3

    def make_scene(self, rng, seed):
        query = rng.choice(self.categories)
        n_query = rng.choice((1, 1, 2, 2, 3))
        n_other = rng.randint(0, self.max_objects - n_query)
        others = tuple(c for c in COLOURS if c != query)
        specs = [(rng.choice(SHAPES), query, self.object_sizes) for _ in range(n_query)]
        specs += [(rng.choice(SHAPES), rng.choice(others), self.object_sizes) for _ in range(n_other)]
        rng.shuffle(specs)
        scene = self.new_scene(rng, seed, specs)
        boxes = sorted((list(o.box) for o in scene.objects if o.colour == query), key=lambda b: (b[1], b[0]))
        return scene, {"category": query, "_meta": {"category": query, "n_targets": len(boxes)}}, boxes

    def stem(self, sample, conv):
        return f"Where are all the {sample.fields['category']} objects?"

    def question(self, sample, conv):
        return (
            f"Detect all {sample.fields['category']} objects. "
            f"Answer with a list of boxes [x1, y1, x2, y2] in {conv.describe_space()}."
        )

    def _write(self, boxes, sample, conv) -> str:
        size = sample.images[0].size
        return "[" + ", ".join(format_box(conv.from_pixels(tuple(b), size)) for b in boxes) + "]"

    def answer_text(self, sample, conv):
        return self._write(sample.target, sample, conv)

    def parse_open(self, answer, sample, conv, profile):
        size = sample.images[0].size
        boxes = []
        for b in parse_boxes(answer):
            box = answer_box_to_pixels(b, size, conv, profile)
            if box is not None:
                boxes.append(list(box))
        if not boxes and "no object" not in answer.lower():
            return Parsed(answer, failure="no box found")
        return Parsed(answer, boxes)

    def score_open(self, value, sample, profile):
        preds = [tuple(b) for b in value]
        gts = [tuple(b) for b in sample.target]
        tp = greedy_match(preds, gts, profile.iou_hit)
        precision = tp / len(preds) if preds else 0.0
        recall = tp / len(gts) if gts else 0.0
        f1 = 2 * tp / (len(preds) + len(gts)) if (preds or gts) else 1.0
        return {"f1": f1, "precision": precision, "recall": recall}

    def wrong_answers(self, sample, conv, rng, k):
        scene = sample.fields["scene"]
        others = [o.box for o in scene.objects if o.colour != sample.fields["category"]]
        gold = self.answer_text(sample, conv)
        out: list[str] = []
        candidates = []
        if others:
            candidates.append(others)  # the other objects
            candidates.append(sample.target + others[:1])  # an extra false positive
        if len(sample.target) > 1:
            candidates.append(sample.target[:-1])  # a missed instance
        for b in [*others, *sample.target]:
            candidates.append([b])
        for cand in candidates:
            text = self._write(cand, sample, conv)
            if text != gold and text not in out:
                out.append(text)
        while len(out) < k:  # random boxes that match no target
            w, h = sample.images[0].size
            x, y, s = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7), rng.uniform(12, 35)
            b = (x, y, min(w, x + s), min(h, y + s))
            text = self._write([b], sample, conv)
            if all(iou(b, tuple(g)) < 0.3 for g in sample.target) and text != gold and text not in out:
                out.append(text)
        return out[:k]

    corpus_fields = ("target", "parsed", "failure")

    def corpus_metrics(self, records, profile):
        """COCO-style AP through pycocotools (the reference implementation)."""
        from harness.detection_map import detection_map

        return detection_map(records)


# ----------------------------------------------------------------------------- counting / arithmetic
class Counting(SyntheticTask):
    """Count objects (CLEVR-count-like). ``arithmetic`` poses CLEVR-Math-style
    questions (remove a colour, add objects): the counting -> arithmetic OOD pair."""

    family = "math"
    open_metrics = ("acc",)
    max_new_tokens = 6
    arithmetic = False

    def make_scene(self, rng, seed):
        n = rng.randint(1, 6)
        scene = self.new_scene(rng, seed, _random_specs(rng, n))
        if not self.arithmetic:
            return scene, {"question": "How many shapes are in the image?", "_meta": {"op": "count"}}, n
        if rng.random() < 0.5:
            colour = rng.choice([o.colour for o in scene.objects])
            removed = sum(o.colour == colour for o in scene.objects)
            q = f"Remove all {colour} shapes. How many shapes are left?"
            return scene, {"question": q, "_meta": {"op": "subtract"}}, n - removed
        k, shape = rng.randint(1, 3), rng.choice(SHAPES)
        q = f"Add {k} {shape if k == 1 else plural(shape)}. How many shapes are there now?"
        return scene, {"question": q, "_meta": {"op": "add"}}, n + k

    def stem(self, sample, conv):
        return sample.fields["question"]

    def question(self, sample, conv):
        return sample.fields["question"] + " Answer with a number."

    def answer_text(self, sample, conv):
        return str(sample.target)

    def parse_open(self, answer, sample, conv, profile):
        value = answers.parse_number(answer)
        return Parsed(answer, value) if value is not None else Parsed(answer, failure="no number")

    def score_open(self, value, sample, profile):
        return {"acc": float(abs(value - sample.target) < 1e-9)}

    def wrong_answers(self, sample, conv, rng, k):
        pool = [v for v in range(max(0, sample.target - 4), sample.target + 5) if v != sample.target]
        return [str(v) for v in rng.sample(pool, k)]


__all__ = ["ShapeClassification", "ColourNaming", "Grounding", "Detection", "Counting", "VERSION"]
