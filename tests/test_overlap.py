"""harness.overlap: the perceptual hash, exact counts on a hand-made suite, a real-format fixture with a
copied COCO image (DC-SFT's Ref-L4 case), and `harness data overlap` end to end with its errors."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from fixtures_grounding_ood import write_refl4
from fixtures_refer import coco_name, write_refer
from PIL import Image

import tasks  # noqa: F401  (registers the tasks)
from harness import data, dataset_task
from harness.cli import build_parser, main
from harness.errors import UsageError
from harness.overlap import (
    DEFAULT_MAX_DISTANCE,
    DEFAULT_MAX_THUMB_DIFF,
    audit_suite,
    compare,
    hamming,
    hash_split,
    normalize_text,
    phash,
    pixel_digest,
    thumbnail,
)
from harness.registry import SUITES, TASKS, define_task
from harness.sample import ImageRef, Sample
from harness.suite import Suite
from harness.taskspec import make_task
from tasks.grounding.base import GroundingTask


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    data.configure(None, {})
    dataset_task._INDEX_CACHE.clear()
    yield tmp_path
    dataset_task._INDEX_CACHE.clear()
    data.configure(None, {})


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _thumb_diff(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.frombuffer(thumbnail(a), np.uint8).astype(int) - np.frombuffer(thumbnail(b), np.uint8)).max())


def _scene(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth random picture (low-frequency noise, upsampled): its own structure, like a photo's."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return small.resize(size, Image.Resampling.BICUBIC)


# ----------------------------------------------------------------------------- hash and text
def test_phash_survives_reencoding_and_resizing_and_separates_different_images():
    images = [s.images[0].load() for s, _ in zip(make_task("synth_cls_clutter").samples(), range(8))]
    images += [_scene(seed) for seed in range(8)]
    for im in images:
        w, h = im.size
        h0 = phash(im)
        for edited in (_jpeg(im, 75), _jpeg(im, 50), im.resize((w * 9 // 10, h * 9 // 10), Image.Resampling.BICUBIC),
                       im.resize((w // 2, h // 2), Image.Resampling.BICUBIC)):
            assert hamming(h0, phash(edited)) <= DEFAULT_MAX_DISTANCE
            assert _thumb_diff(im, edited) <= DEFAULT_MAX_THUMB_DIFF
    distances = [hamming(phash(a), phash(b)) for i, a in enumerate(images[8:]) for b in images[8 + i + 1:]]
    assert min(distances) > DEFAULT_MAX_DISTANCE
    # the hash is 63 bits above/below their median: bit 63 (the DC term) is never set
    assert all(phash(im) >> 63 == 0 for im in images)


def test_thumbnail_rejects_what_the_grayscale_hash_confuses():
    # the same layout in two colours: one grayscale hash, different pictures
    a, b = Image.new("RGB", (64, 64), (200, 200, 200)), Image.new("RGB", (64, 64), (200, 200, 200))
    a.paste((220, 30, 30), (10, 10, 40, 40))
    b.paste((30, 30, 220), (10, 10, 40, 40))
    assert hamming(phash(a), phash(b)) <= DEFAULT_MAX_DISTANCE
    assert _thumb_diff(a, b) > DEFAULT_MAX_THUMB_DIFF


def test_pixel_digest_is_exact():
    im = _scene(1)
    assert pixel_digest(im) == pixel_digest(im.copy().convert("RGBA"))
    changed = im.copy()
    changed.putpixel((0, 0), (0, 0, 0) if im.getpixel((0, 0)) != (0, 0, 0) else (1, 1, 1))
    assert pixel_digest(changed) != pixel_digest(im)


def test_normalize_text():
    assert normalize_text("  The RED,  circle!\n") == normalize_text("the red circle") == "the red circle"
    assert normalize_text("ｃａｆé—left_most") == "café left most"  # NFKC folds full-width letters
    assert normalize_text("the red circle") != normalize_text("the red square")


# ----------------------------------------------------------------------------- a hand-made suite
class _Listed(GroundingTask):
    """Grounding samples from ``items``: (id, image factory, expression)."""

    items: list = []

    def __len__(self):
        return len(self.items)

    def samples(self):
        for sid, make, text in self.items:  # pixels only when loaded, as a file's would be
            yield Sample(id=sid, images=(ImageRef(f"mem://{sid}", (96, 80), make),),
                         fields={"expression": text, "others": []}, target=[0, 0, 1, 1])


def _register(monkeypatch, name, train_items, splits, fixed=False):
    TASKS.names()  # load the built-ins before adding to the registry
    made = {}
    for task_name, role, items in [(f"{name}_train", "train", train_items), *splits]:
        made[task_name] = define_task(_Listed, task_name, role, "test", register=False, items=items)
        monkeypatch.setitem(TASKS._items, task_name, made[task_name])
    suite = Suite(name, f"{name}_train", tuple(n for n, r, _ in splits if r == "id"),
                  tuple(n for n, r, _ in splits if r == "ood"))
    monkeypatch.setitem(SUITES._items, name, suite)
    return suite


TRAIN = [(f"t{i}", (lambda i=i: _scene(100 + i)), f"the object number {i}") for i in range(6)]


@pytest.fixture
def leaky_suite(monkeypatch):
    ood = [
        ("e0", lambda: _scene(100), "something new"),  # exact copy of t0, new text
        ("e1", lambda: _jpeg(_scene(101), 60), "The object, number 1!"),  # re-encoded t1, same text: the leak
        ("e2", lambda: _scene(500), "the object number 2"),  # new image, t2's text
        ("e3", lambda: _scene(501), "nothing like it"),  # new image, new text
        ("e4", lambda: _scene(103), "the object number 4"),  # copy of t3 asking t4's question: not the same pair
    ]
    idsplit = [("i0", lambda: _scene(105), "the object number 5"), ("i1", lambda: _scene(600), "other")]
    return _register(monkeypatch, "leaky", TRAIN, [("leaky_id", "id", idsplit), ("leaky_ood", "ood", ood)])


def test_audit_counts_exact_near_text_and_both(leaky_suite):
    report = audit_suite("leaky", progress=False)
    assert [s.task for s in report.splits] == ["leaky_id", "leaky_ood"]
    i, o = report.splits
    assert (i.role, i.n, i.train_n, o.role, o.n, o.train_n) == ("id", 2, 6, "ood", 5, 6)
    assert (o.exact_images.count, o.near_images.count, o.identical_text.count, o.text_and_image.count) == (2, 3, 3, 1)
    assert o.exact_images.percent == 40.0 and o.text_and_image.percent == 20.0 and not o.text_fixed
    assert [(e["eval_id"], e["train_id"]) for e in o.exact_images.examples] == [("e0", "t0"), ("e4", "t3")]
    assert {(e["eval_id"], e["train_id"]) for e in o.near_images.examples} == {("e0", "t0"), ("e1", "t1"), ("e4", "t3")}
    assert [(e["eval_id"], e["train_id"]) for e in o.text_and_image.examples] == [("e1", "t1")]
    assert [(e["eval_id"], e["train_id"]) for e in o.identical_text.examples] == [("e1", "t1"), ("e2", "t2"),
                                                                                  ("e4", "t4")]
    assert (i.exact_images.count, i.near_images.count, i.identical_text.count, i.text_and_image.count) == (1, 1, 1, 1)
    assert report.summary().splitlines()[1] == ("leaky_ood (ood): 3 of 5 images near a train image (60.0 %), 2 exact, "
                                                "3 identical texts (1 on a near image)")
    # limits: the first N of each split; a train limit can only miss overlap
    small = audit_suite("leaky", limit=2, train_limit=1, progress=False)
    o = small.splits[1]
    assert (o.n, o.train_n, o.exact_images.count, o.identical_text.count) == (2, 1, 1, 0)
    assert small.train_total == 6
    # a stricter distance still finds the exact copies
    assert audit_suite("leaky", max_distance=0, max_thumb_diff=0, progress=False).splits[1].near_images.count == 2
    json.dumps(report.to_dict())  # JSON-able as it stands


def test_fixed_question_is_not_compared_and_unreadable_images_are_counted(monkeypatch):
    def broken():
        raise OSError("truncated file")

    train = [(f"t{i}", (lambda i=i: _scene(i)), "what is it") for i in range(3)]
    ev = [("e0", lambda: _scene(0), "What is it?"), ("e1", broken, "what is it")]
    _register(monkeypatch, "fixedq", train, [("fixedq_ood", "ood", ev)])
    split = audit_suite("fixedq", progress=False).splits[0]
    assert split.text_fixed and split.identical_text.count is None and split.text_and_image.count is None
    assert (split.exact_images.count, split.unreadable_images, split.n) == (1, 1, 2)
    assert "question fixed by the task" in split.summary() and "1 images unreadable" in split.summary()


def test_compare_of_many_hashes_in_chunks_matches_pairwise(monkeypatch):
    import harness.overlap as ov

    rng = np.random.default_rng(0)
    train, ev = ov.SplitHashes("train"), ov.SplitHashes("ev")
    for split, n in ((train, 300), (ev, 40)):
        for i in range(n):
            split.ids.append(f"{split.task}{i}")
            split.texts.append(f"text {i % 7}")
            split.hashes.append(int(rng.integers(0, 2**62)) & ~(1 << 63))
            split.thumbs.append(bytes(192))
            split.digests.append(f"{split.task}{i}")
            split.owners.append(i)
    ev.hashes[:10] = [h ^ 0b101 for h in train.hashes[:10]]  # 2 bits off train 0..9
    monkeypatch.setattr(ov, "_PAIRS_PER_CHUNK", 7 * 300)  # several chunks
    monkeypatch.setattr(ov, "_THUMB_PAIRS", 3)
    got = compare(ev, train, "ood", max_distance=2)
    brute = sum(any(hamming(e, t) <= 2 for t in train.hashes) for e in ev.hashes)
    assert got.near_images.count == brute >= 10
    both = sum(any(hamming(e, t) <= 2 and ev.texts[i] == train.texts[j] for j, t in enumerate(train.hashes))
               for i, e in enumerate(ev.hashes))
    assert got.text_and_image.count == both


# ----------------------------------------------------------------------------- a real format: DC-SFT's Ref-L4
def test_refl4_coco_images_found_in_refcoco_train_and_absent_from_noncoco(data_root, monkeypatch):
    write_refer(data_root)
    write_refl4(data_root)
    # Ref-L4's COCO image is RefCOCO's training image (the same file)
    shutil.copy(data_root / "coco" / "train2014" / coco_name(581857),
                data_root / "ref-l4" / "images" / "COCO_train2014_000000128974.jpg")
    TASKS.names()
    monkeypatch.setitem(SUITES._items, "refl4_audit", Suite("refl4_audit", "refcoco_train", (),
                                                            ("refl4_val", "refl4_val_noncoco")))
    full, noncoco = audit_suite("refl4_audit", progress=False).splits
    assert (full.n, full.exact_images.count, full.near_images.count) == (4, 2, 2)
    assert {e["eval_id"] for e in full.exact_images.examples} == {"7", "12"}
    assert (noncoco.n, noncoco.exact_images.count, noncoco.near_images.count) == (2, 0, 0)
    assert full.identical_text.count == noncoco.identical_text.count == 0


# ----------------------------------------------------------------------------- the command
def test_cli_table_and_json(capsys, tmp_path):
    out_file = tmp_path / "sub" / "overlap.json"
    rc = main(["data", "overlap", "synth_cls", "--limit", "4", "--train_limit", "30", "--no_progress",
               "--output", str(out_file)])
    assert rc == 0
    out = capsys.readouterr().out
    for text in ("split", "near image", "text+near image", "synth_cls_id", "synth_cls_style", "synth_cls_clutter",
                 "fixed question", "30 of 20000"):
        assert text in out
    report = json.loads(out_file.read_text())
    assert [s["task"] for s in report["splits"]] == ["synth_cls_id", "synth_cls_style", "synth_cls_clutter"]
    assert [s["role"] for s in report["splits"]] == ["id", "ood", "ood"]
    assert all(s["n"] == 4 and s["train_n"] == 30 for s in report["splits"])
    assert report["config"]["max_distance"] == DEFAULT_MAX_DISTANCE and report["train_total"] == 20000
    assert main(["data", "overlap", "synth_count", "--limit", "3", "--train_limit", "5", "--no_progress",
                 "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["splits"][1]["task"] == "synth_count_arith" and printed["splits"][1]["text_fixed"] is False


def test_help_states_the_module_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "overlap", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_MAX_DISTANCE} of 63 bits)" in text
    assert f"(default {DEFAULT_MAX_THUMB_DIFF} of 255)" in text
    assert "the whole train split, the honest audit" in text


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown suite 'nosuch'"),
    (["notrain"], "suite 'notrain' has no train split"),
    (["refcoco"], "refcoco (unc split): not found"),  # DatasetMissing, naming what is missing
    (["synth_cls", "--limit", "0"], "--limit must be >= 1"),
    (["synth_cls", "--max_distance", "64"], "--max_distance must be in 0..63"),
    (["synth_cls", "--output", "."], "is a directory"),
])
def test_cli_errors_are_one_line_before_hashing(capsys, monkeypatch, argv, message):
    TASKS.names()
    monkeypatch.setitem(SUITES._items, "notrain", Suite("notrain", "", ("synth_cls_id",), ()))
    assert main(["data", "overlap", *argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("harness: error: ") and message in err and "\n" not in err
    assert "hashing" not in err and captured.out == ""


def test_audit_suite_errors():
    with pytest.raises(UsageError, match="--train_limit must be >= 1"):
        audit_suite("synth_cls", train_limit=0)
    with pytest.raises(data.DatasetMissing):
        audit_suite("refcoco", progress=False)


def test_hash_split_streams_only_the_limit():
    task = make_task("synth_cls_train")
    hashed = hash_split(task, limit=3, progress=False)
    assert hashed.ids == ["000000", "000001", "000002"] and len(hashed.hashes) == 3 == len(hashed.thumbs)
