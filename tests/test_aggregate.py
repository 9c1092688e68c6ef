"""harness.scoring.aggregate: streamed, compact aggregation gives the textbook numbers exactly."""

from __future__ import annotations

import json
import math
import random

import pytest

from harness.conventions import FAMILIES
from harness.protocol import STRICT
from harness.scoring import aggregate, score_output
from harness.stats import bootstrap_ci, bootstrap_mean_ci
from harness.taskspec import make_task

CONV = FAMILIES["qwen2_vl"]


def textbook_aggregate(task, records, profile, role=None, n_boot=1000, seed=0):
    """What aggregate computes, written the plain way: every record held, sorted, and
    every corpus-metric resample handed to the task as a plain list."""
    recs = sorted(records, key=lambda r: r["index"])
    metrics = {}
    for m in task.metrics:
        values = [float(r["scores"][m]) for r in recs]
        lo, hi = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
        metrics[m] = {"value": sum(values) / len(values) if values else math.nan, "ci": [lo, hi]}
    if task.fmt == "open" and recs:
        corpus = task.corpus_metrics(recs, profile)
        if corpus:
            cis = bootstrap_ci(recs, lambda items: task.corpus_metrics(list(items), profile), n_boot=min(n_boot, 100),
                               seed=seed)
            for name, value in corpus.items():
                metrics[name] = {"value": value, "ci": list(cis[name])}
    return {"task": task.full_name, "role": role or task.role, "family": task.family,
            "primary_metric": task.primary_metric, "n": len(recs),
            "parse_failures": sum(1 for r in recs if r.get("failure")), "metrics": metrics, "profile": profile.name}


def _output(task, sample, rng):
    if rng.random() < 0.15:
        return "no idea"
    if rng.random() < 0.5:
        return task.target(sample, CONV)
    return rng.choice(task.wrong_answers(sample, CONV, rng, 1))


def make_records(name, fmt, n, seed=0):
    task, rng = make_task(name, fmt), random.Random(seed)
    recs = [score_output(task, s, i, _output(task, s, rng), CONV, STRICT, "prompt", 0.01)
            for i, s in zip(range(n), task.samples())]
    rng.shuffle(recs)  # a resumed run writes out of order
    return task, [json.loads(json.dumps(r, sort_keys=True, default=str)) for r in recs]  # as read from disk


@pytest.mark.parametrize("name,fmt", [("synth_cls_id", "open"), ("synth_ground_id", "open"),
                                      ("synth_detect_base", "open"), ("synth_count_arith", "mc")])
def test_streamed_aggregate_is_the_textbook_one(name, fmt):
    task, recs = make_records(name, fmt, 45)
    expected = textbook_aggregate(task, recs, STRICT, n_boot=200, seed=3)
    assert aggregate(task, iter(recs), STRICT, n_boot=200, seed=3) == expected
    assert aggregate(task, recs, STRICT, n_boot=200, seed=3) == expected


def test_detection_has_corpus_metrics_with_cis():
    task, recs = make_records("synth_detect_base", "open", 45, seed=1)
    agg = aggregate(task, iter(recs), STRICT, n_boot=100)
    for name in ("map", "map50"):
        lo, hi = agg["metrics"][name]["ci"]
        assert lo <= agg["metrics"][name]["value"] <= hi


def test_empty_stream():
    task = make_task("synth_cls_id")
    agg = aggregate(task, iter([]), STRICT)
    assert agg["n"] == 0 and agg["parse_failures"] == 0
    assert math.isnan(agg["metrics"]["acc"]["value"])
