"""Preprocess each distinct image of a processor call once (Qwen2-VL family processors).

Why: GRPO samples every prompt G times and TRL tokenizes all B*G prompts in one
``apply_chat_template`` call, so the image processor resized, normalised and
patchified every image G times (60-75 ms of a 780 ms GRPO step on the tiny model,
py-spy).

How: :func:`enable` replaces ``_process_images`` on one processor instance (not on
the class). The replacement flattens the call's images as the image processor would,
finds equal images (the same object, or the same mode, size, palette, info and pixel
bytes: a hash of the bytes first, a byte comparison to confirm), runs the class's
own ``_process_images`` on the distinct ones and rebuilds, by indexing, ``pixel_values``
(t*h*w rows per image, the rows of its ``image_grid_thw`` row), ``image_grid_thw``
and the per-image placeholder strings. A call without duplicates, or with anything but
PIL images, goes through the original call unchanged.

Why the processor and not the image processor's ``preprocess``: an image processor
serialises its instance ``__dict__`` (``to_dict``) into the checkpoint's processor
config, so a patch there makes every ``save_pretrained`` fail (a method is not JSON);
a processor saves only its init arguments and sub-processors.

Why the outputs are equal: ``Qwen2VLImageProcessor`` and ``Qwen2VLImageProcessorPil``
process each image on its own (a same-shape stack is resized by per-image kernels;
rescaling and normalising are elementwise; patches are cut per image), and the
processor's placeholder for an image depends on that image's grid only, so copies get
the tensors and text of their distinct image (tests/test_processor_dedup.py checks
``torch.equal`` against the unpatched processor). Only those exact classes are patched:
subclasses in other families may add per-image fields or change the layout.
"""

from __future__ import annotations

import types
from typing import Any

from harness.errors import UsageError

#: per-instance counters: calls, images asked for, images preprocessed
STATS = "_processor_dedup_stats"


def _supported_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    return (Qwen2VLProcessor, Qwen2_5_VLProcessor), (Qwen2VLImageProcessor, Qwen2VLImageProcessorPil)


def supported(processor: Any) -> bool:
    """Whether :func:`enable` would patch ``processor`` (exact classes; see the module docstring)."""
    processors, image_processors = _supported_types()
    return type(processor) in processors and type(getattr(processor, "image_processor", None)) in image_processors


def enable(processor: Any) -> Any:
    """Patch ``processor`` (idempotent) and return it; UsageError for a processor it does not cover."""
    if not supported(processor):
        image_processor = type(getattr(processor, "image_processor", None)).__name__
        raise UsageError(f"image-processor dedup supports the Qwen2-VL and Qwen2.5-VL processors with a "
                         f"Qwen2VLImageProcessor, not {type(processor).__name__} with {image_processor}; "
                         "set dedup_images=false")
    if "_process_images" not in vars(processor):
        # bound through MethodType (not a closure), so a deepcopy of the processor is bound to the copy
        processor._process_images = types.MethodType(_process_images, processor)
        setattr(processor, STATS, {"calls": 0, "images": 0, "processed": 0})
    return processor


def disable(processor: Any) -> None:
    vars(processor).pop("_process_images", None)
    vars(processor).pop(STATS, None)


def stats(processor: Any) -> dict[str, int]:
    return dict(getattr(processor, STATS, {"calls": 0, "images": 0, "processed": 0}))


def _process_images(self: Any, images: Any, **kwargs: Any) -> Any:
    original = type(self)._process_images
    flat = _flat_pil_images(images)
    plan = _unique_images(flat) if flat is not None and len(flat) > 1 else None
    result, processed = None, 0
    if plan is not None:
        keep, inverse = plan
        unique, replacements = original(self, [flat[i] for i in keep], **kwargs)
        processed += len(keep)
        result = _expand(unique, replacements, inverse, len(keep))
    if result is None:  # nothing repeated, or an output whose layout is not known here
        result = original(self, images, **kwargs)
        processed += len(flat) if flat is not None else 0
    count = getattr(self, STATS, None)
    if count is not None and flat is not None:
        count["calls"] += 1
        count["images"] += len(flat)
        count["processed"] += processed
    return result


def _flat_pil_images(images: Any) -> list | None:
    """The call's images in the order the image processor flattens them (a list, or a list
    of per-prompt lists), or None when they are not all PIL images."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if not isinstance(images, (list, tuple)):
        return None
    if images and all(isinstance(x, (list, tuple)) for x in images):
        flat = [img for per_prompt in images for img in per_prompt]
    else:
        flat = list(images)
    return flat if all(isinstance(x, Image.Image) for x in flat) else None


def _unique_images(images: list) -> tuple[list[int], list[int]] | None:
    """(index of the first copy of each distinct image, for every image the position of its
    distinct image in that list), or None if all are distinct."""
    keep: list[int] = []
    inverse: list[int] = []
    raw: list[bytes] = []  # the distinct images' pixel bytes
    by_object: dict[int, int] = {}
    buckets: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        match = by_object.get(id(img))  # TRL's deepcopy keeps a prompt's G copies one object
        if match is None:
            data = img.tobytes()
            key = (img.mode, img.size, hash(data))
            match = next((j for j in buckets.get(key, ()) if _same(img, data, images[keep[j]], raw[j])), None)
            if match is None:
                match = len(keep)
                keep.append(i)
                raw.append(data)
                buckets.setdefault(key, []).append(match)
            by_object[id(img)] = match  # the list holds img, so its id is not reused meanwhile
        inverse.append(match)
    return None if len(keep) == len(images) else (keep, inverse)


def _same(a: Any, a_bytes: bytes, b: Any, b_bytes: bytes) -> bool:
    # palette and info decide the RGB conversion (a "P" image's colours, a transparency key)
    try:
        return a_bytes == b_bytes and a.getpalette() == b.getpalette() and a.info == b.info
    except Exception:  # an info value that cannot be compared: treat as distinct
        return False


def _expand(processed: Any, replacements: list, inverse: list[int], n_unique: int) -> Any:
    """(processed, replacements) for every image from those of the distinct images, or None
    when ``processed`` holds a field or a type whose per-image layout is not known here."""
    import numpy as np
    import torch

    if set(processed.keys()) != {"pixel_values", "image_grid_thw"}:
        return None
    pixels, grid = processed["pixel_values"], processed["image_grid_thw"]
    if len(grid) != n_unique or len(replacements) not in (0, n_unique):
        return None
    rows = [int(np.prod([int(v) for v in g])) for g in grid]
    if sum(rows) != len(pixels):
        return None
    if isinstance(pixels, torch.Tensor) and isinstance(grid, torch.Tensor):
        blocks = torch.split(pixels, rows)
        pixels = torch.cat([blocks[j] for j in inverse])
        grid = grid[torch.tensor(inverse, dtype=torch.long, device=grid.device)]
    elif isinstance(pixels, np.ndarray) and isinstance(grid, np.ndarray):
        blocks = np.split(pixels, np.cumsum(rows)[:-1])
        pixels = np.concatenate([blocks[j] for j in inverse])
        grid = grid[np.asarray(inverse)]
    else:
        return None
    processed["pixel_values"] = pixels
    processed["image_grid_thw"] = grid
    return processed, [replacements[j] for j in inverse] if replacements else replacements
