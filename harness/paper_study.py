"""``harness study curr-reft|dc-sft``: a paper's comparison as one resumable command.

Each method (a trainer with a recipe) is trained once per seed from the same base on
the suite's train split, less a held-out validation split carved from its first
``val_size`` samples. Every checkpoint is scored on that validation split; the
checkpoint a row stands for is chosen there (``select: val``, the best primary
metric, the later checkpoint on ties) or is the last one (``select: last``), never on
an ID or OOD test split. Only the chosen checkpoint is then scored on the suite's ID
and OOD splits, with the same samples for every row, so rows compare pairwise.

The tables (``study-<paper>.{md,csv,html}``) hold per method the seed-averaged value
with its 95 % CI and the spread across seeds, deltas against SFT with paired tests,
the minimum detectable difference of each split, the rule that chose each row and the
cost (wall time, generated tokens, optimizer steps; DC-SFT's include the difficulty
profiling, RS-SFT's the Curr-RL run it starts from). The report adds the train/test
overlap audit (harness/overlap.py), the difficulty table (DC-SFT) and the measured
cost ratios.

Layout of the study directory (shared by both papers' commands: methods they have in
common, with the same recipe, are trained once)::

    study.json                         settings every command on this directory must share
    runs/base/                         the base model on the suite's ID and OOD splits
    runs/<method>/seed-<s>/            the chosen checkpoint on the suite's ID and OOD splits
    selection/<method>/seed-<s>/step-<N>/  each checkpoint on the validation split
    train/<method>/seed-<s>/           the trainer's output_dir
    difficulty/                        the base model's difficulty profile (DC-SFT)
    study-<paper>.{md,csv,html}, study-<paper>-seeds.md, study-<paper>.json

Jobs (one method and seed each) run ``jobs`` at a time in worker processes with one
torch thread each (the measured optimum per process on these machines); a job waits
for what it starts from (RS-SFT for Curr-RL of its seed, DC-SFT for the profile).
Everything is resumable: rerunning the command skips finished evals and resumes
each trainer from its last complete checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_json_atomic, write_text_atomic
from harness.errors import HarnessError, UsageError
from harness.validation import check_number, check_output_dir

STUDY_FILE = "study.json"
SELECTIONS = ("val", "last")


@dataclass(frozen=True)
class Method:
    """One table row family: a trainer with its recipe (option overrides)."""

    key: str
    trainer: str
    title: str
    overrides: tuple[str, ...] = ()
    #: trains from this method's final checkpoint of the same seed (RS-SFT after Curr-RL)
    after: str | None = None
    #: needs the base model's difficulty profile (DC-SFT trainers)
    profiled: bool = False


#: the embedded default's recipes: what moved the tiny model (MEASURED.md, docs/studies.md)
RECIPES_FULL: dict[str, tuple[str, ...]] = {
    "sft": ("max_steps=300", "save_steps=100"),
    "grpo": ("max_steps=700", "save_steps=175"),
    "curr_rl": ("max_steps=700", "save_steps=175", "curr_rl.stage_steps=125,125,450"),
    "rs_sft": ("max_steps=60", "save_steps=30"),
    "sft_m": ("max_steps=300", "save_steps=100"),
    "sft_em": ("max_steps=300", "save_steps=100"),
    "difficulty": ("max_steps=100", "save_steps=50", "equalize=true"),
}
RECIPES_QUICK: dict[str, tuple[str, ...]] = {
    "sft": ("max_steps=4", "save_steps=2", "batch_size=8"),
    "grpo": ("max_steps=4", "save_steps=2", "batch_size=4"),
    "curr_rl": ("max_steps=6", "save_steps=2", "batch_size=4"),
    "rs_sft": ("max_steps=2", "save_steps=2", "batch_size=8", "rs_sft.sample_prompts=24", "rs_sft.num_samples=4"),
    "sft_m": ("max_steps=4", "save_steps=2", "batch_size=8"),
    "sft_em": ("max_steps=4", "save_steps=2", "batch_size=8"),
    "difficulty": ("max_steps=2", "save_steps=2", "batch_size=8", "equalize=true"),
}


def paper_methods(paper: str, recipes: dict[str, tuple[str, ...]], difficulty_study: bool,
                  hard_ratios: tuple[float, ...]) -> list[Method]:
    common = [Method("sft", "sft", "SFT", recipes["sft"]), Method("grpo", "grpo", "GRPO", recipes["grpo"])]
    if paper == "curr-reft":
        return common + [Method("curr_rl", "curr_rl", "Curr-RL", recipes["curr_rl"]),
                         Method("rs_sft", "rs_sft", "Curr-RL + RS-SFT", recipes["rs_sft"], after="curr_rl")]
    if paper == "dc-sft":
        out = common + [Method("sft_m", "sft_m", "SFT-M", recipes["sft_m"], profiled=True),
                        Method("sft_em", "sft_em", "SFT-EM", recipes["sft_em"], profiled=True)]
        if difficulty_study:
            out += [Method(f"sft_{s}_eq", f"sft_{s}", f"SFT on {name} (equal size)", recipes["difficulty"],
                           profiled=True) for s, name in (("e", "easy"), ("m", "medium"), ("h", "hard"))]
        for r in hard_ratios:
            pct = round(100 * r)
            out.append(Method(f"sft_m_hard{pct}", "sft_m", f"SFT-M with {pct} % hard", recipes["sft_m"]
                              + (f"hard_ratio={r}",), profiled=True))
        return out
    raise UsageError(f"unknown study {paper!r}; choose curr-reft or dc-sft")


@dataclass
class PaperStudyConfig:
    paper: str
    model: str = "tiny"
    suite: str = "synth_cls_study"
    seeds: tuple[int, ...] = (0, 1)
    #: methods to run (default: the paper's); keys of paper_methods
    methods: tuple[str, ...] | None = None
    quick: bool = False
    #: the train split's first N samples: the validation split that picks checkpoints
    val_size: int = 500
    select: str = "val"
    #: samples per ID/OOD split (None: all); the same samples for every row
    eval_limit: int | None = None
    eval_batch_size: int = 16
    bootstrap: int = 1000
    difficulty_study: bool = True
    hard_ratios: tuple[float, ...] = ()
    #: difficulty profile of the base model (DC-SFT): train prompts, samples per prompt
    profile_samples: int = 2000
    profile_generations: int = 8
    #: the paper's 0.9; a weak model at 0.9 is almost never right G times out of G (no easy subset)
    profile_temperature: float = 0.9
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    model_args: dict[str, Any] = field(default_factory=dict)
    jobs: int = 2
    output_path: str | None = None
    progress: bool = True
    data_root: str | None = None
    data_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quick:  # CI-sized: minutes, not an hour
            self.val_size = min(self.val_size, 32)
            self.eval_limit = 48 if self.eval_limit is None else min(self.eval_limit, 48)
            self.profile_samples = min(self.profile_samples, 48)
            self.profile_generations = min(self.profile_generations, 4)
            self.bootstrap = min(self.bootstrap, 200)

    @property
    def recipes(self) -> dict[str, tuple[str, ...]]:
        return RECIPES_QUICK if self.quick else RECIPES_FULL

    def all_methods(self) -> list[Method]:
        methods = paper_methods(self.paper, self.recipes, self.difficulty_study, self.hard_ratios)
        if self.methods is None:
            return methods
        known = {m.key: m for m in methods}
        unknown = [k for k in self.methods if k not in known]
        if unknown:
            raise UsageError(f"--methods: {', '.join(unknown)} not in the {self.paper} study; choose from "
                             f"{', '.join(known)}")
        chosen = [known[k] for k in self.methods]
        for m in chosen:
            if m.after and m.after not in self.methods:
                raise UsageError(f"--methods: {m.key} trains after {m.after}; add {m.after}")
        return chosen

    def shared_identity(self) -> dict[str, Any]:
        """What every study command on one directory must agree on (rows must be comparable)."""
        # (the difficulty profile's settings are not here: its own run directory refuses a different profile)
        keys = ("model", "suite", "val_size", "eval_limit", "eval_batch_size", "bootstrap", "model_args", "quick",
                "config_file", "overrides")
        return {k: getattr(self, k) for k in keys}

    def default_output_path(self) -> str:
        return str(Path("harness_studies") / f"study-{Path(self.model.rstrip('/')).name}-{self.suite}"
                   f"{'-quick' if self.quick else ''}")


@dataclass
class Job:
    method: Method
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method.key} seed {self.seed}"


def _say(text: str) -> None:
    print(f"[study] {text}", file=sys.stderr, flush=True)


# ----- preparation: every check before a model loads ---------------------------------------

@dataclass
class Plan:
    cfg: PaperStudyConfig
    root: Path
    suite: Any
    methods: list[Method]
    configs: dict[tuple[str, int], Any]  # (method key, seed) -> trainer config
    difficulty_dir: Path | None


def prepare(cfg: PaperStudyConfig) -> Plan:
    from harness import data
    from harness.registry import SUITES
    from harness.taskspec import make_task
    from trainers import get_trainer, load_config

    if cfg.paper not in ("curr-reft", "dc-sft"):
        raise UsageError(f"unknown study {cfg.paper!r}; choose curr-reft or dc-sft")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        raise UsageError(f"--seeds: give distinct seeds >= 0, e.g. 0,1 (got {list(cfg.seeds)})")
    check_number("--val_size", cfg.val_size, minimum=1, integer=True, allow_none=False)
    check_number("--eval_limit", cfg.eval_limit, minimum=1, integer=True)
    check_number("--eval_batch_size", cfg.eval_batch_size, minimum=1, integer=True, allow_none=False)
    check_number("--jobs", cfg.jobs, minimum=1, integer=True, allow_none=False)
    check_number("--bootstrap", cfg.bootstrap, minimum=0, integer=True, allow_none=False)
    if cfg.select not in SELECTIONS:
        raise UsageError(f"--select must be one of {', '.join(SELECTIONS)}, got {cfg.select!r}")
    for r in cfg.hard_ratios:
        if not 0 < r < 1:
            raise UsageError(f"--hard_ratios: each share must be in (0, 1), got {r}")
    check_number("--profile_samples", cfg.profile_samples, minimum=1, integer=True, allow_none=False)
    check_number("--profile_generations", cfg.profile_generations, minimum=2, integer=True, allow_none=False)
    check_number("--profile_temperature", cfg.profile_temperature, minimum=0, exclusive_minimum=True,
                 allow_none=False)
    suite = SUITES.get(cfg.suite)
    data.configure(cfg.data_root, cfg.data_args)
    if not suite.train:
        raise UsageError(f"suite {cfg.suite!r} has no train split; a study trains on it")
    for name in (suite.train, *suite.eval_tasks):
        len(make_task(name))  # a missing dataset is reported before any model loads
    if cfg.val_size >= len(make_task(suite.train)):
        raise UsageError(f"--val_size {cfg.val_size} leaves nothing of {suite.train} to train on")
    methods = cfg.all_methods()
    root = Path(cfg.output_path or cfg.default_output_path())
    check_output_dir(root, marker=STUDY_FILE, what="study")
    difficulty_dir = root / "difficulty" if any(m.profiled for m in methods) else None
    configs = {}
    for m in methods:
        trainer = get_trainer(m.trainer)
        for seed in cfg.seeds:
            extra = {"difficulty": str(difficulty_dir)} if m.profiled else {}
            config = load_config(m.trainer, cfg.config_file, list(m.overrides) + list(cfg.overrides),
                                 output_dir=str(root / "train" / m.key / f"seed-{seed}"), seed=seed,
                                 holdout=cfg.val_size, progress=cfg.progress and cfg.jobs == 1, **extra)
            if not m.profiled:  # a profiled trainer's check reads the profile, which a job makes first
                trainer.check(suite, config)
            configs[(m.key, seed)] = config
    plan = Plan(cfg, root, suite, methods, configs, difficulty_dir)
    # the evals' and the profile's options (model, --model_args), before study.json records them
    _eval_config(cfg, cfg.model, root / "runs" / "base", [cfg.suite], cfg.eval_limit, {}).validate()
    if difficulty_dir is not None:
        _profile_config(plan).validate()
    return plan


def _check_study_file(plan: Plan) -> None:
    from harness.study import record_study

    record_study(plan.root / STUDY_FILE, plan.cfg.shared_identity(), {"config": asdict(plan.cfg)},
                 "studies on one directory must share model, suite, splits and recipes")


# ----- evaluation ---------------------------------------------------------------------------

def _eval(cfg: PaperStudyConfig, model: str, out: Path, tasks: list[str], limit: int | None,
          meta: dict[str, Any]) -> dict[str, Any]:
    from harness.evaluator import run_eval

    agg_path = out / "aggregates.json"
    if not agg_path.exists():
        run_eval(_eval_config(cfg, model, out, tasks, limit, meta))
    return json.loads(agg_path.read_text(encoding="utf-8"))


def _eval_config(cfg: PaperStudyConfig, model: str, out: Path, tasks: list[str], limit: int | None,
                 meta: dict[str, Any]) -> Any:
    from harness.evaluator import EvalConfig

    # seed 0 for every eval: all rows are scored on the same samples (greedy decoding)
    return EvalConfig(model=model, tasks=tasks, model_args=dict(cfg.model_args), limit=limit,
                      batch_size=cfg.eval_batch_size, seed=0, n_boot=cfg.bootstrap, output_path=str(out),
                      progress=cfg.progress and cfg.jobs == 1, data_root=cfg.data_root,
                      data_args=dict(cfg.data_args), meta=meta)


def _val_score(aggs: Any) -> float:
    agg = aggs[0] if isinstance(aggs, list) else next(iter(aggs.values()))
    return float(agg["metrics"][agg["primary_metric"]]["value"])


def choose(scores: list[tuple[int, float]], rule: str) -> tuple[int, str]:
    """(step, rule text): the best validation score (the later checkpoint on ties), or the last."""
    steps = [s for s, _ in scores]
    if rule == "last":
        return steps[-1], "last checkpoint"
    best = max(scores, key=lambda sv: (round(sv[1], 12), sv[0]))
    # the rule, not its outcome: seeds that chose different steps share one row (steps are in its ckpt cell)
    return best[0], f"best id-val of {len(scores)}"


# ----- one job: a method and a seed -------------------------------------------------------------

def run_job(plan: Plan, job: Job) -> dict[str, Any]:
    """Train (or resume), score every checkpoint on the validation split, pick one, score it on
    the suite. Returns the row's summary."""
    import torch

    from trainers import get_trainer

    cfg = plan.cfg
    torch.set_num_threads(1)
    config = plan.configs[(job.method.key, job.seed)]
    trainer = get_trainer(job.method.trainer)
    start = _start_model(plan, job)
    val_root = plan.root / "selection" / job.method.key / f"seed-{job.seed}"

    def score_val(ckpt) -> None:
        _eval(cfg, ckpt.path, val_root / f"step-{ckpt.step:06d}", [plan.suite.train], cfg.val_size,
              {"label": f"{job.method.key} seed {job.seed} @{ckpt.step} (val)", "method": job.method.key,
               "seed": job.seed, "checkpoint": ckpt.step})

    if job.method.profiled:
        trainer.check(plan.suite, config)
    for ckpt in trainer.existing_checkpoints(config.output_dir):
        score_val(ckpt)
    _say(f"{job.name}: training {job.method.trainer} on {plan.suite.train} ({config.max_steps} steps)")
    t0 = time.perf_counter()
    ckpts = trainer.train(start, plan.suite, config, on_checkpoint=score_val)
    scores = [(c.step, _val_score(json.loads((val_root / f"step-{c.step:06d}" / "aggregates.json").read_text())))
              for c in ckpts]
    step, rule = choose(scores, cfg.select)
    chosen = next(c for c in ckpts if c.step == step)
    cost = chosen.cost or {}
    meta = {"label": f"{job.method.key} seed {job.seed}", "method": job.method.key, "seed": job.seed,
            "checkpoint": step, "selection": rule, "model": Path(cfg.model.rstrip("/")).name,
            "cost": {"wall_s": cost.get("wall_time_s"), "generated_tokens": cost.get("generated_tokens"),
                     "optimizer_steps": cost.get("optimizer_steps")}}
    out = plan.root / "runs" / job.method.key / f"seed-{job.seed}"
    if (out / "config.json").exists() and json.loads((out / "config.json").read_text()).get("model") != chosen.path:
        import shutil

        shutil.rmtree(out)  # a different checkpoint was chosen before (the run was extended)
    _say(f"{job.name}: checkpoint {step} chosen ({rule}); scoring it on {cfg.suite}")
    _eval(cfg, chosen.path, out, [cfg.suite], cfg.eval_limit, meta)
    return {"method": job.method.key, "seed": job.seed, "step": step, "selection": rule, "val": scores,
            "final": ckpts[-1].path, "cost": cost, "seconds": round(time.perf_counter() - t0, 1)}


def _start_model(plan: Plan, job: Job) -> str:
    from harness.evaluator import resolve_model
    from trainers import get_trainer

    if job.method.after is None:
        return resolve_model(plan.cfg.model)
    before = plan.configs[(job.method.after, job.seed)]
    done = get_trainer(next(m.trainer for m in plan.methods if m.key == job.method.after)).existing_checkpoints(
        before.output_dir)
    if not done or done[-1].step < before.max_steps:
        raise HarnessError(f"{job.name} starts from {job.method.after} seed {job.seed}, which has not finished")
    return done[-1].path


def _profile(plan: Plan) -> Path:
    """The base model's difficulty profile on the train split (after the holdout), shared by the DC-SFT rows."""
    from harness.difficulty import profile_difficulty

    cfg = plan.cfg
    _say(f"difficulty profile of {cfg.model} on {plan.suite.train}: {cfg.profile_samples} prompts x "
         f"{cfg.profile_generations} samples")
    return profile_difficulty(_profile_config(plan))


def _profile_config(plan: Plan) -> Any:
    from harness.difficulty import ProfileConfig
    from harness.evaluator import resolve_model

    cfg = plan.cfg
    return ProfileConfig(
        model=resolve_model(cfg.model), task=plan.suite.train, num_generations=cfg.profile_generations,
        temperature=cfg.profile_temperature,
        subsample=cfg.profile_samples, holdout=cfg.val_size, output_path=str(plan.difficulty_dir),
        batch_size=cfg.eval_batch_size, model_args=dict(cfg.model_args), progress=cfg.progress and cfg.jobs == 1)


# ----- scheduling ----------------------------------------------------------------------------------

def _worker_init() -> None:
    """Workers die with the study process (Linux), so a rerun never races an orphan."""
    from harness.children import die_with_parent

    die_with_parent()
    os.environ["OMP_NUM_THREADS"] = "1"


def _run_named(plan: Plan, what: str, key: str | None = None, seed: int | None = None) -> Any:
    from harness import data

    data.configure(plan.cfg.data_root, plan.cfg.data_args)  # process state: a spawned worker starts without it
    if what == "profile":
        return str(_profile(plan))
    method = next(m for m in plan.methods if m.key == key)
    return run_job(plan, Job(method, int(seed)))


def run_all(plan: Plan) -> dict[str, Any]:
    """Every job, ``jobs`` at a time, each after what it needs; returns job name -> result."""
    cfg = plan.cfg
    tasks: dict[str, tuple] = {}
    needs: dict[str, set[str]] = {}
    if plan.difficulty_dir is not None:
        tasks["profile"] = ("profile",)
        needs["profile"] = set()
    for m in plan.methods:
        for seed in cfg.seeds:
            name = f"{m.key}/{seed}"
            tasks[name] = ("job", m.key, seed)
            needs[name] = ({f"{m.after}/{seed}"} if m.after else set()) | ({"profile"} if m.profiled else set())
    results: dict[str, Any] = {}
    if cfg.jobs == 1:
        for name in _order(needs):
            results[name] = _run_named(plan, *tasks[name])
        return results
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending = dict(needs)
    running: dict[Any, str] = {}
    errors: list[str] = []
    with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        while pending or running:
            ready = [n for n, deps in pending.items() if deps <= set(results) and not errors]
            # long jobs first: they bound the wall time
            for name in sorted(ready, key=lambda n: -_weight(plan, n))[: cfg.jobs - len(running)]:
                del pending[name]
                running[pool.submit(_run_named, plan, *tasks[name])] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                try:
                    results[name] = fut.result()
                    _say(f"done: {name}")
                except Exception as exc:  # the others finish; the first error is raised after
                    errors.append(f"{name}: {exc}")
                    _say(f"failed: {name}: {exc}")
    if errors:
        raise HarnessError(f"{len(errors)} study job(s) failed ({'; '.join(errors)}); fix and rerun the same "
                           "command to resume")
    return results


def _weight(plan: Plan, name: str) -> float:
    """Rough single-thread cost of a job, to start the longest first."""
    if name == "profile":
        return 1e9  # every DC-SFT job waits for it
    key, seed = name.split("/")
    config = plan.configs[(key, int(seed))]
    trainer = next(m.trainer for m in plan.methods if m.key == key)
    sampled = 2 * config.num_generations if trainer in ("grpo", "curr_rl") else 1  # generation + forward per sample
    return config.max_steps * config.batch_size * sampled


def _order(needs: dict[str, set[str]]) -> list[str]:
    done: list[str] = []
    while len(done) < len(needs):
        for name, deps in needs.items():
            if name not in done and deps <= set(done):
                done.append(name)
    return done


# ----- the study -----------------------------------------------------------------------------------

def run_paper_study(cfg: PaperStudyConfig) -> str:
    t0 = time.perf_counter()
    plan = prepare(cfg)
    _check_study_file(plan)
    from harness.evaluator import resolve_model

    base = plan.root / "runs" / "base"
    _say(f"base: scoring {cfg.model} on {cfg.suite}")
    _eval(cfg, resolve_model(cfg.model), base, [cfg.suite], cfg.eval_limit,
          {"label": "base", "method": "base", "seed": None, "checkpoint": 0, "selection": "base model",
           "model": Path(cfg.model.rstrip("/")).name})
    results = run_all(plan)
    text = report(plan, results)
    _say(f"done in {time.perf_counter() - t0:.0f} s: {plan.root}")
    return text


def report(plan: Plan, results: dict[str, Any]) -> str:
    """The paper-shaped tables and the report around them, written into the study directory."""
    from leaderboards.board import LeaderboardOptions
    from leaderboards.cli import pages_for, write_views
    from leaderboards.collect import collect
    from leaderboards.render import RenderOptions
    from leaderboards.report import leaderboard_texts_from_runs

    cfg = plan.cfg
    paper = cfg.paper
    keys = ["base"] + [m.key for m in plan.methods]
    titles = {"base": "base"} | {m.key: m.title for m in plan.methods}
    runs = [r for r in collect([plan.root / "runs"]).runs if r.method in keys]
    runs.sort(key=lambda r: (keys.index(r.method), r.seed or 0))
    baseline = "sft" if any(m.key == "sft" for m in plan.methods) else "base"
    warn: list[str] = []
    title = f"{paper} study: {cfg.model} on {cfg.suite}{' (quick)' if cfg.quick else ''}"
    views = pages_for([r.path for r in runs], plan.root)  # each shown run's samples, linked from the HTML
    grouped = leaderboard_texts_from_runs(
        runs, LeaderboardOptions(baseline=baseline, group_seeds=True),
        RenderOptions(cost=True, views={run: href for run, (href, _) in views.items()}),
        formats={"md", "csv", "html"}, title=title, warn=warn.append, method_order=keys)
    write_views(views)
    per_seed = leaderboard_texts_from_runs(
        runs, LeaderboardOptions(baseline=f"{baseline} seed {cfg.seeds[0]}" if baseline != "base" else "base"),
        RenderOptions(cost=True), formats={"md"}, title=f"{title}, one row per seed", warn=warn.append,
        method_order=keys)
    sections = [grouped["md"].rstrip(), "",
                "Rows: " + "; ".join(f"`{k}` = {titles[k]}" for k in keys) + ".",
                f"Seeds: {', '.join(map(str, cfg.seeds))}. Checkpoint selection: "
                + ("the best primary metric on an ID validation split of the first "
                   f"{cfg.val_size} train samples (never trained on), the later checkpoint on ties"
                   if cfg.select == "val" else "the last checkpoint") + "."]
    if baseline != "base":
        sections += ["", f"## Differences from {titles[baseline]} (paired 95 % CIs)", "",
                     *_paired_lines(plan, baseline, titles)]
    sections += ["", "## Cost", "", *_cost_lines(plan, results)]
    overlap = _overlap(plan)
    if overlap:
        sections += ["", "## Train/test overlap (harness data overlap)", "", *overlap]
    if plan.difficulty_dir is not None and (plan.difficulty_dir / "difficulty.json").exists():
        sections += ["", "## Difficulty profile of the base model", "", *_difficulty_lines(plan, results)]
    if warn:
        sections += ["", "Warnings: " + "; ".join(warn)]
    md = "\n".join(sections) + "\n"
    write_text_atomic(plan.root / f"study-{paper}.md", md)
    write_text_atomic(plan.root / f"study-{paper}.csv", grouped["csv"])
    write_text_atomic(plan.root / f"study-{paper}.html", grouped["html"])
    write_text_atomic(plan.root / f"study-{paper}-seeds.md", per_seed["md"])
    write_json_atomic(plan.root / f"study-{paper}.json", {"config": asdict(cfg), "jobs": results})
    _plot_selection(plan)
    return md


def _plot_selection(plan: Plan) -> Path | None:
    """plots/<paper>_validation.png: each method's validation score against step, one line per seed."""
    from trainers.plots import plot_eval_curves

    rows = []
    for m in plan.methods:
        for seed in plan.cfg.seeds:
            for agg_path in sorted((plan.root / "selection" / m.key / f"seed-{seed}").glob("step-*/aggregates.json")):
                step = int(agg_path.parent.name.split("-")[1])
                rows.append({"step": step, "split": f"{m.key} seed {seed}", "role": "id",
                             "value": 100 * _val_score(json.loads(agg_path.read_text(encoding="utf-8")))})
    if not rows:
        return None
    return plot_eval_curves(rows, plan.root / "plots" / f"{plan.cfg.paper}_validation.png",
                            title=f"{plan.cfg.paper}: ID validation score by checkpoint (chooses each row)",
                            metric_label="validation score (%)")


def _paired_lines(plan: Plan, baseline: str, titles: dict[str, str]) -> list[str]:
    """Each method minus the baseline per split, on seed-averaged per-sample scores (the
    leaderboard's seed groups and pairing), with the bootstrap 95 % CI of the mean paired
    difference: a difference is registered when its CI excludes 0 (the test docs/studies.md
    fixes; the table's † is the sign-flip test)."""
    from harness.stats import bootstrap_mean_ci
    from leaderboards.collect import collect
    from leaderboards.seeds import group_seeds
    from leaderboards.significance import RecordCache, paired_scores

    keys = ["base"] + [m.key for m in plan.methods]
    cache, notes = RecordCache(), []
    rows = group_seeds([r for r in collect([plan.root / "runs"]).runs if r.method in keys], cache, notes)
    by_method = {r.method: r for r in rows}
    ref = by_method.get(baseline)
    if ref is None:
        return []
    tasks = [(task, agg["primary_metric"]) for task, agg in ref.aggregates.items()]
    lines = ["| method | " + " | ".join(t for t, _ in tasks) + " |", "|---|" + "---|" * len(tasks)]
    for key in [k for k in keys if k != baseline and k in by_method]:
        cells = []
        for task, metric in tasks:
            pair = paired_scores(by_method[key], ref, task, metric, cache)
            if pair is None:
                cells.append("n/a")
                continue
            diff = 100 * (pair[0] - pair[1])
            lo, hi = bootstrap_mean_ci(diff, n_boot=plan.cfg.bootstrap, seed=0)
            mark = " *" if lo > 0 or hi < 0 else ""
            cells.append(f"{float(diff.mean()):+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}")
        lines.append(f"| {titles.get(key, key)} | " + " | ".join(cells) + " |")
    lines += ["", f"Points, each method minus {titles[baseline]} on the same samples (scores averaged over seeds "
              "per sample), with the bootstrap 95 % CI of the mean paired difference; * = the CI excludes 0."]
    return lines


def _cost_lines(plan: Plan, results: dict[str, Any]) -> list[str]:
    """Mean cost per method over seeds at its chosen checkpoint, and the paper's ratios."""
    rows: dict[str, dict[str, float]] = {}
    for name, res in results.items():
        if name == "profile":
            continue
        key = name.split("/")[0]
        acc = rows.setdefault(key, {"wall_s": 0.0, "generated_tokens": 0.0, "optimizer_steps": 0.0, "n": 0})
        acc["wall_s"] += float(res["cost"].get("wall_time_s", 0) or 0)
        acc["generated_tokens"] += float(res["cost"].get("generated_tokens", 0) or 0)
        acc["optimizer_steps"] += float(res["cost"].get("optimizer_steps", 0) or 0)
        acc["n"] += 1
    lines = ["| method | wall s (train + sampling) | generated tokens | optimizer steps |", "|---|---|---|---|"]
    means = {}
    order = [m.key for m in plan.methods]
    for key, acc in sorted(rows.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        n = max(acc["n"], 1)
        means[key] = {k: acc[k] / n for k in ("wall_s", "generated_tokens", "optimizer_steps")}
        lines.append(f"| {key} | {means[key]['wall_s']:.0f} | {means[key]['generated_tokens']:.0f} | "
                     f"{means[key]['optimizer_steps']:.0f} |")
    lines.append("")
    lines.append("Costs are those of the chosen checkpoint (mean over seeds), evaluation excluded. DC-SFT rows "
                 "include the difficulty profiling; RS-SFT includes the Curr-RL run it starts from.")
    for key in ("sft_m", "sft_em", "curr_rl"):
        if key in means and "grpo" in means and means[key]["wall_s"] > 0:
            ratio = means["grpo"]["wall_s"] / means[key]["wall_s"]
            lines.append(f"- GRPO / {key} wall time: {ratio:.2f}x"
                         + (" (DC-SFT's claim: 3.2-4.9x cheaper than GRPO)" if key.startswith("sft_") else ""))
    return lines


def _overlap(plan: Plan) -> list[str]:
    try:
        from harness.overlap import audit_suite
    except ImportError:
        return []
    path = plan.root / "overlap.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["summary"]
    # quick: a sample of the train split; otherwise all of it (the honest audit)
    report = audit_suite(plan.cfg.suite, limit=plan.cfg.eval_limit, train_limit=2000 if plan.cfg.quick else None,
                         progress=False)
    lines = [line for line in report.summary().splitlines() if line.strip()]
    write_json_atomic(path, {"summary": lines, "report": report.to_dict()})
    return lines


def _difficulty_lines(plan: Plan, results: dict[str, Any]) -> list[str]:
    info = json.loads((plan.difficulty_dir / "difficulty.json").read_text(encoding="utf-8"))
    counts = info.get("counts", {})
    total = sum(counts.get(k, 0) for k in ("easy", "medium", "hard"))
    lines = ["| subset | samples | share |", "|---|---|---|"]
    for k in ("easy", "medium", "hard"):
        c = counts.get(k, 0)
        lines.append(f"| {k} | {c} | {100 * c / total:.1f} % |" if total else f"| {k} | {c} | - |")
    cost = info.get("cost", {})
    lines += ["", f"Profiled {total} train prompts x {plan.cfg.profile_generations} samples at temperature "
              f"{plan.cfg.profile_temperature} "
              f"(wall {float(cost.get('wall_s', 0) or 0):.0f} s, {cost.get('generated_tokens', 0)} generated tokens)."]
    norms = _grad_norms(plan)
    if norms:
        lines += ["", "Mean gradient norm per training subset (train logs): "
                  + ", ".join(f"{k} {v:.3g}" for k, v in norms.items())]
    return lines


def _grad_norms(plan: Plan) -> dict[str, float]:
    from trainers.train_log import read_log

    out = {}
    for m in plan.methods:
        if not m.profiled:
            continue
        values = []
        for seed in plan.cfg.seeds:
            values += [r["grad_norm"] for r in read_log(Path(plan.configs[(m.key, seed)].output_dir) / "train_log.jsonl")
                       if isinstance(r.get("grad_norm"), (int, float)) and math.isfinite(r["grad_norm"])]
        if values:
            out[m.key] = sum(values) / len(values)
    return out
