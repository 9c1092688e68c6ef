"""The synthetic suite: determinism, splits, gold targets, derived formats, robustness, OOD shifts, pretrain stream."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import re
import string

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.answers import parse_choice  # noqa: E402
from harness.conventions import ABS, NORM1, NORM1000, ModelConventions  # noqa: E402
from harness.protocol import STRICT  # noqa: E402
from harness.registry import SUITES, TASKS  # noqa: E402
from harness.scoring import score_output  # noqa: E402
from harness.task import FORMATS, MC, OPEN, YESNO  # noqa: E402
from tasks.synthetic.scene import BASE_COLOURS, NOVEL_COLOURS  # noqa: E402

CONV = ModelConventions()  # generic: norm1000
ALL = sorted(n for n in TASKS.names() if n.startswith("synth_"))
EVAL = [t for s in SUITES.names() if s.startswith("synth_") for t in SUITES.get(s).eval_tasks]
TRAIN = [SUITES.get(s).train for s in SUITES.names() if s.startswith("synth_")]
GARBAGE = ["", "blah", "[[[", "999999", "<answer></answer>", "<think>", "   ", "(((", "\x00\n", "-"]


def task(name: str, fmt: str = OPEN, size: int | None = None):
    return TASKS.get(name)(fmt=fmt, size=size)


def png(sample) -> bytes:
    buf = io.BytesIO()
    sample.images[0].load().save(buf, format="PNG")
    return buf.getvalue()


def digest(sample) -> str:
    return hashlib.sha256(sample.images[0].load().tobytes()).hexdigest()


def test_suite_layout():
    # four families x (train, ID, OOD...) = 14, plus the study suite's three 1,500-sample splits
    assert len(ALL) == 17
    assert len(set(EVAL)) == 13 and len(set(TRAIN)) == 4
    assert set(EVAL) | set(TRAIN) == set(ALL)


# ----------------------------------------------------------------------------- determinism and splits


@pytest.mark.parametrize("name", ALL)
def test_same_id_same_sample_across_fresh_instances(name):
    for i in (0, 7):
        a, b = task(name).make_sample(i), task(name).make_sample(i)
        assert a.id == b.id == f"{i:06d}"
        assert png(a) == png(b)
        assert a.target == b.target and a.metadata == b.metadata and a.fields == b.fields
        assert a.images[0].uri == b.images[0].uri == f"synthetic://{name}/{i}"
        assert a.images[0].size == a.images[0].load().size == (112, 112)
        for fmt in FORMATS:
            ta, tb = task(name, fmt), task(name, fmt)
            assert ta.prompt(a, CONV).text == tb.prompt(b, CONV).text
            assert ta.target(a, CONV) == tb.target(b, CONV)


@pytest.mark.parametrize("suite", ["synth_cls", "synth_ground", "synth_detect", "synth_count"])
def test_different_splits_give_different_samples(suite):
    s = SUITES.get(suite)
    splits = (s.train, *s.id, *s.ood)
    images = {name: [digest(task(name).make_sample(i)) for i in range(5)] for name in splits}
    for a, b in itertools.combinations(splits, 2):
        assert not set(images[a]) & set(images[b]), (a, b)
    assert len(set(images[s.train])) == 5  # and the samples within one split differ


@pytest.mark.parametrize("name", ["synth_cls_id", "synth_ground_long", "synth_detect_novel", "synth_count_arith"])
def test_get_sample_equals_streamed_sample(name):
    t = task(name, size=12)
    streamed = list(t.samples())
    assert [s.id for s in streamed] == [f"{i:06d}" for i in range(12)]
    for s in (streamed[0], streamed[5], streamed[11]):
        g = t.get_sample(s.id)
        assert (g.id, g.target, g.metadata, g.fields) == (s.id, s.target, s.metadata, s.fields)
        assert png(g) == png(s)
    with pytest.raises(KeyError):
        t.get_sample("000012")  # outside the (resized) split
    with pytest.raises(KeyError):
        t.get_sample("abc")


@pytest.mark.parametrize("name", sorted(set(EVAL)))
def test_every_eval_sample_can_be_generated(name):
    # Regression: crowded scenes (6 objects) used to fail placement with RuntimeError
    # ("could not place 6 objects"), e.g. synth_count_arith sample 216.
    t = task(name)
    size = 1500 if name.endswith("_1500") else 300
    assert len(t) == size
    n = sum(1 for _ in t.samples())
    assert n == size


def test_crowded_train_scenes_can_be_generated():
    t = task("synth_count_train")
    for i in (166, 875, 1047, 1162, 1437):  # indices that used to fail placement
        s = t.make_sample(i)
        boxes = [o.box for o in s.fields["scene"].objects]
        assert len(boxes) == s.metadata["n_objects"]
        assert all(0 <= b[0] and 0 <= b[1] and b[2] <= 112 and b[3] <= 112 for b in boxes)


@pytest.mark.parametrize("name", ["synth_ground_id", "synth_ground_long", "synth_detect_base", "synth_detect_novel"])
def test_box_task_objects_span_an_image_token(name):
    """Boxes of grounding and detection targets are at least ~one tiny-model image token
    (28 px) across, so the tiny model can localise them at token resolution."""
    t = task(name)
    sides = []
    for i in range(150):
        s = t.make_sample(i)
        targets = [s.target] if t.family == "grounding" else s.target
        sides += [min(b[2] - b[0], b[3] - b[1]) for b in targets]
        assert 1 <= len(s.fields["scene"].objects) <= 3
    assert min(sides) >= 20 and sum(sides) / len(sides) >= 28, (min(sides), sum(sides) / len(sides))


def test_placement_steps_sizes_down_when_crowded():
    from tasks.synthetic.scene import SIDE, _smaller, place

    assert _smaller("xlarge") == ("large",) and _smaller(("large", "xlarge")) == ("small",) and _smaller("small") == ("small",)
    # six very large objects cannot fit in 112x112: placement falls back to smaller sizes
    objs = place(random.Random(0), [("circle", "red", "xlarge")] * 6)
    assert len(objs) == 6 and {o.size for o in objs} <= {"small", "large"}
    boxes = [o.box for o in objs]
    assert all(0 <= b[0] and b[2] <= SIDE and 0 <= b[1] and b[3] <= SIDE for b in boxes)
    # and an arrangement that fits keeps what was asked
    assert {o.size for o in place(random.Random(0), [("square", "blue", "xlarge")])} == {"xlarge"}


def test_sample_fingerprints_identify_the_data():
    assert task("synth_cls_id").fingerprint() == task("synth_cls_id", MC).fingerprint()
    assert task("synth_cls_id").fingerprint() != task("synth_cls_style").fingerprint()
    assert task("synth_cls_id").fingerprint() != task("synth_cls_id", size=10).fingerprint()


# ----------------------------------------------------------------------------- gold targets

N_GOLD = 25


def _check_gold(name: str, fmt: str, conv: ModelConventions, n: int = N_GOLD, min_miou: float = 0.95) -> None:
    t = task(name, fmt, size=n)
    for s in t.samples():
        target = t.target(s, conv)
        parsed, scores = t.evaluate(target, s, conv, STRICT)
        assert parsed.ok, (name, fmt, s.id, target, parsed)
        assert set(scores) == set(t.metrics)
        if fmt == OPEN and t.family == "grounding":
            assert scores["acc@0.5"] == 1.0 and scores["miou"] > min_miou, (name, s.id, scores)
        elif fmt == OPEN and t.family == "detection":
            assert scores == {"f1": 1.0, "precision": 1.0, "recall": 1.0}, (name, s.id, scores)
        else:
            assert scores == {"acc": 1.0}, (name, fmt, s.id, target, scores)
        # the same through the answer tags of R1-style outputs
        tagged = f"<think>looking at the image</think><answer>{target}</answer>"
        assert t.evaluate(tagged, s, conv, STRICT)[1] == scores


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ALL)
def test_gold_target_scores_perfectly(name, fmt):
    _check_gold(name, fmt, CONV)


@pytest.mark.parametrize("space", [NORM1000, NORM1, ABS])
@pytest.mark.parametrize("name", ["synth_ground_id", "synth_detect_base"])
def test_gold_target_scores_perfectly_in_every_box_space(name, space):
    # whole pixels of a 112 px image are a coarser grid than 0-1000: small boxes lose some IoU
    _check_gold(name, OPEN, ModelConventions(box_space=space), n=15, min_miou=0.85 if space == ABS else 0.95)


def test_grounding_answer_is_in_the_models_space():
    t = task("synth_ground_id")
    s = t.make_sample(0)
    x1, y1, x2, y2 = s.target
    assert t.answer_text(s, ModelConventions(box_space=ABS)) == f"[{round(x1)}, {round(y1)}, {round(x2)}, {round(y2)}]"
    k = 1000 / 112
    assert t.answer_text(s, CONV) == f"[{round(x1 * k)}, {round(y1 * k)}, {round(x2 * k)}, {round(y2 * k)}]"
    assert CONV.describe_space() in t.prompt(s, CONV).text
    assert ModelConventions(box_space=ABS).describe_space() in t.prompt(s, ModelConventions(box_space=ABS)).text


# ----------------------------------------------------------------------------- multiple choice

# Wrong options must never score as correct (random detection distractors once could).
@pytest.mark.parametrize("name", ALL)
def test_mc_has_exactly_one_correct_option(name):
    mc, open_ = task(name, MC, size=150), task(name)
    for s in mc.samples():
        options, correct = mc._options(s, CONV)
        assert len(options) == mc.n_options == 4 and len(set(options)) == 4, (s.id, options)
        assert options[correct] == open_.answer_text(s, CONV)
        good = [i for i, o in enumerate(options)
                if open_.evaluate(o, s, CONV, STRICT)[1][open_.primary_metric] == 1.0]
        assert good == [correct], (s.id, options, correct)


@pytest.mark.parametrize("name", ALL)
def test_mc_prompt_and_letter_target(name):
    mc = task(name, MC, size=20)
    letters = []
    for s in mc.samples():
        options, correct = mc._options(s, CONV)
        text = mc.prompt(s, CONV).text
        for i, o in enumerate(options):
            assert f"{string.ascii_uppercase[i]}. {o}" in text
        target = mc.target(s, CONV)
        assert target == string.ascii_uppercase[correct]
        assert parse_choice(target, 4) == correct
        wrong = string.ascii_uppercase[(correct + 1) % 4]
        assert mc.evaluate(wrong, s, CONV, STRICT)[1] == {"acc": 0.0}
        assert mc.evaluate(f"The answer is {target}", s, CONV, STRICT)[1] == {"acc": 1.0}
        letters.append(target)
    assert len(set(letters)) >= 3  # the correct position is shuffled


# ----------------------------------------------------------------------------- yes / no


@pytest.mark.parametrize("name", EVAL)
def test_yesno_claims_are_balanced_and_truthful(name):
    yn, open_ = task(name, YESNO, size=200), task(name)
    truths = []
    for s in yn.samples():
        claim, truth = yn._claim(s, CONV)
        truths.append(truth)
        assert claim in yn.prompt(s, CONV).text
        assert yn.target(s, CONV) == ("yes" if truth else "no")
        claim_correct = open_.evaluate(claim, s, CONV, STRICT)[1][open_.primary_metric] == 1.0
        assert claim_correct == truth, (s.id, claim, truth)
        flipped = "no" if truth else "yes"
        assert yn.evaluate(flipped, s, CONV, STRICT)[1] == {"acc": 0.0}
    assert 0.38 <= sum(truths) / len(truths) <= 0.62


# ----------------------------------------------------------------------------- garbage and rewards


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ALL)
def test_garbage_never_raises_and_scores_zero(name, fmt):
    t = task(name, fmt, size=3)
    for s in t.samples():
        for out in GARBAGE:
            parsed, scores = t.evaluate(out, s, CONV, STRICT)
            assert set(scores) == set(t.metrics)
            assert all(v == 0.0 for v in scores.values()), (name, fmt, out, parsed, scores)
            assert t.reward(out, s, CONV, STRICT) == 0.0
        assert not t.evaluate("", s, CONV, STRICT)[0].ok  # an empty answer is a parse failure


@pytest.mark.parametrize("name", ALL)
def test_garbage_is_recorded_as_failure_or_zero(name):
    t = task(name, size=2)
    s = t.make_sample(1)
    rec = score_output(t, s, 1, "blah", CONV, STRICT)
    assert rec["scores"][t.primary_metric] == 0.0
    if rec["failure"] is None:
        assert rec["parsed"] is not None
    else:
        assert rec["parsed"] is None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["synth_cls_id", "synth_ground_id", "synth_detect_base", "synth_count_arith"])
def test_reward_is_the_primary_metric(name, fmt):
    t = task(name, fmt, size=6)
    for s in t.samples():
        gold = t.target(s, CONV)
        wrong = t.wrong_answers(s, CONV, random.Random(0), 2) if fmt == OPEN else []
        candidates = [gold, "blah", "", *wrong]
        for out in candidates:
            expected = t.evaluate(out, s, CONV, STRICT)[1][t.primary_metric]
            assert t.reward(out, s, CONV, STRICT) == expected
        assert t.reward(gold, s, CONV, STRICT) == 1.0


def test_grounding_partial_credit():
    t = task("synth_ground_id")
    s = t.make_sample(3)
    x1, y1, x2, y2 = s.target
    w = x2 - x1
    shifted = ModelConventions(box_space=ABS)
    # shifted right by half the width: IoU = 1/3
    parsed, scores = t.evaluate(f"[{x1 + w / 2}, {y1}, {x2 + w / 2}, {y2}]", s, shifted, STRICT)
    assert scores["acc@0.5"] == 0.0 and scores["miou"] == pytest.approx(1 / 3, abs=0.02)
    assert t.reward(f"[{x1 + w / 2}, {y1}, {x2 + w / 2}, {y2}]", s, shifted, STRICT) == 0.0


def test_detection_partial_and_extra_boxes():
    t = task("synth_detect_base")
    abs_conv = ModelConventions(box_space=ABS)
    s = next(s for s in t.samples() if len(s.target) >= 2)
    boxes = ", ".join(f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]" for b in s.target)
    n = len(s.target)
    one = s.target[0]
    _, scores = t.evaluate(f"[[{one[0]}, {one[1]}, {one[2]}, {one[3]}]]", s, abs_conv, STRICT)
    assert scores == {"f1": pytest.approx(2 / (1 + n)), "precision": 1.0, "recall": pytest.approx(1 / n)}
    _, scores = t.evaluate(f"[{boxes}, [0, 0, 3, 3]]", s, abs_conv, STRICT)
    assert scores == {"f1": pytest.approx(2 * n / (2 * n + 1)), "precision": pytest.approx(n / (n + 1)), "recall": 1.0}
    parsed, scores = t.evaluate("There is no object of that category.", s, abs_conv, STRICT)
    assert parsed.ok and parsed.value == [] and scores == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


# ----------------------------------------------------------------------------- detection mAP


def _records(t, n):
    samples = itertools.islice(t.samples(), n)
    return [score_output(t, s, i, t.target(s, CONV), CONV, STRICT) for i, s in enumerate(samples)]


def test_detection_map_perfect_and_empty():
    t = task("synth_detect_base")
    recs = _records(t, 30)
    assert t.corpus_metrics(recs, STRICT) == {"map": 1.0, "map50": 1.0}  # gold outputs through the parser
    exact = [dict(r, parsed=r["target"]) for r in recs]
    assert t.corpus_metrics(exact, STRICT) == {"map": 1.0, "map50": 1.0}
    assert t.corpus_metrics([dict(r, parsed=[]) for r in recs], STRICT) == {"map": 0.0, "map50": 0.0}
    failed = [dict(r, parsed=None, failure="no box found") for r in recs]
    assert t.corpus_metrics(failed, STRICT) == {"map": 0.0, "map50": 0.0}


def test_detection_map_half_right():
    t = task("synth_detect_base")
    recs = _records(t, 30)
    # every other image: the prediction is far off
    mixed = [r if i % 2 == 0 else dict(r, parsed=[[0.0, 0.0, 2.0, 2.0]]) for i, r in enumerate(recs)]
    m = t.corpus_metrics(mixed, STRICT)
    assert 0.2 < m["map"] < 0.8 and 0.2 < m["map50"] < 0.8


# ----------------------------------------------------------------------------- OOD shifts


def _pixel_std(sample) -> float:
    """High-frequency energy: mean absolute difference of horizontally adjacent pixels."""
    arr = np.asarray(sample.images[0].load(), dtype=np.float32)
    return float(np.abs(np.diff(arr, axis=1)).mean())


def test_ood_styles():
    for name, style in (("synth_cls_id", "filled"), ("synth_cls_style", "outline"), ("synth_cls_clutter", "clutter"),
                        ("synth_ground_id", "filled"), ("synth_count_arith", "filled")):
        t = task(name, size=20)
        assert {s.metadata["style"] for s in t.samples()} == {style}, name
        assert {s.fields["scene"].style for s in t.samples()} == {style}
    # clutter is visibly noisy: far more pixel-to-pixel variation than plain backgrounds
    filled = np.mean([_pixel_std(task("synth_cls_id").make_sample(i)) for i in range(5)])
    clutter = np.mean([_pixel_std(task("synth_cls_clutter").make_sample(i)) for i in range(5)])
    assert clutter > 3 * filled
    assert all(s.fields["scene"].occlude for s in task("synth_cls_clutter", size=5).samples())


def test_detection_queries():
    novel = [s.fields["category"] for s in task("synth_detect_novel", size=100).samples()]
    base = [s.fields["category"] for s in task("synth_detect_base", size=100).samples()]
    train = [s.fields["category"] for s in task("synth_detect_train", size=100).samples()]
    assert set(novel) == set(NOVEL_COLOURS) == {"purple", "orange"}
    assert set(base) == set(BASE_COLOURS) and set(train) == set(BASE_COLOURS)
    assert not set(NOVEL_COLOURS) & set(BASE_COLOURS)
    for s in task("synth_detect_novel", size=20).samples():
        cat = s.fields["category"]
        objs = s.fields["scene"].objects
        assert len(s.target) == sum(o.colour == cat for o in objs) == s.metadata["n_targets"] >= 1


def test_expression_shift():
    short = task("synth_ground_id").make_sample(0).fields["expression"]
    long = task("synth_ground_long").make_sample(0).fields["expression"]
    reason = task("synth_ground_reason").make_sample(0).fields["expression"]
    assert len(short.split()) == 3 and short.startswith("the ")
    assert "part of the image" in long
    assert reason.startswith("the object that has the colour of")


def test_counting_targets_match_the_scene():
    for s in task("synth_count_id", size=30).samples():
        assert s.target == len(s.fields["scene"].objects) == s.metadata["n_objects"]
    ops = {s.metadata["op"] for s in task("synth_count_arith", size=30).samples()}
    assert ops == {"add", "subtract"}
    for s in task("synth_count_arith", size=30).samples():
        objs = s.fields["scene"].objects
        if s.metadata["op"] == "subtract":
            colour = s.fields["question"].split()[2]
            assert s.target == sum(o.colour != colour for o in objs)
        else:
            assert s.target > len(objs)


# ----------------------------------------------------------------------------- pretrain stream


def _pretrain(n, seed=0):
    from tasks.synthetic.pretrain import examples

    out = []
    for prompt, target in itertools.islice(examples(CONV, seed=seed), n):
        image = prompt.images[0]
        out.append((prompt.text, target, image.uri, hashlib.sha256(image.load().tobytes()).hexdigest()))
    return out


def test_pretrain_stream_is_deterministic():
    a, b = _pretrain(40), _pretrain(40)
    assert a == b
    assert _pretrain(40, seed=1) != a
    assert len({x[3] for x in a}) == 40  # no repeated image within the stream


def test_pretrain_stream_survives_crowded_scenes():
    # Regression: with seed 0 the stream used to raise "could not place 6 objects" at example 127,
    # i.e. within the tiny model's first pretraining steps.
    from tasks.synthetic.pretrain import examples

    n = sum(1 for _ in itertools.islice(examples(CONV, seed=0), 400))
    assert n == 400


def test_pretrain_samples_are_not_train_samples():
    pre = _pretrain(60)
    assert all(uri.startswith("synthetic://pretrain/") for _, _, uri, _ in pre)
    train_images = {digest(task(name).make_sample(i)) for name in TRAIN for i in range(100)}
    eval_images = {digest(task(name).make_sample(i)) for name in EVAL for i in range(20)}
    pre_images = {d for *_, d in pre}
    assert not pre_images & train_images
    assert not pre_images & eval_images


def test_pretrain_mixture_covers_families_and_formats():
    pre = _pretrain(200)
    splits = {uri.split("/")[3] for _, _, uri, _ in pre}
    assert splits == {"colour", "locate", "synth_cls_train", "synth_ground_train", "synth_detect_train", "synth_count_train"}
    mc = sum(t in ("A", "B", "C", "D") for _, t, _, _ in pre)
    yn = sum(t in ("yes", "no") for _, t, _, _ in pre)
    assert 5 <= mc <= 40 and 5 <= yn <= 40  # ~10 % each
    # coarse box targets: multiples of 50 on the 0-1000 scale
    boxes = [t for text, t, _, _ in pre if t.startswith("[") and "Options" not in text]
    numbers = [int(v) for t in boxes for v in re.findall(r"-?\d+(?:\.\d+)?", t)]
    assert boxes and numbers and all(v % 50 == 0 for v in numbers)
