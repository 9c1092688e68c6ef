"""Finding run directories and reading them into rows.

The run directories are the source of truth: this module reads ``config.json`` and
``aggregates.json`` (and, for significance tests, ``records/``) and keeps no copy of
any number. A run's row identity comes from the optional ``meta`` object that
``train-and-eval`` writes into its config::

    "meta": {"label": "qwen sft@500", "model": "qwen", "method": "sft", "checkpoint": 500,
             "seed": 0, "selection": "best id-val of 3",
             "cost": {"wall_s": 812.5, "generated_tokens": 120000, "optimizer_steps": 500}}

Every key is optional; without them a run is ``model = config["model"]``,
``method = "base"``, ``checkpoint = "-"``. ``selection`` says which rule chose the
checkpoint that stands in the row (e.g. "best id-val of 3", "last"); a study may also
set it on the :class:`RunSummary` after :func:`collect`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.validation import read_json_file

COST_KEYS = ("wall_s", "generated_tokens", "optimizer_steps")


@dataclass
class RunSummary:
    """One run directory, as one leaderboard row."""

    path: Path
    label: str
    model: str
    method: str
    checkpoint: int | str
    seed: int | None
    cost: dict[str, float]
    config: dict[str, Any]
    aggregates: dict[str, dict[str, Any]]  # task full name -> its aggregate
    selection: str = ""  # the rule that chose this checkpoint for the row ("" when none was chosen)
    # a seed group (leaderboards.seeds): the runs it stands for, one per seed; empty for one run
    members: list[RunSummary] = field(default_factory=list)

    @property
    def run_paths(self) -> list[Path]:
        return [m.path for m in self.members] if self.members else [self.path]

    def role(self, task: str) -> str:
        return self.config.get("roles", {}).get(task) or self.aggregates[task].get("role", "id")

    def metric(self, task: str, metric: str) -> dict[str, Any] | None:
        """{"value": ..., "ci": [lo, hi]} or None when the run lacks the task or metric."""
        agg = self.aggregates.get(task)
        return None if agg is None else agg.get("metrics", {}).get(metric)


@dataclass
class Collection:
    runs: list[RunSummary]
    warnings: list[str] = field(default_factory=list)


def _read(path: Path) -> Any:
    return read_json_file(path, "run file")


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "aggregates.json").is_file()


def _looks_like_unfinished_run(path: Path) -> bool:
    # A config.json alone may belong to something else (a trainer's output); an eval run
    # also has records/ or provenance.json from its first batch on.
    return (path / "config.json").is_file() and ((path / "records").is_dir() or (path / "provenance.json").is_file())


def find_run_dirs(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Run directories named by ``paths`` or found below them (sorted), and warnings."""
    found: list[Path] = []
    warnings: list[str] = []
    for given in paths:
        root = Path(given)
        if not root.is_dir():
            raise UsageError(f"{root} is not a directory")
        if is_run_dir(root):
            found.append(root)
            continue
        before = len(found)
        for config in sorted(root.rglob("config.json")):
            d = config.parent
            if is_run_dir(d):
                found.append(d)
            elif _looks_like_unfinished_run(d):
                warnings.append(f"{d}: no aggregates.json (unfinished run?), skipped")
        if len(found) == before:
            warnings.append(f"{root}: no run directories (config.json + aggregates.json) found")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, warnings


def _checkpoint(value: Any) -> int | str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return int(value)
    text = str(value)
    return int(text) if text.isdigit() else text


def _number(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def is_metric_entry(m: Any) -> bool:
    """``{"value": number or null, "ci": [low, high] or null}``, as aggregates and baselines hold a metric."""
    ci = m.get("ci") if isinstance(m, dict) else None
    return isinstance(m, dict) and _number(m.get("value")) and (
        ci is None or (isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci))))


def _check_aggregates(path: Path, aggregates: list[Any]) -> None:
    """The shape the evaluator writes; anything else is named here instead of failing deep in a table."""
    for i, agg in enumerate(aggregates):
        where = f"{path / 'aggregates.json'}: entry {i + 1}"
        if not isinstance(agg, dict) or not isinstance(agg.get("task"), str) or not agg["task"]:
            raise UsageError(f"{where} must be an object with a 'task' name")
        metrics, n = agg.get("metrics"), agg.get("n")
        if not isinstance(metrics, dict) or not isinstance(agg.get("primary_metric"), str):
            raise UsageError(f"{where} ({agg['task']}) needs 'metrics' (an object) and 'primary_metric' (a name)")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise UsageError(f"{where} ({agg['task']}): 'n' must be a sample count, got {n!r}")
        for name, m in metrics.items():
            if not is_metric_entry(m):
                raise UsageError(f"{where} ({agg['task']}): metric {name!r} must be {{\"value\": number, "
                                 f"\"ci\": [low, high]}}, got {m!r}")


def load_run(path: Path) -> RunSummary:
    config = _read(path / "config.json")
    aggregates = _read(path / "aggregates.json")
    if not isinstance(config, dict) or not isinstance(aggregates, list):
        raise UsageError(f"{path}: config.json must be an object and aggregates.json a list")
    _check_aggregates(path, aggregates)
    if not isinstance(config.get("identity", {}), dict):
        raise UsageError(f"{path / 'config.json'}: 'identity' must be an object")
    meta = config.get("meta") or {}
    if not isinstance(meta, dict):
        raise UsageError(f"{path / 'config.json'}: 'meta' must be an object")
    cost = meta.get("cost") or {}
    if not isinstance(cost, dict) or not all(_number(cost.get(k)) for k in COST_KEYS):
        raise UsageError(f"{path / 'config.json'}: meta.cost must map {', '.join(COST_KEYS)} to numbers, got {cost!r}")
    seed = meta.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UsageError(f"{path / 'config.json'}: meta.seed must be an integer, got {seed!r}")
    return RunSummary(
        path=path,
        label=str(meta["label"]) if meta.get("label") else "",
        model=str(meta.get("model") or config.get("model") or path.name),
        method=str(meta.get("method") or "base"),
        checkpoint=_checkpoint(meta.get("checkpoint")),
        seed=seed,
        cost={k: cost[k] for k in COST_KEYS if cost.get(k) is not None},
        config=config,
        aggregates={a["task"]: a for a in aggregates},
        selection=str(meta.get("selection") or ""),
    )


def _default_label(run: RunSummary) -> str:
    return f"{run.model} {run.method}" + ("" if run.checkpoint == "-" else f"@{run.checkpoint}")


def assign_labels(runs: list[RunSummary]) -> None:
    """Labels name rows (and --baseline), so they must be unique: the default label
    gains the seed, then the directory name, where that is what tells rows apart.
    Labels that are already unique stay as they are."""
    for run in runs:
        run.label = run.label or _default_label(run)
    for extra in (lambda r: f" seed{r.seed}" if r.seed is not None else "", lambda r: f" ({r.path.name})"):
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.label] = counts.get(run.label, 0) + 1
        for run in runs:
            if counts[run.label] > 1:
                run.label += extra(run)
    seen: dict[str, int] = {}
    for run in runs:  # same directory name under different parents: number them
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label += f" #{seen[run.label]}"


def _order_key(run: RunSummary, models: list[str], methods: list[str]) -> tuple:
    ckpt = run.checkpoint
    # base model first ("-"), then training steps in order, "final" (or any name) last
    ckpt_key = (0, 0, "") if ckpt == "-" else (1, ckpt, "") if isinstance(ckpt, int) else (2, 0, str(ckpt))
    method_rank = 0 if run.method == "base" else 1 + methods.index(run.method)
    return (models.index(run.model), method_rank, ckpt_key, run.seed if run.seed is not None else -1)


def order_runs(runs: list[RunSummary], method_order: list[str] | None = None) -> list[RunSummary]:
    """``runs`` grouped by model (in order of appearance), the base method first, then each
    method's checkpoints by step; methods in ``method_order`` first, any others after them."""
    models = list(dict.fromkeys(r.model for r in runs))
    methods = list(dict.fromkeys([*(method_order or []), *(r.method for r in runs)]))
    return sorted(runs, key=lambda r: _order_key(r, models, methods))


def collect(paths: list[str | Path], method_order: list[str] | None = None) -> Collection:
    """Rows of every run under ``paths``: grouped by model (in order of appearance), the
    base method first, then each method's checkpoints by step; methods in
    ``method_order`` (e.g. a study's trainers), any others after them as they appear."""
    dirs, warnings = find_run_dirs(paths)
    if not dirs:
        raise UsageError("no run directories found in " + ", ".join(str(p) for p in paths))
    runs = order_runs([load_run(d) for d in dirs], method_order)
    assign_labels(runs)
    return Collection(runs, warnings)
