"""The ``harness`` command line.

Shaped like lm-evaluation-harness (``--model``, ``--model_args``, ``--tasks``,
``--limit``, ``--output_path``) so that it reads as expected to people in the field.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError

EXAMPLES_EVAL = """\
examples:
  harness eval --model tiny --tasks synth                 # every synthetic suite, ID and OOD
  harness eval --model tiny --tasks synth_cls --limit 50  # one suite, 50 samples per split
  harness eval --model tiny --tasks synth_ground_id:mc    # a split posed as multiple choice
  harness eval --model /models/Qwen2-VL-2B-Instruct --model_args dtype=bfloat16,device=cuda \\
      --tasks synth_ground --batch_size 32 --output_path runs/qwen2vl-2b

Rerunning the same command resumes an interrupted run from its records.
"""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line form every harness error takes."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"harness: error: {message} (see `{self.prog} --help`)\n")


EXAMPLES_STUDY = """\
examples:
  harness train-and-eval --model tiny --suite synth_cls --trainers sft,grpo
  harness train-and-eval --model tiny --suite synth_cls --trainers sft,grpo --max_steps 50 --eval_every 25 \\
      --set grpo.num_generations=8 --output_path studies/cls
  harness train-and-eval --model /models/Qwen2-VL-2B-Instruct --model_args dtype=bfloat16,device=cuda \\
      --suite synth_ground --trainers grpo --config grpo.yaml
  harness train-and-eval --model tiny --suite synth_cls --trainers sft,grpo --num_processes 2  # 2 training processes
  accelerate launch --config_file ds.yaml -m harness.cli train-and-eval --model /models/Qwen2-VL-2B-Instruct \\
      --model_args dtype=bfloat16,device=cuda --suite synth_ground --trainers sft  # DeepSpeed: docs/multiprocess.md

The study directory holds study.json, runs/ (one eval run per checkpoint), train/<trainer>/
(checkpoints, train_log.jsonl), leaderboard.{md,csv,html} and plots/.
"""


def selection_header(limit: int | None, subsample: int | None, seed: int, profile: str) -> str:
    """The first line of an eval table: which samples were scored and under which profile."""
    if subsample is not None:
        which = f"a seeded random {subsample} samples per task (--subsample {subsample}, seed {seed}), in split order"
    elif limit is not None:
        which = f"the first {limit} samples per task (--limit {limit})"
    else:
        which = "every sample of each task"
    return f"scored: {which}; profile: {profile}"


def parse_kv(text: str | None, option: str = "--model_args") -> dict[str, Any]:
    """``a=1,b=x,c=true`` -> {'a': 1, 'b': 'x', 'c': True}."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise UsageError(f"expected key=value in {option}, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip():
            raise UsageError(f"{option} item {item!r} has no key")
        if k.strip() in out:
            raise UsageError(f"{option} sets {k.strip()!r} twice")
        out[k.strip()] = _coerce(v.strip())
    return out


def _coerce(v: str) -> Any:
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _threads() -> None:
    # One thread was faster and far steadier than two on the 2-core machines we target;
    # an explicit OMP_NUM_THREADS from the user wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def parse_workers(value: str | int | None) -> int | None:
    """--num_workers: 'auto' (None) or a count."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise UsageError(f"--num_workers must be a number of processes or 'auto', got {value!r}") from None
    if n < 0:
        raise UsageError(f"--num_workers must be >= 0, got {n}")
    return n


def cmd_eval(args: argparse.Namespace) -> int:
    from harness import distributed
    from harness.evaluator import EvalConfig, run_eval
    from leaderboards.table import eval_rows, render_text

    if args.num_processes is not None:
        if args.num_processes < 1:
            raise UsageError(f"--num_processes must be >= 1, got {args.num_processes}")
        if distributed.current().size > 1:
            raise UsageError("--num_processes is for a plain harness eval; under torchrun or accelerate launch the "
                             "launcher already started the processes")
        if args.num_processes > 1:
            return distributed.launch(_without_option(args.argv, "--num_processes"), args.num_processes)

    cfg = EvalConfig(
        model=args.model, tasks=args.tasks.split(","), backend=args.backend, model_args=parse_kv(args.model_args),
        limit=args.limit, subsample=args.subsample, batch_size=args.batch_size, seed=args.seed, profile=args.profile,
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, n_boot=args.bootstrap,
        output_path=args.output_path, overwrite=args.overwrite, log_samples=args.log_samples,
        progress=not args.no_progress, data_root=args.data_root, data_args=parse_kv(args.data_args, "--data_args"),
        math_judge=args.math_judge, num_samples=args.num_samples, num_workers=parse_workers(args.num_workers),
    )
    result = run_eval(cfg)
    if not distributed.current().main:
        return 0  # rank 0 prints the table
    print()
    print(selection_header(cfg.limit, cfg.subsample, cfg.seed, cfg.profile))
    print(render_text(eval_rows(result.aggregates)))
    if args.log_samples:
        _print_samples(result.run_dir, result.aggregates)
    print(f"\nrun directory: {result.run_dir}" + ("  (resumed)" if result.resumed else ""))
    return 0


def _print_samples(run_dir: Path, aggregates: list[dict[str, Any]], per_task: int = 3) -> None:
    from harness.rundir import RunDir

    run = RunDir(run_dir)
    for agg in aggregates:
        print(f"\n== {agg['task']}: first {per_task} samples")
        for rec in sorted(run.read(agg["task"]), key=lambda r: r["index"])[:per_task]:
            print(f"  [{rec['sample_id']}] {rec.get('prompt', '')!r}")
            print(f"      output={rec['output']!r} parsed={rec['parsed']!r} target={rec.get('gold', rec['target'])!r}")
            print(f"      scores={rec['scores']} failure={rec['failure']}")


def cmd_score(args: argparse.Namespace) -> int:
    from harness.rescoring import score_predictions
    from harness.validation import check_output_file
    from leaderboards.table import eval_rows, render_text

    if args.output_path:
        check_output_file(Path(args.output_path))
    configure_data(args)
    agg = score_predictions(args.task, args.predictions, profile=args.profile, box_space=args.box_space,
                            config_path=args.config, n_boot=args.bootstrap, seed=args.seed, limit=args.limit)
    if args.format == "json":
        print(json.dumps(agg, indent=2))
    else:
        print(render_text(eval_rows([agg])))
    if args.output_path:
        from harness.atomic import write_json_atomic

        write_json_atomic(args.output_path, agg)
    return 0


def cmd_train_and_eval(args: argparse.Namespace) -> int:
    from harness.study import StudyConfig, run_study

    cfg = StudyConfig(
        model=args.model, suite=args.suite, trainers=[t.strip() for t in args.trainers.split(",")],
        config_file=args.config, overrides=args.set or [], max_steps=args.max_steps, eval_every=args.eval_every,
        seed=args.seed, eval_limit=args.eval_limit, eval_batch_size=args.eval_batch_size,
        model_args=parse_kv(args.model_args), bootstrap=args.bootstrap, baseline=args.baseline,
        formats=tuple(f.strip() for f in args.format.split(",") if f.strip()), output_path=args.output_path,
        progress=not args.no_progress, data_root=args.data_root, data_args=parse_kv(args.data_args, "--data_args"),
        math_judge=args.math_judge, num_processes=args.num_processes,
    )
    text = run_study(cfg)
    if text:  # under accelerate launch, rank 0 prints the leaderboard
        print(text)
    return 0


def configure_data(args: argparse.Namespace) -> None:
    from harness import data, math_judge

    data.configure(getattr(args, "data_root", None), parse_kv(getattr(args, "data_args", None), "--data_args"))
    spec = getattr(args, "math_judge", None)
    math_judge.configure(math_judge.parse_spec(spec) if spec else None)


def _task_rows(names: list[str] | None = None, count: bool = False) -> list[dict[str, Any]]:
    """One row per task: family, role, data status (cheap file check, or the sample count
    with ``count``), metrics, source, layout, protocol."""
    from harness import data
    from harness.dataset_task import DatasetTask
    from harness.registry import TASKS

    rows = []
    for name in names or TASKS.names():
        task = TASKS.get(name)()
        row: dict[str, Any] = {"name": name, "family": task.family, "role": task.role, "metrics": list(task.open_metrics),
                               "description": task.description}
        if isinstance(task, DatasetTask):
            spec = task.dataset
            row.update(dataset=spec.name, source=spec.source, layout=spec.layout_line(), protocol=task.protocol,
                       sample_ids=task.id_doc)
            try:
                if count:
                    row.update(data="found", size=len(task))
                else:
                    spec.check()
                    row.update(data="found", size=None)
            except data.DatasetMissing as exc:
                row.update(data="missing", size=None, problem=str(exc))
        else:
            row.update(dataset="synthetic", source="generated by the harness (tasks/synthetic)", layout="none: generated",
                       protocol=getattr(task, "protocol", "") or "see tasks/synthetic/families.py",
                       data="generated", size=len(task))
        rows.append(row)
    return rows


def cmd_tasks(args: argparse.Namespace) -> int:
    from harness import data

    configure_data(args)
    rows = _task_rows()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from leaderboards.table import render_text

    header = ("task", "family", "role", "data", "metrics", "description")
    print(render_text([(r["name"], r["family"], r["role"],
                        str(r["size"]) if r["size"] is not None else r["data"], ",".join(r["metrics"]), r["description"])
                       for r in rows], header=header, right=()))
    root = data.data_root()
    print(f"\ndata root: {root if root else 'not set (--data_root DIR or $HARNESS_DATA)'}; "
          "`harness data check` counts samples and says what is missing")
    datasets: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        datasets.setdefault(r["dataset"], []).append(r)
    print("\ndatasets: source, layout under the data root, protocol (default profile strict; "
          "`harness compare-profiles RUN` shows a run under every profile), tasks")
    for name, members in datasets.items():
        r = members[0]
        print(f"  {name} [{r['data']}]\n      source: {r['source']}\n      layout: {r['layout']}\n"
              f"      protocol: {r['protocol']}\n      tasks: {', '.join(m['name'] for m in members)}")
    print("\nEvery task can be posed open-ended (default), as multiple choice (name:mc) or yes/no (name:yesno).")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from harness import data
    from harness.registry import TASKS
    from harness.taskspec import resolve
    from leaderboards.table import render_text

    configure_data(args)
    names = [ref.name for ref in resolve(args.tasks)] if args.tasks else [n for n in TASKS.names()
                                                                          if not n.startswith("synth_")]
    rows = _task_rows(list(dict.fromkeys(names)), count=True)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(render_text([(r["name"], r["dataset"], r["data"], "" if r["size"] is None else str(r["size"]))
                           for r in rows], header=("task", "dataset", "data", "samples"), right=(3,)))
        problems: dict[str, list[str]] = {}
        for r in rows:
            if r["data"] == "missing":
                problems.setdefault(r["problem"], []).append(r["name"])
        for problem, names_ in problems.items():
            print(f"\n{', '.join(names_)}:\n  {problem}")
        root = data.data_root()
        print(f"\ndata root: {root if root else 'not set (--data_root DIR or $HARNESS_DATA)'}")
    return 1 if any(r["data"] == "missing" for r in rows) else 0


def cmd_compare_profiles(args: argparse.Namespace) -> int:
    from harness.profile_compare import compare_profiles, render_comparison

    configure_data(args)
    profiles = [p.strip() for p in args.profiles.split(",")] if args.profiles else None
    table = compare_profiles(args.run, profiles=profiles, n_boot=args.bootstrap)
    if args.format == "json":
        print(json.dumps(table, indent=2))
    else:
        print(render_comparison(table))
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from harness.registry import SUITES, TASK_GROUPS

    rows = [{"name": n, "train": s.train, "id": list(s.id), "ood": list(s.ood), "description": s.description}
            for n in SUITES.names() for s in [SUITES.get(n)]]
    groups = {g: list(TASK_GROUPS.get(g)) for g in TASK_GROUPS.names()}
    if args.format == "json":
        print(json.dumps({"suites": rows, "groups": groups}, indent=2))
        return 0
    from leaderboards.table import render_text

    print(render_text([(r["name"], r["train"], ",".join(r["id"]), ",".join(r["ood"]), r["description"]) for r in rows],
                      header=("suite", "train", "ID", "OOD", "description"), right=()))
    for g, members in groups.items():
        print(f"\ngroup {g}: {', '.join(members)}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from harness.compat.torchvision_cpu import setup_environment

    for line in setup_environment(dry_run=args.dry_run):
        print(line)
    return 0


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from harness.models.embedded import SHIPPED_TINY, build_tiny, ship_tiny

    built = build_tiny(progress=not args.no_progress)
    print(built)
    if args.ship:
        print(f"shipped: {ship_tiny(built)} (float16 weights); regenerate the reference numbers: "
              "README's score table and tests/reference/", file=sys.stderr)
    else:
        print(f"This build is reproducible on this machine; on another CPU it is a different, equally valid model. "
              f"`--model tiny` still loads the shipped reference model ({SHIPPED_TINY}); evaluate this build with "
              f"`--model {built}`, or replace the shipped one with `harness build-tiny --ship`.", file=sys.stderr)
    return 0


def cmd_export_lmms(args: argparse.Namespace) -> int:
    from harness.lmms.export import export_conventions, export_tasks

    conv = export_conventions(args.model_type, parse_kv(args.conventions, "--conventions"))
    infos = export_tasks(args.dir, args.tasks.split(","), conventions=conv, profile=args.profile, limit=args.limit,
                         subsample=args.subsample, seed=args.seed, data_root=args.data_root,
                         data_args=parse_kv(args.data_args, "--data_args"), overwrite=args.overwrite)
    for i in infos:
        skipped = f"  (not exported: {', '.join(i.skipped_metrics)})" if i.skipped_metrics else ""
        print(f"{i.lmms_name}: {i.n} samples of {i.harness_task}, metrics {','.join(i.metrics)}{skipped}")
    names = ",".join(i.lmms_name for i in infos)
    print(f"\nlmms-eval --include_path {Path(args.dir).expanduser().resolve()} --tasks {names} --model ...\n"
          "(harness must be importable where lmms-eval runs: it scores the outputs)")
    return 0


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_root", default=None, help="directory holding local datasets in their upstream layouts "
                   "(default: $HARNESS_DATA); see `harness tasks` and docs/tasks/")
    p.add_argument("--data_args", default=None, help="per-dataset options as k=v,k=v, e.g. "
                   "coco_images=/data/coco/train2014 (where RefCOCO's COCO images are)")
    p.add_argument("--math_judge", default=None, metavar="URL,MODEL[,KEY_ENV]",
                   help="extract math answers with an LLM behind an OpenAI-compatible endpoint (off by default: "
                        "rule-based; KEY_ENV names the variable holding the API key); recorded in the run")


def build_parser() -> argparse.ArgumentParser:
    # --debug before or after the command; SUPPRESS keeps a subcommand's default from
    # overwriting a --debug given before it
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    p = Parser(
        prog="harness",
        description="Evaluation-first benchmark harness for post-training vision-language models: score any model "
                    "on in-distribution (ID) and out-of-distribution (OOD) splits.",
    )
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    e = sub.add_parser("eval", parents=[common], help="score a model on tasks, suites or groups",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_EVAL)
    e.add_argument("--model", required=True,
                   help="'tiny' (the embedded Qwen2-VL-architecture model, built on first use), a local model "
                        "directory, or a PEFT adapter directory")
    e.add_argument("--tasks", required=True,
                   help="comma-separated tasks, suites or groups (see `harness tasks`, `harness suites`); "
                        "append :mc or :yesno to pose them as multiple choice or yes/no")
    e.add_argument("--backend", default="hf", help="inference backend (default: hf = transformers)")
    e.add_argument("--model_args", default=None,
                   help="backend options as k=v,k=v, e.g. dtype=bfloat16,device=cuda,threads=1,box_space=norm1000")
    e.add_argument("--limit", type=int, default=None, help="score only the first N samples of each task")
    e.add_argument("--subsample", type=int, default=None,
                   help="score a seeded random N samples of each task (seed: --seed), kept in split order")
    e.add_argument("--batch_size", type=int, default=8, help="prompts per generate call (default 8)")
    e.add_argument("--num_processes", type=int, default=None,
                   help="data-parallel eval in N processes on this machine (under torchrun; each loads the model, "
                        "with device=cuda each its own GPU); the run directory and aggregates are those of one "
                        "process. Several nodes: `torchrun --nnodes ... -m harness.cli eval ...` (docs/backends.md)")
    e.add_argument("--num_workers", default="auto", metavar="N|auto",
                   help="processes that prepare the next batch (images, chat template, processor) while one "
                        "generates; scoring and writing then run beside generation too. 0: all serial. Records "
                        "are the same either way (default auto: 1 when the machine has a second core, 2 with a GPU)")
    e.add_argument("--output_path", default=None,
                   help="run directory (default: harness_runs/<model>-<config hash>); rerun to resume")
    e.add_argument("--seed", type=int, default=0, help="seed for sampling and bootstrap (default 0)")
    e.add_argument("--profile", default="strict", help="scoring protocol profile (default strict; also lenient and "
                   "the papers' scripts: visual-rft, vlm-r1, lmms-eval, curr-reft, dc-sft; docs/profiles.md)")
    add_data_options(e)
    e.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    e.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (default 1.0)")
    e.add_argument("--max_new_tokens", type=int, default=None, help="override each task's generation length")
    e.add_argument("--num_samples", type=int, default=1, help="completions per prompt (needs --temperature > 0); "
                   "records keep all of them and each one's score, metrics are the first's (default 1)")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (default 1000)")
    e.add_argument("--log_samples", action="store_true", help="print the first samples of each task after the table "
                   "(prompts, outputs, parses and scores are always kept in the run's records)")
    e.add_argument("--overwrite", action="store_true", help="discard an existing run at --output_path")
    e.add_argument("--no_progress", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("score", parents=[common], help="score saved outputs without a model",
                       description="Score a JSONL of {sample_id, output} (e.g. a run's records file) on a task. "
                                   "Next to a run's records, the run's config supplies box space and profile.")
    s.add_argument("--task", required=True, help="task name, optionally with :mc or :yesno")
    s.add_argument("--predictions", required=True, help="JSONL file with sample_id (or id) and output per line")
    s.add_argument("--profile", default=None, help="protocol profile (default: the run's, else strict)")
    s.add_argument("--box_space", default=None, help="coordinate space of the outputs' boxes (default: the run's, "
                   "else norm1000): norm1000, abs_resized, norm1, abs")
    s.add_argument("--config", default=None, help="a run's config.json (default: found next to the predictions)")
    s.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: the run's, else 1000)")
    s.add_argument("--seed", type=int, default=None, help="bootstrap seed (default: the run's, else 0)")
    s.add_argument("--limit", type=int, default=None, help="only samples among the first N of the task")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.add_argument("--output_path", default=None, help="also write the aggregate as JSON here")
    add_data_options(s)
    s.set_defaults(func=cmd_score)

    te = sub.add_parser(
        "train-and-eval", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train trainers from one base on a suite's train split; score every checkpoint on its ID and OOD splits",
        description="Trains each trainer from the same base model and seed on the suite's train split. The base and "
                    "every saved checkpoint are scored on the suite's ID and OOD splits (ordinary run directories), "
                    "and the study's leaderboard (ID, OOD, OOD average, delta vs the baseline, paired significance) "
                    "and plots are written. Rerun the same command to resume after an interruption.",
        epilog=EXAMPLES_STUDY)
    te.add_argument("--model", required=True, help="base model: 'tiny', a local model directory")
    te.add_argument("--suite", required=True, help="a suite with a train split (see `harness suites`)")
    te.add_argument("--trainers", required=True, help="comma-separated trainers, e.g. sft,grpo")
    te.add_argument("--config", default=None, help="YAML/JSON trainer options: top-level keys for every trainer, "
                    "sections (sft:, grpo:) for one")
    te.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a trainer option: max_steps=50 (every trainer) or grpo.beta=0.04 (one); repeatable")
    te.add_argument("--max_steps", type=int, default=None, help="optimizer steps of every trainer (wins over --config)")
    te.add_argument("--eval_every", type=int, default=None, help="steps between checkpoints; each one is scored")
    te.add_argument("--num_processes", type=int, default=None,
                    help="train each trainer in N processes on this machine (accelerate launch; on a GPU machine, one "
                         "GPU each); each takes batch_size / N rows per step, so the global batch is unchanged. "
                         "Evals stay in this process. sft and grpo (docs/multiprocess.md)")
    te.add_argument("--eval_limit", type=int, default=300, help="samples per ID/OOD split in each eval (default 300)")
    te.add_argument("--eval_batch_size", type=int, default=16, help="eval batch size (default 16)")
    te.add_argument("--model_args", default=None, help="backend options for the evals, as in harness eval")
    te.add_argument("--seed", type=int, default=None, help="seed of every trainer and eval (wins over --config and "
                    "--set; default: the trainers' own, 0)")
    te.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (default 1000)")
    te.add_argument("--baseline", default=None, help="leaderboard row for deltas and tests (default: the final SFT "
                    "checkpoint when sft is trained, else base)")
    te.add_argument("--format", default="md,csv,html", help="leaderboard files to write (default md,csv,html)")
    te.add_argument("--output_path", default=None, help="study directory (default harness_studies/<model>-<suite>-"
                    "<trainers>); rerun to resume")
    te.add_argument("--no_progress", action="store_true", help="no progress bars")
    add_data_options(te)
    te.set_defaults(func=cmd_train_and_eval)

    t = sub.add_parser("tasks", parents=[common], help="list tasks with their data status, sources, layouts, protocols")
    t.add_argument("--format", choices=("table", "json"), default="table")
    add_data_options(t)
    t.set_defaults(func=cmd_tasks)
    t = sub.add_parser("suites", parents=[common], help="list suites and groups")
    t.add_argument("--format", choices=("table", "json"), default="table")
    t.set_defaults(func=cmd_suites)

    d = sub.add_parser("data", parents=[common], help="check local datasets", description="Local datasets live under "
                       "the data root (--data_root, else $HARNESS_DATA), each in its upstream layout; see docs/tasks/.")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=Parser)
    dc = dsub.add_parser("check", parents=[common], help="per task: found / missing / sample count",
                         description="Reads each task's annotations (no images decoded) and reports found, missing "
                                     "(with what is missing and what was found) and the sample count. Exit 1 when "
                                     "any is missing.")
    dc.add_argument("tasks", nargs="*", help="tasks, suites or groups (default: every task over a local dataset)")
    dc.add_argument("--format", choices=("table", "json"), default="table")
    add_data_options(dc)
    dc.set_defaults(func=cmd_data_check)
    from harness.overlap_cli import add_overlap_parser  # data overlap

    add_overlap_parser(dsub, common)

    cp = sub.add_parser("compare-profiles", parents=[common], help="a run re-scored under every protocol profile",
                        description="Re-scores the run's saved outputs under each protocol profile (no model) and "
                                    "prints each task's metrics per profile, so the gap between evaluation scripts "
                                    "is a table.")
    cp.add_argument("run", help="a run directory (from harness eval)")
    cp.add_argument("--profiles", default=None, help="comma-separated profiles (default: all)")
    cp.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for CIs (default 0: none)")
    cp.add_argument("--format", choices=("table", "json"), default="table")
    add_data_options(cp)
    cp.set_defaults(func=cmd_compare_profiles)

    st = sub.add_parser("setup", parents=[common], help="make this environment work on a CPU-only machine (torchvision shim)",
                        description="Installs torchvision without dependencies if it is missing, and if its "
                                    "compiled ops cannot load (a CUDA build on CPU torch) installs a start-up hook "
                                    "that registers their schemas. Does nothing where nothing is needed.")
    st.add_argument("--dry_run", action="store_true", help="only report what would be done")
    st.set_defaults(func=cmd_setup)

    b = sub.add_parser("build-tiny", parents=[common], help="rebuild the embedded tiny model's recipe into the cache",
                       description="Pretrains the tiny model's recipe (about 10 minutes on 2 cores), caches it under "
                                   "$HARNESS_CACHE/models (default ~/.cache/harness/models) and prints its directory. "
                                   "`--model tiny` keeps loading the model shipped in the package unless --ship.")
    b.add_argument("--ship", action="store_true",
                   help="replace the shipped model (harness/models/tiny_qwen2vl) by a float16 export of this build")
    b.add_argument("--no_progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build_tiny)

    x = sub.add_parser("export-lmms", parents=[common], help="write tasks as an lmms-eval task directory (--include_path)",
                       description="Writes each task (suites and groups expand to their ID and OOD splits) as an "
                                   "lmms-eval task over local data: a YAML, a utils.py whose process_results calls "
                                   "harness's own scorer, data.jsonl and PNG images. See docs/lmms.md.")
    x.add_argument("dir", help="output directory (pass it to lmms-eval as --include_path)")
    x.add_argument("--tasks", required=True, help="comma-separated tasks, suites or groups; :mc or :yesno as in eval")
    x.add_argument("--model_type", default="qwen2_vl", help="model family whose conventions (box space) the prompts "
                   "are written for (default qwen2_vl)")
    x.add_argument("--conventions", default=None, help="convention overrides as k=v,k=v, e.g. box_space=norm1")
    x.add_argument("--profile", default="strict", help="scoring protocol profile (default strict)")
    x.add_argument("--limit", type=int, default=None, help="export only the first N samples of each task")
    x.add_argument("--subsample", type=int, default=None, help="export a seeded random N samples of each task")
    x.add_argument("--seed", type=int, default=0, help="seed for --subsample (default 0)")
    x.add_argument("--overwrite", action="store_true", help="replace task directories that exist")
    add_data_options(x)
    x.set_defaults(func=cmd_export_lmms)

    from leaderboards.cli import add_parsers  # leaderboard, regress

    add_parsers(sub)
    from harness.difficulty_cli import add_parser as add_profile_difficulty

    add_profile_difficulty(sub, common)
    from harness.paper_study_cli import add_parser as add_study

    add_study(sub, common)
    from harness.viewer_cli import add_parser as add_view

    add_view(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    _threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        # Usage and input errors (HarnessError) are the user's to fix: exit 2. Anything
        # else is our bug: exit 3 (1 means "regression" to harness regress), still one
        # line; --debug shows where it happened.
        ours = isinstance(exc, (HarnessError, FileNotFoundError, NotADirectoryError, IsADirectoryError))
        text = str(exc).strip() or type(exc).__name__
        if not ours:
            text = f"{type(exc).__name__}: {text} (an internal error; rerun with --debug for the traceback)"
        print(f"harness: error: {text}", file=sys.stderr)
        return 2 if ours else 3


def console() -> None:
    """The ``harness`` command: :func:`main`, then exit. Before exiting, every object is
    moved out of the garbage collector's reach (``gc.freeze``): with torch and
    transformers loaded, the interpreter's final collection took about 1.6 s of a 2 s
    shutdown here, to free memory the OS frees anyway. atexit handlers and module
    finalisation still run; files were closed and synced by the commands themselves."""
    import gc

    code = main()
    sys.stdout.flush()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console()
