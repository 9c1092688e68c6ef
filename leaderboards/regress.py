"""Regression checks: a run's aggregates against a committed baseline file.

The rule. For every task and metric in the baseline, the run must have a value, and

    now >= baseline - allowed

where ``allowed`` is, most specific first:

1. ``--tolerance TASK:METRIC=TOL``  for that metric of that task,
2. ``--tolerance TASK=TOL``         for every metric of that task,
3. ``--tolerance TOL``              for every metric,
4. otherwise the baseline's own 95 % CI: ``baseline - ci_lo``, i.e. a value may not
   fall below the baseline's CI lower bound (0 when the baseline has no CI).

Tolerances are absolute and in the metrics' own unit, fractions: ``0.02`` allows a drop
of 2 points; ``0`` allows no drop at all (exact). Only drops fail; improvements pass
(refresh the baseline with ``--write`` to lock them in). A task or metric of the baseline
that the run lacks fails. Differences in sample count, model fingerprint or
configuration are reported for information and do not fail by themselves.

Exit codes (``harness regress``): 0 pass, 1 regression, 2 bad usage or unreadable input.

The baseline file (JSON, written by ``--write``, meant to be committed)::

    {"format": "harness-baseline/1", "run": "<run dir it was written from>",
     "model": "tiny", "model_fingerprint": "...", "identity": {...the run's config identity...},
     "tasks": {"synth_cls_id": {"role": "id", "primary_metric": "acc", "n": 300,
                                "metrics": {"acc": {"value": 0.417, "ci": [0.363, 0.473]}}}}}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_json_atomic
from harness.errors import UsageError
from harness.validation import check_output_file, read_json_file
from leaderboards.collect import RunSummary, is_metric_entry, is_run_dir, load_run
from leaderboards.table import render_text

FORMAT = "harness-baseline/1"
PASS, FAIL = "PASS", "FAIL"


# ----------------------------------------------------------------------------- baseline files
def open_run(path: str | Path) -> RunSummary:
    path = Path(path)
    if path.is_file() and path.name == "aggregates.json":
        path = path.parent
    if not is_run_dir(path):
        raise UsageError(f"{path} is not a finished run directory (needs config.json and aggregates.json)")
    return load_run(path)


def baseline_from_run(run: RunSummary, source: str | Path) -> dict[str, Any]:
    identity = run.config.get("identity", {})
    tasks = {}
    for task, agg in run.aggregates.items():
        metrics = {m: {"value": v.get("value"), "ci": v.get("ci")} for m, v in agg.get("metrics", {}).items()}
        tasks[task] = {"role": run.role(task), "primary_metric": agg.get("primary_metric"), "n": agg.get("n"),
                       "metrics": metrics}
    return {"format": FORMAT, "run": str(source), "model": run.config.get("model"),
            "model_fingerprint": identity.get("model_fingerprint"), "identity": identity, "tasks": tasks}


def check_baseline_path(path: str | Path) -> None:
    """A baseline file --write may create or replace: not a directory, not under a file."""
    check_output_file(Path(path), "--baseline", "baseline.json")


def write_baseline(path: str | Path, baseline: dict[str, Any]) -> None:
    check_baseline_path(path)
    write_json_atomic(path, baseline)


def read_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no baseline file at {path}; create it with: harness regress RUN --baseline {path} --write")
    data = read_json_file(path, "baseline")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a harness baseline file (expected \"format\": \"{FORMAT}\")")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks or not all(
            isinstance(t, dict) and isinstance(t.get("metrics"), dict) for t in tasks.values()):
        raise UsageError(f"{path}: 'tasks' must map each task to an object with 'metrics'")
    if not isinstance(data.get("identity") or {}, dict):
        raise UsageError(f"{path}: 'identity' must be an object; fix it or write the baseline again with --write")
    for task, entry in tasks.items():
        for metric, m in entry["metrics"].items():
            if not is_metric_entry(m):
                raise UsageError(f"{path}: {task} {metric} must be {{\"value\": number, \"ci\": [low, high]}}, "
                                 f"got {m!r}; fix it or write the baseline again with --write")
    return data


# ----------------------------------------------------------------------------- tolerances
@dataclass
class Tolerances:
    everywhere: float | None = None
    per_task: dict[str, float] = field(default_factory=dict)
    per_metric: dict[tuple[str, str], float] = field(default_factory=dict)

    def allowed(self, task: str, metric: str, ci_lo: float | None, value: float) -> tuple[float, str]:
        """The allowed drop and where it came from."""
        if (task, metric) in self.per_metric:
            return self.per_metric[(task, metric)], "tolerance"
        if task in self.per_task:
            return self.per_task[task], "tolerance"
        if self.everywhere is not None:
            return self.everywhere, "tolerance"
        if ci_lo is None or _nan(ci_lo) or _nan(value):
            return 0.0, "no CI"
        return max(0.0, value - ci_lo), "CI"


def _tolerance_value(text: str, spec: str) -> float:
    try:
        tol = float(text)
    except ValueError:
        raise UsageError(f"--tolerance {spec!r}: {text!r} is not a number") from None
    if not 0 <= tol <= 1:
        raise UsageError(f"--tolerance {spec!r}: tolerances are fractions between 0 and 1 (0.02 = 2 points)")
    return tol


def parse_tolerances(specs: list[str] | None, baseline: dict[str, Any]) -> Tolerances:
    """``["0.02", "synth_cls_id:acc=0.05,synth_count_arith:mc=0.1"]`` -> Tolerances.

    Task names may hold a ``:`` themselves (``synth_count_arith:mc``), so a key that is a
    baseline task is a task; otherwise it is split at its last ``:`` into task and metric.
    """
    tol = Tolerances()
    tasks = baseline["tasks"]
    for spec in specs or []:
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            if "=" not in item:
                tol.everywhere = _tolerance_value(item, item)
                continue
            key, text = (s.strip() for s in item.rsplit("=", 1))
            value = _tolerance_value(text, item)
            if key in tasks:
                tol.per_task[key] = value
                continue
            task, _, metric = key.rpartition(":")
            if task in tasks and metric in tasks[task]["metrics"]:
                tol.per_metric[(task, metric)] = value
                continue
            raise UsageError(f"--tolerance {item!r}: {key!r} is no task or TASK:METRIC of the baseline "
                             f"(tasks: {', '.join(tasks)})")
    return tol


# ----------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Check:
    task: str
    metric: str
    baseline: float
    now: float | None  # None: the run lacks it
    allowed: float
    source: str  # "CI", "tolerance", "no CI"
    result: str  # PASS or FAIL
    why: str = ""


@dataclass
class Report:
    checks: list[Check]
    info: list[str]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.result == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def compare(baseline: dict[str, Any], run: RunSummary, tolerances: Tolerances) -> Report:
    checks: list[Check] = []
    info: list[str] = []
    for task, entry in baseline["tasks"].items():
        agg = run.aggregates.get(task)
        if agg is not None and entry.get("n") is not None and agg.get("n") != entry.get("n"):
            info.append(f"{task}: n = {agg.get('n')} samples, baseline {entry.get('n')}; values may not be comparable")
        for metric, ref in entry["metrics"].items():
            value = ref.get("value")
            ci = ref.get("ci") or [None, None]
            allowed, source = tolerances.allowed(task, metric, ci[0], value)
            now_entry = (agg or {}).get("metrics", {}).get(metric)
            now = None if now_entry is None else now_entry.get("value")
            if agg is None:
                checks.append(Check(task, metric, value, None, allowed, source, FAIL, "task missing from the run"))
            elif now_entry is None:
                checks.append(Check(task, metric, value, None, allowed, source, FAIL, "metric missing from the run"))
            elif _nan(value):
                checks.append(Check(task, metric, value, now, allowed, source, PASS, "baseline has no value"))
            elif _nan(now):
                checks.append(Check(task, metric, value, now, allowed, source, FAIL, "no value in the run"))
            else:
                ok = now >= value - allowed
                checks.append(Check(task, metric, value, now, allowed, source, PASS if ok else FAIL))
    extra = [t for t in run.aggregates if t not in baseline["tasks"]]
    if extra:
        info.append(f"not in the baseline, not checked: {', '.join(extra)}")
    identity = run.config.get("identity", {})
    if baseline.get("model_fingerprint") and identity.get("model_fingerprint") != baseline.get("model_fingerprint"):
        info.append(f"model fingerprint {identity.get('model_fingerprint')} (baseline {baseline.get('model_fingerprint')})")
    old = baseline.get("identity") or {}
    differing = sorted(k for k in set(old) | set(identity) if k != "model_fingerprint" and old.get(k) != identity.get(k))
    for k in differing:
        info.append(f"config {k}: {identity.get(k)!r} (baseline {old.get(k)!r})")
    return Report(checks, info)


def _p(x: float | None, signed: bool = False) -> str:
    if _nan(x):
        return "–"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def render_report(report: Report) -> str:
    header = ("task", "metric", "baseline %", "now %", "delta", "allowed drop", "result")
    rows = []
    for c in report.checks:
        delta = None if _nan(c.now) or _nan(c.baseline) else c.now - c.baseline
        allowed = f"-{100 * c.allowed:.2f}" if c.allowed > 0 else "0.00"
        rows.append((c.task, c.metric, _p(c.baseline), _p(c.now), _p(delta, signed=True),
                     f"{allowed} ({c.source})", c.result + (f": {c.why}" if c.why else "")))
    table = render_text(rows, header=header, right=(2, 3, 4, 5))
    lines = [line.rstrip() for line in table.splitlines()]
    lines += [f"note: {line}" for line in report.info]
    fails = report.failures
    if fails:
        names = ", ".join(f"{c.task} {c.metric}" for c in fails)
        lines.append(f"REGRESSION: {len(fails)} of {len(report.checks)} metrics failed: {names}")
    else:
        lines.append(f"PASS: all {len(report.checks)} metrics within their allowed drop")
    return "\n".join(lines)
