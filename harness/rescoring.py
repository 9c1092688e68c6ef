"""``harness score``: score saved raw outputs without running a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import read_json
from harness.conventions import ModelConventions
from harness.errors import UnknownName, UsageError
from harness.protocol import ProtocolProfile, get_profile
from harness.records import read_records
from harness.scoring import aggregate, score_output
from harness.taskspec import make_task, split_format


def _find_config(predictions: Path) -> Path | None:
    # <run>/records/<task>.jsonl -> <run>/config.json
    candidate = predictions.resolve().parent.parent / "config.json"
    return candidate if candidate.exists() else None


def score_predictions(task_spec: str, predictions: str | Path, profile: str | None = None, box_space: str | None = None,
                      config_path: str | Path | None = None, n_boot: int | None = None, seed: int | None = None,
                      limit: int | None = None) -> dict[str, Any]:
    predictions = Path(predictions)
    if not predictions.exists():
        raise FileNotFoundError(f"no predictions file at {predictions}")
    name, fmt = split_format(task_spec)
    task = make_task(name, fmt)
    cfg_file = Path(config_path) if config_path else _find_config(predictions)
    cfg: dict[str, Any] = read_json(cfg_file) if cfg_file else {}

    conv = ModelConventions.from_dict(cfg["conventions"]) if "conventions" in cfg else ModelConventions()
    if box_space:
        conv = conv.with_overrides(box_space=box_space)
    if profile:
        prof = get_profile(profile)
    elif "profile_settings" in cfg:
        prof = ProtocolProfile.from_dict(cfg["profile_settings"])
    else:
        prof = get_profile("strict")
    n_boot = n_boot if n_boot is not None else cfg.get("n_boot", 1000)
    seed = seed if seed is not None else cfg.get("seed", 0)
    limit = limit if limit is not None else cfg.get("limit")
    role = cfg.get("roles", {}).get(task.full_name, task.role)

    preds: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(read_records(predictions)):
        sid = p.get("sample_id", p.get("id"))
        if sid is None or "output" not in p:
            raise UsageError(f"{predictions}: line {i + 1} needs 'sample_id' (or 'id') and 'output'")
        preds[str(sid)] = p

    records = []
    for index, sample in enumerate(task.samples()):
        if limit is not None and index >= limit:
            break
        p = preds.pop(sample.id, None)
        if p is None:
            continue
        # A sample that never reached the model (bad image, engine error) stays failed.
        failure = p.get("failure") if p.get("answer", "") is None else None
        records.append(score_output(task, sample, index, p.get("outputs") or p["output"], conv, prof,
                                    p.get("prompt"), failure=failure))
    if preds:
        some = ", ".join(sorted(preds)[:5])
        raise UnknownName(f"{len(preds)} predictions name samples that {task.full_name} does not have "
                       f"(within the limit): {some}")
    return aggregate(task, records, prof, role=role, n_boot=n_boot, seed=seed)
