"""Training in two CPU processes (accelerate, gloo) on the tiny model: both ways in, resume, cost.

One study (sft 4 steps, grpo 2, a checkpoint every 2) runs first as
``harness train-and-eval --num_processes 2`` (this process scores, accelerate's launcher
trains) and is SIGKILLed once SFT's step 2 is scored: nothing it started may survive. The
same study then resumes under ``accelerate launch -m harness.cli train-and-eval`` (every
process runs the study; checkpoints scored data-parallel) and finishes. SFT's loss and
grad_norm at every step, and its final adapter, must equal a one-process run up to float
rounding (measured: relative differences under 4e-7, adapter max |diff| under 1e-6);
GRPO samples other completions with the batch split, so its cost record is what is checked:
generated tokens summed over both processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY, SFT_BATCH, GRPO_STEPS = 4, 2, 8, 2
STUDY_ARGS = ["train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--trainers", "sft,grpo",
              "--eval_every", str(EVERY), "--eval_limit", "4", "--eval_batch_size", "4", "--bootstrap", "50",
              "--set", f"max_steps={STEPS}", "--set", f"grpo.max_steps={GRPO_STEPS}",
              "--set", f"sft.batch_size={SFT_BATCH}", "--no_progress"]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def processes_naming(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (a test's own temporary path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-8)


@pytest.mark.parametrize("argv, says", [
    (["--num_processes", "0"], "--num_processes must be >= 1, got 0"),
    (["--num_processes", "3"], "sft: batch_size 8 is not divisible by num_processes 3"),
    (["--num_processes", "2", "--trainers", "curr_rl"], "curr_rl: num_processes 2: training in several processes "
                                                        "is supported for"),
])
def test_a_bad_num_processes_is_one_line_before_any_model_loads(argv, says, tmp_path, monkeypatch, capsys):
    from harness import cli, evaluator, study

    def no_model(*a, **k):
        raise AssertionError("a model was resolved before the arguments were checked")

    monkeypatch.setattr(study, "resolve_model", no_model)
    monkeypatch.setattr(evaluator, "resolve_model", no_model)
    args = [a for a in STUDY_ARGS if a != "--no_progress"] + ["--output_path", str(tmp_path / "s")] + argv
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: ") and says in err and "\n" not in err, err
    assert not (tmp_path / "s").exists()


def test_python_m_trainers_checks_num_processes_and_the_launchers_count(tmp_path, monkeypatch, capsys):
    from harness import evaluator
    from trainers.__main__ import main

    monkeypatch.setattr(evaluator, "resolve_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model")))
    base = ["sft", "--model", "tiny", "--suite", "synth_cls", "--output_dir", str(tmp_path / "t")]
    assert main(base + ["--set", "batch_size=6", "--num_processes", "4"]) == 2
    assert "sft: batch_size 6 is not divisible by num_processes 4" in capsys.readouterr().err
    # under a launcher of 2 processes, another count is refused (the launcher's is the one used)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(base + ["--num_processes", "3"]) == 2
    err = capsys.readouterr().err
    assert "--num_processes 3: this command runs under a launcher that started 2 processes" in err, err


def test_two_processes_train_score_resume_and_match_one_process(tiny_model_dir, tmp_path, no_git):
    root = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ours = [sys.executable, "-m", "harness.cli", *STUDY_ARGS, "--output_path", str(root)]

    # 1. --num_processes 2: killed (SIGKILL, the study's process only) once SFT's step 2 is scored
    errors = tmp_path / "killed.err"
    with open(errors, "w") as err:
        proc = subprocess.Popen(ours + ["--num_processes", "2"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
    scored = root / "runs" / "sft" / "step-000002" / "aggregates.json"
    try:
        deadline = time.monotonic() + 300
        while not scored.exists():
            assert proc.poll() is None, f"the study ended early ({proc.returncode}): {errors.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no scored checkpoint in 300 s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # the launcher dies with the study and the training processes with the launcher
        deadline = time.monotonic() + 20
        while processes_naming(str(root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_naming(str(root)), "training processes outlived the killed study"
    finally:
        for pid in processes_naming(str(root)):  # only what this test started: its own temporary path
            os.kill(pid, signal.SIGKILL)
    sft_dir = root / "train" / "sft"
    assert not (sft_dir / "checkpoints" / f"step-{STEPS:06d}").exists(), "SFT finished before it could be killed"
    assert json.loads((sft_dir / "trainer.json").read_text())["config"]["num_processes"] == 2

    # 2. the same study under accelerate launch: resumes SFT from step 2, trains GRPO, scores data-parallel
    done = subprocess.run(LAUNCH + ["-m", "harness.cli", *STUDY_ARGS, "--output_path", str(root)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("| row ") == 1  # rank 0 alone prints the leaderboard
    assert (root / "leaderboard.md").exists()
    for name, steps in (("sft", STEPS), ("grpo", GRPO_STEPS)):
        for step in range(EVERY, steps + 1, EVERY):
            assert (root / "train" / name / "checkpoints" / f"step-{step:06d}" / "adapter_model.safetensors").exists()
            agg = json.loads((root / "runs" / name / f"step-{step:06d}" / "aggregates.json").read_text())
            assert {a["task"] for a in agg} == {"synth_cls_id", "synth_cls_style", "synth_cls_clutter"}
            assert all(a["n"] == 4 for a in agg)

    # cost counts both processes: rows are global; GRPO's generated tokens are summed over the ranks
    grpo = log(root / "train" / "grpo")
    assert [r["step"] for r in grpo] == list(range(1, GRPO_STEPS + 1))
    completions = 8 * 4  # grpo's default batch_size x num_generations, split over the two processes
    total = 0.0
    for row in grpo:
        total += row["completions/mean_length"] * completions
        assert row["generated_tokens"] == pytest.approx(total), row
        assert row["examples"] == 8 * row["step"]
    sft2 = log(sft_dir)
    assert [r["step"] for r in sft2] == list(range(1, STEPS + 1))  # the killed segment's steps not logged twice
    assert sft2[-1]["examples"] == SFT_BATCH * STEPS

    # 3. SFT in one process, same config: the same losses, gradient norms and weights up to rounding
    from trainers import get_trainer, load_config

    one = tmp_path / "one"
    config = load_config("sft", None, [f"max_steps={STEPS}", f"save_steps={EVERY}", f"batch_size={SFT_BATCH}",
                                       "progress=false"], output_dir=str(one))
    ckpts = get_trainer("sft").train(tiny_model_dir, "synth_cls", config)
    sft1 = log(one)
    for a, b in zip(sft1, sft2):
        assert close(a["loss"], b["loss"]) and close(a["grad_norm"], b["grad_norm"]), (a, b)
        assert a["train_tokens"] == b["train_tokens"]
    from safetensors.torch import load_file

    w1 = load_file(str(Path(ckpts[-1].path) / "adapter_model.safetensors"))
    w2 = load_file(str(sft_dir / "checkpoints" / f"step-{STEPS:06d}" / "adapter_model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
