"""Resolving ``--tasks`` specs: task names, suites and groups, with an optional format.

``synth_cls_id`` (a task), ``synth_cls`` (a suite: its ID and OOD splits),
``synth`` (a group of suites); any of them may end in ``:mc`` or ``:yesno``.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UnknownName, UsageError
from harness.registry import SUITES, TASK_GROUPS, TASKS
from harness.task import FORMATS, OPEN, Task


@dataclass(frozen=True)
class TaskRef:
    name: str
    fmt: str
    role: str

    @property
    def full_name(self) -> str:
        return self.name if self.fmt == OPEN else f"{self.name}:{self.fmt}"


def split_format(spec: str) -> tuple[str, str]:
    name, _, fmt = spec.strip().partition(":")
    fmt = fmt or OPEN
    if fmt not in FORMATS:
        raise UsageError(f"{spec!r}: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return name, fmt


def make_task(name: str, fmt: str = OPEN) -> Task:
    return TASKS.get(name)(fmt=fmt)


def resolve(specs: str | list[str]) -> list[TaskRef]:
    items = [s for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    if not items:
        raise UsageError("no tasks given")
    out: list[TaskRef] = []
    for item in items:
        name, fmt = split_format(item)
        if name in TASKS:
            out.append(TaskRef(name, fmt, TASKS.get(name).role))
            continue
        suites = [name] if name in SUITES else list(TASK_GROUPS.get(name)) if name in TASK_GROUPS else None
        if suites is None:
            known = ", ".join(TASKS.names() + SUITES.names() + TASK_GROUPS.names())
            raise UnknownName(f"unknown task, suite or group {name!r}. Known: {known}")
        for suite_name in suites:
            suite = SUITES.get(suite_name)
            out += [TaskRef(t, fmt, "id") for t in suite.id] + [TaskRef(t, fmt, "ood") for t in suite.ood]
    seen: set[str] = set()
    unique = []
    for ref in out:
        if ref.full_name not in seen:
            seen.add(ref.full_name)
            unique.append(ref)
    return unique
