"""harness.answers: answer extraction, normalisation, label matching and the small parsers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.answers import (
    extract_answer,
    has_format_tags,
    match_label,
    normalize_text,
    parse_choice,
    parse_number,
    parse_yesno,
)
from harness.protocol import LENIENT, PROFILES, STRICT, ProtocolProfile, get_profile

NO_TAGS = replace(STRICT, answer_tags="none")

# ----------------------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("circle", "circle"),
        ("  circle \n", "circle"),
        ("<answer>circle</answer>", "circle"),
        ("<answer> circle </answer>", "circle"),
        ("<think>it has no corners</think><answer>circle</answer>", "circle"),
        ("<think>maybe a square</think>\n<answer>\ncircle\n</answer>", "circle"),
        ("<ANSWER>circle</ANSWER>", "circle"),  # tags are case-insensitive
        ("<answer>circle", "circle"),  # unclosed answer tag: to the end of the output
        ("<think>hmm</think> circle", "circle"),  # no answer tag: the think block is dropped
        ("<think>no end of thinking, square", ""),  # unclosed think swallows the rest
        ("<answer>first</answer><answer>second</answer>", "first"),
        ("<answer>multi\nline</answer>", "multi\nline"),
        ("", ""),
    ],
)
def test_extract_answer_with_tags(text, expected):
    assert extract_answer(text, STRICT) == expected


def test_extract_answer_without_tag_handling_keeps_everything():
    assert extract_answer(" <answer>circle</answer> ", NO_TAGS) == "<answer>circle</answer>"
    assert extract_answer("<think>x</think>circle", NO_TAGS) == "<think>x</think>circle"


def test_has_format_tags():
    assert has_format_tags("<think>a</think><answer>b</answer>")
    assert has_format_tags(" <think>a\nb</think>\n<answer>c</answer>\n")
    assert not has_format_tags("<answer>b</answer>")
    assert not has_format_tags("<think>a</think>")
    assert not has_format_tags("<think>a</think><answer>b</answer> trailing")


# ----------------------------------------------------------------------------- normalize_text / match_label


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Circle.", "circle"),
        ("  A  big   Red  circle! ", "big red circle"),
        ("The answer: the square", "answer square"),
        ("an apple", "apple"),
        ("theatre", "theatre"),  # articles only as whole words
        ("", ""),
        ("!!!", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


def test_match_label_exact():
    assert match_label("Circle.", "circle", STRICT)
    assert match_label("a circle", "circle", STRICT)
    assert not match_label("it is a circle", "circle", STRICT)
    assert not match_label("circles", "circle", STRICT)
    assert not match_label("circle", "", STRICT)  # an empty gold label never matches
    assert not match_label("", "circle", STRICT)


def test_match_label_lenient():
    assert LENIENT.label_matching == "lenient" and LENIENT.name == "lenient"
    assert match_label("It is a circle.", "circle", LENIENT)
    assert match_label("circle", "circle", LENIENT)
    assert not match_label("semicircle", "circle", LENIENT)  # whole words only
    assert not match_label("circles", "circle", LENIENT)
    assert match_label("the red circle on the left", "red circle", LENIENT)
    assert not match_label("anything", "", LENIENT)


def test_profiles_registry():
    assert get_profile("strict") is STRICT and get_profile("lenient") is LENIENT
    assert list(PROFILES) == ["strict", "lenient", "visual-rft", "vlm-r1", "lmms-eval", "curr-reft", "dc-sft",
                              "mathvista"]
    with pytest.raises(KeyError, match="known: curr-reft, dc-sft, lenient, lmms-eval, mathvista, strict, visual-rft, "
                                      "vlm-r1"):
        get_profile("loose")
    # run configs written before answer_tags replaced use_answer_tags still load
    assert ProtocolProfile.from_dict({"name": "x", "use_answer_tags": False}).answer_tags == "none"
    assert ProtocolProfile.from_dict({**LENIENT.to_dict(), "unknown": 1}) == LENIENT


def test_iou_hit_inclusive_and_exclusive():
    assert STRICT.iou_hit(0.5) and STRICT.iou_hit(0.51) and not STRICT.iou_hit(0.49)
    exclusive = replace(STRICT, iou_inclusive=False)
    assert not exclusive.iou_hit(0.5) and exclusive.iou_hit(0.500001)


# ----------------------------------------------------------------------------- parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3.0),
        ("There are 4 shapes.", 4.0),
        ("-2", -2.0),
        ("2.5 apples", 2.5),
        ("12 and 7", 12.0),  # the first number
        ("three", 3.0),
        ("There are Five shapes.", 5.0),
        ("zero", 0.0),
        ("twelve", 12.0),
        ("one or 2", 2.0),  # digits win over number words
    ],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("text", ["", "none", "many shapes", "someone", "thirteen", "[[["])
def test_parse_number_none(text):
    assert parse_number(text) is None


# ----------------------------------------------------------------------------- parse_choice


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", 1),
        ("A", 0),
        (" D ", 3),
        ("(C)", 2),
        ("C)", 2),
        ("B. square", 1),
        ("B: square", 1),
        ("The answer is D", 3),
        ("The answer is (A).", 0),
        ("Answer: C", 2),
        ("I pick option B", 1),
    ],
)
def test_parse_choice(text, expected):
    assert parse_choice(text, 4) == expected


@pytest.mark.parametrize("text", ["", "square", "blah", "999999", "[[[", "Because", "BA", "Dog"])
def test_parse_choice_garbage_is_none(text):
    assert parse_choice(text, 4) is None


def test_parse_choice_letter_out_of_range_is_none():
    assert parse_choice("E", 4) is None
    assert parse_choice("The answer is E", 4) is None
    assert parse_choice("C", 2) is None
    assert parse_choice("B", 2) == 1


@pytest.mark.parametrize("text", ["The answer is d", "the answer is b", "answer is a square", "option c"])
def test_parse_choice_lowercase_never_raises(text):
    # Regression: the fallback pattern is case-insensitive, and a lower-case letter used to
    # reach ``letters.index`` and raise ValueError (crashing scoring of the whole batch).
    # Option letters are upper case, as everywhere else in this parser: these are no choice.
    assert parse_choice(text, 4) is None


# ----------------------------------------------------------------------------- parse_yesno


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes", True),
        ("Yes.", True),
        ("YES, it is", True),
        ("true", True),
        ("no", False),
        ("No, it is not.", False),
        ("False", False),
        ("", None),
        ("maybe", None),
        ("I think yes", None),  # only the first word counts
        ("nope", None),
        ("yesterday", None),
    ],
)
def test_parse_yesno(text, expected):
    assert parse_yesno(text) is expected
