"""Bad input through the CLI: every case exits with a one-line error naming the problem,
never a traceback, and leaves an existing run's files exactly as they were.

The cases fail before a model is loaded, so none of them needs the tiny model: a run
directory written by the evaluator with a fake backend is what they try to damage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run, labelled as the CLI would write it for `--model tiny`."""
    path = tmp_path_factory.mktemp("bad") / "run"
    cfg = EvalConfig(model="tiny", tasks=[TASK], limit=LIMIT, batch_size=2, n_boot=20, output_path=str(path),
                     progress=False)
    run_eval(cfg, backend=FakeBackend(specs=[TASK], limit=LIMIT))
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def records_file(run_dir: Path) -> Path:
    return run_dir / "records" / f"{TASK}.jsonl"


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own checks (types, choices) exit from parse_args
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def expect_error(code: int, err: str, pattern: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("harness: error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


# --------------------------------------------------------------------- harness eval
EVAL_CASES = {
    "limit zero": (["--limit", "0"], r"--limit must be >= 1, got 0"),
    "limit negative": (["--limit", "-3"], r"--limit must be >= 1"),
    "limit not a number": (["--limit", "ten"], r"argument --limit: invalid int value: 'ten'"),
    "batch size zero": (["--batch_size", "0"], r"--batch_size must be >= 1"),
    "max new tokens zero": (["--max_new_tokens", "0"], r"--max_new_tokens must be >= 1"),
    "negative temperature": (["--temperature", "-0.5"], r"--temperature must be >= 0"),
    "temperature nan": (["--temperature", "nan"], r"--temperature must be finite"),
    "top-p zero": (["--top_p", "0"], r"--top_p must be > 0"),
    "top-p above one": (["--top_p", "1.5"], r"--top_p must be <= 1"),
    "negative bootstrap": (["--bootstrap", "-1"], r"--bootstrap must be >= 0"),
    "negative seed": (["--seed", "-2"], r"--seed must be >= 0"),
    "unknown model arg": (["--model_args", "dtpye=float32"], r"unknown --model_args for backend 'hf': dtpye\. Valid: dtype"),
    "model arg without value": (["--model_args", "dtype"], r"expected key=value in --model_args, got 'dtype'"),
    "model arg twice": (["--model_args", "dtype=fp32,dtype=bf16"], r"sets 'dtype' twice"),
    "unknown dtype": (["--model_args", "dtype=float8"], r"unknown dtype 'float8'"),
    "unknown device": (["--model_args", "device=gpu0"], r"unknown device 'gpu0'"),
    "threads not an int": (["--model_args", "threads=many"], r"model_args threads must be an integer"),
    "unknown box space": (["--model_args", "box_space=polar"], r"unknown box_space 'polar'"),
    "unknown profile": (["--profile", "paper-x"], r"unknown protocol profile 'paper-x'; known: curr-reft, dc-sft, lenient"),
    "unknown backend": (["--backend", "tgi"], r"unknown backend 'tgi'\. Known backends: hf"),
    "empty task list": (["--tasks", ","], r"no tasks given"),
    "unknown task": (["--tasks", "synth_cls_idd"], r"unknown task, suite or group 'synth_cls_idd'"),
    "unknown format": (["--tasks", f"{TASK}:cloze"], r"unknown format 'cloze'"),
    "different configuration": (["--seed", "7"], r"holds a run with a different configuration: +seed: recorded 0, now 7"),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_eval_rejects_bad_arguments_before_loading_and_keeps_the_run(case, run_dir, capsys):
    extra, pattern = EVAL_CASES[case]
    argv = ["eval", "--model", "tiny", "--tasks", TASK, "--limit", str(LIMIT), "--batch_size", "2",
            "--bootstrap", "20", "--output_path", str(run_dir), "--no_progress"]
    # later options win in argparse, so each case overrides the good value above
    before = snapshot(run_dir)
    code, err = run_cli(argv + extra, capsys)
    # "different configuration" is multi-line by design (one line per differing key)
    if case == "different configuration":
        assert code == 2 and err.startswith("harness: error: ") and "Traceback" not in err
        import re

        assert re.search(pattern, err.replace("\n", " ")), err
    else:
        expect_error(code, err, pattern)
    assert snapshot(run_dir) == before


def test_model_directory_problems(tmp_path, capsys):
    out = ["--tasks", TASK, "--output_path", str(tmp_path / "out"), "--no_progress"]
    cases = []
    missing = tmp_path / "nope" / "model"
    cases.append((missing, r"no such directory"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, r"has no config.json"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"model_type": "qwen2_vl",')
    cases.append((corrupt, r"config.json is not valid JSON \(line 1"))
    no_type = tmp_path / "no_type"
    no_type.mkdir()
    (no_type / "config.json").write_text("[1, 2]")
    cases.append((no_type, r"names no model_type"))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text('{"model_type": "qwen2_vl"}')
    cases.append((no_weights, r"holds no weights"))
    empty_weights = tmp_path / "empty_weights"
    empty_weights.mkdir()
    (empty_weights / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (empty_weights / "model.safetensors").write_bytes(b"")
    cases.append((empty_weights, r"model.safetensors is empty"))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(no_weights)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    cases.append((adapter, r"no_weights holds no weights"))
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    cases.append((a_file, r"is a file; give a model directory"))
    for model, pattern in cases:
        code, err = run_cli(["eval", "--model", str(model), *out], capsys)
        expect_error(code, err, pattern)
    assert not (tmp_path / "out").exists()  # nothing was started


def test_unusable_output_paths(tmp_path, run_dir, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    under_file = a_file / "run"
    corrupt_run = tmp_path / "corrupt_run"
    corrupt_run.mkdir()
    (corrupt_run / "config.json").write_text("{not json")
    cases = [
        (a_file, r"--output_path .*a_file is a file; give a directory path", []),
        (foreign, r"non-empty directory that holds no run \(config.json is missing\)", []),
        (foreign, r"non-empty directory that holds no run", ["--overwrite"]),  # never delete what is not ours
        (under_file, r"cannot create .*: .*a_file is a file", []),
        (corrupt_run, r"run config .*config.json is not valid JSON", []),
    ]
    for path, pattern, extra in cases:
        before = snapshot(tmp_path)
        code, err = run_cli(["eval", "--model", "tiny", "--tasks", TASK, "--output_path", str(path), "--no_progress",
                             *extra], capsys)
        expect_error(code, err, pattern)
        assert snapshot(tmp_path) == before


def test_corrupt_records_of_a_run_are_refused_not_overwritten(tmp_path, run_dir, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    lines = records_file(run).read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # torn in the middle: not a kill, a damaged file
    records_file(run).write_text("\n".join(lines) + "\n")
    before = snapshot(run)
    # the model is loaded before records are read, so go through run_eval with a fake backend
    cfg = EvalConfig(model="tiny", tasks=[TASK], limit=LIMIT, batch_size=2, n_boot=20, output_path=str(run),
                     progress=False)
    from harness.errors import UsageError

    with pytest.raises(UsageError, match=r"synth_cls_id.jsonl:2: corrupt record line \(not at the end of the file\)"):
        run_eval(cfg, backend=FakeBackend(specs=[TASK], limit=LIMIT))
    assert snapshot(run) == before


# -------------------------------------------------------------------- harness score
def good_line(i: int) -> dict:
    return {"sample_id": f"{i:06d}", "output": "circle"}


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


SCORE_CASES = {
    "empty file": (lambda p: p.write_text(""), r"holds no predictions"),
    "only blank lines": (lambda p: p.write_text("\n\n  \n"), r"holds no predictions"),
    "not JSON": (lambda p: write_lines(p, [good_line(0), "sample 1: circle"]), r"preds.jsonl:2: not a valid JSON line"),
    "truncated line in the middle": (lambda p: write_lines(p, [good_line(0), '{"sample_id": "000001", "outp', good_line(2)]),
                                     r"preds.jsonl:2: not a valid JSON line .*truncated or corrupt"),
    "truncated last line": (lambda p: p.write_text(json.dumps(good_line(0)) + '\n{"sample_id": "000001", "out'),
                            r"preds.jsonl:2: not a valid JSON line"),
    "array instead of object": (lambda p: write_lines(p, [["000000", "circle"]]), r"preds.jsonl:1: expected a JSON object"),
    "missing id": (lambda p: write_lines(p, [{"output": "circle"}]), r"preds.jsonl:1: needs a 'sample_id' \(or 'id'\)"),
    "missing output": (lambda p: write_lines(p, [{"sample_id": "000000"}]), r"preds.jsonl:1: needs an 'output'"),
    "output is a number": (lambda p: write_lines(p, [{"sample_id": "000000", "output": 3}]),
                           r"preds.jsonl:1: 'output' must be a string, got int"),
    "output is null": (lambda p: write_lines(p, [{"sample_id": "000000", "output": None}]),
                       r"'output' must be a string, got NoneType"),
    "outputs not strings": (lambda p: write_lines(p, [{"sample_id": "000000", "output": "a", "outputs": [1]}]),
                            r"'outputs' must be a non-empty list of strings"),
    "duplicated id": (lambda p: write_lines(p, [good_line(0), good_line(1), good_line(0)]),
                      r"preds.jsonl:3: sample '000000' again \(first on line 1\)"),
    "records of another task": (lambda p: write_lines(p, [{**good_line(0), "task": "synth_count_id"}]),
                                r"a record of task 'synth_count_id', not 'synth_cls_id'; pass --task synth_count_id"),
    "unknown sample": (lambda p: write_lines(p, [{"sample_id": "zzz", "output": "circle"}]),
                       r"1 of 1 predictions name samples that synth_cls_id does not have: zzz"),
    "not UTF-8": (lambda p: p.write_bytes(b"\xff\xfe\x00binary"), r"is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(SCORE_CASES))
def test_score_rejects_bad_prediction_files(case, tmp_path, capsys):
    make, pattern = SCORE_CASES[case]
    preds = tmp_path / "preds.jsonl"
    make(preds)
    out = tmp_path / "agg.json"
    code, err = run_cli(["score", "--task", TASK, "--predictions", str(preds), "--output_path", str(out)], capsys)
    expect_error(code, err, pattern)
    assert not out.exists()


def test_score_argument_and_path_problems(tmp_path, run_dir, capsys):
    preds = write_lines(tmp_path / "preds.jsonl", [good_line(0)])
    out_dir = tmp_path / "outdir"
    out_dir.mkdir()
    cases = [
        (["--predictions", str(tmp_path)], r"is a directory; give a JSONL file"),
        (["--predictions", str(tmp_path / "missing.jsonl")], r"no predictions file at"),
        (["--predictions", str(preds), "--bootstrap", "-5"], r"--bootstrap must be >= 0"),
        (["--predictions", str(preds), "--limit", "0"], r"--limit must be >= 1"),
        (["--predictions", str(preds), "--box_space", "polar"], r"unknown box_space 'polar'"),
        (["--predictions", str(preds), "--profile", "x"], r"unknown protocol profile 'x'"),
        (["--predictions", str(preds), "--output_path", str(out_dir)], r"--output_path .*outdir is a directory"),
        (["--predictions", str(preds), "--config", str(tmp_path / "nope.json")], r"run config .*nope.json does not exist"),
        (["--predictions", str(preds), "--task", "synth_cls_id:essay"], r"unknown format 'essay'"),
        (["--predictions", str(preds), "--task", "nope"], r"unknown task 'nope'"),
    ]
    for extra, pattern in cases:
        argv = ["score", "--task", TASK, *extra]
        code, err = run_cli(argv, capsys)
        expect_error(code, err, pattern)


def test_score_corrupt_run_config_beside_records(tmp_path, run_dir, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "config.json").write_text('{"conventions": ')
    code, err = run_cli(["score", "--task", TASK, "--predictions", str(records_file(run))], capsys)
    expect_error(code, err, r"run config .*run/config.json is not valid JSON")
    (run / "config.json").write_text('{"conventions": {"box_space": "polar"}}')
    code, err = run_cli(["score", "--task", TASK, "--predictions", str(records_file(run))], capsys)
    expect_error(code, err, r"invalid conventions or profile settings")


def test_score_tolerates_only_a_runs_own_torn_last_line(tmp_path, run_dir, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    text = records_file(run).read_text()
    records_file(run).write_text(text + text.splitlines()[0][:40])  # killed mid-append
    code = main(["score", "--task", TASK, "--predictions", str(records_file(run)), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipping a torn last record" in captured.err
    assert json.loads(captured.out)["n"] == LIMIT
    # the same bytes outside a run directory are an error
    loose = tmp_path / "loose.jsonl"
    loose.write_text(records_file(run).read_text())
    code, err = run_cli(["score", "--task", TASK, "--predictions", str(loose)], capsys)
    expect_error(code, err, rf"loose.jsonl:{LIMIT + 1}: not a valid JSON line")


# ------------------------------------------------------------------- whole command
def test_internal_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    def boom(*a, **k):
        raise RuntimeError("something broke")

    monkeypatch.setattr("harness.rescoring.score_predictions", boom)
    preds = write_lines(tmp_path / "p.jsonl", [good_line(0)])
    code, err = run_cli(["score", "--task", TASK, "--predictions", str(preds)], capsys)
    expect_error(code, err, r"RuntimeError: something broke \(an internal error; rerun with --debug", exit_code=3)
    with pytest.raises(RuntimeError):
        main(["score", "--task", TASK, "--predictions", str(preds), "--debug"])


def test_the_installed_command_prints_no_traceback(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_text("[1]\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "score", "--task", TASK, "--predictions", str(preds)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("harness: error: ") and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_directory_holding_only_our_temporary_files_is_reusable(tmp_path):
    from harness.validation import check_output_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.k3j2.tmp").write_text("{")  # killed between writing and renaming config.json
    check_output_dir(run)
    (run / "stray.txt").write_text("x")
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="holds no run"):
        check_output_dir(run)
