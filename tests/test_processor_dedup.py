"""trainers/processor_dedup.py: a processor call where images repeat (as in TRL's GRPO batch)
gives exactly the unpatched tensors while the image processor sees each distinct image once;
trainers/rows.py: a row asked for again is not rebuilt, and the rows kept are bounded."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.errors import UsageError  # noqa: E402
from trainers import processor_dedup  # noqa: E402

G = 4


def load_processor(model_dir: str):
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    import torch
    from transformers import AutoProcessor

    torch.set_num_threads(1)
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "left"
    return proc


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return load_processor(tiny_model_dir)


def pictures():
    """a, b: distinct images of one size (the same grid, different pixels); c: another size.
    Sizes off the 28-pixel grid, so resizing interpolates."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(101, 87), (101, 87), (150, 61)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def text(processor, n_images: int, i: int) -> str:
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": "What is it?" + " Briefly." * i}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)


def unpatched_and_patched(processor, call):
    processor_dedup.disable(processor)
    before = dict(call())
    processor_dedup.enable(processor)
    try:
        after = dict(call())
        counts = processor_dedup.stats(processor)
    finally:
        processor_dedup.disable(processor)
    return before, after, counts


def assert_equal(before: dict, after: dict) -> None:
    import numpy as np
    import torch

    assert sorted(before) == sorted(after)
    assert {"pixel_values", "image_grid_thw", "input_ids"} <= set(before)
    for key in before:
        a, b = before[key], after[key]
        assert type(a) is type(b), key
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), key
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), key
        else:
            assert a == b, key


@pytest.fixture
def seen(monkeypatch):
    """Images the image processor's class preprocess is given, per call (flattened)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    calls: list[list] = []
    for cls in (Qwen2VLImageProcessor, Qwen2VLImageProcessorPil):
        original = cls.preprocess

        def spy(self, images, *args, _original=original, **kwargs):
            calls.append(processor_dedup._flat_pil_images(images))
            return _original(self, images, *args, **kwargs)

        monkeypatch.setattr(cls, "preprocess", spy)
    return calls


def test_repeated_images_give_the_same_tensors_and_are_preprocessed_once(processor, seen):
    a, b, c = pictures()
    # a content-equal copy of a (another object, as two decodes of one file would be)
    order = [a] * G + [b] * G + [c] * G + [a.copy()] * G
    texts = [text(processor, 1, i // G) for i in range(len(order))]
    before, after, counts = unpatched_and_patched(
        processor, lambda: processor(text=texts, images=order, padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert [len(x) for x in seen] == [len(order), 3]  # unpatched: every copy; patched: a, b, c
    assert counts == {"calls": 1, "images": len(order), "processed": 3}
    assert after["image_grid_thw"].shape[0] == len(order)


def test_nested_per_prompt_images(processor, seen):
    a, b, c = pictures()
    nested = [[a], [a], [b, c], [b, c], [c, a], [c, a]]
    texts = [text(processor, len(imgs), i) for i, imgs in enumerate(nested)]
    before, after, counts = unpatched_and_patched(
        processor, lambda: processor(text=texts, images=nested, padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert counts == {"calls": 1, "images": 10, "processed": 3}
    assert len(seen[-1]) == 3


def test_apply_chat_template_over_repeated_conversations(processor, seen):
    """TRL's call: conversational prompts with the images in their content, each G times,
    deep-copied (copies of one prompt share objects, prompts do not)."""
    a, b, c = pictures()

    def conversation(img, i):
        return [{"role": "user", "content": [{"type": "image", "image": img},
                                             {"type": "text", "text": "Name it." + " Now." * i}]}]

    prompts = copy.deepcopy([conversation(img, i) for i, img in enumerate((a, b, c, a.copy())) for _ in range(G)])

    def call():
        return processor.apply_chat_template(conversation=prompts, add_generation_prompt=True, tokenize=True,
                                             return_dict=True)

    before, after, counts = unpatched_and_patched(processor, call)
    assert_equal(before, after)
    assert counts["images"] == 4 * G and counts["processed"] == 3
    assert len(seen[-1]) == 3


def test_pil_backend(tiny_model_dir):
    from transformers import AutoImageProcessor

    proc = load_processor(tiny_model_dir)
    proc.image_processor = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")
    assert type(proc.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    a, b, c = pictures()
    order = [a, a, b, b, c, c]
    texts = [text(proc, 1, i // 2) for i in range(len(order))]
    before, after, counts = unpatched_and_patched(
        proc, lambda: proc(text=texts, images=order, padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert counts["processed"] == 3


def test_same_bytes_other_palette_are_distinct(processor, seen):
    """Two "P" images with equal index bytes but different palettes convert to different RGB."""
    import numpy as np
    from PIL import Image

    idx = np.random.default_rng(1).integers(0, 4, (60, 90), dtype=np.uint8)
    one, two = Image.fromarray(idx, mode="P"), Image.fromarray(idx.copy(), mode="P")
    one.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    two.putpalette([9, 9, 9, 200, 100, 0, 0, 50, 250, 30, 30, 30] + [0] * 756)
    order = [one, one, two, two]
    texts = [text(processor, 1, 0)] * 4
    before, after, counts = unpatched_and_patched(
        processor, lambda: processor(text=texts, images=order, padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert counts["processed"] == 2
    assert not before["pixel_values"][:len(before["pixel_values"]) // 2].equal(
        before["pixel_values"][len(before["pixel_values"]) // 2:])


def test_no_repeats_or_no_pil_images_go_through_unchanged(processor, seen):
    import numpy as np

    a, b, c = pictures()
    texts = [text(processor, 1, i) for i in range(3)]
    before, after, counts = unpatched_and_patched(
        processor, lambda: processor(text=texts, images=[a, b, c], padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert counts == {"calls": 1, "images": 3, "processed": 3}

    arrays = [np.array(a)] * 2  # not PIL: left to the original, which sees both
    texts = [text(processor, 1, 0)] * 2
    before, after, counts = unpatched_and_patched(
        processor, lambda: processor(text=texts, images=arrays, padding=True, return_tensors="pt"))
    assert_equal(before, after)
    assert len(seen[-1] or arrays) == 2


def test_patched_processor_saves_as_before(processor, tmp_path):
    """An image processor saves its instance dict: the patch must not land there."""
    processor_dedup.disable(processor)
    processor.save_pretrained(tmp_path / "plain")
    processor_dedup.enable(processor)
    try:
        processor.save_pretrained(tmp_path / "patched")
        clone = copy.deepcopy(processor)
        assert clone._process_images.__self__ is clone
    finally:
        processor_dedup.disable(processor)
    files = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "patched").iterdir())
    for name in files:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "patched" / name).read_bytes(), name


def test_unsupported_processor_is_refused(processor):
    class Other:
        image_processor = processor.image_processor

    assert processor_dedup.supported(processor)
    assert not processor_dedup.supported(Other())
    with pytest.raises(UsageError, match="dedup_images=false"):
        processor_dedup.enable(Other())


# ---- trainers/rows.py: the row cache ----


class FakeRows:
    def __getitem__(self, i):
        return i


def counting_make(log: list):
    from PIL import Image

    def make(i):
        log.append(i)
        return {"prompt": [{"role": "user", "content": f"q{i}"}], "images": [Image.new("RGB", (4, 4), i)], "row": i}

    return make


def test_row_asked_again_is_not_rebuilt_and_the_cache_is_bounded():
    from datasets import Dataset

    from trainers.rows import _RowTransform

    built: list[int] = []
    transform = _RowTransform(FakeRows(), counting_make(built))
    ds = Dataset.from_dict({"row": list(range(10))}).with_transform(transform)
    # a GRPO batch: each row G times in one fetch (TRL's RepeatSampler, DataLoader __getitems__)
    first = ds.__getitems__([0] * G + [1] * G)
    assert built == [0, 1]
    assert all(item["images"][0] is first[0]["images"][0] for item in first[:G])
    assert first[G]["images"][0] is not first[0]["images"][0]
    # the same rows in the next fetch (num_iterations > 1): still not rebuilt, the same objects
    again = ds.__getitems__([1] * G)
    assert built == [0, 1] and again[0]["images"][0] is first[G]["images"][0]
    # bounded: only the last fetch's rows are kept, so row 0 is built afresh
    ds.__getitems__([2, 3])
    assert len(transform._last) == 2
    assert ds.__getitems__([0])[0]["images"][0] is not first[0]["images"][0]
    assert built == [0, 1, 2, 3, 0]
    assert ds[5]["row"] == 5 and built[-1] == 5
