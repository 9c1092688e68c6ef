"""Curr-RL (Curr-ReFT, Sec. 3.2): GRPO in curriculum stages inside one run.

The same train samples are posed in each stage's format through ``Task``
(``:yesno``, ``:mc``, open), and each stage is rewarded by that format's own scorer
(``Task.reward``): yes/no and multiple choice are exact (binary) rewards; the open
stage is the task's primary metric (classification: label match, multi-label:
category-overlap IoU; grounding: ACC@0.5, IoU above the 0.5 threshold; math: answer
match). Our ``:mc`` poses single-answer questions, so the paper's partial-credit
variant for several correct options does not arise here.

How stages run. Curr-ReFT's public code switches stages with a shell script that waits
for a checkpoint and kills the trainer; here each stage is one GRPO run (the ``grpo``
trainer, its resume and checkpoints) in ``stages/<k>-<format>/``, started from the
previous stage's final checkpoint (a LoRA checkpoint is merged into that stage's base,
as for any chained run), with a fresh optimizer and schedule, as the paper's restarts
have. Global step numbers run on across stages; every stage checkpoint is published
as ``checkpoints/step-<global>`` of this run, so the orchestrator scores it like any
other trainer's.

When a stage ends:

- ``switch: steps`` (default): after its step budget. ``stage_steps`` gives each
  stage's budget (summing to ``max_steps``); empty: ``max_steps`` split evenly, the
  remainder to the last stage.
- ``switch: plateau``: as above, but a stage other than the last also ends early at the
  first step where the mean reward of the last ``plateau_window`` steps is less than
  ``plateau_min_delta`` above the mean of the window before it (and at least
  ``2 x plateau_window`` steps into the stage); its unused budget goes to the next
  stage, so a run always makes ``max_steps`` optimizer steps.

The plateau test is a pure function of the logged rewards (:func:`plateau_step`),
and each stage is an exactly resumable GRPO run, so a run killed mid-stage resumes in
that stage at its last checkpoint and replays the same decisions: it ends with the
same checkpoints (bit-identical on CPU with one thread) as an uninterrupted run.
``train_log.jsonl`` here is the stages' logs on the global step axis with ``stage``
and ``stage_format`` per row; the training plots mark where each stage starts.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.atomic import write_json_atomic, write_text_atomic
from harness.errors import UsageError
from harness.suite import Suite
from harness.task import FORMATS
from trainers.base import CHECKPOINT_INFO, Checkpoint, OnCheckpoint, Trainer, TrainerConfig
from trainers.grpo import GRPOTrainer, GRPOTrainerConfig
from trainers.run_dir import complete_checkpoints, prepare_run, step_dir
from trainers.train_log import LOG_FILE, read_log
from trainers.trl_run import check_model_dir

STAGES_DIR = "stages"
SWITCHES = ("steps", "plateau")


@dataclass
class CurrRLConfig(GRPOTrainerConfig):
    #: the curriculum, easiest first: formats of harness.task (yesno, mc, open)
    stages: tuple[str, ...] = ("yesno", "mc", "open")
    #: optimizer steps per stage (summing to max_steps); empty: max_steps split evenly
    stage_steps: tuple[int, ...] = ()
    #: "steps": a stage ends after its budget; "plateau": also when its reward stops rising
    switch: str = "steps"
    plateau_window: int = 5
    plateau_min_delta: float = 0.01

    def validate(self) -> None:
        super().validate()
        if not self.stages:
            raise UsageError("stages is empty; give formats such as [yesno, mc, open]")
        bad = [s for s in self.stages if s not in FORMATS]
        if bad:
            raise UsageError(f"stages: {', '.join(bad)} not a format; choose from {', '.join(FORMATS)}")
        if tuple(self.formats) != ("open",):
            raise UsageError("curr_rl poses rows by stage (the stages option); leave formats unset")
        if self.switch not in SWITCHES:
            raise UsageError(f"switch must be one of {', '.join(SWITCHES)}, got {self.switch!r}")
        if self.stage_steps:
            if len(self.stage_steps) != len(self.stages):
                raise UsageError(f"stage_steps has {len(self.stage_steps)} values for {len(self.stages)} stages")
            if any(s <= 0 for s in self.stage_steps) or sum(self.stage_steps) != self.max_steps:
                raise UsageError(f"stage_steps {list(self.stage_steps)} must be positive and sum to max_steps "
                                 f"({self.max_steps})")
        elif self.max_steps < len(self.stages):
            raise UsageError(f"max_steps {self.max_steps} is fewer than the {len(self.stages)} stages")
        if self.plateau_window < 1:
            raise UsageError(f"plateau_window must be >= 1, got {self.plateau_window}")

    def budgets(self) -> list[int]:
        if self.stage_steps:
            return list(self.stage_steps)
        even, rest = divmod(self.max_steps, len(self.stages))
        return [even] * (len(self.stages) - 1) + [even + rest]


def plateau_step(rewards: list[tuple[int, float]], window: int, min_delta: float) -> int | None:
    """The first logged step at which the reward has plateaued, or None.

    ``rewards``: (step, mean reward) in step order. At step s the last ``window``
    rewards are compared with the ``window`` before them; a gain under ``min_delta``
    is a plateau."""
    values = [r for _, r in rewards]
    for i in range(2 * window - 1, len(values)):
        recent = sum(values[i - window + 1: i + 1]) / window
        before = sum(values[i - 2 * window + 1: i - window + 1]) / window
        if recent - before < min_delta:
            return rewards[i][0]
    return None


def _rewards(log_rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["reward"])) for r in log_rows
            if isinstance(r.get("reward"), (int, float)) and "step" in r]


class _StageGRPO(GRPOTrainer):
    """One curriculum stage: GRPO that may stop at a reward plateau (saving where it stops)."""

    def __init__(self, window: int | None, min_delta: float) -> None:
        self.window = window
        self.min_delta = min_delta

    def build(self, model: Any, dataset: Any, args: dict[str, Any], ctx: Any) -> Any:
        trl_trainer = super().build(model, dataset, args, ctx)
        if self.window is not None:
            trl_trainer.add_callback(_plateau_callback(Path(args["output_dir"]), self.window, self.min_delta))
        return trl_trainer


def _plateau_callback(out: Path, window: int, min_delta: float):
    from transformers import TrainerCallback

    class PlateauStop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # the log was cut back to the checkpoint resumed from: the same history as then
            self.history = _rewards(read_log(out / LOG_FILE))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not isinstance(logs.get("reward"), (int, float)):
                return
            self.history.append((state.global_step, float(logs["reward"])))
            if plateau_step(self.history, window, min_delta) == state.global_step:
                control.should_save = True
                control.should_training_stop = True

    return PlateauStop()


class CurrRLTrainer(Trainer):
    name = "curr_rl"
    config_class = CurrRLConfig
    presets = {
        "tiny": {},
        # Curr-ReFT Sec. 4: GRPO lr 2e-5, batch 8, format reward with its <think>/<answer> prompt
        "curr-reft": {"learning_rate": 2e-5, "batch_size": 8, "format_prompt": True, "format_weight": 1.0},
    }

    def check(self, suite: Suite | str, config: TrainerConfig) -> Suite:
        from harness.taskspec import make_task
        from trainers.rows import resolve_train_suite
        from trainers.run_dir import check_config

        check_config(self.name, config)
        suite = resolve_train_suite(suite, config.stages)
        for fmt in config.stages:
            make_task(suite.train, fmt)  # a family that cannot pose a format says so now
        return suite

    def _stage_config(self, c: CurrRLConfig, k: int, fmt: str, budget: int, out: Path) -> GRPOTrainerConfig:
        shared = {f.name: getattr(c, f.name) for f in fields(GRPOTrainerConfig)}
        shared.update(formats=(fmt,), max_steps=budget, save_steps=min(c.save_steps, budget),
                      output_dir=str(out / STAGES_DIR / f"{k + 1}-{fmt}"))
        return GRPOTrainerConfig(**shared)

    def train(self, model_dir: str, suite: Suite | str, config: TrainerConfig,
              on_checkpoint: OnCheckpoint | None = None) -> list[Checkpoint]:
        c: CurrRLConfig = config  # type: ignore[assignment]
        suite = self.check(suite, c)
        model_path = check_model_dir(model_dir)
        out = Path(c.output_dir).expanduser().resolve()
        from harness.backends.hf import weights_fingerprint

        prepare_run(out, {"trainer": self.name, "model_fingerprint": weights_fingerprint(model_path),
                          "suite": suite.name, "train_split": suite.train, "config": c.identity()})
        existing = complete_checkpoints(out)
        if existing and existing[-1].step >= c.max_steps:
            return existing

        budgets = c.budgets()
        start_from, offset, carried = str(model_path), 0, 0
        base_cost: dict[str, float] = {}
        stages: list[dict[str, Any]] = []
        for k, fmt in enumerate(c.stages):
            last_stage = k == len(c.stages) - 1
            budget = budgets[k] + carried
            stage_cfg = self._stage_config(c, k, fmt, budget, out)
            window = c.plateau_window if c.switch == "plateau" and not last_stage else None
            inner = _StageGRPO(window, c.plateau_min_delta)
            stage_out = Path(stage_cfg.output_dir)
            stage = {"stage": k + 1, "format": fmt, "start_step": offset, "budget": budget}

            publish = functools.partial(self._publish_stage, out, c, stage, offset, dict(base_cost), stages)

            for ckpt in complete_checkpoints(stage_out):  # published by the stage, not yet here (a kill between)
                if not step_dir(out, offset + ckpt.step).exists():
                    self._notify(publish(ckpt), on_checkpoint)
            done = self._stage_end(stage_out, budget, window, c.plateau_min_delta)
            if done is None:
                inner.train(start_from, suite, stage_cfg,
                            on_checkpoint=lambda ckpt, publish=publish: self._notify(publish(ckpt), on_checkpoint))
                done = self._stage_end(stage_out, budget, window, c.plateau_min_delta)
                if done is None:  # a stage run returns only when finished or stopped at its plateau
                    raise RuntimeError(f"curriculum stage {k + 1} ({fmt}) ended without reaching its last step")
            final = done
            stage.update(steps=final.step, end_step=offset + final.step)
            stages.append(stage)
            self._write_log(out, stages)
            carried = budget - final.step
            offset += final.step
            base_cost = self._add_cost(base_cost, final.cost)
            start_from = final.path
        write_json_atomic(out / "curriculum.json", {"stages": stages})
        self._write_log(out, stages, plot=True)
        return complete_checkpoints(out)

    def _publish_stage(self, out: Path, c: CurrRLConfig, stage: dict[str, Any], offset: int,
                       base_cost: dict[str, float], stages: list[dict[str, Any]], ckpt: Checkpoint) -> Checkpoint:
        published = self._publish(out, c, ckpt, stage, offset, base_cost)
        self._write_log(out, stages + [{**stage, "steps": ckpt.step}])  # the log so far, live
        return published

    @staticmethod
    def _stage_end(stage_out: Path, budget: int, window: int | None, min_delta: float) -> Checkpoint | None:
        """The stage's final checkpoint if the stage is over: at its budget, or at its plateau step."""
        ckpts = complete_checkpoints(stage_out)
        if not ckpts:
            return None
        last = ckpts[-1]
        if last.step >= budget:
            return last
        if window is not None and plateau_step(_rewards(read_log(stage_out / LOG_FILE)), window, min_delta) == last.step:
            return last
        return None

    @staticmethod
    def _add_cost(base: dict[str, float], cost: dict[str, float]) -> dict[str, float]:
        keys = set(base) | set(cost)
        return {k: round(float(base.get(k, 0)) + float(cost.get(k, 0)), 3) for k in keys}

    def _publish(self, out: Path, c: CurrRLConfig, ckpt: Checkpoint, stage: dict[str, Any], offset: int,
                 base_cost: dict[str, float]) -> Checkpoint:
        """``checkpoints/step-<global>``: the stage checkpoint's files hard-linked, renamed into place."""
        step = offset + ckpt.step
        final = step_dir(out, step)
        if final.exists():
            return Checkpoint.from_dir(final)
        tmp = final.parent / f".tmp-{final.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        src = Path(ckpt.path)
        for p in sorted(src.iterdir()):
            if p.is_file() and p.name != CHECKPOINT_INFO:
                try:
                    os.link(p, tmp / p.name)
                except OSError:
                    shutil.copy2(p, tmp / p.name)
        info = json.loads((src / CHECKPOINT_INFO).read_text(encoding="utf-8"))
        info.update(trainer=self.name, step=step, final=step >= c.max_steps, config=c.to_dict(),
                    cost={**self._add_cost(base_cost, ckpt.cost), "optimizer_steps": step},
                    stage={"stage": stage["stage"], "format": stage["format"], "stage_step": ckpt.step,
                           "stage_dir": str(src)})
        write_json_atomic(tmp / CHECKPOINT_INFO, info)
        os.rename(tmp, final)
        return Checkpoint.from_dir(final)

    @staticmethod
    def _notify(ckpt: Checkpoint, on_checkpoint: OnCheckpoint | None) -> None:
        if on_checkpoint is not None:
            on_checkpoint(ckpt)

    def _write_log(self, out: Path, stages: list[dict[str, Any]], plot: bool = False) -> None:
        rows = []
        for st in stages:
            stage_out = out / STAGES_DIR / f"{st['stage']}-{st['format']}"
            for r in read_log(stage_out / LOG_FILE):
                if r.get("step", 0) <= st["steps"]:
                    rows.append({**r, "step": st["start_step"] + r["step"], "stage": st["stage"],
                                 "stage_format": st["format"]})
        write_text_atomic(out / LOG_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        if plot and rows:
            from trainers.plots import plot_training

            plot_training(rows, out / "plots", title=self.name,
                          stages=[(st["start_step"], f"{st['stage']}: {st['format']}") for st in stages])
