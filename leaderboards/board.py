"""The leaderboard as a pandas DataFrame: one row per run, computed from run directories.

Rows are model x method x checkpoint (see :mod:`leaderboards.collect`); columns are
each ID and OOD split's primary metric (value, 95 % CI, n), the ID and OOD averages
(unweighted means over splits, as in the papers), deltas against the baseline row,
paired-test p-values (see :mod:`leaderboards.significance`) and cost. Values are
fractions here; renderers turn them into percent.

Trustworthy comparisons: each row carries the rule that selected its checkpoint
(``selection``, from ``meta.selection``); with a baseline and tests, each score column
has its minimum detectable difference (:attr:`Leaderboard.power`,
:mod:`leaderboards.power`); with ``group_seeds``, the seeds of one row become one row
(:mod:`leaderboards.seeds`).

A column name is ``"<key> <field>"``: key is a task's full name, ``id_avg`` or
``ood_avg``; field is ``value``, ``ci_lo``, ``ci_hi``, ``n``, ``delta``, ``p``,
``paired_mdd`` (the row's paired MDD against the baseline) or, for seed groups,
``seeds`` (the seeds' own values, a tuple; None for a single run) (see :func:`col`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import UsageError
from leaderboards.collect import COST_KEYS, Collection, RunSummary
from leaderboards.power import Power, column_power
from leaderboards.seeds import group_seeds, seed_values_of_mean
from leaderboards.significance import (
    PairedTest,
    RecordCache,
    SignificanceSettings,
    compare_average,
    compare_split,
)

AVERAGES = {"id": "id_avg", "ood": "ood_avg"}
ROW_COLUMNS = ("label", "model", "method", "checkpoint", "seed", "selection", "seeds", "run")


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
    group_seeds: bool = False  # the seeds of one row as one row (leaderboards.seeds)
    power: float = 0.8  # of the minimum detectable differences


@dataclass
class Leaderboard:
    frame: pd.DataFrame  # indexed by row label, in row order
    columns: list[Column]
    baseline: str | None
    options: LeaderboardOptions
    notes: list[str] = field(default_factory=list)
    power: dict[str, Power] = field(default_factory=dict)  # score key -> its MDD; empty without tests

    @property
    def selections(self) -> list[str]:
        """The selection rules of the rows, in order of first appearance."""
        return [s for s in dict.fromkeys(self.frame["selection"]) if s]

    @property
    def grouped(self) -> bool:
        """Whether a row stands for several seeds."""
        return bool((self.frame["seeds"] > 1).any())

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
    """The row named by label, or the only row with that method; a seed's label names
    its seed group."""
    if wanted is None:
        return next((r for r in runs if r.method == "base"), None)
    by_label = [r for r in runs if r.label == wanted] or [r for r in runs if any(m.label == wanted for m in r.members)]
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


def build(collection: Collection | list[RunSummary], options: LeaderboardOptions | None = None) -> Leaderboard:
    """The table of ``collection``'s runs (a :class:`Collection` or a list of runs, in row order)."""
    options = options or LeaderboardOptions()
    runs = list(collection.runs if isinstance(collection, Collection) else collection)
    if not runs:
        raise UsageError("no runs to put in a leaderboard")
    notes: list[str] = []  # about the table; collection.warnings are about the search, reported apart
    cache = RecordCache()
    if options.group_seeds:
        runs = group_seeds(runs, cache, notes)
    any_group = any(run.members for run in runs)
    columns = _columns(runs, options.metrics, notes)
    base = pick_baseline(runs, options.baseline)
    if base is not None and base.members and options.baseline and base.label != options.baseline:
        notes.append(f"the baseline '{options.baseline}' is one seed of '{base.label}': the seed group is the baseline")

    rows = []
    for run in runs:
        row: dict[str, object] = {"label": run.label, "model": run.model, "method": run.method,
                                  "checkpoint": run.checkpoint, "seed": _seeds_text(run), "selection": run.selection,
                                  "seeds": max(1, len(run.members)), "run": "; ".join(map(str, run.run_paths))}
        for c in columns:
            m = run.metric(c.task, c.metric) or {}
            lo, hi = (m.get("ci") or [math.nan, math.nan])[:2]
            row[col(c.task)] = _number(m.get("value"))
            row[col(c.task, "ci_lo")], row[col(c.task, "ci_hi")] = _number(lo), _number(hi)
            row[col(c.task, "n")] = run.aggregates[c.task]["n"] if c.task in run.aggregates else math.nan
            if any_group:
                row[col(c.task, "seeds")] = tuple(m["seeds"]) if run.members and "seeds" in m else None
        for role, key in AVERAGES.items():
            # an average over fewer splits than the table's would not be comparable: blank instead
            row[col(key)] = _mean([row[col(c.task)] for c in columns if c.role == role])
            if any_group:
                members = [(c.task, c.metric) for c in columns if c.role == role]
                row[col(key, "seeds")] = tuple(seed_values_of_mean(run.members, members)) if run.members else None
        for k in COST_KEYS:
            row[k] = run.cost.get(k, math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("label", drop=False)
    frame.index.name = None

    power: dict[str, Power] = {}
    if base is not None:
        keys = [c.task for c in columns] + [key for role, key in AVERAGES.items() if any(c.role == role for c in columns)]
        for key in keys:
            frame[col(key, "delta")] = frame[col(key)] - frame.at[base.label, col(key)]
        if options.significance:
            _add_tests(frame, runs, base, columns, options, notes, cache)
            power = _add_power(frame, runs, base, columns, options, cache, notes)
    if any(run.members and (run.metric(c.task, c.metric) or {}).get("ci_note") == "corpus"
           for run in runs for c in columns):
        notes.append("a seed group's corpus metric (e.g. mAP) is the mean of its seeds' values, without a CI (n/a): "
                     "there are no per-sample scores to average and resample; its seeds' values show the spread")
    return Leaderboard(frame, columns, base.label if base else None, options, notes, power)


def _seeds_text(run: RunSummary):
    return "/".join(str(m.seed) for m in run.members) if run.members else run.seed


def _add_power(frame: pd.DataFrame, runs: list[RunSummary], base: RunSummary, columns: list[Column],
               options: LeaderboardOptions, cache: RecordCache, notes: list[str]) -> dict[str, Power]:
    """Each score column's minimum detectable difference, and each row's paired one."""
    out: dict[str, Power] = {}
    groups = [(c.task, [(c.task, c.metric)]) for c in columns]
    groups += [(key, [(c.task, c.metric) for c in columns if c.role == role]) for role, key in AVERAGES.items()]
    for key, members in groups:
        if not members:
            continue
        out[key], paired = column_power(runs, base, members, cache, options.alpha, options.power)
        if out[key].note and key not in AVERAGES.values() and "corpus" not in out[key].note:
            notes.append(f"no minimum detectable difference for {key}: {out[key].note}")
        frame[col(key, "paired_mdd")] = [paired.get(label, math.nan) for label in frame.index]
    return out


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _add_tests(frame: pd.DataFrame, runs: list[RunSummary], base: RunSummary, columns: list[Column],
               options: LeaderboardOptions, notes: list[str], cache: RecordCache) -> None:
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
