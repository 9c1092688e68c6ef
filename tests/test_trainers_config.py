"""Trainer configs: files, overrides, presets, registration and the checks that run before a model loads."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

import pytest

from harness.errors import UnknownName, UsageError
from harness.registry import TRAINERS
from harness.suite import Suite
from trainers import GRPOTrainerConfig, SFTTrainerConfig, build_config, get_trainer, load_config

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_tiny_recipe():
    g = build_config("grpo", output_dir="x")
    assert isinstance(g, GRPOTrainerConfig)
    assert (g.learning_rate, g.num_generations, g.batch_size, g.temperature, g.beta, g.loss_type) == (
        5e-4, 4, 8, 1.0, 0.0, "dapo")
    assert (g.format_weight, g.format_prompt, g.lora, g.preset) == (0.0, False, True, "tiny")
    s = build_config("sft", output_dir="x")
    assert isinstance(s, SFTTrainerConfig) and s.learning_rate == 5e-4 and s.batch_size == 32


def test_file_sections_overrides_and_precedence(tmp_path):
    cfg = write(tmp_path / "study.yaml", """
max_steps: 200
seed: 3
learning_rate: 1e-4        # YAML reads this as a string: still a float
sft:
  learning_rate: 2.0e-5
grpo:
  beta: 0.04
  formats: [open, yesno]
""")
    sft = load_config("sft", cfg, output_dir="o")
    grpo = load_config("grpo", cfg, ["max_steps=20", "grpo.temperature=0.7", "sft.max_steps=7"], output_dir="o")
    assert (sft.max_steps, sft.seed, sft.learning_rate) == (200, 3, 2e-5)  # section beats top level
    assert (grpo.max_steps, grpo.learning_rate, grpo.beta, grpo.temperature) == (20, 1e-4, 0.04, 0.7)
    assert grpo.formats == ("open", "yesno")
    assert load_config("sft", cfg, ["max_steps=20", "sft.max_steps=7"], output_dir="o").max_steps == 7
    # keyword values (the orchestrator's) win over everything
    assert load_config("grpo", cfg, ["max_steps=20"], output_dir="o", max_steps=5).max_steps == 5


def test_json_file_and_cli_value_parsing(tmp_path):
    cfg = write(tmp_path / "c.json", json.dumps({"grpo": {"lora": False, "epsilon_high": 0.28}}))
    c = load_config("grpo", cfg, ["format_prompt=yes", "max_completion_length=null", "formats=mc,yesno"],
                    output_dir="o")
    assert (c.lora, c.epsilon_high, c.format_prompt, c.max_completion_length) == (False, 0.28, True, None)
    assert c.formats == ("mc", "yesno")


def test_presets_fill_in_and_explicit_keys_win():
    dc = build_config("grpo", overrides=["grpo.preset=dc-sft"], output_dir="o")
    assert (dc.lora_r, dc.lora_alpha, dc.learning_rate, dc.num_generations, dc.temperature, dc.beta) == (
        32, 64, 1e-5, 8, 0.9, 0.04)
    mixed = build_config("grpo", {"grpo": {"preset": "dc-sft", "beta": 0.0}}, output_dir="o")
    assert (mixed.beta, mixed.num_generations) == (0.0, 8)
    vrft = build_config("grpo", {"preset": "visual-rft"}, output_dir="o")
    assert vrft.format_prompt and vrft.format_weight == 1.0
    with pytest.raises(UsageError, match="unknown preset 'paper'.*dc-sft"):
        build_config("grpo", {"preset": "paper"}, output_dir="o")


@pytest.mark.parametrize("text, message", [
    ("max_stepz: 3\n", r"c.yaml: max_stepz: unknown option 'max_stepz'.*did you mean 'max_steps'"),
    ("sft:\n  beta: 0.1\n", r"c.yaml: sft.beta: unknown option 'beta' for trainer 'sft'; it is an option of curr_rl, grpo"),
    ("grpo:\n  num_generations: four\n", r"c.yaml: grpo.num_generations: expected an integer, got 'four'"),
    ("learning_rate: fast\n", r"c.yaml: learning_rate: expected a number, got 'fast'"),
    ("lora: 2\n", r"c.yaml: lora: expected true or false, got 2"),
    ("sft: 3\n", r"section 'sft' must be a mapping"),
    ("- a\n- b\n", r"expected a mapping"),
    ("a: [\n", r"not valid YAML"),
])
def test_bad_files_name_the_file_and_key(tmp_path, text, message):
    cfg = write(tmp_path / "c.yaml", text)
    with pytest.raises(UsageError, match=message):
        load_config("sft" if "sft" in text else "grpo", cfg, output_dir="o")


@pytest.mark.parametrize("override, message", [
    ("max_steps", r"expected key=value"),
    ("bogus=1", r"--set bogus: unknown option 'bogus' for any trainer"),
    ("ppo.beta=1", r"--set ppo.beta: unknown trainer 'ppo'"),
    ("grpo.max_steps=1.5", r"--set grpo.max_steps: expected an integer, got '1.5'"),
])
def test_bad_overrides_name_the_override(override, message):
    with pytest.raises(UsageError, match=message):
        build_config("grpo", overrides=[override], output_dir="o")


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read config file"):
        load_config("sft", tmp_path / "nope.yaml")


def test_unknown_trainer_lists_the_known_ones():
    with pytest.raises(UnknownName, match="unknown trainer .ppo.*curr_rl, grpo, rs_sft, sft, sft_e, sft_em, sft_h, sft_m"):
        get_trainer("ppo")


@pytest.mark.parametrize("override, message", [
    ("grpo.num_generations=1", "num_generations must be >= 2"),
    ("grpo.top_p=0", r"top_p must be in \(0, 1\]"),
    ("grpo.loss_type=ppo", "loss_type 'ppo' unknown"),
    ("grpo.profile=paper", "unknown protocol profile 'paper'"),
    ("max_steps=0", "max_steps must be > 0"),
    ("formats=open,essay", "formats: essay not valid"),
    ("dtype=fp8", "dtype 'fp8' unknown"),
])
def test_check_rejects_bad_values_before_any_model_loads(override, message):
    config = build_config("grpo", overrides=[override], output_dir="o")
    with pytest.raises((UsageError, UnknownName), match=message):
        get_trainer("grpo").check("synth_cls", config)


def test_check_suite_and_output_dir():
    trainer = get_trainer("sft")
    ok = build_config("sft", output_dir="o")
    assert trainer.check("synth_cls", ok).train == "synth_cls_train"
    with pytest.raises(UnknownName, match="unknown suite 'imagenette'"):
        trainer.check("imagenette", ok)
    no_train = Suite("probe", "", ("synth_cls_id",), ())
    with pytest.raises(UsageError, match="suite 'probe' has no train split.*synth_cls"):
        trainer.check(no_train, ok)
    with pytest.raises(UsageError, match="not a registered task"):
        trainer.check(Suite("probe", "synth_cls_trian", (), ()), ok)
    with pytest.raises(UsageError, match="output_dir is not set"):
        trainer.check("synth_cls", build_config("sft"))


def test_train_refuses_a_non_model_directory_before_loading(tmp_path):
    config = build_config("sft", output_dir=str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a model directory .no config.json. nor a PEFT adapter directory"):
        get_trainer("sft").train(str(tmp_path / "empty"), "synth_cls", config)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/nowhere"}))
    with pytest.raises(UsageError, match="names base model '/nowhere', which is not a model directory"):
        get_trainer("sft").train(str(tmp_path / "adapter"), "synth_cls", config)
    assert not (tmp_path / "out").exists()


def test_registered_in_registry_and_entry_points():
    assert TRAINERS.get("sft").name == "sft" and TRAINERS.get("grpo").name == "grpo"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"]["harness.trainers"]
    assert set(eps) >= {"sft", "grpo"}
    for name, target in eps.items():
        module, _, attr = target.partition(":")
        assert getattr(import_module(module), attr) is TRAINERS.get(name)


@pytest.mark.parametrize("argv, message", [
    (["ppo"], "harness: error: unknown trainer 'ppo'"),
    (["grpo", "--suite", "imagenette"], "harness: error: unknown suite 'imagenette'"),
    # a real-data suite whose data is not there: the data-root error, before any model loads
    (["grpo", "--suite", "imagenet"], "harness: error: ImageNet-1K: no data root; pass --data_root DIR or set "
                                      "$HARNESS_DATA"),
    (["grpo", "--set", "grpo.num_generations=1"], "harness: error: num_generations must be >= 2"),
    (["sft", "--set", "sft.beta=0.1"], "harness: error: --set sft.beta: unknown option 'beta' for trainer 'sft'"),
])
def test_command_line_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    from trainers.__main__ import main

    monkeypatch.delenv("HARNESS_DATA", raising=False)

    base = {"--model": "tiny", "--suite": "synth_cls", "--output_dir": str(tmp_path / "o")}
    args = argv[:1] + [a for k, v in base.items() if k not in argv for a in (k, v)] + argv[1:]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_grpo_use_vllm_is_checked_before_training(monkeypatch):
    import importlib.util

    with pytest.raises(UsageError, match="use_vllm must be colocate, server or null"):
        build_config("grpo", output_dir="o", use_vllm="yes").validate()
    with pytest.raises(UsageError, match="use_vllm: server needs vllm_server_base_url"):
        build_config("grpo", output_dir="o", use_vllm="server").validate()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UsageError, match=r"use_vllm needs vLLM: pip install -e '.\[vllm\]'"):
        build_config("grpo", output_dir="o", use_vllm="colocate").validate()

