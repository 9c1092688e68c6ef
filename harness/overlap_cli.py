"""``harness data overlap SUITE``: the train/test overlap audit (harness/overlap.py) on the command line.

Kept apart from harness/overlap.py so that building the CLI's parser does not import numpy; the defaults
in the help text are checked against the module's constants by tests/test_overlap.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.validation import check_output_file

EXAMPLES = """\
examples:
  harness data overlap synth_cls                        # the whole train split against each ID and OOD split
  harness data overlap refcoco --data_root /data --output overlap/refcoco.json
  harness data overlap synth_ground --limit 100 --train_limit 2000   # a quick look: not an audit

Images: exact duplicates (identical decoded pixels) and near duplicates (perceptual hash within
--max_distance bits AND 8x8 colour thumbnails within --max_thumb_diff everywhere: JPEG re-encodes and
resizes pass, different scenes do not). Text: the question without its answer-format instructions,
normalised (NFKC, lowercase, no punctuation); "fixed question" when the task asks every sample the same.
"text+near image" is the strongest leak: the same question about a near-duplicate image. See docs/overlap.md.
Exit status 0 whatever the overlap (the audit informs; it does not judge).
"""


def add_overlap_parser(dsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``overlap`` under ``harness data``."""
    from harness.cli import add_data_options

    o = dsub.add_parser(
        "overlap", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        help="images and questions a suite's ID/OOD splits share with its train split",
        description="Compares every sample of each ID and OOD split of SUITE with every sample of its train "
                    "split, by image (exact and near duplicates) and by normalised question text, and prints "
                    "per split how many eval samples overlap, with example pairs.")
    o.add_argument("suite", help="a suite with a train split (see `harness suites`)")
    o.add_argument("--limit", type=int, default=None, help="audit only the first N samples of each ID/OOD split")
    o.add_argument("--train_limit", type=int, default=None,
                   help="compare with only the first N train samples (default: the whole train split, the honest "
                        "audit; a limit can only miss overlap)")
    o.add_argument("--max_distance", type=int, default=None,
                   help="near duplicate: perceptual-hash Hamming distance at most this (default 10 of 63 bits)")
    o.add_argument("--max_thumb_diff", type=int, default=None,
                   help="near duplicate: and no 8x8 RGB thumbnail value differs by more than this (default 16 of 255)")
    o.add_argument("--output", default=None, metavar="FILE.json", help="also write the report as JSON (atomically)")
    o.add_argument("--format", choices=("table", "json"), default="table", help="what to print (default table)")
    o.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_data_options(o)
    o.set_defaults(func=cmd_data_overlap)


def _check_output(path: Path) -> None:
    check_output_file(path, "--output", "overlap.json")


def cmd_data_overlap(args: argparse.Namespace) -> int:
    import json

    from harness import overlap
    from harness.cli import configure_data

    configure_data(args)
    if args.output:
        _check_output(Path(args.output))
    max_distance = overlap.DEFAULT_MAX_DISTANCE if args.max_distance is None else args.max_distance
    max_thumb_diff = overlap.DEFAULT_MAX_THUMB_DIFF if args.max_thumb_diff is None else args.max_thumb_diff
    report = overlap.audit_suite(args.suite, limit=args.limit, train_limit=args.train_limit,
                                 max_distance=max_distance, max_thumb_diff=max_thumb_diff,
                                 progress=not args.no_progress)
    if args.output:
        from harness.atomic import write_json_atomic

        write_json_atomic(args.output, report.to_dict())
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_report(report))
    if args.output:
        print(f"\nreport: {args.output}")
    return 0


def render_report(report) -> str:
    """The table, what was compared, and example pairs of every kind of overlap found."""
    from leaderboards.table import render_text

    cfg = report.config
    train = f"{report.splits[0].train_n if report.splits else 0} of {report.train_total}"
    lines = [f"suite {report.suite}: train split {report.train} ({train} samples"
             + (f", --train_limit {cfg.train_limit}: overlap beyond them is not seen)" if cfg.train_limit else ")")
             + (f"; the first {cfg.limit} samples of each eval split (--limit)" if cfg.limit else ""),
             f"near image: hash distance <= {cfg.max_distance} bits and thumbnail difference <= {cfg.max_thumb_diff};"
             f" counts are eval samples (percent of n); {report.seconds:.1f} s", "",
             render_text(report.rows(), header=report.HEADER, right=(2, 3, 4, 5, 6, 7))]
    examples = [s for s in report.splits if s.unreadable_images or any(
        o.examples for o in (s.exact_images, s.near_images, s.identical_text, s.text_and_image))]
    if examples:
        lines.append("\nexample pairs (eval sample ~ train sample, d = hash distance in bits):")
    for s in examples:
        for label, o in (("exact image", s.exact_images), ("near image", s.near_images),
                         ("same text", s.identical_text), ("text+near image", s.text_and_image)):
            if o.examples:
                pairs = ", ".join(f"{e['eval_id']}~{e['train_id']}"
                                  + (f" (d={e['distance']})" if e["distance"] is not None else "") for e in o.examples)
                lines.append(f"  {s.task} {label}: {pairs}")
        if s.unreadable_images:
            lines.append(f"  {s.task}: {s.unreadable_images} images could not be decoded (not compared)")
    if any(s.text_fixed for s in report.splits):
        lines.append("\nfixed question: the task asks every sample the same question, so text tells nothing; "
                     "the image columns are the whole audit.")
    return "\n".join(lines)
