"""Benchmark: harness eval throughput vs a bare batched ``generate`` loop.

Both paths use the same loaded model, the same samples, prompts, batch size and
generation lengths; the bare loop does only chat template + image decode +
processor + generate + decode. The difference is what the harness adds (prompt
building, parsing, scoring, fsynced records, aggregation with bootstrap CIs).

    python bench/eval_overhead.py                 # synth suite, 64 samples per split
    python bench/eval_overhead.py --limit 200 --repeats 3 --batch_size 16

Prints per-path seconds, samples/s and the harness/bare time ratio (median of
repeats), plus the tiny model's recorded build time and its load time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def bare_loop(backend, items, batch_size: int) -> float:
    """items: list of (prompt, max_new_tokens), in the harness's order."""
    import torch

    proc, model, tok = backend.processor, backend.model, backend._tokenizer
    t0 = time.perf_counter()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        texts = [proc.apply_chat_template(p.messages(), add_generation_prompt=True, tokenize=False) for p, _ in chunk]
        images = [ref.load() for p, _ in chunk for ref in p.images]
        inputs = proc(text=texts, images=images, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=chunk[0][1], do_sample=False, pad_token_id=tok.pad_token_id)
        tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="synth")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from harness.backends.hf import HFBackend
    from harness.evaluator import EvalConfig, run_eval
    from harness.models.embedded import resolve_embedded
    from harness.models.tiny import read_info
    from harness.taskspec import make_task, resolve

    model_dir = resolve_embedded("tiny")
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

    bare, harness = [], []
    for r in range(args.repeats):
        bare.append(sum(bare_loop(backend, chunk, args.batch_size) for chunk in by_task))
        with tempfile.TemporaryDirectory() as out:
            cfg = EvalConfig(model=model_dir, tasks=[args.tasks], limit=args.limit, batch_size=args.batch_size,
                             output_path=out, progress=False)
            t0 = time.perf_counter()
            run_eval(cfg, backend=backend)
            harness.append(time.perf_counter() - t0)
        print(f"repeat {r + 1}: bare {bare[-1]:.2f} s, harness {harness[-1]:.2f} s", file=sys.stderr)

    b, h = statistics.median(bare), statistics.median(harness)
    pre = info.get("pretrain", {})
    print(f"samples per path:         {n} ({args.tasks}, limit {args.limit}, batch {args.batch_size})")
    print(f"bare generate loop:       {b:.2f} s  {n / b:.1f} samples/s")
    print(f"harness eval:             {h:.2f} s  {n / h:.1f} samples/s")
    print(f"harness / bare time:      {h / b:.3f}  (overhead {100 * (h / b - 1):+.1f} %)")
    print(f"tiny model load:          {load_s:.2f} s")
    if pre:
        print(f"tiny model pretraining:   {pre.get('seconds')} s for {pre.get('steps')} steps "
              f"({pre.get('steps_per_s')} steps/s, final loss {pre.get('final_loss'):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
