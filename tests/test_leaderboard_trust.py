"""Trustworthy comparisons in the leaderboard: minimum detectable differences (power),
seed groups (spread across seeds, seed-averaged deltas and tests) and the rule that
selected each row's checkpoint, in Markdown, CSV and HTML."""

from __future__ import annotations

import io
import math
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from harness.atomic import read_json, write_json_atomic  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.evaluator import run_eval  # noqa: E402
from harness.stats import bootstrap_mean_ci, min_detectable_difference  # noqa: E402
from leaderboards.board import LeaderboardOptions, build, col  # noqa: E402
from leaderboards.collect import collect  # noqa: E402
from leaderboards.render import RenderOptions, to_csv, to_html, to_markdown  # noqa: E402
from leaderboards.report import leaderboard_texts, leaderboard_texts_from_runs  # noqa: E402
from leaderboards.significance import SignificanceSettings, sign_flip_test  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import RuleBackend, config  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.fake_backend import RuleBackend, config  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_git")

ID, OOD = "synth_cls_id", "synth_cls_style"
TASKS = [ID, OOD]
LIMIT = 30
IDX = np.arange(LIMIT)


def make_run(path, wrong, meta=None, tasks=TASKS, limit=LIMIT, **kw):
    run_eval(config(path, tasks=tasks, limit=limit, **kw), backend=RuleBackend(wrong, specs=tasks, limit=limit))
    if meta is not None:
        write_json_atomic(path / "config.json", {**read_json(path / "config.json"), "meta": meta})
    return path


# per-sample correctness (1 = right) of each rule, to compute expectations by hand
def right(rule):
    return np.array([0.0 if rule(None, i) else 1.0 for i in IDX])


BASE = lambda t, i: i % 3 == 0  # noqa: E731 - 20 of 30 right
SEED0 = lambda t, i: i % 5 == 0  # noqa: E731 - 24 of 30 right: 80 %
SEED1 = lambda t, i: i % 2 == 0  # noqa: E731 - 15 of 30 right: 50 %
MODEL = "fake-model"


def sft_meta(seed, step, selection="best id-val of 3", **extra):
    return {"label": f"sft seed {seed}", "model": MODEL, "method": "sft", "checkpoint": step, "seed": seed,
            "selection": selection, "cost": {"wall_s": 100.0 * (seed + 1), "optimizer_steps": step}, **extra}


@pytest.fixture(scope="module")
def study(tmp_path_factory, no_git):
    """base (one seed), then sft's selected checkpoint of seeds 0 and 1 (steps 200 and 300)."""
    root = tmp_path_factory.mktemp("trust")
    make_run(root / "base", BASE)
    make_run(root / "sft0", SEED0, sft_meta(0, 200))
    make_run(root / "sft1", SEED1, sft_meta(1, 300))
    return root


def md_rows(markdown: str) -> dict[str, dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return {cells[0]: dict(zip(header, cells)) for cells in map(split, lines[2:])}


# ----------------------------------------------------------------------------- power
def test_mdd_formula_against_a_hand_calculation():
    # p = 0.5, n = 1500: (1.95996 + 0.84162) * sqrt(2 * 0.25 / 1500)
    assert min_detectable_difference(0.5, 1500) == pytest.approx(2.80158 * math.sqrt(2 * 0.25 / 1500), rel=1e-5)
    assert min_detectable_difference(0.5, 1500) == pytest.approx(0.0511, abs=1e-4)
    # paired: the SD of the differences instead of sqrt(2) x the SD; sd is not used
    assert min_detectable_difference(99.0, 400, paired_sd=0.3) == pytest.approx(2.80158 * 0.3 / 20, rel=1e-5)
    # stricter alpha or more power: larger; more samples: smaller
    assert min_detectable_difference(0.5, 100, alpha=0.01) > min_detectable_difference(0.5, 100)
    assert min_detectable_difference(0.5, 100, power=0.9) > min_detectable_difference(0.5, 100)
    assert min_detectable_difference(0.5, 400) == pytest.approx(min_detectable_difference(0.5, 100) / 2)
    assert math.isnan(min_detectable_difference(0.5, 0)) and math.isnan(min_detectable_difference(math.nan, 10))
    with pytest.raises(ValueError):
        min_detectable_difference(0.5, 10, alpha=1.5)


def test_mdd_row_from_the_baselines_n_and_sd(study):
    board = build(collect([study]), LeaderboardOptions())
    p = 20 / 30  # the baseline's accuracy: a 0/1 score has SD sqrt(p (1 - p))
    expected = min_detectable_difference(math.sqrt(p * (1 - p)), LIMIT)
    for task in TASKS:
        assert board.power[task].mdd == pytest.approx(expected)
        assert board.power[task].n == LIMIT
    # each row's paired MDD: the SD of its per-sample differences from the baseline
    for label, rule in (("sft seed 0", SEED0), ("sft seed 1", SEED1)):
        d = right(rule) - right(BASE)
        assert board.frame.at[label, col(ID, "paired_mdd")] == pytest.approx(
            min_detectable_difference(0, LIMIT, paired_sd=float(np.std(d))))
    assert math.isnan(board.frame.at["fake-model base", col(ID, "paired_mdd")])
    paired = [board.frame.at[label, col(ID, "paired_mdd")] for label in ("sft seed 0", "sft seed 1")]
    assert board.power[ID].paired == pytest.approx(np.median(paired))

    markdown = to_markdown(board)
    mdd = md_rows(markdown)["MDD (80 % power)"]
    assert mdd[f"{ID} acc"] == f"{100 * expected:.1f}, paired {100 * np.median(paired):.1f} (n={LIMIT})"
    assert f"{100 * expected:.1f}" == "34.1"  # 2.80 * sqrt(2 * 2/9 / 30)
    assert mdd["row"] == "MDD (80 % power)" and mdd["model"] == ""
    assert "not evidence of no effect" in markdown
    assert "MDD (80 % power)" in to_html(board) and "<tfoot>" in to_html(board)
    csv = pd.read_csv(io.StringIO(to_csv(board))).set_index("label")
    assert list(csv.index) == ["fake-model base", "sft seed 0", "sft seed 1"]  # no MDD row among the runs
    assert (csv[f"{ID} acc mdd (pt)"] == round(100 * expected, 2)).all()
    assert csv.at["sft seed 0", f"{ID} acc paired mdd (pt)"] == pytest.approx(100 * paired[0], abs=0.01)


def test_mdd_follows_alpha_and_is_absent_without_tests(study):
    board = build(collect([study]), LeaderboardOptions(alpha=0.01))
    p = 20 / 30
    assert board.power[ID].mdd == pytest.approx(min_detectable_difference(math.sqrt(p * (1 - p)), LIMIT, alpha=0.01))
    untested = build(collect([study]), LeaderboardOptions(significance=False))
    assert untested.power == {} and "MDD" not in to_markdown(untested)


def test_mdd_of_an_average_is_the_se_of_the_mean_over_splits(tmp_path):
    tasks = ["synth_cls_id", "synth_count_id"]
    make_run(tmp_path / "base", BASE, tasks=tasks)
    make_run(tmp_path / "sft", SEED0, {"model": MODEL, "method": "sft"}, tasks=tasks)
    board = build(collect([tmp_path]), LeaderboardOptions())
    p = 20 / 30
    sd = math.sqrt(p * (1 - p))
    # two splits of the same n and SD: the mean's SE is SD / sqrt(2 n)
    assert board.power["id_avg"].mdd == pytest.approx(min_detectable_difference(sd, 2 * LIMIT))
    assert board.power["id_avg"].mdd < board.power["synth_cls_id"].mdd


# ----------------------------------------------------------------------------- seeds
def test_grouping_two_seeds_gives_the_exact_mean_and_each_seeds_value(study):
    board = build(collect([study]), LeaderboardOptions(group_seeds=True))
    f = board.frame
    assert list(f.index) == ["fake-model base", "sft"]  # "sft seed 0" and "sft seed 1" without their seed
    averaged = (right(SEED0) + right(SEED1)) / 2
    assert f.at["sft", col(ID)] == pytest.approx((0.8 + 0.5) / 2)
    assert f.at["sft", col(ID)] == pytest.approx(averaged.mean())
    assert f.at["sft", col(ID, "seeds")] == pytest.approx((0.8, 0.5))
    assert (f.at["sft", col(ID, "ci_lo")], f.at["sft", col(ID, "ci_hi")]) == pytest.approx(
        bootstrap_mean_ci(averaged, n_boot=50, seed=0))  # the runs' --bootstrap and seed
    assert f.at["sft", "seeds"] == 2 and f.at["sft", "seed"] == "0/1" and f.at["sft", "checkpoint"] == "200/300"
    assert f.at["sft", "wall_s"] == pytest.approx(150.0) and f.at["sft", "optimizer_steps"] == pytest.approx(250.0)
    assert math.isnan(f.at["sft", "generated_tokens"])  # no seed has it

    rows = md_rows(to_markdown(board, RenderOptions(cost=True)))
    assert rows["sft"][f"{ID} acc"] == "65.0 (seeds 80.0 / 50.0; range 30.0)"  # base, 66.7, is best
    assert rows["sft"]["seeds"] == "2 (0/1)" and rows["fake-model base"]["seeds"] == "1"
    assert rows["sft"]["ckpt"] == "200/300" and rows["sft"]["wall time"] == "2.5 min"
    csv = pd.read_csv(io.StringIO(to_csv(board))).set_index("label")
    assert csv.at["sft", f"{ID} acc seed values (%)"] == "80.00/50.00"
    assert csv.at["sft", f"{ID} acc seed range (pt)"] == 30.0 and csv.at["sft", "seeds"] == 2
    assert "range 30.0" in to_html(board)


def test_a_group_is_tested_on_seed_averaged_per_sample_scores(study):
    board = build(collect([study]), LeaderboardOptions(group_seeds=True))
    a, b = (right(SEED0) + right(SEED1)) / 2, right(BASE)
    assert board.frame.at["sft", col(ID, "delta")] == pytest.approx(a.mean() - b.mean())
    assert board.frame.at["sft", col(ID, "p")] == pytest.approx(sign_flip_test(a, b)[0])
    # the group's paired MDD comes from the same vectors
    assert board.frame.at["sft", col(ID, "paired_mdd")] == pytest.approx(
        min_detectable_difference(0, LIMIT, paired_sd=float(np.std(a - b))))
    # a group as the baseline: named by its label, by its method, or by one seed's label
    for name in ("sft", "sft seed 1"):
        as_base = build(collect([study]), LeaderboardOptions(baseline=name, group_seeds=True))
        assert as_base.baseline == "sft"
        assert as_base.frame.at["fake-model base", col(ID, "delta")] == pytest.approx(b.mean() - a.mean())
        assert as_base.frame.at["fake-model base", col(ID, "p")] == pytest.approx(sign_flip_test(b, a)[0])
    assert any("one seed of 'sft'" in n for n in as_base.notes)


def test_identical_seeds_give_the_delta_and_p_of_one_seed(tmp_path):
    make_run(tmp_path / "base", BASE)
    for seed in (0, 1):  # the same answers under two seeds
        make_run(tmp_path / f"sft{seed}", SEED0, {"model": MODEL, "method": "sft", "checkpoint": 50, "seed": seed})
    grouped = build(collect([tmp_path]), LeaderboardOptions(group_seeds=True))
    one = build(collect([tmp_path / "base", tmp_path / "sft0"]), LeaderboardOptions())
    assert list(grouped.frame.index) == ["fake-model base", "fake-model sft@50"]
    assert list(one.frame.index) == ["fake-model base", "fake-model sft@50"]
    for key in TASKS + ["id_avg", "ood_avg"]:
        for field in ("value", "delta", "p"):
            assert grouped.frame.at["fake-model sft@50", col(key, field)] == pytest.approx(
                one.frame.at["fake-model sft@50", col(key, field)])
    assert grouped.frame.at["fake-model sft@50", col(ID, "seeds")] == (0.8, 0.8)
    assert grouped.frame.at["fake-model sft@50", "checkpoint"] == 50  # not selected: the shared step
    assert grouped.frame.at["fake-model sft@50", col(ID, "p")] == pytest.approx(
        sign_flip_test(right(SEED0), right(BASE))[0])


def test_grouping_off_leaves_the_rows_and_columns_alone(study):
    board = build(collect([study]), LeaderboardOptions())
    assert list(board.frame.index) == ["fake-model base", "sft seed 0", "sft seed 1"]
    assert not board.grouped and not any(c.endswith(" seeds") for c in board.frame.columns)
    markdown = to_markdown(board)
    assert "seeds" not in markdown.splitlines()[0] and "(seeds" not in markdown
    assert "seed values" not in to_csv(board)
    # seeds of different checkpoints (no selection rule) never group
    collection = collect([study])
    for run in collection.runs:
        run.selection = ""
    assert len(build(collection, LeaderboardOptions(group_seeds=True)).frame) == 3


def test_a_seed_groups_corpus_metric_is_the_mean_of_its_seeds_without_a_ci(tmp_path):
    det = ["synth_detect_base"]
    make_run(tmp_path / "base", BASE, tasks=det, limit=12, n_boot=20)
    for seed, rule in ((0, SEED0), (1, SEED1)):
        make_run(tmp_path / f"sft{seed}", rule, {"model": MODEL, "method": "sft", "checkpoint": 9, "seed": seed},
                 tasks=det, limit=12, n_boot=20)
    options = LeaderboardOptions(metrics={"synth_detect_base": "map"}, group_seeds=True,
                                 tests=SignificanceSettings(corpus_resamples=30))
    board = build(collect([tmp_path]), options)
    per_seed = [read_json(tmp_path / f"sft{s}" / "aggregates.json")[0]["metrics"]["map"]["value"] for s in (0, 1)]
    f = board.frame
    assert f.at["fake-model sft@9", col("synth_detect_base")] == pytest.approx(sum(per_seed) / 2)
    assert f.at["fake-model sft@9", col("synth_detect_base", "seeds")] == pytest.approx(tuple(per_seed))
    assert math.isnan(f.at["fake-model sft@9", col("synth_detect_base", "ci_lo")])
    assert 0 < f.at["fake-model sft@9", col("synth_detect_base", "p")] <= 1  # the paired bootstrap over both seeds
    assert math.isnan(board.power["synth_detect_base"].mdd)
    markdown = to_markdown(board, RenderOptions(ci=True))
    rows = md_rows(markdown)
    assert rows["fake-model sft@9"]["synth_detect_base map"].split(" (seeds")[0].endswith("[n/a]")
    assert rows["MDD (80 % power)"]["synth_detect_base map"] == "n/a"
    assert "mean of its seeds' values, without a CI" in markdown


# ----------------------------------------------------------------------------- selection
def test_selection_text_in_markdown_csv_and_html(study):
    texts = leaderboard_texts([study], LeaderboardOptions(), RenderOptions(cost=True), formats=("md", "csv", "html"))
    rows = md_rows(texts["md"])
    assert rows["sft seed 0"]["selected by"] == "best id-val of 3" and rows["fake-model base"]["selected by"] == "–"
    assert "'best id-val of 3': the checkpoint with the best score on the ID validation split" in texts["md"]
    assert "among 3 checkpoints" in texts["md"] and "never on an ID or OOD test split" in texts["md"]
    csv = pd.read_csv(io.StringIO(texts["csv"])).set_index("label")
    assert csv.at["sft seed 1", "selected by"] == "best id-val of 3"
    assert "<th>selected by</th>" in texts["html"] and "<td>best id-val of 3</td>" in texts["html"]


def test_runs_annotated_after_collect(study):
    """A study filters and annotates the collected runs before the table is built."""
    collection = collect([study])
    runs = [r for r in collection.runs if r.label != "sft seed 1"]
    runs[1].selection = "last"
    runs[1].label = ""  # a label the table makes up
    texts = leaderboard_texts_from_runs(runs, LeaderboardOptions(), RenderOptions(), formats=("md", "csv"),
                                        method_order=["sft"])
    rows = md_rows(texts["md"])
    assert set(rows) == {"fake-model base", "fake-model sft@200", "MDD (80 % power)"}
    assert rows["fake-model sft@200"]["selected by"] == "last" and "'last': the last checkpoint" in texts["md"]
    assert "last" in pd.read_csv(io.StringIO(texts["csv"]))["selected by"].tolist()
    with pytest.raises(Exception, match="no runs"):
        leaderboard_texts_from_runs([], LeaderboardOptions())


def test_no_selection_no_column(tmp_path):
    make_run(tmp_path / "base", BASE, tasks=[ID], limit=6)
    markdown = to_markdown(build(collect([tmp_path]), LeaderboardOptions()))
    assert "selected by" not in markdown and "Selected by" not in markdown


# ----------------------------------------------------------------------------- the command
def test_cli_group_seeds_and_help(study, capsys):
    assert main(["leaderboard", str(study), "--group_seeds", "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("label")
    assert list(csv.index) == ["fake-model base", "sft"] and csv.at["sft", "seeds"] == 2
    assert csv.at["sft", "selected by"] == "best id-val of 3"
    with pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    out = capsys.readouterr().out
    assert "--group_seeds" in out and "minimum detectable difference" in out and "selected by" in out
