"""harness train-and-eval on the tiny model: the study directory, resume after SIGKILL,
and validation before any model is loaded."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main

SMALL = ["--model", "tiny", "--suite", "synth_cls", "--trainers", "sft,grpo", "--max_steps", "4", "--eval_every", "2",
         "--eval_limit", "16", "--bootstrap", "50", "--no_progress"]
# what must be equal between an interrupted and an uninterrupted study: every score,
# delta and p-value; not wall time or the run paths
VOLATILE = ("wall_s", "run")


def scores(study: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO((study / "leaderboard.csv").read_text())))
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    assert main(["train-and-eval", *SMALL, "--output_path", str(out)]) == 0
    return out


@pytest.mark.slow
def test_study_directory_holds_runs_checkpoints_leaderboard_and_plots(study):
    rows = scores(study)
    assert [r["label"] for r in rows] == ["base", "sft@2", "sft@4", "grpo@2", "grpo@4"]  # in --trainers order
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "plots/sft_eval.png", "plots/grpo_eval.png"):
        assert (study / name).is_file(), name
    assert any((study / "train" / "grpo" / "plots").glob("*.png"))
    # every row is an ordinary run directory whose aggregates the table repeats
    for r in rows:
        run = Path(next(x for x in csv.DictReader(io.StringIO((study / "leaderboard.csv").read_text()))
                        if x["label"] == r["label"])["run"])
        agg = {a["task"]: a for a in json.loads((run / "aggregates.json").read_text())}
        assert set(agg) == {"synth_cls_id", "synth_cls_style", "synth_cls_clutter"}
        value = agg["synth_cls_id"]["metrics"]["acc"]["value"]
        assert float(r["synth_cls_id acc (%)"]) == pytest.approx(100 * value, abs=0.01)
    md = (study / "leaderboard.md").read_text()
    assert "baseline" in md and "sft@4" in md  # deltas against the final SFT checkpoint
    # every row links to its run's viewer page, written into <study>/views/
    html = (study / "leaderboard.html").read_text()
    pages = {h.split("#")[0] for h in re.findall(r'<a class="view" href="([^"]+)">', html)}
    assert len(pages) == len(rows) and all((study / page).is_file() for page in pages)
    # GRPO checkpoints record generated tokens; SFT generates none
    grpo = next(r for r in rows if r["label"] == "grpo@4")
    assert float(grpo["generated_tokens"]) > 0 and float(grpo["optimizer_steps"]) == 4


@pytest.mark.slow
def test_rerun_of_a_finished_study_redoes_nothing(study, capsys):
    before = {p: p.stat().st_mtime_ns for p in (study / "runs").rglob("aggregates.json")}
    pages = {p: p.stat().st_mtime_ns for p in (study / "views").glob("*.html")}
    t0 = time.perf_counter()
    assert main(["train-and-eval", *SMALL, "--output_path", str(study)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (study / "runs").rglob("aggregates.json")} == before
    assert {p: p.stat().st_mtime_ns for p in (study / "views").glob("*.html")} == pages  # still current: not rewritten
    assert time.perf_counter() - t0 < 60  # no training, no eval: a generous bound that only a redo would exceed


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_gives_the_same_leaderboard(study, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "harness.cli", "train-and-eval", *SMALL, "--output_path", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # kill once GRPO has saved its first checkpoint: SFT is done, GRPO is mid-training
    marker = out / "train" / "grpo" / "checkpoints" / "step-000002"
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "leaderboard.csv").exists()
    assert main(["train-and-eval", *SMALL, "--output_path", str(out)]) == 0
    assert scores(out) == scores(study)
    # and the final weights themselves: the checkpoint evals inside training (which seed
    # torch) must not change what GRPO samples after them
    from safetensors.torch import load_file

    for trainer in ("sft", "grpo"):
        name = f"train/{trainer}/checkpoints/step-000004/adapter_model.safetensors"
        resumed, uninterrupted = load_file(str(out / name)), load_file(str(study / name))
        assert resumed.keys() == uninterrupted.keys()
        for key in resumed:
            assert (resumed[key] == uninterrupted[key]).all(), (trainer, key)


def test_bad_study_arguments_are_refused_before_any_model_loads(tmp_path, capsys):
    out = tmp_path / "s"
    base = ["train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--output_path", str(out)]
    cfg = tmp_path / "bad.yaml"
    cases = [
        (["--trainers", "sft,dpo"], r"unknown trainer 'dpo'"),
        (["--trainers", "sft,sft"], r"names a trainer twice"),
        (["--trainers", ","], r"--trainers is empty"),
        (["--trainers", "sft", "--suite", "synth_nope"], r"unknown suite 'synth_nope'"),
        (["--trainers", "sft", "--max_steps", "0"], r"--max_steps must be >= 1"),
        (["--trainers", "sft", "--eval_limit", "0"], r"--eval_limit must be >= 1"),
        (["--trainers", "sft", "--eval_batch_size", "0"], r"--eval_batch_size must be >= 1"),
        (["--trainers", "sft", "--set", "sft.learning_rate=fast"], r"learning_rate"),
        (["--trainers", "sft", "--set", "sft.lerning_rate=1e-4"], r"did you mean 'learning_rate'"),
        (["--trainers", "sft", "--config", str(cfg)], r"bad.yaml"),
        (["--trainers", "sft", "--format", "md,pdf"], r"--format: unknown pdf"),
        (["--trainers", "sft", "--model_args", "dtype=int3"], r"unknown dtype 'int3'"),
    ]
    cfg.write_text("sft:\n  learning_rate: [1, 2\n")
    for extra, pattern in cases:
        code = main([*base, *extra])
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert err.startswith("harness: error: ") and "Traceback" not in err
        import re

        assert re.search(pattern, err), (pattern, err)
    assert not out.exists()  # refused before anything was written


def test_a_study_directory_is_resumed_only_by_the_same_study(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"identity": {"model": "tiny", "suite": "synth_count"}}))
    code = main(["train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--trainers", "sft", "--output_path", str(out)])
    assert code == 2
    assert "holds a study with a different" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    code = main(["train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--trainers", "sft",
                 "--output_path", str(foreign)])
    assert code == 2
    assert "holds no study (study.json is missing)" in capsys.readouterr().err
