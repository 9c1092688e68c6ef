"""MathVista testmini (lupantech/MathVista, AI4Math/MathVista on the HF hub).

Two upstream containers, the first found wins:

* ``mathvista/testmini.json``: the repository's ``data/testmini.json``, a dict keyed by pid,
  each ``{"question", "image": "images/<pid>.jpg", "choices", "unit", "precision", "answer",
  "question_type", "answer_type", "pid", "metadata": {..., "img_width", "img_height"}}``,
  images under ``mathvista/images/`` (``images.zip``);
* ``mathvista/data/testmini-*.parquet``: the HF parquet (same fields plus ``query`` and
  ``decoded_image`` with the image bytes; ``precision`` is float64 there).

Sample id = ``pid``. All 1,000 problems, in the file's order.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from harness.data import DatasetMissing, DatasetSpec
from harness.errors import UsageError
from harness.registry import define_task
from harness.sample import ImageRef
from harness.validation import read_json_file
from tasks.math.base import MathTask

SPEC = DatasetSpec(
    name="mathvista", directory="mathvista", source="https://github.com/lupantech/MathVista (data/testmini.json, "
    "images.zip) or https://huggingface.co/datasets/AI4Math/MathVista (data/testmini-*.parquet)",
    layout="mathvista/testmini.json + mathvista/images/<pid>.jpg, or mathvista/data/testmini-*.parquet",
    image_option="mathvista_images")

_KEYS = ("question", "answer", "question_type", "answer_type")
_TYPES = {"multi_choice": ("text",), "free_form": ("integer", "float", "list", "text")}


def _precision(value: Any, where: str) -> float | int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetMissing(f"{where}: precision must be a number or null, got {value!r}")
    return value


def problem_entry(pid: str, row: dict[str, Any], where: str) -> dict[str, Any]:
    """One index entry from a testmini row (JSON or parquet)."""
    if not isinstance(row, dict):
        raise DatasetMissing(f"{where}: problem {pid!r} is not an object")
    missing = [k for k in _KEYS if k not in row]
    if missing:
        raise DatasetMissing(f"{where}: problem {pid!r} has no {', '.join(missing)}")
    qt, at = row["question_type"], row["answer_type"]
    if not isinstance(qt, str) or not isinstance(at, str) or qt not in _TYPES or at not in _TYPES[qt]:
        raise DatasetMissing(f"{where}: problem {pid!r} has question_type {qt!r} with answer_type {at!r}")
    if not isinstance(row["question"], str) or not isinstance(row["answer"], str):
        raise DatasetMissing(f"{where}: problem {pid!r}: question and answer must be strings")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices):
            raise DatasetMissing(f"{where}: problem {pid!r}: choices must be a list of strings")
        choices = list(choices)
    if qt == "multi_choice" and (not choices or row["answer"] not in choices):
        raise DatasetMissing(f"{where}: problem {pid!r}: a multi_choice answer must be one of its choices")
    precision = _precision(row.get("precision"), f"{where}: problem {pid!r}")
    if at == "float" and precision is None:
        raise DatasetMissing(f"{where}: problem {pid!r}: a float answer needs a precision")
    meta = row.get("metadata") or {}
    image, unit = row.get("image"), row.get("unit")
    if not isinstance(meta, dict) or not isinstance(image or "", str) or not isinstance(unit or "", str):
        raise DatasetMissing(f"{where}: problem {pid!r}: metadata must be an object, image and unit strings")
    if not isinstance(meta.get("skills") or [], (list, tuple)):
        raise DatasetMissing(f"{where}: problem {pid!r}: metadata.skills must be a list")
    dims = [meta.get("img_width"), meta.get("img_height")]
    # a size that is not two positive integers is left to the image header
    size = dims if all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims) else None
    keep = {k: meta[k] for k in ("source", "category", "task", "context", "grade", "language")
            if meta.get(k) is not None}
    if meta.get("skills") is not None:
        keep["skills"] = list(meta["skills"])
    return {"id": str(pid), "image": image or f"images/{pid}.jpg", "size": size,
            "question": row["question"], "question_type": qt, "answer_type": at, "answer": row["answer"],
            "choices": choices, "precision": precision, "unit": unit or None, "solution": None,
            "metadata": keep}


class MathVistaTask(MathTask):
    dataset = SPEC
    id_doc = "MathVista pid"

    def source_file(self) -> Path:
        base = self.dataset.check()
        if (base / "testmini.json").is_file():
            return base / "testmini.json"
        found = sorted((base / "data").glob("testmini-*.parquet")) if (base / "data").is_dir() else []
        if found:
            return found[0]
        raise DatasetMissing(f"mathvista: neither {base}/testmini.json nor {base}/data/testmini-*.parquet. Expected "
                             f"layout: {SPEC.layout_line()}")

    def read_index(self):
        path = self.source_file()
        if path.suffix == ".json":
            try:
                rows = read_json_file(path, "MathVista file")
            except UsageError as exc:
                raise DatasetMissing(str(exc)) from None
            if not isinstance(rows, dict):
                raise DatasetMissing(f"MathVista file {path}: expected a JSON object keyed by pid")
            return [problem_entry(str(pid), row, str(path)) for pid, row in rows.items()]
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=[c for c in pq.read_schema(path).names if c != "decoded_image"])
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetMissing(f"MathVista parquet {path}: unreadable ({type(exc).__name__}: {exc})") from None
        entries = []
        for n, row in enumerate(table.to_pylist()):
            if "pid" not in row:
                raise DatasetMissing(f"MathVista parquet {path}: no pid column")
            entry = problem_entry(str(row["pid"]), row, str(path))
            entry["parquet"] = {"file": str(path), "row": n}
            entries.append(entry)
        return entries

    def make_image(self, entry):
        ref = entry.get("parquet")
        on_disk = Path(self.image_path(entry))
        if ref is None or on_disk.is_file():
            return super().make_image(entry)

        def load():  # the row's embedded bytes, read only when pixels are needed
            import pyarrow.parquet as pq
            from PIL import Image

            cell = pq.read_table(ref["file"], columns=["decoded_image"]).column(0)[ref["row"]].as_py()
            with Image.open(io.BytesIO(cell["bytes"])) as im:
                im.load()
                return im.convert("RGB")

        size = tuple(entry["size"]) if entry.get("size") else (0, 0)
        return ImageRef(uri=f"{ref['file']}#{entry['id']}", size=size, loader=load)  # type: ignore[arg-type]


define_task(MathVistaTask, "mathvista_testmini", "ood",
            "MathVista testmini (1,000 problems), the math benchmark; scored by the profile's math_rule")
