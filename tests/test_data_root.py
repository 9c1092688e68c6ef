"""The data root, the missing-dataset error, `harness data check`, --subsample and the safe unpickler."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from fake_backend import FakeBackend, config
from fixtures_imagenet import write_imagenet

from harness import data, safe_pickle
from harness.cli import main
from harness.data import DatasetMissing, DatasetSpec
from harness.errors import UsageError
from harness.evaluator import planned_indices, run_eval
from harness.rundir import RunDir
from harness.taskspec import make_task


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    data.configure(None, {})
    yield
    data.configure(None, {})


# ----------------------------------------------------------------------------- the root and the error
def test_root_from_option_or_environment(tmp_path, monkeypatch):
    assert data.data_root() is None
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    data.configure(other)
    assert data.data_root() == other  # the option wins over the environment
    data.configure(None)
    assert data.data_root() == tmp_path


def test_bad_root_and_data_args(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"--data_root .*nope is not a directory"):
        data.configure(tmp_path / "nope")
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "gone"))
    with pytest.raises(UsageError, match=r"\$HARNESS_DATA .*gone is not a directory"):
        data.configure(None)
    monkeypatch.delenv("HARNESS_DATA")
    with pytest.raises(UsageError, match=r"--data_args coco_images=.*missing: no such file or directory"):
        data.configure(None, {"coco_images": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="--data_args coco_images must be a path"):
        data.configure(None, {"coco_images": 3})


SPEC = DatasetSpec("toy", "toy", "https://example.org/toy", "toy/ann.json, toy/images/<id>.jpg", required=("ann.json",),
                   images="images", image_option="toy_images")


def test_missing_dataset_errors_name_the_layout_and_what_was_found(tmp_path):
    with pytest.raises(DatasetMissing, match=r"toy: no data root; pass --data_root DIR or set \$HARNESS_DATA, with the "
                                             r"dataset at DIR/toy laid out as: toy/ann.json, toy/images/<id>.jpg"):
        SPEC.check()
    data.configure(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DatasetMissing, match=r"toy: not found\. Expected .*/toy/ laid out as: toy/ann.json, "
                                             r"toy/images/<id>.jpg\. Found: .*toy does not exist; .* holds: elsewhere"):
        SPEC.check()
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "readme.txt").write_text("x")
    with pytest.raises(DatasetMissing, match=r"toy: incomplete at .*: missing ann.json, .*images \(or --data_args "
                                             r"toy_images=DIR\)\. Expected layout: .* Found: .* holds: readme.txt"):
        SPEC.check()
    (tmp_path / "toy" / "ann.json").write_text("{}")
    images = tmp_path / "pics"
    images.mkdir()
    data.configure(tmp_path, {"toy_images": str(images)})
    assert SPEC.check() == tmp_path / "toy" and SPEC.image_dir() == images


def test_cli_error_is_one_line(tmp_path, capsys):
    code = main(["eval", "--model", "tiny", "--tasks", "imagenet_val", "--data_root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert re.match(r"harness: error: ImageNet-1K: not found\. Expected .*imagenet/ laid out as: "
                    r"imagenet/LOC_synset_mapping.txt", err)


# ----------------------------------------------------------------------------- harness data check / tasks
def test_data_check_counts_and_reports_missing(tmp_path, capsys):
    write_imagenet(tmp_path)
    assert main(["data", "check", "imagenet_val", "imagenet100_val", "--data_root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"imagenet_val\s+ImageNet-1K\s+found\s+16", out)
    assert re.search(r"imagenet100_val\s+ImageNet-1K\s+found\s+10", out)  # 5 single-word classes x 2
    assert main(["data", "check", "imagenet", "--data_root", str(tmp_path), "--format", "json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"imagenet100_val", "imagenet_r", "imagenet_a"}  # a suite: its ID and OOD splits
    assert rows["imagenet100_val"]["size"] == 10 and rows["imagenet_r"]["data"] == "missing"
    assert "imagenet-r" in rows["imagenet_r"]["problem"]
    assert main(["tasks", "--data_root", str(tmp_path), "--format", "json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["imagenet_val"]["data"] == "found" and listed["imagenet_a"]["data"] == "missing"
    assert listed["refcoco_val"]["source"].startswith("https://github.com/lichengunc/refer")


def test_data_check_without_root(capsys):
    assert main(["data", "check", "refcoco_val"]) == 1
    out = capsys.readouterr().out
    assert "refcoco_val:\n  refcoco (unc split): no data root" in out


# ----------------------------------------------------------------------------- --subsample
def test_planned_indices():
    task = make_task("synth_cls_id")
    assert planned_indices(task, None, None, 0) == list(range(300))
    assert planned_indices(task, 5, None, 0) == [0, 1, 2, 3, 4]
    picked = planned_indices(task, None, 7, 0)
    assert len(picked) == 7 and picked == sorted(set(picked)) and picked != list(range(7))
    assert picked == planned_indices(make_task("synth_cls_id", "mc"), None, 7, 0)  # every format: the same samples
    assert planned_indices(task, None, 7, 1) != picked
    assert planned_indices(task, None, 1000, 0) == list(range(300))


def test_subsample_run_is_seeded_recorded_and_resumable(tmp_path, capsys):
    spec = ["synth_cls_id"]
    picked = planned_indices(make_task("synth_cls_id"), None, 10, 0)
    backend = FakeBackend(specs=spec, limit=300)
    cfg = config(tmp_path / "run", tasks=spec, limit=None, subsample=10)
    result = run_eval(cfg, backend=backend)
    assert sorted(i for _, i in backend.asked()) == picked
    assert result.aggregates[0]["n"] == 10
    recorded = RunDir(result.run_dir).read_config()
    assert recorded["subsample"] == 10 and recorded["identity"]["subsample"] == 10
    # batches are cut by position among the planned samples: 4, 4, 2
    assert [len(c) for c in backend.calls] == [4, 4, 2]
    again = FakeBackend(specs=spec, limit=300)
    assert run_eval(cfg, backend=again).resumed and again.calls == []
    with pytest.raises(UsageError, match="--limit .* and --subsample .* exclude each other"):
        config(tmp_path / "x", limit=5, subsample=5).validate(check_backend=False)
    with pytest.raises(UsageError, match="--subsample must be >= 1"):
        config(tmp_path / "x", limit=None, subsample=0).validate(check_backend=False)


def test_eval_table_header_names_the_selection():
    from harness.cli import selection_header

    assert selection_header(None, 50, 3, "strict") == ("scored: a seeded random 50 samples per task (--subsample 50, "
                                                       "seed 3), in split order; profile: strict")
    assert selection_header(20, None, 0, "dc-sft") == "scored: the first 20 samples per task (--limit 20); profile: dc-sft"
    assert selection_header(None, None, 0, "strict") == "scored: every sample of each task; profile: strict"


# ----------------------------------------------------------------------------- the restricted unpickler
class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/harness_pwned_by_pickle",))


def test_safe_pickle_loads_plain_data_and_refuses_objects(tmp_path):
    plain = [{"ref_id": 1, "sentences": [{"sent": "man", "sent_id": 3}], "split": "val", "box": (1.5, 2)}]
    ok = tmp_path / "refs(unc).p"
    ok.write_bytes(pickle.dumps(plain, protocol=2))
    assert safe_pickle.load(ok) == [{"ref_id": 1, "sentences": [{"sent": "man", "sent_id": 3}], "split": "val",
                                     "box": (1.5, 2)}]
    bad = tmp_path / "evil.p"
    bad.write_bytes(pickle.dumps([_Boom()], protocol=2))
    with pytest.raises(UsageError, match=r"evil.p: refusing to load posix.system|evil.p: refusing to load os.system"):
        safe_pickle.load(bad)
    import os

    assert not os.path.exists("/tmp/harness_pwned_by_pickle")
    aset = tmp_path / "set.p"
    aset.write_bytes(pickle.dumps({1, 2}, protocol=2))
    with pytest.raises(UsageError, match=r"refusing to load (__builtin__|builtins)\.set"):
        safe_pickle.load(aset)
    cut = tmp_path / "cut.p"
    cut.write_bytes(ok.read_bytes()[:20])
    with pytest.raises(UsageError, match="cut.p is truncated or not a pickle"):
        safe_pickle.load(cut)
    with pytest.raises(UsageError, match="does not exist"):
        safe_pickle.load(tmp_path / "none.p")


# ----------------------------------------------------------------------------- --math_judge is recorded
def test_math_judge_is_recorded_and_part_of_the_identity(tmp_path):
    from harness import math_judge

    spec = ["synth_count_id"]
    cfg = config(tmp_path / "run", tasks=spec, limit=4, math_judge="http://127.0.0.1:9/v1,judge-7b,JUDGE_KEY")
    try:
        result = run_eval(cfg, backend=FakeBackend(specs=spec, limit=4))
        recorded = RunDir(result.run_dir).read_config()
        assert recorded["math_judge"]["model"] == "judge-7b" and recorded["math_judge"]["api_key_env"] == "JUDGE_KEY"
        assert recorded["identity"]["math_judge"] == {"endpoint": "http://127.0.0.1:9/v1/chat/completions",
                                                      "model": "judge-7b", "prompt": math_judge.PROMPT_VERSION}
        # the same run without the judge would score differently: refused, not mixed
        from harness.rundir import ConfigMismatch

        with pytest.raises(ConfigMismatch, match="math_judge: recorded"):
            run_eval(config(tmp_path / "run", tasks=spec, limit=4), backend=FakeBackend(specs=spec, limit=4))
    finally:
        math_judge.configure(None)
    with pytest.raises(UsageError, match="expected URL,MODEL"):
        config(tmp_path / "x", math_judge="http://h").validate(check_backend=False)
