"""Reading annotation pickles (RefCOCO's ``refs(<split_by>).p``) without trusting them.

``pickle.load`` runs whatever a file tells it to: a downloaded annotation file could
execute code. The refer pickles hold only lists, dicts, strings and numbers, so this
unpickler admits exactly those and refuses any global (class, function) by name.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from harness.errors import UsageError


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Plain containers, numbers and strings need no globals at all; anything that
        # does (a class, a function, even a set or a numpy array) is refused.
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain lists, dicts, strings and "
                                     "numbers are allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def load(path: str | Path, what: str = "annotation pickle") -> Any:
    """The pickle's content, or a UsageError naming the file and why it was refused."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory, not a file") from None
    try:
        # encoding="latin1": the refer pickles were written by Python 2
        return _Restricted(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise UsageError(f"{what} {path}: {exc}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError,
            UnicodeDecodeError, OverflowError) as exc:
        raise UsageError(f"{what} {path} is truncated or not a pickle ({type(exc).__name__}: {exc})") from None
