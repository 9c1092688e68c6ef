"""Embedded models: names that ``--model`` resolves to a directory the project builds.

``tiny``: a Qwen2-VL-architecture model (about 4 M parameters) with an offline
tokenizer, pretrained on the synthetic suite's separate ``pretrain`` stream to
partial competence. Built once on first use (minutes on 2 cores), cached.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from harness.conventions import FAMILIES
from harness.prompt import Prompt

EMBEDDED = ("tiny",)


class SyntheticTinyData:
    """The tiny model's training data: the synthetic suite's pretrain stream."""

    def __init__(self) -> None:
        from tasks.synthetic.pretrain import DATA_VERSION

        self.version = DATA_VERSION
        # The tiny model is a Qwen2-VL: it answers boxes in that family's space.
        self.conv = FAMILIES["qwen2_vl"]

    def corpus(self) -> Iterable[str]:
        from tasks.synthetic.pretrain import corpus

        return corpus(self.conv)

    def examples(self, seed: int) -> Iterator[tuple[Prompt, str]]:
        from tasks.synthetic.pretrain import examples

        return examples(self.conv, seed)


def resolve_embedded(name: str, progress: bool = True) -> str:
    if name != "tiny":
        raise KeyError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    from harness.models.tiny import resolve_tiny

    return str(resolve_tiny(SyntheticTinyData(), progress=progress))
