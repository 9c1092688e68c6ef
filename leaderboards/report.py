"""A leaderboard from run directories, as text in each format (one place for the
``harness leaderboard`` command and for ``harness train-and-eval``)."""

from __future__ import annotations

from pathlib import Path

from leaderboards.board import LeaderboardOptions, build
from leaderboards.collect import collect
from leaderboards.render import RenderOptions, to_csv, to_html, to_markdown

FORMATS = ("md", "csv", "html")


def leaderboard_texts(dirs: list[str | Path], options: LeaderboardOptions | None = None,
                      render: RenderOptions | None = None, formats: set[str] | tuple[str, ...] = FORMATS,
                      title: str = "Leaderboard", warn=None, method_order: list[str] | None = None) -> dict[str, str]:
    """{format: text} for the run directories found under ``dirs``; ``warn`` receives
    what the search skipped (unfinished runs); rows follow ``method_order``."""
    collection = collect(list(dirs), method_order)
    for message in collection.warnings:
        if warn:
            warn(message)
    board = build(collection, options or LeaderboardOptions())
    render = render or RenderOptions()
    renderers = {"md": lambda: to_markdown(board, render), "csv": lambda: to_csv(board, render),
                 "html": lambda: to_html(board, render, title=title)}
    return {fmt: renderers[fmt]() for fmt in FORMATS if fmt in formats}
