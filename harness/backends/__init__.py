"""Built-in backends, registered by name in :data:`harness.registry.BACKENDS`.

Each entry is a factory ``(**model_args) -> Backend`` that imports its module on
call, so listing backends (or tasks) never imports torch or transformers. A factory
may carry ``check_args(model, **model_args)``, run before anything is loaded (see
:func:`harness.backends.base.check_backend_args`).
"""

from __future__ import annotations

from typing import Any

from harness.registry import BACKENDS


def hf(**model_args: Any):
    """Hugging Face transformers, in-process (see :class:`harness.backends.hf.HFBackend`)."""
    from harness.backends.hf import HFBackend

    return HFBackend(**model_args)


def _check_hf(model: Any, **model_args: Any) -> None:
    from harness.backends.hf import HFBackend

    HFBackend.check_args(model, **model_args)


hf.check_args = _check_hf
BACKENDS.register("hf", hf)


def vllm(**model_args: Any):
    """vLLM's offline engine, in-process (see :class:`harness.backends.vllm_backend.VLLMBackend`)."""
    from harness.backends.vllm_backend import VLLMBackend

    return VLLMBackend(**model_args)


def _check_vllm(model: Any, **model_args: Any) -> None:
    from harness.backends.vllm_backend import VLLMBackend

    VLLMBackend.check_args(model, **model_args)


vllm.check_args = _check_vllm
BACKENDS.register("vllm", vllm)


def openai(**model_args: Any):
    """An OpenAI-compatible chat-completions server (see :class:`harness.backends.openai_backend.OpenAIBackend`)."""
    from harness.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(**model_args)


def _check_openai(model: Any, **model_args: Any) -> None:
    from harness.backends.openai_backend import OpenAIBackend

    OpenAIBackend.check_args(model, **model_args)


openai.check_args = _check_openai
BACKENDS.register("openai", openai)
