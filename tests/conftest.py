import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """The embedded tiny model, built once per machine (minutes) and cached."""
    from harness.models.embedded import resolve_embedded

    return resolve_embedded("tiny", progress=False)


@pytest.fixture(scope="module")
def no_git():
    """Provenance would run ``git rev-parse``/``git status`` in the repository; keep tests off git.
    Module-scoped so that module-scoped runs (fixtures that evaluate once) see it too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("harness.provenance.git_commit", lambda: {"commit": "test"})
        yield


@pytest.fixture(scope="module")
def torch_mod():
    """torch on one thread (the GRPO speed-patch tests compare float results)."""
    import torch

    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    """The tiny model's processor, padding on the left as TRL's GRPO pads prompts."""
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    proc.tokenizer.padding_side = "left"
    return proc
