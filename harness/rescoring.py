"""``harness score``: score saved raw outputs without running a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from harness import math_judge
from harness.conventions import ModelConventions
from harness.errors import UnknownName, UsageError
from harness.protocol import ProtocolProfile, get_profile
from harness.scoring import aggregate, score_output
from harness.taskspec import make_task, split_format
from harness.validation import check_number, read_json_file


def _find_config(predictions: Path) -> Path | None:
    # <run>/records/<task>.jsonl -> <run>/config.json
    candidate = predictions.resolve().parent.parent / "config.json"
    return candidate if predictions.resolve().parent.name == "records" and candidate.exists() else None


def read_predictions(path: Path, task_full_name: str, own_run: bool = False) -> dict[str, dict[str, Any]]:
    """Predictions by sample id, read strictly: every line a JSON object with an id and
    a string output, no id twice. Only a run's own records file (``own_run``) may end
    in a line torn by a killed run; that line is skipped with a warning."""
    if path.is_dir():
        raise UsageError(f"--predictions {path} is a directory; give a JSONL file (e.g. <run>/records/<task>.jsonl)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}); expected JSON lines") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    preds: dict[str, dict[str, Any]] = {}
    where: dict[str, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        at = f"{path}:{i + 1}"
        try:
            p = json.loads(line)
        except json.JSONDecodeError as exc:
            if own_run and i == last and not text.endswith("\n"):
                print(f"harness: warning: {at}: skipping a torn last record (the run was killed mid-write)",
                      file=sys.stderr)
                continue
            raise UsageError(f"{at}: not a valid JSON line ({exc.msg}); the file is truncated or corrupt") from None
        if not isinstance(p, dict):
            raise UsageError(f"{at}: expected a JSON object with 'sample_id' and 'output', got {type(p).__name__}")
        sid = p.get("sample_id", p.get("id"))
        if sid is None or isinstance(sid, (dict, list, bool)):
            raise UsageError(f"{at}: needs a 'sample_id' (or 'id') string")
        if "output" not in p:
            raise UsageError(f"{at}: needs an 'output' (the model's raw text)")
        if not isinstance(p["output"], str):
            raise UsageError(f"{at}: 'output' must be a string, got {type(p['output']).__name__}")
        outs = p.get("outputs")
        if outs is not None and not (isinstance(outs, list) and outs and all(isinstance(o, str) for o in outs)):
            raise UsageError(f"{at}: 'outputs' must be a non-empty list of strings")
        task = p.get("task")
        if task is not None and task != task_full_name:
            raise UsageError(f"{at}: a record of task {task!r}, not {task_full_name!r}; pass --task {task}")
        sid = str(sid)
        if sid in preds:
            raise UsageError(f"{at}: sample {sid!r} again (first on line {where[sid]}); keep one prediction per sample")
        preds[sid], where[sid] = p, i + 1
    if not preds:
        raise UsageError(f"{path} holds no predictions (expected JSON lines with 'sample_id' and 'output')")
    return preds


def _run_config(cfg_file: Path) -> dict[str, Any]:
    cfg = read_json_file(cfg_file, "run config")
    if not isinstance(cfg, dict):
        raise UsageError(f"run config {cfg_file} is not a JSON object")
    return cfg


def score_predictions(task_spec: str, predictions: str | Path, profile: str | None = None, box_space: str | None = None,
                      config_path: str | Path | None = None, n_boot: int | None = None, seed: int | None = None,
                      limit: int | None = None) -> dict[str, Any]:
    predictions = Path(predictions)
    check_number("--bootstrap", n_boot, minimum=0, maximum=1_000_000, integer=True)
    check_number("--seed", seed, minimum=0, integer=True)
    check_number("--limit", limit, minimum=1, integer=True)
    if not predictions.exists():
        raise UsageError(f"no predictions file at {predictions}")
    name, fmt = split_format(task_spec)
    task = make_task(name, fmt)
    found = _find_config(predictions)
    cfg_file = Path(config_path) if config_path else found
    cfg: dict[str, Any] = _run_config(cfg_file) if cfg_file else {}

    try:
        conv = ModelConventions.from_dict(cfg["conventions"]) if "conventions" in cfg else ModelConventions()
        prof_recorded = ProtocolProfile.from_dict(cfg["profile_settings"]) if "profile_settings" in cfg else None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"run config {cfg_file} has invalid conventions or profile settings ({exc})") from None
    if box_space:
        conv = conv.with_overrides(box_space=box_space)
    prof = get_profile(profile) if profile else prof_recorded or get_profile("strict")
    n_boot = n_boot if n_boot is not None else cfg.get("n_boot", 1000)
    seed = seed if seed is not None else cfg.get("seed", 0)
    limit = limit if limit is not None else cfg.get("limit")
    role = cfg.get("roles", {}).get(task.full_name, task.role)

    recorded_judge = cfg.get("math_judge")
    if recorded_judge and math_judge.current() is None and task.family == "math":
        print(f"harness: warning: the run extracted math answers with the judge {recorded_judge.get('model')} at "
              f"{recorded_judge.get('endpoint')}; re-scoring without --math_judge uses the rule-based extraction",
              file=sys.stderr)
    preds = read_predictions(predictions, task.full_name, own_run=found is not None)
    n_given = len(preds)
    records = []
    for index, sample in enumerate(task.samples()):
        if limit is not None and index >= limit:
            break
        p = preds.pop(sample.id, None)
        if p is None:
            continue
        # A sample that never reached the model (bad image, engine error) stays failed.
        failure = p.get("failure") if "answer" in p and p["answer"] is None else None
        records.append(score_output(task, sample, index, p.get("outputs") or p["output"], conv, prof,
                                    p.get("prompt"), failure=failure))
    if preds:
        some = ", ".join(sorted(preds)[:5])
        where = f" within the first {limit} samples" if limit is not None else ""
        raise UnknownName(f"{len(preds)} of {n_given} predictions name samples that {task.full_name} does not have"
                          f"{where}: {some}")
    return aggregate(task, records, prof, role=role, n_boot=n_boot, seed=seed)
