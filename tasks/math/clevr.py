"""CLEVR / Super-CLEVR / CLEVR-Math counting questions in CLEVR's questions-file format.

``CLEVR_v1.0/questions/CLEVR_<split>_questions.json`` (and Super-CLEVR's and CLEVR-Math's
generated files, which keep the format): ``{"info": {...}, "questions": [{"image_index",
"image_filename", "question", "answer", "question_index", "split", "program"?, ...}]}``,
images in ``CLEVR_v1.0/images/<split>/``. Counting questions are those whose answer is a
whole number (CLEVR's count programs are the only ones that answer with one; CLEVR-Math's
arithmetic questions too). Sample id = ``question_index``.
"""

from __future__ import annotations

from harness.data import DatasetMissing, DatasetSpec, require_file
from harness.errors import UsageError
from harness.registry import define_task
from harness.validation import read_json_file
from tasks.math.base import MathTask

SPEC = DatasetSpec(
    name="clevr", directory="clevr/CLEVR_v1.0", source="https://cs.stanford.edu/people/jcjohns/clevr/ (CLEVR_v1.0.zip)",
    layout="clevr/CLEVR_v1.0/questions/CLEVR_<split>_questions.json + clevr/CLEVR_v1.0/images/<split>/CLEVR_<split>_*.png",
    required=("questions",), image_option="clevr_images", images="images")


def count_answer(answer) -> int | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer if answer >= 0 else None
    if isinstance(answer, str) and answer.strip().isdigit():
        return int(answer.strip())
    return None


class ClevrCountTask(MathTask):
    counting = True
    dataset = SPEC
    split = "val"
    id_doc = "question_index"

    def read_index(self):
        base = self.dataset.check()
        path = require_file(base / "questions" / f"CLEVR_{self.split}_questions.json", "clevr", "questions file")
        try:
            data = read_json_file(path, "CLEVR questions file")
        except UsageError as exc:
            raise DatasetMissing(str(exc)) from None
        if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
            raise DatasetMissing(f"CLEVR questions file {path}: expected an object with a 'questions' list")
        entries = []
        for n, q in enumerate(data["questions"]):
            if not isinstance(q, dict) or not all(k in q for k in ("question", "answer", "image_filename")):
                raise DatasetMissing(f"CLEVR questions file {path}: question {n} needs question, answer and "
                                     "image_filename")
            count = count_answer(q["answer"])
            if count is None:
                continue
            qid = q.get("question_index", n)
            entries.append({"id": str(qid), "image": f"{self.split}/{q['image_filename']}", "size": None,
                            "question": q["question"], "question_type": "free_form", "answer_type": "integer",
                            "answer": str(count), "choices": None, "precision": None, "unit": None,
                            "solution": str(count), "metadata": {"image_index": q.get("image_index")}})
        return entries


define_task(ClevrCountTask, "clevr_count_val", "ood", "CLEVR v1.0 val counting questions (every whole-number answer)")
