"""Models the harness builds itself (the embedded tiny Qwen2-VL)."""
