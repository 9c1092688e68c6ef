"""A prompt as every backend receives it: chat messages plus the images they refer to.

Backends render this with the model's own chat template (``hf``, ``vllm``) or send
the same messages to a server (``openai``), so all backends see the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.sample import ImageRef


@dataclass(frozen=True)
class Prompt:
    text: str
    images: tuple[ImageRef, ...] = ()
    system: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        """Chat messages in the Hugging Face multimodal format (images first, then text)."""
        content: list[dict[str, Any]] = [{"type": "image"} for _ in self.images]
        content.append({"type": "text", "text": self.text})
        msgs: list[dict[str, Any]] = []
        if self.system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        msgs.append({"role": "user", "content": content})
        return msgs
