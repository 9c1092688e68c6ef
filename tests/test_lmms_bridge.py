"""The lmms-eval bridge (harness/lmms, docs/lmms.md).

The export tests need no lmms-eval. The others run where lmms_eval is importable (the
``lmms`` tox env: ``tox -e lmms``) and are skipped elsewhere with that reason: they run
an exported synthetic task in lmms-eval (its own ``qwen2_vl`` model class on the tiny
model, and our backend wrapped as an lmms-eval model) and an lmms-eval task through
``harness eval``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.conventions import ModelConventions
from harness.errors import UsageError
from harness.lmms import LmmsRef, has_lmms_tasks, parse_spec, split_specs
from harness.lmms.export import export_tasks, lmms_task_name
from harness.lmms.exported import ExportedTask
from harness.protocol import get_profile
from harness.taskspec import make_task

HAVE_LMMS = importlib.util.find_spec("lmms_eval") is not None
needs_lmms = pytest.mark.skipif(
    not HAVE_LMMS, reason="lmms_eval is not installed: the lmms-eval bridge tests run in the `lmms` tox env "
    "(tox -e lmms; pip install -e '.[lmms]' -c .ci/lmms-constraints.txt)")
N = 16


class _TagLoader(yaml.SafeLoader):
    """lmms-eval's ``!function module.name`` tags, read as plain strings."""


_TagLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_TagLoader)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lmms_tasks")
    export_tasks(out, ["synth_cls", "synth_ground_id", "synth_count_id:mc"], limit=N)
    return out


# ----- specs ------------------------------------------------------------------------------
def test_specs():
    assert has_lmms_tasks("synth_cls,lmms:mme") and not has_lmms_tasks(["synth_cls", "synth_cls_id:mc"])
    assert parse_spec("lmms:mme") == LmmsRef("mme", "ood")
    assert parse_spec(" lmms:ai2d:id ") == LmmsRef("ai2d", "id")
    assert parse_spec("lmms:ai2d").full_name == "lmms:ai2d"
    with pytest.raises(UsageError, match="id or ood"):
        parse_spec("lmms:ai2d:mc")
    with pytest.raises(UsageError, match="name an lmms-eval task"):
        parse_spec("lmms:")
    ours, refs = split_specs(["synth_cls", "lmms:mme", "lmms:mme", "synth_count_id:mc"])
    assert ours == ["synth_cls", "synth_count_id:mc"] and refs == [LmmsRef("mme")]


# ----- export (no lmms-eval needed) --------------------------------------------------------------
def test_export_layout(exported):
    names = ["harness_synth_cls_id", "harness_synth_cls_style", "harness_synth_cls_clutter", "harness_synth_ground_id",
             "harness_synth_count_id_mc"]
    assert sorted(p.name for p in exported.iterdir() if p.is_dir()) == sorted(names)
    assert lmms_task_name("synth_count_id:mc") == "harness_synth_count_id_mc"
    group = read_yaml(exported / "harness_synth_cls.yaml")
    assert group == {"group": "harness_synth_cls", "task": names[:3]}
    for name in names:
        d = exported / name
        cfg = read_yaml(d / f"{name}.yaml")
        assert cfg["task"] == name and cfg["dataset_path"] == "json" and cfg["output_type"] == "generate_until"
        assert Path(cfg["dataset_kwargs"]["data_files"]["test"]) == d / "data.jsonl"
        assert cfg["generation_kwargs"]["until"] == ["<|im_end|>"] and cfg["generation_kwargs"]["do_sample"] is False
        assert cfg["process_results"] == "!function utils.process_results"
        settings = json.loads((d / "harness_task.json").read_text())
        task = make_task(settings["task"], settings["format"])
        assert [m["metric"] for m in cfg["metric_list"]] == list(task.metrics)
        assert cfg["generation_kwargs"]["max_new_tokens"] == task.max_new_tokens
        docs = [json.loads(line) for line in (d / "data.jsonl").read_text().splitlines()]
        assert len(docs) == N and [doc["index"] for doc in docs] == list(range(N))
        conv = ModelConventions.from_dict(settings["conventions"])
        for doc, sample in zip(docs, task.samples()):
            assert doc["sample_id"] == sample.id
            assert doc["prompt"] == task.prompt(sample, conv).text
            assert doc["target"] == task.target(sample, conv)
            assert all((d / rel).is_file() for rel in doc["images"])
        assert "from harness.lmms.exported import load" in (d / "utils.py").read_text()


def test_exported_scores_are_harness_scores(exported):
    """process_results is Task.evaluate on the document's sample: gold scores 1, junk 0, and a
    near-miss box gets exactly harness's IoU-based metrics."""
    prof = get_profile("strict")
    for name in ("harness_synth_cls_id", "harness_synth_ground_id", "harness_synth_count_id_mc"):
        ex = ExportedTask(exported / name)
        task = ex.task
        docs = [json.loads(line) for line in (ex.directory / "data.jsonl").read_text().splitlines()]
        for doc, sample in zip(docs, task.samples()):
            gold = ex.process_results(doc, [doc["target"]])
            assert gold[task.primary_metric] == 1.0
            assert ex.process_results(doc, ["no idea"]) == {m: 0.0 for m in task.metrics}
            for output in (doc["target"], "[10, 20, 300, 400]", "B", "circle"):
                assert ex.process_results(doc, [output]) == task.evaluate(output, sample, ex.conventions, prof)[1]
        image = ex.doc_to_visual(docs[0])[0]
        assert image.size == next(iter(task.samples())).images[0].size


def test_export_cli_and_errors(tmp_path, capsys):
    assert main(["export-lmms", str(tmp_path / "x"), "--tasks", "synth_cls_id", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "harness_synth_cls_id: 3 samples of synth_cls_id" in out and "--include_path" in out
    assert main(["export-lmms", str(tmp_path / "x"), "--tasks", "synth_cls_id", "--limit", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-lmms", str(tmp_path / "x"), "--tasks", "synth_cls_id", "--limit", "4", "--overwrite"]) == 0
    assert len((tmp_path / "x" / "harness_synth_cls_id" / "data.jsonl").read_text().splitlines()) == 4
    assert main(["export-lmms", str(tmp_path / "y"), "--tasks", "synth_cls_id", "--limit", "0"]) == 2
    assert main(["export-lmms", str(tmp_path / "y"), "--tasks", "nope"]) == 2
    # box tasks follow the conventions they are exported for
    assert main(["export-lmms", str(tmp_path / "z"), "--tasks", "synth_ground_id", "--limit", "1",
                 "--conventions", "box_space=norm1"]) == 0
    settings = json.loads((tmp_path / "z" / "harness_synth_ground_id" / "harness_task.json").read_text())
    assert settings["conventions"]["box_space"] == "norm1"


def test_lmms_task_without_lmms_eval(tmp_path, capsys):
    if HAVE_LMMS:
        pytest.skip("lmms_eval is installed here: this checks the message where it is not")
    rc = main(["eval", "--model", "tiny", "--tasks", "lmms:mme", "--output_path", str(tmp_path / "r")])
    assert rc == 2 and "pip install" in capsys.readouterr().err


# ----- with lmms-eval ------------------------------------------------------------------------------
@needs_lmms
@pytest.mark.slow
def test_exported_task_in_lmms_eval_qwen2_vl(exported, tiny_model_dir):
    """lmms-eval's own Qwen2-VL model class on the tiny model runs the exported task, and each
    per-sample score it reports is harness's score of that output."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from harness.compat.torchvision_cpu import ensure_torchvision

    ensure_torchvision()
    tm = TaskManager("WARNING", include_path=str(exported), include_defaults=False)
    names = ["harness_synth_cls_id", "harness_synth_ground_id"]
    res = simple_evaluate(model="qwen2_vl", model_args=f"pretrained={tiny_model_dir},device=cpu,device_map=cpu",
                          tasks=names, task_manager=tm, batch_size=8, log_samples=True, bootstrap_iters=0,
                          process_docs_parallel=1)
    prof = get_profile("strict")
    for name in names:
        ex = ExportedTask(exported / name)
        logged = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        assert len(logged) == N
        per = []
        for s in logged:
            output = s["filtered_resps"][0]
            _, scores = ex.task.evaluate(output, ex.sample(s["doc"]), ex.conventions, prof)
            assert {m: s[m] for m in ex.task.metrics} == scores
            per.append(scores[ex.task.primary_metric])
        assert res["results"][name][f"{ex.task.primary_metric},none"] == pytest.approx(sum(per) / N)


@needs_lmms
@pytest.mark.slow
def test_lmms_task_through_harness_eval(exported, tmp_path, tiny_model_dir, no_git, capsys):
    """An lmms-eval task (the exported synthetic one) through `harness eval` on our hf backend
    gives the same outputs and score as harness's own eval of the task, lands in the run
    directory and the leaderboard as lmms-eval's, and resumes without generating again."""
    from leaderboards.collect import collect

    run = tmp_path / "run"
    tasks = "synth_cls_id,lmms:harness_synth_cls_id,lmms:harness_synth_ground_id:id"
    argv = ["eval", "--model", "tiny", "--tasks", tasks,
            "--limit", str(N), "--data_args", f"lmms_include_path={exported}", "--output_path", str(run),
            "--no_progress", "--bootstrap", "200"]
    assert main(argv) == 0
    assert "lmms:harness_synth_cls_id" in capsys.readouterr().out
    aggs = {a["task"]: a for a in json.loads((run / "aggregates.json").read_text())}
    assert list(aggs) == ["synth_cls_id", "lmms:harness_synth_cls_id", "lmms:harness_synth_ground_id"]
    ours, theirs = aggs["synth_cls_id"], aggs["lmms:harness_synth_cls_id"]
    assert theirs["source"] == "lmms-eval" and theirs["lmms_eval"]["package_version"] == "0.7.3"
    assert theirs["role"] == "ood" and aggs["lmms:harness_synth_ground_id"]["role"] == "id"
    assert theirs["n"] == N and theirs["primary_metric"] == "acc"
    assert theirs["metrics"]["acc"]["value"] == pytest.approx(ours["metrics"]["acc"]["value"])
    assert theirs["metrics"]["acc"]["ci"] == pytest.approx(ours["metrics"]["acc"]["ci"])
    assert set(aggs["lmms:harness_synth_ground_id"]["metrics"]) == {"acc@0.5", "acc@0.75", "acc@0.9", "miou"}

    def records(name):
        return {r["sample_id"]: r for r in map(json.loads, (run / "records" / name).read_text().splitlines())}

    a, b = records("synth_cls_id.jsonl"), records("lmms@harness_synth_cls_id.jsonl")
    assert a.keys() == b.keys() and len(a) == N
    assert all(a[k]["output"] == b[k]["output"] and a[k]["scores"] == b[k]["scores"] for k in a)
    assert all(r["source"] == "lmms-eval" and r["prompt"] for r in b.values())
    config = json.loads((run / "config.json").read_text())
    assert config["roles"]["lmms:harness_synth_cls_id"] == "ood" and config["lmms"]["generated"] == 2 * N
    row = collect([run]).runs[0]
    assert row.metric("lmms:harness_synth_cls_id", "acc")["value"] == theirs["metrics"]["acc"]["value"]

    # rerun: resumed, nothing generated again, the same numbers
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["lmms"]["generated"] == 0 and config["lmms"]["reused_outputs"] == 2 * N
    again = {a["task"]: a for a in json.loads((run / "aggregates.json").read_text())}
    assert again == aggs

    # the leaderboard shows the lmms-eval columns
    assert main(["leaderboard", str(run)]) == 0
    assert "harness_synth_cls_id" in capsys.readouterr().out


@needs_lmms
def test_lmms_eval_errors(exported, tmp_path, capsys):
    base = ["eval", "--model", "tiny", "--output_path", str(tmp_path / "r"), "--no_progress"]
    assert main(base + ["--tasks", "lmms:harness_nope", "--data_args", f"lmms_include_path={exported}"]) == 2
    assert "no task harness_nope" in capsys.readouterr().err
    assert main(base + ["--tasks", "lmms:harness_synth_cls_id", "--subsample", "5",
                        "--data_args", f"lmms_include_path={exported}"]) == 2
    assert "--subsample" in capsys.readouterr().err


@needs_lmms
def test_model_wrapper_unit():
    """HarnessLMM: prompts (images first, '<image>' removed), settings from gen_kwargs, until cut,
    log-likelihood refused."""
    from lmms_eval.api.instance import Instance
    from PIL import Image

    from harness.backends.base import Backend
    from harness.lmms.model import HarnessLMM, truncate

    class Echo(Backend):
        name = "echo"
        conventions = ModelConventions()

        def __init__(self):
            self.seen = []

        def generate(self, prompts, params):
            self.seen.append((prompts, params))
            return [[f"{p.text}|{len(p.images)}<|im_end|>tail"] for p in prompts]

        def fingerprint(self):
            return "echo"

    backend = Echo()
    lm = HarnessLMM(backend, batch_size=2, progress=False)
    image = Image.new("RGB", (20, 10))
    lm.task_dict = {"t": {"test": [{"im": image}, {"im": None}, {"im": image}]}}

    def visual(doc):
        return [doc["im"]] if doc["im"] is not None else []

    reqs = [Instance("generate_until", (f"<image>q{i}", {"until": ["<|im_end|>"], "max_new_tokens": 5}, visual, i,
                                        "t", "test"), idx=0, metadata={"task": "t", "doc_id": i, "repeats": 1})
            for i in (2, 0, 1)]
    assert lm.generate_until(reqs) == ["q2|1", "q0|1", "q1|0"]
    prompts, params = backend.seen[0]
    assert [p.text for p in prompts] == ["q0", "q1"] and prompts[0].images[0].size == (20, 10)
    assert params.max_new_tokens == 5 and params.greedy
    assert truncate("abc\n\nd", ["\n\n", "c"]) == "ab"
    with pytest.raises(UsageError, match="log-likelihoods"):
        lm.loglikelihood([])
