"""What the GRPO speed-patch tests share (tests/test_vision_dedup.py, tests/test_shared_prefix.py):
three distinct images and a tiny random Qwen2.5-VL (their fixtures ``torch_mod`` and
``processor`` are in conftest.py)."""

from __future__ import annotations


def images():
    """Three distinct images, two of one size (same grid, different pixels) and one of another."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(112, 112), (112, 112), (140, 112)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def tiny_qwen2_5_vl(processor, torch_mod, text_layers: int = 1):
    """A random Qwen2.5-VL on the tiny model's tokenizer: its own rope index and a windowed
    vision tower (patches permuted into windows inside each image)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": text_layers, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": len(processor.tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": 100.0, "mrope_section": [2, 3, 3]}}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
              "window_size": 56, "fullatt_block_indexes": [1]}
    tok = processor.tokenizer
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (("image_token_id", "<|image_pad|>"),
                                                        ("video_token_id", "<|video_pad|>"),
                                                        ("vision_start_token_id", "<|vision_start|>"),
                                                        ("vision_end_token_id", "<|vision_end|>"))}
    torch_mod.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids))
