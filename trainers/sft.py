"""SFT: LoRA (default) or full fine-tuning on the train split's targets, loss on answer tokens only.

Each row is the evaluator's own prompt (``Task.prompt`` rendered by the model's chat
template, exactly as the ``hf`` backend renders it) and, as completion,
``Task.target`` in the row's format (open answer, option letter, yes/no) followed by
the template's end-of-turn token. Rows go to TRL in the prompt-completion form with
the prompt already rendered, so the completion is exactly ``target<|im_end|>`` (the
conversational form would also train the ``\\n`` the template writes after it).

Defaults ("tiny" preset) are what moved the embedded tiny model (MEASURED.md: LoRA
r16 all-linear, lr 5e-4, batch 32). Paper presets:

- ``dc-sft`` (DC-SFT, Sec. 4.2): LoRA r 32 / alpha 64, AdamW lr 1e-5, batch 16,
  cosine schedule with warm-up ratio 0.1.
- ``curr-reft`` (Curr-ReFT, Sec. 4: "1e-6 for baseline SFT experiments", batch 8);
  the paper does not say whether its SFT baseline used LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from trainers.base import TrainerConfig
from trainers.rewards import FORMAT_INSTRUCTION
from trainers.rows import Row, assistant_affixes, images_of, with_instruction
from trainers.trl_run import RunContext, TRLTrainer, check_common, lora_config


@dataclass
class SFTTrainerConfig(TrainerConfig):
    learning_rate: float = 5e-4
    batch_size: int = 32
    #: truncate rows longer than this many tokens (None: never; image tokens sit in the prompt)
    max_length: int | None = None
    #: targets written as <think></think><answer>target</answer>, prompts with the tag instruction
    #: (implies format_prompt): an R1-style cold start that teaches the tags GRPO's format reward asks for
    answer_tags: bool = False

    def validate(self) -> None:
        check_common(self)
        if self.max_length is not None and self.max_length <= 0:
            raise UsageError(f"max_length must be > 0 or null, got {self.max_length}")


class SFTTrainer(TRLTrainer):
    name = "sft"
    config_class = SFTTrainerConfig
    presets = {
        "tiny": {},
        "dc-sft": {"lora": True, "lora_r": 32, "lora_alpha": 64, "learning_rate": 1e-5, "batch_size": 16,
                   "lr_scheduler_type": "cosine", "warmup_ratio": 0.1},
        "curr-reft": {"learning_rate": 1e-6, "batch_size": 8},
    }

    def make_row(self, row: Row, ctx: RunContext) -> dict[str, Any]:
        if "affixes" not in ctx.cache:
            ctx.cache["affixes"] = assistant_affixes(ctx.processor)
        before, after = ctx.cache["affixes"]
        c: SFTTrainerConfig = ctx.config
        prompt = row.task.prompt(row.sample, ctx.conv)
        prompt = with_instruction(prompt, FORMAT_INSTRUCTION if c.format_prompt or c.answer_tags else None)
        text = ctx.processor.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)
        target = self.target(row, ctx)
        if c.answer_tags:
            target = f"<think></think><answer>{target}</answer>"
        return {"prompt": text, "completion": f"{before}{target}{after}", "images": images_of(row.sample)}

    def target(self, row: Row, ctx: RunContext) -> str:
        """The completion trained on: the task's gold target (RS-SFT: an accepted sampled answer)."""
        return row.task.target(row.sample, ctx.conv)

    def build(self, model: Any, dataset: Any, args: dict[str, Any], ctx: RunContext) -> Any:
        from trl import SFTConfig
        from trl import SFTTrainer as TRLSFTTrainer

        c: SFTTrainerConfig = ctx.config
        trl_args = SFTConfig(**args, per_device_train_batch_size=c.batch_size, max_length=c.max_length,
                             completion_only_loss=True, train_sampling_strategy="sequential")
        trainer = TRLSFTTrainer(model=model, args=trl_args, train_dataset=dataset, processing_class=ctx.processor,
                                peft_config=lora_config(c))
        # TRL counts trained tokens (its logged ``num_tokens``) in an attribute that a resume
        # does not restore; carry it in the checkpoint's cost record instead.
        trainer._total_train_tokens = int(ctx.meter.extra.get("train_tokens", 0))
        return trainer

    def counters(self, trl_trainer: Any):
        return lambda: {"train_tokens": int(getattr(trl_trainer, "_total_train_tokens", 0))}
