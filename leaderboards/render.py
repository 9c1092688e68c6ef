"""Rendering a :class:`~leaderboards.board.Leaderboard` as Markdown, CSV or standalone HTML.

Display follows the papers: percent with one decimal, the best value of each score
column bold and the second best underlined (compared at the displayed precision, so
ties share the mark; bold needs two rows with a value, underline three), and a
marker on values that differ significantly from the baseline row.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from leaderboards.board import AVERAGES, Column, Leaderboard, col
from leaderboards.collect import COST_KEYS
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


def _score_keys(board: Leaderboard, role: str) -> list[tuple[str, str]]:
    """(key, header) of the score columns shown for a role: its splits, then its average."""
    cols: list[Column] = board.split_columns(role)
    keys = [(c.task, f"{c.task} {c.metric}") for c in cols]
    if len(cols) >= 2:  # the average of one split is that split
        keys.append((AVERAGES[role], AVG_HEADERS[AVERAGES[role]]))
    return keys


def layout(board: Leaderboard, options: RenderOptions) -> Layout:
    frame = board.frame
    groups = [("run", 4)]
    headers = ["row", "model", "method", "ckpt"]
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
        for key in score_keys:
            text = pct(r[col(key)])
            if options.ci and not key.endswith("_avg") and not _is_nan(r[col(key)]):
                text += f" [{pct(r[col(key, 'ci_lo')])}, {pct(r[col(key, 'ci_hi')])}]"
            p = r.get(col(key, "p"), math.nan) if board.tests_made else math.nan
            cells.append(Cell(text, marks[key].get(label, ""), not _is_nan(p) and p < board.options.alpha))
        for key in delta_keys:
            d = r[col(key, "delta")]
            cells.append(Cell("baseline" if label == board.baseline else MISSING if _is_nan(d) else f"{100 * d:+.1f}"))
        if options.cost:
            cells += [Cell(_cost_text(k, r[k])) for k in COST_KEYS]
        rows.append(cells)
    return Layout(groups, headers, rows, tuple(range(4, len(headers))))


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
    return lines + [f"Note: {esc(n)}" for n in board.notes]


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
    rows = [[_md_cell(c) for c in row] for row in lay.rows]
    table = render_text(rows, header=tuple(lay.headers), markdown=True, right=lay.right)
    return table + "\n\n" + "\n".join(legend(board, options)) + "\n"


def to_csv(board: Leaderboard, options: RenderOptions | None = None) -> str:
    """Every number of the table (percent, deltas in points, p-values, CIs, n), unformatted."""
    options = options or RenderOptions()
    frame = board.frame
    out = pd.DataFrame({"label": frame["label"], "model": frame["model"], "method": frame["method"],
                        "checkpoint": frame["checkpoint"].astype(str), "seed": frame["seed"]})
    keys = [(c.task, f"{c.task} {c.metric}") for c in board.columns]
    keys += [(key, AVG_HEADERS[key]) for _, key in board.averages]
    for key, name in keys:
        out[f"{name} (%)"] = (100 * frame[col(key)]).round(2)
        if not key.endswith("_avg"):
            out[f"{name} ci_lo (%)"] = (100 * frame[col(key, "ci_lo")]).round(2)
            out[f"{name} ci_hi (%)"] = (100 * frame[col(key, "ci_hi")]).round(2)
            out[f"{name} n"] = frame[col(key, "n")].astype("Int64")
        if board.baseline:
            out[f"{name} delta (pt)"] = (100 * frame[col(key, "delta")]).round(2)
        if board.tests_made:
            out[f"{name} p"] = frame[col(key, "p")].round(5)
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
.legend { font-size: 13px; color: #444; max-width: 60em; }
"""


def _html_cell(cell: Cell, numeric: bool) -> str:
    text = html.escape(cell.text)
    if cell.mark and cell.text != MISSING:
        value, sep, rest = text.partition(" ")
        tag = "b" if cell.mark == "best" else "u"
        text = f"<{tag}>{value}</{tag}>{sep}{rest}"
    if cell.significant:
        text += MARKER
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def to_html(board: Leaderboard, options: RenderOptions | None = None, title: str = "Leaderboard") -> str:
    options = options or RenderOptions()
    lay = layout(board, options)
    group_row = "".join(f'<th colspan="{n}">{html.escape(name)}</th>' for name, n in lay.groups)
    header_row = "".join(f"<th>{html.escape(h)}</th>" for h in lay.headers)
    body = []
    for cells, label in zip(lay.rows, board.frame.index):
        cls = ' class="baseline"' if label == board.baseline else ""
        body.append(f"<tr{cls}>" + "".join(_html_cell(c, i in lay.right) for i, c in enumerate(cells)) + "</tr>")
    legend_html = "".join(f"<p>{line}</p>" for line in legend(board, options, html_markup=True))
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
</tbody>
</table>
<div class="legend">{legend_html}</div>
</body>
</html>
"""
