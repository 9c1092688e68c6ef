"""harness: evaluation-first benchmark harness for post-training vision-language models.

Kept import-light on purpose: ``harness tasks`` and the registries must not pay for
torch or transformers imports.
"""

__version__ = "0.1.0"
