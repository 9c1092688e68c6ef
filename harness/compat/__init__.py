"""Compatibility fixes for the runtime environment (kept import-light)."""
