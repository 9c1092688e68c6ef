"""Built-in backends, registered by name in :data:`harness.registry.BACKENDS`.

Each entry is a factory ``(**model_args) -> Backend`` that imports its module on
call, so listing backends (or tasks) never imports torch or transformers.
"""

from __future__ import annotations

from typing import Any

from harness.registry import BACKENDS


def hf(**model_args: Any):
    """Hugging Face transformers, in-process (see :class:`harness.backends.hf.HFBackend`)."""
    from harness.backends.hf import HFBackend

    return HFBackend(**model_args)


BACKENDS.register("hf", hf)
