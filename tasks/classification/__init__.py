"""Classification families over local datasets; importing registers their tasks and suites."""

from tasks.classification import fewshot, imagenet, imagenet_dcsft, refcoco_categories, voc  # noqa: F401
