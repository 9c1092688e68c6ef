"""Embedded models: names that ``--model`` resolves to a directory inside the package.

``tiny``: a Qwen2-VL-architecture model (2.24 M parameters) with an offline
tokenizer, pretrained on the synthetic suite's separate ``pretrain`` stream to
partial competence. It is **shipped** in ``harness/models/tiny_qwen2vl/`` (weights
in float16, 4.5 MB), so a new user's first eval starts at once and every machine
scores the same model: the committed reference numbers (README table, regression
tests) are this model's. ``harness build-tiny`` rebuilds the recipe into the cache;
the build is reproducible on one machine, but floating-point summation order differs
between CPUs, so a rebuild elsewhere is a different, equally valid model. It replaces
the shipped one only when asked (``harness build-tiny --ship``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from harness.conventions import FAMILIES
from harness.errors import HarnessError, UnknownName
from harness.prompt import Prompt

EMBEDDED = ("tiny",)
SHIPPED_TINY = Path(__file__).resolve().parent / "tiny_qwen2vl"


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


def check_shipped(directory: Path = SHIPPED_TINY) -> dict:
    """The shipped model's info record, after checking that every file is there and the
    weights are the ones that were shipped (a damaged install fails here, with a fix,
    not later inside transformers)."""
    from harness.models.tiny import INFO_FILE, SHIPPED_FILES, SHIPPED_WEIGHTS, sha256_file

    fix = "reinstall the package, or run `harness build-tiny --ship` to rebuild and ship it"
    if not directory.is_dir():
        leftover = sorted(directory.parent.glob(f".{directory.name}.old-*"))
        hint = f" (an interrupted --ship left {leftover[-1]}: rename it back)" if leftover else ""
        raise HarnessError(f"the shipped tiny model is missing from {directory}{hint}: {fix}")
    missing = [f for f in SHIPPED_FILES if not (directory / f).is_file()]
    if missing:
        raise HarnessError(f"the shipped tiny model in {directory} lacks {', '.join(missing)}: {fix}")
    try:
        info = json.loads((directory / INFO_FILE).read_text())
        expected = info["shipped"]["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"{directory / INFO_FILE} is unreadable ({exc}): {fix}") from None
    if sha256_file(directory / SHIPPED_WEIGHTS) != expected:
        raise HarnessError(f"{directory / SHIPPED_WEIGHTS} does not match the shipped weights' hash: {fix}")
    return info


def resolve_embedded(name: str, progress: bool = True) -> str:
    """The directory of an embedded model: the shipped one, checked, never rebuilt behind
    the user's back (a rebuild elsewhere is another model, and the reference numbers are
    this one's)."""
    if name not in EMBEDDED:
        raise UnknownName(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    check_shipped(SHIPPED_TINY)
    return str(SHIPPED_TINY)


def build_tiny(progress: bool = True) -> str:
    """Build the tiny model's recipe into the cache (or find it there); never touches
    the shipped copy."""
    from harness.models.tiny import resolve_tiny

    return str(resolve_tiny(SyntheticTinyData(), progress=progress))


def ship_tiny(built_dir: str) -> str:
    """Replace the shipped model by a float16 export of ``built_dir``."""
    from harness.models.tiny import export_half

    return str(export_half(built_dir, SHIPPED_TINY))
