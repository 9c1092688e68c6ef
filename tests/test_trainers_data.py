"""Trainer building blocks without training: rows, prompts and targets, rewards, checkpoint
directories, the training log and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.conventions import FAMILIES  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.protocol import STRICT  # noqa: E402
from harness.registry import SUITES  # noqa: E402
from harness.suite import Suite  # noqa: E402
from harness.taskspec import make_task  # noqa: E402
from trainers.base import CHECKPOINT_INFO, Checkpoint  # noqa: E402
from trainers.rewards import FORMAT_INSTRUCTION, TaskReward, completion_text, format_reward  # noqa: E402
from trainers.rows import TrainRows, with_instruction  # noqa: E402
from trainers.run_dir import complete_checkpoints, prepare_run, publish, resume_point  # noqa: E402
from trainers.train_log import CostMeter, read_log, truncate_log  # noqa: E402

CONV = FAMILIES["qwen2_vl"]


def test_rows_are_a_function_of_seed_and_position():
    suite = SUITES.get("synth_cls")
    a = TrainRows(suite, ("open",), 40, seed=0)
    b = TrainRows(suite, ("open",), 60, seed=0)
    c = TrainRows(suite, ("open",), 40, seed=1)
    ids = lambda rows, n: [rows[i].sample.id for i in range(n)]  # noqa: E731
    assert ids(a, 40) == ids(b, 40)  # a longer run starts with the same rows
    assert ids(a, 40) != ids(c, 40)
    assert len(set(ids(a, 40))) == 40
    assert ids(TrainRows(suite, ("open",), 5, seed=0, shuffle=False), 5) == ["000000", "000001", "000002",
                                                                                "000003", "000004"]


def test_rows_cycle_formats_and_epochs():
    small = Suite("probe", "synth_cls_id", (), ())  # a 300-sample split as train split
    rows = TrainRows(small, ("open", "mc", "yesno"), 700, seed=0)
    assert [rows[i].task.fmt for i in range(4)] == ["open", "mc", "yesno", "open"]
    first, second = [rows[i].sample.id for i in range(300)], [rows[i].sample.id for i in range(300, 600)]
    assert sorted(first) == sorted(second) and first != second  # every sample once per epoch, reshuffled
    assert rows[1].task.target(rows[1].sample, CONV) in "ABCD"


def test_task_reward_is_the_tasks_own_scorer():
    rows = TrainRows(SUITES.get("synth_count"), ("open", "yesno"), 4, seed=0)
    reward = TaskReward(rows, CONV, STRICT, meter := CostMeter())
    gold = [rows[i].task.target(rows[i].sample, CONV) for i in range(4)]
    completions = [[{"role": "assistant", "content": g}] for g in gold] + ["banana"] * 4
    got = reward([None] * 8, completions, row=[0, 1, 2, 3] * 2, completion_ids=[[1, 2]] * 8)
    want = [rows[i % 4].task.reward(completion_text(c), rows[i % 4].sample, CONV, STRICT)
            for i, c in enumerate(completions)]
    assert got == want and got[:4] == [1.0] * 4 and got[4:] == [0.0] * 4
    assert meter.generated_tokens == 16
    assert reward.__name__ == "task"


def test_format_reward_and_instruction():
    good = "<think>three shapes</think> <answer>3</answer>"
    assert format_reward([good, "3", "<answer>3</answer>", "<think>x</think><answer>3"]) == [1.0, 0.0, 0.0, 0.0]
    task = make_task("synth_cls_id")
    prompt = task.prompt(next(iter(task.samples())), CONV)
    tagged = with_instruction(prompt, FORMAT_INSTRUCTION)
    assert tagged.text.endswith(FORMAT_INSTRUCTION) and tagged.images == prompt.images
    assert with_instruction(prompt, None) is prompt


def fake_trl_checkpoint(out: Path, step: int, payload: bytes = b"weights") -> Path:
    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(payload)
    (d / "adapter_config.json").write_text("{}")
    (d / "optimizer.pt").write_bytes(b"o" * 100)
    (d / "rng_state.pth").write_bytes(b"r")
    (d / "trainer_state.json").write_text("{}")
    return d


def test_publish_makes_an_eval_dir_without_resume_state(tmp_path):
    trl = fake_trl_checkpoint(tmp_path, 5)
    ckpt = publish(tmp_path, trl, 5, {"trainer": "sft", "cost": {"wall_time_s": 1.5}, "final": True})
    assert ckpt == Checkpoint(path=str(tmp_path / "checkpoints" / "step-000005"), step=5, trainer="sft",
                              cost={"wall_time_s": 1.5}, metrics={}, final=True)
    files = sorted(p.name for p in Path(ckpt.path).iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors", CHECKPOINT_INFO]
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert complete_checkpoints(tmp_path) == [ckpt]


def test_resume_point_skips_half_written_checkpoints(tmp_path):
    publish(tmp_path, fake_trl_checkpoint(tmp_path, 2), 2, {})
    fake_trl_checkpoint(tmp_path, 4)  # killed before it was published
    (tmp_path / "checkpoints" / ".tmp-step-000004").mkdir()
    done = complete_checkpoints(tmp_path)
    assert [c.step for c in done] == [2]
    assert resume_point(tmp_path, done) == tmp_path / "checkpoint-2"
    assert (tmp_path / "incomplete" / "checkpoint-4").is_dir()  # moved aside, not deleted
    assert not (tmp_path / "checkpoint-4").exists()
    assert not (tmp_path / "checkpoints" / ".tmp-step-000004").exists()
    assert resume_point(tmp_path / "new", []) is None


def test_corrupt_checkpoints_are_named_with_the_fix(tmp_path):
    publish(tmp_path, fake_trl_checkpoint(tmp_path, 2), 2, {})
    publish(tmp_path, fake_trl_checkpoint(tmp_path, 4), 4, {})
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_bytes(b"o" * 10)  # truncated
    with pytest.raises(UsageError, match=r"checkpoint-4 is corrupt: optimizer.pt has 10 bytes, 100 were written; "
                                         r"delete .*step-000004 and .*checkpoint-4 to resume from step 2"):
        resume_point(tmp_path, complete_checkpoints(tmp_path))
    (tmp_path / "checkpoints" / "step-000004" / CHECKPOINT_INFO).write_text("{not json")
    with pytest.raises(UsageError, match="step-000004 is corrupt"):
        complete_checkpoints(tmp_path)


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    identity = {"trainer": "grpo", "config": {"beta": 0.0, "seed": 0}}
    assert prepare_run(tmp_path, identity) is False
    assert prepare_run(tmp_path, identity) is True
    with pytest.raises(UsageError, match=r"different configuration \(config.beta\); use another output_dir"):
        prepare_run(tmp_path, {"trainer": "grpo", "config": {"beta": 0.04, "seed": 0}})


def test_log_truncation_drops_redone_steps_and_torn_lines(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    assert [r["step"] for r in read_log(log)] == [1, 2, 3, 4, 5]
    truncate_log(log, 3)
    assert [r["step"] for r in read_log(log)] == [1, 2, 3]


def test_cost_meter_round_trip():
    m = CostMeter(wall_time_s=12.34567, generated_tokens=100, optimizer_steps=3, examples=24,
                  extra={"train_tokens": 999})
    assert CostMeter.from_dict(m.to_dict()).to_dict() == m.to_dict()
    assert m.to_dict()["wall_time_s"] == 12.346


def test_plots_write_pngs(tmp_path):
    from trainers.plots import plot_eval_curves, plot_training, reward_components

    rows = [{"step": s, "loss": 1 / s, "grad_norm": 0.5, "reward": 0.1 * s, "rewards/task/mean": 0.1 * s,
             "rewards/task/std": 0.05, "rewards/format/mean": 0.0, "rewards/format/std": 0.0, "kl": 0.01 * s,
             "completions/mean_length": 4.0} for s in range(1, 6)]
    assert reward_components(rows) == ["task", "format"]
    written = plot_training(rows, tmp_path / "plots", title="grpo")
    assert [p.name for p in written] == ["loss.png", "reward.png", "rl_stats.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
    sft_only = plot_training([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], tmp_path / "sft")
    assert [p.name for p in sft_only] == ["loss.png"]
    evals = [{"step": s, "split": t, "role": r, "value": v, "ci_low": v - 0.05, "ci_high": v + 0.05}
             for s in (0, 10, 20) for t, r, v in (("synth_cls_id", "id", 0.4 + s / 100),
                                                  ("synth_cls_clutter", "ood", 0.3))]
    png = plot_eval_curves(evals, tmp_path / "evals.png", metric_label="acc")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sft_rows_are_the_evaluators_prompt_and_the_target_then_end_of_turn(tmp_path):
    """The prompt SFT trains on is byte-identical to the hf backend's; the loss covers exactly the
    target's tokens and <|im_end|> (not the template's newline after it)."""
    from harness.backends.hf import HFBackend
    from harness.models.tiny import build_untrained

    try:
        from tiny_fixtures import SMALL
    except ImportError:  # pragma: no cover
        from tests.tiny_fixtures import SMALL
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from trainers.rows import model_conventions
    from trainers.sft import SFTTrainer
    from trainers.trl_run import RunContext

    task = make_task("synth_count_train", "mc")
    samples = [s for _, s in zip(range(3), task.samples())]
    model_dir = build_untrained(SMALL, tmp_path / "m", [task.prompt(s, CONV).text for s in samples])
    backend = HFBackend(model=str(model_dir))
    processor = backend.processor
    conv = model_conventions(model_dir, processor)
    assert conv == backend.conventions
    rows = TrainRows(Suite("probe", "synth_count_train", (), ()), ("mc",), 3, seed=0)
    from trainers import build_config

    ctx = RunContext(build_config("sft", output_dir="o"), None, model_dir, processor, conv, rows, CostMeter())
    built = [SFTTrainer().make_row(rows[i], ctx) for i in range(3)]
    for i, item in enumerate(built):
        assert item["prompt"] == backend.render(rows[i].task.prompt(rows[i].sample, conv))
        assert item["completion"] == rows[i].task.target(rows[i].sample, conv) + "<|im_end|>"
        assert len(item["images"]) == 1
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(b) for b in built])
    tok = processor.tokenizer
    for i, labels in enumerate(batch["labels"]):
        trained = tok.decode([t for t in labels.tolist() if t != -100])
        assert trained == built[i]["completion"]

    tagged = RunContext(build_config("sft", overrides=["sft.answer_tags=true"], output_dir="o"), None, model_dir,
                        processor, conv, rows, CostMeter())
    item = SFTTrainer().make_row(rows[0], tagged)
    target = rows[0].task.target(rows[0].sample, conv)
    assert item["completion"] == f"<think></think><answer>{target}</answer><|im_end|>"
    assert FORMAT_INSTRUCTION in item["prompt"]


def test_run_identity_names_the_weights_not_their_path(tmp_path):
    """The same base model reached through another path (an install elsewhere, a moved
    directory) must resume the same run; other weights must not."""
    import shutil

    from harness.models.embedded import SHIPPED_TINY
    from harness.registry import SUITES
    from trainers import get_trainer, load_config

    trainer = get_trainer("sft")
    config = load_config("sft", output_dir=str(tmp_path / "out"))
    suite = SUITES.get("synth_cls")
    copy = tmp_path / "elsewhere"
    shutil.copytree(SHIPPED_TINY, copy)
    assert trainer.identity(SHIPPED_TINY, suite, config) == trainer.identity(copy, suite, config)
    (copy / "model.safetensors").write_bytes(b"other weights")
    assert trainer.identity(SHIPPED_TINY, suite, config) != trainer.identity(copy, suite, config)


def test_holdout_and_indices_restrict_the_rows():
    suite = Suite("probe", "synth_count_train", (), ())
    rows = TrainRows(suite, ("open",), 200, seed=0, holdout=50)
    assert min(rows.order) >= 50
    sub = TrainRows(suite, ("open",), 30, seed=0, holdout=5, indices=[1, 7, 9, 300])
    assert set(sub.order) == {7, 9, 300}
    with pytest.raises(UsageError, match="holdout"):
        TrainRows(suite, ("open",), 3, seed=0, holdout=10**9)
    with pytest.raises(UsageError, match="outside the train split"):
        TrainRows(suite, ("open",), 3, seed=0, indices=[-1])
    with pytest.raises(UsageError, match="no training samples left"):
        TrainRows(suite, ("open",), 3, seed=0, holdout=5, indices=[1, 2])
