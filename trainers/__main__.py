"""Run one trainer from the command line (the orchestrated form is ``harness train-and-eval``).

    python -m trainers grpo --model tiny --suite synth_cls --output_dir runs/grpo \\
        [--config study.yaml] [--set max_steps=20 --set grpo.beta=0.04]
    python -m trainers sft --model tiny --suite synth_cls --output_dir runs/sft --num_processes 2
    accelerate launch --config_file ds.yaml -m trainers sft --model tiny --suite synth_cls --output_dir runs/sft

Rerunning the same command resumes from the last complete checkpoint. ``--num_processes N``
trains in N processes under accelerate's launcher, each taking batch_size / N rows per step
(docs/multiprocess.md); under ``accelerate launch`` the launcher's processes are used.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trainer", help="registered trainer name (sft, grpo, ...)")
    parser.add_argument("--model", required=True, help="base model: 'tiny' or a model directory")
    parser.add_argument("--suite", required=True, help="suite whose train split is trained on")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--config", help="YAML/JSON file: shared keys and per-trainer sections")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override, e.g. max_steps=20 or grpo.beta=0.04 (repeatable)")
    parser.add_argument("--num_processes", type=int, default=None,
                        help="train in N processes (accelerate launch; wins over the config's num_processes)")
    args = parser.parse_args(argv)
    from harness import distributed
    from trainers import launch

    launch.launched_setup()
    world = distributed.current()
    try:
        from trainers import get_trainer, load_config

        trainer = get_trainer(args.trainer)
        n = launch.processes_for(args.num_processes, world)
        config = load_config(args.trainer, args.config, args.set, output_dir=args.output_dir,
                             **({"num_processes": n} if n is not None else {}))
        trainer.check(args.suite, config)  # before the model is resolved (building 'tiny' takes minutes)
        from harness.evaluator import resolve_model

        checkpoints = trainer.train(resolve_model(args.model), args.suite, config)
    except HarnessError as exc:
        launch.report_error(str(exc))
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    if world.main and not launch.launched():  # a launched process's parent reports
        for ckpt in checkpoints:
            print(json.dumps({"step": ckpt.step, "path": ckpt.path, "cost": ckpt.cost}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
