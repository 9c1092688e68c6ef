"""harness regress: a run against a committed baseline (exit 0 pass, 1 regression, 2 bad input)."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.atomic import read_json, write_json_atomic  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.evaluator import run_eval  # noqa: E402
from leaderboards.regress import FORMAT, Tolerances, open_run, parse_tolerances, read_baseline  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import TASKS, FakeBackend, config  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.fake_backend import TASKS, FakeBackend, config  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_git")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, no_git):
    path = tmp_path_factory.mktemp("regress") / "run"
    run_eval(config(path), backend=FakeBackend())  # acc 60 % on 10 samples of each task
    return path


@pytest.fixture
def baseline(run_dir, tmp_path, capsys):
    path = tmp_path / "baselines" / "fake.json"
    assert main(["regress", str(run_dir), "--baseline", str(path), "--write"]) == 0
    assert f"wrote baseline {path}" in capsys.readouterr().out
    return path


def doctored(run_dir, tmp_path, change) -> str:
    """A copy of the run whose aggregates.json was edited by ``change(aggregates by task)``."""
    copy = tmp_path / "doctored"
    shutil.copytree(run_dir, copy)
    aggregates = read_json(copy / "aggregates.json")
    change({a["task"]: a for a in aggregates})
    write_json_atomic(copy / "aggregates.json", [a for a in aggregates if not a.get("_drop")])
    return str(copy)


def report_line(out: str, task: str, metric: str) -> str:
    return next(line for line in out.splitlines() if line.split()[:2] == [task, metric])


def test_baseline_file_holds_the_runs_aggregates_and_identity(run_dir, baseline):
    data = read_json(baseline)
    assert data["format"] == FORMAT and data["run"] == str(run_dir)
    assert data["model"] == "fake-model" and data["model_fingerprint"] == "fake-weights-0"
    assert data["identity"] == read_json(run_dir / "config.json")["identity"]
    assert set(data["tasks"]) == set(TASKS)
    for agg in read_json(run_dir / "aggregates.json"):
        entry = data["tasks"][agg["task"]]
        assert entry["n"] == agg["n"] and entry["role"] == agg["role"]
        assert entry["metrics"] == {m: {"value": v["value"], "ci": v["ci"]} for m, v in agg["metrics"].items()}


def test_identical_run_passes(run_dir, baseline, capsys):
    assert main(["regress", str(run_dir), "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "PASS: all 6 metrics" in out  # acc, acc@0.5, acc@0.75, acc@0.9, miou, acc
    assert "FAIL" not in out and "note:" not in out
    assert main(["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "0"]) == 0


def test_drop_below_the_ci_fails_with_a_report(run_dir, baseline, tmp_path, capsys):
    def drop(aggs):
        aggs["synth_cls_id"]["metrics"]["acc"]["value"] = 0.2  # 60 % -> 20 %, below the CI's lower bound
    run = doctored(run_dir, tmp_path, drop)
    assert main(["regress", run, "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    line = report_line(out, "synth_cls_id", "acc")
    lo = read_json(baseline)["tasks"]["synth_cls_id"]["metrics"]["acc"]["ci"][0]
    assert line.split()[2:6] == ["60.00", "20.00", "-40.00", f"-{100 * (0.6 - lo):.2f}"]
    assert line.endswith("FAIL") and "(CI)" in line
    assert report_line(out, "synth_ground_id", "acc@0.5").endswith("PASS")
    assert "REGRESSION: 1 of 6 metrics failed: synth_cls_id acc" in out


def test_small_drop_within_the_ci_passes_unless_tolerance_is_tighter(run_dir, baseline, tmp_path, capsys):
    def nudge(aggs):
        aggs["synth_ground_id"]["metrics"]["miou"]["value"] -= 0.01
    run = doctored(run_dir, tmp_path, nudge)
    assert main(["regress", run, "--baseline", str(baseline)]) == 0
    capsys.readouterr()
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0"]) == 1
    assert report_line(capsys.readouterr().out, "synth_ground_id", "miou").endswith("FAIL")
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0.02"]) == 0
    # per task and per metric overrides beat the global tolerance
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0.02",
                 "--tolerance", "synth_ground_id=0.005"]) == 1
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0,synth_ground_id:miou=0.011"]) == 0
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0,synth_ground_id:acc@0.5=0.5"]) == 1


def test_improvements_pass_even_when_exact(run_dir, baseline, tmp_path):
    def improve(aggs):
        aggs["synth_count_arith:mc"]["metrics"]["acc"]["value"] = 0.9
    assert main(["regress", doctored(run_dir, tmp_path, improve), "--baseline", str(baseline), "--tolerance", "0"]) == 0


def test_missing_task_or_metric_fails(run_dir, baseline, tmp_path, capsys):
    def remove(aggs):
        aggs["synth_count_arith:mc"]["_drop"] = True
        del aggs["synth_ground_id"]["metrics"]["miou"]
    run = doctored(run_dir, tmp_path, remove)
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "1"]) == 1
    out = capsys.readouterr().out
    assert report_line(out, "synth_count_arith:mc", "acc").endswith("FAIL: task missing from the run")
    assert report_line(out, "synth_ground_id", "miou").endswith("FAIL: metric missing from the run")


def test_differences_in_n_and_identity_are_reported(run_dir, baseline, tmp_path, capsys):
    def shrink(aggs):
        aggs["synth_cls_id"]["n"] = 5
    run = doctored(run_dir, tmp_path, shrink)
    cfg = read_json(f"{run}/config.json")
    cfg["identity"]["model_fingerprint"] = "fake-weights-1"
    cfg["identity"]["limit"] = 5
    write_json_atomic(f"{run}/config.json", cfg)
    assert main(["regress", run, "--baseline", str(baseline)]) == 0  # information, not failure
    out = capsys.readouterr().out
    assert "note: synth_cls_id: n = 5 samples, baseline 10" in out
    assert "note: model fingerprint fake-weights-1 (baseline fake-weights-0)" in out
    assert "note: config limit: 5 (baseline 10)" in out


def test_write_refreshes_the_baseline(run_dir, baseline, tmp_path, capsys):
    def drop(aggs):
        aggs["synth_cls_id"]["metrics"]["acc"]["value"] = 0.2
    run = doctored(run_dir, tmp_path, drop)
    capsys.readouterr()
    assert main(["regress", run, "--baseline", str(baseline), "--write"]) == 0
    out = capsys.readouterr().out
    assert "against the previous baseline" in out and "REGRESSION" in out  # what the refresh accepts
    assert read_baseline(baseline)["tasks"]["synth_cls_id"]["metrics"]["acc"]["value"] == 0.2
    assert read_baseline(baseline)["run"] == run
    assert main(["regress", run, "--baseline", str(baseline), "--tolerance", "0"]) == 0
    assert main(["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "0"]) == 0  # 20 % -> 60 %
    assert not list(baseline.parent.glob(".*.tmp"))  # written atomically, no temp files left


def test_bad_inputs_exit_2(run_dir, baseline, tmp_path, capsys):
    cases = [
        ["regress", str(run_dir), "--baseline", str(tmp_path / "missing.json")],
        ["regress", str(tmp_path / "no_run"), "--baseline", str(baseline)],
        ["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "abc"],
        ["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "-0.1"],
        ["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "synth_nope=0.1"],
        ["regress", str(run_dir), "--baseline", str(baseline), "--tolerance", "synth_cls_id:f1=0.1"],
    ]
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{")
    other = tmp_path / "other.json"
    write_json_atomic(other, {"tasks": {}})
    cases += [["regress", str(run_dir), "--baseline", str(corrupt)], ["regress", str(run_dir), "--baseline", str(other)]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("harness: error: ") and "\n" not in err, (argv, err)
    with pytest.raises(SystemExit) as exc:  # argparse: --baseline is required
        main(["regress", str(run_dir)])
    assert exc.value.code == 2 and "--baseline" in capsys.readouterr().err


def test_tolerance_keys_may_hold_a_colon(baseline):
    data = read_baseline(baseline)
    tol = parse_tolerances(["0.01", "synth_count_arith:mc=0.1, synth_count_arith:mc:acc=0.2,synth_cls_id=0"], data)
    assert tol == Tolerances(0.01, {"synth_count_arith:mc": 0.1, "synth_cls_id": 0.0},
                             {("synth_count_arith:mc", "acc"): 0.2})
    assert tol.allowed("synth_count_arith:mc", "acc", 0.3, 0.6) == (0.2, "tolerance")
    assert tol.allowed("synth_ground_id", "miou", 0.3, 0.6) == (0.01, "tolerance")
    assert Tolerances().allowed("synth_ground_id", "miou", 0.3, 0.6) == pytest.approx((0.3, "CI"))
    assert Tolerances().allowed("t", "m", None, 0.6) == (0.0, "no CI")
    with pytest.raises(UsageError, match="between 0 and 1"):
        parse_tolerances(["2"], data)


def test_open_run_accepts_the_aggregates_file(run_dir):
    assert open_run(run_dir / "aggregates.json").path == run_dir
