"""Paired significance tests of a leaderboard row against the baseline row.

Both runs scored the same samples (the synthetic splits are deterministic; real
splits are files), so the test pairs them by ``sample_id`` and uses only the samples
both runs scored.

* **Per-sample metrics** (accuracy, acc@0.5, per-sample F1, ...; the primary metric
  of every synthetic task): a two-sided **paired sign-flip permutation test** of the
  mean difference: the test ``scipy.stats.permutation_test(..., permutation_type=
  "samples")`` computes, vectorised in :func:`sign_flip_test` (and checked against
  scipy in the tests). Under the null hypothesis "the two runs are exchangeable on each sample", swapping
  a pair's two scores is as likely as not, so the sign of each paired difference is
  flipped at random. It needs no normality or large-n assumption, works for binary
  and continuous scores alike (for 0/1 scores it is the exact McNemar test in
  permutation form), and is exact (all 2^k sign patterns) when the k samples whose
  scores differ are few, otherwise Monte Carlo with a fixed seed. Samples with equal
  scores contribute nothing and are dropped first, which changes no p-value.
* **Averages over splits** (ID avg, OOD avg): the same sign-flip test on the
  statistic the table shows, the unweighted mean over splits of each split's mean
  difference (each sample weighted by 1 / (splits x its split's shared samples)).
* **Corpus metrics** that are not means of per-sample scores (detection mAP): a
  **paired bootstrap** that resamples shared samples with replacement, recomputes the
  metric for both runs through the task's own ``corpus_metrics`` (never a second
  implementation), and reports the share of resampled differences at least as far
  from the observed difference as the observed difference is from 0 (the bootstrap
  distribution shifted to the null). Each resample reruns the metric (pycocotools),
  so resamples are capped (200 by default).

A row may be a **seed group** (:mod:`leaderboards.seeds`): several runs that differ
only in their training seed. Its per-sample scores are the seeds' scores averaged per
sample (over the samples every seed scored), and the tests above run on those
vectors unchanged; a corpus metric of a group is the mean over its seeds of the
metric, recomputed on each resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.errors import HarnessError
from harness.protocol import ProtocolProfile, get_profile
from harness.rundir import RunDir
from harness.taskspec import make_task, split_format
from leaderboards.collect import RunSummary


@dataclass(frozen=True)
class PairedTest:
    p: float  # nan when no test could be made
    n: int  # samples both runs scored
    method: str  # "sign-flip", "sign-flip (exact)", "paired bootstrap" or "n/a"
    note: str = ""  # why not, for n/a

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p)


def not_tested(note: str, n: int = 0) -> PairedTest:
    return PairedTest(math.nan, n, "n/a", note)


@dataclass
class SignificanceSettings:
    resamples: int = 9999  # sign-flip Monte Carlo resamples (exact below 2^k <= resamples)
    corpus_resamples: int = 200  # paired bootstrap resamples of corpus metrics
    seed: int = 0


class RecordCache:
    """Each run's records, read once per (run, task) and keyed by sample id; a seed
    group's are its seeds' records averaged per sample (:func:`seed_average`)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[str, ...], str], dict[str, dict[str, Any]]] = {}

    def get(self, run: RunSummary, task: str) -> dict[str, dict[str, Any]]:
        key = (tuple(map(str, run.run_paths)), task)
        if key not in self._cache:
            if run.members:
                self._cache[key] = seed_average([self.get(m, task) for m in run.members])
            else:
                records = RunDir(run.path).read(task)
                self._cache[key] = {str(r["sample_id"]): r for r in records}
        return self._cache[key]


def seed_average(per_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Records of the samples every seed scored, each with the per-sample scores that
    every seed has averaged over the seeds. Corpus metrics have no per-sample score, so
    they are absent: a group's corpus metric comes from each seed's own records."""
    first = per_seed[0]
    out: dict[str, dict[str, Any]] = {}
    for sid, rec in first.items():
        recs = [seeds.get(sid) for seeds in per_seed]
        if any(r is None for r in recs):
            continue
        scores: dict[str, float] = {}
        for name in rec.get("scores", {}):
            try:
                values = [float(r["scores"][name]) for r in recs]
            except (KeyError, TypeError, ValueError):
                continue
            scores[name] = sum(values) / len(values)
        out[sid] = {"sample_id": sid, "index": rec.get("index", 0), "scores": scores}
    return out


def sign_flip_test(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None,
                   resamples: int = 9999, seed: int = 0) -> tuple[float, bool]:
    """Two-sided p-value of T = sum(weights * (a - b)) under random sign flips of the
    paired differences; and whether it is exact.

    Exact (all 2^k sign patterns of the k nonzero differences) when 2^k <= resamples,
    else Monte Carlo: p = (1 + #{|T*| >= |T|}) / (resamples + 1). The same test as
    ``scipy.stats.permutation_test(..., permutation_type="samples")`` (the tests check
    that they agree), vectorised here because scipy builds every resampled pairing
    explicitly, about 20x slower on the thousands of samples of an OOD average.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if weights is not None:
        d = d * np.asarray(weights, dtype=np.float64)
    d = d[d != 0]  # a zero difference is the same under either sign
    if d.size == 0:
        return 1.0, True
    observed = abs(d.sum())
    threshold = observed * (1 - 1e-12)  # float slack: sums of the same terms in another order
    if 2 ** d.size <= resamples:
        patterns = (np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1
        null = (1 - 2 * patterns) @ d
        return float(np.mean(np.abs(null) >= threshold)), True
    rng = np.random.default_rng(seed)
    extreme = 0
    chunk = max(1, 4_000_000 // d.size)  # keeps memory flat for large splits
    for start in range(0, resamples, chunk):
        flips = rng.random((min(chunk, resamples - start), d.size)) < 0.5
        null = d.sum() - 2 * (flips @ d)  # flipping a term's sign subtracts it twice
        extreme += int(np.sum(np.abs(null) >= threshold))
    return (extreme + 1) / (resamples + 1), False


def paired_bootstrap(n: int, metric_a: Callable[[np.ndarray], float], metric_b: Callable[[np.ndarray], float],
                     resamples: int = 200, seed: int = 0) -> float:
    """Two-sided p-value of metric_a - metric_b by paired bootstrap (shifted to the null).

    ``metric_x(indices)`` computes the metric on the shared samples at ``indices``;
    both runs get the same indices in each resample, which is what pairs them.
    """
    everything = np.arange(n)
    observed = metric_a(everything) - metric_b(everything)
    rng = np.random.default_rng(seed)
    extreme = 0
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        diff = metric_a(idx) - metric_b(idx)
        # float slack: an identical pair of runs must give p = 1, not a rounding accident
        if abs(diff - observed) >= abs(observed) - 1e-12:
            extreme += 1
    return (extreme + 1) / (resamples + 1)


def _profile(run: RunSummary) -> ProtocolProfile:
    settings = run.config.get("profile_settings")
    return ProtocolProfile.from_dict(settings) if settings else get_profile(run.config.get("profile", "strict"))


def _shared(row: RunSummary, base: RunSummary, task: str, cache: RecordCache):
    recs_row, recs_base = cache.get(row, task), cache.get(base, task)
    ids = [sid for sid in recs_base if sid in recs_row]
    ids.sort(key=lambda sid: recs_base[sid].get("index", 0))
    return ids, recs_row, recs_base


def _per_sample(ids, recs, metric) -> np.ndarray | None:
    try:
        return np.array([float(recs[sid]["scores"][metric]) for sid in ids])
    except KeyError:
        return None  # not a per-sample score: a corpus metric


def scores(run: RunSummary, task: str, metric: str, cache: RecordCache) -> np.ndarray | None:
    """The run's (or seed group's seed-averaged) per-sample ``metric`` on ``task`` in split
    order; None for a corpus metric or a run without records."""
    recs = cache.get(run, task)
    if not recs:
        return None
    ids = sorted(recs, key=lambda sid: recs[sid].get("index", 0))
    return _per_sample(ids, recs, metric)


def paired_scores(row: RunSummary, base: RunSummary, task: str, metric: str,
                  cache: RecordCache) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample ``metric`` of row and baseline on the samples both scored, paired by
    sample id; None when there are none or the metric is a corpus metric."""
    ids, recs_row, recs_base = _shared(row, base, task, cache)
    if not ids:
        return None
    a, b = _per_sample(ids, recs_row, metric), _per_sample(ids, recs_base, metric)
    return None if a is None or b is None else (a, b)


def compare_split(row: RunSummary, base: RunSummary, task: str, metric: str, cache: RecordCache,
                  settings: SignificanceSettings) -> PairedTest:
    """Row against baseline on one split's ``metric``."""
    ids, recs_row, recs_base = _shared(row, base, task, cache)
    if not ids:
        return not_tested("no records of shared samples")
    a, b = _per_sample(ids, recs_row, metric), _per_sample(ids, recs_base, metric)
    if a is not None and b is not None:
        p, exact = sign_flip_test(a, b, resamples=settings.resamples, seed=settings.seed)
        return PairedTest(p, len(ids), "sign-flip (exact)" if exact else "sign-flip")
    try:
        task_obj = make_task(*split_format(task))
    except HarnessError as exc:
        return not_tested(f"{metric} is a corpus metric and the task is unknown here ({exc})", len(ids))
    # one (records, profile) per seed; a single run is a group of one
    sides = [[([cache.get(m, task)[s] for s in ids], _profile(m)) for m in (run.members or [run])]
             for run in (row, base)]
    if metric not in task_obj.corpus_metrics(*sides[1][0]):
        return not_tested(f"{metric} is neither a per-sample score nor a corpus metric of {task}", len(ids))

    def on(side):
        def metric_of(idx):
            values = [float(task_obj.corpus_metrics([records[i] for i in idx], profile)[metric])
                      for records, profile in side]
            return sum(values) / len(values)
        return metric_of

    p = paired_bootstrap(len(ids), on(sides[0]), on(sides[1]),
                         resamples=settings.corpus_resamples, seed=settings.seed)
    return PairedTest(p, len(ids), "paired bootstrap")


def compare_average(row: RunSummary, base: RunSummary, columns: list[tuple[str, str]], cache: RecordCache,
                    settings: SignificanceSettings) -> PairedTest:
    """Row against baseline on the mean over splits of ``(task, metric)`` columns."""
    a_parts, b_parts, w_parts = [], [], []
    n = 0
    for task, metric in columns:
        ids, recs_row, recs_base = _shared(row, base, task, cache)
        if not ids:
            return not_tested(f"no records of shared samples on {task}", n)
        a, b = _per_sample(ids, recs_row, metric), _per_sample(ids, recs_base, metric)
        if a is None or b is None:
            return not_tested(f"{task} {metric} is a corpus metric (tested per split only)", n)
        a_parts.append(a)
        b_parts.append(b)
        w_parts.append(np.full(len(ids), 1.0 / (len(columns) * len(ids))))
        n += len(ids)
    p, exact = sign_flip_test(np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(w_parts),
                              resamples=settings.resamples, seed=settings.seed)
    return PairedTest(p, n, "sign-flip (exact)" if exact else "sign-flip")
