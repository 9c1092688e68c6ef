"""Referring-expression rows as the RL repositories ship them (VLM-R1, Curr-ReFT), one box per row.

Two containers, told apart by the file's suffix:

* ``.json``: a JSON list of rows (VLM-R1's ``rec_jsons_processed/refcoco_val.json``):
  ``{"image": "train2014/COCO_train2014_....jpg", "problem": "Please provide the bounding box
  coordinate of the region this sentence describes: <expr>.", "solution": [x1, y1, x2, y2],
  "normal_caption": "<expr>"}``;
* ``.jsonl``: one row per line, either the same keys (Curr-ReFT: ``{"problem", "solution":
  "<answer>[x1,y1,x2,y2]</answer>", "task": "detection", "image"}``) or VLM-R1's
  ``grpo_jsonl.py`` rows ``{"id", "image", "conversations": [{"from": "human", "value":
  "<image>..."}, {"from": "gpt", "value": "<answer>[x1,y1,x2,y2]</answer>"}]}``.

Boxes are ``[x1, y1, x2, y2]`` in pixels of the original image file the row names (VLM-R1's
eval and reward rescale the model's answer to the original image before comparing with
``solution``; Curr-ReFT compares with ``solution`` directly). ``image`` is relative to the
image folder the task names (VLM-R1's ``IMAGE_ROOT``/``--image_folders``), or absolute.

The expression is ``normal_caption`` when the row has one, else the problem with VLM-R1's
question prefix removed, else the problem as written. The sample id is the row's own ``id``
when it has one, else ``<file stem>:<n>`` with ``n`` the list index (from 0) in a ``.json``
file or the line number (from 1) in a ``.jsonl`` file.

A rows file of your own becomes a task with :func:`rows_task` (see docs/tasks/refcoco.md).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness import data
from harness.data import DatasetMissing, DatasetSpec
from harness.errors import UsageError
from harness.registry import define_task
from harness.validation import read_json_file
from tasks.grounding.base import GroundingTask

VLMR1_PREFIX = "Please provide the bounding box coordinate of the region this sentence describes:"
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_BOX = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")


# ----- reading a file ---------------------------------------------------------------------------

def iter_rows(path: Path, what: str = "rows file") -> Iterator[tuple[int, Any]]:
    """``(n, row)`` for each row: list index from 0 (``.json``) or line number from 1 (``.jsonl``)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            rows = read_json_file(path, what)
        except UsageError as exc:
            raise DatasetMissing(str(exc)) from None
        if not isinstance(rows, list):
            raise DatasetMissing(f"{what} {path}: expected a JSON list of rows, got {type(rows).__name__}")
        yield from enumerate(rows)
    elif suffix == ".jsonl":
        try:
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield lineno, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DatasetMissing(f"{what} {path}: line {lineno} is not valid JSON ({exc.msg}, column "
                                             f"{exc.colno})") from None
        except FileNotFoundError:
            raise DatasetMissing(f"{what} {path} does not exist") from None
        except UnicodeDecodeError:
            raise DatasetMissing(f"{what} {path} is not UTF-8 text") from None
    else:
        raise UsageError(f"{what} {path}: the name must end in .json (a JSON list) or .jsonl (one row per line)")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_solution(solution: Any) -> list[float] | str:
    """The box a row's solution gives, or why there is none. A list of 4 numbers, or text
    holding one ``[x1, y1, x2, y2]`` (inside the last ``<answer>...</answer>`` if tagged)."""
    if isinstance(solution, str):
        tagged = _ANSWER.findall(solution)
        text = tagged[-1] if tagged else solution
        found = _BOX.findall(text)
        if len(found) != 1:
            return f"expected one [x1, y1, x2, y2] in the solution, found {len(found)} in {solution!r:.80}"
        box = [float(v) for v in found[0]]
        if not all(math.isfinite(v) for v in box):
            return f"solution {solution!r:.80} has a coordinate that is not finite"
    elif isinstance(solution, list):
        if len(solution) != 4 or not all(_is_num(v) for v in solution):
            return f"solution must be 4 numbers [x1, y1, x2, y2], got {solution!r:.80}"
        box = [float(v) for v in solution]
    else:
        return f"solution must be a box [x1, y1, x2, y2] or text holding one, got {type(solution).__name__}"
    if box[2] < box[0] or box[3] < box[1]:
        return f"solution {box} is not [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2"
    return box


def expression_of(problem: str) -> str:
    text = problem.replace("<image>", "").strip()
    if text.startswith(VLMR1_PREFIX):
        text = text[len(VLMR1_PREFIX):].strip()
        text = text[:-1].rstrip() if text.endswith(".") else text
    return text


def row_entry(row: Any, n: int, path: Path, what: str) -> dict[str, Any]:
    where = f"{what} {path}: {'line' if path.suffix.lower() == '.jsonl' else 'row'} {n}"
    if not isinstance(row, dict):
        raise DatasetMissing(f"{where} is a {type(row).__name__}, not a JSON object")
    if "conversations" in row:  # VLM-R1 grpo_jsonl.py rows
        conv = row["conversations"]
        if (not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(c, dict) for c in conv[:2])
                or not isinstance(conv[0].get("value"), str)):
            raise DatasetMissing(f"{where}: 'conversations' must hold a human turn and a gpt turn with 'value's")
        problem, solution = conv[0]["value"], conv[1].get("value")
    else:
        problem, solution = row.get("problem"), row.get("solution")
        if "solution" not in row:
            raise DatasetMissing(f"{where} has no 'solution' (or 'conversations'); keys: {', '.join(sorted(row))}")
    image = row.get("image")
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if not isinstance(image, str) or not image:
        raise DatasetMissing(f"{where}: 'image' must be one image path, got {image!r:.80}")
    box = read_solution(solution)
    if isinstance(box, str):
        raise DatasetMissing(f"{where}: {box}")
    caption = row.get("normal_caption")
    if isinstance(caption, str) and caption.strip():
        expression = caption.strip()
    elif isinstance(problem, str) and problem.strip():
        expression = expression_of(problem)
    else:
        raise DatasetMissing(f"{where} has neither a 'normal_caption' nor a 'problem' text")
    if "id" in row:
        if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
            raise DatasetMissing(f"{where}: 'id' must be a string or an integer, got {row['id']!r:.40}")
        sample_id = str(row["id"])
    else:
        sample_id = f"{path.stem}:{n}"
    meta: dict[str, Any] = {"row": n}
    if isinstance(problem, str):
        meta["problem"] = problem
    if isinstance(row.get("task"), str):
        meta["task"] = row["task"]
    return {"id": sample_id, "image": image, "size": None, "expression": expression, "box": box, "others": [],
            "metadata": meta}


def read_rows(path: str | Path, what: str = "rows file") -> list[dict[str, Any]]:
    """Grounding index entries from a ``.json`` or ``.jsonl`` rows file, in file order."""
    path = Path(path)
    return [row_entry(row, n, path, what) for n, row in iter_rows(path, what)]


# ----- tasks --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowsSpec(DatasetSpec):
    """A rows file and the folder its image paths are relative to; each absolute or under the data root."""

    rows: str = ""

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        root = data.data_root()
        if root is None:
            raise DatasetMissing(f"{self.name}: no data root; pass --data_root DIR or set ${data.ENV_ROOT}, with "
                                 f"{self.layout_line()}")
        return root / path

    def rows_path(self) -> Path:
        return self._resolve(self.rows)

    def path(self) -> Path:
        return self.rows_path().parent

    def image_dir(self) -> Path:
        if self.image_option and data.option(self.image_option) is not None:
            return data.option(self.image_option)  # type: ignore[return-value]
        return self._resolve(self.images or ".")

    def check(self, extra=()) -> Path:
        rows = self.rows_path()
        if not rows.is_file():
            raise DatasetMissing(f"{self.name}: rows file {rows} not found. Expected: {self.layout_line()}. "
                                 f"Found: {data._listing(rows)}")
        images = self.image_dir()
        if not images.is_dir():
            hint = f" (or --data_args {self.image_option}=DIR)" if self.image_option else ""
            raise DatasetMissing(f"{self.name}: image folder {images}{hint} not found. Expected: "
                                 f"{self.layout_line()}. Found: {data._listing(images)}")
        return rows.parent


class RowsTask(GroundingTask):
    id_doc = ("the row's 'id' if it has one, else '<file stem>:<n>' (n: list index from 0 in .json, "
              "line number from 1 in .jsonl)")

    def read_index(self) -> list[dict[str, Any]]:
        spec: RowsSpec = self.dataset  # type: ignore[assignment]
        spec.check()
        return read_rows(spec.rows_path(), f"{self.name} rows")


def rows_task(name: str, rows: str | Path, images: str | Path, *, role: str = "id", description: str = "",
              image_option: str | None = None, source: str = "user rows file", register: bool = True) -> type:
    """A grounding task over one rows file (``.json`` list or ``.jsonl``).

    ``rows`` and ``images`` are absolute or relative to the data root; ``images`` is the
    folder the rows' ``image`` paths are joined to. ``image_option`` names a
    ``--data_args`` key that may point the images elsewhere. With ``register`` the task is
    added to the registry under ``name``; without, the class is returned only (for a
    ``harness.tasks`` entry point).
    """
    if role not in ("train", "id", "ood"):
        raise UsageError(f"rows_task {name}: role must be train, id or ood, got {role!r}")
    spec = RowsSpec(name=name, directory=str(Path(rows).parent), source=source,
                    layout=f"rows {rows} (.json list or .jsonl of {{image, problem, solution}} rows), images under "
                           f"{images}" + (f" or --data_args {image_option}=DIR" if image_option else ""),
                    image_option=image_option, images=str(images), rows=str(rows))
    return define_task(RowsTask, name, role, description or f"referring-expression rows from {Path(rows).name}",
                       register=register, dataset=spec)


# VLM-R1's processed RefCOCO/+/g files (README: rec_jsons_processed.zip), as named by its
# eval script (refcoco_val, refcocop_val, refcocog_val) and GRPO config (*_train).
VLMR1_DIR = "vlm_r1/rec_jsons_processed"
for _stem, _label in (("refcoco", "RefCOCO"), ("refcocop", "RefCOCO+"), ("refcocog", "RefCOCOg")):
    for _split in ("train", "val"):
        rows_task(f"vlmr1_{_stem}_{_split}", f"{VLMR1_DIR}/{_stem}_{_split}.json", "coco",
                  role="train" if _split == "train" else "id", image_option="vlmr1_images",
                  source="https://huggingface.co/datasets/omlab/VLM-R1 (rec_jsons_processed.zip)",
                  description=f"VLM-R1's processed {_label} {_split} rows ({_stem}_{_split}.json)")
