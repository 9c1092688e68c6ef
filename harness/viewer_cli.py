"""``harness view``: the command line of harness/viewer.py."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  harness view harness_runs/tiny-1a2b3c4d                  # writes harness_runs/tiny-1a2b3c4d/view.html
  harness view runs/base runs/sft                          # the samples where they differ: runs/base/compare-sft.html
  harness view runs/base --output_path /tmp/base.html --page_size 100
  harness view runs/refcoco --data_root /mnt/data          # the images moved: rebuild samples from the new root

The page is one HTML file that opens in any browser from anywhere (images embedded,
no network): each sample's image with the ground-truth boxes (green) and the predicted
boxes (orange, dashed) in original-image pixels, the prompt, the raw output, the parsed
answer, the scores and the failure reason; filters for correct / wrong / parse failure,
ID / OOD and task; pages of --page_size samples. The URL fragment keeps the filters:
view.html#task=synth_ground_id&status=wrong. docs/viewer.md has the details.
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("view", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="a run's samples (images, boxes, outputs, scores) as one standalone HTML page; "
                            "with RUN2, where two runs differ",
                       description="Writes one standalone HTML page of a run's samples, or of the samples on which "
                                   "two runs of the same tasks differ (a score or the parsed answer), side by side.",
                       epilog=EXAMPLES)
    p.add_argument("run", metavar="RUN", help="a run directory (config.json, records/)")
    p.add_argument("run2", metavar="RUN2", nargs="?", default=None,
                   help="a second run of the same tasks: show only the samples where the two differ")
    p.add_argument("--output_path", "--output", dest="output", default=None, metavar="FILE.html",
                   help="where to write the page (default RUN/view.html; with RUN2 RUN/compare-<RUN2 name>.html)")
    p.add_argument("--page_size", type=int, default=50, help="samples per page (default 50)")
    p.add_argument("--image_side", type=int, default=320,
                   help="longest side of each embedded image in pixels (default 320; smaller: a smaller file)")
    p.add_argument("--data_root", default=None,
                   help="where the run's local datasets are now, when they moved (default: the run's recorded "
                        "data_root, else $HARNESS_DATA)")
    p.add_argument("--data_args", default=None, help="per-dataset options as k=v,k=v, e.g. coco_images=DIR "
                   "(default: the run's recorded ones that still exist)")
    p.set_defaults(func=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    from harness.cli import parse_kv
    from harness.viewer import ViewConfig, write_view

    cfg = ViewConfig(run=args.run, run2=args.run2, output=args.output, page_size=args.page_size,
                     image_side=args.image_side, data_root=args.data_root,
                     data_args=parse_kv(args.data_args, "--data_args"))
    path, page = write_view(cfg)
    what = "differing samples" if page["compare"] else "samples"
    broken = sum(1 for it in page["items"] if not page["compare"] and it["st"] == "broken")
    extra = f", {broken} broken record lines" if broken else ""
    print(f"wrote {path}: {len(page['items'])} {what}{extra}, {len(page['images'])} images "
          f"({path.stat().st_size / 1e6:.1f} MB)")
    return 0
