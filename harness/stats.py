"""Bootstrap confidence intervals (percentile method, fixed seed: reproducible)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or n_boot <= 0:
        return (float(x.mean()), float(x.mean()))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # chunks keep memory flat for large splits
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


def bootstrap_ci(items: Sequence, statistic: Callable[[list], float | dict[str, float]], n_boot: int = 200,
                 seed: int = 0, level: float = 0.95):
    """CI of any corpus statistic (e.g. mAP) by resampling items with replacement.

    ``statistic`` returns a number, or a dict of numbers (several metrics from one
    pass over each resample); the result is (lo, hi), or a dict of them.
    """
    if not items:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = [statistic([items[i] for i in rng.integers(0, len(items), size=len(items))]) for _ in range(n_boot)]
    alpha = (1 - level) / 2

    def interval(values) -> tuple[float, float]:
        lo, hi = np.quantile(values, [alpha, 1 - alpha])
        return (float(lo), float(hi))

    if isinstance(stats[0], dict):
        return {name: interval([s[name] for s in stats]) for name in stats[0]}
    return interval(stats)
