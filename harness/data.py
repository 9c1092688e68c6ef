"""Where local datasets live, and the one error a missing or incomplete dataset gives.

Real datasets are read from a **data root** (``--data_root``, else ``$HARNESS_DATA``),
each in its upstream layout under its own directory (``<root>/imagenet``,
``<root>/refcoco``, ...). Where a dataset's images live elsewhere (COCO images shared
by RefCOCO and COCO detection), a per-dataset option points to them
(``--data_args coco_images=/data/coco/train2014``). A task never looks anywhere else,
so a run depends only on what the user pointed it at.

Every loader checks its files through :meth:`DatasetSpec.check` before reading, so a
missing dataset is one :class:`DatasetMissing` error that names the expected layout,
the files it lacks and what it found instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness.errors import UsageError

ENV_ROOT = "HARNESS_DATA"


class DatasetMissing(UsageError):
    """A dataset that is not where its task expects it, or is incomplete."""


@dataclass
class DataConfig:
    root: Path | None = None
    # per-dataset options, e.g. {"coco_images": "/data/coco/train2014"}
    options: dict[str, str] = field(default_factory=dict)


_config = DataConfig()


def configure(root: str | Path | None = None, options: dict[str, object] | None = None) -> DataConfig:
    """Set the data root (``None``: ``$HARNESS_DATA``) and per-dataset options for this process.

    Checked here, before any slow work: a root or option path that does not exist is an error.
    """
    global _config
    raw = root if root is not None else os.environ.get(ENV_ROOT) or None
    path = Path(raw).expanduser() if raw else None
    if path is not None and not path.is_dir():
        origin = "--data_root" if root is not None else f"${ENV_ROOT}"
        raise UsageError(f"{origin} {path} is not a directory")
    opts: dict[str, str] = {}
    for key, value in (options or {}).items():
        if not isinstance(value, (str, Path)) or not str(value):
            raise UsageError(f"--data_args {key} must be a path, got {value!r}")
        if not Path(str(value)).expanduser().exists():
            raise UsageError(f"--data_args {key}={value}: no such file or directory")
        opts[key] = str(Path(str(value)).expanduser())
    # only an explicit root is stored: $HARNESS_DATA stays read at use (see current())
    _config = DataConfig(path if root is not None else None, opts)
    return current()


def current() -> DataConfig:
    # $HARNESS_DATA is read at use, so a test or a library caller that sets it needs no configure()
    if _config.root is None and os.environ.get(ENV_ROOT):
        return DataConfig(Path(os.environ[ENV_ROOT]).expanduser(), dict(_config.options))
    return _config


def data_root() -> Path | None:
    return current().root


def option(key: str) -> Path | None:
    value = current().options.get(key)
    return Path(value) if value else None


def _listing(path: Path, limit: int = 8) -> str:
    """What is at ``path``, for error messages."""
    if not path.exists():
        parent = path.parent
        if parent.is_dir():
            names = sorted(p.name for p in parent.iterdir())
            shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
            return f"{path} does not exist; {parent} holds: {shown or 'nothing'}"
        return f"{path} does not exist"
    if path.is_file():
        return f"{path} is a file"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return f"{path} holds: {shown or 'nothing'}"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's place under the data root and its documented upstream layout.

    ``required`` are paths relative to the dataset directory that must exist (files or
    directories); ``image_option`` names the ``--data_args`` key that may point the
    images elsewhere, and ``images`` the default image directory under the dataset.
    """

    name: str
    directory: str
    source: str
    layout: str
    required: tuple[str, ...] = ()
    image_option: str | None = None
    images: str | None = None

    def path(self) -> Path:
        root = data_root()
        if root is None:
            raise DatasetMissing(
                f"{self.name}: no data root; pass --data_root DIR or set ${ENV_ROOT}, with the dataset at "
                f"DIR/{self.directory} laid out as: {self.layout_line()}")
        return root / self.directory

    def image_dir(self) -> Path:
        """Where this dataset's images are: the option if given, else inside the dataset."""
        if self.image_option and option(self.image_option) is not None:
            return option(self.image_option)  # type: ignore[return-value]
        return self.path() / (self.images or "")

    def layout_line(self) -> str:
        return " ".join(self.layout.split())

    def check(self, extra: Iterable[str] = ()) -> Path:
        """The dataset directory, or DatasetMissing naming what is missing and what was found."""
        base = self.path()
        wanted = [*self.required, *extra]
        if not base.is_dir():
            raise DatasetMissing(f"{self.name}: not found. Expected {base}/ laid out as: {self.layout_line()}. "
                                 f"Found: {_listing(base)}")
        missing = [rel for rel in wanted if not (base / rel).exists()]
        if self.images and not self.image_dir().exists():
            missing.append(str(self.image_dir()) + (f" (or --data_args {self.image_option}=DIR)" if self.image_option else ""))
        if missing:
            raise DatasetMissing(f"{self.name}: incomplete at {base}: missing {', '.join(missing)}. Expected layout: "
                                 f"{self.layout_line()}. Found: {_listing(base)}")
        return base


def require_file(path: Path, dataset: str, what: str) -> Path:
    """A file a loader needs beyond the spec's fixed list (e.g. one split's annotations)."""
    if not path.is_file():
        raise DatasetMissing(f"{dataset}: missing {what} {path}. Found: {_listing(path)}")
    return path
