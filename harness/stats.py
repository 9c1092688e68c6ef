"""Bootstrap confidence intervals (percentile method, fixed seed: reproducible)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

# Resampled indices (and the values they pick) drawn per chunk: a fixed budget keeps
# memory flat whatever the split size. Chunking does not change the result: the
# generator's integer stream is the same however it is split into calls.
_CHUNK_ELEMENTS = 1 << 18


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or n_boot <= 0:
        return (float(x.mean()), float(x.mean()))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


class Resample(list):
    """One bootstrap resample: a plain list of the drawn items, which also says where
    they came from (``base[i] for i in indices``).

    A statistic that treats it as a list gets the textbook bootstrap. One that can
    evaluate each item once and combine per resample (COCO AP: images are matched
    independently, only the accumulation spans the corpus) recognises a Resample and
    keeps that per-item work in ``cache``, shared by all resamples of one bootstrap.
    """

    def __init__(self, base: Sequence, indices: np.ndarray, cache: dict[str, Any]) -> None:
        super().__init__(base[i] for i in indices.tolist())
        self.base = base
        self.indices = indices
        self.cache = cache

    @classmethod
    def identity(cls, base: Sequence, cache: dict[str, Any] | None = None) -> Resample:
        """All of ``base`` in order: the point estimate, sharing per-item work with a bootstrap."""
        return cls(base, np.arange(len(base)), {} if cache is None else cache)

    def intact(self) -> bool:
        """Still exactly ``base[indices]`` (a statistic may have reordered or edited it)."""
        if len(self) != len(self.indices):
            return False
        ids = self.cache.get("_base_ids")
        if ids is None:
            ids = self.cache["_base_ids"] = np.fromiter(map(id, self.base), dtype=np.int64, count=len(self.base))
        return bool(np.array_equal(np.fromiter(map(id, self), dtype=np.int64, count=len(self)), ids[self.indices]))


def bootstrap_ci(items: Sequence, statistic: Callable[[list], float | dict[str, float]], n_boot: int = 200,
                 seed: int = 0, level: float = 0.95, cache: dict[str, Any] | None = None):
    """CI of any corpus statistic (e.g. mAP) by resampling items with replacement.

    ``statistic`` returns a number, or a dict of numbers (several metrics from one
    pass over each resample); the result is (lo, hi), or a dict of them. It is called
    with a :class:`Resample` (a list) per resample; ``cache`` is their shared cache
    (pass the one of an earlier ``Resample.identity(items)`` to reuse its work).
    """
    if not items:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    cache = {} if cache is None else cache
    stats = [statistic(Resample(items, rng.integers(0, len(items), size=len(items)), cache)) for _ in range(n_boot)]
    alpha = (1 - level) / 2

    def interval(values) -> tuple[float, float]:
        lo, hi = np.quantile(values, [alpha, 1 - alpha])
        return (float(lo), float(hi))

    if isinstance(stats[0], dict):
        return {name: interval([s[name] for s in stats]) for name in stats[0]}
    return interval(stats)
