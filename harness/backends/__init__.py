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
