"""A task over a local dataset: an index read once from upstream files, samples made on demand.

A family (classification, grounding) subclasses :class:`DatasetTask` once; a split is a
subclass that says which dataset it reads (``dataset``: a
:class:`~harness.data.DatasetSpec`) and implements :meth:`read_index`, which returns
light entries (ids, relative paths, labels, boxes: no pixels). Samples are built from
entries as they stream, so header reads and image decodes happen one sample at a time.

The index is cached per process and data configuration; the dataset fingerprint is a
hash of the whole index, so a changed annotation file changes the run's provenance.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Iterator

from harness import data
from harness.data import DatasetSpec
from harness.errors import UnknownName
from harness.sample import Sample
from harness.task import Task

_INDEX_CACHE: dict[tuple, list[dict[str, Any]]] = {}


class DatasetTask(Task):
    dataset: DatasetSpec
    #: one line each, shown by ``harness tasks``: the prompt/parser/metric this split uses
    protocol: str = ""
    #: what a sample id is (``sent_id``, ``path relative to the split root``), documented per family
    id_doc: str = ""

    # ----- to implement ---------------------------------------------------------------
    def read_index(self) -> list[dict[str, Any]]:
        """Entries in a fixed order, each a JSON-able dict with at least ``id``.
        Call ``self.dataset.check()`` first so a missing dataset gives the helpful error."""
        raise NotImplementedError

    def make_sample(self, entry: dict[str, Any]) -> Sample:
        raise NotImplementedError

    def notes(self) -> dict[str, Any]:
        """Facts about how the split was built (a seeded class selection, overlap counts),
        written into the run's provenance next to the dataset fingerprint."""
        return {}

    # ----- the index --------------------------------------------------------------------
    def cache_key(self) -> tuple:
        cfg = data.current()
        return (type(self).__qualname__, self.name, str(cfg.root), tuple(sorted(cfg.options.items())))

    def index(self) -> list[dict[str, Any]]:
        key = self.cache_key()
        if key not in _INDEX_CACHE:
            entries = self.read_index()
            ids = [e["id"] for e in entries]
            if len(set(ids)) != len(ids):
                dup = next(i for i in ids if ids.count(i) > 1)
                raise data.DatasetMissing(f"{self.name}: sample id {dup!r} occurs more than once in the annotations")
            _INDEX_CACHE[key] = entries
        return _INDEX_CACHE[key]

    def data_status(self) -> tuple[bool, str]:
        """(found, sample count or the reason it is missing), for ``harness tasks`` and ``harness data check``."""
        try:
            return True, str(len(self.index()))
        except data.DatasetMissing as exc:
            return False, str(exc)

    # ----- Task ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index())

    def samples(self) -> Iterator[Sample]:
        for entry in self.index():
            yield self.make_sample(entry)

    def get_sample(self, sample_id: str) -> Sample:
        key = ("by_id",) + self.cache_key()
        if key not in _INDEX_CACHE:
            _INDEX_CACHE[key] = {e["id"]: e for e in self.index()}  # type: ignore[assignment]
        try:
            return self.make_sample(_INDEX_CACHE[key][sample_id])  # type: ignore[call-overload]
        except KeyError:
            raise UnknownName(f"{self.name}: no sample with id {sample_id!r}") from None

    def fingerprint(self) -> str:
        key = ("fingerprint",) + self.cache_key()
        if key not in _INDEX_CACHE:  # hashing a large index takes seconds: once per process
            digest = hashlib.sha256(self.name.encode())
            for entry in self.index():
                digest.update(json.dumps(entry, sort_keys=True, default=str).encode())
            _INDEX_CACHE[key] = digest.hexdigest()[:16]  # type: ignore[assignment]
        return _INDEX_CACHE[key]  # type: ignore[return-value]


def seeded_subset(items: list, k: int, seed: int | str, *key: Any) -> list:
    """``k`` items chosen with a stable seed, kept in their original order (the choice is
    reproducible across processes and machines and recorded by its seed)."""
    from harness.task import stable_rng

    if k >= len(items):
        return list(items)
    rng: random.Random = stable_rng(seed, *key)
    chosen = sorted(rng.sample(range(len(items)), k))
    return [items[i] for i in chosen]
