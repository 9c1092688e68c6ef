"""Models named by a Hugging Face hub id (``org/name``): the local cache first, then a download.

Why: users with a network expect ``--model Qwen/Qwen2-VL-2B-Instruct`` to work as it does
in every comparable tool. huggingface_hub does the downloading (resumable, cached in the
standard hub cache, shared with transformers and vLLM); this module decides when to ask
for it and turns its failures into one-line errors:

- a model already in the local cache is used without touching the network;
- with ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) nothing is downloaded, and the
  error says how to get the model;
- without a network (or with the hub unreachable), the error says so and names the
  endpoint tried, instead of a stack of connection errors.

Only the files a model needs are fetched: configs, tokenizer and processor files, chat
templates and ``*.safetensors`` weights (PyTorch ``.bin`` / TF / Flax / ONNX / GGUF
copies are skipped; a repository with only ``.bin`` weights gets those).

Tested here: the cached path, the offline error and the unreachable-hub error (no network
on the project's machines). The download itself is huggingface_hub's and is untested here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.errors import UsageError

#: an "org/name" repository id; a path has a leading /, ., ~ or more than one slash
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_TRUE = {"1", "true", "yes", "on"}
#: what a transformers/vLLM model load reads
ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "*.py"]


def is_hub_id(name: str | os.PathLike) -> bool:
    text = str(name)
    return bool(_HUB_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def offline() -> bool:
    """Downloads are off: the hub's and transformers' own switches, read now (not at import)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def cached(repo_id: str) -> Path | None:
    """The model's snapshot in the local hub cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def fetch(repo_id: str) -> Path:
    """The local directory of hub model ``repo_id``: the cached snapshot, else downloaded now
    (a progress bar per file). UsageError, one line, when it cannot be had."""
    found = cached(repo_id)
    if found is not None:
        return found
    if offline():
        raise UsageError(f"model {repo_id!r} is not in the local Hugging Face cache and downloads are off "
                         "(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set): unset it to download, or fetch it where "
                         f"there is a network (`hf download {repo_id}`) and copy the cache or the directory here")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = endpoint()
    try:
        from huggingface_hub import HfApi

        # one request first (no retries: an unreachable hub fails at once, not after
        # huggingface_hub's 31 s of back-off on listing calls); it also lists the files
        info = HfApi(endpoint=where).model_info(repo_id)
        names = [s.rfilename for s in info.siblings or []]
        files = ALLOW if any(n.endswith(".safetensors") for n in names) else [*ALLOW, "*.bin"]
        return Path(snapshot_download(repo_id, revision=info.sha, allow_patterns=files, endpoint=where))
    except GatedRepoError:
        raise UsageError(f"model {repo_id!r} is gated on the hub: accept its terms on {where}/{repo_id} and log in "
                         "(`hf auth login` or HF_TOKEN)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise UsageError(f"model {repo_id!r} not found on {where} (nor locally): check the name; a private model "
                         "needs a token (`hf auth login` or HF_TOKEN)") from None
    except Exception as error:  # noqa: BLE001 - the network boundary: connection, timeout, HTTP, disk errors
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UsageError(f"model {repo_id!r} is not cached locally and could not be downloaded from {where} "
                         f"({reason}); without a network use a local model directory, or --model tiny") from None

