"""A leaderboard from run directories, as text in each format (one place for the
``harness leaderboard`` command and for ``harness train-and-eval``)."""

from __future__ import annotations

from pathlib import Path

from leaderboards.board import LeaderboardOptions, build
from leaderboards.collect import Collection, RunSummary, assign_labels, collect, order_runs
from leaderboards.render import RenderOptions, to_csv, to_html, to_markdown

FORMATS = ("md", "csv", "html")


def leaderboard_texts(dirs: list[str | Path], options: LeaderboardOptions | None = None,
                      render: RenderOptions | None = None, formats: set[str] | tuple[str, ...] = FORMATS,
                      title: str = "Leaderboard", warn=None, method_order: list[str] | None = None) -> dict[str, str]:
    """{format: text} for the run directories found under ``dirs``; ``warn`` receives
    what the search skipped (unfinished runs); rows follow ``method_order``."""
    return leaderboard_texts_from_runs(collect(list(dirs), method_order), options, render, formats, title, warn)


def leaderboard_texts_from_runs(runs: list[RunSummary] | Collection, options: LeaderboardOptions | None = None,
                                render: RenderOptions | None = None, formats: set[str] | tuple[str, ...] = FORMATS,
                                title: str = "Leaderboard", warn=None,
                                method_order: list[str] | None = None) -> dict[str, str]:
    """{format: text} for ``runs`` (from :func:`~leaderboards.collect.collect`, filtered or
    annotated, e.g. with ``selection``), one row each (or per seed group) in their order;
    with ``method_order`` they are sorted as ``collect`` sorts them. A run without a label
    gets the default one; duplicate labels are told apart. ``warn`` receives a
    Collection's search warnings."""
    if isinstance(runs, Collection):
        for message in runs.warnings:
            if warn:
                warn(message)
        runs = runs.runs
    runs = order_runs(list(runs), method_order) if method_order else list(runs)
    assign_labels(runs)
    board = build(runs, options or LeaderboardOptions())
    render = render or RenderOptions()
    renderers = {"md": lambda: to_markdown(board, render), "csv": lambda: to_csv(board, render),
                 "html": lambda: to_html(board, render, title=title)}
    return {fmt: renderers[fmt]() for fmt in FORMATS if fmt in formats}
