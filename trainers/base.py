"""The trainer plug-in contract, and how an orchestrator drives a trainer.

A trainer turns (base model, suite, config) into checkpoints. It reads the suite's
train split through the task's own prompts and targets (``Task.prompt``,
``Task.target``) and uses the task's scorer as its reward (``Task.reward``), so a
metric and its reward can never drift apart. Every checkpoint is a directory that
``harness eval --model <dir>`` loads like any other model.

Driving a trainer (what ``harness train-and-eval`` does)::

    from trainers import get_trainer, load_config

    trainer = get_trainer("grpo")                           # UnknownName if not registered
    config = load_config("grpo", "study.yaml", ["max_steps=50", "grpo.beta=0.04"],
                         output_dir="study/grpo")           # UsageError naming file/key
    trainer.check(suite="synth_cls", config=config)         # cheap: before any model loads
    done = trainer.existing_checkpoints(config.output_dir)  # finished ones: score them if not yet
    ckpts = trainer.train(model_dir, "synth_cls", config,
                          on_checkpoint=lambda c: evaluate(c.path))

``train`` blocks until ``config.max_steps``; ``on_checkpoint(ckpt)`` is called in
the training process right after each new checkpoint is complete on disk (training
waits while it runs, and its time is not counted as training time, so the callback
may score the checkpoint at once). It returns every complete checkpoint of the run,
oldest first, including those that existed before the call. ``on_checkpoint`` is
not called again for checkpoints of an earlier, interrupted call: an orchestrator
compares ``existing_checkpoints`` with what it has scored (an exception raised by
the callback stops training, but the checkpoint it was given stays complete).

Rerunning the same call after a crash (even SIGKILL) resumes from the last complete
checkpoint with its optimizer, scheduler and RNG state; data order is a function of
(seed, step), so the resumed run ends with the same weights as an uninterrupted one
(bit-identical on CPU with one thread: ``tests/test_trainers_resume.py``). A run that
already reached ``max_steps`` returns its checkpoints without loading a model. A
different config in the same ``output_dir`` is refused (``UsageError``) rather than
mixed in. Errors a user can fix (unknown trainer, suite or option, a wrong type, a
suite without a train split, a damaged model or checkpoint, a full disk) are
``harness.errors.HarnessError`` subclasses with a one-line message saying what to do.

With ``config.num_processes`` N > 1, ``train`` runs the training in N data-parallel
processes under accelerate's launcher and still calls ``on_checkpoint`` here, in the calling
process, while they wait; under ``accelerate launch`` every process calls ``train`` and
``on_checkpoint`` (trainers/launch.py, docs/multiprocess.md).

``model_dir`` is a model directory or a LoRA checkpoint of an earlier run (e.g. an
SFT cold start before GRPO); the latter is merged once into
``<output_dir>/base_merged``, which this run's adapters then name as their base.

Layout of ``output_dir``::

    trainer.json                 trainer name, base model, suite, config (the run's identity)
    train_log.jsonl              one line per logged step (see trainers/train_log.py)
    checkpoints/step-000050/     eval-ready: adapter (LoRA) or full model + processor,
                                 and harness_checkpoint.json (step, cost, last metrics)
    checkpoint-50/               TRL's resume state (optimizer, scheduler, RNG, trainer state)
    plots/                       PNGs of loss and rewards against step (trainers/plots.py)
    incomplete/checkpoint-M/     a save torn by a crash, moved aside (never resumed from)
    base_merged/                 only when training from a LoRA checkpoint (see above)

``checkpoints/step-N`` appears by an atomic rename after ``checkpoint-N`` is fully
written, so its existence is the completeness marker of both.

Implementations register in ``harness.registry.TRAINERS`` (built-ins, in
``trainers/__init__.py``) or through the ``harness.trainers`` entry-point group
(third parties); the registered object is the :class:`Trainer` subclass.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import UsageError
from harness.suite import Suite

#: written into every eval-ready checkpoint directory
CHECKPOINT_INFO = "harness_checkpoint.json"


@dataclass
class TrainerConfig:
    """Options every trainer shares; a trainer extends it with its own dataclass.

    Defaults are what measurably works on the embedded tiny model (see MEASURED.md);
    each trainer's ``PRESETS`` hold the papers' settings (``preset: dc-sft`` etc.).
    """

    #: where checkpoints, the training log and plots go; required
    output_dir: str = ""
    #: named group of defaults from the trainer's PRESETS ("tiny" = these defaults);
    #: keys set in a file or on the command line win over the preset
    preset: str = "tiny"
    seed: int = 0
    #: optimizer steps
    max_steps: int = 100
    learning_rate: float = 5e-4
    #: training prompts per optimizer step (SFT: examples; GRPO: prompts, each sampled G times)
    batch_size: int = 8
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: a checkpoint every save_steps optimizer steps, and always one at max_steps
    save_steps: int = 50
    logging_steps: int = 1
    #: rows in a seeded random order over the whole split (False: its first rows, in its own order)
    shuffle: bool = True
    #: train on a fixed pool of this many samples of the split, cycled (few-shot); null: the whole split
    train_samples: int | None = None
    #: the train split's first N samples are never trained on: ``harness study`` scores them as
    #: the ID validation split that picks each method's checkpoint (0: train on all of it)
    holdout: int = 0
    #: how the train split is posed: any of open, mc, yesno (rows cycle through them)
    formats: tuple[str, ...] = ("open",)
    #: append the <think>/<answer> instruction (trainers/rewards.py) to every prompt
    format_prompt: bool = False
    #: LoRA (True) or full fine-tuning (False)
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    #: PEFT target_modules: "all-linear" or a comma-separated list of module names
    lora_target_modules: str = "all-linear"
    #: "float32", "bfloat16" or "float16" (weights and compute)
    dtype: str = "float32"
    #: "auto" (cuda when available), "cpu" or "cuda"
    device: str = "auto"
    #: torch CPU threads (1 is fastest on the 2-core machines measured)
    threads: int = 1
    #: training processes (data parallel through accelerate, trainers/launch.py): each takes
    #: batch_size / num_processes rows per step, so the global batch stays batch_size
    num_processes: int = 1
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        # tuples as lists: what a JSON round trip gives back, so a recorded identity compares equal
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def identity(self) -> dict[str, Any]:
        """What decides the weights: a resumed run must match all of it. ``num_processes`` does
        (GRPO samples other completions when the batch is split), but is left out at 1 so that
        runs recorded before it existed still resume."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("output_dir", "progress", "save_steps",
                                                                       "logging_steps", "threads")}
        if out.get("num_processes") == 1:
            del out["num_processes"]
        return out


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: ``path`` loads in ``harness eval --model <path>``.

    ``cost``: ``wall_time_s`` (training time up to this step, summed over resumed
    segments, without work redone after a crash), ``generated_tokens`` (sampled
    completion tokens, 0 for SFT), ``optimizer_steps``, ``examples`` (training
    rows consumed; GRPO: prompts). ``metrics``: the last logged training metrics.
    """

    path: str
    step: int
    trainer: str = ""
    cost: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dir(cls, path: str | Path) -> Checkpoint:
        info_path = Path(path) / CHECKPOINT_INFO
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            return cls(path=str(path), step=int(info["step"]), trainer=info.get("trainer", ""),
                       cost=dict(info.get("cost", {})), metrics=dict(info.get("metrics", {})),
                       final=bool(info.get("final", False)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"checkpoint {path} is corrupt ({info_path.name}: {exc}); delete that directory and rerun "
                             "to redo it from the previous checkpoint") from None


OnCheckpoint = Callable[[Checkpoint], None]


class Trainer(ABC):
    name: str = ""
    config_class: type[TrainerConfig] = TrainerConfig

    def check(self, suite: Suite | str, config: TrainerConfig) -> Suite:
        """Validate the suite and config without loading a model; returns the suite.

        Raises ``UnknownName`` / ``UsageError`` with a message naming what to fix.
        """
        from trainers.launch import check_processes
        from trainers.rows import resolve_train_suite
        from trainers.run_dir import check_config

        check_config(self.name, config)
        check_processes(self, config)
        return resolve_train_suite(suite, config.formats)

    @abstractmethod
    def train(self, model_dir: str, suite: Suite | str, config: TrainerConfig,
              on_checkpoint: OnCheckpoint | None = None) -> list[Checkpoint]:
        """Train on ``suite.train`` from ``model_dir`` (a model directory); see the module docstring."""

    @staticmethod
    def existing_checkpoints(output_dir: str | Path) -> list[Checkpoint]:
        """Complete checkpoints already in ``output_dir``, oldest first (none for a new run)."""
        from trainers.run_dir import complete_checkpoints

        return complete_checkpoints(Path(output_dir))
