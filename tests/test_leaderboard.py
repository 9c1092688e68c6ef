"""harness leaderboard: rows from real run directories (fake backend), averages, deltas,
bold/underline, paired significance, Markdown/CSV/HTML output, recursion over a study."""

from __future__ import annotations

import io
import math
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from harness.atomic import read_json, write_json_atomic  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.evaluator import run_eval  # noqa: E402
from leaderboards.board import LeaderboardOptions, build, col  # noqa: E402
from leaderboards.collect import collect  # noqa: E402
from leaderboards.render import RenderOptions, to_markdown  # noqa: E402
from leaderboards.significance import (  # noqa: E402
    RecordCache,
    SignificanceSettings,
    compare_split,
    sign_flip_test,
)

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import RuleBackend, config  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.fake_backend import RuleBackend, config  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_git")

ID_TASKS = ["synth_cls_id", "synth_count_id"]
OOD_TASKS = ["synth_cls_style", "synth_count_arith"]
TASKS = ID_TASKS + OOD_TASKS
LIMIT = 30  # enough discordant samples for p < 0.05 (10 of 30 flip)


def make_run(path, wrong, meta=None, tasks=TASKS, limit=LIMIT, **kw):
    run_eval(config(path, tasks=tasks, limit=limit, **kw), backend=RuleBackend(wrong, specs=tasks, limit=limit))
    if meta is not None:  # what train-and-eval adds to each run's config
        cfg = read_json(path / "config.json")
        write_json_atomic(path / "config.json", {**cfg, "meta": meta})
    return path


BASE_RULE = lambda t, i: i % 3 == 0  # noqa: E731 - 20 of 30 right: 66.7 %
GRPO100_RULE = lambda t, i: i % 2 == 0 if t in ID_TASKS else i % 5 == 0  # noqa: E731 - ID 50.0 %, OOD 80.0 %

LABELS = ["fake-model base", "fake-model grpo@50", "fake-model grpo@100", "SFT step 50"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, no_git):
    root = tmp_path_factory.mktemp("study")
    make_run(root / "base", BASE_RULE)  # no meta: model from config, method "base"
    make_run(root / "sft" / "ckpt50", lambda t, i: False,
             {"label": "SFT step 50", "model": "fake-model", "method": "sft", "checkpoint": 50, "seed": 0,
              "cost": {"wall_s": 300.0, "generated_tokens": 0, "optimizer_steps": 50}})
    make_run(root / "grpo" / "ckpt50", BASE_RULE,  # the same answers as the base run
             {"model": "fake-model", "method": "grpo", "checkpoint": 50,
              "cost": {"wall_s": 5000.0, "generated_tokens": 123456, "optimizer_steps": 50}})
    make_run(root / "grpo" / "ckpt100", GRPO100_RULE, {"model": "fake-model", "method": "grpo", "checkpoint": 100})
    # an eval killed before its aggregates, and a directory that is no run at all
    unfinished = root / "grpo" / "ckpt150"
    (unfinished / "records").mkdir(parents=True)
    write_json_atomic(unfinished / "config.json", {"model": "fake-model"})
    write_json_atomic(root / "trainer_out" / "config.json", {"learning_rate": 1e-5})
    return root


@pytest.fixture(scope="module")
def board(study):
    return build(collect([study]), LeaderboardOptions())


def aggregate_value(run_dir, task):
    agg = next(a for a in read_json(run_dir / "aggregates.json") if a["task"] == task)
    return agg["metrics"][agg["primary_metric"]]


def md_rows(markdown: str) -> dict[str, dict[str, str]]:
    """Markdown table -> {row label: {header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header, cells)) for cells in map(split, lines[2:])}


# ----------------------------------------------------------------------------- collecting
def test_rows_in_order_with_meta_and_fallbacks(board, study):
    frame = board.frame
    assert list(frame.index) == LABELS  # base first, then each method's checkpoints by step
    base = frame.loc["fake-model base"]
    assert (base["model"], base["method"], base["checkpoint"]) == ("fake-model", "base", "-")
    sft = frame.loc["SFT step 50"]
    assert (sft["method"], sft["checkpoint"], sft["seed"]) == ("sft", 50, 0)
    assert board.baseline == "fake-model base"
    assert [(c.task, c.role, c.metric) for c in board.columns] == [(t, "id", "acc") for t in ID_TASKS] + [
        (t, "ood", "acc") for t in OOD_TASKS]


def test_values_are_the_run_directories_aggregates(board, study):
    dirs = {"fake-model base": study / "base", "SFT step 50": study / "sft" / "ckpt50",
            "fake-model grpo@50": study / "grpo" / "ckpt50", "fake-model grpo@100": study / "grpo" / "ckpt100"}
    for label, run_dir in dirs.items():
        assert board.frame.at[label, "run"] == str(run_dir.resolve())
        for task in TASKS:
            m = aggregate_value(run_dir, task)
            assert board.frame.at[label, col(task)] == m["value"]
            assert [board.frame.at[label, col(task, "ci_lo")], board.frame.at[label, col(task, "ci_hi")]] == m["ci"]
            assert board.frame.at[label, col(task, "n")] == LIMIT
    assert board.frame.at["fake-model base", col("synth_cls_id")] == pytest.approx(20 / 30)
    assert board.frame.at["fake-model grpo@100", col("synth_cls_style")] == pytest.approx(24 / 30)


def test_averages_and_deltas(board):
    f = board.frame
    for label in LABELS:
        assert f.at[label, col("ood_avg")] == pytest.approx(np.mean([f.at[label, col(t)] for t in OOD_TASKS]))
        assert f.at[label, col("id_avg")] == pytest.approx(np.mean([f.at[label, col(t)] for t in ID_TASKS]))
        for key in TASKS + ["id_avg", "ood_avg"]:
            assert f.at[label, col(key, "delta")] == pytest.approx(f.at[label, col(key)] - f.at["fake-model base", col(key)])
    assert f.at["fake-model grpo@100", col("id_avg", "delta")] == pytest.approx(0.5 - 2 / 3)
    assert f.at["fake-model grpo@100", col("ood_avg", "delta")] == pytest.approx(0.8 - 2 / 3)
    assert f.at["SFT step 50", col("ood_avg", "delta")] == pytest.approx(1 / 3)
    rows = md_rows(to_markdown(board))
    assert rows["fake-model grpo@100"]["Δ ID"] == "-16.7" and rows["fake-model grpo@100"]["Δ OOD"] == "+13.3"
    assert rows["SFT step 50"]["Δ OOD"] == "+33.3" and rows["fake-model base"]["Δ OOD"] == "baseline"


def test_bold_best_and_underlined_second(board):
    rows = md_rows(to_markdown(board))
    for task in ID_TASKS:
        header = f"{task} acc"
        assert rows["SFT step 50"][header].startswith("**100.0**")
        # base and grpo@50 tie for second at 66.7: both underlined
        assert rows["fake-model base"][header] == "<u>66.7</u>"
        assert rows["fake-model grpo@50"][header] == "<u>66.7</u>"
        assert rows["fake-model grpo@100"][header] == "50.0"
    for task in OOD_TASKS:
        header = f"{task} acc"
        assert rows["fake-model grpo@100"][header] == "<u>80.0</u>"
        assert rows["fake-model base"][header] == "66.7"
    assert rows["SFT step 50"]["OOD avg"].startswith("**100.0**")
    assert rows["fake-model grpo@100"]["OOD avg"] == "<u>80.0</u>"
    assert rows["fake-model grpo@100"]["ID avg"] == "50.0"


def test_significance_marker_on_a_clearly_better_row_only(board):
    f = board.frame
    # sft is right on the 10 samples base got wrong and wrong on none: exact sign-flip p = 2 / 2^10
    for key in TASKS:
        assert f.at["SFT step 50", col(key, "p")] == pytest.approx(2 / 2**10)
        assert f.at["fake-model grpo@50", col(key, "p")] == 1.0  # identical answers
        assert math.isnan(f.at["fake-model base", col(key, "p")])
    assert f.at["SFT step 50", col("ood_avg", "p")] < 0.001
    assert f.at["fake-model grpo@50", col("ood_avg", "p")] == 1.0
    # grpo@100's OOD gain (8 samples up, 4 down per split) is not significant
    assert f.at["fake-model grpo@100", col("synth_cls_style", "p")] > 0.05
    markdown = to_markdown(board)
    rows = md_rows(markdown)
    for header in [f"{t} acc" for t in TASKS] + ["ID avg", "OOD avg"]:
        assert rows["SFT step 50"][header].endswith("†")
        assert "†" not in rows["fake-model grpo@50"][header]
        assert "†" not in rows["fake-model base"][header]
        assert "†" not in rows["fake-model grpo@100"][header]
    assert "† p < 0.05" in markdown and "sign-flip" in markdown


def test_sign_flip_equals_exact_mcnemar_on_binary_scores():
    rng = np.random.default_rng(1)
    b = rng.integers(0, 2, 40).astype(float)
    a = b.copy()
    a[:9] = 1.0
    a[9:11] = 0.0
    b[:9], b[9:11] = 0.0, 1.0  # 9 samples up, 2 down, the rest equal
    p, exact = sign_flip_test(a, b)
    assert exact
    assert p == pytest.approx(stats.binomtest(9, 11, 0.5).pvalue)
    assert sign_flip_test(a, a) == (1.0, True)


@pytest.mark.parametrize("n", [6, 12, 60, 400])
def test_sign_flip_agrees_with_scipy_permutation_test(n):
    rng = np.random.default_rng(n)
    a, b = rng.random(n), rng.random(n)
    b[: n // 3] = a[: n // 3]  # some ties
    a[n // 3:] += 0.1  # and a real difference
    w = rng.random(n)  # weighted, as the averages over splits are
    differs = a != b

    def scipy_p(weights):
        return stats.permutation_test(
            (a[differs], b[differs]), lambda x, y, axis=-1: np.sum(weights[differs] * (x - y), axis=axis),
            permutation_type="samples", vectorized=True, n_resamples=9999, rng=np.random.default_rng(0)).pvalue

    for weights in (np.ones(n), w):
        p, exact = sign_flip_test(a, b, weights)
        assert exact == (2 ** int(differs.sum()) <= 9999)
        if exact:
            assert p == pytest.approx(scipy_p(weights))
        else:  # two Monte Carlo estimates of the same p-value
            assert p == pytest.approx(scipy_p(weights), abs=0.02)


def test_ci_and_cost_columns(board):
    rows = md_rows(to_markdown(board, RenderOptions(ci=True, cost=True)))
    lo, hi = board.frame.at["fake-model base", col("synth_cls_id", "ci_lo")], board.frame.at[
        "fake-model base", col("synth_cls_id", "ci_hi")]
    assert rows["fake-model base"]["synth_cls_id acc"] == f"<u>66.7</u> [{100 * lo:.1f}, {100 * hi:.1f}]"
    assert rows["SFT step 50"]["synth_cls_id acc"] == "**100.0** [100.0, 100.0]†"
    assert rows["fake-model grpo@50"]["wall time"] == "83.3 min"
    assert rows["fake-model grpo@50"]["gen. tokens"] == "123.5k"
    assert rows["SFT step 50"]["opt. steps"] == "50" and rows["SFT step 50"]["wall time"] == "5.0 min"
    assert rows["fake-model base"]["wall time"] == "–"
    assert "wall time" not in md_rows(to_markdown(board))["fake-model base"]


# ----------------------------------------------------------------------------- baselines
def test_baseline_by_label_or_unique_method(study):
    board = build(collect([study]), LeaderboardOptions(baseline="sft"))
    assert board.baseline == "SFT step 50"
    assert board.frame.at["fake-model base", col("ood_avg", "delta")] == pytest.approx(-1 / 3)
    assert build(collect([study]), LeaderboardOptions(baseline="fake-model grpo@100")).baseline == "fake-model grpo@100"
    with pytest.raises(UsageError, match="2 rows have that method"):
        build(collect([study]), LeaderboardOptions(baseline="grpo"))
    with pytest.raises(UsageError, match="names no row"):
        build(collect([study]), LeaderboardOptions(baseline="nope"))


def test_no_base_row_means_no_deltas(study):
    board = build(collect([study / "sft", study / "grpo"]), LeaderboardOptions())
    assert board.baseline is None
    assert not any(c.endswith(" delta") or c.endswith(" p") for c in board.frame.columns)
    markdown = to_markdown(board)
    assert "Δ" not in markdown.splitlines()[0] and "No baseline row" in markdown


# ----------------------------------------------------------------------------- study directories
def test_recursion_over_a_study_directory(study):
    collection = collect([study])
    assert len(collection.runs) == 4
    assert len(collection.warnings) == 1 and "ckpt150" in collection.warnings[0]
    assert "unfinished" in collection.warnings[0]
    single = collect([study / "grpo" / "ckpt100"])  # a run directory itself
    assert [r.label for r in single.runs] == ["fake-model grpo@100"]
    with pytest.raises(UsageError, match="no run directories"):
        collect([study / "trainer_out"])


def test_duplicate_labels_are_told_apart(study, tmp_path):
    make_run(tmp_path / "seed1", BASE_RULE, {"model": "fake-model", "method": "grpo", "checkpoint": 50, "seed": 1},
             tasks=["synth_cls_id"], limit=5)
    make_run(tmp_path / "seed2", BASE_RULE, {"model": "fake-model", "method": "grpo", "checkpoint": 50, "seed": 2},
             tasks=["synth_cls_id"], limit=5)
    labels = [r.label for r in collect([tmp_path]).runs]
    assert labels == ["fake-model grpo@50 seed1", "fake-model grpo@50 seed2"]


def test_a_row_without_a_split_has_no_average(study, tmp_path):
    make_run(tmp_path / "partial", lambda t, i: False, {"model": "fake-model", "method": "dpo"},
             tasks=TASKS[:3])  # no synth_count_arith
    board = build(collect([study, tmp_path]), LeaderboardOptions())
    assert math.isnan(board.frame.at["fake-model dpo", col("ood_avg")])
    assert board.frame.at["fake-model dpo", col("id_avg")] == 1.0
    rows = md_rows(to_markdown(board))
    assert rows["fake-model dpo"]["synth_count_arith acc"] == "–" and rows["fake-model dpo"]["OOD avg"] == "–"
    assert rows["fake-model dpo"]["Δ OOD"] == "–"


# ----------------------------------------------------------------------------- corpus metrics
def test_corpus_metric_paired_bootstrap_through_the_tasks_own_metric(tmp_path):
    det = ["synth_detect_base"]
    base = make_run(tmp_path / "base", BASE_RULE, tasks=det, limit=12, n_boot=20)
    better = make_run(tmp_path / "better", lambda t, i: False, {"method": "sft"}, tasks=det, limit=12, n_boot=20)
    same = make_run(tmp_path / "same", BASE_RULE, {"method": "copy"}, tasks=det, limit=12, n_boot=20)
    board = build(collect([tmp_path]), LeaderboardOptions(metrics={"synth_detect_base": "map"},
                                                         tests=SignificanceSettings(corpus_resamples=60)))
    assert [(c.task, c.metric) for c in board.columns] == [("synth_detect_base", "map")]
    for label, run_dir in (("fake-model base", base), ("fake-model sft", better), ("fake-model copy", same)):
        assert board.frame.at[label, col("synth_detect_base")] == read_json(run_dir / "aggregates.json")[0][
            "metrics"]["map"]["value"]
    assert board.frame.at["fake-model sft", col("synth_detect_base", "p")] < 0.05
    assert board.frame.at["fake-model copy", col("synth_detect_base", "p")] == 1.0
    runs = {r.label: r for r in collect([tmp_path]).runs}
    test = compare_split(runs["fake-model sft"], runs["fake-model base"], "synth_detect_base", "map", RecordCache(),
                         SignificanceSettings(corpus_resamples=20))
    assert test.method == "paired bootstrap" and test.n == 12
    f1 = compare_split(runs["fake-model sft"], runs["fake-model base"], "synth_detect_base", "f1", RecordCache(),
                       SignificanceSettings())
    assert f1.method.startswith("sign-flip")
    with pytest.raises(UsageError, match="no run has that metric"):
        build(collect([tmp_path]), LeaderboardOptions(metrics={"synth_detect_base": "nope"}))


# ----------------------------------------------------------------------------- the command
def test_cli_writes_markdown_csv_and_html(study, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["leaderboard", str(study), "--output_path", str(out), "--ci", "--cost"]) == 0
    captured = capsys.readouterr()
    assert "| SFT step 50" in captured.out and "ckpt150" in captured.err and "warning" in captured.err
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.csv", "leaderboard.html", "views"}
    assert (out / "leaderboard.md").read_text() in captured.out

    csv = pd.read_csv(io.StringIO((out / "leaderboard.csv").read_text()))
    assert list(csv["label"]) == LABELS
    base_cls = aggregate_value(study / "base", "synth_cls_id")
    row = csv.set_index("label").loc["fake-model base"]
    assert row["synth_cls_id acc (%)"] == pytest.approx(round(100 * base_cls["value"], 2))
    assert row["synth_cls_id acc ci_lo (%)"] == pytest.approx(round(100 * base_cls["ci"][0], 2))
    assert csv.set_index("label").at["SFT step 50", "OOD avg delta (pt)"] == pytest.approx(33.33)
    assert csv.set_index("label").at["SFT step 50", "synth_cls_id acc p"] == pytest.approx(2 / 2**10, abs=1e-5)
    assert csv.set_index("label").at["fake-model grpo@50", "generated_tokens"] == 123456

    page = (out / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<caption>" in page
    assert "<b>100.0</b> [100.0, 100.0]†" in page and "<u>80.0</u>" in page
    assert '<th colspan="2">OOD</th>' not in page and '<th colspan="3">OOD</th>' in page  # 2 splits + average
    assert "p &lt; 0.05" in page and "sign-flip" in page

    assert main(["leaderboard", str(study / "grpo"), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("label,model,method,checkpoint")


def test_cli_usage_errors_exit_2(study, tmp_path, capsys):
    assert main(["leaderboard", str(study), "--baseline", "nope"]) == 2
    assert "harness: error: --baseline 'nope' names no row" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "missing")]) == 2
    assert main(["leaderboard", str(study), "--format", "pdf"]) == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    (broken / "aggregates.json").write_text("[]")
    assert main(["leaderboard", str(broken)]) == 2
    assert "config.json is not valid JSON" in capsys.readouterr().err
