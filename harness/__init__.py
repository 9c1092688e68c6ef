"""harness: evaluation-first benchmark harness for post-training vision-language models.

Kept import-light on purpose: the torchvision CPU hook imports this package at
interpreter start-up, so nothing heavy (torch, transformers) may be imported here.
"""

__version__ = "0.1.0"
