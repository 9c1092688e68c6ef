"""``harness leaderboard`` and ``harness regress``: subcommands added to harness's CLI.

``harness leaderboard --output_path DIR`` (html format; ``--no_views`` to skip) also writes each run's
viewer page (``harness view``) into ``DIR/views/`` and links the HTML's cells to them by
relative paths. When the runs are moved (or deleted) later, the links keep working: the
pages are self-contained copies (images embedded), snapshots of the runs as they were
when the leaderboard was written; rerunning the command refreshes them from wherever the
runs now are. DIR itself can be moved whole; leaderboard.html without its views/ folder
loses its links. Pages of runs no longer shown stay in views/ until removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import UsageError

FORMATS = ("md", "csv", "html")
VIEWS = "views"  # next to leaderboard.html: one viewer page per run (harness view)

EXAMPLES_LEADERBOARD = """\
examples:
  harness leaderboard runs/                         # every run directory below runs/
  harness leaderboard runs/study --baseline base --ci --cost
  harness leaderboard runs/a runs/b --output_path reports/ --format md,html
  harness leaderboard runs/ --metric synth_detect_base=map,synth_detect_novel=map

links: with --output_path (html format), each run's samples are also written as a
standalone viewer page (harness view) into <output_path>/views/, and leaderboard.html
links each split cell to its run's page on that split (--no_views: no pages, no links).
The pages are copies: the folder <output_path> can be moved or shared whole, and moving
the runs breaks no link (rerun to refresh the pages).
  harness leaderboard studies/tiny/runs --output_path reports/tiny

Rows are model x method x checkpoint, from the "meta" object that train-and-eval writes
into each run's config.json (label, model, method, checkpoint, seed, selection, cost); a run
without one is the row "<model> base". Columns: each ID and OOD split's primary
metric in %, ID/OOD averages (unweighted over splits), deltas in points against the
baseline row, and a paired significance test of each row against the baseline on the
samples both runs scored: a sign-flip permutation test (exact for 0/1 scores: McNemar) for per-sample metrics
and their averages, a paired bootstrap through the task's own corpus_metrics for
corpus metrics such as mAP. Best value per column bold, second underlined.

power: the last row, MDD, is each split's minimum detectable difference: the smallest
true difference (points) that the test detects with 80 % power at --alpha at the
split's size (from the baseline's n and per-sample SD; "paired" from the rows' SD of
per-sample differences). A difference below it that is "not significant" is not
evidence of no effect. n/a for corpus metrics such as mAP.

selection: when a run's meta says which rule chose its checkpoint ("selection": e.g.
"best id-val of 3", the best of 3 checkpoints on an ID validation split carved from the
train data; "last"), a "selected by" column shows it. Checkpoints chosen on a test
split would overstate the method.

seeds: with --group_seeds, runs that differ only in meta.seed become one row: each
sample's score averaged over the seeds, the bootstrap CI over samples of that vector,
each seed's value and the range beside it; deltas and tests on the seed-averaged scores.
  harness leaderboard runs/study --group_seeds --ci
"""

EXAMPLES_REGRESS = """\
rule:
  For every task and metric of the baseline the run must have a value, and
      now >= baseline - allowed
  where allowed is, most specific first: --tolerance TASK:METRIC=TOL, --tolerance
  TASK=TOL, --tolerance TOL, else the baseline's 95 % CI (the value may not drop below
  the baseline's CI lower bound). Tolerances are absolute fractions: 0.02 = 2 points,
  0 = no drop allowed. Improvements never fail. Missing tasks or metrics fail.

exit codes: 0 pass, 1 regression, 2 bad usage or unreadable files.

examples:
  harness regress runs/tiny --baseline baselines/tiny.json --write    # create or refresh
  harness regress runs/tiny --baseline baselines/tiny.json            # check (CI rule)
  harness regress runs/tiny --baseline baselines/tiny.json --tolerance 0.02
  harness regress runs/tiny --baseline baselines/tiny.json --tolerance 0 \\
      --tolerance synth_cls_id:acc=0.05,synth_count_arith:mc=0.1
"""


def _warn(message: str) -> None:
    print(f"harness: warning: {message}", file=sys.stderr)


def _parse_metrics(specs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs or []:
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            task, sep, metric = item.rpartition("=")
            if not sep or not task or not metric:
                raise UsageError(f"--metric expects TASK=METRIC, got {item!r}")
            out[task.strip()] = metric.strip()
    return out


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    formats = ["md" if f in ("markdown", "md") else f for f in formats]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: choose from {', '.join(FORMATS)} (comma-separated), got {text!r}")
    return list(dict.fromkeys(formats))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.atomic import write_text_atomic
    from harness.validation import check_writable
    from leaderboards.board import LeaderboardOptions
    from leaderboards.render import RenderOptions
    from leaderboards.report import leaderboard_texts
    from leaderboards.significance import SignificanceSettings

    formats = _parse_formats(args.format or ",".join(FORMATS))
    if args.resamples < 1 or args.corpus_resamples < 1:
        raise UsageError("--resamples and --corpus_resamples must be at least 1")
    if not 0 < args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    options = LeaderboardOptions(
        baseline=args.baseline, metrics=_parse_metrics(args.metric), significance=not args.no_tests, alpha=args.alpha,
        tests=SignificanceSettings(resamples=args.resamples, corpus_resamples=args.corpus_resamples, seed=args.seed),
        group_seeds=args.group_seeds,
    )
    out = Path(args.output_path) if args.output_path else None
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--output_path {out} is a file; give a directory")
    if out is not None:  # before the tests run: a path under a file cannot be created
        check_writable(out)
    views = view_pages(args.dirs, out) if out is not None and "html" in formats and not args.no_views else {}
    render = RenderOptions(ci=args.ci, cost=args.cost, views={run: href for run, (href, _) in views.items()})
    texts = leaderboard_texts(args.dirs, options, render, formats=set(formats) | {"md"}, title=args.title, warn=_warn)
    if out is not None:
        write_views(views)  # before the page that links them, so no link ever dangles
        for fmt in formats:
            write_text_atomic(out / f"leaderboard.{fmt}", texts[fmt])
        print(texts["md"])
        print("wrote " + ", ".join(str(out / f"leaderboard.{fmt}") for fmt in formats)
              + (f" and {len(views)} viewer pages in {out / VIEWS}" if views else ""))
    else:
        # without files to write, the one format asked for goes to stdout (markdown by default)
        print(texts[formats[0] if args.format else "md"], end="")
    return 0


def view_pages(dirs: list[str], out: Path) -> dict[str, tuple[str, Path]]:
    """Each run directory the leaderboard shows -> (href relative to the HTML, page path):
    ``<out>/views/<run name>-<hash of its path>.html``. Keys are resolved paths, as the
    board's "run" column names runs."""
    from leaderboards.collect import find_run_dirs

    runs, _ = find_run_dirs(list(dirs))
    return pages_for(runs, out)


def pages_for(runs: list[Path], out: Path) -> dict[str, tuple[str, Path]]:
    """:func:`view_pages` for run directories already found (a study's selected runs)."""
    from harness.viewer import view_name

    return {str(run): (f"{VIEWS}/{view_name(run)}", out / VIEWS / view_name(run)) for run in runs}


def _current(page: Path, run: Path) -> bool:
    """The page is newer than everything of the run it shows (records, aggregates, config):
    a rerun of the command, or a study's next render, does not write it again."""
    if not page.is_file():
        return False
    sources = [run / "config.json", run / "aggregates.json", *(run / "records").glob("*.jsonl")]
    newest = max((p.stat().st_mtime for p in sources if p.is_file()), default=float("inf"))
    return page.stat().st_mtime > newest


def write_views(views: dict[str, tuple[str, Path]]) -> None:
    """Write (or refresh) each run's viewer page, unless it is newer than the run. A run whose page cannot be built (a task
    that no longer resolves is fine; an unreadable run is not) is skipped with a warning:
    its cells stay unlinked only if the page was never written."""
    from harness.errors import HarnessError
    from harness.viewer import ViewConfig, write_view

    for run, (_, page) in views.items():
        if _current(page, Path(run)):
            continue
        try:
            write_view(ViewConfig(run=run, output=str(page)))
        except HarnessError as exc:
            _warn(f"no viewer page for {run}: {exc}")


def cmd_regress(args: argparse.Namespace) -> int:
    from leaderboards.regress import (
        baseline_from_run,
        check_baseline_path,
        compare,
        open_run,
        parse_tolerances,
        read_baseline,
        render_report,
        write_baseline,
    )

    run = open_run(args.run)
    if args.write:
        path = Path(args.baseline)
        check_baseline_path(path)
        if path.is_file():
            try:
                old = read_baseline(path)
                print(f"against the previous baseline {path}:")
                print(render_report(compare(old, run, parse_tolerances(args.tolerance, old))))
            except UsageError as exc:
                _warn(f"replacing an unusable baseline: {exc}")
        new = baseline_from_run(run, args.run)
        write_baseline(path, new)
        n_metrics = sum(len(t["metrics"]) for t in new["tasks"].values())
        print(f"wrote baseline {path}: {len(new['tasks'])} tasks, {n_metrics} metrics from {args.run}")
        return 0
    baseline = read_baseline(args.baseline)
    report = compare(baseline, run, parse_tolerances(args.tolerance, baseline))
    print(render_report(report))
    return 0 if report.passed else 1


def _debug_flag(parser: argparse.ArgumentParser) -> None:
    # as harness's other subcommands take it; SUPPRESS leaves `harness --debug leaderboard` alone
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")


def add_parsers(sub) -> None:
    """Add ``leaderboard`` and ``regress`` to harness's subcommands."""
    lb = sub.add_parser(
        "leaderboard", help="compare runs: ID/OOD scores, averages, deltas, significance (md, csv, html)",
        description="A leaderboard over run directories (the source of truth; no numbers are copied).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_LEADERBOARD)
    lb.add_argument("dirs", nargs="+", metavar="DIR",
                    help="a run directory, or a directory searched recursively for run directories")
    lb.add_argument("--baseline", default=None, metavar="ROW",
                    help="the baseline row: its label, or a method name that only one row has "
                         "(default: the first row with method 'base'; none: no deltas or tests)")
    lb.add_argument("--format", default=None,
                    help="with --output_path: the files to write, comma-separated from md, csv, html (default: all); "
                         "without: the format printed (the first one given)")
    lb.add_argument("--output_path", default=None, help="directory for leaderboard.md / .csv / .html")
    lb.add_argument("--ci", action="store_true", help="show 95%% bootstrap CIs in the split cells")
    lb.add_argument("--cost", action="store_true", help="add cost columns (wall time, generated tokens, optimizer "
                    "steps) from each run's meta.cost")
    lb.add_argument("--metric", action="append", default=None, metavar="TASK=METRIC",
                    help="show METRIC for TASK instead of its primary metric (repeatable or comma-separated)")
    lb.add_argument("--alpha", type=float, default=0.05, help="significance level of the † marker (default 0.05)")
    lb.add_argument("--resamples", type=int, default=9999,
                    help="sign-flip test resamples (exact when 2^k is fewer; default 9999)")
    lb.add_argument("--corpus_resamples", type=int, default=200,
                    help="paired bootstrap resamples for corpus metrics such as mAP (default 200)")
    lb.add_argument("--seed", type=int, default=0, help="seed of the tests' resampling (default 0)")
    lb.add_argument("--no_tests", action="store_true",
                    help="skip the significance tests and the minimum detectable differences (no records are read, "
                         "except a seed group's with --group_seeds)")
    lb.add_argument("--group_seeds", action="store_true",
                    help="one row per set of seeds: runs that share model, method, selection rule and checkpoint but "
                         "differ in meta.seed (value: seed-averaged per-sample scores; spread across seeds shown)")
    lb.add_argument("--no_views", action="store_true",
                    help="do not write the runs' viewer pages (by default, with --output_path and the html format, "
                         "each run's page - harness view: images, boxes, outputs, scores - goes into "
                         "<output_path>/views/ and every split cell of leaderboard.html links to it)")
    lb.add_argument("--title", default="Leaderboard", help="title of the HTML page")
    lb.set_defaults(func=cmd_leaderboard)
    _debug_flag(lb)

    rg = sub.add_parser(
        "regress", help="check a run against a committed baseline; exit 1 on a regression",
        description="Compare a run's aggregates with a baseline file and fail (exit 1), with a report, when a metric "
                    "drops beyond its allowed drop. --write creates or refreshes the baseline from the run.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_REGRESS)
    rg.add_argument("run", metavar="RUN", help="a run directory (config.json + aggregates.json)")
    rg.add_argument("--baseline", required=True, metavar="FILE", help="the baseline JSON file")
    rg.add_argument("--tolerance", action="append", default=None, metavar="TOL|TASK=TOL|TASK:METRIC=TOL",
                    help="allowed absolute drop as a fraction (0.02 = 2 points; 0 = none); repeatable or "
                         "comma-separated; default: the baseline's 95%% CI lower bound")
    rg.add_argument("--write", action="store_true", help="write (or refresh) the baseline from RUN, atomically")
    rg.set_defaults(func=cmd_regress)
    _debug_flag(rg)
