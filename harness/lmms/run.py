"""``harness eval --tasks lmms:<task>``: lmms-eval tasks through a harness backend.

The backend is wrapped as an lmms-eval model (:class:`harness.lmms.model.HarnessLMM`) and
handed to ``lmms_eval.evaluator.simple_evaluate``: lmms-eval builds the prompts, scores
the outputs and aggregates them with its own task code. What comes back lands in the
harness run directory:

* ``records/lmms@<task>.jsonl``: one record per document (lmms-eval's per-sample log:
  output, target, prompt, its per-document metric values as ``scores``), marked
  ``source: lmms-eval``;
* ``aggregates.json``: one row per lmms-eval task, its metric values as lmms-eval
  computed them, ``source: lmms-eval``, the CI a bootstrap over the per-document values
  where the metric is their mean (otherwise lmms-eval's stderr, else none);
* ``lmms/<task>.outputs.jsonl``: every generated output as soon as its batch is done, so
  a rerun of the same command generates only what is missing.

Harness tasks in the same ``--tasks`` run first through the ordinary evaluator with the
same backend, into the same run directory. Options: ``--limit`` (lmms-eval's ``limit``),
``--batch_size``, ``--seed``, ``--temperature``/``--top_p``/``--max_new_tokens``
(override the tasks' generation settings), ``--bootstrap``; ``--data_args
lmms_include_path=DIR`` adds a task directory (``harness export-lmms`` writes one).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.lmms import INSTALL_HINT, LmmsRef, split_specs

INCLUDE_KEY = "lmms_include_path"


def import_lmms_eval():
    try:
        import lmms_eval
        import lmms_eval.evaluator  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"{INSTALL_HINT} ({exc})") from None
    return lmms_eval


def lmms_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmms_eval")
    except PackageNotFoundError:
        return "unknown"


def task_manager(names: list[str], include_path: str | None, model_name: str):
    """lmms-eval's task index; without its ~2000 built-in task files when the include path
    has every task asked for (saves seconds at start-up)."""
    from lmms_eval.tasks import TaskManager

    if include_path:
        tm = TaskManager("WARNING", include_path=include_path, include_defaults=False, model_name=model_name)
        if all(n in tm.all_tasks for n in names):
            return tm
    tm = TaskManager("WARNING", include_path=include_path, model_name=model_name)
    missing = [n for n in names if n not in tm.all_tasks]
    if missing:
        where = f" (nor in {include_path})" if include_path else ""
        raise UsageError(f"lmms-eval has no task {', '.join(missing)}{where}; `lmms-eval --tasks list` lists them, "
                         f"--data_args {INCLUDE_KEY}=DIR adds a task directory")
    return tm


def run_with_lmms(cfg, backend=None):
    """``run_eval`` for a ``--tasks`` list that names lmms-eval tasks (the evaluator's hook)."""
    from harness import provenance
    from harness.evaluator import EvalResult, _batch_seed, make_backend, run_eval
    from harness.rundir import RunDir
    from harness.validation import check_output_dir

    ours, refs = split_specs(list(cfg.tasks))
    if cfg.subsample is not None:
        raise UsageError("--subsample is not available for lmms-eval tasks (lmms-eval takes the first N: --limit)")
    try:
        from harness import distributed

        parallel = distributed.current().size > 1
    except ImportError:  # a harness without data-parallel eval
        parallel = False
    if parallel:
        raise UsageError("lmms-eval tasks run in one process: drop --num_processes / the launcher for lmms: tasks")
    import_lmms_eval()
    cfg.validate(check_backend=backend is None)
    include = (cfg.data_args or {}).get(INCLUDE_KEY)
    include = str(Path(include).expanduser().resolve()) if include else None
    run_path = Path(cfg.output_path or cfg.default_output_path())
    check_output_dir(run_path)
    if not cfg.overwrite:
        RunDir(run_path).check_identity(cfg.identity(), keys=set(cfg.identity()))
    owns_backend = backend is None
    backend = backend or make_backend(cfg)
    try:
        run = RunDir(run_path)
        ours_aggs: list[dict[str, Any]] = []
        resumed = False
        if ours:
            result = run_eval(replace(cfg, tasks=ours, output_path=str(run_path)), backend=backend)
            ours_aggs, resumed = result.aggregates, result.resumed
            conv = backend.conventions
        else:
            conv = backend.conventions
            model_info = {"name": cfg.model, **backend.describe()}
            identity = {**cfg.identity(), "model_fingerprint": model_info["fingerprint"], "conventions": conv.to_dict()}
            from harness.protocol import get_profile

            config = {**asdict(cfg), "tasks": [], "profile_settings": get_profile(cfg.profile).to_dict(),
                      "conventions": conv.to_dict(), "roles": {}, "math_judge": None}
            if not cfg.overwrite:
                run.check_identity(identity)
            resumed = run.prepare(identity, config, overwrite=cfg.overwrite)
            run.write_provenance(provenance.collect(model_info, {}, cfg.seed, {}))

        names = [r.task for r in refs]
        tm = task_manager(names, include, model_name=conv.family)
        model = HarnessLMMFactory.make(backend, cfg, run_path, _batch_seed)
        t0 = time.perf_counter()
        results = simple_evaluate(model, names, tm, cfg)
        wall = time.perf_counter() - t0
        lmms_aggs = land_results(run, results, refs, model, n_boot=cfg.n_boot, seed=cfg.seed)
        _update_config(run, lmms_aggs, include, wall, model)
        aggregates = ours_aggs + lmms_aggs
        run.write_aggregates(aggregates)
        return EvalResult(run.path, aggregates, resumed)
    finally:
        if owns_backend:
            backend.close()


class HarnessLMMFactory:
    @staticmethod
    def make(backend, cfg, run_path: Path, batch_seed):
        from harness.lmms.model import HarnessLMM

        return HarnessLMM(backend, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.temperature if cfg.temperature > 0 else None,
                          top_p=cfg.top_p if cfg.top_p < 1 else None,
                          seed_for=lambda task, block: batch_seed(cfg.seed, f"lmms:{task}", block),
                          outputs_dir=run_path / "lmms", progress=cfg.progress)


def simple_evaluate(model, names: list[str], tm, cfg) -> dict[str, Any]:
    from lmms_eval.evaluator import simple_evaluate as lmms_simple_evaluate

    results = lmms_simple_evaluate(model=model, tasks=names, task_manager=tm, limit=cfg.limit,
                                   batch_size=cfg.batch_size, bootstrap_iters=cfg.n_boot, log_samples=True,
                                   random_seed=cfg.seed, numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed,
                                   fewshot_random_seed=cfg.seed, verbosity="WARNING", process_docs_parallel=1,
                                   datetime_str=time.strftime("%Y%m%d_%H%M%S"))
    if not results or not results.get("results"):
        raise UsageError("lmms-eval returned no results (see its log above)")
    return results


def _metric_key(key: str) -> tuple[str, str] | None:
    """lmms-eval result keys are ``metric,filter`` (``acc,none``; stderr ``acc_stderr,none``)."""
    if "," not in key:
        return None
    metric, _, filt = key.partition(",")
    return metric, filt


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def land_results(run, results: dict[str, Any], refs: list[LmmsRef], model, n_boot: int = 1000,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Records and aggregate rows of every lmms-eval task that logged samples."""
    import numpy as np

    from harness.atomic import write_text_atomic
    from harness.stats import bootstrap_mean_ci

    role_of = {r.task: r.role for r in refs}
    version = lmms_eval_version()
    samples = results.get("samples") or {}
    rows = []
    order = {r.task: i for i, r in enumerate(refs)}
    for task, logged in sorted(samples.items(), key=lambda kv: order.get(kv[0], len(order))):
        full = f"lmms:{task}"
        role = role_of.get(task) or next((role_of[g] for g, subs in (results.get("group_subtasks") or {}).items()
                                          if task in subs and g in role_of), "ood")
        task_results = results["results"].get(task, {})
        config = (results.get("configs") or {}).get(task, {})
        metric_names = [m["metric"] for m in config.get("metric_list", []) if isinstance(m, dict) and "metric" in m]
        records = []
        for s in sorted(logged, key=lambda s: int(s["doc_id"])):
            doc_id = int(s["doc_id"])
            doc = s.get("doc") or {}
            sid = str(doc["sample_id"]) if isinstance(doc, dict) and "sample_id" in doc else str(doc_id)
            resp = (s.get("filtered_resps") or [""])[0]
            resp = resp[0] if isinstance(resp, list) and resp else resp
            gen = model.outputs.get((task, str(doc_id)), {})
            scores = {m: v for m in metric_names if (v := _number(s.get(m))) is not None}
            other = {m: s[m] for m in metric_names if m in s and m not in scores}
            args = s.get("arguments") or []
            rec = {"task": full, "sample_id": sid, "index": doc_id, "output": resp if isinstance(resp, str) else
                   str(resp), "target": s.get("target"), "prompt": gen.get("prompt") or (args[0] if args and
                   isinstance(args[0], str) else None), "images": [], "answer": None, "parsed": None,
                   "failure": gen.get("failure"), "scores": scores, "source": "lmms-eval",
                   "latency_s": gen.get("latency_s"), "metadata": {"doc_id": doc_id}}
            if other:
                rec["lmms_metrics"] = other
            records.append(rec)
        write_text_atomic(run.records_path(full),
                          "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))
        metrics: dict[str, dict[str, Any]] = {}
        primary = None
        for key, value in task_results.items():
            parsed = _metric_key(key)
            if parsed is None or "_stderr" in parsed[0]:
                continue
            name, filt = parsed
            v = _number(value)
            if v is None:
                continue
            label = name if filt == "none" else f"{name},{filt}"
            per = [r["scores"][name] for r in records if name in r["scores"]] if filt == "none" else []
            if per and len(per) == len(records) and abs(sum(per) / len(per) - v) <= 1e-9 * max(1.0, abs(v)):
                lo, hi = bootstrap_mean_ci(np.asarray(per, dtype=np.float64), n_boot=n_boot, seed=seed)
                how = "bootstrap over per-sample values"
            elif (se := _number(task_results.get(f"{name}_stderr,{filt}"))) is not None:
                lo, hi = v - 1.96 * se, v + 1.96 * se
                how = "lmms-eval stderr x 1.96"
            else:
                lo = hi = math.nan
                how = "none"
            metrics[label] = {"value": v, "ci": [lo, hi], "ci_method": how}
            if primary is None and (not metric_names or name == metric_names[0]):
                primary = label
        if not metrics:
            continue
        n_samples = (results.get("n-samples") or {}).get(task, {})
        rows.append({
            "task": full, "role": role, "family": "lmms-eval", "primary_metric": primary or next(iter(metrics)),
            "n": int(n_samples.get("effective", len(records))),
            "parse_failures": sum(bool(r["failure"]) for r in records),
            "metrics": metrics, "profile": None, "source": "lmms-eval",
            "lmms_eval": {"task": task, "package_version": version,
                          "task_version": (results.get("versions") or {}).get(task),
                          "results": {k: v for k, v in task_results.items() if _number(v) is not None or k == "alias"}},
        })
    missing = [r.task for r in refs if not any(row["lmms_eval"]["task"] == r.task or
                                               r.task in (results.get("group_subtasks") or {}) for row in rows)]
    if missing:
        raise UsageError(f"lmms-eval gave no per-sample results for {', '.join(missing)}")
    return rows


def _update_config(run, rows: list[dict[str, Any]], include: str | None, wall_s: float, model) -> None:
    from harness.atomic import write_json_atomic
    from harness.validation import read_json_file

    cfg = run.read_config()
    tasks = [t for t in cfg.get("tasks", []) if not str(t).startswith("lmms:")] + [r["task"] for r in rows]
    roles = {k: v for k, v in (cfg.get("roles") or {}).items() if not k.startswith("lmms:")}
    roles.update({r["task"]: r["role"] for r in rows})
    cfg.update(tasks=tasks, roles=roles, lmms={"package_version": lmms_eval_version(), "include_path": include,
                                                "tasks": [r["lmms_eval"]["task"] for r in rows],
                                                "wall_s": round(wall_s, 3), "generated": model.generated,
                                                "reused_outputs": model.reused})
    write_json_atomic(run.config_path, cfg)
    prov_path = run.path / "provenance.json"
    if prov_path.exists():
        prov = read_json_file(prov_path, "provenance")
        if isinstance(prov, dict):
            prov.setdefault("packages", {})
            if isinstance(prov["packages"], dict):
                prov["packages"]["lmms_eval"] = lmms_eval_version()
            else:
                prov["lmms_eval"] = lmms_eval_version()
            write_json_atomic(prov_path, prov)
