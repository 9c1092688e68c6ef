"""A suite: the unit of a generalisation study (train split, ID and OOD eval splits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    name: str
    train: str
    id: tuple[str, ...]
    ood: tuple[str, ...]
    description: str = ""

    @property
    def eval_tasks(self) -> tuple[str, ...]:
        return self.id + self.ood

    def role_of(self, task_name: str) -> str | None:
        base = task_name.split(":")[0]
        if base in self.id:
            return "id"
        if base in self.ood:
            return "ood"
        if base == self.train:
            return "train"
        return None
