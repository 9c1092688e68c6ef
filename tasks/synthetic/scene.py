"""Deterministic scene graphs: the ground truth of every synthetic task.

A scene is a list of objects (shape, colour, size, centre, exact box) plus how it
is rendered. Scenes are drawn from a seed derived from (suite version, split,
index), so any sample can be regenerated on its own: splits stream and never
need to be held in memory.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

SIDE = 112  # image side in pixels; 8x8 patches of 14 px for a Qwen2-VL-style encoder

# Four silhouettes that differ in every patch they cover (curved, straight, diagonal
# edges, arms): with six (diamond, star) the tiny model's shape recognition stayed at chance.
SHAPES = ("circle", "square", "triangle", "cross")

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 30),
}
# Detection queries only base colours in training; novel colours are the OOD
# categories (named in other tasks, never as detection targets: open-vocabulary).
BASE_COLOURS = ("red", "green", "blue", "yellow")
NOVEL_COLOURS = ("purple", "orange")
SIZES = {"small": (9, 12), "large": (15, 20), "xlarge": (22, 30)}  # radius ranges in pixels
SCENE_SIZES = ("small", "large")  # what multi-object scenes draw from unless told otherwise
# How a size is named in a referring expression.
SIZE_WORDS = {"small": "small", "large": "large", "xlarge": "very large"}

FILLED, OUTLINE, CLUTTER = "filled", "outline", "clutter"
STYLES = (FILLED, OUTLINE, CLUTTER)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    angle: float  # small rotation jitter, radians

    def polygon(self) -> list[tuple[float, float]]:
        """Outline vertices (circles are approximated only for the box)."""
        r, cx, cy, a = self.radius, self.cx, self.cy, self.angle
        if self.shape == "circle":
            n, radii, offset = 24, [r], 0.0
        elif self.shape == "square":
            n, radii, offset = 4, [r * math.sqrt(2) * 0.8], math.pi / 4
        elif self.shape == "triangle":
            n, radii, offset = 3, [r], -math.pi / 2
        elif self.shape == "cross":
            t = r * 0.35
            pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t), (-r, -t), (-t, -t)]
            ca, sa = math.cos(a), math.sin(a)
            return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]
        else:
            raise ValueError(self.shape)
        pts = []
        for i in range(n):
            theta = offset + a + 2 * math.pi * i / n
            rr = radii[i % len(radii)]
            pts.append((cx + rr * math.cos(theta), cy + rr * math.sin(theta)))
        return pts

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Exact box in absolute pixels (x1, y1, x2, y2)."""
        if self.shape == "circle":
            return (self.cx - self.radius, self.cy - self.radius, self.cx + self.radius, self.cy + self.radius)
        pts = self.polygon()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    style: str
    seed: int  # drives rendering noise (background, clutter) deterministically
    background: tuple[int, int, int]
    occlude: bool = False
    size: tuple[int, int] = (SIDE, SIDE)
    extra: dict = field(default_factory=dict, compare=False)


def sample_seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _overlaps(box, boxes, margin: float = 3.0) -> bool:
    for b in boxes:
        if not (box[2] + margin < b[0] or b[2] + margin < box[0] or box[3] + margin < b[1] or b[3] + margin < box[1]):
            return True
    return False


def make_object(rng: random.Random, shape: str, colour: str, size: str | tuple[str, ...] | None = None) -> SceneObject:
    """``size`` is a size name, a tuple of names to draw from, or None (SCENE_SIZES)."""
    size = rng.choice(size or SCENE_SIZES) if not isinstance(size, str) else size
    lo, hi = SIZES[size]
    r = rng.uniform(lo, hi)
    m = r + 2
    return SceneObject(shape, colour, size, rng.uniform(m, SIDE - m), rng.uniform(m, SIDE - m), r, rng.uniform(-0.15, 0.15))


def _smaller(size) -> tuple[str, ...]:
    names = tuple(SIZES)
    allowed = (size,) if isinstance(size, str) else tuple(size or SCENE_SIZES)
    return (names[max(0, min(names.index(n) for n in allowed) - 1)],)


def place(rng: random.Random, specs: list[tuple[str, str, object]], tries: int = 100) -> tuple[SceneObject, ...]:
    """Place objects without overlap; specs are (shape, colour, size) with size as in
    :func:`make_object`.

    Deterministic for a given rng. A crowded arrangement that cannot be completed
    is restarted; after 5 restarts each object takes the size below its smallest
    allowed one, after 10 every object is 'small', which always fits for the counts
    used here (at most 6 objects).
    """
    for restart in range(50):
        placed: list[SceneObject] = []
        for shape, colour, size in specs:
            if restart >= 10:
                size = "small"
            elif restart >= 5:
                size = _smaller(size)
            for _ in range(tries):
                obj = make_object(rng, shape, colour, size)
                if not _overlaps(obj.box, [p.box for p in placed]):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == len(specs):
            return tuple(placed)
    raise RuntimeError(f"could not place {len(specs)} objects")


def background(rng: random.Random) -> tuple[int, int, int]:
    base = rng.randint(225, 250)
    return (base + rng.randint(-5, 5), base + rng.randint(-5, 5), base + rng.randint(-5, 5))
