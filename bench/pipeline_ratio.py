"""Benchmark: the pipelined eval loop against the serial one, on any device.

Same loaded model, same samples; ``--num_workers 0`` (serial) against each worker count
given, alternating which goes first over the repeats. Prints the median wall times, the
ratios and whether each pipelined run's records equal the serial run's (timings aside).

    python bench/pipeline_ratio.py                                   # tiny model, CPU, synth suite
    python bench/pipeline_ratio.py --device cuda --batch_size 32 --limit 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_overhead import records_of  # noqa: E402  (one definition of "same records, timings aside")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synth")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", default="1", help="pipelined worker counts to compare with 0 (default 1)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from harness.backends.hf import HFBackend
    from harness.evaluator import EvalConfig, run_eval
    from harness.models.embedded import resolve_embedded

    model = resolve_embedded("tiny")
    backend = HFBackend(model=model, device=args.device)
    counts = [0] + [int(w) for w in args.workers.split(",")]
    walls: dict[int, list[float]] = {w: [] for w in counts}
    same: dict[int, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for w in (counts if r % 2 == 0 else counts[::-1]):
                out = f"{tmp}/w{w}"
                cfg = EvalConfig(model=model, tasks=args.tasks.split(","), limit=args.limit, batch_size=args.batch_size,
                                 output_path=out, progress=False, num_workers=w, overwrite=True,
                                 model_args={"device": args.device})
                t0 = time.perf_counter()
                run_eval(cfg, backend=backend)
                walls[w].append(time.perf_counter() - t0)
            for w in counts[1:]:
                same[w] = same.get(w, True) and records_of(f"{tmp}/w{w}") == records_of(f"{tmp}/w0")
            print(f"repeat {r + 1}: " + ", ".join(f"w{w} {v[-1]:.2f} s" for w, v in walls.items()), file=sys.stderr)
    base = statistics.median(walls[0])
    print(f"{args.tasks}, limit {args.limit}, batch {args.batch_size}, device {args.device}, "
          f"{args.repeats} repeats (median wall s)")
    for w in counts:
        m = statistics.median(walls[w])
        extra = "" if not w else f"  records = serial: {'yes' if same[w] else 'NO'}"
        print(f"--num_workers {w}: {m:7.2f} s  vs serial {m / base:.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
