"""Classification families over local datasets; importing registers their tasks and suites."""

from tasks.classification import fewshot, imagenet, voc  # noqa: F401
