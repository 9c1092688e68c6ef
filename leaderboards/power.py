"""Minimum detectable differences (MDD) of the table's score columns.

"No significant difference" on a small split is not evidence of no effect; the MDD
says how large a true difference the split could have detected: the difference that a
two-sided test at the table's alpha detects with 80 % power
(:func:`harness.stats.min_detectable_difference`, normal approximation).

* **Independent** (one per column): two runs of the baseline's size n and per-sample
  SD (population SD of the baseline row's per-sample scores; sqrt(p (1 - p)) for a 0/1
  score): (z_{1-alpha/2} + z_power) * sqrt(2) * SD / sqrt(n).
* **Paired** (one per row tested against the baseline): the same samples scored by
  both, SD of the observed per-sample differences: (z + z) * SD_diff / sqrt(n). The
  table shows the median over rows; the CSV has each row's.
* **Averages** over k splits: the SE of an unweighted mean of k split means,
  sqrt(sum_i SD_i^2 / n_i) / k (times sqrt(2) for two independent runs).
* Corpus metrics (mAP) have no per-sample scores: n/a.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.stats import detectable_difference
from leaderboards.collect import RunSummary
from leaderboards.significance import RecordCache, paired_scores, scores


@dataclass(frozen=True)
class Power:
    """One score column's minimum detectable differences (fractions, like the scores)."""

    mdd: float  # two independent runs of the baseline's n and SD; nan: n/a
    paired: float  # median over the rows of their paired MDD; nan: none
    n: int  # the baseline's samples (of all splits, for an average)
    note: str = ""  # why n/a


def _se(parts: list[tuple[float, int]]) -> float:
    """SE of the unweighted mean over splits of split means, from (SD, n) per split."""
    return math.sqrt(sum(sd * sd / n for sd, n in parts)) / len(parts)


def column_power(rows: list[RunSummary], base: RunSummary, members: list[tuple[str, str]], cache: RecordCache,
                 alpha: float, power: float) -> tuple[Power, dict[str, float]]:
    """The MDD of the mean over ``members`` ((task, metric) columns; one for a split)
    and each other row's paired MDD, by label."""
    parts: list[tuple[float, int]] = []
    for task, metric in members:
        x = scores(base, task, metric, cache) if task in base.aggregates else None
        if x is None or x.size == 0:
            note = ("the baseline has no records of it" if task in base.aggregates and not cache.get(base, task)
                    else f"{metric} has no per-sample scores (a corpus metric)" if task in base.aggregates
                    else "the baseline lacks it")
            return Power(math.nan, math.nan, 0, note), {}
        parts.append((float(np.std(x)), int(x.size)))
    mdd = detectable_difference(math.sqrt(2) * _se(parts), alpha, power)

    paired: dict[str, float] = {}
    for row in rows:
        if row is base:
            continue
        diffs = []
        for task, metric in members:
            pair = paired_scores(row, base, task, metric, cache) if task in row.aggregates else None
            if pair is None:
                break
            diffs.append((float(np.std(pair[0] - pair[1])), len(pair[0])))
        else:
            paired[row.label] = detectable_difference(_se(diffs), alpha, power)
    median = float(np.median(list(paired.values()))) if paired else math.nan
    return Power(mdd, median, sum(n for _, n in parts)), paired
