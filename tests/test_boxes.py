"""harness.boxes: parsing, IoU (both pixel conventions), normalisation, clipping, matching."""

from __future__ import annotations

import pytest

from harness.boxes import box_area, clip_box, format_box, greedy_match, iou, normalize_box, parse_boxes

# ----------------------------------------------------------------------------- parse_boxes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[1, 2, 3, 4]", [(1.0, 2.0, 3.0, 4.0)]),
        ("[1,2,3,4]", [(1.0, 2.0, 3.0, 4.0)]),
        ("[ 10 , 20 , 30 , 40 ]", [(10.0, 20.0, 30.0, 40.0)]),
        ("(1,2),(3,4)", [(1.0, 2.0, 3.0, 4.0)]),
        ("(1, 2), (3, 4)", [(1.0, 2.0, 3.0, 4.0)]),
        ("(1,2) (3,4)", [(1.0, 2.0, 3.0, 4.0)]),  # the comma between the corners is optional
        ("<|box_start|>(100,200),(300,400)<|box_end|>", [(100.0, 200.0, 300.0, 400.0)]),
        ("[-1, -2.5, 3.25, +4]", [(-1.0, -2.5, 3.25, 4.0)]),
        ("The box is [12, 34, 56, 78].", [(12.0, 34.0, 56.0, 78.0)]),
        ("<answer>[0.1, 0.2, 0.3, 0.4]</answer>", [(0.1, 0.2, 0.3, 0.4)]),
    ],
)
def test_parse_boxes_single(text, expected):
    assert parse_boxes(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "abc", "[1,2,3]", "[1, 2]", "[]", "[[1, 2], [3, 4]]", "(1,2)", "(1,2),(3)", "[a, b, c, d]", "[[[", "999999",
     "[1 2 3 4]", "[1;2;3;4]"],
)
def test_parse_boxes_garbage_gives_nothing(text):
    assert parse_boxes(text) == []


def test_parse_boxes_five_numbers_is_not_a_box():
    assert parse_boxes("[1, 2, 3, 4, 5]") == []


def test_parse_boxes_nested_list_gives_every_inner_box_in_order():
    assert parse_boxes("[[1, 2, 3, 4], [5, 6, 7, 8]]") == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]
    assert parse_boxes("[[[1, 2, 3, 4]]]") == [(1.0, 2.0, 3.0, 4.0)]


def test_parse_boxes_mixed_forms_are_ordered_by_position():
    text = "first (5,6),(7,8) then [1, 2, 3, 4] and finally (9, 10), (11, 12)"
    assert parse_boxes(text) == [(5.0, 6.0, 7.0, 8.0), (1.0, 2.0, 3.0, 4.0), (9.0, 10.0, 11.0, 12.0)]


def test_parse_boxes_keeps_unordered_corners():
    # validation is normalize_box's job, not the parser's
    assert parse_boxes("[30, 40, 10, 20]") == [(30.0, 40.0, 10.0, 20.0)]


def test_parse_boxes_returns_floats():
    (box,) = parse_boxes("[1, 2, 3, 4]")
    assert all(type(v) is float for v in box)


# ----------------------------------------------------------------------------- iou


def test_iou_identical_is_one():
    assert iou((10, 20, 30, 50), (10, 20, 30, 50)) == 1.0
    assert iou((10, 20, 30, 50), (10, 20, 30, 50), plus_one=True) == 1.0


def test_iou_disjoint_is_zero():
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (0, 20, 10, 30)) == 0.0  # x overlaps, y does not


def test_iou_touching_edges():
    # No shared area in the continuous convention...
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    # ...but the inclusive-pixel convention counts the shared column x=10:
    # inter = 1 * 11 = 11, areas 11 * 11 = 121 each, union = 231.
    assert iou((0, 0, 10, 10), (10, 0, 20, 10), plus_one=True) == pytest.approx(11 / 231)


def test_iou_half_overlap_by_hand():
    a, b = (0, 0, 10, 10), (5, 0, 15, 10)
    # inter 5*10 = 50, union 100 + 100 - 50 = 150
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(b, a) == pytest.approx(1 / 3)


def test_iou_plus_one_by_hand():
    a, b = (0, 0, 10, 10), (5, 0, 15, 10)
    # widths/heights +1: areas 11*11 = 121, inter (10-5+1)*(10-0+1) = 66, union 242 - 66 = 176
    assert iou(a, b, plus_one=True) == pytest.approx(66 / 176)


def test_iou_contained_box():
    # inner 4x4 = 16 inside outer 10x10 = 100
    assert iou((0, 0, 10, 10), (3, 3, 7, 7)) == pytest.approx(16 / 100)


def test_iou_degenerate_boxes_are_zero():
    assert iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0  # zero area, zero union
    assert iou((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0


def test_box_area():
    assert box_area((0, 0, 10, 5)) == 50.0
    assert box_area((0, 0, 10, 5), plus_one=True) == 66.0
    assert box_area((10, 10, 0, 0)) == 0.0  # inverted corners never give negative area


# ----------------------------------------------------------------------------- normalize / clip / format


def test_normalize_box_orders_corners():
    assert normalize_box((30, 40, 10, 20)) == (10.0, 20.0, 30.0, 40.0)
    assert normalize_box((10, 40, 30, 20)) == (10.0, 20.0, 30.0, 40.0)
    assert normalize_box([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    assert all(type(v) is float for v in normalize_box((1, 2, 3, 4)))


def test_normalize_box_wrong_length_raises():
    with pytest.raises(ValueError):
        normalize_box((1, 2, 3))


def test_clip_box():
    assert clip_box((-5.0, -5.0, 200.0, 50.0), (100, 80)) == (0.0, 0.0, 100, 50.0)
    assert clip_box((10.0, 10.0, 20.0, 20.0), (100, 80)) == (10.0, 10.0, 20.0, 20.0)
    assert clip_box((150.0, 90.0, 160.0, 95.0), (100, 80)) == (100, 80, 100, 80)  # fully outside -> empty


def test_format_box_round_trips_through_parse():
    # integer spaces arrive rounded from the conventions and print as integers
    assert format_box((10.0, 21.0, 30.0, 40.0)) == "[10, 21, 30, 40]"
    assert parse_boxes("[10, 21, 30, 40]") == [(10.0, 21.0, 30.0, 40.0)]
    # the 0-1 space keeps (up to) three decimals
    text = format_box((0.125, 0.5, 0.3333, 1.0))
    assert text == "[0.125, 0.5, 0.333, 1]"
    assert parse_boxes(text) == [(0.125, 0.5, 0.333, 1.0)]


# ----------------------------------------------------------------------------- greedy_match

HALF = lambda v: v >= 0.5  # noqa: E731


def test_greedy_match_perfect():
    gts = [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert greedy_match(list(reversed(gts)), gts, HALF) == 2


def test_greedy_match_one_gt_claimed_once():
    gts = [(0, 0, 10, 10)]
    assert greedy_match([(0, 0, 10, 10), (0, 0, 10, 10)], gts, HALF) == 1


def test_greedy_match_threshold_applies():
    gts = [(0, 0, 10, 10)]
    assert greedy_match([(5, 0, 15, 10)], gts, HALF) == 0  # IoU 1/3
    assert greedy_match([(5, 0, 15, 10)], gts, lambda v: v >= 0.3) == 1


def test_greedy_match_empty_inputs():
    assert greedy_match([], [(0, 0, 1, 1)], HALF) == 0
    assert greedy_match([(0, 0, 1, 1)], [], HALF) == 0


def test_greedy_match_is_greedy_in_prediction_order():
    g1, g2 = (0, 0, 10, 10), (2, 0, 12, 10)
    pa = (0.5, 0, 10.5, 10)  # IoU 9.5/10.5 with g1, 8.5/11.5 with g2
    pb = (-2, 0, 8, 10)  # IoU 8/12 with g1, 6/14 with g2
    assert iou(pa, g1) == pytest.approx(9.5 / 10.5) and iou(pa, g2) == pytest.approx(8.5 / 11.5)
    assert iou(pb, g1) == pytest.approx(8 / 12) and iou(pb, g2) == pytest.approx(6 / 14)
    # pa first takes g1 (its best); pb is left with g2 at IoU 0.43 < 0.5
    assert greedy_match([pa, pb], [g1, g2], HALF) == 1
    # pb first takes g1; pa then takes g2 at IoU 0.74
    assert greedy_match([pb, pa], [g1, g2], HALF) == 2


def test_greedy_match_skips_used_gt_for_best_remaining():
    gts = [(0, 0, 10, 10), (0, 0, 10, 9)]
    preds = [(0, 0, 10, 10), (0, 0, 10, 10)]
    # first pred takes the identical gt; second takes the other (IoU 0.9)
    assert greedy_match(preds, gts, HALF) == 2
