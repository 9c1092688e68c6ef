"""``harness compare-profiles RUN``: one run's saved outputs scored under every protocol profile.

Nothing is generated again: each profile re-scores the run's records through
``harness score``'s path (:func:`harness.rescoring.score_predictions`), so a cell here
is exactly what ``harness score --profile P`` prints for that task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.protocol import get_profile, profile_names
from harness.rescoring import score_predictions
from harness.rundir import RunDir
from harness.validation import check_number


def compare_profiles(run_path: str | Path, profiles: list[str] | None = None, n_boot: int = 0) -> dict[str, Any]:
    check_number("--bootstrap", n_boot, minimum=0, maximum=1_000_000, integer=True, allow_none=False)
    names = profiles or profile_names()
    for name in names:
        get_profile(name)  # unknown names fail before any scoring
    run = RunDir(run_path)
    if not run.config_path.is_file():
        raise UsageError(f"{run_path} is not a run directory (no config.json); give a directory made by harness eval")
    cfg = run.read_config()
    tasks = cfg.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise UsageError(f"{run.config_path} lists no tasks")
    out: list[dict[str, Any]] = []
    for task in tasks:
        records = run.records_path(task)
        if not records.is_file():
            continue  # a task the run never reached
        per: dict[str, dict[str, Any]] = {}
        for name in names:
            per[name] = score_predictions(task, records, profile=name, config_path=run.config_path, n_boot=n_boot)
        first = per[names[0]]
        out.append({
            "task": task, "role": first["role"], "n": first["n"], "primary_metric": first["primary_metric"],
            "metrics": {m: {p: per[p]["metrics"][m]["value"] for p in names} for m in first["metrics"]},
            "parse_failures": {p: per[p]["parse_failures"] for p in names},
        })
    return {"run": str(run_path), "recorded_profile": cfg.get("profile"), "profiles": names, "tasks": out}


def render_comparison(table: dict[str, Any]) -> str:
    from leaderboards.table import render_text

    names = table["profiles"]
    rows = []
    for t in table["tasks"]:
        for metric, values in t["metrics"].items():
            rows.append((t["task"], metric, *(f"{100 * values[p]:.1f}" for p in names)))
        rows.append((t["task"], "parse fail", *(str(t["parse_failures"][p]) for p in names)))
    header = ("task", "metric", *names)
    text = render_text(rows, header=header, right=tuple(range(2, 2 + len(names))))
    differ = [f"{t['task']} {m}" for t in table["tasks"] for m, v in t["metrics"].items() if len(set(v.values())) > 1]
    note = (f"\n\nrecorded under: {table['recorded_profile']}; values in %; profiles differ on: "
            f"{', '.join(differ) if differ else 'nothing'}")
    return text + note
