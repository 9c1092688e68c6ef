"""The eval table: one row per (task, metric), values in percent with 95 % CIs."""

from __future__ import annotations

import math
from typing import Any

HEADER = ("task", "role", "metric", "value", "95% CI", "n", "parse fail")


def _pct(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def eval_rows(aggregates: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for agg in aggregates:
        for metric, m in agg["metrics"].items():
            lo, hi = m["ci"]
            rows.append((agg["task"], agg["role"], metric, _pct(m["value"]), f"[{_pct(lo)}, {_pct(hi)}]",
                         str(agg["n"]), str(agg["parse_failures"])))
    return rows


def render_text(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER, markdown: bool = False,
                right: tuple[int, ...] = (3, 4, 5, 6)) -> str:
    """Aligned columns; ``right`` are the indices of right-aligned (numeric) columns."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def fmt(row):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return ("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells)

    sep = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep, *map(fmt, rows)])


def render_csv(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
