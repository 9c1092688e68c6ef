"""trainers/vision_dedup.py: a batch where every image comes G times (as in TRL's GRPO) gives
the same logits, loss, gradients and greedy tokens with each distinct image encoded once."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from qwen_vl_fixtures import images, tiny_qwen2_5_vl  # noqa: E402

from harness.errors import UsageError  # noqa: E402

G = 4
ATOL = 1e-5


def batch(processor, pictures, repeat=G):
    """Each image's prompt ``repeat`` times in a row, as TRL's RepeatSampler orders a GRPO batch;
    the prompts differ in length, so the batch is padded."""
    texts, imgs = [], []
    for i, img in enumerate(pictures):
        question = "What shape is this?" + " Answer briefly." * i
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        texts += [text] * repeat
        imgs += [img] * repeat
    return dict(processor(text=texts, images=imgs, padding=True, return_tensors="pt"))


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir, torch_mod):
    """The tiny model with LoRA r16 on all linear layers, as the trainer wraps it; B is random
    (init_lora_weights=False), so every adapter has a non-zero gradient to compare."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch_mod.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch_mod.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                        init_lora_weights=False)
    return get_peft_model(model, config)


class VisionRows:
    """Counts the rows (patches) and images the vision tower itself is called on."""

    def __init__(self, model):
        from trainers.vision_dedup import vision_models

        (inner,) = vision_models(model)
        self.rows, self.images = [], []
        self.handle = inner.visual.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.rows.append(int(args[0].shape[0]))
        self.images.append(int(kwargs["grid_thw"].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def loss_and_grads(model, inputs, torch_mod):
    model.zero_grad(set_to_none=True)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    out = model(**inputs, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), out.loss.detach(), grads


def test_same_logits_loss_and_gradients_with_each_image_encoded_once(lora_model, processor, torch_mod):
    from trainers import vision_dedup

    inputs = batch(processor, images())
    rows_per_image = inputs["image_grid_thw"].prod(-1).tolist()
    unique_rows = sum(rows_per_image[::G])
    assert len(rows_per_image) == 3 * G and sum(rows_per_image) == G * unique_rows

    vision_dedup.disable(lora_model)
    with VisionRows(lora_model) as seen:
        logits0, loss0, grads0 = loss_and_grads(lora_model, inputs, torch_mod)
    assert seen.rows == [G * unique_rows]

    patched = vision_dedup.enable(lora_model)
    try:
        assert len(patched) == 1 and vision_dedup.enable(lora_model) == patched  # idempotent
        with VisionRows(lora_model) as seen:
            logits1, loss1, grads1 = loss_and_grads(lora_model, inputs, torch_mod)
        assert seen.rows == [unique_rows] and seen.images == [3]
        assert vision_dedup.stats(lora_model) == {"calls": 1, "images": 3 * G, "encoded": 3}
    finally:
        vision_dedup.disable(lora_model)

    torch_mod.testing.assert_close(logits1, logits0, atol=ATOL, rtol=0)
    torch_mod.testing.assert_close(loss1, loss0, atol=ATOL, rtol=0)
    assert grads1.keys() == grads0.keys()
    visual = [n for n in grads0 if ".visual." in n and "lora_" in n]
    assert len(visual) >= 8  # the vision tower's adapters are among the compared parameters
    for name in grads0:
        assert grads0[name].abs().max() > 0, name  # a zero gradient would compare trivially
        scale = max(1.0, float(grads0[name].abs().max()))
        torch_mod.testing.assert_close(grads1[name], grads0[name], atol=ATOL * scale, rtol=0, msg=name)


def test_greedy_generation_gives_the_same_tokens(lora_model, processor, torch_mod):
    from trainers import vision_dedup

    inputs = batch(processor, images())
    runs = {}
    for dedup in (False, True):
        if dedup:
            vision_dedup.enable(lora_model)
        try:
            with VisionRows(lora_model) as seen, torch_mod.no_grad():
                runs[dedup] = lora_model.generate(**inputs, do_sample=False, max_new_tokens=12)
        finally:
            vision_dedup.disable(lora_model)
        runs[dedup, "images"] = seen.images
    assert torch_mod.equal(runs[True], runs[False])
    assert runs[True].shape[1] == inputs["input_ids"].shape[1] + 12
    # the prefill encodes the images, decoding steps do not
    assert runs[False, "images"] == [3 * G] and runs[True, "images"] == [3]


def test_distinct_images_take_the_original_path(lora_model, processor):
    from trainers import vision_dedup

    inputs = batch(processor, images(), repeat=1)
    vision_dedup.enable(lora_model)
    try:
        with VisionRows(lora_model) as seen:
            lora_model(**inputs)
        assert seen.images == [3]
        assert vision_dedup.stats(lora_model) == {"calls": 1, "images": 3, "encoded": 3}
    finally:
        vision_dedup.disable(lora_model)
    assert "get_image_features" not in vars(vision_dedup.vision_models(lora_model)[0])


def test_qwen2_5_vl_windowed_tower_gives_the_same_logits_and_gradients(processor, torch_mod):
    """Qwen2.5-VL's tower permutes patches into windows (inside each image): the same code holds."""
    from trainers import vision_dedup

    model = tiny_qwen2_5_vl(processor, torch_mod)
    inputs = batch(processor, images())
    logits0, loss0, grads0 = loss_and_grads(model, inputs, torch_mod)
    vision_dedup.enable(model)
    with VisionRows(model) as seen:
        logits1, loss1, grads1 = loss_and_grads(model, inputs, torch_mod)
    assert seen.images == [3]
    torch_mod.testing.assert_close(logits1, logits0, atol=ATOL, rtol=0)
    torch_mod.testing.assert_close(loss1, loss0, atol=ATOL, rtol=0)
    for name in grads0:
        scale = max(1.0, float(grads0[name].abs().max()))
        torch_mod.testing.assert_close(grads1[name], grads0[name], atol=ATOL * scale, rtol=0, msg=name)
    assert any(".visual." in n and grads0[n].abs().max() > 0 for n in grads0)


def test_refuses_models_it_does_not_know(torch_mod):
    import torch.nn as nn

    from trainers import vision_dedup

    class OtherVLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = nn.Linear(2, 2)

        def get_image_features(self, pixel_values, image_grid_thw=None):
            return self.visual(pixel_values)

    with pytest.raises(UsageError, match="supports Qwen2-VL and Qwen2.5-VL only, not OtherVLM"):
        vision_dedup.enable(nn.Sequential(OtherVLM()))
    with pytest.raises(UsageError, match="holds no vision model"):
        vision_dedup.enable(nn.Linear(2, 2))
    assert not vision_dedup.supported(nn.Sequential(OtherVLM()))


def test_grpo_option_is_on_by_default_and_typed():
    from trainers import load_config

    assert load_config("grpo", output_dir="o").dedup_images is True
    assert load_config("curr_rl", output_dir="o").dedup_images is True
    assert load_config("grpo", overrides=["dedup_images=false"], output_dir="o").dedup_images is False
    with pytest.raises(UsageError, match="dedup_images"):
        load_config("grpo", overrides=["dedup_images=maybe"], output_dir="o")
    # a speed switch with the same math: runs and studies made with and without it resume as one
    on = load_config("grpo", output_dir="o")
    off = load_config("grpo", overrides=["dedup_images=false"], output_dir="o")
    assert on.identity() == off.identity() and "dedup_images" not in on.identity()
