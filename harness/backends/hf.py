"""``hf`` backend: a Hugging Face transformers model (optionally with a PEFT adapter), in-process.

Prompts are rendered with the model's own chat template
(``processor.apply_chat_template``), batched with left padding, and decoded
greedily or by sampling exactly as :class:`SamplingParams` says: the model's
``generation_config`` defaults for top-k, repetition penalty etc. are *not*
applied, so the numbers mean the same thing as in the other backends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from harness import hub
from harness.backends.base import Backend, SamplingParams
from harness.compat.lean_imports import skip_sklearn_in_transformers
from harness.compat.torchvision_cpu import ensure_torchvision
from harness.conventions import BOX_SPACES, ModelConventions, conventions_for
from harness.errors import UsageError
from harness.prompt import Prompt
from harness.validation import WEIGHT_SUFFIXES, adapter_base, check_adapter_dir, check_model_dir, check_number

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "auto": "auto",
}


def _local_dir(name: str | os.PathLike) -> Path | None:
    """A local directory for a model name: the path itself, or a cached hub snapshot."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:
        return None


def _hash_weights(directory: Path, h: hashlib._Hash, prefix: str) -> int:
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) and ".cache" not in p.parts
    )
    for p in files:
        h.update(f"{prefix}/{p.relative_to(directory).as_posix()}\0".encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return len(files)


def weights_fingerprint(directory: str | os.PathLike) -> str:
    """sha256 over a model directory's weight files: identifies the weights wherever the
    directory lives (what HFBackend.fingerprint reports for a model without adapters)."""
    h = hashlib.sha256()
    _hash_weights(Path(directory), h, "base")
    return h.hexdigest()


def _pixel_limits(image_processor: Any) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) of a Qwen-VL-style image processor, whatever the
    transformers version keeps them in (``size.shortest_edge/longest_edge`` in v5,
    ``min_pixels``/``max_pixels`` attributes or ``size`` keys before)."""
    size = getattr(image_processor, "size", None)
    lo = hi = None
    if size is not None:
        get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
        lo = get("min_pixels", None) or get("shortest_edge", None)
        hi = get("max_pixels", None) or get("longest_edge", None)
    lo = getattr(image_processor, "min_pixels", None) or lo
    hi = getattr(image_processor, "max_pixels", None) or hi
    return (int(lo) if lo else None), (int(hi) if hi else None)


def processor_conventions(model_type: str | None, processor: Any) -> ModelConventions:
    """A model's conventions: its family's (by ``model_type``), with the image sizing its
    processor actually applies. Needs no weights, so trainers use it too."""
    conv = conventions_for(model_type)
    ip = getattr(processor, "image_processor", None)
    found: dict[str, Any] = {}
    if ip is not None:
        lo, hi = _pixel_limits(ip)
        if lo:
            found["min_pixels"] = lo
        if hi:
            found["max_pixels"] = hi
        patch, merge = getattr(ip, "patch_size", None), getattr(ip, "merge_size", None)
        if patch and merge:
            found["resize_factor"] = int(patch) * int(merge)
    return conv.with_overrides(**found)


def _set_pixel_limits(image_processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    size = getattr(image_processor, "size", None)
    if size is None:
        raise ValueError(f"{type(image_processor).__name__} has no pixel limits to set")
    if isinstance(size, dict):
        new = dict(size)
        if min_pixels is not None:
            new["shortest_edge"] = min_pixels
        if max_pixels is not None:
            new["longest_edge"] = max_pixels
        new.pop("min_pixels", None)
        new.pop("max_pixels", None)
        image_processor.size = type(size)(**new) if type(size) is not dict else new
    else:  # SizeDict (transformers 5)
        if min_pixels is not None:
            size.shortest_edge = min_pixels
        if max_pixels is not None:
            size.longest_edge = max_pixels
    for attr, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None and hasattr(image_processor, attr):
            setattr(image_processor, attr, value)


def check_model_and_adapter(model: str | os.PathLike, adapter: Any) -> int:
    """The --model directory (a model, or a PEFT adapter naming its base) and an adapter= option
    checked without loading anything; returns how many adapters they name."""
    n_adapters = 0
    local = Path(model).expanduser()
    if (local / "adapter_config.json").is_file():
        check_adapter_dir(local)
        n_adapters += 1
    elif local.is_dir():
        check_model_dir(local)
    elif local.exists():
        raise UsageError(f"--model {model} is a file; give a model directory")
    elif str(model).startswith(("/", ".", "~")) or str(model).count("/") > 1:
        # a path, not a hub id ("org/name", looked up in the local hub cache when loading)
        raise UsageError(f"--model {model}: no such directory")
    elif not hub.is_hub_id(model) and hub.cached(str(model)) is None:
        # neither a directory nor org/name: refused here, not after the seconds torch takes to import
        raise UsageError(f"--model {model}: no such directory, and not a hub id (org/name); use 'tiny', a model "
                         "directory (config.json + weights) or a hub id")
    if adapter not in (None, ""):
        path = Path(adapter).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise UsageError(f"adapter={path} is not a PEFT adapter directory (no adapter_config.json)")
        check_adapter_dir(path)
        n_adapters += 1
    return n_adapters


def resolve_model_and_adapters(model: str | os.PathLike,
                               adapter: str | os.PathLike | None) -> tuple[Any, Path, list[Path]]:
    """(base model as named, its local directory, adapter dirs to apply in order): a PEFT
    adapter directory as the model names its base (every backend that loads
    a model directory, hf and vllm, resolves it here). A hub id not in the local cache is
    downloaded unless downloads are off (harness/hub.py)."""
    adapters: list[Path] = []
    base: Any = model
    local = Path(model).expanduser()
    if (local / "adapter_config.json").is_file():
        base = adapter_base(local)
        adapters.append(local)
    elif local.is_dir():
        base = local
    if adapter not in (None, ""):
        a = Path(adapter).expanduser()
        if not (a / "adapter_config.json").is_file():
            raise ValueError(f"adapter={adapter!r} is not a PEFT adapter directory (no adapter_config.json)")
        adapters.append(a)
    found = _local_dir(base)
    if found is None and hub.is_hub_id(base):
        found = hub.fetch(str(base))  # downloads when allowed; one-line UsageError when not
    if found is None:
        raise UsageError(
            f"model {str(base)!r} not found: not a local model directory, and not a hub id (org/name). "
            "Use 'tiny', a directory holding config.json and the weights, or a hub id."
        )
    return base, found, adapters


class HFBackend(Backend):
    """Generation with ``transformers`` (``AutoProcessor`` + ``AutoModelForImageTextToText``).

    ``model`` is a model directory or hub id (the local cache, else downloaded: harness/hub.py), or a
    PEFT adapter directory (its ``adapter_config.json`` names the base model);
    ``adapter`` applies an adapter on top of ``model``. Adapters are merged into
    the weights after loading. ``threads`` sets torch's (process-wide) CPU thread
    count; ``box_space``, ``min_pixels`` and ``max_pixels`` override the model's
    conventions (the pixel limits are applied to the processor too).
    """

    name = "hf"
    ARGS = (
        "model",
        "dtype",
        "device",
        "threads",
        "adapter",
        "box_space",
        "min_pixels",
        "max_pixels",
        "attn_implementation",
        "batch_size",
    )

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        threads: int | str | None = 1,
        adapter: str | os.PathLike | None = None,
        box_space: str | None = None,
        min_pixels: int | str | None = None,
        max_pixels: int | str | None = None,
        attn_implementation: str | None = None,
        batch_size: int | str | None = None,
        **unknown: Any,
    ) -> None:
        self.check_args(model, dtype=dtype, device=device, threads=threads, adapter=adapter, box_space=box_space,
                        min_pixels=min_pixels, max_pixels=max_pixels, attn_implementation=attn_implementation,
                        batch_size=batch_size, **unknown)

        ensure_torchvision()  # before transformers: its image utils import torchvision
        skip_sklearn_in_transformers()  # 2.4 s of start-up where scikit-learn is installed
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._torch = torch
        if threads not in (None, "", 0, "0"):
            torch.set_num_threads(int(threads))
        self.device = str(device)
        self.dtype = DTYPES[str(dtype)]
        # Rows (prompts x completions) per forward pass; None: whatever the caller
        # batched (the evaluator's --batch_size). Set it to cap GPU memory when n > 1.
        self.batch_size = max(1, int(batch_size)) if batch_size not in (None, "") else None

        base, adapters = self._resolve(model, adapter)
        self.model_path = str(base)
        self.adapters = [str(a) for a in adapters]

        load_kwargs: dict[str, Any] = {"dtype": self.dtype if self.dtype == "auto" else getattr(torch, self.dtype)}
        if attn_implementation:
            load_kwargs["attn_implementation"] = attn_implementation
        net = AutoModelForImageTextToText.from_pretrained(str(base), **load_kwargs)
        if adapters:
            from peft import PeftModel

            for a in adapters:
                net = PeftModel.from_pretrained(net, str(a))
                net = net.merge_and_unload()
        self.model = net.to(self.device).eval()

        # The processor of the adapter dir when it has one (a fine-tune may ship its own).
        proc_source = next((a for a in reversed(adapters) if _has_processor(Path(a))), base)
        self.processor = AutoProcessor.from_pretrained(str(proc_source))
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer = tokenizer

        ip = getattr(self.processor, "image_processor", None)
        lo = int(min_pixels) if min_pixels not in (None, "") else None
        hi = int(max_pixels) if max_pixels not in (None, "") else None
        if ip is not None and (lo is not None or hi is not None):
            _set_pixel_limits(ip, lo, hi)
        self._conventions = self._build_conventions(box_space, lo, hi)
        self._fingerprint: str | None = None
        from transformers import GenerationConfig

        self._GenerationConfig = GenerationConfig
        _quiet_generation_config_notice()

    @classmethod
    def check_args(cls, model: str | os.PathLike | None, **args: Any) -> None:
        """Options and model directory, checked without loading anything (torch is imported
        only to ask whether a requested CUDA device exists)."""
        unknown = sorted(set(args) - set(cls.ARGS))
        if unknown:
            raise UsageError(f"unknown --model_args for backend 'hf': {', '.join(unknown)}. Valid: "
                             f"{', '.join(a for a in cls.ARGS if a != 'model')}")
        if model is None:
            raise UsageError("backend 'hf' needs model=<model dir, hub name or adapter dir>")
        dtype = args.get("dtype")
        if dtype is not None and str(dtype) not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        box_space = args.get("box_space")
        if box_space is not None and box_space not in BOX_SPACES:
            raise UsageError(f"unknown box_space {box_space!r}; choose one of {', '.join(BOX_SPACES)}")
        for key in ("threads", "min_pixels", "max_pixels", "batch_size"):
            value = args.get(key)
            if value not in (None, ""):
                try:  # "784" from a config file is as good as 784
                    value = int(str(value).strip())
                except ValueError:
                    raise UsageError(f"model_args {key} must be an integer, got {value!r}") from None
                check_number(f"model_args {key}", value, minimum=0 if key == "threads" else 1, integer=True)
        device = args.get("device")
        if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps|xpu(:\d+)?", str(device)):
            raise UsageError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or xpu")
        if str(device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise UsageError(f"device={device} but torch {torch.__version__} sees no CUDA GPU; use device=cpu")
        check_model_and_adapter(model, args.get("adapter"))

    # ----------------------------------------------------------------- loading
    @staticmethod
    def _resolve(model: str | os.PathLike, adapter: str | os.PathLike | None) -> tuple[Any, list[Path]]:
        """(base model name or dir, adapter dirs to apply in order)."""
        base, _, adapters = resolve_model_and_adapters(model, adapter)
        return base, adapters

    def _build_conventions(self, box_space: str | None, lo: int | None, hi: int | None) -> ModelConventions:
        conv = processor_conventions(getattr(self.model.config, "model_type", None), self.processor)
        user = {k: v for k, v in (("box_space", box_space), ("min_pixels", lo), ("max_pixels", hi)) if v is not None}
        return conv.with_overrides(**user) if user else conv

    # -------------------------------------------------------------- interface
    @property
    def conventions(self) -> ModelConventions:
        return self._conventions

    def render(self, prompt: Prompt) -> str:
        """The prompt text exactly as the model sees it (chat template applied)."""
        return self.processor.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)

    def _generation_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        tok = self._tokenizer
        kw: dict[str, Any] = {
            "max_new_tokens": int(params.max_new_tokens),
            "pad_token_id": tok.pad_token_id,
            # plain decoding: neutralise checkpoint defaults the params do not express
            "repetition_penalty": 1.0,
            "num_beams": 1,
        }
        if params.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(
                do_sample=True,
                temperature=float(params.temperature),
                top_p=float(params.top_p),
                top_k=0,  # disabled, as in vLLM/OpenAI (HF would default to 50)
                num_return_sequences=int(params.n),
            )
        return kw

    def _chunk(self, params: SamplingParams) -> tuple[int, int | None]:
        """(completions per prompt in one call, prompts per forward pass: None = all)."""
        per_call = 1 if params.greedy else params.n  # greedy decoding is deterministic: n copies of one
        return per_call, None if self.batch_size is None else max(1, self.batch_size // per_call)

    def _inputs(self, prompts: list[Prompt]) -> dict[str, Any]:
        texts = [self.render(p) for p in prompts]
        images = [ref.load() for p in prompts for ref in p.images]
        return dict(self.processor(text=texts, images=images or None, padding=True, return_tensors="pt"))

    def prepare(self, prompts: list[Prompt], params: SamplingParams) -> list[dict[str, Any]]:
        """The processor's tensors per forward pass (see Backend.prepare): images decoded,
        chat template applied, padded, on the CPU."""
        _, chunk = self._chunk(params)
        chunk = chunk or len(prompts)
        return [self._inputs(prompts[s : s + chunk]) for s in range(0, len(prompts), chunk)]

    def generate(self, prompts: list[Prompt], params: SamplingParams,
                 prepared: list[dict[str, Any]] | None = None) -> list[list[str]]:
        torch = self._torch
        if params.n < 1:
            raise ValueError("SamplingParams.n must be >= 1")
        torch.manual_seed(params.seed)
        kwargs = self._generation_kwargs(params)
        per_call, chunk = self._chunk(params)
        chunk = chunk or len(prompts)
        results: list[list[str]] = []
        for j, start in enumerate(range(0, len(prompts), chunk)):
            batch = prompts[start : start + chunk]
            inputs = prepared[j] if prepared is not None else self._inputs(batch)
            inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
            with torch.inference_mode():
                # A blank GenerationConfig is where generate() starts without one, so the
                # effective config is the same; passing it skips generate()'s check for
                # generation settings left in model.config (unsupported legacy), which
                # instantiates a default model config on every call: ~24 ms per batch on
                # the tiny model, a fifth of a short-answer batch. We never write to
                # model.config.
                out = self.model.generate(**inputs, generation_config=self._GenerationConfig(), **kwargs)
            new = out[:, inputs["input_ids"].shape[1] :]
            decoded = self._tokenizer.batch_decode(new, skip_special_tokens=True)
            for i in range(len(batch)):
                got = decoded[i * per_call : (i + 1) * per_call]
                results.append(got * params.n if per_call == 1 else got)
        return results

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            h = hashlib.sha256()
            local = _local_dir(self.model_path)
            if local is None or not _hash_weights(local, h, "base"):
                h.update(f"unhashed:{self.model_path}".encode())
            for i, a in enumerate(self.adapters):
                _hash_weights(Path(a), h, f"adapter{i}")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        info = super().describe()
        info.update(model=self.model_path, adapters=self.adapters, dtype=self.dtype, device=self.device)
        return info

    def close(self) -> None:
        import gc
        import weakref

        if self.model is None:
            return
        alive = weakref.ref(self.model)
        self.model = None
        # Reference counting frees the weights; a full collection (0.3 s with torch and
        # transformers loaded) only when something cyclic still holds them.
        if alive() is not None:
            gc.collect()


class _DropNotice(logging.Filter):
    """Drops transformers' notice that a generation_config passed with generation
    kwargs is deprecated: the kwargs are applied on top of the blank config exactly as
    without one (see HFBackend.generate)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


def _quiet_generation_config_notice() -> None:
    log = logging.getLogger("transformers.generation.utils")
    if not any(isinstance(f, _DropNotice) for f in log.filters):
        log.addFilter(_DropNotice())


def _has_processor(path: Path) -> bool:
    return any((path / f).is_file() for f in ("processor_config.json", "preprocessor_config.json", "tokenizer.json"))


__all__ = ["HFBackend"]
