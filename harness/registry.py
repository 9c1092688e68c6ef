"""Registries for tasks, suites, backends and trainers.

Built-ins register themselves when their module is imported; third-party packages
add entries through entry-point groups (``harness.tasks``, ``harness.suites``,
``harness.backends``, ``harness.trainers``): the entry point's name is the item
name and its object is what would be passed to :meth:`Registry.register`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from harness.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """``registry.register("x", obj)`` or ``@registry.register("x")``."""

        def _add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return _add(obj) if obj is not None else _add

    def _load(self) -> None:
        if self._loaded:
            return
        for module in self._builtin_modules:
            importlib.import_module(module)
        self._loaded = True  # only once the built-ins imported: a failed import is retried
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                self._items[ep.name] = ep.load()
            except Exception as exc:  # a broken plug-in must not take the others down
                import warnings

                warnings.warn(f"could not load {self.kind} plug-in {ep.name!r} ({ep.value}): {exc}", stacklevel=2)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownName(f"unknown {self.kind} {name!r}. Known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


TASKS: Registry = Registry("task", "harness.tasks", ("tasks",))
SUITES: Registry = Registry("suite", "harness.suites", ("tasks",))
# A group names several suites (``--tasks synth`` = every synthetic suite's eval splits).
TASK_GROUPS: Registry = Registry("task group", "harness.task_groups", ("tasks",))
BACKENDS: Registry = Registry("backend", "harness.backends", ("harness.backends",))
TRAINERS: Registry = Registry("trainer", "harness.trainers", ("trainers",))


def define_task(base: type, name: str, role: str, description: str, register: bool = True, **attrs) -> type:
    """One split of a family: a subclass of ``base`` carrying its name, role, description and
    settings (``attrs``), registered in :data:`TASKS` (unless ``register=False``)."""
    cls = type("".join(p.title() for p in name.split("_")), (base,),
               {"name": name, "role": role, "description": description, **attrs})
    if register:
        TASKS.register(name, cls)
    return cls
