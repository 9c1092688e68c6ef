"""Referring-expression grounding over local datasets; importing registers their tasks and suites."""

from tasks.grounding import lisa, refer, refgta, refl4, rows  # noqa: F401
