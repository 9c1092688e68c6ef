"""Benchmark: harness eval vs lmms-eval on the same exported task, the same tiny model.

The task is exported once with ``harness export-lmms`` (not timed). Then, as whole
commands in fresh processes (what a user waits for, start-up included):

- ``harness``: ``harness eval --model tiny --tasks TASK --limit N`` (the hf backend);
- ``lmms-eval``: ``lmms-eval --model qwen2_vl --model_args pretrained=<the tiny model's
  directory>,device=cpu,device_map=cpu --include_path EXPORT --tasks harness_TASK`` (its own
  Qwen2-VL model class; harness's scorer through the export's process_results);
- ``bridge`` (with ``--bridge``): ``harness eval --tasks lmms:harness_TASK``, lmms-eval's
  evaluator driving harness's hf backend.

Same samples, batch size, greedy decoding and max_new_tokens; one thread each
(``OMP_NUM_THREADS=1``). The commands alternate which goes first over ``--repeats``;
medians are reported with the lmms-eval / harness wall-time ratio, each path's score,
and how many outputs agree with harness's (lmms-eval's qwen2_vl adds a system message
and re-encodes every image as JPEG, so some outputs differ).

    python bench/lmms_compare.py                  # synth_cls_id_1500 at 300 and 1,500 samples, 3 repeats
    python bench/lmms_compare.py --tasks synth_ground_id --limits 100 --repeats 1 --bridge

harness runs with its defaults (the pipelined loop: one preparing worker where a second core
exists, ``--num_workers``); lmms-eval with its own. ``--harness_args`` adds options to the
harness command only (e.g. ``--num_workers 0`` for the serial loop).

Needs the ``lmms`` extra in the running interpreter's environment (docs/lmms.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="synth_cls_id_1500", help="one harness task (default synth_cls_id_1500)")
    ap.add_argument("--limits", default="300,1500", help="sample counts, each measured in this run (default 300,1500)")
    ap.add_argument("--harness_args", default="", help="extra options for the harness command, space-separated")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bridge", action="store_true", help="also time harness eval --tasks lmms:<exported task>")
    ap.add_argument("--keep", default=None, help="work directory to keep (default: a temporary one)")
    args = ap.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    work = Path(args.keep or tempfile.mkdtemp(prefix="lmms_compare_"))
    work.mkdir(parents=True, exist_ok=True)
    summary = []
    for limit in [int(x) for x in args.limits.split(",") if x.strip()]:
        args.limit = limit
        summary.append((limit, compare(args, env, work / f"n{limit}")))
    print()
    for limit, ratio in summary:
        print(f"lmms-eval / harness at {limit} samples: {ratio:.2f}")
    print(f"work directory: {work}")


def compare(args, env: dict[str, str], work: Path) -> float:
    """One sample count: the medians table; returns the lmms-eval / harness wall-time ratio."""
    from harness.lmms.export import export_tasks
    from harness.models.embedded import resolve_embedded

    work.mkdir(parents=True, exist_ok=True)
    export = work / "tasks"
    info = export_tasks(export, [args.tasks], limit=args.limit, overwrite=True)
    if len(info) != 1:
        sys.exit("--tasks must name one task")
    info = info[0]
    model_dir = resolve_embedded("tiny", progress=False)
    py = sys.executable
    common = ["--batch_size", str(args.batch_size)]
    commands = {
        "harness": lambda k: [py, "-m", "harness.cli", "eval", "--model", "tiny", "--tasks", info.harness_task,
                              "--limit", str(args.limit), "--no_progress", "--overwrite",
                              "--output_path", str(work / f"ours{k}"), *common, *args.harness_args.split()],
        "lmms-eval": lambda k: [py, "-m", "lmms_eval", "--model", "qwen2_vl", "--model_args",
                                f"pretrained={model_dir},device=cpu,device_map=cpu", "--include_path", str(export),
                                "--tasks", info.lmms_name, "--output_path", str(work / f"lmms{k}"), "--log_samples",
                                *common],
    }
    if args.bridge:
        commands["bridge"] = lambda k: [py, "-m", "harness.cli", "eval", "--model", "tiny", "--tasks",
                                        f"lmms:{info.lmms_name}", "--limit", str(args.limit), "--no_progress",
                                        "--overwrite", "--data_args", f"lmms_include_path={export}",
                                        "--output_path", str(work / f"bridge{k}"), *common]
    names = list(commands)
    walls: dict[str, list[float]] = {n: [] for n in names}
    for k in range(args.repeats):
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            walls[name].append(timed(commands[name](k), env))
            print(f"repeat {k}: {name} {walls[name][-1]:.2f} s", flush=True)

    # scores and agreement (last repeat of each)
    last = args.repeats - 1
    metric = info.metrics[0]
    ours_agg = json.loads((work / f"ours{last}" / "aggregates.json").read_text())[0]
    ours_rec = {json.loads(x)["sample_id"]: json.loads(x)["output"]
                for x in (work / f"ours{last}" / "records" / f"{info.harness_task.replace(':', '@')}.jsonl").open()}
    docs = [json.loads(x) for x in (info.directory / "data.jsonl").open()]
    res_file = sorted(glob.glob(str(work / f"lmms{last}" / "**" / "*_results.json"), recursive=True))[-1]
    lmms_value = json.loads(Path(res_file).read_text())["results"][info.lmms_name][f"{metric},none"]
    samples_file = sorted(glob.glob(str(work / f"lmms{last}" / "**" / f"*_samples_{info.lmms_name}.jsonl"),
                                    recursive=True))[-1]
    lmms_out = {docs[s["doc_id"]]["sample_id"]: s["filtered_resps"] if isinstance(s["filtered_resps"], str)
                else s["filtered_resps"][0] for s in map(json.loads, open(samples_file))}
    agree = sum(ours_rec[k] == v for k, v in lmms_out.items())
    rows = [("harness", ours_agg["metrics"][metric]["value"], len(ours_rec), len(ours_rec))]
    rows.append(("lmms-eval", lmms_value, len(lmms_out), agree))
    if args.bridge:
        b = json.loads((work / f"bridge{last}" / "aggregates.json").read_text())[0]
        b_rec = {json.loads(x)["sample_id"]: json.loads(x)["output"]
                 for x in (work / f"bridge{last}" / "records" / f"lmms@{info.lmms_name}.jsonl").open()}
        same = sum(ours_rec[k] == v for k, v in b_rec.items())
        rows.append(("bridge", b["metrics"][metric]["value"], len(b_rec), same))

    med = {n: statistics.median(w) for n, w in walls.items()}
    print(f"\n{info.harness_task}, {args.limit} samples, batch {args.batch_size}, {args.repeats} repeats "
          f"(median whole-command wall time), tiny model {model_dir}")
    print(f"{'path':<10} {'wall s':>8} {'vs harness':>10} {metric:>8} {'n':>5} {'same output as harness':>23}")
    for name, value, n, same in rows:
        print(f"{name:<10} {med[name]:8.2f} {med[name] / med['harness']:10.2f} {100 * value:8.1f} {n:5d} "
              f"{same:>10d} ({100 * same / max(1, n):.0f} %)")
    print(f"\nratio lmms-eval / harness: {med['lmms-eval'] / med['harness']:.2f} (walls {walls})")
    return med["lmms-eval"] / med["harness"]


if __name__ == "__main__":
    main()
