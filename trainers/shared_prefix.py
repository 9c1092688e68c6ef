"""Run each distinct prompt through the language model once per GRPO training forward.

Why: TRL's GRPO scores a batch of N = B x G rows, each prompt followed by one of its G
completions, in one forward (``_get_per_token_logps_and_entropies``). The prompt is
the long part (about 38 of 40 tokens on ``synth_cls`` with the tiny model), so G - 1
of every G prompt passes, forward and backward, are repeats. After the image dedup
(trainers/vision_dedup.py) this was the largest duplicated work of a step.

How: :func:`enable` replaces that method on one trainer instance. Rows whose prompt
tokens (but the last), attention mask and images are equal form a group; the method

1. runs the group's first row, cut before its last prompt token, once, with a cache
   (``use_cache``; the images enter the model there);
2. repeats that cache for each row of its group (an index on the batch dimension:
   differentiable, so in the backward the rows' gradients are summed into the one
   prefix, which is what G separate prefixes would receive);
3. runs the last prompt token and the completion of every row on the repeated cache
   through TRL's own fused log-prob head (``fused_lm_head``), with the 3-D rope
   positions the full forward gives them: text positions continue from the prompt's
   ``rope_deltas``.

The last prompt token goes through the second pass so that the first completion
token's log-prob comes from the same fused head as the others. Results equal the
default path up to float rounding (tests/test_shared_prefix.py: log-probs, entropies,
and every LoRA gradient, vision tower included).

Falls back to TRL's method (unchanged results, no saving) where the assumptions do not
hold: not Qwen2-VL/Qwen2.5-VL, no repeated prompt, more than one process (two forward
calls before one backward: untested under DDP), gradient checkpointing (which turns the
cache off), MoE aux loss, chunked batches, or model inputs other than image grids.
"""

from __future__ import annotations

import types
from typing import Any

#: per-trainer counters: calls, calls that shared, rows, prefix rows run (tests and the bench read them)
STATS = "_shared_prefix_stats"

#: inputs TRL may pass that this path does not handle (another family's image fields)
_UNHANDLED = ("pixel_attention_mask", "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids",
              "image_position_ids")


def enable(trainer: Any) -> None:
    """Patch ``trainer``'s per-token log-prob method (idempotent)."""
    if "_get_per_token_logps_and_entropies" not in vars(trainer):
        trainer._get_per_token_logps_and_entropies = types.MethodType(_per_token_logps, trainer)
        setattr(trainer, STATS, {"calls": 0, "shared": 0, "rows": 0, "prefix_rows": 0})


def disable(trainer: Any) -> None:
    vars(trainer).pop("_get_per_token_logps_and_entropies", None)
    vars(trainer).pop(STATS, None)


def stats(trainer: Any) -> dict[str, int]:
    return dict(getattr(trainer, STATS, {}))


def supported(model: Any) -> bool:
    from trainers.vision_dedup import supported as qwen_vl

    return qwen_vl(model)


def _per_token_logps(self: Any, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int,
                     batch_size: int | None = None, compute_entropy: bool = False, compute_aux_loss: bool = False,
                     pixel_values: Any = None, image_grid_thw: Any = None, num_images: list[int] | None = None,
                     mm_token_type_ids: Any = None, **rest: Any) -> tuple[Any, Any, Any]:
    original = type(self)._get_per_token_logps_and_entropies
    args = dict(batch_size=batch_size, compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss,
                pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_images=num_images,
                mm_token_type_ids=mm_token_type_ids, **rest)
    count = getattr(self, STATS, None)
    plan = None
    if (not compute_aux_loss and all(rest.get(k) is None for k in _UNHANDLED)
            and (batch_size is None or batch_size >= input_ids.size(0))
            and getattr(self.accelerator, "num_processes", 1) == 1
            and not getattr(self.args, "gradient_checkpointing", False)
            and (pixel_values is None) == (image_grid_thw is None) and supported(model)):
        plan = _groups(input_ids, attention_mask, input_ids.size(1) - logits_to_keep - 1, pixel_values,
                       image_grid_thw, num_images)
    if count is not None:
        count["calls"] += 1
        count["rows"] += int(input_ids.size(0))
    if plan is None:
        return original(self, model, input_ids, attention_mask, logits_to_keep, **args)
    first, group, image_index = plan
    if count is not None:
        count["shared"] += 1
        count["prefix_rows"] += len(first)
    return _shared_forward(self, model, input_ids, attention_mask, logits_to_keep, compute_entropy, pixel_values,
                           image_grid_thw, mm_token_type_ids, first, group, image_index)


def _groups(input_ids: Any, attention_mask: Any, cut: int, pixel_values: Any, image_grid_thw: Any,
            num_images: list[int] | None) -> tuple[list[int], Any, list[int]] | None:
    """(the first row of each group, every row's group, the images of the first rows in
    model-input order), or None if no two rows share their prefix ``[:cut]``."""
    import torch

    if cut < 1 or not bool((attention_mask[:, :cut].sum(-1) > 0).all()):
        return None  # a prefix of padding only would attend to nothing
    n = input_ids.size(0)
    per_row_images: list[list[int]] = [[] for _ in range(n)]
    image_key: list[int] = []
    if image_grid_thw is not None:
        counts = num_images if num_images is not None else [1] * n
        if len(counts) != n or sum(counts) != image_grid_thw.size(0):
            return None
        image_key = _image_identity(pixel_values, image_grid_thw)
        if image_key is None:
            return None
        start = 0
        for row, k in enumerate(counts):
            per_row_images[row] = list(range(start, start + k))
            start += k
    ids = input_ids[:, :cut].masked_fill(attention_mask[:, :cut] == 0, -1).tolist()
    seen: dict[tuple, int] = {}
    first: list[int] = []
    group: list[int] = []
    for row in range(n):
        key = (tuple(ids[row]), tuple(image_key[i] for i in per_row_images[row]))
        if key not in seen:
            seen[key] = len(first)
            first.append(row)
        group.append(seen[key])
    if len(first) == n:
        return None
    images = [i for row in first for i in per_row_images[row]]
    return first, torch.tensor(group, device=input_ids.device), images


def _image_identity(pixel_values: Any, image_grid_thw: Any) -> list[int] | None:
    """For each image, the index of the first image with the same grid and pixels."""
    from trainers.vision_dedup import _unique_images

    if int(image_grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
        return None
    plan = _unique_images(pixel_values, image_grid_thw)
    if plan is None:
        return list(range(image_grid_thw.size(0)))
    keep, inverse, _ = plan
    return [keep[j] for j in inverse]


def _shared_forward(self: Any, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int,
                    compute_entropy: bool, pixel_values: Any, image_grid_thw: Any, mm_token_type_ids: Any,
                    first: list[int], group: Any, images: list[int]) -> tuple[Any, Any, None]:
    import torch

    cut = input_ids.size(1) - logits_to_keep - 1
    rows = torch.tensor(first, device=input_ids.device)
    prefix = {"input_ids": input_ids[rows, :cut], "attention_mask": attention_mask[rows, :cut], "use_cache": True,
              "logits_to_keep": 1}
    if mm_token_type_ids is not None:
        prefix["mm_token_type_ids"] = mm_token_type_ids[rows, :cut]
    if image_grid_thw is not None:
        blocks = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
        prefix["pixel_values"] = torch.cat([blocks[i] for i in images]) if images else pixel_values[:0]
        prefix["image_grid_thw"] = image_grid_thw[images]
    with self.accelerator.autocast():
        out = model(**prefix)
    cache = out.past_key_values
    cache.batch_select_indices(group)
    # The full forward's rope: a text token's three positions are its index among the
    # row's real tokens plus the row's delta (what the vision tokens' 2-D grid shifted
    # it by); get_rope_index gave the prompt's delta, and completions are text.
    deltas = out.rope_deltas
    text = attention_mask.long().cumsum(-1) - 1
    positions = text[:, cut:] + (0 if deltas is None else deltas.to(text.device)[group].reshape(-1, 1))
    positions = positions.unsqueeze(0).expand(3, -1, -1)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-logits_to_keep] = -100
    with self.accelerator.autocast():
        out = model(input_ids=input_ids[:, cut:], attention_mask=attention_mask, position_ids=positions,
                    past_key_values=cache, labels=labels[:, cut:], fused_lm_head=True)
    logps = out.log_probs[:, -logits_to_keep:]
    entropies = out.entropy[:, -logits_to_keep:] if compute_entropy else None
    return logps, entropies, None
