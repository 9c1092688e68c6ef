"""harness view without a browser: what the page's data holds, rebuilt pieces, broken input, validation,
two-run comparison, and the leaderboard's links to viewer pages (tests/test_viewer_browser.py opens them)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from harness.atomic import write_json_atomic  # noqa: E402
from harness.boxes import parse_boxes  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.conventions import ModelConventions  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.taskspec import make_task, split_format  # noqa: E402
from harness.viewer import ViewConfig, page_data, write_view  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from viewer_runs import TASKS, expected_status, make_run, page_blob, records
except ImportError:  # pragma: no cover
    from tests.viewer_runs import TASKS, expected_status, make_run, page_blob, records

pytestmark = pytest.mark.usefixtures("no_git")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, no_git):
    root = tmp_path_factory.mktemp("viewer")
    a = make_run(root / "a")
    b = make_run(root / "b", wrong=lambda task, i: i % 3 == 2)  # other samples wrong than in a
    return a, b


def _data(run, run2=None, **kw):
    cfg = ViewConfig(run=str(run), run2=str(run2) if run2 else None, **kw)
    r, r2, _ = cfg.validate()
    return page_data(cfg, r, r2)


def _items_by_key(page):
    return {(page["tasks"][it["t"]]["name"], it["id"]): it for it in page["items"]}


def _close(boxes_a, boxes_b, tol=1e-6):
    return len(boxes_a) == len(boxes_b) and all(abs(x - y) <= tol for a, b in zip(boxes_a, boxes_b)
                                                 for x, y in zip(a, b))


def test_every_record_is_an_item_with_its_boxes_status_and_texts(runs):
    a, _ = runs
    page = _data(a)
    items = _items_by_key(page)
    assert len(items) == len(page["items"]) == 10 * len(TASKS)
    assert [t["name"] for t in page["tasks"]] == list(TASKS)
    roles = {t["name"]: t["role"] for t in page["tasks"]}
    assert roles == {"synth_ground_id": "id", "synth_detect_base": "id", "synth_ground_long": "ood",
                     "synth_cls_id": "id", "synth_ground_id:mc": "id"}
    seen_status = set()
    for task in TASKS:
        name, fmt = split_format(task)
        t = make_task(name, fmt)
        for rec in records(a, task):
            it = items[(task, rec["sample_id"])]
            assert it["st"] == expected_status(rec, t.primary_metric)
            seen_status.add(it["st"])
            assert it["q"] == rec["prompt"] and it["o"] == rec["output"] and it["i"] == rec["index"]
            assert it["s"] == {m: round(v, 4) for m, v in rec["scores"].items()}
            assert (it.get("f") or None) == rec["failure"]
            assert it["img"] >= 0 and it["sz"] == list(t.make_sample(rec["index"]).images[0].size)
            if t.answer_kind != "box":
                assert "gt" not in it and "pr" not in it
                continue
            gt = rec["target"] if isinstance(rec["target"][0], list) else [rec["target"]]
            assert _close(it["gt"], gt, 0.006)  # rounded to 2 decimals
            if rec["failure"]:
                assert it["pr"] == []
            elif fmt == "open":
                parsed = rec["parsed"] if isinstance(rec["parsed"][0], list) else [rec["parsed"]]
                assert _close(it["pr"], parsed, 0.006)
            else:  # multiple choice: the chosen option's box, in pixels
                option = rec["prompt"].split("\n")[2 + rec["parsed"]].split(". ", 1)[1]
                conv = ModelConventions()
                px = [conv.to_pixels(b, tuple(it["sz"])) for b in parse_boxes(option)]
                assert _close(it["pr"], px, 0.006)
                if rec["scores"]["acc"] == 1:
                    assert _close(it["pr"], gt, 3.0)
    assert seen_status == {"correct", "wrong", "parse"}


def test_each_distinct_image_is_embedded_once_downscaled(runs, tmp_path):
    a, _ = runs
    page = _data(a)
    # synth_ground_id and its :mc form pose the same 10 images
    uris = {u for task in TASKS for rec in records(a, task) for u in rec["images"]}
    assert len(page["images"]) == len(uris) == 10 * (len(TASKS) - 1)
    # a large file image: drawn in its own pixels, embedded with its longest side at --image_side
    run = _file_image_run(tmp_path, size=(1000, 500))
    page = _data(run, image_side=320)
    it = page["items"][0]
    assert it["sz"] == [1000, 500] and it["gt"] == [[100.0, 50.0, 600.0, 300.0]]
    mime, b64 = page["images"][0].split(",", 1)
    assert mime in ("data:image/jpeg;base64", "data:image/png;base64")
    assert Image.open(io.BytesIO(base64.b64decode(b64))).size == (320, 160)


def _file_image_run(tmp_path, size=(200, 100), image_path=None, task="synth_ground_id", extra=None):
    """A run whose record points at an image file (as dataset tasks' records do)."""
    run = tmp_path / "filerun"
    image_path = image_path or tmp_path / "img.png"
    if not Path(image_path).exists() and image_path == tmp_path / "img.png":
        Image.new("RGB", size, (200, 30, 30)).save(image_path)
    w, h = size
    rec = {"task": task, "sample_id": "s1", "index": 0, "images": [str(image_path)], "output": "[100, 100, 600, 600]",
           "answer": "[100, 100, 600, 600]", "parsed": [w * 0.1, h * 0.1, w * 0.6, h * 0.6], "failure": None,
           "target": [w * 0.1, h * 0.1, w * 0.6, h * 0.6], "scores": {"acc@0.5": 1.0, "acc@0.75": 1.0,
                                                                       "acc@0.9": 1.0, "miou": 1.0},
           "prompt": "Locate it.", **(extra or {})}
    (run / "records").mkdir(parents=True)
    (run / "records" / f"{task}.jsonl").write_text(json.dumps(rec) + "\n")
    write_json_atomic(run / "config.json", {"tasks": [task], "conventions": {"box_space": "norm1000"},
                                            "profile": "strict", "roles": {task: "id"}})
    return run


def test_an_image_that_cannot_be_loaded_is_a_placeholder_with_the_reason(tmp_path):
    run = _file_image_run(tmp_path, image_path=tmp_path / "gone" / "img.jpg", task="no_such_task")
    page = _data(run)
    it = page["items"][0]
    assert it["img"] == -1 and "sz" not in it
    assert "gone/img.jpg is not there" in it["ir"] and "no_such_task" in it["ir"]
    assert page["tasks"][0]["note"].startswith("task 'no_such_task' cannot be rebuilt")
    assert page["tasks"][0]["box"] is False  # an unknown task: its values are shown, not drawn


def test_boxes_are_drawn_in_image_pixels_whatever_the_model_convention(tmp_path):
    """A model answering in 0-1 coordinates (box_space norm1): the drawn box is in original pixels,
    on the ground truth for a gold answer, and not the answer's numbers as written. (Qwen2.5-VL's
    resized-pixel space goes through the same Task.parse; norm1 keeps transformers' import out.)"""
    conv = ModelConventions(family="generic", box_space="norm1")
    run = make_run(tmp_path / "norm1", tasks=("synth_ground_id", "synth_detect_base"), limit=6,
                   wrong=lambda t, i: False, conv=conv)
    page = _data(run)
    checked = 0
    for task in ("synth_ground_id", "synth_detect_base"):
        items = [it for it in page["items"] if page["tasks"][it["t"]]["name"] == task]
        for rec, it in zip(records(run, task), items):
            if rec["failure"]:
                continue
            written = [list(b) for b in parse_boxes(rec["answer"])]
            assert it["sz"] == [112, 112] and all(v <= 1 for b in written for v in b)
            assert _close(it["pr"], it["gt"], 0.2)  # gold answers (3 decimals of 0-1): on the ground truth
            assert _close(it["pr"], [conv.to_pixels(b, (112, 112)) for b in written], 0.006)
            checked += 1
    assert checked == 8


def test_a_record_without_prompt_or_parsed_value_is_rebuilt_through_the_task(runs, tmp_path):
    a, _ = runs
    run = tmp_path / "stripped"
    shutil.copytree(a, run)
    path = run / "records" / "synth_detect_base.jsonl"
    recs = records(a, "synth_detect_base")
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("prompt", "parsed")}) + "\n"
                            for r in recs))
    full, stripped = _items_by_key(_data(a)), _items_by_key(_data(run))
    for rec in recs:
        key = ("synth_detect_base", rec["sample_id"])
        assert stripped[key]["q"] == full[key]["q"] == rec["prompt"]
        assert stripped[key]["pr"] == full[key]["pr"]
        assert stripped[key].get("v") == full[key].get("v")
        assert "rebuilt through the task" in stripped[key]["n"] and "n" not in full[key]


def test_broken_record_lines_are_shown_with_the_reason(runs, tmp_path):
    a, _ = runs
    run = tmp_path / "broken"
    shutil.copytree(a, run)
    path = run / "records" / "synth_cls_id.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:40]  # torn
    lines.insert(5, json.dumps({"sample_id": "x", "output": "no index, no scores"}))
    lines.insert(6, "[1, 2]")
    lines.insert(7, json.dumps({"sample_id": "y", "index": 3, "scores": "high"}))
    path.write_text("\n".join(lines) + "\n")
    page = _data(run)
    broken = [it for it in page["items"] if it["st"] == "broken"]
    assert [it["f"] for it in broken] == [
        "records/synth_cls_id.jsonl:4: not JSON (Unterminated string starting at)",
        "records/synth_cls_id.jsonl:6: lacks index, scores",
        "records/synth_cls_id.jsonl:7: not a JSON object (a list)",
        "records/synth_cls_id.jsonl:8: 'scores' is not an object",
    ]
    cls_items = [it for it in page["items"] if page["tasks"][it["t"]]["name"] == "synth_cls_id"]
    assert len(cls_items) == 13 and sum(it["st"] != "broken" for it in cls_items) == 9
    # the page is written; a broken run never raises
    out, _ = write_view(ViewConfig(run=str(run)))
    assert out == run / "view.html" and out.stat().st_size > 0


def test_the_json_blob_cannot_end_its_script_element(tmp_path):
    evil = "</script><script>alert(1)</script><!--"
    run = _file_image_run(tmp_path, extra={"output": evil, "answer": evil})
    out, _ = write_view(ViewConfig(run=str(run)))
    html = out.read_text()
    assert evil not in html and html.count("</script>") == 2
    assert page_blob(html)["items"][0]["o"] == evil


def test_compare_lists_exactly_the_samples_that_differ(runs):
    a, b = runs
    page = _data(a, b)
    assert page["compare"] and page["compared"] == 10 * len(TASKS)
    expected = {}
    for task in TASKS:
        name, fmt = split_format(task)
        primary = make_task(name, fmt).primary_metric
        for ra, rb in zip(records(a, task), records(b, task)):
            assert ra["sample_id"] == rb["sample_id"]
            if ra["scores"] != rb["scores"] or ra["parsed"] != rb["parsed"]:
                sa, sb = ra["scores"][primary], rb["scores"][primary]
                expected[(task, ra["sample_id"])] = "a" if sa > sb else "b" if sb > sa else "same"
    got = {(page["tasks"][p["t"]]["name"], p["a"]["id"]): p["w"] for p in page["items"]}
    assert got == expected and len(expected) >= 10
    assert {"a", "b"} <= set(got.values())
    for p in page["items"]:
        assert p["a"]["id"] == p["b"]["id"] and p["a"]["img"] == p["b"]["img"]  # one image, two runs' boxes


def test_validation_errors_are_one_line_before_any_work(runs, tmp_path, capsys):
    a, _ = runs
    other = make_run(tmp_path / "other", tasks=("synth_cls_id",), limit=2)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        ([str(tmp_path / "nope")], "is not a directory"),
        ([str(tmp_path / "empty")], "is not a run directory (no config.json)"),
        ([str(a), str(other)], "has other tasks than RUN"),
        ([str(a), str(a)], "is RUN itself"),
        ([str(a), "--output_path", str(tmp_path / "afile" / "v.html")], "is a file"),
        ([str(a), "--output_path", str(tmp_path)], "is a directory"),
        ([str(a), "--page_size", "0"], "--page_size must be >= 1"),
        ([str(a), "--data_root", str(tmp_path / "nodata")], "is not a directory"),
    ]
    for argv, message in cases:
        assert main(["view", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (a / "view.html").exists()
    with pytest.raises(UsageError):
        ViewConfig(run=str(a), image_side=2).validate()


def test_cli_writes_the_default_pages(runs, capsys):
    a, b = runs
    assert main(["view", str(a)]) == 0
    assert (a / "view.html").is_file() and f"wrote {a / 'view.html'}: 50 samples" in capsys.readouterr().out
    assert main(["view", str(a), str(b)]) == 0
    page = page_blob((a / f"compare-{b.name}.html").read_text())
    assert page["compare"] and page["runs"][1]["path"] == str(b.resolve())


def test_leaderboard_links_each_cell_to_its_runs_viewer_page(runs, tmp_path, capsys):
    a, b = runs
    meta = json.loads((b / "config.json").read_text())
    write_json_atomic(b / "config.json", {**meta, "meta": {"method": "sft"}})
    out = tmp_path / "board"
    assert main(["leaderboard", str(a), str(b), "--output_path", str(out), "--no_tests"]) == 0
    assert "2 viewer pages" in capsys.readouterr().out
    html = (out / "leaderboard.html").read_text()
    import re

    hrefs = re.findall(r'<a class="view" href="([^"]+)">', html)
    pages = {h.split("#")[0] for h in hrefs}
    assert len(pages) == 2 and all((out / p).is_file() for p in pages)
    cells = [h for h in hrefs if "#task=" in h]
    assert len(cells) == 2 * len(TASKS)  # every split cell of both rows
    for page in pages:
        blob = page_blob((out / page).read_text())
        assert {t["name"] for t in blob["tasks"]} == set(TASKS)
    plain = tmp_path / "plain"
    assert main(["leaderboard", str(a), "--output_path", str(plain), "--no_tests", "--no_views"]) == 0
    assert 'class="view"' not in (plain / "leaderboard.html").read_text()
    assert not (plain / "views").exists()
    md_only = tmp_path / "md"
    assert main(["leaderboard", str(a), "--output_path", str(md_only), "--no_tests", "--format", "md"]) == 0
    assert not (md_only / "views").exists()  # pages only beside an HTML page that links them


def test_correct_is_the_primary_metric_at_the_difficulty_cut():
    from harness.difficulty import ProfileConfig
    from harness.viewer import _status

    assert ProfileConfig.correct_threshold == 0.5
    assert _status({"scores": {"f1": 0.5, "precision": 0.0}, "failure": None}, "f1") == "correct"
    assert _status({"scores": {"f1": 0.49, "precision": 1.0}, "failure": None}, "f1") == "wrong"
    assert _status({"scores": {"f1": 1.0}, "failure": "no box found"}, "f1") == "parse"
    assert _status({"scores": {"f1": float("nan")}, "failure": None}, "f1") == "wrong"


def test_dataset_images_that_moved_come_back_with_data_root(tmp_path):
    """A dataset task's record names its image file; when the data moved, the image is a placeholder
    with the reason, and --data_root rebuilds the sample (and its image) from the new place."""
    try:
        import fixtures_refer as fx
    except ImportError:  # pragma: no cover
        from tests import fixtures_refer as fx
    from harness.conventions import ModelConventions
    from harness.protocol import get_profile
    from harness.scoring import score_output
    from harness.viewer import _data_config

    old = tmp_path / "data"
    expected = fx.write_refer(old, "refcoco", "unc")["val"]
    run = tmp_path / "run"
    conv, profile = ModelConventions(), get_profile("strict")
    with _data_config(str(old), {}):
        task = make_task("refcoco_val")
        recs = [score_output(task, s, i, task.answer_text(s, conv), conv, profile, task.prompt(s, conv).text)
                for i, s in enumerate(task.samples())]
    (run / "records").mkdir(parents=True)
    (run / "records" / "refcoco_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_json_atomic(run / "config.json", {"tasks": ["refcoco_val"], "conventions": conv.to_dict(),
                                            "profile": "strict", "data_root": str(old), "data_args": {}})
    assert all(Path(r["images"][0]).is_file() for r in recs)
    assert len(_data(run)["images"]) == len({e["image"] for e in expected})
    new = tmp_path / "moved"
    old.rename(new)
    moved = _data(run)
    assert moved["images"] == [] and all(it["img"] == -1 and "is not there (moved?)" in it["ir"]
                                         for it in moved["items"])
    back = _data(run, data_root=str(new))
    assert [it["id"] for it in back["items"]] == [e["id"] for e in expected]
    for it, e in zip(back["items"], expected):
        assert it["img"] >= 0 and it["sz"] == list(e["size"]) and it["gt"] == [e["box"]]
        assert _close(it["pr"], [e["box"]], 1.0)  # gold answers, through the 0-1000 grid
