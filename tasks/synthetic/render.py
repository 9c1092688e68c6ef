"""Rendering scenes to images, in three styles that make real distribution shifts.

- ``filled``: solid shapes on a plain light background (the ID style);
- ``outline``: hand-drawn-looking outlines on paper-like texture (an ImageNet-R-like
  rendition shift: same categories, different depiction);
- ``clutter``: noisy background, distractor strokes and partial occlusion (an
  ImageNet-A-like shift: natural-adversarial clutter).
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from tasks.synthetic.scene import CLUTTER, COLOURS, OUTLINE, Scene


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 12) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _light(image: Image.Image) -> Image.Image:
    """Uneven, colour-neutral lighting: brighter towards the bottom, darker towards the
    left and right edges (a vignette).

    Photos carry such position cues (sky above, light falling off to the sides); a
    flat synthetic background carries none, and a vision tower with only relative
    position encodings (Qwen2-VL's) then has nothing in a patch's pixels that says
    where it is. Here a patch's mean brightness varies with its row and its
    left-to-right brightness slope with its column. The lighting is grey on purpose:
    a colour tint (tried first) shifts red towards purple on one side of the image,
    confusing the colour categories that detection queries. Scaled so that a light
    background does not clip to white, which would erase the cue.
    """
    arr = np.asarray(image, dtype=np.float32)
    h, w = arr.shape[:2]
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :, None]
    arr = arr * (0.85 + 0.3 * y) - 45.0 * (2.0 * x) ** 2
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render(scene: Scene) -> Image.Image:
    rng = random.Random(scene.seed)
    w, h = scene.size
    if scene.style == CLUTTER:
        nrng = np.random.default_rng(scene.seed)
        base = np.array(scene.background, dtype=np.float32)
        noise = nrng.normal(0, 38, size=(h, w, 3)).astype(np.float32)
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr, "RGB")
    else:
        image = Image.new("RGB", (w, h), scene.background)
    draw = ImageDraw.Draw(image)

    if scene.style == OUTLINE:
        # paper texture: faint ruled lines
        for y in range(rng.randint(4, 9), h, rng.randint(9, 14)):
            draw.line([(0, y), (w, y)], fill=_jitter((200, 200, 210), rng, 6), width=1)
    if scene.style == CLUTTER:
        for _ in range(rng.randint(4, 7)):
            pts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(2)]
            colour = rng.choice(list(COLOURS.values()))
            draw.line(pts, fill=_jitter(colour, rng, 30), width=rng.randint(1, 3))

    for obj in scene.objects:
        colour = _jitter(COLOURS[obj.colour], rng)
        if scene.style == OUTLINE:
            pts = [(x + rng.uniform(-1.2, 1.2), y + rng.uniform(-1.2, 1.2)) for x, y in obj.polygon()]
            draw.line(pts + [pts[0]], fill=colour, width=2, joint="curve")
        elif obj.shape == "circle":
            draw.ellipse(obj.box, fill=colour)
        else:
            draw.polygon(obj.polygon(), fill=colour)

    image = _light(image)
    if scene.occlude:
        # Occlude a corner region of each object with a grey patch (about a quarter).
        for obj in scene.objects:
            x1, y1, x2, y2 = obj.box
            cw, ch = (x2 - x1) * 0.5, (y2 - y1) * 0.5
            ox = x1 if rng.random() < 0.5 else x2 - cw
            oy = y1 if rng.random() < 0.5 else y2 - ch
            grey = rng.randint(90, 160)
            draw.rectangle([ox, oy, ox + cw, oy + ch], fill=(grey, grey, grey))
    return image
