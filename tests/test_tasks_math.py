"""Math loaders on fixtures in their upstream formats: ids, gold answers, errors, perfect
answers under every profile, :mc/:yesno, suites, and where profiles differ on a task."""

from __future__ import annotations

import json

import pytest
from fixtures_math import (
    MATHVISTA,
    write_clevr,
    write_conversations,
    write_curr_reft,
    write_mathvista,
)

from harness.conventions import ModelConventions
from harness.data import DatasetMissing
from harness.protocol import get_profile
from harness.taskspec import make_task, resolve

CONV = ModelConventions()
STRICT = get_profile("strict")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    return tmp_path


def _perfect(task, profiles=("strict", "mathvista", "curr-reft")):
    for sample in task.samples():
        gold = task.target(sample, CONV)
        for name in profiles:
            parsed, scores = task.evaluate(gold, sample, CONV, get_profile(name))
            assert scores["acc"] == 1.0, (task.full_name, sample.id, name, gold, parsed)


@pytest.mark.parametrize("container", ["json", "parquet"])
def test_mathvista_reads_testmini(root, container):
    write_mathvista(root, container)
    task = make_task("mathvista_testmini")
    samples = list(task.samples())
    assert [s.id for s in samples] == list(MATHVISTA)
    by_id = {s.id: s for s in samples}
    assert by_id["3"].fields["problem"]["choices"] == ["135°", "140°", "145°", "150°"]
    assert by_id["1"].fields["problem"]["precision"] == 1 and by_id["2"].fields["problem"]["unit"] == "g"
    assert by_id["506"].target == "[2014, 2016]" and by_id["3"].images[0].size == (32, 24)
    assert by_id["108"].images[0].load().size == (32, 24)
    q = task.prompt(by_id["3"], CONV).text
    assert "(C) 145°" in q and q.endswith("Answer with the option's letter.")
    assert "(Unit: g)" in task.prompt(by_id["2"], CONV).text
    assert "2 decimal places" in task.prompt(by_id["108"], CONV).text
    assert task.answer_text(by_id["3"], CONV) == "C"
    _perfect(task)


def test_mathvista_profiles_differ_on_the_task(root):
    write_mathvista(root)
    task = make_task("mathvista_testmini")
    s = task.get_sample("1")  # float, precision 1, answer 3.5
    got = {p: task.evaluate("3.50", s, CONV, get_profile(p))[1]["acc"] for p in ("strict", "mathvista", "lmms-eval")}
    assert got == {"strict": 1.0, "mathvista": 1.0, "lmms-eval": 0.0}
    s = task.get_sample("7")  # Yes/No options, answer No: an empty answer is the shortest option
    got = {p: task.evaluate("", s, CONV, get_profile(p))[1]["acc"] for p in ("strict", "mathvista", "curr-reft")}
    assert got == {"strict": 0.0, "mathvista": 1.0, "curr-reft": 1.0}
    parsed, _ = task.evaluate("", s, CONV, STRICT)
    assert parsed.failure == "empty answer"


def test_mathvista_mc_and_yesno_formats(root):
    write_mathvista(root)
    for fmt in ("mc", "yesno"):
        task = make_task("mathvista_testmini", fmt)
        for s in task.samples():
            gold = task.target(s, CONV)
            assert task.target(s, CONV) == gold  # deterministic
            assert task.evaluate(gold, s, CONV, STRICT)[1]["acc"] == 1.0
        assert "Options:" in task.prompt(task.get_sample("2"), CONV).text or fmt == "yesno"


def test_mathvista_missing_and_malformed(root):
    with pytest.raises(DatasetMissing, match="mathvista: not found.*testmini.json"):
        make_task("mathvista_testmini").index()
    (root / "mathvista").mkdir()
    (root / "mathvista" / "testmini.json").write_text('{"1": {"question": "q"')
    with pytest.raises(DatasetMissing, match="not valid JSON"):
        make_task("mathvista_testmini").index()
    bad = {"1": dict(MATHVISTA["3"], answer="999°")}
    (root / "mathvista" / "testmini.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetMissing, match="must be one of its choices"):
        make_task("mathvista_testmini").index()
    bad = {"1": {k: v for k, v in MATHVISTA["1"].items() if k != "answer_type"}}
    (root / "mathvista" / "testmini.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetMissing, match="has no answer_type"):
        make_task("mathvista_testmini").index()
    bad = {"1": dict(MATHVISTA["1"], precision=None)}
    (root / "mathvista" / "testmini.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetMissing, match="needs a precision"):
        make_task("mathvista_testmini").index()


def test_conversations_pool_and_heldout(root):
    wrote = write_conversations(root)
    train, held = make_task("math_train"), make_task("math_id")
    ids = [s.id for s in train.samples()] + [s.id for s in held.samples()]
    assert sorted(ids) == sorted(wrote["ids"])  # 4 rows < 1,000: all held out, train empty
    assert len(held) == 4 and len(train) == 0
    by_id = {s.id: s for s in held.samples()}
    assert by_id["mathv360k:m1"].fields["problem"]["answer"] == "square"
    assert by_id["mathv360k:m2"].target == "7" and by_id["geo170k:0"].fields["problem"]["answer"] == "4.0"
    assert by_id["geo170k:1"].fields["problem"]["answer_type"] == "float"
    assert held.notes()["mathv360k_without_answer_first_ids"] == wrote["skipped"]
    _perfect(held)


def test_conversations_malformed(root):
    write_conversations(root)
    (root / "math" / "Geo170K" / "qa_tuning.json").write_text(json.dumps([{"image": "x.png"}]))
    with pytest.raises(DatasetMissing, match="row 0 has no conversations"):
        make_task("math_id").index()
    (root / "math" / "Geo170K" / "qa_tuning.json").unlink()
    with pytest.raises(DatasetMissing, match="missing Geo170K/qa_tuning.json"):
        make_task("math_id").index()


def test_curr_reft_rows_and_counting(root):
    wrote = write_curr_reft(root)
    test = make_task("curr_reft_math_test")
    assert [s.id for s in test.samples()] == wrote["math_ids"]
    s = test.get_sample("math_math_test:2")
    assert s.fields["problem"]["choices"] == ["2", "5"] and test.answer_text(s, CONV) == "B"
    assert s.images[0].uri.endswith("grpo_data/images/math/2.png") and s.images[0].size == (32, 24)
    _perfect(test)
    count = make_task("superclevr_count200")
    assert [s.id for s in count.samples()] == wrote["count_ids"]
    s = count.get_sample("superclevr_test200_counting_problems:2")
    assert s.target == 9 and s.images[0].uri.endswith("superclevr/images/superCLEVR_new_025001.png")
    _perfect(count, ("strict", "curr-reft"))
    # Curr-ReFT's OOD check: the count anywhere in the raw output
    assert count.evaluate("<think>19 parts</think><answer>1</answer>", s, CONV, get_profile("curr-reft"))[1]["acc"] == 1
    assert count.evaluate("<think>19 parts</think><answer>1</answer>", s, CONV, STRICT)[1]["acc"] == 0


def test_curr_reft_rows_malformed(root):
    write_curr_reft(root)
    path = root / "superclevr" / "superclevr_test200_counting_problems.jsonl"
    path.write_text('{"image": "a.png", "problem": "How many?", "solution": "four"}\n')
    with pytest.raises(DatasetMissing, match="line 1: solution must be a non-negative integer"):
        make_task("superclevr_count200").index()
    path.write_text('{"image": "a.png", "problem": \n')
    with pytest.raises(DatasetMissing, match="line 1 is not valid JSON"):
        make_task("superclevr_count200").index()


def test_clevr_counting_questions(root):
    wrote = write_clevr(root)
    task = make_task("clevr_count_val")
    samples = list(task.samples())
    assert [s.id for s in samples] == wrote["ids"] and [s.target for s in samples] == wrote["counts"]
    assert task.prompt(samples[0], CONV).text == "How many cubes are there?\nAnswer with a number."
    _perfect(task, ("strict", "curr-reft"))
    for fmt in ("mc", "yesno"):
        t = make_task("clevr_count_val", fmt)
        for s in t.samples():
            assert t.evaluate(t.target(s, CONV), s, CONV, STRICT)[1]["acc"] == 1.0


def test_clevr_missing(root):
    with pytest.raises(DatasetMissing, match="clevr: not found"):
        make_task("clevr_count_val").index()


def test_suites_resolve():
    assert [r.full_name for r in resolve("math")] == ["math_id", "clevr_count_val", "mathvista_testmini"]
    assert [r.full_name for r in resolve("curr_reft_math")] == ["curr_reft_math_test", "superclevr_count200"]
