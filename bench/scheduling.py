"""Benchmark: does forming batches by prompt length across tasks (as lmms-eval's collator
does) beat the evaluator's batches (per task, in split order) on our suites?

Both schedules generate the same prompts with the same batch size and generation settings;
only which prompts share a batch differs. The lengths schedule puts every task that shares
max_new_tokens in one pool, sorts it by prompt length in tokens (images included, longest
first) and cuts it into batches. Prints, per schedule: wall time of the generate calls
(median of repeats, alternating which goes first), padding (share of the batches' token
slots that are padding) and the generated tokens per batch; then how many greedy outputs
differ between the schedules (a different batch means a different padding, which can
change a near-tie).

    python bench/scheduling.py                        # suite synth, 64 samples per task
    python bench/scheduling.py --tasks synth_cls_study --limit 200 --batch_size 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synth")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from harness.backends.base import SamplingParams
    from harness.backends.hf import HFBackend
    from harness.models.embedded import resolve_embedded
    from harness.taskspec import make_task, resolve

    backend = HFBackend(model=resolve_embedded("tiny"))
    conv = backend.conventions
    items = []  # (key, prompt, max_new_tokens, length in tokens)
    for ref in resolve(args.tasks):
        task = make_task(ref.name, ref.fmt)
        for i, sample in zip(range(args.limit), task.samples()):
            prompt = task.prompt(sample, conv)
            length = int(backend._inputs([prompt])["input_ids"].shape[1])
            items.append(((task.full_name, i), prompt, task.max_new_tokens, length))

    by_task: dict[str, list] = defaultdict(list)
    for it in items:
        by_task[it[0][0]].append(it)
    task_batches = [chunk[s:s + args.batch_size] for chunk in by_task.values()
                    for s in range(0, len(chunk), args.batch_size)]
    pools: dict[int, list] = defaultdict(list)
    for it in items:
        pools[it[2]].append(it)
    length_batches = []
    for pool in pools.values():
        pool = sorted(pool, key=lambda it: -it[3])
        length_batches += [pool[s:s + args.batch_size] for s in range(0, len(pool), args.batch_size)]

    def run(batches) -> tuple[float, dict, int]:
        outputs, generated = {}, 0
        t0 = time.perf_counter()
        for batch in batches:
            got = backend.generate([it[1] for it in batch], SamplingParams(max_new_tokens=batch[0][2]))
            for it, out in zip(batch, got):
                outputs[it[0]] = out[0]
                generated += len(backend._tokenizer(out[0])["input_ids"])
        return time.perf_counter() - t0, outputs, generated

    def padding(batches) -> float:
        slots = sum(len(b) * max(it[3] for it in b) for b in batches)
        return 1 - sum(it[3] for b in batches for it in b) / slots

    walls: dict[str, list[float]] = {"per task": [], "by length": []}
    outs = {}
    schedules = {"per task": task_batches, "by length": length_batches}
    for r in range(args.repeats):
        for name in (list(schedules) if r % 2 == 0 else list(schedules)[::-1]):
            wall, outs[name], _ = run(schedules[name])
            walls[name].append(wall)
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()), file=sys.stderr)
    n = len(items)
    print(f"{args.tasks}: {n} prompts, batch {args.batch_size}, {len(pools)} max_new_tokens pools, "
          f"prompt lengths {min(it[3] for it in items)}-{max(it[3] for it in items)} tokens")
    base = statistics.median(walls["per task"])
    for name, batches in schedules.items():
        w = statistics.median(walls[name])
        print(f"{name:<10} {w:7.2f} s  {n / w:6.1f} prompts/s  batches {len(batches):4d}  "
              f"padding {100 * padding(batches):5.1f} %  time vs per task {w / base:.3f}")
    differ = sum(outs["per task"][k] != outs["by length"][k] for k in outs["per task"])
    print(f"greedy outputs that differ between the schedules: {differ} of {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
