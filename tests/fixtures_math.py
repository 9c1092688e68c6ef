"""Tiny math datasets in their upstream formats, written under a data root."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# MathVista testmini rows as data/testmini.json holds them (a dict keyed by pid)
MATHVISTA = {
    "3": {"question": "What is the angle BOC?", "image": "images/3.jpg", "choices": ["135°", "140°", "145°", "150°"],
          "unit": None, "precision": None, "answer": "145°", "question_type": "multi_choice", "answer_type": "text",
          "pid": "3", "metadata": {"split": "testmini", "img_width": 32, "img_height": 24, "source": "GeoQA+",
                                   "skills": ["geometry reasoning"]}},
    "2": {"question": "what is the total volume of the measuring cup?", "image": "images/2.jpg", "choices": None,
          "unit": "g", "precision": None, "answer": "1000", "question_type": "free_form", "answer_type": "integer",
          "pid": "2", "metadata": {"split": "testmini", "img_width": 32, "img_height": 24, "source": "TextVQA"}},
    "1": {"question": "By what distance d is the spring compressed?", "image": "images/1.jpg", "choices": None,
          "unit": None, "precision": 1, "answer": "3.5", "question_type": "free_form", "answer_type": "float",
          "pid": "1", "metadata": {"split": "testmini", "img_width": 32, "img_height": 24, "source": "SciBench"}},
    "108": {"question": "What is the slope?", "image": "images/108.jpg", "choices": None, "unit": None,
            "precision": 2, "answer": "51.04", "question_type": "free_form", "answer_type": "float", "pid": "108",
            "metadata": {"split": "testmini", "img_width": 32, "img_height": 24}},
    "506": {"question": "Between which two years was the peak?", "image": "images/506.jpg", "choices": None,
            "unit": None, "precision": None, "answer": "[2014, 2016]", "question_type": "free_form",
            "answer_type": "list", "pid": "506", "metadata": {"split": "testmini", "img_width": 32, "img_height": 24}},
    "7": {"question": "Is the shape blue?", "image": "images/7.jpg", "choices": ["Yes", "No"], "unit": None,
          "precision": None, "answer": "No", "question_type": "multi_choice", "answer_type": "text", "pid": "7",
          "metadata": {"split": "testmini", "img_width": 32, "img_height": 24}},
}


def _image(path: Path, size=(32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 140, 200)).save(path)


def write_mathvista(root: Path, container: str = "json") -> dict:
    """``mathvista/testmini.json`` + ``images/<pid>.jpg``, or the HF parquet with embedded bytes."""
    base = root / "mathvista"
    base.mkdir(parents=True, exist_ok=True)
    if container == "json":
        (base / "testmini.json").write_text(json.dumps(MATHVISTA, indent=4))
        for pid in MATHVISTA:
            _image(base / "images" / f"{pid}.jpg")
    else:
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = []
        for row in MATHVISTA.values():
            buf = io.BytesIO()
            Image.new("RGB", (32, 24), (10, 20, 30)).save(buf, format="PNG")
            r = dict(row)
            r["precision"] = float(row["precision"]) if row["precision"] is not None else None  # float64 on the hub
            r["decoded_image"] = {"bytes": buf.getvalue(), "path": None}
            r["query"] = row["question"]
            rows.append(r)
        (base / "data").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), base / "data" / "testmini-00000-of-00001-abc.parquet")
    return MATHVISTA


MATHV360K = [
    {"id": "m1", "image": "TabMWP/images/1.png", "conversations": [
        {"from": "human", "value": "<image>\nWhich shape is largest?\nChoices:\n(A) circle\n(B) square\n(C) star"},
        {"from": "gpt", "value": "The answer is B"}]},
    {"id": "m2", "image": "TabMWP/images/2.png", "conversations": [
        {"from": "human", "value": "<image>\nHow many apples are there?"}, {"from": "gpt", "value": "7"}]},
    {"id": "m3", "image": "TabMWP/images/3.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the chart in detail."},
        {"from": "gpt", "value": "The chart shows many things over a long time and no single answer is asked for."}]},
]
GEO170K = [
    {"image": "geoqa_plus/10.png", "conversations": [
        {"from": "human", "value": "<image>\nFind the length of AB.\nChoices:\nA: 2.5\nB: 3.0\nC: 4.0\nD: 5.0"},
        {"from": "gpt", "value": "Since AB is twice BC, AB = 4.0. Answer: C"}]},
    {"image": "geoqa_plus/11.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is angle x in degrees?"},
        {"from": "gpt", "value": "The angles sum to 180, so x = 35.5. The answer is 35.5"}]},
]


def write_conversations(root: Path) -> dict:
    base = root / "math"
    for folder, name, images, rows in (("MathV360K", "train_samples_all_tuning.json", "data_images", MATHV360K),
                                       ("Geo170K", "qa_tuning.json", "images", GEO170K)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        (base / folder / name).write_text(json.dumps(rows))
        for r in rows:
            _image(base / folder / images / r["image"])
    return {"ids": ["mathv360k:m1", "mathv360k:m2", "geo170k:0", "geo170k:1"], "skipped": ["mathv360k:m3"]}


CURR_REFT_MATH = [
    {"problem": "What is 3 + 4?", "solution": "<answer>7</answer>", "task": "math",
     "image": "/mnt/tenant-home_speed/AIM/data/images/math/1.png"},
    {"problem": "Which is larger?\nA. 2\nB. 5", "solution": "<answer>B</answer>", "task": "math",
     "image": "/mnt/tenant-home_speed/AIM/data/images/math/2.png"},
]
SUPERCLEVR = [
    {"image": "/mnt/tenant-home_speed/AIM/data/Superclever/images/superCLEVR_new_025000.png",
     "problem": "How many different items are there in the image?", "solution": 4},
    {"image": "/mnt/tenant-home_speed/AIM/data/Superclever/images/superCLEVR_new_025001.png",
     "problem": "How many different items are there in the image?", "solution": 9},
]


def write_curr_reft(root: Path) -> dict:
    base = root / "curr_reft" / "grpo_data"
    d = base / "train" / "open" / "openr1_8k"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("math_math_train.jsonl", "math_math_test.jsonl"):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in CURR_REFT_MATH))
    for r in CURR_REFT_MATH:
        _image(base / "images" / r["image"].rsplit("images/", 1)[1])
    sc = root / "superclevr"
    sc.mkdir(parents=True, exist_ok=True)
    (sc / "superclevr_test200_counting_problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in SUPERCLEVR))
    for r in SUPERCLEVR:
        _image(sc / "images" / Path(r["image"]).name)
    return {"math_ids": ["math_math_test:1", "math_math_test:2"],
            "count_ids": ["superclevr_test200_counting_problems:1", "superclevr_test200_counting_problems:2"]}


CLEVR_QUESTIONS = {"info": {"split": "val", "version": "1.0"}, "questions": [
    {"image_index": 0, "split": "val", "image_filename": "CLEVR_val_000000.png", "question_index": 0,
     "question": "How many cubes are there?", "answer": "3", "question_family_index": 40,
     "program": [{"inputs": [], "function": "scene", "value_inputs": []},
                 {"inputs": [0], "function": "count", "value_inputs": []}]},
    {"image_index": 0, "split": "val", "image_filename": "CLEVR_val_000000.png", "question_index": 1,
     "question": "Is there a red sphere?", "answer": "yes", "question_family_index": 38},
    {"image_index": 1, "split": "val", "image_filename": "CLEVR_val_000001.png", "question_index": 2,
     "question": "What number of things are either big balls or tiny cylinders?", "answer": "0"},
]}


def write_clevr(root: Path) -> dict:
    base = root / "clevr" / "CLEVR_v1.0"
    (base / "questions").mkdir(parents=True, exist_ok=True)
    (base / "questions" / "CLEVR_val_questions.json").write_text(json.dumps(CLEVR_QUESTIONS))
    for name in ("CLEVR_val_000000.png", "CLEVR_val_000001.png"):
        _image(base / "images" / "val" / name)
    return {"ids": ["0", "2"], "counts": [3, 0]}
