"""Resuming training: after SIGKILL the same command ends with the same weights; a full disk
while saving is one clear error and loses no finished checkpoint; a finished run is not redone.

Measured here (1 torch thread, CPU): resumed runs end bit-identical to uninterrupted ones
(adapter tensors equal, max |diff| 0.0) for SFT and GRPO, and so do their logs apart from
wall-clock fields. The tests therefore compare exactly.
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

from harness.errors import HarnessError  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from tiny_fixtures import SMALL  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.tiny_fixtures import SMALL  # noqa: E402

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = ("wall_time_s", "step_time")


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory) -> str:
    """A random SMALL Qwen2-VL whose tokenizer knows the synthetic questions (seconds to build)."""
    from harness.models.tiny import build_untrained
    from harness.taskspec import make_task

    corpus = []
    for name in ("synth_cls_train", "synth_count_train"):
        task = make_task(name)
        corpus += [task.question(s, None) + " " + task.answer_text(s, None) for _, s in zip(range(40), task.samples())]
    return str(build_untrained(SMALL, tmp_path_factory.mktemp("small") / "model", corpus))


def adapter(ckpt_path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(ckpt_path) / "adapter_model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a}
    assert max(diffs.values()) == 0.0, {k: v for k, v in diffs.items() if v}


def log_without_clock(out: Path) -> list[dict]:
    from trainers.train_log import read_log

    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in read_log(out / "train_log.jsonl")]


def test_sigkill_then_rerun_ends_with_the_same_weights(tiny_model_dir, tmp_path):
    """GRPO (sampling, so RNG state matters) on the tiny model, killed mid-run by SIGKILL."""
    from trainers import get_trainer, load_config

    sets = ["max_steps=6", "save_steps=2", "grpo.batch_size=4", "progress=false"]
    full = tmp_path / "full"
    trainer = get_trainer("grpo")
    reference = trainer.train(tiny_model_dir, "synth_cls", load_config("grpo", overrides=sets, output_dir=str(full)))
    assert [c.step for c in reference] == [2, 4, 6] and reference[-1].final

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "trainers", "grpo", "--model", tiny_model_dir, "--suite", "synth_cls",
           "--output_dir", str(killed)] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "step-000002"
    deadline = time.time() + 180
    while time.time() < deadline and not first.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into step 3 or 4: work that the rerun must redo identically
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in (killed / "checkpoints").glob("step-*"))
    assert "step-000006" not in done_before, "the run finished before it could be killed"
    assert "step-000002" in done_before  # so the rerun resumes rather than starts over

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in rerun.stdout.splitlines()]
    assert steps == [2, 4, 6]
    assert_same_weights(adapter(reference[-1].path), adapter(str(killed / "checkpoints" / "step-000006")))
    assert log_without_clock(killed) == log_without_clock(full)  # no step logged twice, same metrics
    cost = json.loads((killed / "checkpoints" / "step-000006" / "harness_checkpoint.json").read_text())["cost"]
    assert cost["generated_tokens"] == reference[-1].cost["generated_tokens"] > 0
    assert cost["optimizer_steps"] == 6 and cost["examples"] == 24


@pytest.mark.parametrize("error", ["enospc", "torch"])
def test_disk_full_while_saving_keeps_finished_checkpoints_and_resumes(small_model_dir, tmp_path, monkeypatch, error):
    """ENOSPC as an OSError, and as torch.save reports it (a RuntimeError) with the disk full."""
    import shutil
    from collections import namedtuple

    from trainers import get_trainer, load_config

    sets = ["max_steps=4", "save_steps=2", "sft.batch_size=4", "progress=false"]
    trainer = get_trainer("sft")
    reference = trainer.train(small_model_dir, "synth_cls",
                              load_config("sft", overrides=sets, output_dir=str(tmp_path / "full")))

    out = tmp_path / "run"
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # the optimizer state of the second checkpoint hits a full disk
        if "checkpoint-4" in str(f):
            if error == "enospc":
                raise OSError(28, "No space left on device")
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0; "
                               "PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    usage = namedtuple("usage", "total used free")
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 0) if "run" in str(p) else real_usage(p))
    seen = []
    with pytest.raises(HarnessError, match=r"^disk full while training into .*run \(No space left on device\): free "
                                           r"space there and rerun the same command; it resumes from step 2"):
        trainer.train(small_model_dir, "synth_cls", load_config("sft", overrides=sets, output_dir=str(out)),
                      on_checkpoint=seen.append)
    assert [c.step for c in seen] == [2]
    assert [c.step for c in trainer.existing_checkpoints(out)] == [2]
    monkeypatch.undo()

    resumed = trainer.train(small_model_dir, "synth_cls", load_config("sft", overrides=sets, output_dir=str(out)))
    assert [c.step for c in resumed] == [2, 4]
    assert (out / "incomplete" / "checkpoint-4").is_dir()  # the torn save, moved aside
    assert_same_weights(adapter(reference[-1].path), adapter(resumed[-1].path))
    assert log_without_clock(out) == log_without_clock(tmp_path / "full")


def test_a_finished_run_returns_its_checkpoints_without_loading_a_model(small_model_dir, tmp_path, monkeypatch):
    from trainers import get_trainer, load_config

    config = load_config("sft", overrides=["max_steps=2", "save_steps=1", "sft.batch_size=2", "progress=false"],
                         output_dir=str(tmp_path / "run"))
    trainer = get_trainer("sft")
    calls = []
    first = trainer.train(small_model_dir, "synth_cls", config, on_checkpoint=calls.append)
    assert [c.step for c in first] == [1, 2] and calls == first
    assert first[-1].cost["train_tokens"] > 0 and first[-1].metrics["loss"] > 0

    import transformers

    def refuse(*a, **k):
        raise AssertionError("a finished run must not load a model")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", refuse)
    assert trainer.train(small_model_dir, "synth_cls", config, on_checkpoint=calls.append) == first
    assert len(calls) == 2


def test_training_from_a_lora_checkpoint_merges_it_once(small_model_dir, tmp_path, no_git):
    """E.g. an SFT cold start, then GRPO: the new adapters name the merged base, so evaluating
    them includes the earlier training."""
    from harness.evaluator import EvalConfig, run_eval
    from trainers import get_trainer, load_config

    sft = get_trainer("sft").train(small_model_dir, "synth_cls", load_config(
        "sft", overrides=["max_steps=2", "save_steps=2", "sft.batch_size=2", "progress=false"],
        output_dir=str(tmp_path / "sft")))
    out = tmp_path / "grpo"
    grpo = get_trainer("grpo").train(sft[-1].path, "synth_cls", load_config(
        "grpo", overrides=["max_steps=1", "save_steps=1", "grpo.batch_size=2", "grpo.num_generations=2",
                           "progress=false"], output_dir=str(out)))
    merged = out / "base_merged"
    assert (merged / "model.safetensors").is_file() and not list(out.glob(".tmp-*"))
    adapter = json.loads((Path(grpo[-1].path) / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == merged
    info = json.loads((Path(grpo[-1].path) / "harness_checkpoint.json").read_text())
    assert info["started_from"] == str(Path(sft[-1].path).resolve())
    result = run_eval(EvalConfig(model=grpo[-1].path, tasks=["synth_cls_id"], limit=4, n_boot=20,
                                 output_path=str(tmp_path / "eval"), progress=False))
    assert result.aggregates[0]["n"] == 4


def test_a_damaged_resume_state_is_one_error_naming_what_to_delete(small_model_dir, tmp_path):
    from trainers import get_trainer, load_config

    config = load_config("sft", overrides=["max_steps=3", "save_steps=1", "sft.batch_size=2", "progress=false"],
                         output_dir=str(tmp_path / "run"))
    trainer = get_trainer("sft")

    def stop_after_two(ckpt):
        if ckpt.step == 2:
            raise KeyboardInterrupt  # the run stops with two complete checkpoints

    with pytest.raises(KeyboardInterrupt):
        trainer.train(small_model_dir, "synth_cls", config, on_checkpoint=stop_after_two)
    optimizer = tmp_path / "run" / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(b"\0" * optimizer.stat().st_size)  # same size, garbage content
    with pytest.raises(HarnessError, match=r"^cannot resume from .*checkpoint-2 \(.*\); if it is damaged, delete it "
                                           r"and .*step-000002 to resume from step 1$"):
        trainer.train(small_model_dir, "synth_cls", config)


def test_a_damaged_base_model_is_one_error_naming_it(small_model_dir, tmp_path):
    import shutil

    from harness.errors import UsageError
    from trainers import get_trainer, load_config

    broken = tmp_path / "model"
    shutil.copytree(small_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    config = load_config("sft", overrides=["max_steps=1", "progress=false"], output_dir=str(tmp_path / "run"))
    with pytest.raises(UsageError, match=r"^cannot load model .*model \(.*\); check that it holds config.json"):
        get_trainer("sft").train(str(broken), "synth_cls", config)
