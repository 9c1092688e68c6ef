"""The embedded tiny Qwen2-VL: offline build, determinism, plain-transformers loading,
pre-training and the build cache."""

from __future__ import annotations

import hashlib
import math
import os
import random
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from harness.models import tiny  # noqa: E402
from harness.models.tiny import TinyRecipe, build_untrained, pretrain, read_info, resolve_tiny  # noqa: E402
from harness.prompt import Prompt  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from tiny_fixtures import COLOURS, QUESTION, SMALL, square  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.tiny_fixtures import COLOURS, QUESTION, SMALL, square  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]



class Squares:
    """TinyData: coloured squares, "What colour is the square?" -> colour."""

    def __init__(self, version: str = "squares-1", side: int = 56) -> None:
        self.version = version
        self.side = side

    def corpus(self):
        return [QUESTION, *COLOURS] * 10

    def examples(self, seed: int):
        rng = random.Random(seed)
        names = sorted(COLOURS)
        while True:
            c = rng.choice(names)
            yield Prompt(text=QUESTION, images=(square(c, self.side),)), c


def weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    return build_untrained(SMALL, tmp_path_factory.mktemp("tiny") / "m", Squares().corpus())


# --------------------------------------------------------------------- tests
def test_recipe_key_and_rope_split():
    assert TinyRecipe().key("v1") == TinyRecipe().key("v1")
    assert len(TinyRecipe().key()) == 12
    assert TinyRecipe().key("v1") != TinyRecipe().key("v2")
    assert TinyRecipe().key() != TinyRecipe(seed=1).key()
    assert TinyRecipe().key() != TinyRecipe(steps=7).key()
    for r in (TinyRecipe(), SMALL):
        assert sum(r.mrope_section) == r.head_dim // 2
    d = TinyRecipe()
    assert (d.head_dim, d.mrope_section, d.image_tokens, d.image_pixels) == (48, [6, 9, 9], 16, 112 * 112)
    with pytest.raises(ValueError):
        TinyRecipe(image_side=100)


def test_every_square_image_maps_to_image_side():
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    for r in (TinyRecipe(), SMALL):
        side, f = r.image_side, r.resize_factor
        bad = [s for s in range(4, 2000) if smart_resize(s, s, f, r.min_pixels, r.max_pixels) != (side, side)]
        assert bad == [], (side, bad[:10])


def test_build_is_deterministic(small_dir, tmp_path):
    again = build_untrained(SMALL, tmp_path / "again", Squares().corpus())
    assert weights_digest(again) == weights_digest(small_dir)
    assert (again / "tokenizer.json").read_text() == (small_dir / "tokenizer.json").read_text()
    other = build_untrained(SMALL.with_(seed=1), tmp_path / "other", Squares().corpus())
    assert weights_digest(other) != weights_digest(small_dir)
    info = read_info(small_dir)
    assert info["pretrained"] is False and info["recipe"] == SMALL.to_dict()


def test_saved_dir_loads_in_plain_transformers(small_dir):
    from harness.compat.torchvision_cpu import ensure_torchvision

    assert ensure_torchvision()
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(small_dir)
    model = AutoModelForImageTextToText.from_pretrained(small_dir)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert model.config.model_type == "qwen2_vl"
    tok = processor.tokenizer
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    for t in tiny.SPECIAL_TOKENS:  # every special token is one token
        assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)]
    cfg = model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.text_config.vocab_size == len(tok)
    assert sum(cfg.text_config.rope_parameters["mrope_section"]) == SMALL.head_dim // 2

    prompt = Prompt(text=QUESTION, images=(square("red"),))
    text = processor.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = Prompt(text=QUESTION, images=(square("red"),), system="Be brief.")
    assert processor.apply_chat_template(with_system.messages(), add_generation_prompt=True, tokenize=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    # any square image becomes exactly image_tokens placeholders
    for side in (56, 150, 300, 17):
        inputs = processor(text=[text], images=[square("red", side).load()], return_tensors="pt")
        assert int((inputs["input_ids"] == cfg.image_token_id).sum()) == SMALL.image_tokens
        assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 3


def test_pretrain_learns_and_is_deterministic(small_dir, tmp_path):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(small_dir, a)
    shutil.copytree(small_dir, b)
    kw = dict(steps=25, batch_size=8, lr=3e-3, warmup=3, seed=0, progress=False)
    sa = pretrain(a, Squares().examples(0), **kw)
    pretrain(b, Squares().examples(0), **kw)
    assert sa["steps"] == 25 and sa["steps_per_s"] > 0
    # the answer is one of four colours: from ~ln(vocab) to well below
    assert sa["final_loss"] < 0.5 * sa["first_loss"], sa
    assert weights_digest(a) == weights_digest(b)
    assert weights_digest(a) != weights_digest(small_dir)
    assert read_info(a)["pretrained"] is True and read_info(a)["pretrain"]["final_loss"] == sa["final_loss"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left
    # micro-batching only changes the padding, not the objective
    c = tmp_path / "c"
    shutil.copytree(small_dir, c)
    sc = pretrain(c, Squares().examples(0), **{**kw, "steps": 1}, micro_batches=1)
    assert sa["micro_batches"] == 4 and sc["first_loss"] == pytest.approx(sa["first_loss"], rel=1e-5)


def test_loss_per_example_weighting(small_dir):
    """power 1: mean per row; power 0.5: sum over sqrt(length); rows with no answer count 0."""
    import torch

    from harness.models.tiny import _per_example_loss

    class Fixed(torch.nn.Module):  # logits that give every label token loss ln(4)
        def forward(self, input_ids, **_):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 4)})()

    ids = torch.zeros(3, 6, dtype=torch.long)
    labels = torch.full((3, 6), -100)
    labels[0, 5:] = 1  # 1 answer token
    labels[1, 2:] = 2  # 4 answer tokens
    inputs = {"input_ids": ids, "labels": labels}
    ln4 = math.log(4)
    assert float(_per_example_loss(Fixed(), inputs, 1.0)) == pytest.approx(2 * ln4)
    assert float(_per_example_loss(Fixed(), inputs, 0.5)) == pytest.approx(ln4 + 4 * ln4 / 2)
    with pytest.raises(ValueError, match="loss_per"):
        TinyRecipe(loss_per="mean")


def test_labels_cover_answer_tokens_only(small_dir):
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(small_dir)
    batch = [(Prompt(text=QUESTION, images=(square("red"),)), "red"), (Prompt(text="Name a colour."), "yellow")]
    inputs = tiny.collate(processor, batch)
    tok = processor.tokenizer
    for row, (_, target) in enumerate(batch):
        labels = inputs["labels"][row]
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept) == target + "<|im_end|>"
        assert inputs["input_ids"][row, -len(kept) :].tolist() == kept  # left padding: answer at the end


def test_resolve_tiny_builds_once_and_caches(tmp_path, monkeypatch):
    data = Squares()
    path = resolve_tiny(data, recipe=SMALL, steps=2, cache_dir=tmp_path, progress=False)
    assert path.parent == tmp_path and path.name == tiny.tiny_name(data, SMALL, steps=2)
    info = read_info(path)
    assert info["pretrained"] is True and info["data_version"] == data.version and info["pretrain"]["steps"] == 2

    def boom(*a, **k):
        raise AssertionError("must not rebuild a cached model")

    monkeypatch.setattr(tiny, "build_untrained", boom)
    assert resolve_tiny(data, recipe=SMALL, steps=2, cache_dir=tmp_path, progress=False) == path
    # another data version or step count is another model
    assert tiny.tiny_name(Squares("squares-2"), SMALL, 2) != path.name
    assert tiny.tiny_name(data, SMALL, 3) != path.name
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "hc"))
    assert tiny.cache_root() == tmp_path / "hc" / "models"


def test_resolve_tiny_concurrent_processes_build_once(tmp_path):
    code = f"""
import sys, torch
torch.set_num_threads(1)
sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]
from test_tiny_model import SMALL, Squares
from harness.models.tiny import resolve_tiny
print(resolve_tiny(Squares(), recipe=SMALL, steps=2, cache_dir={str(tmp_path)!r}, progress=False))
"""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    builds = sum(o[1].count("building the embedded tiny model") for o in outs)
    assert builds == 1, outs
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [Path(paths.pop()).name]
