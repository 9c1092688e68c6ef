"""Ref-L4 (Chen et al., 2024): long referring expressions over COCO and Objects365 images.

Upstream is the Hugging Face dataset ``JierunChen/Ref-L4``; its loader and evaluator are
github.com/JierunChen/Ref-L4. Under the data root, the files as that dataset ships them::

    ref-l4/ref-l4-val.parquet     one row per annotation
    ref-l4/ref-l4-test.parquet
    ref-l4/images/<file_name>     images.tar.gz extracted (its members are bare file names):
                                  mkdir images && tar -xzf images.tar.gz -C images
                                  (or --data_args refl4_images=DIR)

A row has ``id`` (the annotation id: the key of upstream's prediction files, and our
sample id), ``caption``, ``bbox`` ([x, y, w, h] in original pixels), ``width``,
``height``, ``file_name``, ``image_id`` (source-prefixed: ``coco_128974``, ``o365_...``),
``bbox_id``, ``ori_category_id``, ``is_rewrite``, ``split``, ``bbox_area``. One sample per
row, in file order. Images are read from the extracted directory, never the tarball
(a gzip stream cannot be read at random).

The ``*_noncoco`` splits are DC-SFT's OOD set ("a subset of the Ref-L4 validation set
that excludes all COCO images"). DC-SFT ships no list, so the rule is ours: a row is
COCO-sourced when its ``image_id`` starts with ``coco_`` or its ``file_name`` with
``COCO_`` (COCO 2014 file names); :meth:`notes` records how many rows that excluded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.registry import define_task
from tasks.grounding.base import GroundingTask, xywh_to_xyxy

REFL4 = DatasetSpec(
    name="ref-l4",
    directory="ref-l4",
    source="https://huggingface.co/datasets/JierunChen/Ref-L4 (loader/evaluator: github.com/JierunChen/Ref-L4)",
    layout=("ref-l4/ref-l4-val.parquet, ref-l4/ref-l4-test.parquet, ref-l4/images/<file_name> (images.tar.gz "
            "extracted: mkdir images && tar -xzf images.tar.gz -C images; or --data_args refl4_images=DIR)"),
    image_option="refl4_images",
    images="images",
)

#: the columns a sample needs; the rest are copied into metadata when present
REQUIRED_COLUMNS = ("id", "caption", "bbox", "width", "height", "file_name", "image_id")
OPTIONAL_COLUMNS = ("bbox_id", "ori_category_id", "is_rewrite", "split")

# Per-process facts about a read (excluded counts), keyed like the index cache, so that
# notes() is right for any instance even when another one read the index.
_NOTES: dict[tuple, dict[str, Any]] = {}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def image_source(row: dict[str, Any]) -> str:
    """Where the image comes from: the ``image_id`` prefix (``coco``, ``o365``, ...)."""
    image_id = str(row["image_id"])
    return image_id.split("_", 1)[0].lower() if "_" in image_id else "unknown"


def is_coco(row: dict[str, Any]) -> bool:
    return str(row["image_id"]).lower().startswith("coco_") or str(row["file_name"]).startswith("COCO_")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The parquet's rows (required and optional columns only), or one DatasetMissing line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(exc: Exception) -> DatasetMissing:
        return DatasetMissing(f"ref-l4: {path} is not a readable parquet file (truncated or damaged?): "
                              f"{type(exc).__name__}: {exc}")

    try:
        names = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(exc) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DatasetMissing(f"ref-l4: {path}: missing column(s) {', '.join(missing)}; "
                             f"found {', '.join(sorted(names))}")
    columns = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in names]
    try:
        return pq.read_table(path, columns=columns).to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(exc) from None


def check_row(row: dict[str, Any], where: str) -> None:
    """One annotation row, or a DatasetMissing naming the row and the problem."""
    if not (_is_int(row["id"]) or (isinstance(row["id"], str) and row["id"])):
        raise DatasetMissing(f"{where}: 'id' must be an integer or a non-empty string, got {row['id']!r}")
    if not isinstance(row["caption"], str) or not row["caption"].strip():
        raise DatasetMissing(f"{where}: 'caption' must be a non-empty string, got {row['caption']!r:.80}")
    bbox = row["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
        raise DatasetMissing(f"{where}: 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r:.80}")
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise DatasetMissing(f"{where}: 'bbox' {bbox} has a non-positive width or height")
    for key in ("width", "height"):
        if not _is_int(row[key]) or row[key] <= 0:
            raise DatasetMissing(f"{where}: '{key}' must be a positive integer, got {row[key]!r}")
    name = row["file_name"]
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise DatasetMissing(f"{where}: 'file_name' must be a relative file name, got {name!r:.80}")
    if not isinstance(row["image_id"], (str, int)) or isinstance(row["image_id"], bool) or row["image_id"] == "":
        raise DatasetMissing(f"{where}: 'image_id' must be a string or integer, got {row['image_id']!r:.80}")


class RefL4Task(GroundingTask):
    dataset = REFL4
    #: upstream split: "val" or "test"
    split = "val"
    #: DC-SFT's OOD variant: rows whose image is from COCO are left out
    exclude_coco = False
    id_doc = "the Ref-L4 annotation id (parquet column 'id'), as in upstream prediction files"

    def read_index(self) -> list[dict[str, Any]]:
        base = self.dataset.check()
        path = require_file(base / f"ref-l4-{self.split}.parquet", self.dataset.name, f"{self.split} annotations")
        rows = read_rows(path)
        for i, row in enumerate(rows):
            check_row(row, f"ref-l4: {path}: row {i}")
        # other annotated boxes of the same image: the hard multiple-choice distractors
        by_image: dict[str, list[list[float]]] = {}
        for row in rows:
            box = xywh_to_xyxy(row["bbox"])
            seen = by_image.setdefault(str(row["image_id"]), [])
            if box not in seen:
                seen.append(box)
        entries: list[dict[str, Any]] = []
        sources: dict[str, int] = {}
        excluded = 0
        for row in rows:
            source = image_source(row)
            sources[source] = sources.get(source, 0) + 1
            if self.exclude_coco and is_coco(row):
                excluded += 1
                continue
            box = xywh_to_xyxy(row["bbox"])
            metadata = {"image_id": str(row["image_id"]), "source": source}
            metadata.update({k: row[k] for k in OPTIONAL_COLUMNS if k in row and k != "split"})
            entries.append({
                "id": str(row["id"]),
                "image": row["file_name"],
                "size": [row["width"], row["height"]],
                "expression": row["caption"].strip(),
                "box": box,
                "others": [b for b in by_image[str(row["image_id"])] if b != box],
                "metadata": metadata,
            })
        notes: dict[str, Any] = {"upstream_rows": len(rows), "rows_by_image_source": dict(sorted(sources.items()))}
        if self.exclude_coco:
            notes.update(excluded_coco=excluded, kept=len(entries),
                         rule="excluded rows whose image_id starts with 'coco_' or file_name with 'COCO_'")
        _NOTES[self.cache_key()] = notes
        return entries

    def notes(self) -> dict[str, Any]:
        self.index()
        key = self.cache_key()
        if key not in _NOTES:  # the index was cached before this module recorded notes (cannot happen normally)
            self.read_index()
        return dict(_NOTES[key])


def _define(name: str, split: str, exclude_coco: bool, description: str) -> type:
    return define_task(RefL4Task, name, "ood", description, split=split, exclude_coco=exclude_coco)


_define("refl4_val", "val", False, "Ref-L4 val: long referring expressions, COCO + Objects365 images")
_define("refl4_test", "test", False, "Ref-L4 test: long referring expressions, COCO + Objects365 images")
_define("refl4_val_noncoco", "val", True, "Ref-L4 val without COCO images (DC-SFT's OOD grounding set)")
_define("refl4_test_noncoco", "test", True, "Ref-L4 test without COCO images")
