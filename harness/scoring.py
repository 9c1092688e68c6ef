"""Turning raw outputs into records and records into aggregates.

``harness eval`` and ``harness score`` both go through :func:`score_output` and
:func:`aggregate`, which is why re-scoring saved outputs reproduces an eval's
aggregates exactly.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Iterable

import numpy as np

from harness.conventions import ModelConventions
from harness.protocol import ProtocolProfile
from harness.sample import Sample
from harness.stats import Resample, bootstrap_ci, bootstrap_mean_ci
from harness.task import Task


def score_output(task: Task, sample: Sample, index: int, output: str | list[str], conv: ModelConventions,
                 profile: ProtocolProfile, prompt_text: str | None = None, latency_s: float | None = None,
                 failure: str | None = None) -> dict[str, Any]:
    """One record. With several completions (n > 1), all are kept (``outputs``) with the
    primary metric of each (``sample_scores``, what difficulty profiling reads); the
    record's scores are the first completion's."""
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
    if len(outputs) > 1:
        rec["sample_scores"] = [scores[task.primary_metric]] + [task.reward(o, sample, conv, profile)
                                                                for o in outputs[1:]]
    rec.update(answer=parsed.answer, parsed=parsed.value, failure=parsed.failure, scores=scores)
    return rec


def aggregate(task: Task, records: Iterable[dict[str, Any]], profile: ProtocolProfile, role: str | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Means of per-sample metrics with bootstrap CIs, plus corpus metrics.

    Records are ordered by their position in the split first, so the result does not
    depend on the order in which a (resumed) run wrote them. ``records`` may be a
    stream: only each record's index, scores and failure flag are kept, plus the
    fields a task's corpus metrics read (``Task.corpus_fields``).
    """
    keep = task.fmt == "open" and type(task).corpus_metrics is not Task.corpus_metrics
    fields = task.corpus_fields
    index, failures, kept = array("q"), 0, []
    values: dict[str, array] = {m: array("d") for m in task.metrics}
    for r in records:
        index.append(r["index"])
        for m, column in values.items():
            column.append(float(r["scores"][m]))
        failures += bool(r.get("failure"))
        if keep:
            kept.append(r if fields is None else {k: r.get(k) for k in fields})
    order = np.argsort(np.frombuffer(index, dtype=np.int64) if index else np.zeros(0, np.int64), kind="stable")
    n = len(order)
    metrics: dict[str, dict[str, Any]] = {}
    for m, column in values.items():
        x = np.frombuffer(column, dtype=np.float64)[order] if n else np.zeros(0)
        lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
        # sum() over Python floats in index order: the mean's exact value does not
        # depend on how the records were read
        metrics[m] = {"value": sum(x.tolist()) / n if n else math.nan, "ci": [lo, hi]}
    if keep and kept:
        recs = [kept[i] for i in order.tolist()]
        del kept
        # The point estimate is the identity resample: what a statistic prepares for it
        # (detection AP: the per-image matching) serves every bootstrap resample too.
        everything = Resample.identity(recs)
        corpus = task.corpus_metrics(everything, profile)
        if corpus:
            # one resampling pass for all corpus metrics; capped: each resample reruns them
            if n_boot > 0:
                cis = bootstrap_ci(recs, lambda items: task.corpus_metrics(items, profile), n_boot=min(n_boot, 100),
                                   seed=seed, cache=everything.cache)
            else:  # --bootstrap 0: no CIs (as for the per-sample means)
                cis = {name: (math.nan, math.nan) for name in corpus}
            for name, value in corpus.items():
                metrics[name] = {"value": value, "ci": list(cis[name])}
    return {
        "task": task.full_name,
        "role": role or task.role,
        "family": task.family,
        "primary_metric": task.primary_metric,
        "n": n,
        "parse_failures": failures,
        "metrics": metrics,
        "profile": profile.name,
    }
