"""``harness train-and-eval``: train each trainer from the same base, score the base and
every checkpoint on the suite's ID and OOD splits, and render the leaderboard.

A study directory holds everything, and its run directories are the only copy of the
numbers (the leaderboard and plots are rendered from them)::

    <study>/study.json                  what was asked (its identity must match to resume)
    <study>/runs/base/                  the base model's eval run
    <study>/runs/<trainer>/step-<N>/    one eval run per checkpoint (meta: method, step, cost)
    <study>/train/<trainer>/            the trainer's output_dir (checkpoints, train_log.jsonl, plots/ of
                                        loss and rewards against step)
    <study>/leaderboard.{md,csv,html}
    <study>/plots/<trainer>_eval.png    ID and OOD metric against step (step 0 = base)

A trainer with ``chains = True`` (``rs_sft``) trains from the final checkpoint of the
trainer before it in ``--trainers`` (``--trainers curr_rl,rs_sft``), or from the base
when it comes first; every other trainer trains from the base.

Several processes (docs/multiprocess.md): with ``--num_processes N`` this process stays
single (validation, the base eval, every checkpoint's eval, the leaderboard) and each
trainer's training runs in N processes under accelerate's launcher (trainers/launch.py).
Under ``accelerate launch -m harness.cli train-and-eval`` every process runs the study:
rank 0 writes the study's files, and the base and each checkpoint are scored by all
processes together (data-parallel eval).

Resume: rerunning the same command skips finished evals (their aggregates exist),
finishes an interrupted eval from its records, and lets each trainer resume from its
last complete checkpoint; checkpoints that exist but were never scored are scored
first. Everything is validated (suite, trainers, configs, eval options, output path)
before any model is loaded.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import data, distributed
from harness.atomic import write_json_atomic, write_text_atomic
from harness.errors import UsageError
from harness.evaluator import EvalConfig, resolve_model, run_eval
from harness.taskspec import make_task
from harness.validation import check_number, check_output_dir

STUDY_FILE = "study.json"
FORMATS = ("md", "csv", "html")


@dataclass
class StudyConfig:
    model: str
    suite: str
    trainers: list[str]
    #: trainer options: a YAML/JSON file (top level: every trainer; sections: one) and --set overrides
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    #: shortcuts that win over the file and --set: optimizer steps, steps between checkpoints, seed
    max_steps: int | None = None
    eval_every: int | None = None
    #: None: each trainer's own (config file, --set, default 0); evals use it or 0
    seed: int | None = None
    #: eval of the base and of every checkpoint (see harness eval)
    eval_limit: int | None = 300
    eval_batch_size: int = 16
    model_args: dict[str, Any] = field(default_factory=dict)
    bootstrap: int = 1000
    #: leaderboard: baseline row (label or method); None: "sft" when trained, else "base"
    baseline: str | None = None
    formats: tuple[str, ...] = FORMATS
    output_path: str | None = None
    progress: bool = True
    #: local datasets (see harness eval --data_root / --data_args); not part of the identity
    data_root: str | None = None
    data_args: dict[str, Any] = field(default_factory=dict)
    math_judge: str | None = None
    #: training processes of every trainer (None: the configs' own, 1 unless set there);
    #: under accelerate launch, the launcher's
    num_processes: int | None = None

    def default_output_path(self) -> str:
        name = f"{Path(self.model.rstrip('/')).name}-{self.suite}-{'-'.join(self.trainers)}"
        return str(Path("harness_studies") / name)

    def identity(self) -> dict[str, Any]:
        keys = ("model", "suite", "trainers", "seed", "eval_limit", "eval_batch_size", "model_args", "bootstrap")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Prepared:
    """A validated study: suite, trainers with their configs, and paths."""

    root: Path
    suite: Any
    plans: list[tuple[Any, Any]]  # (trainer instance, its config)
    eval_base: EvalConfig



def prepare(cfg: StudyConfig) -> Prepared:
    """Every check that needs no model; raises UsageError/UnknownName naming what to fix."""
    from harness.registry import SUITES
    from trainers import get_trainer, load_config
    from trainers.launch import check_processes, processes_for

    if not cfg.trainers or not all(t.strip() for t in cfg.trainers):
        raise UsageError("--trainers is empty; name one or more trainers, e.g. --trainers sft,grpo")
    if len(set(cfg.trainers)) != len(cfg.trainers):
        raise UsageError(f"--trainers names a trainer twice: {','.join(cfg.trainers)}")
    check_number("--max_steps", cfg.max_steps, minimum=1, integer=True)
    check_number("--eval_every", cfg.eval_every, minimum=1, integer=True)
    check_number("--eval_limit", cfg.eval_limit, minimum=1, integer=True)
    check_number("--eval_batch_size", cfg.eval_batch_size, minimum=1, integer=True, allow_none=False)
    check_number("--seed", cfg.seed, minimum=0, integer=True)
    check_number("--num_processes", cfg.num_processes, minimum=1, integer=True)
    processes = processes_for(cfg.num_processes, distributed.current())
    bad = [f for f in cfg.formats if f not in FORMATS]
    if bad or not cfg.formats:
        raise UsageError(f"--format: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    suite = SUITES.get(cfg.suite)
    data.configure(cfg.data_root, cfg.data_args)
    for name in (suite.train, *suite.eval_tasks):  # a missing dataset is reported before any training
        len(make_task(name))
    root = Path(cfg.output_path or cfg.default_output_path())
    check_output_dir(root, marker=STUDY_FILE, what="study")

    shortcuts = {k: v for k, v in (("max_steps", cfg.max_steps), ("save_steps", cfg.eval_every), ("seed", cfg.seed))
                 if v is not None}
    if not cfg.progress:
        shortcuts["progress"] = False
    if processes is not None:
        shortcuts["num_processes"] = processes
    plans = []
    for name in cfg.trainers:
        trainer = get_trainer(name.strip())
        config = load_config(trainer.name, cfg.config_file, cfg.overrides,
                             output_dir=str(root / "train" / trainer.name), **shortcuts)
        trainer.check(suite, config)
        check_processes(trainer, config)  # also for trainers whose check() is their own
        plans.append((trainer, config))

    eval_base = _eval_config(cfg, cfg.model, root / "runs" / "base",
                             {"label": "base", "method": "base", "checkpoint": 0})
    eval_base.validate()
    return Prepared(root, suite, plans, eval_base)


def _eval_config(cfg: StudyConfig, model: str, out: Path, meta: dict[str, Any]) -> EvalConfig:
    return EvalConfig(model=model, tasks=[cfg.suite], model_args=dict(cfg.model_args), limit=cfg.eval_limit,
                      batch_size=cfg.eval_batch_size, seed=cfg.seed or 0, n_boot=cfg.bootstrap, output_path=str(out),
                      progress=cfg.progress, data_root=cfg.data_root, data_args=dict(cfg.data_args),
                      math_judge=cfg.math_judge,
                      meta={"model": Path(cfg.model.rstrip("/")).name, "seed": cfg.seed or 0, **meta})


def _check_identity(root: Path, cfg: StudyConfig, plans) -> None:
    """A study directory is resumed only by the same study (same trainers and configs)."""
    identity = {**cfg.identity(), "trainer_configs": {t.name: c.identity() for t, c in plans}}
    record_study(root / STUDY_FILE, identity, {"config": asdict(cfg),
                                               "trainer_configs": {t.name: c.to_dict() for t, c in plans}},
                 "a study is resumed only by the same command")


def record_study(path: Path, identity: dict[str, Any], extra: dict[str, Any], why: str) -> None:
    """Write a study file, or refuse one whose recorded identity differs (``why`` says what must match)."""
    from harness.validation import identity_diff, read_json_file

    if path.exists():
        recorded = read_json_file(path, "study file")
        diff = identity_diff(recorded.get("identity") if isinstance(recorded, dict) else None, identity)
        if diff:
            raise UsageError(f"{path.parent} holds a study with a different {', '.join(diff)}; use another "
                             f"--output_path ({why})")
    write_json_atomic(path, {"identity": identity, **extra})


def _say(text: str) -> None:
    if distributed.current().main:
        print(f"[train-and-eval] {text}", file=sys.stderr, flush=True)


def _scored(out: Path) -> bool:
    """Whether an eval run is finished, as rank 0 sees it (every rank then takes the same path)."""
    from trainers.launch import on_main

    return bool(on_main(distributed.current(), (out / "aggregates.json").exists))


def _eval_checkpoint(cfg: StudyConfig, root: Path, ckpt) -> Path:
    out = root / "runs" / ckpt.trainer / f"step-{ckpt.step:06d}"
    if _scored(out):
        return out  # scored before the study was interrupted
    cost = ckpt.cost or {}
    meta = {"label": f"{ckpt.trainer}@{ckpt.step}", "method": ckpt.trainer, "checkpoint": ckpt.step,
            "cost": {"wall_s": cost.get("wall_time_s"), "generated_tokens": cost.get("generated_tokens"),
                     "optimizer_steps": cost.get("optimizer_steps")}}
    _say(f"{ckpt.trainer}: scoring checkpoint step {ckpt.step} on {cfg.suite} (ID and OOD splits)")
    run_eval(_eval_config(cfg, ckpt.path, out, meta))
    return out


def run_study(cfg: StudyConfig) -> str:
    """Run the study; returns the leaderboard in Markdown ("" on ranks other than 0)."""
    from trainers.launch import join, on_main, uses_cpu

    t0 = time.perf_counter()
    prep = prepare(cfg)
    root = prep.root
    world = distributed.current()
    if world.size > 1:  # under a launcher: the group training will use, before the first collective
        join(world, uses_cpu(prep.plans[0][1].device))
    on_main(world, lambda: _check_identity(root, cfg, prep.plans))

    base_dir = resolve_model(cfg.model)
    if not _scored(root / "runs" / "base"):
        _say(f"base: scoring {cfg.model} on {cfg.suite} (ID and OOD splits)")
        run_eval(prep.eval_base)
    final: dict[str, Any] = {}
    previous = None
    for trainer, config in prep.plans:
        for ckpt in trainer.existing_checkpoints(config.output_dir):  # scored or not before an interruption
            _eval_checkpoint(cfg, root, ckpt)
        # a chaining trainer (rs_sft) continues from the previous trainer's final checkpoint
        start = final[previous].path if getattr(trainer, "chains", False) and previous else base_dir
        _say(f"{trainer.name}: training on {prep.suite.train} for {config.max_steps} steps "
             f"(a checkpoint every {config.save_steps})" + (f", from {previous}'s final checkpoint"
                                                            if start != base_dir else "")
             + (f", in {config.num_processes} processes" if config.num_processes > 1 else ""))
        ckpts = trainer.train(start, prep.suite, config, on_checkpoint=lambda c: _eval_checkpoint(cfg, root, c))
        final[trainer.name] = ckpts[-1]
        previous = trainer.name
    # as in the papers' tables: RL methods against SFT on the same data, else against the base
    baseline = cfg.baseline or (f"sft@{final['sft'].step}" if "sft" in final else "base")
    names = [t.name for t, _ in prep.plans]

    def report() -> str:
        text = render(root, baseline, cfg.formats, names)
        plot_study(root, names)
        return text

    text = on_main(world, report)
    _say(f"done in {time.perf_counter() - t0:.0f} s: {root}")
    return text if world.main else ""


def render(root: Path, baseline: str, formats: tuple[str, ...] = FORMATS, trainers: list[str] | None = None) -> str:
    """Leaderboard files from the study's run directories; returns the Markdown."""
    from leaderboards.board import LeaderboardOptions
    from leaderboards.cli import view_pages, write_views
    from leaderboards.render import RenderOptions
    from leaderboards.report import leaderboard_texts

    # each run's samples as a viewer page in <study>/views/, linked from leaderboard.html's cells
    views = view_pages([str(root / "runs")], root) if "html" in formats else {}
    texts = leaderboard_texts([root / "runs"], LeaderboardOptions(baseline=baseline),
                              RenderOptions(cost=True, views={run: href for run, (href, _) in views.items()}),
                              formats=set(formats) | {"md"}, title=f"Study {root.name}",
                              warn=lambda m: _say(f"warning: {m}"), method_order=trainers)
    write_views(views)  # before the page that links them
    for fmt in formats:
        write_text_atomic(root / f"leaderboard.{fmt}", texts[fmt])
    return texts["md"]


def plot_study(root: Path, trainers: list[str]) -> list[Path]:
    """Per trainer: the primary metric of every ID and OOD split against step (step 0 = base).
    (The training curves, loss and rewards, are each trainer's own: train/<name>/plots/.)"""
    from leaderboards.collect import collect
    from trainers.plots import plot_eval_curves

    runs = collect([root / "runs"]).runs
    written = []
    for name in trainers:
        rows = []
        for run in runs:
            if run.method not in ("base", name):
                continue
            step = run.checkpoint if isinstance(run.checkpoint, int) else 0
            for agg in run.aggregates.values():
                m = agg["metrics"][agg["primary_metric"]]
                rows.append({"step": step, "split": agg["task"], "role": agg["role"], "value": 100 * m["value"],
                             "ci_low": 100 * m["ci"][0], "ci_high": 100 * m["ci"][1]})
        if rows:
            written.append(plot_eval_curves(rows, root / "plots" / f"{name}_eval.png", metric_label="score (%)",
                                            title=f"{name}: ID and OOD primary metric by step"))
    return written
