"""Turning raw outputs into records and records into aggregates.

``harness eval`` and ``harness score`` both go through :func:`score_output` and
:func:`aggregate`, which is why re-scoring saved outputs reproduces an eval's
aggregates exactly.
"""

from __future__ import annotations

import math
from typing import Any

from harness.conventions import ModelConventions
from harness.protocol import ProtocolProfile
from harness.sample import Sample
from harness.stats import bootstrap_ci, bootstrap_mean_ci
from harness.task import Task


def score_output(task: Task, sample: Sample, index: int, output: str | list[str], conv: ModelConventions,
                 profile: ProtocolProfile, prompt_text: str | None = None, latency_s: float | None = None,
                 failure: str | None = None) -> dict[str, Any]:
    """One record. With several completions (n > 1), the first is scored and all are kept."""
    outputs = output if isinstance(output, list) else [output]
    rec: dict[str, Any] = {
        "task": task.full_name,
        "sample_id": sample.id,
        "index": index,
        "images": [im.uri for im in sample.images],
        "output": outputs[0] if outputs else "",
        "target": task.target_json(sample),
        "metadata": sample.metadata,
    }
    if task.fmt != "open":  # the option letter / yes-no the model should have given
        rec["gold"] = task.target(sample, conv)
    if len(outputs) > 1:
        rec["outputs"] = outputs
    if prompt_text is not None:
        rec["prompt"] = prompt_text
    if latency_s is not None:
        rec["latency_s"] = round(latency_s, 6)
    if failure is not None:  # the sample never reached the model (bad image, engine error)
        rec.update(answer=None, parsed=None, failure=failure, scores={m: 0.0 for m in task.metrics})
        return rec
    parsed, scores = task.evaluate(rec["output"], sample, conv, profile)
    rec.update(answer=parsed.answer, parsed=parsed.value, failure=parsed.failure, scores=scores)
    return rec


def aggregate(task: Task, records: list[dict[str, Any]], profile: ProtocolProfile, role: str | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Means of per-sample metrics with bootstrap CIs, plus corpus metrics.

    Records are ordered by their position in the split first, so the result does not
    depend on the order in which a (resumed) run wrote them.
    """
    recs = sorted(records, key=lambda r: r["index"])
    metrics: dict[str, dict[str, Any]] = {}
    for m in task.metrics:
        values = [float(r["scores"][m]) for r in recs]
        lo, hi = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
        metrics[m] = {"value": sum(values) / len(values) if values else math.nan, "ci": [lo, hi]}
    if task.fmt == "open" and recs:
        corpus = task.corpus_metrics(recs, profile)
        if corpus:
            # one resampling pass for all corpus metrics; capped: each resample reruns them
            cis = bootstrap_ci(recs, lambda items: task.corpus_metrics(items, profile), n_boot=min(n_boot, 100), seed=seed)
            for name, value in corpus.items():
                metrics[name] = {"value": value, "ci": list(cis[name])}
    return {
        "task": task.full_name,
        "role": role or task.role,
        "family": task.family,
        "primary_metric": task.primary_metric,
        "n": len(recs),
        "parse_failures": sum(1 for r in recs if r.get("failure")),
        "metrics": metrics,
        "profile": profile.name,
    }
