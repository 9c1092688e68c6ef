"""What SFT and GRPO share: one TRL run from checks to plots, resumable.

Why TRL: its SFTTrainer/GRPOTrainer already do batching, vision collation,
sampling, group-normalised advantages, clipping, KL to a reference, PEFT
wrapping and (through transformers' Trainer) checkpoints with optimizer,
scheduler and RNG state and exact resume. We add the data (the task's prompts
and targets), the rewards (``Task.reward``), checkpoints the evaluator loads,
the log and the cost accounting. On CPU it ran the tiny Qwen2-VL at the speeds
in MEASURED.md, so nothing home-made was needed.
"""

from __future__ import annotations

import pickle
from abc import abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from safetensors import SafetensorError

from harness.conventions import ModelConventions
from harness.errors import HarnessError, UsageError
from harness.suite import Suite
from harness.validation import adapter_base as harness_adapter_base
from trainers.base import Checkpoint, OnCheckpoint, Trainer, TrainerConfig
from trainers.rows import Row, TrainRows, model_conventions
from trainers.run_dir import (
    complete_checkpoints,
    disk_full_error,
    looks_like_disk_full,
    prepare_run,
    publish,
    resume_point,
)
from trainers.train_log import LOG_FILE, CostMeter, truncate_log

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


def check_common(c: TrainerConfig) -> None:
    """Value checks every trainer shares (types were checked when the config was built)."""
    positive = ("max_steps", "batch_size", "save_steps", "logging_steps", "threads", "lora_r", "lora_alpha",
                "num_processes")
    for key in positive:
        if getattr(c, key) <= 0:
            raise UsageError(f"{key} must be > 0, got {getattr(c, key)}")
    if c.holdout < 0:
        raise UsageError(f"holdout must be >= 0, got {c.holdout}")
    if c.train_samples is not None and c.train_samples <= 0:
        raise UsageError(f"train_samples must be > 0 or null, got {c.train_samples}")
    if c.learning_rate <= 0:
        raise UsageError(f"learning_rate must be > 0, got {c.learning_rate}")
    if not 0 <= c.warmup_ratio < 1:
        raise UsageError(f"warmup_ratio must be in [0, 1), got {c.warmup_ratio}")
    if not 0 <= c.lora_dropout < 1:
        raise UsageError(f"lora_dropout must be in [0, 1), got {c.lora_dropout}")
    if c.dtype not in DTYPES:
        raise UsageError(f"dtype {c.dtype!r} unknown; choose one of {', '.join(DTYPES)}")
    if c.device not in DEVICES:
        raise UsageError(f"device {c.device!r} unknown; choose one of {', '.join(DEVICES)}")
    schedulers = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
    if c.lr_scheduler_type not in schedulers:
        raise UsageError(f"lr_scheduler_type {c.lr_scheduler_type!r} unknown; choose one of {', '.join(schedulers)}")


# what loading a damaged file raises (torch.load, safetensors, json, pickle)
LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError, SafetensorError)


@contextmanager
def loading(path: Path) -> Iterator[None]:
    """Errors while loading a model directory become one line naming it."""
    try:
        yield
    except LOAD_ERRORS as exc:
        raise UsageError(f"cannot load model {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); "
                         "check that it holds config.json, the weights and the processor files") from exc


def check_model_dir(model_dir: str) -> Path:
    """A model directory (config.json) or a PEFT adapter directory whose base is one; a hub
    id (org/name) is its local snapshot, downloaded first when allowed (harness/hub.py)."""
    from harness import hub

    path = Path(model_dir).expanduser()
    if hub.is_hub_id(model_dir):
        path = hub.fetch(str(model_dir))
    if (path / "config.json").is_file():
        return path.resolve()
    if (path / "adapter_config.json").is_file():
        base = adapter_base(path)
        if not (base / "config.json").is_file():
            raise UsageError(f"adapter {model_dir!r} names base model {str(base)!r}, which is not a model directory "
                             "with config.json")
        return path.resolve()
    raise UsageError(f"model {model_dir!r} is not a model directory (no config.json) nor a PEFT adapter directory "
                     "(no adapter_config.json)")


def adapter_base(adapter_dir: Path) -> Path:
    return Path(harness_adapter_base(adapter_dir))


MERGED = "base_merged"


def starting_model(model_path: Path, out: Path) -> Path:
    """The full model to train from. A LoRA checkpoint (e.g. an SFT cold start before GRPO)
    is merged into its base once, into ``<output_dir>/base_merged``, so that this run's
    adapters name a base that already holds the earlier training."""
    if (model_path / "config.json").is_file():
        return model_path
    merged = out / MERGED
    if (merged / "config.json").is_file():
        return merged
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = adapter_base(model_path)
    with loading(model_path):
        net = AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32)
        net = PeftModel.from_pretrained(net, str(model_path)).merge_and_unload()
        has_processor = any((model_path / f).is_file() for f in ("processor_config.json", "tokenizer.json"))
        processor = AutoProcessor.from_pretrained(str(model_path if has_processor else base))
    tmp = out / f".tmp-{MERGED}"
    if tmp.exists():
        shutil.rmtree(tmp)
    net.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(merged)  # atomic: a half-written merge is never trained from
    return merged


@dataclass
class RunContext:
    """What a trainer's row builder and TRL set-up need. ``config`` is the run's config as one
    process trains it: with ``num_processes`` N, its ``batch_size`` is the rows each process
    takes per step (the run's batch_size / N; trainers/launch.py)."""

    config: Any
    suite: Suite
    model_dir: Path
    processor: Any
    conv: ModelConventions
    rows: TrainRows
    meter: CostMeter
    #: per-run values a trainer computes once (e.g. chat-template pieces)
    cache: dict[str, Any] = field(default_factory=dict)


class TRLTrainer(Trainer):
    """A trainer that runs one TRL trainer class over the suite's train split."""

    #: preset name -> option values (documented in each trainer's module)
    presets: dict[str, dict[str, Any]] = {}

    @abstractmethod
    def make_row(self, row: Row, ctx: RunContext) -> dict[str, Any]:
        """One dataset item for TRL (built when TRL reads it)."""

    @abstractmethod
    def build(self, model: Any, dataset: Any, args: dict[str, Any], ctx: RunContext) -> Any:
        """The TRL trainer, given the model, the dataset and the shared TrainingArguments values."""

    def rows_per_step(self, config: Any) -> int:
        return config.batch_size

    def train_indices(self, config: Any) -> list[int] | None:
        """The train-split samples this trainer may use (None: all of them, less the holdout)."""
        return None

    def starting_cost(self, config: Any) -> dict[str, Any]:
        """Cost spent before training that belongs to the method (CostMeter keys, plus extras
        kept as they are), e.g. DC-SFT's difficulty profiling: a fresh run's meter starts
        from it, so every checkpoint's cost includes it; a resumed run restores its meter."""
        return {}

    def identity(self, model_dir: Path, suite: Suite, config: Any) -> dict[str, Any]:
        from harness.backends.hf import weights_fingerprint

        # the weights, not the path: the same model reached through another path (an
        # install elsewhere, a moved directory) resumes the same run
        return {"trainer": self.name, "model_fingerprint": weights_fingerprint(model_dir), "suite": suite.name,
                "train_split": suite.train, "config": config.identity()}

    def train(self, model_dir: str, suite: Suite | str, config: TrainerConfig,
              on_checkpoint: OnCheckpoint | None = None) -> list[Checkpoint]:
        from harness import distributed
        from trainers import launch

        world = distributed.current()
        config = launch.in_world(config, world)
        suite = self.check(suite, config)
        model_path = check_model_dir(model_dir)
        out = Path(config.output_dir).expanduser().resolve()
        if config.num_processes > 1 and world.size == 1:
            # this process checks the run directory, launches the training processes and
            # scores their checkpoints (trainers/launch.py)
            existing, _ = self._prepare_dir(out, model_path, suite, config)
            if existing and existing[-1].step >= config.max_steps:
                return existing
            launch.run_launched(self, model_path, suite, config, out, on_checkpoint)
            return complete_checkpoints(out)

        import torch

        if world.size > 1:  # several processes, all in this call: rank 0 writes, the others wait
            launch.join(world, launch.uses_cpu(config.device))
        existing, resume_dir = launch.on_main(world, lambda: self._prepare_dir(out, model_path, suite, config))
        if existing and existing[-1].step >= config.max_steps:
            return existing  # finished: nothing to load
        meter = CostMeter.from_dict(existing[-1].cost if existing else self.starting_cost(config))

        from harness.compat.torchvision_cpu import ensure_torchvision

        ensure_torchvision()
        from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed

        torch.set_num_threads(config.threads)
        train_from = launch.on_main(world, lambda: starting_model(model_path, out))
        with loading(train_from):
            processor = AutoProcessor.from_pretrained(str(train_from))
        conv = model_conventions(train_from, processor)
        rows = TrainRows(suite, config.formats, config.max_steps * self.rows_per_step(config), config.seed,
                         config.shuffle, config.train_samples, holdout=config.holdout,
                         indices=self.train_indices(config))
        # the TRL trainer is built per process: batch_size / num_processes rows each
        ctx = RunContext(launch.per_process(config), suite, train_from, processor, conv, rows, meter)
        dataset = rows.dataset(lambda row: self.make_row(row, ctx))

        # PEFT initialises adapters from the global RNG: seed before the model exists.
        set_seed(config.seed)
        with loading(train_from):
            model = AutoModelForImageTextToText.from_pretrained(str(train_from), dtype=getattr(torch, config.dtype))
        use_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        if config.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("device cuda: no CUDA device is available; use device=cpu or auto")
        args = dict(
            output_dir=str(out), max_steps=config.max_steps, learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_scheduler_type, warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
            logging_steps=config.logging_steps, save_strategy="steps", save_steps=config.save_steps,
            seed=config.seed, data_seed=config.seed, use_cpu=use_cpu,
            bf16=config.dtype == "bfloat16", fp16=config.dtype == "float16",
            gradient_checkpointing=False, remove_unused_columns=False, report_to=[],
            disable_tqdm=True, dataloader_num_workers=0, shuffle_dataset=False,
        )
        trl_trainer = self.build(model, dataset, args, ctx)

        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from trainers.callbacks import HarnessCallback, NamedProgress

        trl_trainer.remove_callback(PrinterCallback)
        trl_trainer.remove_callback(ProgressCallback)
        if config.progress and world.main:
            trl_trainer.add_callback(NamedProgress(self.name))

        def publish_step(trl_dir: Path, step: int, cost: dict, metrics: dict, final: bool) -> Checkpoint:
            info = {"trainer": self.name, "cost": cost, "metrics": metrics, "final": final,
                    "base_model": str(train_from), "started_from": str(model_path), "suite": suite.name,
                    "config": config.to_dict()}
            return publish(out, trl_dir, step, info)

        if on_checkpoint is None:
            on_checkpoint = launch.scoring_handshake(world)  # launched: the parent scores each checkpoint
        hook_args = (out, self.rows_per_step(config), meter)
        if world.size > 1:
            hook = launch.ranked_callback(world, *hook_args, launch.ranked_publish(world, publish_step),
                                          on_checkpoint, self.counters(trl_trainer))
        else:
            hook = HarnessCallback(*hook_args, publish_step, on_checkpoint, self.counters(trl_trainer))
        trl_trainer.add_callback(hook)
        try:
            trl_trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir else None)
        except LOAD_ERRORS as exc:
            if looks_like_disk_full(exc, out):
                raise disk_full_error(out, exc, complete_checkpoints(out)) from exc
            if resume_dir is None or hook.started:
                raise
            step_eval = existing[-1].path
            before = f"step {existing[-2].step}" if len(existing) > 1 else "the start"
            raise HarnessError(f"cannot resume from {resume_dir} ({type(exc).__name__}: {' '.join(str(exc).split())}); "
                               f"if it is damaged, delete it and {step_eval} to resume from {before}") from exc

        def finish() -> list[Checkpoint]:
            self.after_train(out)
            return complete_checkpoints(out)

        return launch.on_main(world, finish)

    def _prepare_dir(self, out: Path, model_path: Path, suite: Suite,
                     config: Any) -> tuple[list[Checkpoint], Path | None]:
        """Record or check the run's identity; its complete checkpoints and the resume point
        (crash debris moved aside); the log cut back to that point. Nothing loads a model."""
        prepare_run(out, self.identity(model_path, suite, config))
        existing = complete_checkpoints(out)
        if existing and existing[-1].step >= config.max_steps:
            return existing, None
        resume_dir = resume_point(out, existing)
        truncate_log(out / LOG_FILE, existing[-1].step if existing else 0)
        return existing, resume_dir

    def counters(self, trl_trainer: Any):
        """A function returning extra cumulative counts for the cost record, or None."""
        return None

    def after_train(self, out: Path) -> None:
        from trainers.plots import plot_training
        from trainers.train_log import read_log

        rows = read_log(out / LOG_FILE)
        if rows:
            plot_training(rows, out / "plots", title=self.name)


def lora_config(config: TrainerConfig):
    if not config.lora:
        return None
    from peft import LoraConfig

    targets: Any = config.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
