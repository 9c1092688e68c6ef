"""Benchmark: how long the viewer page of a 10,000-record run takes to show its first page.

Writes a synthetic grounding run without a model (``synth_ground_train`` samples, records
scored by the task from made-up answers: most near the target box, some far, some
unparseable), writes its viewer page (``harness view``), then opens the page in headless
Chromium (Playwright) ``--repeats`` times and measures the time from the start of
navigation to the first page of samples drawn (the first ``svg rect.gt`` present and a
frame painted after it). Prints the file size, the build time and the median.

    python bench/viewer_open.py                      # 10,000 records, median of 3
    python bench/viewer_open.py --records 2000 --keep /tmp/view-bench

Needs Playwright (pip install playwright) and Chromium (/usr/bin/chromium, or
$HARNESS_CHROMIUM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TASK = "synth_ground_train"


def write_run(path: Path, n: int, seed: int = 0) -> None:
    """A run directory in the evaluator's format: ``n`` records of ``TASK`` (made-up answers
    in Qwen2-VL's 0-1000 space, scored by the task), config, provenance and aggregates."""
    from harness.atomic import write_json_atomic, write_text_atomic
    from harness.boxes import format_box
    from harness.conventions import ModelConventions
    from harness.protocol import get_profile
    from harness.scoring import aggregate, score_output
    from harness.taskspec import make_task

    task, conv, profile = make_task(TASK), ModelConventions(family="qwen2_vl"), get_profile("strict")
    if n > len(task):
        raise SystemExit(f"--records: {TASK} has {len(task)} samples")
    rng = random.Random(seed)
    records = []
    for i in range(n):
        sample = task.make_sample(i)
        w, h = sample.images[0].size
        x1, y1, x2, y2 = sample.target
        roll = rng.random()
        if roll < 0.1:
            output = "I cannot find it."
        else:
            spread = 0.1 if roll < 0.6 else 0.6  # most answers near the target, some far off
            dx, dy = rng.gauss(0, spread * (x2 - x1)), rng.gauss(0, spread * (y2 - y1))
            box = (max(0, x1 + dx), max(0, y1 + dy), min(w, x2 + dx), min(h, y2 + dy))
            output = format_box(conv.from_pixels(box, (w, h)))
        records.append(score_output(task, sample, i, output, conv, profile, task.prompt(sample, conv).text, 0.01))
    write_text_atomic(path / "records" / f"{TASK}.jsonl",
                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    config = {"model": "made-up", "backend": "none", "tasks": [TASK], "roles": {TASK: "train"},
              "profile": profile.name, "conventions": conv.to_dict(), "seed": seed, "limit": n,
              "data_root": None, "data_args": {}, "meta": {"label": "viewer bench"}}
    write_json_atomic(path / "config.json", {**config, "identity": {"model": "made-up"}})
    write_json_atomic(path / "provenance.json", {"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                 "git": {"commit": "bench"}, "model": {"fingerprint": "none"}})
    write_json_atomic(path / "aggregates.json", [aggregate(task, records, profile, role="train", n_boot=200)])


def chromium_path() -> str:
    return os.environ.get("HARNESS_CHROMIUM") or "/usr/bin/chromium"


def time_open(page_path: Path, repeats: int) -> list[float]:
    """Seconds from the start of navigation to the first page drawn, one per repeat (a
    fresh browser tab each time, the browser itself started once, outside the timing)."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t0 = time.perf_counter()
                page.goto(page_path.resolve().as_uri(), wait_until="commit")
                page.wait_for_selector(".sample svg rect.gt", timeout=120_000)
                # a frame painted with the samples in it
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                times.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", default=None, help="write the run here and keep it (default: a temporary directory)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from harness.viewer import ViewConfig, write_view

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.keep or tmp) / "run"
        t0 = time.perf_counter()
        write_run(run, args.records)
        t1 = time.perf_counter()
        path, page = write_view(ViewConfig(run=str(run)))
        t2 = time.perf_counter()
        size = path.stat().st_size
        print(f"run: {args.records} records written in {t1 - t0:.1f} s; page {path.name}: {size / 1e6:.1f} MB "
              f"({len(page['images'])} images), written in {t2 - t1:.1f} s")
        times = time_open(path, args.repeats)
        print("open to first page drawn: " + ", ".join(f"{t:.2f}" for t in times)
              + f" s; median {statistics.median(times):.2f} s ({args.repeats} repeats, headless Chromium)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
