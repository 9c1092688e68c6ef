"""What one evaluation item is: images (decoded lazily), question fields, target, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image


@dataclass(frozen=True)
class ImageRef:
    """A reference to an image that is decoded only when a backend needs pixels.

    ``uri`` identifies the image in records (a file path or ``synthetic://...``);
    ``size`` is the original (width, height), known without decoding so that box
    conversions and prompts never force a decode; ``loader`` produces the pixels.
    """

    uri: str
    size: tuple[int, int]
    loader: Callable[[], Image.Image] = field(compare=False, repr=False)

    def load(self) -> Image.Image:
        image = self.loader()
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image

    @classmethod
    def from_path(cls, path: str, size: tuple[int, int] | None = None) -> ImageRef:
        """A file image. An unreadable header does not fail here (a loader must be able
        to stream past it): the size becomes (0, 0) and decoding fails for that sample
        only, where the evaluator records it as a per-sample failure."""
        if size is None:
            try:
                with Image.open(path) as im:  # reads the header only
                    size = im.size
            except (OSError, SyntaxError, ValueError):
                size = (0, 0)

        def _load() -> Image.Image:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")

        return cls(uri=str(path), size=size, loader=_load)


@dataclass(frozen=True)
class Sample:
    """One item of one split. ``target`` is task-specific (label, box(es), number).

    ``fields`` holds what a prompt template needs (e.g. the referring expression);
    ``metadata`` holds what analysis needs (domain, difficulty, category) and is
    copied into records.
    """

    id: str
    images: tuple[ImageRef, ...]
    fields: dict[str, Any]
    target: Any
    metadata: dict[str, Any] = field(default_factory=dict)
