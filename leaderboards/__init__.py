"""Rendering results as tables (console, Markdown, CSV)."""
