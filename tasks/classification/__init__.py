"""Classification families over local datasets; importing registers their tasks and suites."""

from tasks.classification import fewshot, imagenet, refcoco_categories, voc  # noqa: F401
