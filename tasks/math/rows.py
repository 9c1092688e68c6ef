"""Curr-ReFT's math rows and its Super-CLEVR counting file (ding523/Curr_REFT, ZTE-AIM/Curr-ReFT-data).

JSONL, one row per line: ``{"problem", "solution", "task": "math", "image"}``. Math rows
(``grpo_data/train/open/openr1_8k/math_math_{train,test}.jsonl``) write the solution as
``<answer>...</answer>`` (gold typed by tasks.math.base.infer_problem; rows without a readable
answer are an error). The counting file (``superclevr_test200_counting_problems.jsonl``,
shipped in the repository's ``eval/``) writes ``{"image": "/mnt/.../superCLEVR_new_025000.png",
"problem": "How many different items are there in the image?", "solution": 4}``.

``image`` holds the authors' absolute paths: an existing absolute path is used; otherwise the
part after the last ``images/`` (else the file name) under the task's image folder.
Sample id = ``<file stem>:<line number>``.
"""

from __future__ import annotations

from pathlib import Path

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.registry import define_task
from tasks.grounding.rows import iter_rows
from tasks.math.base import MathTask, infer_problem

MATH_SPEC = DatasetSpec(
    name="curr_reft_math", directory="curr_reft/grpo_data",
    source="https://huggingface.co/datasets/ZTE-AIM/Curr-ReFT-data (grpo_data)",
    layout="curr_reft/grpo_data/train/open/openr1_8k/math_math_{train,test}.jsonl + curr_reft/grpo_data/images/",
    image_option="curr_reft_images", images="images")
COUNT_SPEC = DatasetSpec(
    name="superclevr_count200", directory="superclevr",
    source="Curr_REFT eval/superclevr_test200_counting_problems.jsonl; images: Super-CLEVR images.zip "
    "(https://www.cs.jhu.edu/~zhuowan/zhuowan/SuperCLEVR/to_be_released/images.zip)",
    layout="superclevr/superclevr_test200_counting_problems.jsonl + superclevr/images/superCLEVR_new_*.png",
    required=("superclevr_test200_counting_problems.jsonl",), image_option="superclevr_images", images="images")


def relative_image(path: str) -> str:
    if Path(path).is_absolute() and Path(path).exists():
        return path
    return path.rsplit("images/", 1)[1] if "images/" in path else Path(path).name


class CurrReftRowsTask(MathTask):
    rows_file = ""
    id_doc = "<file stem>:<line number>"

    def read_index(self):
        base = self.dataset.check()
        path = require_file(base / self.rows_file, self.dataset.name, "rows file")
        entries = []
        for n, row in iter_rows(path, f"{self.dataset.name} rows file"):
            where = f"{path} line {n}"
            if not isinstance(row, dict) or not isinstance(row.get("problem"), str) or "solution" not in row:
                raise DatasetMissing(f"{where}: a row needs a problem string and a solution")
            if not isinstance(row.get("image"), str):
                raise DatasetMissing(f"{where}: no image path")
            entry = {"id": f"{path.stem}:{n}", "image": relative_image(row["image"]), "size": None,
                     "question": row["problem"], "unit": None, "metadata": {"line": n, "task": row.get("task")}}
            entry.update(self.read_gold(row, where))
            entries.append(entry)
        return entries

    def read_gold(self, row, where):
        if not isinstance(row["solution"], str):
            raise DatasetMissing(f"{where}: solution must be a string")
        problem = infer_problem(row["problem"], row["solution"])
        if problem is None:
            raise DatasetMissing(f"{where}: no answer in the solution {row['solution'][:60]!r}")
        return {**problem, "solution": row["solution"]}


class CountRowsTask(CurrReftRowsTask):
    counting = True
    dataset = COUNT_SPEC
    rows_file = "superclevr_test200_counting_problems.jsonl"

    def read_gold(self, row, where):
        sol = row["solution"]
        if isinstance(sol, bool) or not isinstance(sol, int) or sol < 0:
            raise DatasetMissing(f"{where}: solution must be a non-negative integer count, got {sol!r}")
        return {"question_type": "free_form", "answer_type": "integer", "answer": str(sol), "choices": None,
                "precision": None, "solution": str(sol)}


define_task(CurrReftRowsTask, "curr_reft_math_train", "train", "Curr-ReFT's math training rows (Math360K/Geo170K)",
            dataset=MATH_SPEC, rows_file="train/open/openr1_8k/math_math_train.jsonl")
define_task(CurrReftRowsTask, "curr_reft_math_test", "id", "Curr-ReFT's in-domain math test rows",
            dataset=MATH_SPEC, rows_file="train/open/openr1_8k/math_math_test.jsonl")
define_task(CountRowsTask, "superclevr_count200", "ood",
            "Curr-ReFT's OOD math: 200 Super-CLEVR counting questions")
