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


def detectable_difference(se_diff: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true difference that a two-sided z-test at ``alpha`` detects with probability
    ``power`` when the observed difference has standard error ``se_diff``:
    (z_{1-alpha/2} + z_{power}) * se_diff (normal approximation)."""
    from scipy.stats import norm  # scipy is slow to import; only power calculations need it

    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    if se_diff is None or not np.isfinite(se_diff) or se_diff < 0:
        return float("nan")
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se_diff)


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8,
                              paired_sd: float | None = None) -> float:
    """Minimum detectable difference of two means over ``n`` samples each (two-sided).

    Two independent runs of the same n with per-sample SD ``sd``: the difference of their
    means has SE sqrt(2) * sd / sqrt(n). A paired design (both runs on the same samples)
    with ``paired_sd``, the SD of the per-sample differences: SE paired_sd / sqrt(n), and
    ``sd`` is not used. For a 0/1 score sd = sqrt(p (1 - p)). nan when n < 1 or the SD is
    unknown (nan). Example: p = 0.5, n = 1500: 2.80 * sqrt(2 * 0.25 / 1500) = 0.0511.
    """
    if n is None or n < 1:
        return float("nan")
    se = paired_sd / np.sqrt(n) if paired_sd is not None else np.sqrt(2.0) * sd / np.sqrt(n)
    return detectable_difference(float(se), alpha, power)
