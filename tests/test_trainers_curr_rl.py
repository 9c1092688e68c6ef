"""Curr-RL: stages in one run, global steps, the plateau switch, and exact resume after SIGKILL mid-stage."""

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

from harness.errors import UsageError  # noqa: E402
from trainers.curr_rl import plateau_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS = ["max_steps=6", "save_steps=1", "curr_rl.batch_size=2", "curr_rl.num_generations=2", "progress=false"]


def test_plateau_is_the_first_step_whose_window_gains_too_little():
    rising = [(s, 0.1 * s) for s in range(1, 9)]
    assert plateau_step(rising, window=2, min_delta=0.05) is None
    flat_from_5 = [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.4), (6, 0.4), (7, 0.4)]
    # windows (3,4)->(5,6): 0.35 -> 0.40 gains 0.05; (4,5)->(6,7): 0.40 -> 0.40 gains 0
    assert plateau_step(flat_from_5, window=2, min_delta=0.05) == 7
    assert plateau_step(flat_from_5, window=2, min_delta=0.06) == 6
    assert plateau_step(flat_from_5[:3], window=2, min_delta=1.0) is None  # needs two full windows


def test_config_checks_name_the_bad_option():
    from trainers import get_trainer, load_config

    trainer = get_trainer("curr_rl")
    for sets, message in ((["curr_rl.stages=yesno,essay"], "not a format"),
                          (["curr_rl.stage_steps=1,2"], "2 values for 3 stages"),
                          (["curr_rl.stage_steps=1,1,1"], "sum to max_steps"),
                          (["curr_rl.switch=reward"], "switch must be"),
                          (["curr_rl.formats=mc"], "leave formats unset"),
                          (["max_steps=2"], "fewer than the 3 stages")):
        with pytest.raises(UsageError, match=message):
            trainer.check("synth_cls", load_config("curr_rl", overrides=SETS + sets, output_dir="/tmp/x"))
    config = load_config("curr_rl", overrides=["max_steps=10"], output_dir="/tmp/x")
    assert config.budgets() == [3, 3, 4]


def read_info(ckpt: str) -> dict:
    return json.loads((Path(ckpt) / "harness_checkpoint.json").read_text())


def adapter(ckpt: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(ckpt) / "adapter_model.safetensors"))


@pytest.mark.slow
def test_stages_run_in_order_on_one_step_axis_and_resume_after_sigkill(tiny_model_dir, tmp_path):
    from harness.evaluator import EvalConfig, run_eval
    from trainers import get_trainer, load_config

    trainer = get_trainer("curr_rl")
    full = tmp_path / "full"
    seen = []
    ckpts = trainer.train(tiny_model_dir, "synth_cls", load_config("curr_rl", overrides=SETS, output_dir=str(full)),
                          on_checkpoint=seen.append)
    assert [c.step for c in ckpts] == [1, 2, 3, 4, 5, 6] and [c.step for c in seen] == [1, 2, 3, 4, 5, 6]
    stages = [read_info(c.path)["stage"] for c in ckpts]
    assert [(s["stage"], s["format"], s["stage_step"]) for s in stages] == [
        (1, "yesno", 1), (1, "yesno", 2), (2, "mc", 1), (2, "mc", 2), (3, "open", 1), (3, "open", 2)]
    assert ckpts[-1].final and not ckpts[-2].final
    costs = [c.cost for c in ckpts]
    assert [c["optimizer_steps"] for c in costs] == [1, 2, 3, 4, 5, 6]
    assert all(b["generated_tokens"] > a["generated_tokens"] for a, b in zip(costs, costs[1:]))  # summed over stages
    log = [json.loads(line) for line in (full / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["stage_format"]) for r in log] == [(1, "yesno"), (2, "yesno"), (3, "mc"), (4, "mc"),
                                                             (5, "open"), (6, "open")]
    assert (full / "plots" / "reward.png").is_file()
    # stage 2 trains from stage 1's final weights (merged into its base)
    stage2 = json.loads((Path(read_info(ckpts[3].path)["stage"]["stage_dir"]) / "adapter_config.json").read_text())
    assert Path(stage2["base_model_name_or_path"]) == full / "stages" / "2-mc" / "base_merged"
    result = run_eval(EvalConfig(model=ckpts[-1].path, tasks=["synth_cls_id"], limit=4, n_boot=10,
                                 output_path=str(tmp_path / "eval"), progress=False))
    assert result.aggregates[0]["n"] == 4

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trainers", "curr_rl", "--model", tiny_model_dir, "--suite", "synth_cls",
           "--output_dir", str(killed)] + [a for s in SETS for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mid = killed / "checkpoints" / "step-000003"  # the first checkpoint of stage 2
    deadline = time.time() + 240
    while time.time() < deadline and not mid.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = sorted(p.name for p in (killed / "checkpoints").glob("step-*"))
    assert "step-000003" in before and "step-000006" not in before, before

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [json.loads(line)["step"] for line in rerun.stdout.splitlines()] == [1, 2, 3, 4, 5, 6]
    for ref, got in zip(ckpts, sorted((killed / "checkpoints").glob("step-*"))):
        a, b = adapter(ref.path), adapter(str(got))
        assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() == 0.0 for k in a), got.name
        assert read_info(str(got))["stage"]["format"] == read_info(ref.path)["stage"]["format"]
    clean = [{k: v for k, v in json.loads(line).items() if k not in ("wall_time_s", "step_time")}
             for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert clean == [{k: v for k, v in r.items() if k not in ("wall_time_s", "step_time")} for r in log]


@pytest.mark.slow
def test_plateau_switch_ends_a_stage_early_and_hands_its_steps_on(tiny_model_dir, tmp_path):
    from trainers import get_trainer, load_config

    # min_delta 10: any window "plateaus", so each non-final stage stops at 2 x window steps
    sets = ["max_steps=9", "save_steps=5", "curr_rl.batch_size=2", "curr_rl.num_generations=2", "progress=false",
            "curr_rl.switch=plateau", "curr_rl.plateau_window=1", "curr_rl.plateau_min_delta=10"]
    out = tmp_path / "run"
    ckpts = get_trainer("curr_rl").train(tiny_model_dir, "synth_cls",
                                         load_config("curr_rl", overrides=sets, output_dir=str(out)))
    curriculum = json.loads((out / "curriculum.json").read_text())["stages"]
    assert [(s["format"], s["start_step"], s["steps"], s["budget"]) for s in curriculum] == [
        ("yesno", 0, 2, 3), ("mc", 2, 2, 4), ("open", 4, 5, 5)]
    assert [c.step for c in ckpts] == [2, 4, 9] and ckpts[-1].final


@pytest.mark.slow
def test_curr_rl_and_dc_sft_trainers_run_from_train_and_eval_into_the_leaderboard(tiny_model_dir, tmp_path):
    """Each new trainer through `harness train-and-eval`: checkpoints scored ID and OOD, one leaderboard row each."""
    from harness.cli import main

    root = tmp_path / "study"
    code = main(["train-and-eval", "--model", tiny_model_dir, "--suite", "synth_cls", "--trainers",
                 "curr_rl,sft_m,sft_em", "--max_steps", "3", "--eval_every", "3", "--eval_limit", "4",
                 "--bootstrap", "10", "--no_progress", "--output_path", str(root),
                 "--set", "batch_size=4", "--set", "curr_rl.num_generations=2",
                 "--set", "sft_m.profile_samples=16", "--set", "sft_m.num_generations=4",
                 "--set", "sft_em.profile_samples=16", "--set", "sft_em.num_generations=4"])
    assert code == 0
    board = (root / "leaderboard.md").read_text()
    for label in ("curr_rl@3", "sft_m@3", "sft_em@3"):
        assert label in board, board
    for trainer in ("curr_rl", "sft_m", "sft_em"):
        aggs = (root / "runs" / trainer / "step-000003" / "aggregates.json").read_text()
        assert all(split in aggs for split in ("synth_cls_id", "synth_cls_style", "synth_cls_clutter"))
