"""Encode each distinct image of a forward pass once (Qwen2-VL and Qwen2.5-VL).

Why: GRPO samples every prompt G times, and TRL repeats the prompt, its images
included, G times in the batch. Unchanged, the vision tower encodes each image G
times in the generation prefill and G times again in the training forward and
backward: about 40 % of the model compute of a GRPO step on the tiny model
(MEASURED.md).

How: :func:`enable` replaces ``get_image_features`` of the model's inner
``Qwen2VLModel`` / ``Qwen2_5_VLModel`` (found through PEFT wrapping) on that one
instance, not on the class. The replacement splits ``pixel_values`` into per-image
row blocks (t*h*w rows per ``image_grid_thw`` row), finds images with the same grid
and equal pixels (a fingerprint first, ``torch.equal`` to confirm), encodes the
unique ones with the class's own method and rebuilds the per-image outputs by
indexing. A batch without duplicates goes through the original call unchanged.

Why the results are the same: the vision attention of these models is block-diagonal
per image (``cu_seqlens``), so an image's features do not depend on the other images
of the batch; indexing one encoding for every copy gives the same values (up to
float rounding: fewer rows change the matrix kernels' blocking), and in the backward
the copies' gradients are summed into that one encoding, which is what encoding each
copy separately would give (tests/test_vision_dedup.py checks logits, loss, every
LoRA gradient and greedy generation against the unpatched model).
"""

from __future__ import annotations

import types
from typing import Any

from harness.errors import UsageError

#: per-instance counters: images asked for, images encoded (tests and a run's check read them)
STATS = "_vision_dedup_stats"


def _supported_classes() -> tuple[type, ...]:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

    # Both split the tower's merged output per image by image_grid_thw (the code below
    # relies on it); Qwen3-VL also returns deepstack features per layer and is not covered.
    return (Qwen2VLModel, Qwen2_5_VLModel)


def vision_models(model: Any) -> list[Any]:
    """The modules of ``model`` (a transformers model, PEFT-wrapped or not) that own a
    vision tower (a ``visual`` child) and a ``get_image_features``."""
    import torch.nn as nn

    # "visual" as a registered child, not an attribute: PeftModel forwards unknown
    # attributes to the wrapped model, so hasattr alone would also match the wrappers
    return [m for m in model.modules()
            if isinstance(m._modules.get("visual"), nn.Module) and callable(getattr(m, "get_image_features", None))]


def supported(model: Any) -> bool:
    """Whether :func:`enable` would patch ``model`` (it has a vision model and all are supported)."""
    found = vision_models(model)
    return bool(found) and all(isinstance(m, _supported_classes()) for m in found)


def enable(model: Any) -> list[Any]:
    """Patch every vision model inside ``model`` (idempotent); returns the patched modules.
    UsageError if there is none, or one of a family whose output layout is not known here."""
    found = vision_models(model)
    if not found:
        raise UsageError(f"image dedup: {type(model).__name__} holds no vision model (a module with a visual tower "
                         "and get_image_features)")
    for m in found:
        if not isinstance(m, _supported_classes()):
            raise UsageError(f"image dedup supports Qwen2-VL and Qwen2.5-VL only, not {type(m).__name__}; "
                             "set dedup_images=false")
    for m in found:
        if "get_image_features" not in vars(m):
            # bound to the instance through MethodType (not a closure over it), so a deepcopy
            # of the model (a reference model) gets a patch bound to the copy
            m.get_image_features = types.MethodType(_get_image_features, m)
            setattr(m, STATS, {"calls": 0, "images": 0, "encoded": 0})
    return found


def disable(model: Any) -> None:
    for m in vision_models(model):
        vars(m).pop("get_image_features", None)
        vars(m).pop(STATS, None)


def stats(model: Any) -> dict[str, int]:
    """Calls, images asked for and images encoded, summed over the patched modules."""
    total = {"calls": 0, "images": 0, "encoded": 0}
    for m in vision_models(model):
        for k, v in getattr(m, STATS, {}).items():
            total[k] += v
    return total


def _get_image_features(self: Any, pixel_values: Any, image_grid_thw: Any = None, **kwargs: Any) -> Any:
    original = type(self).get_image_features
    count = getattr(self, STATS, None)
    n_images = 0 if image_grid_thw is None else int(image_grid_thw.shape[0])
    plan = None
    if n_images > 1 and not kwargs.get("output_attentions"):
        plan = _unique_images(pixel_values, image_grid_thw)
    if plan is None:
        if count is not None:
            count["calls"] += 1
            count["images"] += n_images
            count["encoded"] += n_images
        return original(self, pixel_values, image_grid_thw, **kwargs)
    keep, inverse, blocks = plan
    import torch

    out = original(self, torch.cat([blocks[i] for i in keep]), image_grid_thw[keep], **kwargs)
    rebuilt = _rebuild(out, inverse, [blocks[i].shape[0] for i in keep])
    if rebuilt is None:  # an output field whose layout is unknown: encode every copy after all
        rebuilt = original(self, pixel_values, image_grid_thw, **kwargs)
        keep = range(n_images)
    if count is not None:
        count["calls"] += 1
        count["images"] += n_images
        count["encoded"] += len(keep)
    return rebuilt


#: fixed pseudo-random projections for the fingerprints, per (columns, device)
_PROJECTIONS: dict[tuple, tuple[Any, Any]] = {}


def _projections(cols: int, rows: int, like: Any) -> tuple[Any, Any]:
    import torch

    key = (cols, like.device)
    cached = _PROJECTIONS.get(key)
    if cached is None or cached[1].shape[0] < rows:
        # a private generator: drawing from the global RNG would change the run's sampling
        gen = torch.Generator().manual_seed(0)
        n = max(rows, 4096)
        cached = (torch.rand(cols, generator=gen).to(like.device), torch.rand(n, generator=gen).to(like.device))
        _PROJECTIONS[key] = cached
    return cached


def _unique_images(pixel_values: Any, image_grid_thw: Any) -> tuple[list[int], list[int], tuple] | None:
    """(indices of the first copy of each distinct image, for every image the position of its
    distinct image in that list, the per-image row blocks), or None if all are distinct."""
    import torch

    rows = image_grid_thw.prod(-1).tolist()
    if sum(rows) != pixel_values.shape[0]:
        return None  # not one row block per grid row: leave it to the original to judge
    flat = pixel_values.reshape(pixel_values.shape[0], -1)
    w, u = _projections(flat.shape[1], max(rows), flat)
    # a per-image fingerprint in one pass and one device sync; equal pixels give equal
    # fingerprints, and torch.equal confirms every match, so a collision costs one compare
    per_row = flat.float() @ w
    fps = torch.stack([(part * u[: part.shape[0]]).sum() for part in torch.split(per_row, rows)]).tolist()
    blocks = torch.split(pixel_values, rows)
    grids = [tuple(g) for g in image_grid_thw.tolist()]
    buckets: dict[tuple, list[int]] = {}
    keep: list[int] = []
    inverse: list[int] = []
    for i, key in enumerate(zip(grids, fps)):
        match = next((j for j in buckets.get(key, ()) if torch.equal(blocks[i], blocks[keep[j]])), None)
        if match is None:
            match = len(keep)
            keep.append(i)
            buckets.setdefault(key, []).append(match)
        inverse.append(match)
    if len(keep) == len(inverse):
        return None
    return keep, inverse, blocks


def _rebuild(out: Any, inverse: list[int], unique_rows: list[int]) -> Any:
    """The unique images' output expanded to every image, or None for an unknown field."""
    import torch

    pooled = out.get("pooler_output")
    if not isinstance(pooled, (tuple, list)) or len(pooled) != len(unique_rows):
        return None
    starts = [0]
    for r in unique_rows:
        starts.append(starts[-1] + r)
    device = pooled[0].device
    patch_index = torch.cat([torch.arange(starts[j], starts[j] + unique_rows[j], device=device) for j in inverse])

    def patch_rows(value: Any) -> Any:
        # the tower's patch-level states (last_hidden_state, hidden_states): one row per
        # pixel_values row, images in order (Qwen2.5-VL permutes windows inside an image only)
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == starts[-1]:
            return value.index_select(0, patch_index)
        return None

    fields = {"pooler_output": tuple(pooled[j] for j in inverse)}
    for key, value in out.items():
        if key == "pooler_output":
            continue
        if isinstance(value, tuple):
            parts = [patch_rows(v) for v in value]
            if any(p is None for p in parts):
                return None
            fields[key] = tuple(parts)
        else:
            fields[key] = patch_rows(value)
            if fields[key] is None:
                return None
    for key, value in fields.items():
        out[key] = value
    return out
