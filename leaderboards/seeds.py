"""Seed groups: runs of one method that differ only in their training seed, as one row.

Runs group when they share model, method, selection rule and checkpoint (a selected
checkpoint counts as "selected", whatever step each seed's rule chose) but have
distinct seeds (``meta.seed``; runs without a seed never group).

* **Value** of a per-sample metric: each sample's score averaged over the seeds, then
  the mean over the samples every seed scored (the mean of the seeds' values when they
  scored the same samples); **CI**: the percentile bootstrap
  (:func:`harness.stats.bootstrap_mean_ci`) over samples of that seed-averaged vector.
* A **corpus metric** (detection mAP) has no per-sample scores to average: its value
  is the mean of the seeds' values and it has no CI (n/a): two or three seeds are too
  few to bootstrap, and resampling samples would need the metric per seed and resample.
* Each metric keeps the seeds' own values (``metrics[m]["seeds"]``), shown beside the
  CI as the spread across seeds.
* **Cost**: the mean over seeds (blank unless every seed has it).

Deltas and paired tests against the baseline use the seed-averaged per-sample vectors
(see :mod:`leaderboards.significance`); the baseline may be a group itself.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from harness.stats import bootstrap_mean_ci
from leaderboards.collect import COST_KEYS, RunSummary
from leaderboards.significance import RecordCache


def group_key(run: RunSummary) -> tuple:
    return (run.model, run.method, run.selection, "selected" if run.selection else str(run.checkpoint))


def group_seeds(runs: list[RunSummary], cache: RecordCache, notes: list[str]) -> list[RunSummary]:
    """``runs`` with each set of seeds of one row replaced by its group, at the place of
    its first run; runs that have no other seed stay as they are."""
    buckets: dict[tuple, list[RunSummary]] = {}
    for run in runs:
        if run.seed is not None:
            buckets.setdefault(group_key(run), []).append(run)
    out: list[RunSummary] = []
    grouped: set[int] = set()
    for run in runs:
        if id(run) in grouped:
            continue
        members = buckets.get(group_key(run), []) if run.seed is not None else []
        seeds = [str(m.seed) for m in members]
        if len(members) > 1 and len(set(seeds)) < len(seeds):
            notes.append(f"rows {', '.join(m.label for m in members)} share a seed: not grouped")
            members = []
        if len(members) < 2:
            out.append(run)
            continue
        grouped.update(id(m) for m in members)
        out.append(make_group(members, cache, notes))
    _unique_labels(out)
    return out


def _seed_order(run: RunSummary):
    return (0, run.seed, "") if isinstance(run.seed, (int, float)) else (1, 0, str(run.seed))


def make_group(members: list[RunSummary], cache: RecordCache, notes: list[str]) -> RunSummary:
    members = sorted(members, key=_seed_order)
    first = members[0]
    steps = [str(m.checkpoint) for m in members]
    checkpoint = "/".join(steps) if first.selection else first.checkpoint
    group = RunSummary(
        path=first.path, label=_group_label(members), model=first.model, method=first.method,
        checkpoint=checkpoint, seed=None,
        cost={k: sum(m.cost[k] for m in members) / len(members) for k in COST_KEYS
              if all(k in m.cost for m in members)},
        config=first.config, aggregates={}, selection=first.selection, members=members)
    tasks = [t for t in first.aggregates if all(t in m.aggregates for m in members)]
    for m in members:
        lacking = [t for t in m.aggregates if t not in tasks]
        if lacking:
            notes.append(f"{group.label}: only some seeds have {', '.join(lacking)}; left out of the group")
    group.aggregates = {t: _aggregate(group, t, cache, notes) for t in tasks}
    return group


def _aggregate(group: RunSummary, task: str, cache: RecordCache, notes: list[str]) -> dict[str, Any]:
    members = group.members
    aggs = [m.aggregates[task] for m in members]
    names = [name for name in aggs[0].get("metrics", {}) if all(name in a.get("metrics", {}) for a in aggs)]
    records = cache.get(group, task)
    ordered = sorted(records.values(), key=lambda r: r.get("index", 0))
    ns = [a.get("n", 0) for a in aggs]
    if records and len(records) < max(ns):
        notes.append(f"{group.label}: the seeds share {len(records)} of their {'/'.join(map(str, ns))} "
                     f"samples on {task}; its values are over those")
    if not records:
        notes.append(f"{group.label}: its seeds have no records of {task} in common; its values there are the mean "
                     "of the seeds' values, without a CI")
    n_boot = int(members[0].config.get("n_boot", 1000))
    seed = int(members[0].config.get("seed", 0) or 0)
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        per_seed = [_number(a["metrics"][name].get("value")) for a in aggs]
        if ordered and all(name in r["scores"] for r in ordered):
            x = [r["scores"][name] for r in ordered]
            # sum() over Python floats in split order, as harness.scoring.aggregate computes a run's mean
            lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
            metrics[name] = {"value": sum(x) / len(x), "ci": [lo, hi], "seeds": per_seed}
        else:  # a corpus metric, or runs without records: no per-sample scores to average
            metrics[name] = {"value": sum(per_seed) / len(per_seed), "ci": [math.nan, math.nan],
                             "seeds": per_seed, "ci_note": "corpus" if ordered else "no records"}
    return {**aggs[0], "n": len(records) if records else min(ns), "metrics": metrics,
            "parse_failures": sum(a.get("parse_failures", 0) for a in aggs) / len(aggs)}


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _group_label(members: list[RunSummary]) -> str:
    """The members' common label without its seed ("sft seed 0", "sft seed 1" -> "sft"),
    else "<model> <method>[@<checkpoint>]"."""
    stripped = {re.sub(rf"[\s_-]*\bseed[\s_=:#-]*{re.escape(str(m.seed))}\b", "", m.label, flags=re.I).strip()
                for m in members}
    if len(stripped) == 1 and next(iter(stripped)):
        return next(iter(stripped))
    first = members[0]
    at = "" if first.selection or first.checkpoint == "-" else f"@{first.checkpoint}"
    return f"{first.model} {first.method}{at}"


def _unique_labels(rows: list[RunSummary]) -> None:
    # a group's label may be the label of a row outside it: tell them apart
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.label] = seen.get(row.label, 0) + 1
        if seen[row.label] > 1:
            row.label += f" ({len(row.members)} seeds)" if row.members else f" #{seen[row.label]}"


def seed_spread(values: list[float] | tuple[float, ...] | None) -> tuple[list[float], float]:
    """(the seeds' values, their range max - min); ([], nan) for a single run."""
    if not values:
        return [], math.nan
    finite = [v for v in values if not math.isnan(v)]
    return list(values), (max(finite) - min(finite)) if finite else math.nan


def seed_values_of_mean(members: list[RunSummary], columns: list[tuple[str, str]]) -> list[float]:
    """Each seed's unweighted mean over the ``(task, metric)`` columns (nan if it lacks one)."""
    out = []
    for m in members:
        values = [(m.metric(t, metric) or {}).get("value") for t, metric in columns]
        out.append(float(np.mean(values)) if values and all(v is not None for v in values) else math.nan)
    return out
