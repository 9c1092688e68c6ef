"""trainers/shared_prefix.py: a GRPO batch (each prompt G times, each copy with its own
completion) gives the same per-token log-probs, entropies and gradients as TRL's method
with each distinct prompt run through the model once."""

from __future__ import annotations

import os
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from qwen_vl_fixtures import images, tiny_qwen2_5_vl  # noqa: E402

G = 4
ATOL = 2e-5


def grpo_batch(processor, pictures, torch_mod, repeat=G, vary_text=True):
    """What TRL's GRPO hands the log-prob method: prompts left-padded, each prompt ``repeat``
    times in a row, followed by a right-padded completion of a different length per row
    (one row ends early, as after an EOS); plus the processor's image fields."""
    texts, imgs = [], []
    for i, img in enumerate(pictures):
        question = "What shape is this?" + " Answer briefly." * (i if vary_text else 0)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        texts += [text] * repeat
        imgs += [img] * repeat
    prompt = processor(text=texts, images=imgs, padding=True, return_tensors="pt")
    n, c = len(texts), 6
    gen = torch_mod.Generator().manual_seed(1)
    completion = torch_mod.randint(10, 500, (n, c), generator=gen)  # the tiny vocabulary has 583 tokens
    lengths = torch_mod.tensor([c - (r % 4) for r in range(n)])
    mask = (torch_mod.arange(c)[None, :] < lengths[:, None]).long()
    completion = completion.masked_fill(mask == 0, processor.tokenizer.pad_token_id)
    mm = prompt["mm_token_type_ids"]
    return {"input_ids": torch_mod.cat([prompt["input_ids"], completion], 1),
            "attention_mask": torch_mod.cat([prompt["attention_mask"], mask], 1),
            "logits_to_keep": c, "pixel_values": prompt["pixel_values"], "image_grid_thw": prompt["image_grid_thw"],
            "num_images": [1] * n, "mm_token_type_ids": torch_mod.cat([mm, torch_mod.zeros_like(completion)], 1)}


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir, torch_mod):
    """The tiny model with TRL's fused log-prob head and LoRA r16 on all linear layers, as
    TRL's GRPO trainer holds it; B is random, so every adapter has a gradient to compare."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    torch_mod.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch_mod.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                        init_lora_weights=False)
    return get_peft_model(model, config)


def fake_trainer(**args):
    """What the method reads of a TRL GRPO trainer: the accelerator's autocast and process
    count, the args, TRL's own method (the fallback)."""
    import contextlib

    from trl import GRPOTrainer

    class Trainer:
        _get_per_token_logps_and_entropies = GRPOTrainer._get_per_token_logps_and_entropies

    trainer = Trainer()
    trainer.accelerator = SimpleNamespace(autocast=contextlib.nullcontext, num_processes=1, is_main_process=True)
    trainer.args = SimpleNamespace(gradient_checkpointing=False, **args)
    return trainer


def logps_and_grads(trainer, model, inputs, torch_mod):
    model.zero_grad(set_to_none=True)
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(model, compute_entropy=True, **inputs)
    mask = inputs["attention_mask"][:, -inputs["logits_to_keep"]:]
    # a loss that weighs every token differently, so a row mix-up would show in the gradients
    weights = torch_mod.linspace(0.5, 1.5, logps.numel()).view_as(logps)
    ((logps * weights * mask).sum() + (entropies * mask).sum() * 0.1).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return logps.detach() * mask, entropies.detach() * mask, grads


def compare(model, inputs, torch_mod):
    from trainers import shared_prefix

    logps0, ent0, grads0 = logps_and_grads(fake_trainer(), model, inputs, torch_mod)
    trainer = fake_trainer()
    shared_prefix.enable(trainer)
    logps1, ent1, grads1 = logps_and_grads(trainer, model, inputs, torch_mod)
    torch_mod.testing.assert_close(logps1, logps0, atol=ATOL, rtol=0)
    torch_mod.testing.assert_close(ent1, ent0, atol=ATOL, rtol=0)
    assert grads1.keys() == grads0.keys()
    for name in grads0:
        assert grads0[name].abs().max() > 0, name  # a zero gradient would compare trivially
        scale = max(1.0, float(grads0[name].abs().max()))
        torch_mod.testing.assert_close(grads1[name], grads0[name], atol=ATOL * scale, rtol=1e-4, msg=name)
    return shared_prefix.stats(trainer), grads0


def test_same_logps_entropies_and_gradients_with_each_prompt_run_once(lora_model, processor, torch_mod):
    inputs = grpo_batch(processor, images(), torch_mod)
    stats, grads = compare(lora_model, inputs, torch_mod)
    assert stats == {"calls": 1, "shared": 1, "rows": 3 * G, "prefix_rows": 3}
    assert sum(".visual." in n and "lora_" in n for n in grads) >= 8  # vision adapters are compared too


def test_distinct_prompts_take_the_original_path(lora_model, processor, torch_mod):
    from trainers import shared_prefix

    inputs = grpo_batch(processor, images(), torch_mod, repeat=1)
    trainer = fake_trainer()
    shared_prefix.enable(trainer)
    trainer._get_per_token_logps_and_entropies(lora_model, **inputs)
    assert shared_prefix.stats(trainer) == {"calls": 1, "shared": 0, "rows": 3, "prefix_rows": 0}


def test_same_prompt_with_another_image_is_not_shared(lora_model, processor, torch_mod):
    """Rows with equal tokens (same question, same grid) but different pixels are different prompts."""
    import numpy as np
    from PIL import Image

    a, _, c = images()
    other = Image.fromarray(255 - np.asarray(a))
    inputs = grpo_batch(processor, [a, other, c], torch_mod, repeat=2, vary_text=False)
    cut = inputs["input_ids"].shape[1] - inputs["logits_to_keep"]
    assert torch_mod.equal(inputs["input_ids"][0, :cut], inputs["input_ids"][2, :cut])  # only the pixels differ
    stats, _ = compare(lora_model, inputs, torch_mod)
    assert stats == {"calls": 1, "shared": 1, "rows": 6, "prefix_rows": 3}


@pytest.mark.slow
def test_a_grpo_run_logs_the_same_steps_with_the_speed_switches_off(tiny_model_dir, tmp_path, no_git, monkeypatch):
    """Four seeded GRPO steps (format prompt, so completions end at different lengths; beta > 0,
    so the reference log-probs go through the method too): the same rewards, tokens and
    losses whether prompts are shared and images deduplicated or not."""
    from trainers import get_trainer, load_config, shared_prefix
    from trainers.train_log import read_log

    shared = []
    real = shared_prefix._shared_forward
    monkeypatch.setattr(shared_prefix, "_shared_forward", lambda *a: shared.append(1) or real(*a))
    logs = {}
    for name, switches in (("default", ["grpo.dedup_images=false", "grpo.share_prompts=false"]), ("fast", [])):
        sets = ["max_steps=4", "save_steps=4", "grpo.batch_size=4", "grpo.format_prompt=true", "grpo.beta=0.04",
                "progress=false", *switches]
        config = load_config("grpo", overrides=sets, output_dir=str(tmp_path / name))
        get_trainer("grpo").train(tiny_model_dir, "synth_cls", config)
        logs[name] = read_log(tmp_path / name / "train_log.jsonl")
    assert len(shared) >= 8  # per step: the reference log-probs and the training forward
    assert len(logs["default"]) == len(logs["fast"]) == 4
    for a, b in zip(logs["default"], logs["fast"]):
        for key in ("reward", "rewards/task/mean", "rewards/format/mean", "generated_tokens",
                    "completions/mean_length", "completions/max_length"):
            assert a[key] == b[key], key
        for key in ("loss", "grad_norm", "entropy", "kl"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key


def test_qwen2_5_vl_gives_the_same_logps_and_gradients(processor, torch_mod):
    """Qwen2.5-VL: its own rope index (and windowed vision tower); full fine-tuning here."""
    from trl.trainer.utils import add_fused_lm_head

    model = tiny_qwen2_5_vl(processor, torch_mod, text_layers=2)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    stats, grads = compare(model, grpo_batch(processor, images(), torch_mod), torch_mod)
    assert stats["shared"] == 1 and stats["prefix_rows"] == 3
    assert any(".visual." in n for n in grads)


def test_grpo_option_is_on_by_default_and_outside_the_run_identity():
    from harness.errors import UsageError
    from trainers import load_config

    assert load_config("grpo", output_dir="o").share_prompts is True
    assert load_config("curr_rl", output_dir="o").share_prompts is True
    with pytest.raises(UsageError, match="share_prompts"):
        load_config("grpo", overrides=["share_prompts=maybe"], output_dir="o")
    on = load_config("grpo", output_dir="o")
    off = load_config("grpo", overrides=["share_prompts=false"], output_dir="o")
    assert on.identity() == off.identity() and "share_prompts" not in on.identity()
