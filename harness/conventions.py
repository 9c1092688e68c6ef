"""Model-family conventions, declared once: how a family writes boxes and sizes images.

Tasks never branch on model names: they ask a :class:`ModelConventions` to map
boxes between the model's coordinate space and absolute pixels of the original
image. Backends build the conventions from the model's config (``model_type``)
and processor, and a user can override any field with ``--model_args``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.boxes import Box
from harness.errors import UsageError

# Coordinate spaces a model may answer in.
NORM1000 = "norm1000"  # integers 0..1000 relative to the image (Qwen2-VL, Qwen3-VL)
ABS_RESIZED = "abs_resized"  # absolute pixels of the resized model input (Qwen2.5-VL)
NORM1 = "norm1"  # floats 0..1 relative to the image
ABS = "abs"  # absolute pixels of the original image
BOX_SPACES = (NORM1000, ABS_RESIZED, NORM1, ABS)


@dataclass(frozen=True)
class ModelConventions:
    family: str = "generic"
    box_space: str = NORM1000
    # Image sizing as the processor does it (Qwen-VL "smart resize"): sides are
    # rounded to multiples of ``resize_factor`` and the pixel count kept within
    # [min_pixels, max_pixels]. Only ABS_RESIZED boxes depend on it.
    resize_factor: int = 28
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    def __post_init__(self) -> None:
        if self.box_space not in BOX_SPACES:
            raise UsageError(f"unknown box_space {self.box_space!r}; choose one of {BOX_SPACES}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConventions:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def with_overrides(self, **overrides: Any) -> ModelConventions:
        known = {k: v for k, v in overrides.items() if k in self.__dataclass_fields__}
        for k in ("resize_factor", "min_pixels", "max_pixels"):
            if k in known:
                known[k] = int(known[k])
        return replace(self, **known)

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the image as the model sees it."""
        # The processor's own function, so our boxes follow its resize exactly.
        from harness.compat.torchvision_cpu import ensure_torchvision

        ensure_torchvision()  # transformers imports torchvision whenever it is installed
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        w, h = size
        try:
            rh, rw = smart_resize(h, w, factor=self.resize_factor, min_pixels=self.min_pixels,
                                  max_pixels=self.max_pixels)
        except ValueError as exc:  # an aspect ratio over 200, which the model's processor refuses too
            raise UsageError(f"an image of size {w}x{h} has no resized size for {self.family}: {exc}") from None
        return rw, rh

    def _scale(self, size: tuple[int, int]) -> tuple[float, float]:
        """Model-space units per original pixel, for x and y."""
        w, h = size
        if self.box_space != ABS and (w <= 0 or h <= 0):  # ImageRef.from_path's size of an unreadable image
            raise UsageError(f"an image of size {w}x{h} (its header could not be read): its boxes cannot be "
                             f"converted to {self.box_space} coordinates; check the dataset's image files")
        if self.box_space == NORM1000:
            return 1000.0 / w, 1000.0 / h
        if self.box_space == NORM1:
            return 1.0 / w, 1.0 / h
        if self.box_space == ABS_RESIZED:
            rw, rh = self.resized_size(size)
            return rw / w, rh / h
        return 1.0, 1.0

    def to_pixels(self, box: Box, size: tuple[int, int]) -> Box:
        sx, sy = self._scale(size)
        return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)

    def from_pixels(self, box: Box, size: tuple[int, int]) -> Box:
        sx, sy = self._scale(size)
        out = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        if not all(math.isfinite(v) for v in out):  # an annotation's absurd box (1e308) overflows here
            raise UsageError(f"box {list(box)} of an image of size {size[0]}x{size[1]} is out of range")
        if self.box_space == NORM1:
            return tuple(round(v, 3) for v in out)  # type: ignore[return-value]
        return tuple(float(round(v)) for v in out)  # type: ignore[return-value]

    def describe_space(self) -> str:
        """Words for prompts that must tell the model which coordinates to use."""
        return {
            NORM1000: "0-1000 relative coordinates",
            ABS_RESIZED: "pixel coordinates",
            NORM1: "0-1 relative coordinates",
            ABS: "pixel coordinates",
        }[self.box_space]


# Families by Hugging Face ``model_type``. Add a family here, nowhere else.
FAMILIES: dict[str, ModelConventions] = {
    "qwen2_vl": ModelConventions(family="qwen2_vl", box_space=NORM1000),
    "qwen2_5_vl": ModelConventions(family="qwen2_5_vl", box_space=ABS_RESIZED),
    "qwen3_vl": ModelConventions(family="qwen3_vl", box_space=NORM1000),
}


def conventions_for(model_type: str | None) -> ModelConventions:
    if model_type and model_type in FAMILIES:
        return FAMILIES[model_type]
    return ModelConventions(family=model_type or "generic")
