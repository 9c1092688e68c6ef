"""RS-SFT: sampled answers the scorer (or an LLM judge) accepts become SFT targets; chained after a trainer."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.errors import UsageError  # noqa: E402
from trainers.rs_sft import grade, parse_judge  # noqa: E402

SETS = ["max_steps=2", "save_steps=2", "rs_sft.batch_size=4", "rs_sft.sample_prompts=12", "rs_sft.num_samples=4",
        "progress=false"]


@pytest.mark.parametrize("sets, message", [
    (["rs_sft.num_samples=1"], "num_samples must be >= 2"),
    (["rs_sft.sample_temperature=0"], "sample_temperature must be > 0"),
    (["rs_sft.accept_threshold=2"], "accept_threshold must be in"),
    (["rs_sft.judge=localhost,gpt"], "URL must start with http"),
    (["rs_sft.judge=http://x"], "expected URL,MODEL"),
    (["rs_sft.judge_threshold=120"], "0-100 grade"),
])
def test_bad_options_are_one_line_errors(sets, message):
    from trainers import get_trainer, load_config

    with pytest.raises(UsageError, match=message):
        get_trainer("rs_sft").check("synth_cls", load_config("rs_sft", overrides=SETS + sets, output_dir="/tmp/x"))


class _Grader(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge: 95 when the candidate equals the reference, else 20; 'boom' answers fail."""

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        reference = text.split("Reference answer: ")[1].split("\n")[0]
        answer = text.split("Candidate answer: ")[1].split("\n")[0]
        if answer == "boom":
            self.send_response(500)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"content": "95" if answer == reference else "20"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_judge_grades_through_an_openai_compatible_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Grader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = parse_judge(f"http://127.0.0.1:{server.server_port}/v1,grader")
        assert judge.endpoint().endswith("/v1/chat/completions")
        assert grade(judge, "circle", "circle") == 95.0
        assert grade(judge, "circle", "square") == 20.0
        assert grade(judge, "circle", "boom") is None  # a failed request keeps nothing
    finally:
        server.shutdown()


@pytest.mark.slow
def test_rs_sft_trains_on_accepted_samples_and_counts_their_cost(tiny_model_dir, tmp_path):
    from harness.conventions import ModelConventions
    from harness.difficulty import load_difficulty
    from harness.protocol import get_profile
    from harness.taskspec import make_task
    from trainers import get_trainer, load_config

    trainer = get_trainer("rs_sft")
    out = tmp_path / "rs"
    ckpts = trainer.train(tiny_model_dir, "synth_cls",
                          load_config("rs_sft", overrides=SETS + ["holdout=5"], output_dir=str(out)))
    assert [c.step for c in ckpts] == [2]
    diff = load_difficulty(out / "samples")
    assert diff.profiled == 12 and min(diff.labels) >= 5  # the holdout is never sampled
    task, conv, strict = make_task("synth_cls_train"), ModelConventions(), get_profile("strict")
    samples = dict(enumerate(task.samples()))
    pairs = trainer._accepted()
    assert pairs and {i for i, _ in pairs} <= set(diff.labels)
    for index, answers in pairs:  # every target is a sampled answer the task's own scorer accepts
        assert all(task.reward(a, samples[index], conv, strict) >= 0.5 for a in answers)
    cost = ckpts[-1].cost
    assert cost["generated_tokens"] >= (diff.cost.get("generated_tokens") or 0) > 0
    assert cost["rs_accepted_prompts"] == len(pairs)


@pytest.mark.slow
def test_train_and_eval_chains_rs_sft_after_the_trainer_before_it(tiny_model_dir, tmp_path):
    from harness.study import StudyConfig, run_study

    root = tmp_path / "study"
    run_study(StudyConfig(model=tiny_model_dir, suite="synth_cls", trainers=["sft", "rs_sft"], eval_limit=4,
                          bootstrap=10, progress=False, output_path=str(root),
                          overrides=["max_steps=2", "save_steps=2", "batch_size=4", "rs_sft.sample_prompts=12",
                                     "rs_sft.num_samples=4"]))
    sft_final = root / "train" / "sft" / "checkpoints" / "step-000002"
    sampled_from = json.loads((root / "train" / "rs_sft" / "samples" / "config.json").read_text())["model"]
    assert Path(sampled_from) == sft_final.resolve()
    info = json.loads((root / "train" / "rs_sft" / "checkpoints" / "step-000002" / "harness_checkpoint.json")
                      .read_text())
    assert Path(info["started_from"]) == sft_final.resolve()
    sft_cost = json.loads((sft_final / "harness_checkpoint.json").read_text())["cost"]
    assert info["cost"]["wall_time_s"] > sft_cost["wall_time_s"]  # the SFT run's cost is part of RS-SFT's
    assert (root / "runs" / "rs_sft" / "step-000002" / "aggregates.json").is_file()
