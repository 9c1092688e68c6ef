"""The embedded tiny model: a real Qwen2-VL (``Qwen2VLForConditionalGeneration``) at toy size.

Built fully offline, so the whole pipeline (backends, tasks, RL trainers) can be
exercised on a CPU without downloading anything:

1. :func:`build_untrained` trains a byte-level BPE tokenizer (same pre-tokenizer,
   normaliser and special tokens as Qwen2) on a corpus, builds a tiny
   ``Qwen2VLConfig`` around it, initialises the weights from a seed and saves a
   directory that plain ``AutoProcessor`` / ``AutoModelForImageTextToText`` load;
2. :func:`pretrain` runs a fixed number of AdamW steps on (prompt, answer) pairs
   (loss on the answer tokens only), deterministic for a seed with one thread;
3. :func:`resolve_tiny` caches the result under ``$HARNESS_CACHE/models`` (or
   ``~/.cache/harness/models``), keyed by the recipe, the step count and the
   training data's version, building it once even with concurrent processes.

The training data is not defined here: anything satisfying :class:`TinyData`
(e.g. the synthetic tasks) is plugged in.

Only the standard library is imported at module import; torch, tokenizers and
transformers are imported by the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.prompt import Prompt

# Bump when the build or training procedure changes in a way that changes weights:
# it is part of the cache key, so stale caches are rebuilt instead of reused.
BUILD_VERSION = "1"

# Qwen2-VL's special tokens (the tokenizer of Qwen2-VL-*-Instruct has exactly these).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2's pre-tokenizer split (digits are single tokens: good for coordinates).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The chat template of Qwen2-VL-*-Instruct without its default system prompt: on the
# tiny model those ~11 tokens of every row cost 13 % of the pretraining compute and
# carry no information. A system message, when given, is rendered as in Qwen2-VL.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Always in the tokenizer corpus, so the template's own words are cheap tokens.
TEMPLATE_TEXTS = ("system", "user", "assistant", "You are a helpful assistant.", "Picture 1: ", "Video 1: ")

# Written into the model dir: what it was built from (provenance, cache validation).
INFO_FILE = "harness_tiny.json"

# Measured on a 2-core CPU, one thread, default recipe, batch 32, 4 micro-batches, on the
# synthetic pretrain mixture (1000 steps in 564 s); for the time estimate printed only.
_STEPS_PER_SECOND_ESTIMATE = 1.75


@dataclass(frozen=True)
class TinyRecipe:
    """Architecture, tokenizer and pre-training hyper-parameters of the tiny model."""

    # language model: small, because what limits a 10-minute CPU pretraining is the
    # number of examples seen, and the vision tower is what must learn most
    hidden_size: int = 192
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 4096
    # Qwen2-VL's 1e6 leaves positions that differ by a few image rows or columns
    # almost unrotated at this head size (the w section gets frequencies ~1e-5);
    # 100 keeps the 4x4 grid of image tokens distinguishable
    rope_theta: float = 100.0
    tie_word_embeddings: bool = True
    # vision tower
    vision_depth: int = 2
    vision_embed_dim: int = 128
    vision_heads: int = 4
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    # image side in pixels: every square image, whatever its size, is resized to
    # side x side, i.e. (side/patch)**2 patches and (side/(patch*merge))**2 image
    # tokens (see min_pixels/max_pixels)
    image_side: int = 112
    # BPE vocabulary (byte alphabet + merges), special tokens come on top
    vocab_size: int = 1500
    seed: int = 0
    # pre-training (resolve_tiny)
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 50
    final_lr_ratio: float = 0.1
    # the vision tower learns from scratch: its learning rate is lr * vision_lr_scale
    vision_lr_scale: float = 6.0
    # "example": each row's answer-token mean counts equally; "token": all answer tokens
    # do; "sqrt": a row's token-loss sum over the square root of its answer length.
    # "sqrt" (measured, 300 samples per split): grounding acc@0.5 7.3 -> 10.7 %, mIoU
    # 10.8 -> 16.8 % against "example", classification equal, counting 47.7 -> 42.3 %:
    # a box answer has ~20 tokens of which ~4 carry information, and "example" gave
    # those a twentieth of a one-word answer's weight each
    loss_per: str = "sqrt"
    micro_batches: int = 4

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError("hidden_size must split into num_heads heads of even size")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.vision_embed_dim % self.vision_heads:
            raise ValueError("vision_embed_dim must be a multiple of vision_heads")
        if self.loss_per not in ("example", "sqrt", "token"):
            raise ValueError(f"loss_per must be 'example', 'sqrt' or 'token', not {self.loss_per!r}")
        if self.image_side % self.resize_factor:
            raise ValueError(f"image_side must be a multiple of patch_size*spatial_merge_size={self.resize_factor}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def resize_factor(self) -> int:
        return self.patch_size * self.spatial_merge_size

    @property
    def image_pixels(self) -> int:
        return self.image_side * self.image_side

    @property
    def min_pixels(self) -> int:
        """Processor lower pixel limit: half a resize step below ``image_side**2``.

        With the limits at exactly ``side**2`` smart_resize's float arithmetic
        (``floor(s / sqrt(s*s / M) / 28)``) lands one step short for many sizes
        (112 px: squares of 130, 137, 144, 150, 300, 384 px, ... become 84 px, ~12 %
        of sizes 8..3000). Any limit in ((side-f)**2, side**2] maps small squares
        to ``side`` and any in [side**2, (side+f)**2) maps large ones to ``side``;
        the window's midpoints are robust to rounding.
        """
        return (self.image_side - self.resize_factor // 2) ** 2

    @property
    def max_pixels(self) -> int:
        """Processor upper pixel limit: half a resize step above ``image_side**2``."""
        return (self.image_side + self.resize_factor // 2) ** 2

    @property
    def image_tokens(self) -> int:
        return (self.image_side // self.resize_factor) ** 2

    @property
    def mrope_section(self) -> list[int]:
        """Temporal/height/width split of the rotary half-dimension, in Qwen2-VL's
        16:24:24 proportion; sums to head_dim/2 as the model requires."""
        half = self.head_dim // 2
        t = half // 4
        h = (half - t) // 2
        return [t, h, half - t - h]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self, *extra: Any) -> str:
        """A stable short hash of the recipe (plus ``extra`` parts, e.g. a data version)."""
        payload = json.dumps([BUILD_VERSION, self.to_dict(), [str(e) for e in extra]], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def with_(self, **changes: Any) -> TinyRecipe:
        return replace(self, **changes)


@runtime_checkable
class TinyData(Protocol):
    """The training data of the tiny model, plugged in from outside (e.g. synthetic tasks).

    ``version`` must change whenever ``corpus`` or ``examples`` change: it is part
    of the cache key. ``examples(seed)`` is an endless (or long enough),
    deterministic stream of (prompt, target text) pairs.
    """

    version: str

    def corpus(self) -> Iterable[str]: ...

    def examples(self, seed: int) -> Iterator[tuple[Prompt, str]]: ...


# --------------------------------------------------------------------------- build


def _ensure_torchvision() -> None:
    # transformers.image_utils imports torchvision whenever it is installed, so even
    # text-only transformers imports fail on a CPU torch without this fix.
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def train_tokenizer(recipe: TinyRecipe, corpus: Iterable[str]):
    """A Qwen2-style byte-level BPE tokenizer (``Qwen2Tokenizer``) trained on ``corpus``.

    Deterministic: the corpus is materialised in order and trained single-threaded.
    Special tokens get ids 0..13 (in :data:`SPECIAL_TOKENS` order).
    """
    _ensure_torchvision()
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    texts = [str(t) for t in corpus] + list(TEMPLATE_TEXTS)
    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size + len(SPECIAL_TOKENS),
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with _env(TOKENIZERS_PARALLELISM="false"):
        tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="left",
        model_max_length=recipe.max_position_embeddings,
    )


def make_config(recipe: TinyRecipe, tokenizer):
    _ensure_torchvision()
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=recipe.hidden_size,
            intermediate_size=recipe.intermediate_size,
            num_hidden_layers=recipe.num_layers,
            num_attention_heads=recipe.num_heads,
            num_key_value_heads=recipe.num_kv_heads,
            max_position_embeddings=recipe.max_position_embeddings,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": recipe.rope_theta,
                "mrope_section": recipe.mrope_section,
            },
            use_sliding_window=False,
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=recipe.vision_depth,
            embed_dim=recipe.vision_embed_dim,
            hidden_size=recipe.hidden_size,  # the merger projects into the LM width
            num_heads=recipe.vision_heads,
            mlp_ratio=4,
            patch_size=recipe.patch_size,
            spatial_merge_size=recipe.spatial_merge_size,
            temporal_patch_size=recipe.temporal_patch_size,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=recipe.tie_word_embeddings,
    )


def make_processor(recipe: TinyRecipe, tokenizer):
    _ensure_torchvision()
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    sizing = dict(
        min_pixels=recipe.min_pixels,
        max_pixels=recipe.max_pixels,
        patch_size=recipe.patch_size,
        temporal_patch_size=recipe.temporal_patch_size,
        merge_size=recipe.spatial_merge_size,
    )
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**sizing),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**sizing),
        chat_template=CHAT_TEMPLATE,
    )


def _write_info(model_dir: Path, info: dict[str, Any]) -> None:
    path = Path(model_dir) / INFO_FILE
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(info)
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


def read_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The build record written next to the weights ({} if there is none)."""
    path = Path(model_dir) / INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def build_untrained(recipe: TinyRecipe, out_dir: str | os.PathLike, corpus: Iterable[str]) -> Path:
    """Tokenizer + randomly initialised tiny Qwen2-VL + processor, saved to ``out_dir``.

    Deterministic for a recipe and corpus (weights from ``torch.manual_seed(recipe.seed)``).
    """
    import torch

    _ensure_torchvision()
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(recipe, corpus)
    processor = make_processor(recipe, tokenizer)
    config = make_config(recipe, tokenizer)

    torch.manual_seed(recipe.seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32)
    end, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[end, pad], pad_token_id=pad, do_sample=False)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    _write_info(
        out,
        {
            "recipe": recipe.to_dict(),
            "build_version": BUILD_VERSION,
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "pretrained": False,
        },
    )
    return out


# ------------------------------------------------------------------------ pretrain


def _answer_lengths(tokenizer, prompt_texts: list[str], full_texts: list[str]) -> list[int]:
    """Number of tokens each full text adds to its prompt (the answer and ``<|im_end|>``).

    Computed on the unexpanded text: image placeholder expansion happens inside the
    prompt and changes both lengths equally.
    """
    p_ids = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(full_texts, add_special_tokens=False)["input_ids"]
    out = []
    for p, f, text in zip(p_ids, f_ids, full_texts):
        if f[: len(p)] != p:
            raise ValueError(f"prompt tokens are not a prefix of prompt+answer tokens for {text!r}")
        out.append(len(f) - len(p))
    return out


def collate(processor, batch: list[tuple[Prompt, str]]) -> dict[str, Any]:
    """Processor inputs plus ``labels`` (-100 except on answer tokens) for a batch."""
    tokenizer = processor.tokenizer
    end = "<|im_end|>"
    prompts = [processor.apply_chat_template(p.messages(), add_generation_prompt=True, tokenize=False) for p, _ in batch]
    fulls = [pt + target + end for pt, (_, target) in zip(prompts, batch)]
    n_answer = _answer_lengths(tokenizer, prompts, fulls)
    images = [ref.load() for p, _ in batch for ref in p.images]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        inputs = processor(text=fulls, images=images or None, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = old_side
    ids = inputs["input_ids"]
    labels = ids.new_full(ids.shape, -100)
    width = ids.shape[1]
    for row, n in enumerate(n_answer):
        labels[row, width - n :] = ids[row, width - n :]
    inputs["labels"] = labels
    return dict(inputs)


def length_groups(processor, batch: list[tuple[Prompt, str]], groups: int) -> list[list[int]]:
    """Indices of ``batch`` sorted by (approximate) token length, cut into ``groups``
    near-equal contiguous chunks, so each chunk pads to a similar length."""
    n = len(batch)
    groups = max(1, min(int(groups), n))
    if groups == 1:
        return [list(range(n))]
    texts = [p.text + " " + target for p, target in batch]
    lengths = [len(ids) for ids in processor.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # images add a similar number of tokens each; count them so image-heavy rows group together
    keys = [(lengths[i] + 16 * len(batch[i][0].images), i) for i in range(n)]
    order = [i for _, i in sorted(keys)]
    bounds = [round(k * n / groups) for k in range(groups + 1)]
    return [order[bounds[k] : bounds[k + 1]] for k in range(groups) if bounds[k + 1] > bounds[k]]


def _lr_lambda(steps: int, warmup: int, final_ratio: float):
    def f(step: int) -> float:  # step = number of optimizer steps already taken
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(1, steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def _replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` (same parent); the old content is removed afterwards."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(target, old)
    os.rename(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _per_example_loss(model, inputs: dict[str, Any], power: float = 1.0):
    """Sum over rows of each row's answer-token loss divided by (its answer length)**power.

    Averaging over all answer tokens of a batch (power 0) lets long answers drown short
    ones: a detection target has ~40 tokens, a colour or a count 2, so in a task mixture
    the short answers got ~2 % of the gradient and were never learned (the model
    answered every colour question with 'red'). Per-row means (power 1) give every
    example equal weight; power 0.5 sits between the two.
    """
    import torch.nn.functional as F

    labels = inputs["labels"]
    logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    token_loss = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none")
    mask = (shift_labels != -100).float()
    return ((token_loss * mask).sum(1) / mask.sum(1).clamp(min=1.0) ** power).sum()


# loss_per -> power of the answer length each example's loss sum is divided by
_LOSS_POWER = {"example": 1.0, "sqrt": 0.5}


def pretrain(
    model_dir: str | os.PathLike,
    examples: Iterator[tuple[Prompt, str]],
    steps: int,
    batch_size: int = 32,
    lr: float = 5e-4,
    warmup: int = 50,
    final_lr_ratio: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 50,
    threads: int | None = 1,
    micro_batches: int = 4,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    vision_lr_scale: float = 1.0,
    loss_per: str = "example",
) -> dict[str, Any]:
    """Supervised pre-training of the model in ``model_dir`` on (prompt, target) pairs.

    A fixed number of AdamW steps with linear warm-up and cosine decay to
    ``final_lr_ratio * lr``; the loss covers the target tokens and the closing
    ``<|im_end|>`` only (``final_loss`` in the returned stats is the mean of the
    last 20 steps). Deterministic for a seed and example stream with
    ``threads=1`` on the same machine. Each batch is sorted by length and run as
    ``micro_batches`` forward/backward passes (gradients accumulated, loss still
    the mean over all answer tokens of the batch): with mixed prompt lengths this
    halves the padding (on the synthetic mixture: 164 -> 97 tokens per row for
    81 real ones). The model is saved back to ``model_dir``
    (written next to it, then swapped in by rename). Returns statistics.
    """
    import torch
    from tqdm.auto import tqdm

    _ensure_torchvision()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_dir = Path(model_dir)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        processor = AutoProcessor.from_pretrained(model_dir)
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        model.train()
        torch.manual_seed(seed)
        # A vision tower trained from scratch needs a larger step than the language model
        # (shapes stayed at chance for 300 steps at the LM's rate); groups: (vision?, decay?).
        groups = []
        for vision in (False, True):
            for decay in (True, False):
                params = [p for n, p in model.named_parameters()
                          if (".visual." in f".{n}") == vision and (p.ndim >= 2) == decay]
                if params:
                    groups.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                                   "lr": lr * (vision_lr_scale if vision else 1.0)})
        opt = torch.optim.AdamW(
            groups,
            lr=lr,
            betas=(0.9, 0.98),
            eps=1e-8,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, warmup, final_lr_ratio))
        losses: list[float] = []
        examples = iter(examples)
        t0 = time.perf_counter()
        bar = tqdm(total=steps, desc="pretrain tiny", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        for step in range(steps):
            batch = [next(examples) for _ in range(batch_size)]
            parts = [collate(processor, [batch[i] for i in idx]) for idx in length_groups(processor, batch, micro_batches)]
            counts = [int((p["labels"] != -100).sum()) for p in parts]
            total = max(1, sum(counts))
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            for inputs, count in zip(parts, counts):
                if count == 0:
                    continue
                if loss_per in _LOSS_POWER:
                    part = _per_example_loss(model, inputs, _LOSS_POWER[loss_per]) / batch_size
                else:
                    # mean over the micro-batch's answer tokens, re-weighted: the sum is the
                    # mean over the whole batch's answer tokens, as without micro-batches
                    part = model(**inputs).loss * (count / total)
                part.backward()
                loss += float(part.detach())
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            sched.step()
            losses.append(loss)
            bar.update(1)
            if step % 10 == 0 or step == steps - 1:
                recent = losses[-10:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if log_every and not progress and (step + 1) % log_every == 0:
                recent = losses[-log_every:]
                print(f"pretrain step {step + 1}/{steps} loss {sum(recent) / len(recent):.4f}", file=sys.stderr)
        bar.close()
        seconds = time.perf_counter() - t0

        model.eval()
        tail = losses[-min(len(losses), 20) :] if losses else [float("nan")]
        stats = {
            "steps": steps,
            "batch_size": batch_size,
            "micro_batches": micro_batches,
            "lr": lr,
            "seed": seed,
            "first_loss": losses[0] if losses else float("nan"),
            "final_loss": sum(tail) / len(tail),
            "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 3) if seconds > 0 else None,
        }
        tmp = model_dir.with_name(f".{model_dir.name}.tmp-{os.getpid()}-{time.time_ns()}")
        try:
            shutil.copytree(model_dir, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.index.json"))
            model.save_pretrained(tmp)
            _write_info(tmp, {"pretrained": True, "pretrain": stats})
            _replace_dir(tmp, model_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return stats
    finally:
        torch.set_num_threads(old_threads)


# ------------------------------------------------------------------------- resolve


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where built models live: ``cache_dir``, else ``$HARNESS_CACHE/models``, else
    ``~/.cache/harness/models``."""
    if cache_dir is not None:
        return Path(cache_dir)
    base = os.environ.get("HARNESS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "harness") / "models"


def tiny_name(data: TinyData, recipe: TinyRecipe | None = None, steps: int | None = None) -> str:
    recipe = recipe or TinyRecipe()
    if steps is not None:
        recipe = recipe.with_(steps=steps)
    return f"tiny-qwen2vl-{recipe.key(data.version)}"


def _is_complete(path: Path) -> bool:
    return (path / "config.json").exists() and read_info(path).get("pretrained") is True


def resolve_tiny(
    data: TinyData,
    recipe: TinyRecipe | None = None,
    steps: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The pretrained tiny model's directory, built on first use and cached.

    The cache key covers the recipe (architecture, tokenizer and training
    hyper-parameters), ``steps`` (overrides ``recipe.steps``) and
    ``data.version``. Concurrent callers build once (file lock); the build goes
    to a temporary directory that is renamed into place when complete.
    """
    from filelock import FileLock

    recipe = recipe or TinyRecipe()
    if steps is not None:
        recipe = recipe.with_(steps=steps)
    root = cache_root(cache_dir)
    name = tiny_name(data, recipe)
    final = root / name
    if _is_complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if _is_complete(final):  # built by another process while we waited
            return final
        minutes = recipe.steps / _STEPS_PER_SECOND_ESTIMATE * (recipe.batch_size / 32) / 60
        print(
            f"building the embedded tiny model (first use only, ~{max(1, round(minutes))} minutes): {final}",
            file=sys.stderr,
            flush=True,
        )
        # left by a killed build (its own dir, or pretrain's save dir next to it)
        for stale in [*root.glob(f".{name}.build-*"), *root.glob(f"..{name}.build-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{name}.build-{os.getpid()}"
        try:
            t0 = time.perf_counter()
            build_untrained(recipe, tmp, data.corpus())
            stats = pretrain(
                tmp,
                data.examples(recipe.seed),
                steps=recipe.steps,
                batch_size=recipe.batch_size,
                lr=recipe.lr,
                warmup=recipe.warmup,
                final_lr_ratio=recipe.final_lr_ratio,
                micro_batches=recipe.micro_batches,
                vision_lr_scale=recipe.vision_lr_scale,
                loss_per=recipe.loss_per,
                seed=recipe.seed,
                progress=progress,
            )
            _write_info(tmp, {"data_version": data.version, "name": name})
            if final.exists():  # incomplete leftover
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"built {final} in {time.perf_counter() - t0:.0f} s (final loss {stats['final_loss']:.3f})",
            file=sys.stderr,
            flush=True,
        )
    return final


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The weights file of a shipped model, and what a shipped directory must hold to load
# in AutoProcessor / AutoModelForImageTextToText.
SHIPPED_WEIGHTS = "model.safetensors"
SHIPPED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "processor_config.json", SHIPPED_WEIGHTS, INFO_FILE)


def export_half(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a built model to ``dst`` with its floating-point weights stored in float16.

    Halves the file (the 2.24 M-parameter default fits in 4.5 MB, small enough to ship
    inside the package). ``config.json`` keeps float32 as the model's dtype, so loaders
    upcast on load and compute exactly as with any float32 model. The info file records
    the recipe key, the hash of the exported weights and of the float32 source. Written
    to a temporary directory and renamed into place: ``dst`` is never half-written.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    info = read_info(src)
    if not info.get("pretrained"):
        raise ValueError(f"{src} is not a pretrained tiny model (no 'pretrained' in {INFO_FILE})")
    missing = [f for f in SHIPPED_FILES if f != INFO_FILE and not (src / f).is_file()]
    if missing:
        raise ValueError(f"{src} lacks {', '.join(missing)}: not a complete model directory to ship")
    tensors = load_file(str(src / SHIPPED_WEIGHTS))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    tmp = dst.with_name(f".{dst.name}.export-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in SHIPPED_FILES:
            if name not in (SHIPPED_WEIGHTS, INFO_FILE):
                shutil.copy2(src / name, tmp / name)
        for extra in src.glob("*.jinja"):  # the chat template, where transformers saves it apart
            shutil.copy2(extra, tmp / extra.name)
        save_file(half, str(tmp / SHIPPED_WEIGHTS), metadata={"format": "pt"})
        os.chmod(tmp / SHIPPED_WEIGHTS, 0o644)  # shipped files are read by every user of the install
        recipe = TinyRecipe(**info["recipe"])
        info["shipped"] = {
            "dtype": "float16",
            "weights_sha256": sha256_file(tmp / SHIPPED_WEIGHTS),
            "source_weights_sha256": sha256_file(src / SHIPPED_WEIGHTS),
            "recipe_key": recipe.key(info.get("data_version", "")),
            "built_on": info.get("name", ""),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            os.rename(dst, old)
            os.rename(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


__all__ = [
    "TinyRecipe",
    "TinyData",
    "SPECIAL_TOKENS",
    "CHAT_TEMPLATE",
    "build_untrained",
    "pretrain",
    "resolve_tiny",
    "cache_root",
    "tiny_name",
    "read_info",
    "export_half",
    "sha256_file",
    "collate",
    "length_groups",
]
