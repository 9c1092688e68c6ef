"""Benchmark: harness eval throughput vs a bare batched ``generate`` loop.

Both paths use the same loaded model, the same samples, prompts, batch size and
generation lengths; the bare loop does only chat template + image decode +
processor + generate + decode. The difference is what the harness adds (prompt
building, parsing, scoring, fsynced records, aggregation with bootstrap CIs).

    python bench/eval_overhead.py                 # synth suite, 64 samples per split, tiny model
    python bench/eval_overhead.py --limit 200 --repeats 3 --batch_size 16
    python bench/eval_overhead.py --model_config large    # generation dominates
    python bench/eval_overhead.py --model_config both --profile 30

The harness path runs with its defaults: the pipelined loop (``--num_workers`` auto: one
worker preparing the next batch where a second core exists, scoring in a thread); the bare
loop is serial. A final pair of runs checks that the default run's records equal the
serial loop's (``--num_workers 0``).

Prints per-path seconds, samples/s and the harness/bare time ratio (median of
repeats; the paths alternate which goes first) for each model configuration, plus
the ratio of this process's CPU times (less sensitive to other processes on the machine;
the preparing worker's CPU time is not in it) and the model's load time:

- ``tiny``: the embedded pretrained tiny model; it answers in a few tokens, so the
  per-sample work outside ``generate`` weighs the most here;
- ``large``: a randomly initialised, larger Qwen2-VL (same tokenizer, processor and
  image size; built once into the cache). An untrained model writes garbage until
  ``max_new_tokens``, so generation is the bulk of the work and the ratio shows what
  the harness costs in a realistic regime (its scores are meaningless, parse failures
  everywhere; only the timing counts).

``--profile N`` runs the harness path once more under cProfile and prints its top N
functions by cumulative time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def bare_loop(backend, items, batch_size: int, naive: bool = False) -> tuple[float, float]:
    """items: list of (prompt, max_new_tokens), in the harness's order.

    Calls ``generate`` as the hf backend does (with a blank GenerationConfig, which
    spares transformers rebuilding the model's default config on every call), so that
    both paths do the same generation work and the ratio is what the harness adds.
    ``naive``: plain ``generate(**inputs, max_new_tokens=...)``, the loop this bench
    compared against before the backend learnt that.
    """
    import torch
    from transformers import GenerationConfig

    proc, model, tok = backend.processor, backend.model, backend._tokenizer
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        texts = [proc.apply_chat_template(p.messages(), add_generation_prompt=True, tokenize=False) for p, _ in chunk]
        images = [ref.load() for p, _ in chunk for ref in p.images]
        inputs = proc(text=texts, images=images, padding=True, return_tensors="pt")
        config = {} if naive else {"generation_config": GenerationConfig()}
        with torch.inference_mode():
            out = model.generate(**inputs, **config, max_new_tokens=chunk[0][1], do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - t0, time.process_time() - c0


# The random "large" model: 8.5 M parameters against the tiny model's 2.2 M (wider
# and deeper LM, wider vision tower), same tokenizer recipe, processor and image size,
# so prompts are identical. Untrained, it writes every token up to max_new_tokens:
# about 6x the tiny model's time per sample. Bigger made the default run take more
# than a few minutes on 2 cores.
LARGE = dict(hidden_size=384, num_layers=4, num_heads=6, num_kv_heads=2, intermediate_size=1024,
             vision_depth=2, vision_embed_dim=192, vision_heads=4)


def large_model_dir() -> str:
    """Built once (seconds) into the model cache, keyed by the recipe and the data version."""
    from filelock import FileLock

    from harness.models.embedded import SyntheticTinyData
    from harness.models.tiny import TinyRecipe, build_untrained, cache_root, read_info

    data = SyntheticTinyData()
    recipe = TinyRecipe().with_(**LARGE)
    root = cache_root()
    final = root / f"bench-random-qwen2vl-{recipe.key(data.version, 'untrained')}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if not read_info(final).get("parameters"):
            tmp = final.with_name(final.name + f".build-{os.getpid()}")
            build_untrained(recipe, tmp, data.corpus())
            os.rename(tmp, final)
    return str(final)


def measure(name: str, model_dir: str, args) -> float:
    """Prints the figures of one model configuration; returns the harness/bare ratio."""
    from harness.backends.hf import HFBackend
    from harness.models.tiny import read_info
    from harness.taskspec import make_task, resolve

    info = read_info(model_dir)
    t0 = time.perf_counter()
    backend = HFBackend(model=model_dir)
    load_s = time.perf_counter() - t0

    conv = backend.conventions
    # Batches never span tasks in the harness, so the bare loop batches per task too.
    by_task: list[list] = []
    for ref in resolve(args.tasks):
        task = make_task(ref.name, ref.fmt)
        by_task.append([(task.prompt(s, conv), task.max_new_tokens)
                        for i, s in zip(range(args.limit), task.samples())])
    n = sum(len(chunk) for chunk in by_task)

    bare, harness = [], []  # (wall s, CPU s) per repeat
    for r in range(args.repeats):
        # Alternating which path goes first cancels a steady drift in machine load.
        for path in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
            if path == "bare":
                runs = [bare_loop(backend, chunk, args.batch_size, args.naive_bare) for chunk in by_task]
                bare.append((sum(w for w, _ in runs), sum(c for _, c in runs)))
            else:
                harness.append(run_harness(model_dir, backend, args))
        print(f"{name} repeat {r + 1}: bare {bare[-1][0]:.2f} s, harness {harness[-1][0]:.2f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:  # the default (pipelined) run's records vs the serial loop's
        run_harness(model_dir, backend, args, keep=f"{tmp}/default")
        run_harness(model_dir, backend, args, num_workers=0, keep=f"{tmp}/serial")
        same = records_of(f"{tmp}/default") == records_of(f"{tmp}/serial")
    from harness.pipeline import resolve_num_workers

    b, h = statistics.median(w for w, _ in bare), statistics.median(w for w, _, _ in harness)
    bc, hc = statistics.median(c for _, c in bare), statistics.median(c for _, c, _ in harness)
    # The harness's own time: its wall time outside backend.generate, per run. Unlike
    # the ratio it does not move with the machine's load on the generate calls.
    own = statistics.median(w - g for w, _, g in harness)
    pre = info.get("pretrain", {})
    print(f"[{name}] {info.get('parameters', '?')} parameters, "
          + ("pretrained" if pre else "random weights (writes garbage up to max_new_tokens)"))
    print(f"samples per path:         {n} ({args.tasks}, limit {args.limit}, batch {args.batch_size})")
    print(f"bare generate loop:       {b:.2f} s  {n / b:.1f} samples/s  (CPU {bc:.2f} s)"
          + ("  (naive generate call)" if args.naive_bare else ""))
    print(f"harness eval:             {h:.2f} s  {n / h:.1f} samples/s  (CPU {hc:.2f} s; "
          f"--num_workers auto = {resolve_num_workers(None)})")
    print(f"harness / bare time:      {h / b:.3f}  (overhead {100 * (h / b - 1):+.1f} %; CPU time {hc / bc:.3f})")
    print(f"harness outside generate: {own:.2f} s  ({100 * own / b:.1f} % of the bare loop)")
    print(f"records = serial loop's:  {'yes' if same else 'NO'} (timings aside)")
    print(f"model load:               {load_s:.2f} s")
    if pre:
        print(f"tiny model pretraining:   {pre.get('seconds')} s for {pre.get('steps')} steps "
              f"({pre.get('steps_per_s')} steps/s, final loss {pre.get('final_loss'):.3f})")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run_harness(model_dir, backend, args)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(args.profile)
    return h / b


def run_harness(model_dir: str, backend, args, num_workers: int | None = None,
                keep: str | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, wall s inside backend.generate) of one harness run (default
    settings: ``num_workers`` None is auto); ``keep``: the run directory to write."""
    from harness.evaluator import EvalConfig, run_eval

    inside = [0.0]
    generate = backend.generate

    def timed(prompts, params, **kw):  # kw: prepared= (the pipelined path's inputs)
        t = time.perf_counter()
        try:
            return generate(prompts, params, **kw)
        finally:
            inside[0] += time.perf_counter() - t

    backend.generate = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = EvalConfig(model=model_dir, tasks=[args.tasks], limit=args.limit, batch_size=args.batch_size,
                             output_path=keep or tmp, progress=False, num_workers=num_workers, overwrite=True)
            t0, c0 = time.perf_counter(), time.process_time()
            run_eval(cfg, backend=backend)
            return time.perf_counter() - t0, time.process_time() - c0, inside[0]
    finally:
        del backend.generate


def records_of(run_dir: str) -> dict[str, list[dict]]:
    import json
    from pathlib import Path

    return {f.name: [{k: v for k, v in json.loads(x).items() if k != "latency_s"} for x in f.read_text().splitlines()]
            for f in sorted(Path(run_dir, "records").glob("*.jsonl"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synth")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model_config", choices=("tiny", "large", "both"), default="tiny")
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--naive_bare", action="store_true", help="bare loop without the backend's generate set-up")
    args = ap.parse_args()

    from harness.models.embedded import resolve_embedded

    configs = ("tiny", "large") if args.model_config == "both" else (args.model_config,)
    ratios = {}
    for name in configs:
        model_dir = resolve_embedded("tiny") if name == "tiny" else large_model_dir()
        ratios[name] = measure(name, model_dir, args)
    if len(ratios) > 1:
        print("harness / bare: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
