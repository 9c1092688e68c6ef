"""Math360K (Math-LLaVA's MathV360K) and Geo170K (G-LLaVA) in the LLaVA conversations format.

``MathV360K/train_samples_all_tuning.json`` and ``Geo170K/qa_tuning.json`` are JSON lists of
``{"id"?, "image": "<path under the images folder>", "conversations": [{"from": "human",
"value": "<image>\\n<question>"}, {"from": "gpt", "value": "<answer or worked solution>"}]}``.
The question is the first human turn without ``<image>``; the gold answer is read from the
first gpt turn (an option letter when the question lists options, else a number, else short
text: tasks.math.base.infer_problem). Rows whose gpt turn yields no answer are left out and
counted in the task's notes.

Sample id = ``<source>:<id>`` when the row has an ``id``, else ``<source>:<list index>``.
The ``math`` suite holds out a seeded 1,000 of the pooled rows as its ID split
(``math_id``); ``math_train`` is every other row.
"""

from __future__ import annotations

from typing import Any

from harness.data import DatasetMissing, DatasetSpec
from harness.dataset_task import seeded_subset
from harness.errors import UsageError
from harness.registry import define_task
from harness.validation import read_json_file
from tasks.math.base import MathTask, infer_problem

SPEC = DatasetSpec(
    name="math_conversations", directory="math",
    source="MathV360K: https://huggingface.co/datasets/Zhiqiang007/MathV360K (train_samples_all_tuning.json, "
    "data_images.zip); Geo170K: https://huggingface.co/datasets/Luckyjhg/Geo170K (qa_tuning.json, images)",
    layout="math/MathV360K/train_samples_all_tuning.json + math/MathV360K/data_images/...; "
    "math/Geo170K/qa_tuning.json + math/Geo170K/images/...",
    required=("MathV360K/train_samples_all_tuning.json", "Geo170K/qa_tuning.json"))
SOURCES = (("mathv360k", "MathV360K", "train_samples_all_tuning.json", "data_images"),
           ("geo170k", "Geo170K", "qa_tuning.json", "images"))
HELDOUT, SEED = 1000, 0


def conversation_entries(rows: Any, source: str, where: str, image_dir: str) -> tuple[list[dict], list[str]]:
    """(entries, ids of rows without a readable answer) from one conversations file."""
    if not isinstance(rows, list):
        raise DatasetMissing(f"{where}: expected a JSON list of conversation rows")
    entries, skipped = [], []
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
            raise DatasetMissing(f"{where}: row {n} has no conversations list")
        if not isinstance(row.get("image"), str):
            raise DatasetMissing(f"{where}: row {n} has no image path")
        turns = row["conversations"]
        human = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "human"), None)
        gpt = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == "gpt"), None)
        if not isinstance(human, str) or not isinstance(gpt, str):
            raise DatasetMissing(f"{where}: row {n} needs a human and a gpt turn with string values")
        sid = f"{source}:{row['id'] if 'id' in row else n}"
        question = human.replace("<image>", "").strip()
        problem = infer_problem(question, gpt)
        if problem is None:
            skipped.append(sid)
            continue
        entries.append({"id": sid, "image": f"{image_dir}/{row['image']}", "size": None, "question": question,
                        **problem, "unit": None, "solution": gpt, "metadata": {"source": source, "row": n}})
    return entries, skipped


class ConversationMathTask(MathTask):
    dataset = SPEC
    id_doc = "<source>:<row id or list index>"
    heldout = False  # True: the seeded held-out rows; False: the rest

    def pooled(self) -> tuple[list[dict], dict[str, Any]]:
        base = self.dataset.check()
        entries, notes = [], {}
        for source, folder, name, images in SOURCES:
            path = base / folder / name
            try:
                rows = read_json_file(path, f"{folder} file")
            except UsageError as exc:
                raise DatasetMissing(str(exc)) from None
            got, skipped = conversation_entries(rows, source, str(path), f"{folder}/{images}")
            entries += got
            notes[f"{source}_rows"] = len(got) + len(skipped)
            notes[f"{source}_without_answer"] = len(skipped)
            notes[f"{source}_without_answer_first_ids"] = skipped[:20]
        return entries, notes

    def read_index(self):
        entries, _ = self.pooled()
        held = {e["id"] for e in seeded_subset(entries, HELDOUT, SEED, "math_id")}
        return [e for e in entries if (e["id"] in held) == self.heldout]

    def notes(self):
        _, notes = self.pooled()
        return {**notes, "heldout": f"seeded_subset(pooled rows, {HELDOUT}, seed {SEED}, 'math_id')"}


define_task(ConversationMathTask, "math_train", "train",
            "MathV360K + Geo170K conversations, all rows but the seeded 1,000 of math_id", heldout=False)
define_task(ConversationMathTask, "math_id", "id",
            "MathV360K + Geo170K conversations: a seeded 1,000 held out from math_train", heldout=True)
