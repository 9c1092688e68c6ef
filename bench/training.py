"""Benchmark: training throughput of the trainer plug-ins on the embedded tiny model.

Runs each trainer for a few optimizer steps (its "tiny" preset: GRPO G 4 x 8 prompts per
step, SFT 32 examples per step; LoRA r16) on a suite's train split, one torch thread, and
reads the per-step wall clock from the run's ``train_log.jsonl``:

    python bench/training.py                          # grpo, curr_rl and sft on synth_cls
    python bench/training.py --trainers grpo --steps 40 --set grpo.num_generations=8

With ``--versus_trl N`` each GRPO-family trainer runs N times with its speed switches
(``dedup_images``, ``share_prompts``) off, which is TRL's own path, alternating with N runs
with them on, and the ratio of the medians is printed (one run of the script, one machine):

    python bench/training.py --trainers grpo --steps 20 --versus_trl 3

Prints, per trainer: start-up (process work before the first step: model load, rows,
TRL set-up), steady-state seconds per step (median of the steps after the first two),
prompts/s (GRPO, Curr-RL: prompts, each sampled G times) or examples/s (SFT), and the
generated tokens per step. The before/after figures of training speed-ups are taken with
this script on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def run(trainer_name: str, suite: str, steps: int, sets: list[str]) -> dict:
    from harness.evaluator import resolve_model
    from trainers import get_trainer, load_config

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / trainer_name
        config = load_config(trainer_name, overrides=[f"max_steps={steps}", f"save_steps={steps}", "progress=false",
                                                      *sets], output_dir=str(out))
        trainer = get_trainer(trainer_name)
        trainer.check(suite, config)
        t0 = time.perf_counter()
        trainer.train(resolve_model("tiny"), suite, config)
        total = time.perf_counter() - t0
        rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    wall = [r["wall_time_s"] for r in rows]
    # (Curr-RL's stages each start their own clock: steps across a stage boundary are skipped)
    per_step = [b - a for a, b in zip(wall, wall[1:]) if b > a][2:] or [wall[-1] / max(len(wall), 1)]
    step_s = statistics.median(per_step)
    rows_per_step = config.batch_size
    tokens = rows[-1].get("generated_tokens", 0) / max(len(rows), 1)
    return {"trainer": trainer_name, "steps": len(rows), "total_s": round(total, 1),
            "startup_s": round(total - sum(per_step) * len(rows) / max(len(per_step), 1), 1), "step_s": round(step_s, 3),
            "rows_per_s": round(rows_per_step / step_s, 1), "rows_per_step": rows_per_step,
            "generated_tokens_per_step": round(tokens, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", default="grpo,curr_rl,sft")
    parser.add_argument("--suite", default="synth_cls")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per trainer (default 30)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="trainer option override")
    parser.add_argument("--versus_trl", type=int, default=0, metavar="N",
                        help="GRPO family: N alternating runs with the speed switches off (TRL's path) and on; "
                             "prints the ratio of the medians")
    args = parser.parse_args(argv)
    if args.versus_trl < 0:
        parser.error("--versus_trl must be >= 0")
    import torch

    from trainers import get_trainer
    from trainers.grpo import SPEED_SWITCHES, GRPOTrainerConfig

    torch.set_num_threads(1)
    results = []
    for name in [t.strip() for t in args.trainers.split(",") if t.strip()]:
        paired = args.versus_trl and issubclass(get_trainer(name).config_class, GRPOTrainerConfig)
        variants = ([("trl", [f"{k}=false" for k in SPEED_SWITCHES]), ("harness", [])] * args.versus_trl
                    if paired else [("", [])])
        for label, switches in variants:
            print(f"[bench] {name} {label}: {args.steps} steps on {args.suite}", file=sys.stderr, flush=True)
            results.append({**run(name, args.suite, args.steps, [*args.set, *switches]), "path": label})
    print(f"{'trainer':<10} {'path':<8} {'start-up s':>10} {'s/step':>8} {'rows/step':>9} {'rows/s':>8} "
          f"{'gen tok/step':>12}")
    for r in results:
        unit = "prompts" if r["generated_tokens_per_step"] else "examples"
        print(f"{r['trainer']:<10} {r['path']:<8} {r['startup_s']:>10} {r['step_s']:>8} {r['rows_per_step']:>9} "
              f"{r['rows_per_s']:>8} {r['generated_tokens_per_step']:>12}   ({unit}/s)")
    for name in dict.fromkeys(r["trainer"] for r in results if r["path"]):
        med = {p: statistics.median(r["step_s"] for r in results if r["trainer"] == name and r["path"] == p)
               for p in ("trl", "harness")}
        tokens = {r["generated_tokens_per_step"] for r in results if r["trainer"] == name}
        print(f"{name}: median s/step TRL path {med['trl']:.3f}, harness {med['harness']:.3f}: "
              f"{med['trl'] / med['harness']:.2f}x the prompts/s"
              + ("" if len(tokens) == 1 else f" (generated tokens/step differ: {sorted(tokens)})"))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
