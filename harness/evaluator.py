"""The eval loop: samples -> prompts -> backend -> parser/scorer -> records -> aggregates.

Records are appended per batch (fsynced every few seconds), so a killed run loses at
most the batches in flight; rerunning with the same output path skips what was
recorded. A resumed run generates the same batches (a part-recorded one whole, writing
only its missing records), so it computes exactly what an uninterrupted one would have.
With ``num_workers`` > 0 the loop is pipelined (batch k+1 prepared in a worker process,
batch k-1 scored and written in a thread while batch k generates; harness/pipeline.py)
and the records are the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from harness import data, distributed, math_judge, provenance
from harness.backends.base import Backend, SamplingParams, check_backend_args
from harness.errors import HarnessError, UsageError
from harness.pipeline import OrderedSink, Prefetcher, plan_batches, resolve_num_workers
from harness.protocol import get_profile
from harness.registry import BACKENDS
from harness.rundir import RunDir
from harness.scoring import aggregate, score_output
from harness.taskspec import TaskRef, make_task, resolve
from harness.validation import check_number, check_output_dir


@dataclass
class EvalConfig:
    model: str
    tasks: list[str]
    backend: str = "hf"
    model_args: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    # a seeded random N samples per task (seed = --seed), kept in split order
    subsample: int | None = None
    batch_size: int = 8
    seed: int = 0
    profile: str = "strict"
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: each task's own default
    # G completions per prompt (needs temperature > 0): each record keeps all of them
    # (``outputs``) and the primary metric of each (``sample_scores``); the record's
    # scores, hence the aggregates, are the first completion's. Difficulty profiling.
    num_samples: int = 1
    # The split's first N samples are not scored (a study's validation holdout, which
    # difficulty profiling must not see); limit and subsample apply to the rest.
    skip_first: int = 0
    n_boot: int = 1000
    # Processes preparing batch k+1 (images, chat template, processor) while batch k
    # generates; None: 1 where there is a second core, 2 with a GPU (harness/pipeline.py). Records are
    # the same for every value, so it is not part of the identity.
    num_workers: int | None = None
    output_path: str | None = None
    overwrite: bool = False
    log_samples: bool = False
    progress: bool = True
    # Where local datasets are (None: $HARNESS_DATA) and per-dataset options such as
    # coco_images=DIR. Not part of the identity: the dataset fingerprints in provenance
    # say what was read, and moving the data does not change a run.
    data_root: str | None = None
    data_args: dict[str, Any] = field(default_factory=dict)
    # An OpenAI-compatible LLM that extracts math answers (URL,MODEL[,KEY_ENV]); None: rule-based
    # extraction unless $HARNESS_MATH_JUDGE_URL/_MODEL are set. What was used is recorded.
    math_judge: str | None = None
    # Labels for leaderboards (method, checkpoint, cost, ...): written to config.json,
    # not part of the identity, so labelling a run never invalidates it.
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, check_backend: bool = True) -> None:
        """Every option checked before a model is loaded (UsageError names the bad one).
        ``check_backend=False`` when the caller brings its own backend instance."""
        check_number("--limit", self.limit, minimum=1, integer=True)
        check_number("--subsample", self.subsample, minimum=1, integer=True)
        if self.limit is not None and self.subsample is not None:
            raise UsageError("--limit (the first N) and --subsample (a seeded random N) exclude each other; give one")
        check_number("--batch_size", self.batch_size, minimum=1, integer=True, allow_none=False)
        check_number("--seed", self.seed, minimum=0, integer=True, allow_none=False)
        check_number("--temperature", self.temperature, minimum=0, allow_none=False)
        check_number("--top_p", self.top_p, minimum=0, maximum=1, exclusive_minimum=True, allow_none=False)
        check_number("--max_new_tokens", self.max_new_tokens, minimum=1, maximum=1 << 20, integer=True)
        check_number("--num_samples", self.num_samples, minimum=1, maximum=1 << 16, integer=True, allow_none=False)
        if self.num_samples > 1 and self.temperature <= 0:
            raise UsageError(f"--num_samples {self.num_samples} needs sampling: set --temperature > 0 (greedy "
                             f"decoding gives {self.num_samples} copies of one answer)")
        check_number("--num_workers", self.num_workers, minimum=0, maximum=64, integer=True)
        check_number("skip_first", self.skip_first, minimum=0, integer=True, allow_none=False)
        check_number("--bootstrap", self.n_boot, minimum=0, maximum=1_000_000, integer=True, allow_none=False)
        if not isinstance(self.model_args, dict):
            raise UsageError("model_args must be a mapping of backend options")
        get_profile(self.profile)
        if not isinstance(self.data_args, dict):
            raise UsageError("data_args must be a mapping of dataset options")
        data.configure(self.data_root, self.data_args)
        math_judge.configure(math_judge.parse_spec(self.math_judge) if self.math_judge else None)
        if check_backend:
            # an embedded name is checked as the directory it names (hash-checked, no build)
            check_backend_args(BACKENDS.get(self.backend), resolve_model(self.model), **self.model_args)

    def identity(self) -> dict[str, Any]:
        """What decides the numbers: a resumed run must match all of it."""
        keys = ("model", "backend", "model_args", "limit", "subsample", "batch_size", "seed", "profile", "temperature", "top_p",
                "max_new_tokens", "n_boot")
        identity = {k: getattr(self, k) for k in keys}
        # only when set: run directories (and reference baselines) made before these options keep matching
        if self.num_samples != 1:
            identity["num_samples"] = self.num_samples
        if self.skip_first:
            identity["skip_first"] = self.skip_first
        return identity

    def default_output_path(self) -> str:
        identity = self.identity()
        if identity["subsample"] is None:  # paths of runs made before --subsample existed stay the same
            del identity["subsample"]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model.rstrip("/")).name or "model")
        return str(Path("harness_runs") / f"{slug}-{digest}")


@dataclass
class EvalResult:
    run_dir: Path
    aggregates: list[dict[str, Any]]
    resumed: bool


def resolve_model(model: str) -> str:
    """Names of embedded models map to built-on-demand directories; anything else is a path or id."""
    from harness.models.embedded import EMBEDDED, resolve_embedded

    return resolve_embedded(model) if model in EMBEDDED else model


def make_backend(cfg: EvalConfig, world: distributed.World | None = None) -> Backend:
    args = dict(cfg.model_args)
    if world is not None and world.size > 1 and args.get("device") == "cuda":
        args["device"] = f"cuda:{world.local_rank}"  # one GPU per process of a data-parallel run
    return BACKENDS.get(cfg.backend)(model=resolve_model(cfg.model), **args)


def _batch_seed(seed: int, task: str, block: int) -> int:
    # Sampled decoding depends on the batch's position only, not on what ran before it.
    return int.from_bytes(hashlib.sha256(f"{seed}/{task}/{block}".encode()).digest()[:4], "little")


def run_eval(cfg: EvalConfig, backend: Backend | None = None) -> EvalResult:
    from tqdm.auto import tqdm

    # Hook: lmms-eval tasks (``lmms:<task>``, the optional lmms-eval bridge, harness/lmms) run
    # through lmms-eval's own evaluator with this backend; harness tasks beside them come back here.
    from harness.lmms import has_lmms_tasks

    if has_lmms_tasks(cfg.tasks):
        if cfg.num_samples != 1 or cfg.skip_first:
            raise UsageError("num_samples and skip_first are not supported with lmms-eval tasks (lmms:...)")
        from harness.lmms.run import run_with_lmms

        return run_with_lmms(cfg, backend)
    cfg.validate(check_backend=backend is None)
    refs: list[TaskRef] = resolve(cfg.tasks)
    tasks = [(ref, make_task(ref.name, ref.fmt)) for ref in refs]
    for _, task in tasks:  # a missing or malformed dataset is reported before a model loads
        if len(task) == 0:  # e.g. annotations of another split: nothing to score, so no model to load
            raise UsageError(f"{task.full_name} has no samples: the dataset's annotations hold none for this split "
                             f"(see `harness data check {task.name}`)")
    profile = get_profile(cfg.profile)
    run_path = Path(cfg.output_path or cfg.default_output_path())
    check_output_dir(run_path)
    if not cfg.overwrite:  # a mismatch that needs no model is refused before loading one
        RunDir(run_path).check_identity(cfg.identity(), keys=set(cfg.identity()))
    world = distributed.current()
    distributed.init(world)
    owns_backend = backend is None
    backend = backend or make_backend(cfg, world)
    try:
        conv = backend.conventions
        if profile.box_space:  # the profile's script asks every model for this space (lmms-eval: 0-1)
            conv = conv.with_overrides(box_space=profile.box_space)
        model_info = {"name": cfg.model, **backend.describe()}
        run = RunDir(run_path)
        identity = {**cfg.identity(), "model_fingerprint": model_info["fingerprint"], "conventions": conv.to_dict()}
        judge = math_judge.settings()
        if judge is not None:  # an LLM extracting math answers changes the numbers
            identity["math_judge"] = {k: judge[k] for k in ("endpoint", "model", "prompt")}
        config = {**asdict(cfg), "tasks": [r.full_name for r in refs], "profile_settings": profile.to_dict(),
                  "conventions": conv.to_dict(), "roles": {r.full_name: r.role for r in refs}, "math_judge": judge}
        # One process (rank 0 of a data-parallel run) checks and prepares the run directory;
        # the others wait for it and stop with its error if it fails.
        failure = None
        if world.main:
            try:
                resumed = _prepare_run(cfg, run, tasks, identity, config, model_info)
            except Exception as exc:  # shared with the other ranks, then raised here
                failure = exc
        shared = distributed.share(world, None if failure is None else (type(failure).__name__, str(failure)))
        if failure is not None:
            raise failure
        if shared is not None:
            raise HarnessError(f"rank 0 stopped the run: {shared[1]}")
        resumed = bool(distributed.share(world, resumed if world.main else None))
        done = {t.full_name: {r["sample_id"] for r in run.iter(t.full_name)} for _, t in tasks}

        chosen = {t.full_name: planned_indices(t, cfg.limit, cfg.subsample, cfg.seed, cfg.skip_first) for _, t in tasks}
        planned = {name: len(idx) for name, idx in chosen.items()}
        # this process's share: whole batches (blocks of batch_size planned positions)
        mine = {name: sum(1 for pos in range(n) if world.owns(pos // cfg.batch_size)) for name, n in planned.items()}
        bar = tqdm(total=sum(mine.values()), initial=sum(min(len(d), mine[n]) for n, d in done.items()),
                   disable=not cfg.progress or not world.main, unit="sample", dynamic_ncols=True)
        task_list = [task for _, task in tasks]
        params = {t.full_name: SamplingParams(max_new_tokens=cfg.max_new_tokens or t.max_new_tokens,
                                              temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.num_samples)
                  for t in task_list}

        def batches():
            return plan_batches(task_list, chosen, done, world.owns, cfg.batch_size)

        def prompts_of(batch) -> list:
            task = task_list[batch.task_pos]
            return [task.prompt(s, conv) for _, s in batch.items]

        def prepare(batch):  # runs in a worker process
            return backend.prepare(prompts_of(batch), params[task_list[batch.task_pos].full_name])

        workers = resolve_num_workers(cfg.num_workers, accelerator=str(getattr(backend, "device", "cpu")) != "cpu")
        # A backend without prepare() has no CPU part to move to another process
        prefetch = (Prefetcher(batches, prepare, workers)
                    if workers and type(backend).prepare is not Backend.prepare else None)
        sink = OrderedSink(threaded=workers > 0)
        writer, writer_task = None, None
        try:
            for k, batch in enumerate(batches()):
                task = task_list[batch.task_pos]
                prepared = prefetch.get(k, batch) if prefetch is not None else None
                if writer_task != task.full_name:
                    if writer is not None:  # the previous task is complete: make it durable
                        sink.submit(writer.sync)
                    writer = run.writer(task.full_name, rank=world.rank if world.size > 1 else None)
                    writer_task = task.full_name
                    bar.set_description(task.full_name)
                p = params[task.full_name]
                p = SamplingParams(**{**asdict(p), "seed": _batch_seed(cfg.seed, task.full_name, batch.block)})
                prompts = prompts_of(batch)
                outputs, failures, per = _timed_generate(backend, prompts, p, prepared)
                sink.submit(functools.partial(_score_and_write, writer, bar, task, batch.items, prompts, outputs,
                                              failures, per, conv, profile, batch.recorded))
            if writer is not None:
                sink.submit(writer.sync)
        finally:
            if prefetch is not None:
                prefetch.close()
            sink.close()  # generated batches are written even when unwinding from an error
        bar.close()
        distributed.barrier(world)
        if not world.main:  # rank 0 merges the shards and aggregates
            return EvalResult(run.path, [], resumed)
        for _, task in tasks:
            if run.shard_paths(task.full_name):
                run.consolidate(task.full_name)

        aggregates = [
            aggregate(task, islice(run.iter(task.full_name), planned[task.full_name]),
                      profile, role=ref.role, n_boot=cfg.n_boot, seed=cfg.seed)
            for ref, task in tasks
        ]
        run.write_aggregates(aggregates)
        return EvalResult(run.path, aggregates, resumed)
    finally:
        if owns_backend:
            backend.close()
        distributed.finish(world)


def _prepare_run(cfg: EvalConfig, run: RunDir, tasks, identity, config, model_info) -> bool:
    """Check the recorded identity, make every task's records whole (see RunDir.consolidate:
    a damaged file is refused before anything is rewritten), write config and provenance.
    Returns whether an existing run is resumed."""
    if not cfg.overwrite:
        run.check_identity(identity)
        for _, t in tasks:
            run.consolidate(t.full_name)
    resumed = run.prepare(identity, config, overwrite=cfg.overwrite)
    notes = {t.full_name: n for _, t in tasks if (n := getattr(t, "notes", dict)())}
    run.write_provenance(provenance.collect(model_info, {t.full_name: t.fingerprint() for _, t in tasks}, cfg.seed,
                                            notes))
    return resumed


def planned_indices(task, limit: int | None, subsample: int | None, seed: int, skip_first: int = 0) -> list[int]:
    """The split indices a run scores: all, the first ``limit``, or a seeded random
    ``subsample`` kept in split order (the same for every format of a task); with
    ``skip_first``, of the samples after the split's first ``skip_first``."""
    n = len(task)
    start = min(skip_first, n)
    if subsample is not None and subsample < n - start:
        from harness.task import stable_rng

        return sorted(stable_rng("subsample", seed, task.name, n).sample(range(start, n), subsample))
    return list(range(start, min(n, start + limit) if limit else n))


def _generate(backend: Backend, prompts: list, params: SamplingParams,
              prepared: Any = None) -> tuple[list, list[str | None]]:
    """Outputs and failure reasons, one per prompt. A failed batch (a corrupt image, an
    engine error) is retried prompt by prompt, so one bad input is one failed record.
    ``prepared``: the batch's inputs from ``backend.prepare`` (a worker made them)."""
    try:
        if prepared is not None:
            outputs = backend.generate(prompts, params, prepared=prepared)
        else:
            outputs = backend.generate(prompts, params)
        if len(outputs) != len(prompts):  # zip() downstream would silently drop samples
            raise RuntimeError(f"backend returned {len(outputs)} results for {len(prompts)} prompts")
        return outputs, [None] * len(prompts)
    except Exception as exc:
        if len(prompts) == 1:
            return [[""]], [f"generation error: {type(exc).__name__}: {exc}"]
        outputs, failures = [], []
        for prompt in prompts:
            out, fail = _generate(backend, [prompt], params)
            outputs += out
            failures += fail
        return outputs, failures


def _timed_generate(backend, prompts, params, prepared=None) -> tuple[list, list[str | None], float]:
    t0 = time.perf_counter()
    outputs, failures = _generate(backend, prompts, params, prepared)
    return outputs, failures, (time.perf_counter() - t0) / len(prompts)


def _score_and_write(writer, bar, task, items, prompts, outputs, failures, per, conv, profile,
                     recorded: frozenset = frozenset()) -> None:
    new = [k for k, (_, s) in enumerate(items) if s.id not in recorded]  # a resumed block: its new records only

    def pick(values: list) -> list:
        return [values[k] for k in new]

    writer.append(_score(task, pick(items), pick(prompts), pick(outputs), pick(failures), per, conv, profile))
    bar.update(len(new))


def _score(task, items, prompts, outputs, failures, per, conv, profile) -> list[dict[str, Any]]:
    # Scoring errors are bugs, not bad inputs: they are not caught here.
    return [score_output(task, s, i, outs, conv, profile, p.text, per, failure=fail)
            for (i, s), p, outs, fail in zip(items, prompts, outputs, failures)]


def _generate_and_score(backend, task, batch, params, conv, profile) -> list[dict[str, Any]]:
    """One batch the serial way: what the pipelined loop computes, in one call."""
    prompts = [task.prompt(s, conv) for _, s in batch]
    outputs, failures, per = _timed_generate(backend, prompts, params)
    return _score(task, batch, prompts, outputs, failures, per, conv, profile)
