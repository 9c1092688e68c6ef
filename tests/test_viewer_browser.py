"""The viewer and leaderboard pages in headless Chromium (Playwright's sync API): what each sample
draws, the filters, paging, two runs side by side, a page copied away from its (moved) run, and
the leaderboard's links to viewer pages. Skipped, with what to install, without Playwright or Chromium."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None
if sync_playwright is None or not Path(CHROMIUM).is_file():  # pragma: no cover
    _missing = "playwright" if sync_playwright is None else CHROMIUM
    pytest.skip(f"browser tests need Playwright and Chromium (missing: {_missing}); "
                "install them with `pip install playwright` and `apt-get install chromium`, or point $HARNESS_CHROMIUM "
                "at a Chromium binary", allow_module_level=True)

from harness.atomic import write_json_atomic  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.taskspec import make_task, split_format  # noqa: E402
from harness.viewer import ViewConfig, write_view  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from viewer_runs import expected_status, make_run, records
except ImportError:  # pragma: no cover
    from tests.viewer_runs import expected_status, make_run, records

pytestmark = pytest.mark.usefixtures("no_git")
TASKS = ("synth_ground_id", "synth_detect_base", "synth_ground_long")
ROLES = {"synth_ground_id": "id", "synth_detect_base": "id", "synth_ground_long": "ood"}
SAMPLES = """els => els.map(e => ({task: e.dataset.task, id: e.dataset.id, status: e.dataset.status,
    gt: e.querySelectorAll('svg rect.gt').length, pred: e.querySelectorAll('svg rect.pred').length,
    image: e.querySelectorAll('svg image[href^="data:image/"]').length,
    placeholder: e.querySelectorAll('.placeholder').length}))"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert not errors, errors  # no script error on any page


@pytest.fixture(scope="module")
def runs(tmp_path_factory, no_git):
    root = tmp_path_factory.mktemp("viewer-browser")
    a = make_run(root / "a", tasks=TASKS)
    b = make_run(root / "b", tasks=TASKS, wrong=lambda task, i: i % 3 == 2)
    return a, b


def _expected(run) -> dict[tuple[str, str], dict]:
    out = {}
    for task in TASKS:
        name, fmt = split_format(task)
        primary = make_task(name, fmt).primary_metric
        for rec in records(run, task):
            gt = rec["target"] if isinstance(rec["target"][0], list) else [rec["target"]]
            parsed = rec["parsed"] or []
            pred = parsed if parsed and isinstance(parsed[0], list) else [parsed] if parsed else []
            out[(task, rec["sample_id"])] = {"status": expected_status(rec, primary), "gt": len(gt), "pred": len(pred),
                                             "role": ROLES[task], "rec": rec}
    return out


def _open(page, path: Path, fragment: str = "") -> None:
    page.goto(path.resolve().as_uri() + fragment)
    page.wait_for_selector("body[data-rendered]")


def _shown(page) -> list[dict]:
    return page.eval_on_selector_all(".sample", SAMPLES)


def _keys(samples) -> set[tuple[str, str]]:
    return {(s["task"], s["id"]) for s in samples}


def test_every_sample_shows_its_image_and_its_boxes(runs, page, tmp_path):
    a, _ = runs
    out, _ = write_view(ViewConfig(run=str(a), output=str(tmp_path / "v.html")))
    _open(page, out)
    expected = _expected(a)
    shown = _shown(page)
    assert len(shown) == len(expected) == 30
    for s in shown:
        e = expected[(s["task"], s["id"])]
        got = (s["status"], s["gt"], s["pred"], s["image"], s["placeholder"])
        assert got == (e["status"], e["gt"], e["pred"], 1, 0)
    assert {s["status"] for s in shown} == {"correct", "wrong", "parse"}
    # drawn in the original image's pixels
    first = page.locator('.sample[data-task="synth_ground_id"][data-id="000001"]')
    assert first.locator("svg").get_attribute("viewBox") == "0 0 112 112"
    rect = first.locator("svg rect.gt")
    drawn = [float(rect.get_attribute(k)) for k in ("x", "y", "width", "height")]
    x1, y1, x2, y2 = expected[("synth_ground_id", "000001")]["rec"]["target"]
    assert drawn == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.006)
    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_filters_show_exactly_the_matching_samples(runs, page, tmp_path):
    a, _ = runs
    out, _ = write_view(ViewConfig(run=str(a), output=str(tmp_path / "v.html")))
    _open(page, out)
    expected = _expected(a)

    def want(status="all", role="all", task="all"):
        return {k for k, e in expected.items() if status in ("all", e["status"]) and role in ("all", e["role"])
                and task in ("all", k[0])}

    for status in ("correct", "wrong", "parse", "all"):
        page.click(f'button[data-filter="status"][data-value="{status}"]')
        assert _keys(_shown(page)) == want(status), status
        label = page.locator(f'button[data-filter="status"][data-value="{status}"]').inner_text()
        assert label.endswith(f"({len(want(status))})")
    page.click('button[data-filter="role"][data-value="ood"]')
    assert _keys(_shown(page)) == want(role="ood") and len(want(role="ood")) == 10
    page.click('button[data-filter="status"][data-value="parse"]')
    assert _keys(_shown(page)) == want("parse", "ood")
    assert page.url.endswith("#role=ood&status=parse")
    page.click('button[data-filter="role"][data-value="all"]')
    page.click('button[data-filter="status"][data-value="all"]')
    page.select_option("#task", "synth_detect_base")
    assert _keys(_shown(page)) == want(task="synth_detect_base")
    # the fragment alone opens a filtered view (what a leaderboard cell links to)
    _open(page, out, "#task=synth_ground_long&status=wrong")
    assert _keys(_shown(page)) == want("wrong", task="synth_ground_long") != set()
    assert page.input_value("#task") == "synth_ground_long"


def test_paging_walks_every_sample_once_in_order(runs, page, tmp_path):
    a, _ = runs
    out, _ = write_view(ViewConfig(run=str(a), output=str(tmp_path / "v.html"), page_size=8))
    _open(page, out)
    order = [(task, rec["sample_id"]) for task in TASKS for rec in records(a, task)]
    seen = []
    for number in range(1, 5):
        shown = _shown(page)
        assert len(shown) == (8 if number < 4 else 6)
        assert page.inner_text("#pageinfo").startswith(f"page {number} of 4")
        seen += [(s["task"], s["id"]) for s in shown]
        if number < 4:
            page.click("#next")
    assert seen == order
    assert page.is_disabled("#next") and not page.is_disabled("#prev")
    page.click("#prev")
    assert [(s["task"], s["id"]) for s in _shown(page)] == order[16:24]
    page.click('button[data-filter="role"][data-value="ood"]')  # a filter starts again at page 1
    assert page.inner_text("#pageinfo").startswith("page 1 of 2")
    assert page.is_disabled("#prev")


def test_two_runs_show_their_differing_samples_side_by_side(runs, page, tmp_path):
    a, b = runs
    out, data = write_view(ViewConfig(run=str(a), run2=str(b), output=str(tmp_path / "c.html")))
    _open(page, out)
    ea, eb = _expected(a), _expected(b)
    differ = {k for k in ea if ea[k]["rec"]["scores"] != eb[k]["rec"]["scores"]
              or ea[k]["rec"]["parsed"] != eb[k]["rec"]["parsed"]}
    pairs = page.eval_on_selector_all(".pair", """els => els.map(e => ({task: e.dataset.task, id: e.dataset.id,
        which: e.dataset.which, sides: [...e.querySelectorAll('.side')].map(s => ({run: s.dataset.run,
        images: s.querySelectorAll('svg image').length, gt: s.querySelectorAll('svg rect.gt').length,
        pred: s.querySelectorAll('svg rect.pred').length}))}))""")
    assert _keys(pairs) == differ and len(differ) >= 8
    for p in pairs:
        key = (p["task"], p["id"])
        assert [s["run"] for s in p["sides"]] == ["a", "b"]
        assert [s["images"] for s in p["sides"]] == [1, 1]
        assert [s["gt"] for s in p["sides"]] == [ea[key]["gt"], eb[key]["gt"]]
        assert [s["pred"] for s in p["sides"]] == [ea[key]["pred"], eb[key]["pred"]]
    # both sides show the same embedded image
    hrefs = page.eval_on_selector_all(".pair", "els => els.map(e => [...e.querySelectorAll('svg image')]"
                                               ".map(i => i.getAttribute('href')))")
    assert all(x == y for x, y in hrefs)
    page.click('button[data-filter="status"][data-value="a"]')
    better_a = {(p["task"], p["id"]) for p in pairs if p["which"] == "a"}
    assert _keys(_shown_pairs(page)) == better_a != set()


def _shown_pairs(page):
    return page.eval_on_selector_all(".pair", "els => els.map(e => ({task: e.dataset.task, id: e.dataset.id}))")


def test_the_page_works_after_it_is_copied_away_and_the_run_moved(runs, page, tmp_path):
    a, _ = runs
    run = tmp_path / "run"
    shutil.copytree(a, run)
    out, _ = write_view(ViewConfig(run=str(run)))
    elsewhere = tmp_path / "elsewhere" / "copy.html"
    elsewhere.parent.mkdir()
    shutil.copy(out, elsewhere)
    shutil.move(str(run), str(tmp_path / "moved"))
    _open(page, elsewhere)
    shown = _shown(page)
    assert len(shown) == 30 and all(s["image"] == 1 for s in shown)
    widths = page.evaluate("""() => Promise.all([...document.querySelectorAll('svg image')].map(im => {
        const i = new Image(); i.src = im.getAttribute('href'); return i.decode().then(() => i.naturalWidth); }))""")
    assert len(widths) == 30 and all(w == 112 for w in widths)


def test_leaderboard_cells_link_to_viewer_pages_that_open(runs, page, tmp_path, capsys):
    a, b = runs
    ra, rb = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    shutil.copytree(a, ra)
    shutil.copytree(b, rb)
    config = json.loads((rb / "config.json").read_text())
    write_json_atomic(rb / "config.json", {**config, "meta": {"method": "sft"}})
    out = tmp_path / "board"
    assert main(["leaderboard", str(tmp_path / "runs"), "--output_path", str(out), "--no_tests"]) == 0
    capsys.readouterr()
    shutil.move(str(tmp_path / "runs"), str(tmp_path / "runs-moved"))  # the links do not need the runs
    _open_plain(page, out / "leaderboard.html")
    links = page.eval_on_selector_all("a.view", "els => els.map(e => e.href)")
    cells = [h for h in links if "#task=" in h]
    assert len(cells) == 2 * len(TASKS)
    files = {Path(unquote(urlparse(h).path)) for h in links}
    assert len(files) == 2 and all(f.is_file() and f.parent == out / "views" for f in files)
    page.locator('a.view[href$="#task=synth_ground_long"]').first.click()
    page.wait_for_selector("body[data-rendered]")
    shown = _shown(page)
    assert len(shown) == 10 and {s["task"] for s in shown} == {"synth_ground_long"}
    assert page.input_value("#task") == "synth_ground_long"


def _open_plain(page, path: Path) -> None:
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("table")
