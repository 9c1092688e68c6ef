"""Multi-label category classification (Curr-ReFT's classification task: RefCOCO images,
OOD Pascal VOC): name every object category in the image.

Index entries are ``{"id", "path", "labels", "metadata"}`` with ``labels`` the sorted,
distinct category names. The answer is a list of names (commas, semicolons, "and" or
new lines between them); ``acc`` is exact set equality after normalisation (Curr-ReFT:
"predictions matching ground truth labels are considered correct"), ``category_iou``
is |pred & gold| / |pred | gold|, Curr-ReFT's category-overlap reward.
"""

from __future__ import annotations

import re
from typing import Any

from harness import answers
from harness.dataset_task import _INDEX_CACHE, DatasetTask
from harness.errors import UsageError
from harness.parsed import Parsed
from harness.sample import ImageRef, Sample

_SPLIT = re.compile(r"\s*(?:,|;|\n|\band\b|\|)\s*", re.IGNORECASE)
# Curr-ReFT: commas (also the Chinese ones) and whitespace, case kept
_CURR_REFT_SPLIT = re.compile(r"[,\uff0c\u3001\s]+")


def curr_reft_words(text: str) -> list[str]:
    return [w for w in _CURR_REFT_SPLIT.split(text) if w]


def read_label_set(answer: str) -> list[str]:
    """Normalised, distinct names in the order written."""
    out: list[str] = []
    for part in _SPLIT.split(answer):
        name = answers.normalize_text(part)
        if name and name not in out:
            out.append(name)
    return out


class MultiLabelClassificationTask(DatasetTask):
    family = "multilabel"
    open_metrics = ("acc", "category_iou")
    max_new_tokens = 48
    protocol = ("open: 'Which object categories appear in the image? Answer with their names separated by "
                "commas.'; parser read_label_set; metrics acc = exact set match, category_iou = |P&G|/|P|G|")

    def image_root(self):
        return self.dataset.image_dir()

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        size = tuple(entry["size"]) if entry.get("size") else None
        image = ImageRef.from_path(str(self.image_root() / entry["path"]), size=size)  # type: ignore[arg-type]
        return Sample(id=entry["id"], images=(image,), fields={}, target=list(entry["labels"]),
                      metadata={"n_labels": len(entry["labels"]), **entry.get("metadata", {})})

    def labels(self) -> list[str]:
        key = ("labels",) + self.cache_key()
        if key not in _INDEX_CACHE:
            _INDEX_CACHE[key] = sorted({name for e in self.index() for name in e["labels"]})  # type: ignore[assignment]
        return _INDEX_CACHE[key]  # type: ignore[return-value]

    def stem(self, sample, conv):
        return "Which object categories appear in the image?"

    def question(self, sample, conv):
        return "Which object categories appear in the image? Answer with their names separated by commas."

    def answer_text(self, sample, conv):
        return ", ".join(sample.target)

    def parse_open(self, answer, sample, conv, profile) -> Parsed:
        names = curr_reft_words(answer) if profile.multilabel_rule == "words_superset" else read_label_set(answer)
        return Parsed(answer, names) if names else Parsed(answer, failure="no category names")

    def score_open(self, value, sample, profile):
        pred = set(value)
        if profile.multilabel_rule == "words_superset":
            # Curr-ReFT: gold names split into words too; extra predicted words are not penalised
            gold = {w for g in sample.target for w in curr_reft_words(g)}
            correct = gold <= pred
        else:
            gold = {answers.normalize_text(g) for g in sample.target}
            correct = pred == gold
        union = pred | gold
        return {"acc": float(correct), "category_iou": len(pred & gold) / len(union) if union else 1.0}

    def wrong_answers(self, sample, conv, rng, k):
        gold = list(sample.target)
        space = [name for name in self.labels() if name not in gold]
        out: list[str] = []
        tries = 0
        while len(out) < k and tries < 1000:
            tries += 1
            cand = list(gold)
            move = rng.random()
            if move < 0.34 and len(cand) > 1:
                cand.pop(rng.randrange(len(cand)))  # a missed category
            elif move < 0.67 and space:
                cand.append(rng.choice(space))  # a hallucinated one
            elif space:
                cand[rng.randrange(len(cand))] = rng.choice(space)  # a confused one
            text = ", ".join(sorted(set(cand)))
            if set(cand) != set(gold) and text not in out:
                out.append(text)
        if len(out) < k:
            raise UsageError(f"{self.name}: the dataset has too few categories to make {k} wrong answers for the "
                             f"multiple-choice and yes/no forms")
        return out
