"""harness.cli: listing, argument coercion, errors, eval and score end to end with a fake backend."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.cli import _coerce, main, parse_kv  # noqa: E402
from harness.errors import UsageError  # noqa: E402
from harness.evaluator import run_eval  # noqa: E402
from harness.registry import BACKENDS  # noqa: E402
from harness.rundir import RunDir  # noqa: E402
from leaderboards.table import eval_rows, render_csv, render_text  # noqa: E402

try:  # tests/ is a plain directory (on sys.path) or a package
    from fake_backend import FakeBackend, config  # noqa: E402
except ImportError:  # pragma: no cover
    from tests.fake_backend import FakeBackend, config  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_git")



SYNTH_TASKS = {"synth_cls_train", "synth_cls_id", "synth_cls_style", "synth_cls_clutter", "synth_ground_train",
               "synth_ground_id", "synth_ground_long", "synth_ground_reason", "synth_detect_train",
               "synth_detect_base", "synth_detect_novel", "synth_count_train", "synth_count_id", "synth_count_arith"}
SYNTH_SUITES = {"synth_cls", "synth_ground", "synth_detect", "synth_count"}


# ----------------------------------------------------------------------------- listing


def test_tasks_table(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in SYNTH_TASKS:
        assert name in out
    assert "acc@0.5,acc@0.75,acc@0.9,miou" in out and "f1,precision,recall" in out
    assert ":mc" in out and ":yesno" in out


def test_tasks_json(capsys):
    assert main(["tasks", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert SYNTH_TASKS <= set(by_name)
    row = by_name["synth_cls_id"]
    assert {k: row[k] for k in ("name", "family", "role", "size", "metrics", "data")} == {
        "name": "synth_cls_id", "family": "classification", "role": "id", "size": 300, "metrics": ["acc"],
        "data": "generated"}
    # a local-dataset task without data is listed, marked missing, with the reason
    assert by_name["refcoco_val"]["data"] == "missing" and "refer/refcoco" in by_name["refcoco_val"]["layout"]
    assert by_name["synth_count_train"]["size"] == 20000 and by_name["synth_count_train"]["role"] == "train"
    assert by_name["synth_detect_novel"]["role"] == "ood"


def test_suites_json(capsys):
    assert main(["suites", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    suites = {s["name"]: s for s in data["suites"]}
    assert SYNTH_SUITES <= set(suites)
    assert suites["synth_cls"]["train"] == "synth_cls_train"
    assert suites["synth_cls"]["id"] == ["synth_cls_id"]
    assert suites["synth_cls"]["ood"] == ["synth_cls_style", "synth_cls_clutter"]
    assert data["groups"]["synth"] == ["synth_cls", "synth_ground", "synth_detect", "synth_count"]


def test_suites_table(capsys):
    assert main(["suites"]) == 0
    out = capsys.readouterr().out
    for name in SYNTH_SUITES:
        assert name in out
    assert "group synth: synth_cls, synth_ground, synth_detect, synth_count" in out


# ----------------------------------------------------------------------------- parse_kv


def test_parse_kv_coercions():
    text = "dtype=bfloat16,device=cuda,threads=1,lr=1e-4,flag=true,off=False,x=none,y=null,box_space=norm1000"
    assert parse_kv(text) == {
        "dtype": "bfloat16", "device": "cuda", "threads": 1, "lr": 1e-4, "flag": True, "off": False, "x": None,
        "y": None, "box_space": "norm1000"}
    assert type(parse_kv("a=1")["a"]) is int and type(parse_kv("a=1.5")["a"]) is float
    assert parse_kv("path=/a/b=c") == {"path": "/a/b=c"}  # only the first '=' splits
    assert parse_kv(" a = 2 , ,b=x ") == {"a": 2, "b": "x"}
    assert parse_kv("device=cuda:0") == {"device": "cuda:0"}
    assert parse_kv(None) == {} and parse_kv("") == {}
    assert _coerce("-3") == -3 and _coerce("TRUE") is True and _coerce("None") is None and _coerce("abc") == "abc"


def test_parse_kv_needs_key_value():
    with pytest.raises(UsageError, match="expected key=value in --model_args, got 'dtype'"):
        parse_kv("dtype")


# ----------------------------------------------------------------------------- errors


def test_eval_unknown_task_exits_2(capsys, tmp_path):
    rc = main(["eval", "--model", "tiny", "--tasks", "synth_cls_id,not_a_task",
               "--output_path", str(tmp_path / "r"), "--no_progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: unknown task, suite or group 'not_a_task'")
    assert "synth_cls_id" in err  # the message lists what is known
    assert not (tmp_path / "r").exists()  # nothing was started


def test_eval_bad_format_exits_2(capsys):
    assert main(["eval", "--model", "tiny", "--tasks", "synth_cls:cloze", "--no_progress"]) == 2
    assert "unknown format 'cloze'" in capsys.readouterr().err


def test_eval_requires_model_and_tasks(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--tasks", "synth_cls"])
    assert exc.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_score_missing_file_exits_2(capsys, tmp_path):
    assert main(["score", "--task", "synth_cls_id", "--predictions", str(tmp_path / "none.jsonl")]) == 2
    assert "no predictions file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- eval and score end to end


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run"
    result = run_eval(config(path, tasks=["synth_cls_id", "synth_ground_id:mc"]),
                      backend=FakeBackend(specs=["synth_cls_id", "synth_ground_id:mc"]))
    return path, result


def test_score_prints_the_eval_value(capsys, fake_run):
    path, result = fake_run
    agg = result.aggregates[0]
    assert agg["task"] == "synth_cls_id"
    rc = main(["score", "--task", "synth_cls_id", "--predictions", str(RunDir(path).records_path("synth_cls_id"))])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.strip() == render_text(eval_rows([agg]))
    row = next(line for line in out.splitlines() if line.startswith("synth_cls_id"))
    assert row.split()[:4] == ["synth_cls_id", "id", "acc", "60.0"]


def test_score_json_and_output_path(capsys, fake_run, tmp_path):
    path, result = fake_run
    agg = result.aggregates[1]
    assert agg["task"] == "synth_ground_id:mc"
    out_file = tmp_path / "agg.json"
    rc = main(["score", "--task", "synth_ground_id:mc", "--format", "json", "--output_path", str(out_file),
               "--predictions", str(RunDir(path).records_path("synth_ground_id:mc"))])
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == agg
    assert json.loads(out_file.read_text()) == agg


def test_score_with_another_profile_and_limit(capsys, fake_run, tmp_path):
    path, _ = fake_run
    records = RunDir(path).records_path("synth_cls_id")
    first3 = tmp_path / "first3.jsonl"
    first3.write_text("".join(line + "\n" for line in records.read_text().splitlines()
                              if json.loads(line)["index"] < 3))
    rc = main(["score", "--task", "synth_cls_id", "--format", "json", "--limit", "3", "--profile", "lenient",
               "--config", str(path / "config.json"), "--predictions", str(first3)])
    assert rc == 0
    agg = json.loads(capsys.readouterr().out)
    assert agg["n"] == 3 and agg["profile"] == "lenient"
    assert agg["metrics"]["acc"]["value"] == pytest.approx(2 / 3)  # index 0 was answered "blah"
    # predictions beyond --limit are refused rather than ignored
    rc = main(["score", "--task", "synth_cls_id", "--limit", "3", "--predictions", str(records)])
    assert rc == 2
    assert "7 of 10 predictions name samples that synth_cls_id does not have within the first 3 samples" in \
        capsys.readouterr().err


def test_eval_through_the_cli_with_a_registered_backend(capsys, tmp_path, monkeypatch):
    created = []

    def factory(model, **model_args):
        created.append((model, model_args))
        return FakeBackend(specs=["synth_count_id"], limit=4)

    monkeypatch.setitem(BACKENDS._items, "fake-cli", factory)
    argv = ["eval", "--model", "fake-model", "--backend", "fake-cli", "--model_args", "threads=1", "--tasks",
            "synth_count_id", "--limit", "4", "--batch_size", "2", "--bootstrap", "20", "--no_progress",
            "--output_path", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert created == [("fake-model", {"threads": 1})]
    row = next(line for line in out.splitlines() if line.startswith("synth_count_id"))
    assert row.split()[:4] == ["synth_count_id", "id", "acc", "50.0"]  # indices 0 and 3 answered "blah"
    assert f"run directory: {tmp_path / 'run'}" in out and "(resumed)" not in out
    # the same command again resumes and reports the same table
    assert main(argv) == 0
    out2 = capsys.readouterr().out
    assert "(resumed)" in out2
    assert out2.split("run directory")[0] == out.split("run directory")[0]
    # a different configuration in the same directory is refused with exit code 2
    assert main([*argv, "--seed", "1"]) == 2
    assert "different configuration" in capsys.readouterr().err


# ----------------------------------------------------------------------------- leaderboard table


def test_table_rendering():
    aggs = [{"task": "t", "role": "id", "n": 10, "parse_failures": 1,
             "metrics": {"acc": {"value": 0.5, "ci": [0.25, 0.75]},
                         "miou": {"value": float("nan"), "ci": [None, None]}}}]
    rows = eval_rows(aggs)
    assert rows == [("t", "id", "acc", "50.0", "[25.0, 75.0]", "10", "1"),
                    ("t", "id", "miou", "nan", "[nan, nan]", "10", "1")]
    text = render_text(rows).splitlines()
    assert text[0].split() == ["task", "role", "metric", "value", "95%", "CI", "n", "parse", "fail"]
    assert len(text) == 4 and set(text[1]) <= {"-", " "}
    md = render_text(rows, markdown=True).splitlines()
    assert md[0].startswith("| task") and md[1].startswith("|--")
    assert render_csv(rows).splitlines()[1] == "t,id,acc,50.0,\"[25.0, 75.0]\",10,1"
