"""``harness study curr-reft|dc-sft``: the command line of harness/paper_study.py."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  harness study curr-reft --quick                          # CI-sized, a few minutes
  harness study curr-reft --output_path studies/tiny       # the embedded study (tiny, synth_cls_study)
  harness study dc-sft --output_path studies/tiny          # same directory: base, SFT and GRPO are shared
  harness study dc-sft --model /models/Qwen2-VL-2B-Instruct --model_args dtype=bfloat16,device=cuda \\
      --suite imagenet --data_root /data --config dcsft.yaml --jobs 1

Rows: base, then per method the checkpoint chosen on an ID validation split carved from the
train split (--val_size, never trained on), averaged over --seeds with the spread across
seeds beside the 95 % CI; deltas and paired tests against SFT; the minimum detectable
difference of each split; cost (wall time, generated tokens, optimizer steps). Rerun the same
command to resume after an interruption.
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(sub, common) -> None:
    from harness.cli import add_data_options

    st = sub.add_parser(
        "study", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run a paper's comparison (curr-reft, dc-sft) on a suite and render its tables",
        description="Curr-ReFT: base, SFT, GRPO, Curr-RL, Curr-RL + RS-SFT. DC-SFT: base, SFT, GRPO, SFT-M, SFT-EM, "
                    "the difficulty study (SFT on easy / medium / hard at equal size) and optional hard-ratio "
                    "ablations. Each method trains once per seed from the same base; tables land in the study "
                    "directory as study-<paper>.{md,csv,html}. Recipes per method: docs/studies.md.",
        epilog=EXAMPLES)
    st.add_argument("paper", choices=("curr-reft", "dc-sft"), help="which paper's comparison")
    st.add_argument("--model", default="tiny", help="base model: 'tiny' (default) or a model directory")
    st.add_argument("--suite", default="synth_cls_study", help="suite with train, ID and OOD splits (default "
                    "synth_cls_study: 1,500 samples per split)")
    st.add_argument("--seeds", type=_ints, default=(0, 1), help="training seeds, comma-separated (default 0,1)")
    st.add_argument("--methods", default=None, help="a subset of the paper's methods, e.g. sft,grpo,curr_rl")
    st.add_argument("--quick", action="store_true", help="CI-sized recipes and splits (minutes); numbers are a smoke "
                    "test, not results")
    st.add_argument("--val_size", type=int, default=500, help="ID validation split: the train split's first N samples, "
                    "never trained on (default 500)")
    st.add_argument("--select", choices=("val", "last"), default="val", help="which checkpoint stands in a row: best on "
                    "the validation split (default) or the last")
    st.add_argument("--eval_limit", type=int, default=None, help="samples per ID/OOD split (default: all; "
                    "synth_cls_study's 1,500 give about +-2.5 points paired on the tiny model, 300 gave +-5)")
    st.add_argument("--eval_batch_size", type=int, default=16)
    st.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (default 1000)")
    st.add_argument("--no_difficulty_study", action="store_true", help="dc-sft: skip SFT on easy/medium/hard")
    st.add_argument("--hard_ratios", type=_floats, default=(), help="dc-sft: SFT-M with these shares of hard samples, "
                    "e.g. 0.25,0.5")
    st.add_argument("--profile_samples", type=int, default=2000, help="dc-sft: train prompts profiled (default 2000)")
    st.add_argument("--profile_generations", type=int, default=8, help="dc-sft: answers per prompt (default 8)")
    st.add_argument("--profile_temperature", type=float, default=0.9, help="dc-sft: sampling temperature of the "
                    "profile (default 0.9, the paper's; a weak model needs less to have any easy samples)")
    st.add_argument("--config", default=None, help="YAML/JSON trainer options applied over the recipes")
    st.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a trainer option, e.g. "
                    "grpo.learning_rate=1e-4 (repeatable)")
    st.add_argument("--model_args", default=None, help="backend options for the evals, as in harness eval")
    st.add_argument("--jobs", type=int, default=2, help="methods/seeds trained at once, one process and torch thread "
                    "each (default 2; use 1 on a single GPU)")
    st.add_argument("--output_path", default=None, help="study directory (default harness_studies/study-<model>-<suite>); "
                    "both papers' commands may share one")
    st.add_argument("--no_progress", action="store_true")
    add_data_options(st)
    st.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from harness.cli import parse_kv
    from harness.paper_study import PaperStudyConfig, run_paper_study

    cfg = PaperStudyConfig(
        paper=args.paper, model=args.model, suite=args.suite, seeds=tuple(args.seeds),
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else None,
        quick=args.quick, val_size=args.val_size, select=args.select, eval_limit=args.eval_limit,
        eval_batch_size=args.eval_batch_size, bootstrap=args.bootstrap, difficulty_study=not args.no_difficulty_study,
        hard_ratios=tuple(args.hard_ratios), profile_samples=args.profile_samples,
        profile_generations=args.profile_generations, profile_temperature=args.profile_temperature,
        config_file=args.config, overrides=args.set or [],
        model_args=parse_kv(args.model_args), jobs=args.jobs, output_path=args.output_path,
        progress=not args.no_progress, data_root=args.data_root, data_args=parse_kv(args.data_args, "--data_args"))
    print(run_paper_study(cfg))
    return 0
