"""Rendering a :class:`~leaderboards.board.Leaderboard` as Markdown, CSV or standalone HTML.

Display follows the papers: percent with one decimal, the best value of each score
column bold and the second best underlined (compared at the displayed precision, so
ties share the mark; bold needs two rows with a value, underline three), and a
marker on values that differ significantly from the baseline row. What makes a
comparison trustworthy is shown with it: a "selected by" column (the rule that chose
each row's checkpoint), a last row with each column's minimum detectable difference
("MDD"), and, for a seed group, the seeds' own values and their range beside the value.

HTML links (``RenderOptions.views``): each split cell links to its run's viewer page
(``harness view``, harness/viewer.py) opened on that split (``#task=...``), the row label to
the pages of all the row's runs (each seed of a seed group). The pages are the copies
``harness leaderboard --output_path DIR`` (unless ``--no_views``) writes into ``DIR/views/`` (leaderboards/cli.py),
linked by relative paths: the folder DIR can be moved or shared whole, and moving or
deleting the run directories breaks no link (the pages are snapshots of the runs as they
were when the leaderboard was written; rerun the command to refresh them). Moving
leaderboard.html away from its views/ folder breaks the links.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pandas as pd

from leaderboards.board import AVERAGES, Column, Leaderboard, col
from leaderboards.collect import COST_KEYS
from leaderboards.power import Power
from leaderboards.seeds import seed_spread
from leaderboards.table import render_text

MARKER = "†"
MISSING = "–"
COST_HEADERS = {"wall_s": "wall time", "generated_tokens": "gen. tokens", "optimizer_steps": "opt. steps"}
AVG_HEADERS = {"id_avg": "ID avg", "ood_avg": "OOD avg"}
DELTA_HEADERS = {"id_avg": "Δ ID", "ood_avg": "Δ OOD"}


@dataclass
class RenderOptions:
    ci: bool = False  # 95 % CIs in the split cells
    cost: bool = False  # cost columns from meta.cost
    # HTML only: run directory (as the board's "run" column names it) -> the href of its viewer
    # page (harness view), relative to the HTML file; split cells link to it, opened on their task
    views: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    text: str
    mark: str = ""  # "best", "second" or ""
    significant: bool = False


def pct(value: float) -> str:
    return MISSING if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _is_nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def rank_marks(values: pd.Series) -> dict[str, str]:
    """Row label -> "best" / "second", from values rounded as displayed (higher is better)."""
    shown = {label: round(100 * v, 1) for label, v in values.items() if not _is_nan(v)}
    if len(shown) < 2:
        return {}
    distinct = sorted(set(shown.values()), reverse=True)
    marks = {label: "best" for label, v in shown.items() if v == distinct[0]}
    if len(shown) >= 3 and len(distinct) >= 2:
        marks.update({label: "second" for label, v in shown.items() if v == distinct[1]})
    return marks


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _cost_text(key: str, value) -> str:
    if _is_nan(value):
        return MISSING
    return _duration(float(value)) if key == "wall_s" else _count(float(value))


@dataclass
class Layout:
    """The displayed table: header groups, headers and cells, shared by Markdown and HTML."""

    groups: list[tuple[str, int]]  # (group name, number of columns)
    headers: list[str]
    rows: list[list[Cell]]
    right: tuple[int, ...]  # numeric columns
    footer: list[list[Cell]] = field(default_factory=list)  # rows about the columns (the MDD), not runs
    tasks: list[str | None] = field(default_factory=list)  # the split each column shows (None: not a split)


def mdd_label(board: Leaderboard) -> str:
    return f"MDD ({100 * board.options.power:g} % power)"


def _mdd_text(power: Power | None, split: bool) -> str:
    if power is None or math.isnan(power.mdd):
        return "n/a"
    text = f"{100 * power.mdd:.1f}"
    if not math.isnan(power.paired):
        text += f", paired {100 * power.paired:.1f}"
    return text + (f" (n={power.n})" if split else "")


def _spread_text(values) -> str:
    """The seeds' own values and their range, beside a seed group's value."""
    shown, spread = seed_spread(values)
    if not shown:
        return ""
    return f" (seeds {' / '.join(pct(v) for v in shown)}; range {pct(spread)})"


def _score_keys(board: Leaderboard, role: str) -> list[tuple[str, str]]:
    """(key, header) of the score columns shown for a role: its splits, then its average."""
    cols: list[Column] = board.split_columns(role)
    keys = [(c.task, f"{c.task} {c.metric}") for c in cols]
    if len(cols) >= 2:  # the average of one split is that split
        keys.append((AVERAGES[role], AVG_HEADERS[AVERAGES[role]]))
    return keys


def _run_headers(board: Leaderboard) -> list[str]:
    return ["row", "model", "method", "ckpt"] + (["selected by"] if board.selections else []) + (
        ["seeds"] if board.grouped else [])


def layout(board: Leaderboard, options: RenderOptions) -> Layout:
    frame = board.frame
    headers = _run_headers(board)
    n_run = len(headers)
    groups = [("run", n_run)]
    score_keys: list[str] = []
    for role in ("id", "ood"):
        keys = _score_keys(board, role)
        if keys:
            groups.append((role.upper(), len(keys)))
            headers += [h for _, h in keys]
            score_keys += [k for k, _ in keys]
    delta_keys = [key for _, key in board.averages] if board.baseline else []
    if delta_keys:
        groups.append((f"Δ vs {board.baseline}", len(delta_keys)))
        headers += [DELTA_HEADERS[k] for k in delta_keys]
    if options.cost:
        groups.append(("cost", len(COST_KEYS)))
        headers += [COST_HEADERS[k] for k in COST_KEYS]

    marks = {key: rank_marks(frame[col(key)]) for key in score_keys}
    rows = []
    for label, r in frame.iterrows():
        cells = [Cell(str(label)), Cell(str(r["model"])), Cell(str(r["method"])), Cell(str(r["checkpoint"]))]
        if board.selections:
            cells.append(Cell(r["selection"] or MISSING))
        if board.grouped:
            cells.append(Cell(f"{r['seeds']} ({r['seed']})" if r["seeds"] > 1 else "1"))
        for key in score_keys:
            text = pct(r[col(key)])
            if options.ci and not key.endswith("_avg") and not _is_nan(r[col(key)]):
                lo, hi = r[col(key, "ci_lo")], r[col(key, "ci_hi")]
                grouped_na = r["seeds"] > 1 and _is_nan(lo) and _is_nan(hi)  # a seed group's corpus metric
                text += " [n/a]" if grouped_na else f" [{pct(lo)}, {pct(hi)}]"
            if board.grouped:
                text += _spread_text(r[col(key, "seeds")])
            p = r.get(col(key, "p"), math.nan) if board.tests_made else math.nan
            cells.append(Cell(text, marks[key].get(label, ""), not _is_nan(p) and p < board.options.alpha))
        for key in delta_keys:
            d = r[col(key, "delta")]
            cells.append(Cell("baseline" if label == board.baseline else MISSING if _is_nan(d) else f"{100 * d:+.1f}"))
        if options.cost:
            cells += [Cell(_cost_text(k, r[k])) for k in COST_KEYS]
        rows.append(cells)
    footer = []
    if board.power:
        footer.append([Cell(mdd_label(board))] + [Cell("")] * (n_run - 1)
                      + [Cell(_mdd_text(board.power.get(key), not key.endswith("_avg"))) for key in score_keys]
                      + [Cell("")] * (len(headers) - n_run - len(score_keys)))
    tasks = [None] * n_run + [None if key in AVG_HEADERS else key for key in score_keys]
    tasks += [None] * (len(headers) - len(tasks))
    return Layout(groups, headers, rows, tuple(range(n_run, len(headers))), footer, tasks)


def legend(board: Leaderboard, options: RenderOptions, html_markup: bool = False) -> list[str]:
    """Lines under the table; with ``html_markup`` they are HTML (text escaped, <b>/<u> tags)."""
    esc = html.escape if html_markup else (lambda s: s)
    bold = "<b>bold</b>" if html_markup else "**bold**"
    lines = ["Scores in % (each split's primary metric unless --metric chose another)"
             + (" with its 95 % bootstrap CI" if options.ci else "")
             + "; ID/OOD avg: unweighted mean over the splits (blank if a row lacks one). "
             f"Best per column {bold}, second <u>underlined</u>."]
    if board.baseline:
        lines.append(f"Δ: points against the baseline row '{esc(board.baseline)}' "
                     "(of the ID/OOD avg, or of the split when there is one).")
        if board.tests_made:
            t = board.options.tests
            lines.append(
                f"{MARKER} p {esc('<')} {board.options.alpha:g} against the baseline on the samples both runs scored: "
                "paired sign-flip permutation test "
                f"(exact, or {t.resamples} resamples; averages: the same test on the mean over splits); "
                f"corpus metrics such as mAP: paired bootstrap ({t.corpus_resamples} resamples).")
    else:
        lines.append("No baseline row (no run with method 'base'; choose one with --baseline): no deltas or tests.")
    if board.power:
        lines.append(
            f"{esc(mdd_label(board))}: the smallest true difference (points) that a two-sided test at alpha "
            f"{board.options.alpha:g} detects with {100 * board.options.power:g} % power at the split's size "
            "(normal approximation): (z + z) × √2 × SD / √n for two independent runs with the baseline's n and "
            "per-sample SD (√(p(1−p)) for a 0/1 score); \"paired\": (z + z) × SD of the per-sample differences "
            "/ √n, the median over the rows tested against the baseline (each row's is in the CSV); averages: "
            "the SE of the mean over splits. n/a: a corpus metric (e.g. mAP) has no per-sample scores. "
            "A difference smaller than the MDD that is not significant is not evidence of no effect: "
            "the split is too small to tell.")
    if board.selections:
        lines.append("Selected by: the rule that chose the checkpoint standing in the row ("
                     + "; ".join(f"'{esc(s)}': {esc(explain_selection(s))}" for s in board.selections)
                     + "). A study chooses on an ID validation split carved from the train data, or takes the "
                     "last checkpoint; never on an ID or OOD test split, whose scores would then be biased upward.")
    if board.grouped:
        lines.append("Seeds: a row with several seeds averages each sample's score over its seeds, then over the "
                     "samples (its CI: bootstrap over samples of that seed-averaged vector); beside the value, each "
                     "seed's own value and the range (max − min) across seeds; its ckpt lists each seed's step. "
                     "Δ and tests use the seed-averaged per-sample scores, paired by sample id; cost is the mean "
                     "over seeds.")
    return lines + [f"Note: {esc(n)}" for n in board.notes]


def explain_selection(rule: str) -> str:
    """Words for a selection rule text ("best id-val of 3", "last")."""
    words = rule.lower().split()
    if words and words[0] == "last":
        return "the last checkpoint"
    if words and words[0] == "best":
        of = f" among {words[-1]} checkpoints" if len(words) >= 3 and words[-2] == "of" else ""
        on = " ".join(words[1:-2] if of else words[1:])
        on = "the ID validation split (carved from the train data)" if on in ("", "id-val", "id val", "val") else on
        return f"the checkpoint with the best score on {on}{of}"
    return "as recorded in the run's meta.selection"


def _md_cell(cell: Cell) -> str:
    text = cell.text
    if cell.mark and text != MISSING:
        value, sep, rest = text.partition(" ")  # bold the value, not its CI
        value = f"**{value}**" if cell.mark == "best" else f"<u>{value}</u>"
        text = value + sep + rest
    return text + (MARKER if cell.significant else "")


def to_markdown(board: Leaderboard, options: RenderOptions | None = None) -> str:
    options = options or RenderOptions()
    lay = layout(board, options)
    rows = [[_md_cell(c) for c in row] for row in lay.rows + lay.footer]
    table = render_text(rows, header=tuple(lay.headers), markdown=True, right=lay.right)
    return table + "\n\n" + "\n".join(legend(board, options)) + "\n"


def to_csv(board: Leaderboard, options: RenderOptions | None = None) -> str:
    """Every number of the table (percent, deltas in points, p-values, CIs, n), unformatted."""
    options = options or RenderOptions()
    frame = board.frame
    out = pd.DataFrame({"label": frame["label"], "model": frame["model"], "method": frame["method"],
                        "checkpoint": frame["checkpoint"].astype(str), "seed": frame["seed"]})
    if board.selections:
        out["selected by"] = frame["selection"]
    if board.grouped:
        out["seeds"] = frame["seeds"]
    keys = [(c.task, f"{c.task} {c.metric}") for c in board.columns]
    keys += [(key, AVG_HEADERS[key]) for _, key in board.averages]
    for key, name in keys:
        out[f"{name} (%)"] = (100 * frame[col(key)]).round(2)
        if not key.endswith("_avg"):
            out[f"{name} ci_lo (%)"] = (100 * frame[col(key, "ci_lo")]).round(2)
            out[f"{name} ci_hi (%)"] = (100 * frame[col(key, "ci_hi")]).round(2)
            out[f"{name} n"] = frame[col(key, "n")].astype("Int64")
        if board.grouped:
            spreads = [seed_spread(v) for v in frame[col(key, "seeds")]]
            out[f"{name} seed values (%)"] = ["/".join(f"{100 * v:.2f}" for v in shown) for shown, _ in spreads]
            out[f"{name} seed range (pt)"] = [round(100 * r, 2) for _, r in spreads]
        if board.baseline:
            out[f"{name} delta (pt)"] = (100 * frame[col(key, "delta")]).round(2)
        if board.tests_made:
            out[f"{name} p"] = frame[col(key, "p")].round(5)
        if key in board.power:
            # the column's MDD (two independent runs at the baseline's n) in every row; the row's own paired one
            out[f"{name} mdd (pt)"] = round(100 * board.power[key].mdd, 2)
            out[f"{name} paired mdd (pt)"] = (100 * frame[col(key, "paired_mdd")]).round(2)
    if options.cost:
        for k in COST_KEYS:
            out[k] = frame[k]
    out["run"] = frame["run"]
    return out.to_csv(index=False)


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
caption { caption-side: top; text-align: left; font-weight: 600; font-size: 16px; margin-bottom: .5em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; }
thead tr.groups th { border-bottom: 1px solid #999; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.baseline td { background: #f4f6f8; }
tfoot td { border-top: 2px solid #444; color: #555; font-size: 13px; }
.legend { font-size: 13px; color: #444; max-width: 60em; }
a.view { color: inherit; text-decoration: none; border-bottom: 1px dotted #888; }
a.view:hover { background: #eef3ff; }
.views { font-size: 12px; color: #666; }
"""


def _html_cell(cell: Cell, numeric: bool, href: str | None = None) -> str:
    text = html.escape(cell.text)
    if cell.mark and cell.text != MISSING:
        value, sep, rest = text.partition(" ")
        tag = "b" if cell.mark == "best" else "u"
        text = f"<{tag}>{value}</{tag}>{sep}{rest}"
    if cell.significant:
        text += MARKER
    if href and cell.text != MISSING:
        text = f'<a class="view" href="{html.escape(href)}">{text}</a>'
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _row_views(board: Leaderboard, label, views: dict[str, str]) -> list[str]:
    """The viewer pages of a row's runs (one, or one per seed of a seed group), as far as written."""
    if not views:
        return []
    return [views[p] for p in str(board.frame.at[label, "run"]).split("; ") if p in views]


def _row_html(cells: list[Cell], lay: Layout, pages: list[str]) -> str:
    """A row's cells; each split cell links to the row's (first) run's viewer page, opened on that
    split; the label cell links every run of the row (the seeds of a seed group)."""
    out = []
    for i, cell in enumerate(cells):
        task = lay.tasks[i] if i < len(lay.tasks) else None
        href = f"{pages[0]}#{urlencode({'task': task})}" if pages and task else None
        td = _html_cell(cell, i in lay.right, href)
        if i == 0 and pages:
            links = " ".join(f'<a class="view" href="{html.escape(p)}">{"samples" if len(pages) == 1 else f"s{k + 1}"}'
                             "</a>" for k, p in enumerate(pages))
            td = td[:-len("</td>")] + f' <span class="views">({links})</span></td>'
        out.append(td)
    return "".join(out)


def to_html(board: Leaderboard, options: RenderOptions | None = None, title: str = "Leaderboard") -> str:
    options = options or RenderOptions()
    lay = layout(board, options)
    group_row = "".join(f'<th colspan="{n}">{html.escape(name)}</th>' for name, n in lay.groups)
    header_row = "".join(f"<th>{html.escape(h)}</th>" for h in lay.headers)
    body = []
    for cells, label in zip(lay.rows, board.frame.index):
        cls = ' class="baseline"' if label == board.baseline else ""
        body.append(f"<tr{cls}>" + _row_html(cells, lay, _row_views(board, label, options.views)) + "</tr>")
    footer = "".join("<tr>" + "".join(_html_cell(c, i in lay.right) for i, c in enumerate(cells)) + "</tr>"
                     for cells in lay.footer)
    lines = legend(board, options, html_markup=True)
    if options.views:
        lines.append("Each split's value links to that run's samples on the split (images, boxes, outputs, scores: "
                     "harness view), and the row label to each run's page (views/, copies written with this file).")
    legend_html = "".join(f"<p>{line}</p>" for line in lines)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<table>
<caption>{html.escape(title)}</caption>
<thead>
<tr class="groups">{group_row}</tr>
<tr>{header_row}</tr>
</thead>
<tbody>
{chr(10).join(body)}
</tbody>{f"{chr(10)}<tfoot>{footer}</tfoot>" if footer else ""}
</table>
<div class="legend">{legend_html}</div>
</body>
</html>
"""
