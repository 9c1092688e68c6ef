"""Benchmark: peak memory of ``run_eval`` at 1k and 10k samples of one split.

Each size runs in a fresh subprocess, which reports its own peak RSS
(``ru_maxrss``) and the RSS it had before ``run_eval`` started (after imports and
backend start-up), so the growth from 1k to 10k samples is the harness's own:
records, done-sets, aggregation, bootstrap CIs, corpus metrics.

    python bench/eval_memory.py                           # synth_cls_train, fake backend
    python bench/eval_memory.py --task synth_detect_train --sizes 1000,10000
    python bench/eval_memory.py --backend tiny             # the real tiny model (minutes)

The default backend is a fake that renders every sample's images exactly as the
``hf`` backend does (``ImageRef.load``) and answers with a box derived from the
image URI (parseable by every family, so detection has hits and misses), without a
model: 10k samples take seconds instead of minutes, and the process holds no torch
weights, so the harness's own growth is not hidden behind a large constant. The
eval splits hold 300 samples; the ``*_train`` splits hold 20k, hence their use here.

A split with only per-sample metrics (classification, grounding, counting) should
stay flat: aggregation keeps a few numbers per sample. A split with corpus metrics
(detection AP) needs every sample's boxes at once: aggregation keeps only the fields
the task's corpus metrics read (``Task.corpus_fields``: target, parsed boxes, failure;
about 1.4 KB per sample as Python objects), so it grows by that, not by whole records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fake_backend():
    from harness.backends.base import Backend
    from harness.conventions import FAMILIES

    class RenderingFake(Backend):
        name = "fake-render"

        def __init__(self) -> None:
            self._conv = FAMILIES["qwen2_vl"]

        @property
        def conventions(self):
            return self._conv

        def fingerprint(self) -> str:
            return "fake-render-0"

        def generate(self, prompts, params):
            out = []
            for p in prompts:
                for ref in p.images:
                    ref.load()  # pixels are produced as for a real model
                d = hashlib.sha256(p.images[0].uri.encode()).digest()
                x, y = d[0] * 2, d[1] * 2
                out.append([f"[{x}, {y}, {x + 300 + d[2]}, {y + 300 + d[3]}]"])
            return out

    return RenderingFake()


def child(args) -> int:
    """One measurement in this (fresh) process; prints a JSON line."""
    from harness.evaluator import EvalConfig, run_eval
    from harness.registry import BACKENDS

    if args.backend == "fake":
        backend, model, name = _fake_backend(), "fake-render", "fake-render"
        BACKENDS.register(name, type(backend))  # so that the config validates like any backend's
    else:
        from harness.backends.hf import HFBackend
        from harness.models.embedded import resolve_embedded

        model = resolve_embedded("tiny")
        backend, name = HFBackend(model=model), "hf"
    before = _rss_kib()
    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(model=model, tasks=[args.task], backend=name, limit=args.child, batch_size=args.batch_size,
                         output_path=out, progress=False)
        t0 = time.perf_counter()
        result = run_eval(cfg, backend=backend)
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    n = sum(a["n"] for a in result.aggregates)
    print(json.dumps({"n": n, "before_kib": before, "peak_kib": peak, "seconds": seconds}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="synth_cls_train", help="one split with at least max(--sizes) samples")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--backend", choices=("fake", "tiny"), default="fake")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return child(args)

    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(size), "--task", args.task,
               "--batch_size", str(args.batch_size), "--backend", args.backend]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if r["n"] != size:
            print(f"{args.task} gave {r['n']} samples, not {size}: pick a larger split", file=sys.stderr)
            return 1
        results.append(r)
        print(f"{args.task} x {size:>6} ({args.backend}): peak RSS {r['peak_kib'] / 1024:7.1f} MiB, "
              f"before run_eval {r['before_kib'] / 1024:7.1f} MiB, "
              f"run_eval added {(r['peak_kib'] - r['before_kib']) / 1024:6.1f} MiB, {r['seconds']:.1f} s")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        growth = 100 * (b["peak_kib"] / a["peak_kib"] - 1)
        print(f"peak RSS growth {a['n']} -> {b['n']} samples: {growth:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
