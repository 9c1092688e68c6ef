"""harness.stats: percentile bootstrap CIs, reproducible for a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import Resample, bootstrap_ci, bootstrap_mean_ci

VALUES = [float(v) for v in np.random.default_rng(123).integers(0, 2, size=200)]  # a 0/1 accuracy vector


def test_mean_ci_is_deterministic_for_a_seed():
    assert bootstrap_mean_ci(VALUES, n_boot=500, seed=7) == bootstrap_mean_ci(VALUES, n_boot=500, seed=7)


def test_mean_ci_depends_on_the_seed():
    assert bootstrap_mean_ci(VALUES, n_boot=500, seed=1) != bootstrap_mean_ci(VALUES, n_boot=500, seed=2)


def test_mean_ci_contains_the_mean_and_has_sane_width():
    mean = sum(VALUES) / len(VALUES)
    lo, hi = bootstrap_mean_ci(VALUES, n_boot=1000, seed=0)
    assert lo < mean < hi
    # normal approximation: half-width ~ 1.96 * sqrt(p(1-p)/n) ~ 0.069 for p ~ 0.5, n = 200
    se = math.sqrt(mean * (1 - mean) / len(VALUES))
    assert 0.7 * 2 * 1.96 * se < hi - lo < 1.3 * 2 * 1.96 * se
    assert 0.0 <= lo and hi <= 1.0


def test_mean_ci_level_orders_widths():
    lo90, hi90 = bootstrap_mean_ci(VALUES, n_boot=1000, seed=0, level=0.90)
    lo99, hi99 = bootstrap_mean_ci(VALUES, n_boot=1000, seed=0, level=0.99)
    assert lo99 <= lo90 and hi90 <= hi99 and (hi99 - lo99) > (hi90 - lo90)


def test_mean_ci_empty_is_nan():
    lo, hi = bootstrap_mean_ci([])
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 0.37])
def test_mean_ci_constant_has_zero_width(value):
    lo, hi = bootstrap_mean_ci([value] * 50, n_boot=200)
    assert lo == hi == pytest.approx(value)


def test_mean_ci_single_value():
    assert bootstrap_mean_ci([0.25]) == (0.25, 0.25)


def test_mean_ci_no_resamples_gives_point():
    assert bootstrap_mean_ci([0.0, 1.0], n_boot=0) == (0.5, 0.5)


def test_mean_ci_chunking_does_not_change_the_result():
    # > 2e6 / n chunks: with n = 5000 the chunk is 400 resamples, so 1000 resamples take 3 chunks;
    # the same rng stream drawn in chunks must give what one big draw would.
    x = np.random.default_rng(5).random(5000)
    lo, hi = bootstrap_mean_ci(x, n_boot=1000, seed=3)
    rng = np.random.default_rng(3)
    means = np.concatenate([x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1) for k in (400, 400, 200)])
    assert (lo, hi) == tuple(float(v) for v in np.quantile(means, [0.025, 0.975]))


def test_bootstrap_ci_of_a_statistic():
    items = list(range(100))
    median = lambda xs: float(np.median(xs))  # noqa: E731
    lo, hi = bootstrap_ci(items, median, n_boot=200, seed=0)
    assert lo < 49.5 < hi
    assert (lo, hi) == bootstrap_ci(items, median, n_boot=200, seed=0)
    assert 30 < lo and hi < 70


def test_bootstrap_ci_calls_the_statistic_on_resamples_of_the_items():
    seen = []

    def stat(xs):
        seen.append(list(xs))
        return float(len(xs))

    lo, hi = bootstrap_ci(["a", "b", "c"], stat, n_boot=25, seed=0)
    assert (lo, hi) == (3.0, 3.0)
    assert len(seen) == 25
    assert all(len(s) == 3 and set(s) <= {"a", "b", "c"} for s in seen)
    assert any(len(set(s)) < 3 for s in seen)  # with replacement


def test_bootstrap_ci_empty_is_nan():
    lo, hi = bootstrap_ci([], lambda xs: 1.0)
    assert math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("size", [1, 2, 333, 4999])
def test_mean_ci_does_not_depend_on_the_chunk_budget(monkeypatch, size):
    # The budget bounds memory; numpy's integer stream is the same however it is split into calls.
    import harness.stats

    x = np.random.default_rng(size).random(size)
    expected = bootstrap_mean_ci(x, n_boot=300, seed=9)
    for budget in (1, size + 1, 7 * size - 3, 10**9):
        monkeypatch.setattr(harness.stats, "_CHUNK_ELEMENTS", budget)
        assert bootstrap_mean_ci(x, n_boot=300, seed=9) == expected


def test_bootstrap_ci_hands_the_statistic_resamples_that_know_their_origin():
    items = [{"i": i} for i in range(20)]
    seen = []
    bootstrap_ci(items, lambda xs: seen.append(xs) or 0.0, n_boot=5, seed=1)
    rng = np.random.default_rng(1)
    for xs in seen:
        idx = rng.integers(0, len(items), size=len(items))
        assert isinstance(xs, Resample) and xs.base is items and list(xs.indices) == list(idx)
        assert all(a is items[i] for a, i in zip(xs, idx)) and xs.intact()
    assert len({id(xs.cache) for xs in seen}) == 1  # one cache per bootstrap
    seen[0][0] = {"i": -1}
    assert not seen[0].intact()


def test_detectable_difference_is_z_sum_times_the_se():
    from harness.stats import detectable_difference, min_detectable_difference

    # z_0.975 + z_0.8 = 1.95996 + 0.84162: the textbook 2.80 multiplier
    assert detectable_difference(1.0) == pytest.approx(2.80158, abs=1e-5)
    assert detectable_difference(1.0, alpha=0.01, power=0.9) == pytest.approx(2.57583 + 1.28155, abs=1e-5)
    assert min_detectable_difference(0.3, 50) == pytest.approx(detectable_difference(math.sqrt(2) * 0.3 / math.sqrt(50)))
    assert math.isnan(detectable_difference(float("nan")))
