"""``harness profile-difficulty``: the command line of harness/difficulty.py."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  harness profile-difficulty --model tiny --task synth_cls --subsample 500
  harness profile-difficulty --model tiny --task synth_ground_train --limit 200 --num_generations 4
  harness profile-difficulty --model /models/Qwen2.5-VL-7B-Instruct --model_args dtype=bfloat16,device=cuda \\
      --task imagenet100 --holdout 400 --batch_size 32 --profile dc-sft --output_path runs/difficulty-7b

Each prompt of the split is answered G times by sampling; a sample is easy when all G answers
are correct (primary metric >= --correct_threshold), hard when none is, medium otherwise.
The run directory is an ordinary eval run (rerun the same command to resume it) plus
difficulty.json (labels, pass rates, counts, cost); a finished profile is reused without loading
the model, and rerunning with another --correct_threshold relabels it from its records.
DC-SFT trainers take it as `difficulty=<run dir>` (docs/difficulty.md).
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from harness.cli import add_data_options

    p = sub.add_parser("profile-difficulty", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="label a train split's samples easy / medium / hard for a model (DC-SFT)",
                       description="Samples G answers per training prompt and labels each sample easy (all correct), "
                                   "medium (mixed) or hard (none correct), as DC-SFT does before training.",
                       epilog=EXAMPLES)
    p.add_argument("--model", required=True, help="'tiny', a local model directory, or a PEFT adapter directory")
    p.add_argument("--task", required=True, help="a train split (synth_cls_train) or a suite (its train split)")
    p.add_argument("--num_generations", type=int, default=8, help="G, answers sampled per prompt (default 8, >= 2)")
    p.add_argument("--temperature", type=float, default=0.9, help="sampling temperature, > 0 (default 0.9)")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="sampling and --subsample seed (default 0)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--limit", type=int, default=None, help="profile the first N samples after the holdout")
    which.add_argument("--subsample", type=int, default=None,
                       help="profile a seeded random N samples after the holdout (DC-SFT trainers' profile_samples)")
    p.add_argument("--holdout", type=int, default=0, help="never profile the split's first N samples (a study's "
                   "validation split; default 0)")
    p.add_argument("--correct_threshold", type=float, default=0.5,
                   help="an answer is correct when its primary metric is >= this (default 0.5; for 0/1 metrics the "
                        "same as == 1)")
    p.add_argument("--output_path", default=None, help="run directory (default harness_runs/difficulty-<model>-"
                   "<split>-<hash>); rerun to resume")
    p.add_argument("--batch_size", type=int, default=16, help="prompts per generate call (default 16; each is "
                   "sampled G times)")
    p.add_argument("--backend", default="hf", help="inference backend (default hf)")
    p.add_argument("--model_args", default=None, help="backend options as k=v,k=v, e.g. dtype=bfloat16,device=cuda")
    p.add_argument("--profile", default="strict", help="scoring protocol profile (default strict; dc-sft for the "
                   "paper's label matching; docs/profiles.md)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="override the task's generation length")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_data_options(p)
    p.set_defaults(func=cmd_profile_difficulty)


def cmd_profile_difficulty(args: argparse.Namespace) -> int:
    from harness.cli import parse_kv
    from harness.difficulty import ProfileConfig, counts_table, load_difficulty, profile_difficulty, settings_line

    cfg = ProfileConfig(
        model=args.model, task=args.task, num_generations=args.num_generations, temperature=args.temperature,
        top_p=args.top_p, seed=args.seed, limit=args.limit, subsample=args.subsample, holdout=args.holdout,
        correct_threshold=args.correct_threshold, output_path=args.output_path, batch_size=args.batch_size,
        backend=args.backend, model_args=parse_kv(args.model_args), profile=args.profile,
        max_new_tokens=args.max_new_tokens, progress=not args.no_progress, data_root=args.data_root,
        data_args=parse_kv(args.data_args, "--data_args"), math_judge=args.math_judge)
    path = profile_difficulty(cfg)
    diff = load_difficulty(path)
    print(f"\ndifficulty of {diff.task} for {diff.model}: {settings_line(diff.settings)}")
    print(counts_table(diff))
    if diff.failed:
        print(f"failed: {len(diff.failed)} samples whose generation failed (no label, never trained on)")
    cost = diff.cost
    rate = f"{cost['prompts'] / cost['wall_s']:.1f} prompts/s, " if cost.get("wall_s") else ""
    tokens = cost.get("generated_tokens")
    print(f"cost: {cost['wall_s']:.1f} s generating ({rate}{cost['completions']} completions, "
          f"{'unknown' if tokens is None else tokens} tokens)")
    print(f"\ndifficulty: {path / 'difficulty.json'}")
    return 0
