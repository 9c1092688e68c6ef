"""The leaderboard as a pandas DataFrame: one row per run, computed from run directories.

Rows are model x method x checkpoint (see :mod:`leaderboards.collect`); columns are
each ID and OOD split's primary metric (value, 95 % CI, n), the ID and OOD averages
(unweighted means over splits, as in the papers), deltas against the baseline row,
paired-test p-values (see :mod:`leaderboards.significance`) and cost. Values are
fractions here; renderers turn them into percent.

A column name is ``"<key> <field>"``: key is a task's full name, ``id_avg`` or
``ood_avg``; field is ``value``, ``ci_lo``, ``ci_hi``, ``n``, ``delta`` or ``p``
(see :func:`col`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import UsageError
from leaderboards.collect import COST_KEYS, Collection, RunSummary
from leaderboards.significance import (
    PairedTest,
    RecordCache,
    SignificanceSettings,
    compare_average,
    compare_split,
)

AVERAGES = {"id": "id_avg", "ood": "ood_avg"}
ROW_COLUMNS = ("label", "model", "method", "checkpoint", "seed", "run")


def col(key: str, field_name: str = "value") -> str:
    return f"{key} {field_name}"


@dataclass(frozen=True)
class Column:
    """One split's metric in the table."""

    task: str
    role: str  # "id" or "ood"
    metric: str


@dataclass
class LeaderboardOptions:
    baseline: str | None = None  # a row label or a method name; None: the first "base" row
    metrics: dict[str, str] = field(default_factory=dict)  # task -> metric shown instead of its primary one
    significance: bool = True
    alpha: float = 0.05
    tests: SignificanceSettings = field(default_factory=SignificanceSettings)


@dataclass
class Leaderboard:
    frame: pd.DataFrame  # indexed by row label, in row order
    columns: list[Column]
    baseline: str | None
    options: LeaderboardOptions
    notes: list[str] = field(default_factory=list)

    def split_columns(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def averages(self) -> list[tuple[str, str]]:
        """(role, key) of the averages this table has."""
        return [(role, key) for role, key in AVERAGES.items() if self.split_columns(role)]

    @property
    def tests_made(self) -> bool:
        return self.baseline is not None and self.options.significance


def _columns(runs: list[RunSummary], overrides: dict[str, str], notes: list[str]) -> list[Column]:
    seen: dict[str, Column] = {}
    for run in runs:
        for task, agg in run.aggregates.items():
            metric = overrides.get(task, agg.get("primary_metric"))
            role = run.role(task)
            if task not in seen:
                seen[task] = Column(task, role, metric)
                continue
            if seen[task].role != role:
                notes.append(f"{task} is {role} in {run.label} but {seen[task].role} in an earlier row; "
                             f"shown as {seen[task].role}")
            if task not in overrides and agg.get("primary_metric") != seen[task].metric:
                notes.append(f"{task}: {run.label}'s primary metric is {agg.get('primary_metric')}, "
                             f"the table shows {seen[task].metric}")
    for task, metric in overrides.items():
        if task not in seen:
            raise UsageError(f"--metric {task}={metric}: no run has task {task}")
        if not any(run.metric(task, metric) for run in runs):
            known = sorted({m for run in runs if task in run.aggregates for m in run.aggregates[task]["metrics"]})
            raise UsageError(f"--metric {task}={metric}: no run has that metric; {task} has {', '.join(known)}")
    # ID splits first, then OOD, each in order of first appearance
    return sorted(seen.values(), key=lambda c: c.role != "id")


def pick_baseline(runs: list[RunSummary], wanted: str | None) -> RunSummary | None:
    if wanted is None:
        return next((r for r in runs if r.method == "base"), None)
    by_label = [r for r in runs if r.label == wanted]
    if by_label:
        return by_label[0]
    by_method = [r for r in runs if r.method == wanted]
    if len(by_method) == 1:
        return by_method[0]
    labels = ", ".join(repr(r.label) for r in runs)
    if by_method:
        raise UsageError(f"--baseline {wanted!r}: {len(by_method)} rows have that method; name one by label: {labels}")
    raise UsageError(f"--baseline {wanted!r} names no row; rows: {labels}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values and not any(math.isnan(v) for v in values) else math.nan


def build(collection: Collection, options: LeaderboardOptions | None = None) -> Leaderboard:
    options = options or LeaderboardOptions()
    runs = collection.runs
    notes: list[str] = []  # about the table; collection.warnings are about the search, reported apart
    columns = _columns(runs, options.metrics, notes)
    base = pick_baseline(runs, options.baseline)

    rows = []
    for run in runs:
        row: dict[str, object] = {"label": run.label, "model": run.model, "method": run.method,
                                  "checkpoint": run.checkpoint, "seed": run.seed, "run": str(run.path)}
        for c in columns:
            m = run.metric(c.task, c.metric) or {}
            lo, hi = (m.get("ci") or [math.nan, math.nan])[:2]
            row[col(c.task)] = _number(m.get("value"))
            row[col(c.task, "ci_lo")], row[col(c.task, "ci_hi")] = _number(lo), _number(hi)
            row[col(c.task, "n")] = run.aggregates[c.task]["n"] if c.task in run.aggregates else math.nan
        for role, key in AVERAGES.items():
            # an average over fewer splits than the table's would not be comparable: blank instead
            row[col(key)] = _mean([row[col(c.task)] for c in columns if c.role == role])
        for k in COST_KEYS:
            row[k] = run.cost.get(k, math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("label", drop=False)
    frame.index.name = None

    if base is not None:
        keys = [c.task for c in columns] + [key for role, key in AVERAGES.items() if any(c.role == role for c in columns)]
        for key in keys:
            frame[col(key, "delta")] = frame[col(key)] - frame.at[base.label, col(key)]
        if options.significance:
            _add_tests(frame, runs, base, columns, options, notes)
    return Leaderboard(frame, columns, base.label if base else None, options, notes)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _add_tests(frame: pd.DataFrame, runs: list[RunSummary], base: RunSummary, columns: list[Column],
               options: LeaderboardOptions, notes: list[str]) -> None:
    cache = RecordCache()
    results: dict[str, dict[str, PairedTest]] = {}
    for run in runs:
        if run is base:
            continue
        tests: dict[str, PairedTest] = {}
        for c in columns:
            if c.task in run.aggregates and c.task in base.aggregates:
                tests[c.task] = _noted(compare_split(run, base, c.task, c.metric, cache, options.tests),
                                       run, c.task, notes)
        for role, key in AVERAGES.items():
            members = [(c.task, c.metric) for c in columns if c.role == role]
            if len(members) == 1 and members[0][0] in tests:
                tests[key] = tests[members[0][0]]  # the average of one split is that split
            elif members and all(t in run.aggregates and t in base.aggregates for t, _ in members):
                tests[key] = _noted(compare_average(run, base, members, cache, options.tests),
                                    run, f"the {role.upper()} average", notes)
        results[run.label] = tests
    for key in [c.task for c in columns] + list(AVERAGES.values()):
        frame[col(key, "p")] = [results.get(label, {}).get(key, PairedTest(math.nan, 0, "n/a")).p
                                for label in frame.index]


def _noted(test: PairedTest, run: RunSummary, what: str, notes: list[str]) -> PairedTest:
    if not test.tested:
        notes.append(f"no paired test of {run.label} on {what}: {test.note}")
    return test
