"""Image classification over local datasets (ImageNet, VOC, fine-grained few-shot).

Index entries are ``{"id", "path", "label", "synonyms"}``: ``path`` relative to the
dataset's image directory, ``label`` the canonical class name the model should answer,
``synonyms`` other names that count as correct (ImageNet's WordNet names; may be empty).
The parser and scorer are :func:`harness.answers.read_label` and
:func:`harness.answers.match_label`, the same functions as every other label task and
as the RL reward.
"""

from __future__ import annotations

from typing import Any

from harness import answers
from harness.dataset_task import DatasetTask
from harness.errors import UsageError
from harness.parsed import Parsed
from harness.sample import ImageRef, Sample


class ClassificationTask(DatasetTask):
    family = "classification"
    open_metrics = ("acc",)
    max_new_tokens = 24
    #: what the object is called in the prompt ("object", "flower", "aircraft", "pet")
    noun = "object"
    protocol = ("open: 'What is the <noun> in the image? Answer with its category name.'; parser read_label; "
                "metric acc = exact match after normalisation against the label or a synonym")

    # ----- data -------------------------------------------------------------------------
    def image_root(self):
        return self.dataset.image_dir()

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        image = ImageRef.from_path(str(self.image_root() / entry["path"]))
        return Sample(id=entry["id"], images=(image,), fields={"synonyms": tuple(entry.get("synonyms", ()))},
                      target=entry["label"], metadata={"category": entry["label"], **entry.get("metadata", {})})

    def labels(self) -> list[str]:
        """The label space (distractors for :mc and :yesno come from it)."""
        key = ("labels",) + self.cache_key()
        from harness.dataset_task import _INDEX_CACHE

        if key not in _INDEX_CACHE:
            _INDEX_CACHE[key] = sorted({e["label"] for e in self.index()})  # type: ignore[assignment]
        return _INDEX_CACHE[key]  # type: ignore[return-value]

    # ----- the open-ended form ----------------------------------------------------------
    def stem(self, sample, conv):
        return f"What is the {self.noun} in the image?"

    def question(self, sample, conv):
        return f"What is the {self.noun} in the image? Answer with its category name."

    def answer_text(self, sample, conv):
        return sample.target

    def parse_open(self, answer, sample, conv, profile) -> Parsed:
        return answers.read_label(answer, profile)

    def score_open(self, value, sample, profile):
        return {"acc": float(answers.match_label(value, sample.target, profile, sample.fields.get("synonyms", ())))}

    def wrong_answers(self, sample, conv, rng, k):
        pool = [label for label in self.labels() if label != sample.target]
        if len(pool) < k:
            raise UsageError(f"{self.name}: {len(pool) + 1} classes, too few for {k} distractors (the multiple-choice "
                             "and yes/no forms need them)")
        return rng.sample(pool, k)
