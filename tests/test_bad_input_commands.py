"""Bad input to every command beyond eval and score (those are tests/test_bad_input.py):
train-and-eval, leaderboard, regress, profile-difficulty, data overlap, study curr-reft|dc-sft
and view.

Each case is a realistic mistake: an argument missing or of the wrong type, an unknown
task, suite, trainer or option, a path that does not exist or is a file where a directory
is wanted (or the reverse), a run directory of another kind, a corrupt or malformed
config, records or baseline file, a bad ``--set``. Each must exit 2 with one line on
stderr that names the problem (never a traceback), before any model loads or any slow
work starts (``make_backend`` and the overlap audit's hashing are replaced by a function
that fails the case), and must leave every existing file exactly as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.evaluator import EvalConfig, run_eval

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import FakeBackend
except ImportError:  # pragma: no cover
    from tests.fake_backend import FakeBackend

pytestmark = pytest.mark.usefixtures("no_git")

TASK = "synth_cls_id"
LIMIT = 6
#: a case that ran longer than this did slow work (a model load takes longer on these machines)
FAST_S = 20.0


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of things the cases must not damage: a finished eval run, a study
    directory, a baseline, config files good and bad, a file and an empty directory."""
    root = tmp_path_factory.mktemp("bad_commands")
    run = root / "run"
    cfg = EvalConfig(model="tiny", tasks=[TASK], limit=LIMIT, batch_size=2, n_boot=20, output_path=str(run),
                     progress=False)
    run_eval(cfg, backend=FakeBackend(specs=[TASK], limit=LIMIT))
    assert main(["regress", str(run), "--baseline", str(root / "baseline.json"), "--write"]) == 0
    study = root / "study"
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"identity": {"model": "tiny", "suite": "synth_ground"}}))
    (study / "runs").mkdir()
    shutil.copytree(run, study / "runs" / "base")
    (root / "a_file").write_text("not a directory")
    (root / "empty").mkdir()
    (root / "bad.json").write_text('{"learning_rate": ')
    (root / "bad.yaml").write_text("grpo: [\n")
    (root / "list.yaml").write_text("- max_steps: 3\n")
    (root / "latin1.yaml").write_bytes("learning_rate: 1e-4  # \xe9\n".encode("latin-1"))
    (root / "unknown.yaml").write_text("grpo:\n  beeta: 0.1\n")
    (root / "not_a_baseline.json").write_text("[1, 2]")
    (root / "corrupt_baseline.json").write_text('{"format": "harness-baseline/1", "tasks": {')
    baseline = json.loads((root / "baseline.json").read_text())
    baseline["tasks"][TASK]["metrics"]["acc"] = {"value": "high", "ci": None}
    (root / "strings_baseline.json").write_text(json.dumps(baseline))
    damaged_runs(root)
    return root


def damaged_runs(root: Path) -> None:
    """Copies of the run, each damaged in one way (under ``root/broken/<name>``)."""
    run = root / "run"

    def copy(name: str) -> Path:
        dest = root / "broken" / name
        shutil.copytree(run, dest)
        return dest

    copy("corrupt_aggregates").joinpath("aggregates.json").write_text("[{")
    copy("aggregates_of_numbers").joinpath("aggregates.json").write_text("[1, 2]")
    copy("aggregates_not_utf8").joinpath("aggregates.json").write_bytes(b"\xff\xfe[]")
    copy("corrupt_config").joinpath("config.json").write_text('{"model": ')
    copy("config_a_list").joinpath("config.json").write_text("[]")
    d = copy("meta_not_an_object")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "meta": "base"}))
    d = copy("cost_in_words")
    (d / "config.json").write_text(json.dumps({**cfg, "meta": {"method": "sft", "cost": {"wall_s": "an hour"}}}))
    d = copy("corrupt_records")
    records = d / "records" / f"{TASK}.jsonl"
    lines = records.read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    records.write_text("\n".join(lines) + "\n")
    d = copy("no_aggregates")
    (d / "aggregates.json").unlink()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def guarded(monkeypatch):
    """No model may load and no slow audit may start."""
    def refuse(*a, **k):
        raise AssertionError("slow work started: the input was not checked first")

    monkeypatch.setattr("harness.evaluator.make_backend", refuse)
    monkeypatch.setattr("harness.overlap.hash_split", refuse)


def run_case(argv: list[str], ws: Path, capsys) -> tuple[int, str, float, str]:
    argv = [a.format(ws=ws, run=ws / "run", study=ws / "study", broken=ws / "broken") for a in argv]
    before = snapshot(ws)
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks exit from parse_args
        code = exc.code
    took = time.perf_counter() - t0
    out = capsys.readouterr()
    assert snapshot(ws) == before, "a bad command changed existing files"
    return code, out.err, took, out.out


def expect_error(code: int, err: str, took: float, pattern: str, multi_line: bool = False) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("harness: error: "), err
    if not multi_line:
        assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert re.search(pattern, " ".join(lines)), f"{pattern!r} not in {err!r}"
    assert took < FAST_S, f"{took:.1f} s: slow work before the check"


def check(cases: dict, case: str, ws: Path, capsys, creates: str | None = None) -> None:
    """Run one case; ``creates``: the directory the command would make had it started (it must not)."""
    argv, pattern, *multi = cases[case]
    try:
        code, err, took, _ = run_case(argv, ws, capsys)
    finally:
        started = creates is not None and (ws / creates).exists()
        if started:  # removed, so that one failing case does not fail the others
            shutil.rmtree(ws / creates)
    expect_error(code, err, took, pattern, multi_line=bool(multi))
    assert not started, f"{creates} was created"


# ------------------------------------------------------------------ harness train-and-eval
TE = ["train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--trainers", "sft", "--no_progress",
      "--output_path", "{ws}/new_study"]
TRAIN_AND_EVAL = {
    "nothing given": (["train-and-eval"], r"the following arguments are required: --model, --suite, --trainers"),
    "no trainers": (["train-and-eval", "--model", "tiny", "--suite", "synth_cls"], r"required: --trainers"),
    "unknown option": (TE + ["--max-steps", "5"], r"unrecognized arguments: --max-steps 5"),
    "steps not a number": (TE + ["--max_steps", "five"], r"argument --max_steps: invalid int value: 'five'"),
    "zero steps": (TE + ["--max_steps", "0"], r"--max_steps must be >= 1, got 0"),
    "negative eval_every": (TE + ["--eval_every", "-1"], r"--eval_every must be >= 1, got -1"),
    "zero eval_limit": (TE + ["--eval_limit", "0"], r"--eval_limit must be >= 1, got 0"),
    "zero eval batch": (TE + ["--eval_batch_size", "0"], r"--eval_batch_size must be >= 1"),
    "negative seed": (TE + ["--seed", "-1"], r"--seed must be >= 0, got -1"),
    "unknown suite": (TE + ["--suite", "synth_clss"], r"unknown suite 'synth_clss'\. Known suites: .*synth_cls"),
    "a task for a suite": (TE + ["--suite", "synth_cls_id"], r"unknown suite 'synth_cls_id'"),
    "unknown trainer": (TE + ["--trainers", "sft,dpo"], r"unknown trainer 'dpo'\. Known trainers: .*grpo"),
    "a trainer twice": (TE + ["--trainers", "sft,sft"], r"--trainers names a trainer twice: sft,sft"),
    "empty trainer list": (TE + ["--trainers", ","], r"--trainers is empty"),
    "unknown format": (TE + ["--format", "pdf"], r"--format: unknown pdf; choose from md, csv, html"),
    "config file missing": (TE + ["--config", "{ws}/nope.yaml"], r"cannot read config file .*nope.yaml"),
    "config file is a directory": (TE + ["--config", "{ws}/empty"], r"cannot read config file .*empty: Is a directory"),
    "config JSON truncated": (TE + ["--config", "{ws}/bad.json"], r"bad.json: not valid JSON"),
    "config YAML broken": (TE + ["--config", "{ws}/bad.yaml"], r"bad.yaml: not valid YAML"),
    "config YAML is a list": (TE + ["--config", "{ws}/list.yaml"], r"list.yaml: expected a mapping of option: value"),
    "config not UTF-8": (TE + ["--config", "{ws}/latin1.yaml"], r"config file .*latin1.yaml is not UTF-8 text"),
    "config option misspelt": (TE + ["--trainers", "grpo", "--config", "{ws}/unknown.yaml"],
                               r"unknown option 'beeta' for trainer 'grpo'; did you mean 'beta'\?"),
    "--set without =": (TE + ["--set", "learning_rate"], r"--set 'learning_rate': expected key=value"),
    "--set without a key": (TE + ["--set", "=3"], r"--set '=3': expected key=value"),
    "--set unknown key": (TE + ["--set", "nope=1"], r"--set nope: unknown option 'nope' for any trainer"),
    "--set wrong type": (TE + ["--set", "learning_rate=fast"], r"--set learning_rate: expected a number, got 'fast'"),
    "--set float for an int": (TE + ["--set", "max_steps=1.5"], r"--set max_steps: expected an integer, got '1.5'"),
    "--set bool for an int": (TE + ["--set", "max_steps=true"], r"--set max_steps: expected an integer, got 'true'"),
    "--set out of range": (TE + ["--set", "sft.learning_rate=-1"], r"learning_rate must be > 0, got -1"),
    "--set unknown preset": (TE + ["--set", "preset=paper"], r"sft: unknown preset 'paper'; choose one of"),
    "--set GRPO group of one": (TE + ["--trainers", "grpo", "--set", "grpo.num_generations=1"],
                                r"num_generations must be >= 2"),
    "--set missing difficulty profile": (TE + ["--trainers", "sft_m", "--set", "difficulty={ws}/nope"],
                                         r"difficulty profile .*nope: no such directory"),
    "--set bad judge": (TE + ["--trainers", "rs_sft", "--set", "rs_sft.judge=x"],
                        r"rs_sft judge 'x': expected URL,MODEL"),
    "unknown model arg": (TE + ["--model_args", "dtpye=float32"], r"unknown --model_args for backend 'hf': dtpye"),
    "model arg without value": (TE + ["--model_args", "dtype"], r"expected key=value in --model_args, got 'dtype'"),
    "model path missing": (TE + ["--model", "{ws}/models/qwen"], r"--model .*models/qwen: no such directory"),
    "model name unknown": (TE + ["--model", "tiny2"], r"--model tiny2: no such directory, and not a hub id"),
    "model is a file": (TE + ["--model", "{ws}/a_file"], r"--model .*a_file is a file; give a model directory"),
    "model dir without config": (TE + ["--model", "{ws}/empty"], r"model directory .*empty has no config.json"),
    "output path is a file": (TE + ["--output_path", "{ws}/a_file"], r"--output_path .*a_file is a file"),
    "output path under a file": (TE + ["--output_path", "{ws}/a_file/study"], r"cannot create .*: .*a_file is a file"),
    "output path is an eval run": (TE + ["--output_path", "{run}"],
                                   r"non-empty directory that holds no study \(study.json is missing\)"),
    "output path is another study": (TE + ["--output_path", "{study}"],
                                     r"holds a study with a different .*model_args.*suite.*; use another --output_path"),
    "output path is a damaged eval run": (TE + ["--output_path", "{broken}/corrupt_config"],
                           r"non-empty directory that holds no study"),
    "data root missing": (TE + ["--data_root", "{ws}/nope"], r"--data_root .*nope is not a directory"),
    "data args malformed": (TE + ["--data_args", "coco_images"], r"expected key=value in --data_args"),
    "data arg path missing": (TE + ["--data_args", "coco_images={ws}/nope"],
                              r"--data_args coco_images=.*nope: no such file or directory"),
    "math judge malformed": (TE + ["--math_judge", "localhost"], r"--math_judge 'localhost': expected URL,MODEL"),
    "dataset not there": (TE + ["--suite", "imagenet"], r"ImageNet-1K: no data root; pass --data_root DIR"),
}


@pytest.mark.parametrize("case", list(TRAIN_AND_EVAL))
def test_train_and_eval(case, ws, capsys, guarded):
    check(TRAIN_AND_EVAL, case, ws, capsys, creates="new_study")


def test_train_and_eval_corrupt_study_file(ws, capsys, guarded, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text('{"identity": ')
    code, err, took, _ = run_case(TE[:-1] + [str(study)], ws, capsys)
    expect_error(code, err, took, r"study file .*study.json is not valid JSON \(line 1")
    assert (study / "study.json").read_text() == '{"identity": '


# ------------------------------------------------------------------ harness leaderboard
LB = ["leaderboard", "{run}"]
LEADERBOARD = {
    "no directory": (["leaderboard"], r"the following arguments are required: DIR"),
    "directory missing": (["leaderboard", "{ws}/nope"], r"nope is not a directory"),
    "a file": (["leaderboard", "{ws}/a_file"], r"a_file is not a directory"),
    "no runs below": (["leaderboard", "{ws}/empty"], r"no run directories found in .*empty"),
    "unknown format": (LB + ["--format", "pdf"], r"--format: choose from md, csv, html"),
    "alpha above one": (LB + ["--alpha", "2"], r"--alpha must be between 0 and 1"),
    "alpha not a number": (LB + ["--alpha", "five percent"], r"argument --alpha: invalid float value"),
    "zero resamples": (LB + ["--resamples", "0"], r"--resamples and --corpus_resamples must be at least 1"),
    "metric without task": (LB + ["--metric", "acc"], r"--metric expects TASK=METRIC, got 'acc'"),
    "metric unknown": (LB + ["--metric", f"{TASK}=f1"], rf"--metric {TASK}=f1: no run has that metric; {TASK} has acc"),
    "metric of an unknown task": (LB + ["--metric", "nope=acc"], r"--metric nope=acc: no run has task nope"),
    "baseline unknown": (LB + ["--baseline", "sft@100"], r"--baseline 'sft@100' names no row; rows: 'tiny base'"),
    "output path is a file": (LB + ["--output_path", "{ws}/a_file"], r"--output_path .*a_file is a file"),
    "output path under a file": (LB + ["--output_path", "{ws}/a_file/board"], r"cannot create .*a_file is a file"),
    "corrupt aggregates": (["leaderboard", "{broken}/corrupt_aggregates"], r"aggregates.json is not valid JSON"),
    "aggregates of numbers": (["leaderboard", "{broken}/aggregates_of_numbers"],
                              r"aggregates.json: entry 1 must be an object with a 'task' name"),
    "aggregates not UTF-8": (["leaderboard", "{broken}/aggregates_not_utf8"], r"aggregates.json is not UTF-8 text"),
    "corrupt config": (["leaderboard", "{broken}/corrupt_config"], r"config.json is not valid JSON"),
    "config a list": (["leaderboard", "{broken}/config_a_list"],
                      r"config.json must be an object and aggregates.json a list"),
    "meta not an object": (["leaderboard", "{broken}/meta_not_an_object"], r"config.json: 'meta' must be an object"),
    "cost in words": (["leaderboard", "{broken}/cost_in_words", "--cost"],
                      r"meta.cost must map wall_s, generated_tokens, optimizer_steps to numbers"),
    "corrupt records": (["leaderboard", "{run}", "{broken}/corrupt_records"],
                        rf"{TASK}.jsonl:3: corrupt record line \(not at the end of the file\)"),
}


@pytest.mark.parametrize("case", list(LEADERBOARD))
def test_leaderboard(case, ws, capsys, guarded):
    check(LEADERBOARD, case, ws, capsys)


# ------------------------------------------------------------------ harness regress
RG = ["regress", "{run}", "--baseline", "{ws}/baseline.json"]
REGRESS = {
    "nothing given": (["regress"], r"the following arguments are required: RUN, --baseline"),
    "no baseline option": (["regress", "{run}"], r"the following arguments are required: --baseline"),
    "baseline missing": (["regress", "{run}", "--baseline", "{ws}/nope.json"],
                         r"no baseline file at .*nope.json; create it with: harness regress RUN --baseline"),
    "baseline a directory": (["regress", "{run}", "--baseline", "{ws}/empty"], r"baseline .*empty is a directory"),
    "baseline corrupt": (["regress", "{run}", "--baseline", "{ws}/corrupt_baseline.json"],
                         r"baseline .*corrupt_baseline.json is not valid JSON"),
    "baseline of another kind": (["regress", "{run}", "--baseline", "{ws}/not_a_baseline.json"],
                                 r"not_a_baseline.json is not a harness baseline file"),
    "baseline metric in words": (["regress", "{run}", "--baseline", "{ws}/strings_baseline.json"],
                                 rf"strings_baseline.json: {TASK} acc must be {{\"value\": number"),
    "run missing": (["regress", "{ws}/nope", "--baseline", "{ws}/baseline.json"], r"nope is not a finished run"),
    "a study for a run": (["regress", "{study}", "--baseline", "{ws}/baseline.json"],
                          r"study is not a finished run directory \(needs config.json and aggregates.json\)"),
    "an unfinished run": (["regress", "{broken}/no_aggregates", "--baseline", "{ws}/baseline.json"],
                          r"no_aggregates is not a finished run directory"),
    "run aggregates corrupt": (["regress", "{broken}/corrupt_aggregates", "--baseline", "{ws}/baseline.json"],
                               r"aggregates.json is not valid JSON"),
    "tolerance not a number": (RG + ["--tolerance", "two points"], r"--tolerance 'two points': 'two points' is not"),
    "tolerance negative": (RG + ["--tolerance", "-0.02"], r"tolerances are fractions between 0 and 1"),
    "tolerance in points": (RG + ["--tolerance", "2"], r"tolerances are fractions between 0 and 1"),
    "tolerance of an unknown task": (RG + ["--tolerance", "nope=0.1"], r"'nope' is no task or TASK:METRIC"),
    "tolerance of an unknown metric": (RG + ["--tolerance", f"{TASK}:f1=0.1"], rf"'{TASK}:f1' is no task"),
    "write into a directory": (["regress", "{run}", "--baseline", "{ws}/empty", "--write"],
                               r"--baseline .*empty is a directory; give a file path"),
    "write under a file": (["regress", "{run}", "--baseline", "{ws}/a_file/b.json", "--write"],
                           r"--baseline .*b.json: cannot create .*a_file is a file"),
    "write from a corrupt run": (["regress", "{broken}/corrupt_aggregates", "--baseline", "{ws}/new.json", "--write"],
                                 r"aggregates.json is not valid JSON"),
}


@pytest.mark.parametrize("case", list(REGRESS))
def test_regress(case, ws, capsys, guarded):
    check(REGRESS, case, ws, capsys, creates="new.json")


# ------------------------------------------------------------------ harness profile-difficulty
PD = ["profile-difficulty", "--model", "tiny", "--task", "synth_cls_train", "--limit", "8", "--no_progress",
      "--output_path", "{ws}/new_profile"]
PROFILE_DIFFICULTY = {
    "nothing given": (["profile-difficulty"], r"the following arguments are required: --model, --task"),
    "unknown task": (PD + ["--task", "synth_cls_trian"], r"unknown task or suite 'synth_cls_trian'"),
    "a format suffix": (PD + ["--task", "synth_cls_train:mc"], r"difficulty is profiled on the open-ended form"),
    "one generation": (PD + ["--num_generations", "1"], r"--num_generations 1: at least 2 answers per prompt"),
    "generations not a number": (PD + ["--num_generations", "eight"], r"invalid int value: 'eight'"),
    "greedy": (PD + ["--temperature", "0"], r"--temperature 0.0: profiling samples its answers"),
    "temperature nan": (PD + ["--temperature", "nan"], r"--temperature must be finite"),
    "top-p zero": (PD + ["--top_p", "0"], r"--top_p must be > 0"),
    "top-p above one": (PD + ["--top_p", "1.5"], r"--top_p must be <= 1"),
    "limit zero": (PD + ["--limit", "0"], r"--limit must be >= 1, got 0"),
    "limit and subsample": (PD + ["--subsample", "8"], r"argument --subsample: not allowed with argument --limit"),
    "negative holdout": (PD + ["--holdout", "-1"], r"--holdout must be >= 0"),
    "holdout of everything": (PD + ["--holdout", "10000000"], r"--holdout 10000000: synth_cls_train has \d+ samples"),
    "threshold zero": (PD + ["--correct_threshold", "0"], r"--correct_threshold must be > 0"),
    "threshold above one": (PD + ["--correct_threshold", "1.5"], r"--correct_threshold must be <= 1"),
    "batch zero": (PD + ["--batch_size", "0"], r"--batch_size must be >= 1"),
    "unknown backend": (PD + ["--backend", "tgi"], r"unknown backend 'tgi'"),
    "unknown model arg": (PD + ["--model_args", "device=gpu0"], r"unknown device 'gpu0'"),
    "unknown profile": (PD + ["--profile", "dcsft"], r"unknown protocol profile 'dcsft'"),
    "zero new tokens": (PD + ["--max_new_tokens", "0"], r"--max_new_tokens must be >= 1"),
    "negative seed": (PD + ["--seed", "-1"], r"--seed must be >= 0"),
    "model missing": (PD + ["--model", "{ws}/nope"], r"--model .*nope: no such directory"),
    "model is a file": (PD + ["--model", "{ws}/a_file"], r"a_file is a file; give a model directory"),
    "output path is a file": (PD + ["--output_path", "{ws}/a_file"], r"--output_path .*a_file is a file"),
    "output path is a study": (PD + ["--output_path", "{study}"],
                               r"non-empty directory that holds no run \(config.json is missing\)"),
    "output path holds another run": (PD + ["--output_path", "{run}"],
                                      r"holds a run with a different configuration", "multi-line"),
    "output path corrupt run": (PD + ["--output_path", "{broken}/corrupt_config"],
                                r"run config .*config.json is not valid JSON"),
    "dataset not there": (PD + ["--task", "imagenet100_train"], r"no data root; pass --data_root DIR"),
}


@pytest.mark.parametrize("case", list(PROFILE_DIFFICULTY))
def test_profile_difficulty(case, ws, capsys, guarded):
    check(PROFILE_DIFFICULTY, case, ws, capsys, creates="new_profile")


# ------------------------------------------------------------------ harness data overlap
OV = ["data", "overlap", "synth_cls", "--no_progress"]
OVERLAP = {
    "no suite": (["data", "overlap"], r"the following arguments are required: suite"),
    "unknown suite": (["data", "overlap", "synth"], r"unknown suite 'synth'"),
    "a task for a suite": (["data", "overlap", TASK], rf"unknown suite '{TASK}'"),
    "dataset not there": (["data", "overlap", "imagenet"], r"ImageNet-1K: no data root"),
    "limit zero": (OV + ["--limit", "0"], r"--limit must be >= 1, got 0"),
    "negative train limit": (OV + ["--train_limit", "-5"], r"--train_limit must be >= 1, got -5"),
    "distance past the hash": (OV + ["--max_distance", "64"], r"--max_distance must be in 0..63"),
    "negative distance": (OV + ["--max_distance", "-1"], r"--max_distance must be in 0..63"),
    "thumb diff past a byte": (OV + ["--max_thumb_diff", "256"], r"--max_thumb_diff must be in 0..255"),
    "distance not a number": (OV + ["--max_distance", "ten"], r"invalid int value: 'ten'"),
    "output is a directory": (OV + ["--output", "{ws}/empty"], r"--output .*empty is a directory; give a file path"),
    "output under a file": (OV + ["--output", "{ws}/a_file/o.json"], r"--output .*o.json: .*a_file is a file"),
    "unknown format": (OV + ["--format", "xml"], r"argument --format: invalid choice: 'xml'"),
    "data args malformed": (OV + ["--data_args", "q"], r"expected key=value in --data_args, got 'q'"),
}


@pytest.mark.parametrize("case", list(OVERLAP))
def test_data_overlap(case, ws, capsys, guarded):
    check(OVERLAP, case, ws, capsys)


# ------------------------------------------------------------------ harness study
ST = ["study", "curr-reft", "--quick", "--no_progress", "--output_path", "{ws}/new_paper_study"]
DC = ["study", "dc-sft", "--quick", "--no_progress", "--output_path", "{ws}/new_paper_study"]
STUDY = {
    "no paper": (["study"], r"the following arguments are required: paper"),
    "unknown paper": (["study", "visual-rft"], r"argument paper: invalid choice: 'visual-rft'"),
    "seeds not numbers": (ST + ["--seeds", "a,b"], r"argument --seeds: expected comma-separated integers"),
    "a seed twice": (ST + ["--seeds", "0,0"], r"--seeds: give distinct seeds >= 0"),
    "negative seed": (ST + ["--seeds", "-1"], r"--seeds: give distinct seeds >= 0"),
    "no seeds": (ST + ["--seeds", ","], r"--seeds: give distinct seeds >= 0, e\.g\. 0,1 \(got \[\]\)"),
    "unknown method": (ST + ["--methods", "sft,dpo"], r"--methods: dpo not in the curr-reft study"),
    "a method without the one it follows": (ST + ["--methods", "rs_sft"], r"rs_sft trains after curr_rl"),
    "zero validation split": (ST + ["--val_size", "0"], r"--val_size must be >= 1"),
    "validation split of everything": (["study", "curr-reft", "--val_size", "100000", "--output_path",
                                        "{ws}/new_paper_study"], r"--val_size 100000 leaves nothing"),
    "unknown selection": (ST + ["--select", "best"], r"argument --select: invalid choice: 'best'"),
    "zero eval limit": (ST + ["--eval_limit", "0"], r"--eval_limit must be >= 1"),
    "zero eval batch": (ST + ["--eval_batch_size", "0"], r"--eval_batch_size must be >= 1"),
    "negative bootstrap": (ST + ["--bootstrap", "-1"], r"--bootstrap must be >= 0"),
    "zero jobs": (ST + ["--jobs", "0"], r"--jobs must be >= 1"),
    "hard ratio above one": (DC + ["--hard_ratios", "2"], r"--hard_ratios: each share must be in \(0, 1\)"),
    "hard ratio in words": (DC + ["--hard_ratios", "half"], r"expected comma-separated numbers, got 'half'"),
    "zero profile samples": (DC + ["--profile_samples", "0"], r"--profile_samples must be >= 1"),
    "one profile generation": (DC + ["--profile_generations", "1"], r"--profile_generations must be >= 2"),
    "greedy profile": (DC + ["--profile_temperature", "0"], r"--profile_temperature must be > 0"),
    "config file missing": (ST + ["--config", "{ws}/nope.yaml"], r"cannot read config file .*nope.yaml"),
    "config JSON truncated": (ST + ["--config", "{ws}/bad.json"], r"bad.json: not valid JSON"),
    "--set unknown key": (ST + ["--set", "nope=1"], r"--set nope: unknown option 'nope' for any trainer"),
    "--set without =": (ST + ["--set", "lr"], r"--set 'lr': expected key=value"),
    "unknown model arg": (ST + ["--model_args", "dtpye=float32"], r"unknown --model_args for backend 'hf': dtpye"),
    "model name unknown": (ST + ["--model", "qwen"], r"--model qwen: no such directory, and not a hub id"),
    "model is a file": (ST + ["--model", "{ws}/a_file"], r"a_file is a file; give a model directory"),
    "unknown suite": (ST + ["--suite", "synth_cls_studdy"], r"unknown suite 'synth_cls_studdy'"),
    "dataset not there": (ST + ["--suite", "imagenet"], r"ImageNet-1K: no data root"),
    "output path is a file": (ST + ["--output_path", "{ws}/a_file"], r"--output_path .*a_file is a file"),
    "output path is an eval run": (ST + ["--output_path", "{run}"], r"non-empty directory that holds no study"),
    "output path is another study": (ST + ["--output_path", "{study}"], r"holds a study with a different .*suite"),
}


@pytest.mark.parametrize("case", list(STUDY))
def test_study(case, ws, capsys, guarded):
    check(STUDY, case, ws, capsys, creates="new_paper_study")


def test_study_bad_model_args_leave_no_study_behind(ws, capsys, guarded):
    """study.json was written before the evals checked --model_args, so the corrected
    command was refused as 'a study with a different model_args'."""
    code, err, took, _ = run_case(ST + ["--model_args", "threads=many"], ws, capsys)
    expect_error(code, err, took, r"model_args threads must be an integer")
    assert not (ws / "new_paper_study").exists()


# ------------------------------------------------------------------ harness view
VIEW = {
    "no run": (["view"], r"the following arguments are required: RUN"),
    "run missing": (["view", "{ws}/nope"], r"RUN .*nope is not a directory; give a run directory"),
    "a file": (["view", "{ws}/a_file"], r"RUN .*a_file is not a directory"),
    "a study for a run": (["view", "{study}"], r"study is not a run directory \(no config.json\)"),
    "corrupt config": (["view", "{broken}/corrupt_config"], r"run config .*config.json is not valid JSON"),
    "config a list": (["view", "{broken}/config_a_list"], r"run config .*config.json is not a JSON object"),
    "second run missing": (["view", "{run}", "{ws}/nope"], r"RUN2 .*nope is not a directory"),
    "second run corrupt": (["view", "{run}", "{broken}/corrupt_config"], r"config.json is not valid JSON"),
    "page size zero": (["view", "{run}", "--page_size", "0"], r"--page_size must be >= 1, got 0"),
    "page size in words": (["view", "{run}", "--page_size", "all"], r"argument --page_size: invalid int value"),
    "images too small": (["view", "{run}", "--image_side", "4"], r"--image_side must be >= 16, got 4"),
    "output a directory": (["view", "{run}", "--output_path", "{ws}/empty"],
                           r"--output_path .*empty is a directory; give a file path"),
    "output under a file": (["view", "{run}", "--output_path", "{ws}/a_file/v.html"], r"cannot create .*a_file"),
    "data root missing": (["view", "{run}", "--data_root", "{ws}/nope"], r"--data_root .*nope is not a directory"),
    "data args malformed": (["view", "{run}", "--data_args", "x"], r"expected key=value in --data_args, got 'x'"),
}


@pytest.mark.parametrize("case", list(VIEW))
def test_view(case, ws, capsys, guarded):
    check(VIEW, case, ws, capsys)


def test_view_counts_broken_record_lines_and_writes_elsewhere(ws, capsys, tmp_path):
    """The viewer shows what it can read of damaged records and says how many lines it skipped."""
    page = tmp_path / "page.html"
    code, err, took, out = run_case(["view", "{broken}/corrupt_records", "--output_path", str(page)], ws, capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "1 broken record lines" in out, out
    assert page.is_file() and took < FAST_S
