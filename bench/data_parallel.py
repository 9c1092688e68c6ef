"""Benchmark: data-parallel eval (``--num_processes N``) against one process, same samples.

    python bench/data_parallel.py                               # synth_cls_id,synth_count_id, 300 samples each
    python bench/data_parallel.py --tasks synth_cls --limit 100 --processes 1,2

Each configuration is the whole ``harness eval`` command in a fresh process (start-up,
model loads, generation, merge, aggregation), timed with a wall clock; every process
runs one thread (OMP_NUM_THREADS=1), so N processes use N cores. The aggregates of
every N are checked to equal the single-process ones (the benchmark fails otherwise).
The speed-up cannot exceed the number of free cores: on a 2-core machine, 2 processes
at most double the generation rate, and each process loads the model again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run(tasks: str, limit: int, batch: int, n: int, out: str) -> float:
    cmd = [sys.executable, "-m", "harness.cli", "eval", "--model", "tiny", "--tasks", tasks, "--limit", str(limit),
           "--batch_size", str(batch), "--no_progress", "--bootstrap", "100", "--output_path", out, "--overwrite"]
    if n > 1:
        cmd += ["--num_processes", str(n)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="synth_cls_id,synth_count_id")
    p.add_argument("--limit", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--processes", default="1,2")
    args = p.parse_args()
    counts = [int(x) for x in args.processes.split(",")]
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            out = os.path.join(tmp, f"n{n}")
            wall = run(args.tasks, args.limit, args.batch_size, n, out)
            with open(os.path.join(out, "aggregates.json")) as f:
                aggs = json.load(f)
            if reference is None:
                reference = aggs
                n_samples = sum(a["n"] for a in aggs)
            elif aggs != reference:
                sys.exit(f"aggregates with {n} processes differ from those with {counts[0]}")
            rows.append((n, wall))
    base = rows[0][1]
    start = run(args.tasks, 1, args.batch_size, 1, os.path.join(tempfile.gettempdir(), "harness-bench-dp-start"))
    print(f"cpu cores: {os.cpu_count()}  tasks: {args.tasks}  samples: {n_samples}  batch: {args.batch_size}")
    print(f"{'processes':>9}  {'wall s':>7}  {'samples/s':>9}  {'speed-up':>8}")
    for n, wall in rows:
        print(f"{n:>9}  {wall:>7.1f}  {n_samples / wall:>9.1f}  {base / wall:>7.2f}x")
    print("aggregates identical across process counts: yes")
    print(f"one process with --limit 1 (start-up, model load, aggregation): {start:.1f} s")


if __name__ == "__main__":
    main()
