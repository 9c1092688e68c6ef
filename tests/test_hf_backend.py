"""The ``hf`` backend on the embedded tiny Qwen2-VL (small recipe, built offline)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from harness.backends.base import SamplingParams  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.models.tiny import build_untrained, pretrain  # noqa: E402
from harness.prompt import Prompt  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from tiny_fixtures import COLOURS, QUESTION, SMALL, square  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.tiny_fixtures import COLOURS, QUESTION, SMALL, square  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]



def examples(seed: int):
    rng = random.Random(seed)
    while True:
        c = rng.choice(sorted(COLOURS))
        yield Prompt(text=QUESTION, images=(square(c),)), c


def prompts() -> list[Prompt]:
    ps = [Prompt(text=QUESTION, images=(square(c, side),)) for c, side in zip(COLOURS, (56, 80, 112, 200))]
    ps.append(Prompt(text="Name a colour."))  # text-only, mixed into the same batch
    ps.append(Prompt(text="Which is larger?", images=(square("red"), square("blue", 90))))  # two images
    ps.append(Prompt(text=QUESTION, images=(square("green"),), system="Answer with one word."))
    return ps


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small model, briefly pre-trained so its outputs are not near-ties."""
    d = build_untrained(SMALL, tmp_path_factory.mktemp("hf") / "tiny", [QUESTION, *COLOURS] * 10)
    pretrain(d, examples(0), steps=40, batch_size=8, lr=3e-3, warmup=2, progress=False)
    return d


@pytest.fixture(scope="module")
def backend(model_dir):
    from harness.backends.hf import HFBackend

    return HFBackend(model=str(model_dir))


def test_registered_lazily_without_torch():
    code = (
        "import sys; from harness.registry import BACKENDS; "
        "assert 'hf' in BACKENDS.names(); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


def test_unknown_model_args_raise(model_dir):
    from harness.registry import BACKENDS

    with pytest.raises(UsageError) as err:
        BACKENDS.get("hf")(model=str(model_dir), temperature=0.5, foo=1)
    msg = str(err.value)
    assert "foo" in msg and "temperature" in msg and "max_pixels" in msg and "adapter" in msg
    with pytest.raises(ValueError):
        BACKENDS.get("hf")(model=str(model_dir), dtype="float8")
    with pytest.raises(ValueError):
        BACKENDS.get("hf")(model=str(model_dir), box_space="pixels")


def test_conventions_from_config_and_processor(backend, model_dir):
    from harness.backends.hf import HFBackend

    conv = backend.conventions
    assert conv.family == "qwen2_vl" and conv.box_space == "norm1000"
    assert (conv.min_pixels, conv.max_pixels) == (SMALL.min_pixels, SMALL.max_pixels)
    assert conv.resize_factor == 28
    d = backend.describe()
    assert d["backend"] == "hf" and d["conventions"] == conv.to_dict() and len(d["fingerprint"]) == 64

    # user overrides (strings, as from --model_args) reach conventions and processor
    other = HFBackend(model=str(model_dir), box_space="abs", max_pixels="3200", min_pixels="784")
    assert other.conventions.box_space == "abs"
    assert (other.conventions.min_pixels, other.conventions.max_pixels) == (784, 3200)
    inputs = other.processor(
        text=[other.render(Prompt(text="x", images=(square("red", 400),)))],
        images=[square("red", 400).load()],
        return_tensors="pt",
    )
    h, w = inputs["image_grid_thw"][0, 1:].tolist()
    assert 784 <= h * w * 14 * 14 <= 3200


def test_batched_greedy_equals_one_by_one(backend):
    params = SamplingParams(max_new_tokens=6)
    ps = prompts()
    batched = backend.generate(ps, params)
    single = [backend.generate([p], params)[0] for p in ps]
    assert batched == single
    assert all(len(c) == 1 and isinstance(c[0], str) for c in batched)
    # pre-trained briefly on the squares: it answers with a colour word
    assert batched[0][0].strip() in COLOURS
    # greedy n > 1: n identical completions
    assert backend.generate(ps[:2], SamplingParams(max_new_tokens=4, n=3)) == [[c[0]] * 3 for c in batched[:2]]


def test_sampling_n_and_seed(backend):
    ps = prompts()[:3]
    params = SamplingParams(max_new_tokens=8, temperature=1.5, top_p=1.0, n=4, seed=7)
    a = backend.generate(ps, params)
    assert len(a) == 3 and all(len(c) == 4 for c in a)
    assert backend.generate(ps, params) == a  # reproducible with a seed
    b = backend.generate(ps, SamplingParams(max_new_tokens=8, temperature=1.5, n=4, seed=8))
    assert b != a
    assert len({c for row in a for c in row}) > 1  # samples differ
    # a vanishing temperature samples the greedy answer for every copy and prompt
    greedy = backend.generate(ps, SamplingParams(max_new_tokens=8))
    cold = backend.generate(ps, SamplingParams(max_new_tokens=8, temperature=1e-6, n=2, seed=3))
    assert cold == [[g[0], g[0]] for g in greedy]


def test_fingerprint_is_weights_hash(backend, model_dir):
    import hashlib

    from harness.backends.hf import HFBackend

    h = hashlib.sha256()
    h.update(b"base/model.safetensors\0")
    h.update((model_dir / "model.safetensors").read_bytes())
    assert backend.fingerprint() == h.hexdigest()
    assert HFBackend(model=str(model_dir)).fingerprint() == backend.fingerprint()


def _save_lora(model_dir: Path, out: Path, init_lora_weights) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=init_lora_weights)
    peft_model = get_peft_model(base, cfg)
    if init_lora_weights is False:  # make the update large enough to change greedy answers
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.mul_(50.0)
    peft_model.save_pretrained(out)
    return out


def test_peft_adapter_dir(backend, model_dir, tmp_path):
    import json

    from harness.backends.hf import HFBackend

    params = SamplingParams(max_new_tokens=6)
    ps = prompts()
    base_out = backend.generate(ps, params)

    changed = _save_lora(model_dir, tmp_path / "lora", init_lora_weights=False)
    assert json.loads((changed / "adapter_config.json").read_text())["base_model_name_or_path"] == str(model_dir)
    with_lora = HFBackend(model=str(changed))
    assert with_lora.model_path == str(model_dir) and with_lora.adapters == [str(changed)]
    assert with_lora.generate(ps, params) != base_out
    assert with_lora.fingerprint() != backend.fingerprint()
    assert with_lora.conventions == backend.conventions

    # identity adapter (LoRA B = 0): same outputs, but still a different fingerprint
    identity = _save_lora(model_dir, tmp_path / "zero", init_lora_weights=True)
    same = HFBackend(model=str(model_dir), adapter=str(identity))
    assert same.generate(ps, params) == base_out
    assert same.fingerprint() not in (backend.fingerprint(), with_lora.fingerprint())

    with pytest.raises(ValueError):
        HFBackend(model=str(model_dir), adapter=str(model_dir))  # not an adapter dir


def test_missing_model_is_a_clear_error(tmp_path):
    from harness.backends.hf import HFBackend
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="nowhere: no such directory"):
        HFBackend(model=str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="not in the local Hugging Face cache and downloads are off"):
        HFBackend(model="some-org/some-model-not-in-the-cache")  # a hub id; the tests run with HF_HUB_OFFLINE=1
