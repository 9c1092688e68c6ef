"""HFBackend.generate passes a blank GenerationConfig (a speed-up): same effective config, same outputs."""

from __future__ import annotations

import copy

import pytest

from harness.backends.base import SamplingParams
from harness.taskspec import make_task

PARAMS = [SamplingParams(max_new_tokens=6), SamplingParams(max_new_tokens=6, temperature=0.9, top_p=0.8, n=2, seed=5)]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from harness.backends.hf import HFBackend

    return HFBackend(model=tiny_model_dir)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("checkpoint_defaults", [{}, {"do_sample": True, "temperature": 0.7, "top_k": 5, "top_p": 0.8,
                                                      "repetition_penalty": 1.05, "max_length": 50}])
def test_effective_generation_config_is_the_one_without_a_config(backend, params, checkpoint_defaults):
    from transformers import GenerationConfig

    model = backend.model
    saved = copy.deepcopy(model.generation_config)
    try:
        for k, v in checkpoint_defaults.items():  # a checkpoint whose generation_config.json sets sampling defaults
            setattr(model.generation_config, k, v)
        kwargs = backend._generation_kwargs(params)
        without, _ = model._prepare_generation_config(None, **kwargs)
        blank, _ = model._prepare_generation_config(GenerationConfig(), **kwargs)
        assert blank.to_dict() == without.to_dict()
    finally:
        model.generation_config = saved


@pytest.mark.parametrize("params", PARAMS)
def test_outputs_are_those_of_plain_generate(backend, params):
    import torch

    task = make_task("synth_count_id")
    prompts = [task.prompt(s, backend.conventions) for _, s in zip(range(3), task.samples())]
    got = backend.generate(prompts, params)

    proc, tok = backend.processor, backend._tokenizer
    texts = [backend.render(p) for p in prompts]
    inputs = proc(text=texts, images=[r.load() for p in prompts for r in p.images], padding=True, return_tensors="pt")
    torch.manual_seed(params.seed)
    with torch.inference_mode():
        out = backend.model.generate(**inputs, **backend._generation_kwargs(params))
    decoded = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    per = 1 if params.greedy else params.n
    expected = [decoded[i * per:(i + 1) * per] * (params.n if per == 1 else 1) for i in range(len(prompts))]
    assert got == expected


def test_close_frees_the_weights_without_a_full_collection(tiny_model_dir):
    import gc
    import weakref

    from harness.backends.hf import HFBackend

    b = HFBackend(model=tiny_model_dir)
    task = make_task("synth_cls_id")
    b.generate([task.prompt(s, b.conventions) for _, s in zip(range(2), task.samples())],
               SamplingParams(max_new_tokens=3))
    weights = weakref.ref(b.model.get_input_embeddings().weight)
    gc.disable()
    try:
        b.close()
        assert weights() is None and b.model is None
    finally:
        gc.enable()
    b.close()  # twice is harmless
