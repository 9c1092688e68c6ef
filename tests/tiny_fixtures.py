"""Shared data for the tiny-model tests: a very small recipe and coloured squares."""

from __future__ import annotations

from PIL import Image

from harness.models.tiny import TinyRecipe
from harness.sample import ImageRef

# A very small recipe so every test stays fast (56 px -> 4x4 patches -> 4 image tokens).
SMALL = TinyRecipe(
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    intermediate_size=128,
    vision_depth=1,
    vision_embed_dim=32,
    vision_heads=2,
    image_side=56,
    vocab_size=300,
    steps=4,
    batch_size=4,
    warmup=1,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
QUESTION = "What colour is the square?"


def square(name: str, side: int = 56) -> ImageRef:
    def load() -> Image.Image:
        im = Image.new("RGB", (side, side), (255, 255, 255))
        im.paste(COLOURS[name], (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
        return im

    return ImageRef(uri=f"synthetic://square/{name}/{side}", size=(side, side), loader=load)
