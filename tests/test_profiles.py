"""Protocol profiles on the same outputs: where strict and each paper's script differ.

The matrices below are the reference: each row is one model output for a fixture
sample (ImageNet val "tench"; RefCOCO val "left guy" in a 32x24 image, gold box
[2, 2, 12, 17] px, asked of a Qwen2-VL-style model that answers in 0-1000), and
each column says whether that profile scores it correct. The docs (docs/profiles.md)
and the closing note show the same table.
"""

from __future__ import annotations

import json
import math

import pytest
from fixtures_imagenet import write_imagenet
from fixtures_refer import write_refer

from harness.boxes import GROUNDING_METRICS, grounding_scores, iou, read_answer_box
from harness.cli import main
from harness.conventions import ModelConventions
from harness.protocol import PROFILES, get_profile
from harness.taskspec import make_task

# the matrices' columns: the profiles of classification and grounding scripts (mathvista is
# a math profile: its label and box settings are strict's)
NAMES = ["strict", "lenient", "visual-rft", "vlm-r1", "lmms-eval", "curr-reft", "dc-sft"]
ALL = NAMES + ["mathvista"]
CONV = ModelConventions()  # Qwen2-VL: boxes in 0-1000


@pytest.fixture()
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    write_imagenet(tmp_path)
    write_refer(tmp_path)
    return tmp_path


def test_every_profile_is_listed():
    assert list(PROFILES) == ALL
    for name in NAMES[2:]:
        assert get_profile(name).source != "harness" and get_profile(name).description


# ----------------------------------------------------------------------------- classification
#          output                              strict lenient vrft vlmr1 lmms curr dcsft
CLS = [
    ("tench",                                   (1, 1, 0, 0, 1, 1, 1)),
    ("Tench.",                                  (1, 1, 0, 0, 1, 1, 1)),
    ("<answer>tench</answer>",                  (1, 1, 1, 1, 0, 1, 0)),  # tags: dc-sft and lmms-eval read them as text
    ("<answer>Tinca tinca</answer>",            (1, 1, 0, 1, 0, 0, 0)),  # a synonym: not in the papers' label checks
    ("<answer></answer>",                       (0, 0, 1, 0, 0, 0, 0)),  # Visual-RFT's empty-answer bug
    ("<answer>a tench fish</answer>",           (0, 1, 1, 0, 0, 0, 0)),  # lenient: whole words; visual-rft: substring
    ("<answer>ten</answer>",                    (0, 0, 1, 0, 0, 0, 0)),  # "ten" in "tench"
    ("<answer>\ntench</answer>",                (1, 1, 0, 1, 0, 1, 0)),  # Visual-RFT's tag regex is one line only
    ("<think>a fish</think>tench",              (1, 1, 0, 0, 0, 1, 0)),  # no <answer>: tags required / raw text
    ("goldfish",                                (0, 0, 0, 0, 0, 0, 0)),
    ("tênch",                                   (0, 0, 0, 0, 0, 0, 0)),  # unicode look-alike
    ("",                                        (0, 0, 0, 0, 0, 0, 0)),  # no output: no tag for visual-rft either
    ("%%% ???",                                 (0, 0, 0, 0, 0, 0, 0)),
]


@pytest.mark.parametrize("output,expected", CLS, ids=[repr(o) for o, _ in CLS])
def test_classification_under_every_profile(data_root, output, expected):
    task = make_task("imagenet_val")
    sample = next(iter(task.samples()))
    assert sample.target == "tench"
    got = tuple(int(task.evaluate(output, sample, CONV, get_profile(p))[1]["acc"]) for p in NAMES)
    assert got == expected


def test_empty_answer_is_a_recorded_failure_except_where_a_profile_counts_it(data_root):
    task = make_task("imagenet_val")
    sample = next(iter(task.samples()))
    for name in NAMES:
        parsed, scores = task.evaluate("<answer></answer>", sample, CONV, get_profile(name))
        if name == "visual-rft":
            assert parsed.ok and scores["acc"] == 1.0
        elif name in ("lmms-eval", "dc-sft"):  # they read the raw text, which is not empty: a wrong label
            assert parsed.ok and scores["acc"] == 0.0
        else:
            assert parsed.failure == "empty answer" and scores["acc"] == 0.0, name


# ----------------------------------------------------------------------------- grounding
# RefCOCO val sample "left guy": image 32x24, gold [2, 2, 12, 17] px = [62, 83, 375, 708] in 0-1000
GOLD_1000 = "[62, 83, 375, 708]"
#          output                                                   strict lenient vrft vlmr1 lmms curr dcsft
GROUND = [
    (GOLD_1000,                                                     (1, 1, 0, 0, 0, 0, 1)),
    ('<answer>{"bbox_2d": [62, 83, 375, 708]}</answer>',            (1, 1, 0, 1, 0, 0, 1)),
    ("<answer>[62, 83, 375, 708]</answer>",                         (1, 1, 0, 0, 0, 0, 1)),  # VLM-R1 wants {...}
    ("<answer>(62,83),(375,708)</answer>",                          (1, 1, 1, 0, 0, 0, 0)),  # Visual-RFT's pairs
    ("[375, 708, 62, 83]",                                          (1, 1, 0, 0, 0, 0, 0)),  # corners swapped
    ("[0.0625, 0.0833, 0.375, 0.7083]",                             (0, 0, 0, 0, 1, 0, 0)),  # 0-1: lmms-eval's space
    ("<answer>[2, 2, 12, 17]</answer>",                             (0, 0, 0, 0, 0, 1, 0)),  # pixels: Curr-ReFT's
    ("<answer>[2.9, 2.9, 12.9, 17.9]</answer>",                     (0, 0, 0, 0, 0, 1, 0)),  # truncated to ints
    ("[62, 83, 375, 708] or [500, 500, 900, 900]",                  (1, 1, 0, 0, 0, 0, 1)),  # first box counts ...
    ("<answer>[500, 500, 900, 900] then [2, 2, 12, 17]</answer>",   (0, 0, 0, 0, 0, 1, 0)),  # ... Curr-ReFT's last
    ("[-500, -500, 375, 708]",                                      (1, 1, 0, 0, 0, 0, 0)),  # clipped by strict only
    ("no box here",                                                 (0, 0, 0, 0, 0, 0, 0)),
    ("[nan, nan, 1, 1]",                                            (0, 0, 0, 0, 0, 0, 0)),
    ("[" + "9" * 400 + ", 0, 1, 1]",                                (0, 0, 0, 0, 0, 0, 0)),  # overflows to inf
    ("",                                                            (0, 0, 0, 0, 0, 0, 0)),
]


def _left_guy(task):
    return next(s for s in task.samples() if s.fields["expression"] == "left guy")


@pytest.mark.parametrize("output,expected", GROUND, ids=[o[:40] for o, _ in GROUND])
def test_grounding_under_every_profile(data_root, output, expected):
    task = make_task("refcoco_val")
    sample = _left_guy(task)
    assert sample.target == [2.0, 2.0, 12.0, 17.0] and sample.images[0].size == (32, 24)
    got = []
    for name in NAMES:
        parsed, scores = task.evaluate(output, sample, CONV, get_profile(name))
        assert set(scores) == set(GROUNDING_METRICS)
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in scores.values()), (name, scores)
        got.append(int(scores["acc@0.5"]))
    assert tuple(got) == expected


def test_threshold_comparison_and_overlap_rules_are_profile_settings():
    gold = (0.0, 0.0, 10.0, 10.0)
    half = (0.0, 0.0, 10.0, 5.0)  # IoU exactly 0.5
    assert iou(half, gold) == 0.5
    hits = {n: grounding_scores(half, gold, get_profile(n))["acc@0.5"] for n in NAMES}
    # >= 0.5: strict, lenient, lmms-eval, dc-sft; > 0.5: Visual-RFT's reward, VLM-R1, Curr-ReFT (and Ref-L4)
    assert hits == {"strict": 1, "lenient": 1, "visual-rft": 0, "vlm-r1": 0, "lmms-eval": 1, "curr-reft": 0,
                    "dc-sft": 1}
    # VLM-R1's IoU ignores overlaps of 1 px or less
    sliver = (0.0, 0.0, 1.0, 10.0)
    assert iou(sliver, gold) == pytest.approx(0.1)
    assert grounding_scores(sliver, gold, get_profile("vlm-r1"))["miou"] == 0.0
    assert grounding_scores(sliver, gold, get_profile("strict"))["miou"] == pytest.approx(0.1)
    # +1-pixel areas
    assert iou((0, 0, 9, 9), (0, 0, 9, 9), plus_one=True) == 1.0
    assert iou((0, 0, 9, 9), (0, 0, 4, 9), plus_one=True) == pytest.approx(0.5)
    # ACC@0.75 and @0.9 use the same comparison
    s = grounding_scores((0.0, 0.0, 10.0, 9.0), gold, get_profile("strict"))
    assert (s["acc@0.5"], s["acc@0.75"], s["acc@0.9"]) == (1.0, 1.0, 1.0)
    s = grounding_scores((0.0, 0.0, 10.0, 8.0), gold, get_profile("strict"))
    assert (s["acc@0.75"], s["acc@0.9"]) == (1.0, 0.0)


def test_box_reader_edge_cases():
    strict, size = get_profile("strict"), (100, 50)
    assert read_answer_box("[10, 10, 10, 10]", size, CONV, strict)[0] == (1.0, 0.5, 1.0, 0.5)  # degenerate, kept
    assert grounding_scores((1.0, 0.5, 1.0, 0.5), (0.0, 0.0, 10.0, 10.0), strict)["miou"] == 0.0
    assert read_answer_box("[0, 0, 2000, 2000]", size, CONV, strict)[0] == (0.0, 0.0, 100.0, 50.0)  # clipped
    assert read_answer_box("[1, 2, 3, 4]", (0, 0), CONV, strict) == (None, "image size unknown (unreadable image)")
    assert read_answer_box("[" + "9" * 400 + ", 1, 2, 3]", size, CONV, strict)[1] == \
        "box coordinates too large to represent"
    # a degenerate gold box (a bad annotation) scores 0, never divides by zero
    assert grounding_scores((0.0, 0.0, 1.0, 1.0), (5.0, 5.0, 5.0, 5.0), strict)["miou"] == 0.0


# ----------------------------------------------------------------------------- harness score / compare-profiles
def _predictions(path, task, outputs):
    samples = list(task.samples())
    with open(path, "w") as f:
        for sample, out in zip(samples, outputs):
            f.write(json.dumps({"sample_id": sample.id, "output": out}) + "\n")


def test_harness_score_gives_the_reference_numbers_under_each_profile(data_root, tmp_path, capsys):
    task = make_task("imagenet_val")
    n = len(task)
    outputs = [o for o, _ in CLS][:n] + ["tench"] * max(0, n - len(CLS))
    preds = tmp_path / "preds.jsonl"
    _predictions(preds, task, outputs)
    expected = {}
    for name in NAMES:
        hits = 0
        for sample, out in zip(task.samples(), outputs):
            hits += int(task.evaluate(out, sample, CONV, get_profile(name))[1]["acc"])
        expected[name] = hits / n
    for name in NAMES:
        assert main(["score", "--task", "imagenet_val", "--predictions", str(preds), "--profile", name,
                     "--format", "json", "--bootstrap", "0"]) == 0
        agg = json.loads(capsys.readouterr().out)
        assert agg["metrics"]["acc"]["value"] == expected[name] and agg["profile"] == name and agg["n"] == n
    assert len(set(expected.values())) > 2  # the profiles really differ on these outputs


def test_compare_profiles_prints_a_run_under_every_profile(data_root, tmp_path, capsys):
    from fake_backend import FakeBackend

    from harness.evaluator import EvalConfig, run_eval

    class Replay(FakeBackend):
        """Answers every prompt with a fixed output per (image, prompt text)."""

        def __init__(self, table):
            self._conv, self.table = CONV, table

        def generate(self, prompts, params):
            return [[self.table[(p.images[0].uri, p.text)]] for p in prompts]

    task = make_task("refcoco_val")
    outputs = [g for g, _ in GROUND]
    samples = list(task.samples())
    table = {(s.images[0].uri, task.prompt(s, CONV).text): outputs[i] for i, s in enumerate(samples)}
    run = tmp_path / "run"
    run_eval(EvalConfig(model="fake", tasks=["refcoco_val"], output_path=str(run), progress=False, n_boot=0),
             backend=Replay(table))
    assert main(["compare-profiles", str(run), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (row,) = result["tasks"]
    assert result["profiles"] == ALL and row["task"] == "refcoco_val" and row["n"] == len(samples)
    for name in NAMES:
        assert main(["score", "--task", "refcoco_val", "--predictions", str(run / "records" / "refcoco_val.jsonl"),
                     "--profile", name, "--format", "json", "--bootstrap", "0"]) == 0
        agg = json.loads(capsys.readouterr().out)
        assert row["metrics"]["acc@0.5"][name] == agg["metrics"]["acc@0.5"]["value"]
    assert main(["compare-profiles", str(run)]) == 0
    text = capsys.readouterr().out
    assert "strict" in text and "dc-sft" in text and "profiles differ on: refcoco_val acc@0.5" in text


def test_compare_profiles_errors(tmp_path):
    from harness.errors import UsageError
    from harness.profile_compare import compare_profiles

    with pytest.raises(UsageError, match="not a run directory"):
        compare_profiles(tmp_path)
    with pytest.raises(KeyError, match="unknown protocol profile 'nope'"):
        compare_profiles(tmp_path, profiles=["nope"])
