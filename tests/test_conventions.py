"""harness.conventions: box spaces, the smart-resize space, families and overrides."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.conventions import (  # noqa: E402
    ABS,
    ABS_RESIZED,
    BOX_SPACES,
    FAMILIES,
    NORM1,
    NORM1000,
    ModelConventions,
    conventions_for,
)


@pytest.fixture(scope="module")
def smart_resize():
    """transformers' own smart_resize (needs the CPU torchvision shim before import)."""
    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    return mod.smart_resize


SIZE = (640, 480)  # (width, height), non-square on purpose
PIX = (64.0, 48.0, 320.0, 240.0)


def test_norm1000_by_hand():
    conv = ModelConventions(box_space=NORM1000)
    assert conv.from_pixels(PIX, SIZE) == (100.0, 100.0, 500.0, 500.0)
    assert conv.to_pixels((100.0, 100.0, 500.0, 500.0), SIZE) == pytest.approx(PIX)
    assert conv.to_pixels((0, 0, 1000, 1000), SIZE) == pytest.approx((0, 0, 640, 480))


def test_norm1_by_hand():
    conv = ModelConventions(box_space=NORM1)
    assert conv.from_pixels(PIX, SIZE) == pytest.approx((0.1, 0.1, 0.5, 0.5))
    assert conv.to_pixels((0.1, 0.1, 0.5, 0.5), SIZE) == pytest.approx(PIX)
    # three decimals are kept
    assert conv.from_pixels((1.0, 1.0, 2.0, 3.0), SIZE) == (0.002, 0.002, 0.003, 0.006)


def test_abs_is_identity_up_to_integer_rounding():
    conv = ModelConventions(box_space=ABS)
    assert conv.to_pixels(PIX, SIZE) == PIX
    assert conv.from_pixels((10.4, 20.6, 30.0, 40.0), SIZE) == (10.0, 21.0, 30.0, 40.0)


@pytest.mark.parametrize("space", BOX_SPACES)
@pytest.mark.parametrize("size", [(640, 480), (112, 112), (333, 777)])
def test_round_trip_within_one_unit(space, size, smart_resize):
    conv = ModelConventions(box_space=space)
    w, h = size
    box = (0.13 * w, 0.21 * h, 0.77 * w, 0.9 * h)
    back = conv.to_pixels(conv.from_pixels(box, size), size)
    # the model space is quantised: one unit of it, converted back to pixels, bounds the error
    sx, sy = conv._scale(size)
    unit = {NORM1: 0.0005, NORM1000: 0.5, ABS: 0.5, ABS_RESIZED: 0.5}[space]
    for a, b, s in zip(back, box, (sx, sy, sx, sy), strict=True):
        assert abs(a - b) <= unit / s + 1e-9
    # and converting model-space values to pixels and back is exact for integer spaces
    if space != NORM1:
        model_box = conv.from_pixels(box, size)
        assert conv.from_pixels(conv.to_pixels(model_box, size), size) == model_box


def test_abs_resized_matches_smart_resize_640x480(smart_resize):
    conv = ModelConventions(box_space=ABS_RESIZED)
    # smart_resize(480, 640): round(480/28)*28 = 476, round(640/28)*28 = 644; 476*644 within the limits
    assert smart_resize(480, 640, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280) == (476, 644)
    assert conv.resized_size(SIZE) == (644, 476)  # (width, height)
    # pixels -> resized space: x * 644/640, y * 476/480, rounded
    # 64*644/640 = 64.4 -> 64; 48*476/480 = 47.6 -> 48; 320*644/640 = 322; 240*476/480 = 238
    assert conv.from_pixels(PIX, SIZE) == (64.0, 48.0, 322.0, 238.0)
    assert conv.to_pixels((644.0, 476.0, 644.0, 476.0), SIZE) == pytest.approx((640.0, 480.0, 640.0, 480.0))
    assert conv.to_pixels((322.0, 238.0, 322.0, 238.0), SIZE) == pytest.approx((320.0, 240.0, 320.0, 240.0))
    assert conv.to_pixels((64.0, 48.0, 64.0, 48.0), SIZE) == pytest.approx((64 * 640 / 644, 48 * 480 / 476) * 2)


def test_abs_resized_downscales_large_images(smart_resize):
    conv = ModelConventions(box_space=ABS_RESIZED)
    # 2000x1000 = 2e6 px > max 1003520: beta = sqrt(2e6 / 1003520);
    # floor(1000/beta/28)*28 = 700, floor(2000/beta/28)*28 = 1400
    assert smart_resize(1000, 2000) == (700, 1400)
    assert conv.resized_size((2000, 1000)) == (1400, 700)
    assert conv.from_pixels((2000.0, 1000.0, 2000.0, 1000.0), (2000, 1000)) == (1400.0, 700.0, 1400.0, 700.0)


def test_abs_resized_follows_overridden_limits(smart_resize):
    conv = ModelConventions(box_space=ABS_RESIZED).with_overrides(max_pixels="50000", resize_factor="14")
    assert conv.max_pixels == 50000 and conv.resize_factor == 14  # strings from --model_args become ints
    rh, rw = smart_resize(480, 640, factor=14, min_pixels=56 * 56, max_pixels=50000)
    assert conv.resized_size(SIZE) == (rw, rh)
    assert rw * rh <= 50000 and (rw, rh) != (644, 476)


def test_abs_resized_is_identity_on_synthetic_112px(smart_resize):
    conv = ModelConventions(box_space=ABS_RESIZED)
    assert conv.resized_size((112, 112)) == (112, 112)
    assert conv.from_pixels((10.0, 20.0, 30.0, 40.0), (112, 112)) == (10.0, 20.0, 30.0, 40.0)


def test_unknown_box_space_raises():
    with pytest.raises(ValueError, match="unknown box_space 'pixels'"):
        ModelConventions(box_space="pixels")
    with pytest.raises(ValueError, match="unknown box_space"):
        ModelConventions().with_overrides(box_space="bogus")


def test_conventions_for_families():
    assert conventions_for("qwen2_vl").box_space == NORM1000
    assert conventions_for("qwen2_5_vl").box_space == ABS_RESIZED
    assert conventions_for("qwen3_vl").box_space == NORM1000
    unknown = conventions_for("llava")
    assert unknown.family == "llava" and unknown.box_space == NORM1000
    assert conventions_for(None).family == "generic"
    assert conventions_for("").family == "generic"
    assert set(FAMILIES) >= {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


def test_with_overrides_is_a_copy_and_ignores_unknown_keys():
    base = conventions_for("qwen2_vl")
    over = base.with_overrides(box_space="abs", device="cuda", min_pixels=100.0)
    assert over.box_space == ABS and over.family == "qwen2_vl" and over.min_pixels == 100
    assert type(over.min_pixels) is int
    assert base.box_space == NORM1000  # the registry entry is untouched
    assert not hasattr(over, "device")


def test_to_dict_from_dict_round_trip():
    conv = ModelConventions(family="x", box_space=NORM1, resize_factor=14, min_pixels=10, max_pixels=20)
    data = conv.to_dict()
    assert data == {"family": "x", "box_space": NORM1, "resize_factor": 14, "min_pixels": 10, "max_pixels": 20}
    assert ModelConventions.from_dict({**data, "extra": 1}) == conv


def test_describe_space():
    texts = {space: ModelConventions(box_space=space).describe_space() for space in BOX_SPACES}
    assert all(texts.values())
    assert "1000" in texts[NORM1000] and "1000" not in texts[NORM1]
    assert "pixel" in texts[ABS] and "pixel" in texts[ABS_RESIZED]
    assert texts[NORM1] != texts[NORM1000]
