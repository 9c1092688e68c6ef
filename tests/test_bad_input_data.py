"""Bad data: annotation files of the wrong shape, missing splits, corrupt images, and
OpenAI-compatible servers that refuse, hang or answer garbage.

What the design promises (docs/architecture.md): a malformed or missing annotation file
is one line (``harness: error: ...``, exit 2) before any model loads; a single image that
cannot be decoded is a per-sample failure record (``generation error: ...``) and the run
finishes; a server that fails a request is a per-sample failure too. Failed generations
are generated again when the same command is rerun, and nothing that succeeded is lost or
asked for twice.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fixtures_detection as fd
import fixtures_fewshot as ff
import fixtures_grounding_ood as fg
import fixtures_imagenet as fi
import fixtures_math as fm
import fixtures_refer as fr
import pytest

from harness import data, dataset_task
from harness.backends.base import Backend
from harness.cli import main
from harness.conventions import ModelConventions
from harness.errors import UsageError
from harness.evaluator import EvalConfig, run_eval
from harness.rundir import RunDir

pytestmark = pytest.mark.usefixtures("no_git")


@pytest.fixture(autouse=True)
def fresh_data_config(monkeypatch):
    """Each test configures its own data root; the process-wide config and index cache are restored."""
    monkeypatch.setattr(data, "_config", data._config)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    dataset_task._INDEX_CACHE.clear()
    yield
    dataset_task._INDEX_CACHE.clear()


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"


def no_model(monkeypatch) -> None:
    """Loading a model is a failure of these cases: every one must stop before."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("harness.evaluator.make_backend", refuse)


# ------------------------------------------------------------------ annotation files
def _drop_column(path: Path, column: str) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(path).drop([column]), path)


REFER = "refer/refcoco"
# case: (writer, damage(root), task, the one line it must give)
ANNOTATION_CASES = {
    "refcoco instances.json is a list": (
        fr.write_refer, lambda r: (r / REFER / "instances.json").write_text("[]"), "refcoco_val",
        r"instances.json: expected a JSON object with images, annotations and categories, got list"),
    "refcoco instances.json is empty": (
        fr.write_refer, lambda r: (r / REFER / "instances.json").write_bytes(b""), "refcoco_val",
        r"instances.json is not valid JSON \(line 1"),
    "refcoco refs pickle holds a dict": (
        fr.write_refer, lambda r: (r / REFER / "refs(unc).p").write_bytes(pickle.dumps({"refs": fr.refs_list()}, 2)),
        "refcoco_val", r"refs\(unc\).p: expected a list of refs, got dict"),
    "refcoco refs pickle holds a set": (
        fr.write_refer, lambda r: (r / REFER / "refs(unc).p").write_bytes(pickle.dumps([{1, 2}], 2)), "refcoco_val",
        r"refs\(unc\).p: refusing to load __builtin__.set: only plain lists, dicts, strings and numbers"),
    "refcoco refs file is JSON, not a pickle": (
        fr.write_refer, lambda r: (r / REFER / "refs(unc).p").write_text(json.dumps(fr.refs_list())), "refcoco_val",
        r"refs\(unc\).p: invalid load key"),
    "refcoco refs file missing": (
        fr.write_refer, lambda r: (r / REFER / "refs(unc).p").unlink(), "refcoco_val",
        r"refcoco \(unc split\): incomplete at .*: missing refs\(unc\).p"),
    "refcoco split with no samples": (
        fr.write_refer,
        lambda r: (r / REFER / "refs(unc).p").write_bytes(
            pickle.dumps([x for x in fr.refs_list() if x["split"] != "testB"], 2)),
        "refcoco_testB", r"refcoco_testB has no samples: the dataset's annotations hold none for this split"),
    "VLM-R1 rows file is an object": (
        fr.write_vlmr1, lambda r: (r / "vlm_r1/rec_jsons_processed/refcoco_val.json").write_text('{"rows": []}'),
        "vlmr1_refcoco_val", r"refcoco_val.json: expected a JSON list of rows, got dict"),
    "COCO annotations without 'annotations'": (
        lambda r: fd.write_coco(r, "val2017"),
        lambda r: (r / "coco/annotations/instances_val2017.json").write_text('{"images": [], "categories": []}'),
        "coco_ov_base_val", r"instances_val2017.json: 'annotations' is missing or not a list"),
    "LVIS category without frequency": (
        lambda r: fd.write_lvis(r, "val"),
        lambda r: (r / "lvis/lvis_v1_val.json").write_text(json.dumps(
            {**json.loads((r / "lvis/lvis_v1_val.json").read_text()), "categories": [{"id": 1, "name": "x"}]})),
        "lvis_rare13_val", r"categories\[0\] \(x\) needs 'frequency'"),
    "MathVista testmini.json is a list": (
        fm.write_mathvista, lambda r: (r / "mathvista/testmini.json").write_text("[1, 2]"), "mathvista_testmini",
        r"testmini.json: expected a JSON object keyed by pid"),
    "MathVista problem whose choices are an object": (
        fm.write_mathvista,
        lambda r: (r / "mathvista/testmini.json").write_text(json.dumps(
            {k: {**v, "choices": {"a": 1}} for k, v in fm.MATHVISTA.items()})),
        "mathvista_testmini", r"choices must be a list of strings"),
    "math conversations file is an object": (
        fm.write_conversations, lambda r: (r / "math/Geo170K/qa_tuning.json").write_text('{"rows": []}'), "math_id",
        r"qa_tuning.json: expected a JSON list of conversation rows"),
    "Curr-ReFT rows line without an image": (
        fm.write_curr_reft,
        lambda r: (r / "curr_reft/grpo_data/train/open/openr1_8k/math_math_test.jsonl").write_text(
            '{"problem": "x", "solution": "<answer>1</answer>"}\n'),
        "curr_reft_math_test", r"math_math_test.jsonl line 1: no image path"),
    "CLEVR questions file without 'questions'": (
        fm.write_clevr, lambda r: (r / "clevr/CLEVR_v1.0/questions/CLEVR_val_questions.json").write_text('{"a": 1}'),
        "clevr_count_val", r"CLEVR_val_questions.json: expected an object with a 'questions' list"),
    "Ref-L4 parquet without the bbox column": (
        fg.write_refl4, lambda r: _drop_column(r / "ref-l4/ref-l4-val.parquet", "bbox"), "refl4_val",
        r"ref-l4-val.parquet: missing column\(s\) bbox; found"),
    "LISA split missing": (
        fg.write_lisa, lambda r: shutil.rmtree(r / "lisa/ReasonSeg/val"), "lisa_val",
        r"lisa: incomplete at .*: missing ReasonSeg/val"),
    "ImageNet val split missing": (
        fi.write_imagenet, lambda r: shutil.rmtree(r / "imagenet/val"), "imagenet_val",
        r"ImageNet-1K: incomplete at .*: missing .*imagenet/val"),
    "ImageNet class mapping not UTF-8": (
        fi.write_imagenet,
        lambda r: (r / "imagenet/LOC_synset_mapping.txt").write_bytes("n01440764 t\xe9nch\n".encode("latin-1")),
        "imagenet_val", r"LOC_synset_mapping.txt is not UTF-8 text"),
    "VOC test list missing": (
        fi.write_voc, lambda r: (r / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").unlink(), "voc_cls",
        r"Pascal VOC 2007: incomplete at .*: missing ImageSets/Main/test.txt"),
    "Pets list not UTF-8": (
        ff.write_all, lambda r: (r / "oxford-iiit-pet/annotations/test.txt").write_bytes(b"Abyssinian_1 1 1 1\n\xe9\n"),
        "pets_test", r"oxford-iiit-pet/annotations/test.txt is not UTF-8 text"),
    "Flowers .mat truncated": (
        ff.write_all, lambda r: (r / "flowers-102/setid.mat").write_bytes((r / "flowers-102/setid.mat").read_bytes()[:90]),
        "flowers102_test", r"flowers102: .*setid.mat is not a readable .mat file"),
}


@pytest.mark.parametrize("case", list(ANNOTATION_CASES))
def test_bad_annotation_files_are_one_line_before_a_model_loads(case, tmp_path, capsys, monkeypatch):
    write, damage, task, pattern = ANNOTATION_CASES[case]
    root = tmp_path / "data"
    write(root)
    damage(root)
    no_model(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(["eval", "--model", "tiny", "--tasks", task, "--data_root", str(root), "--output_path",
                            str(out), "--no_progress"], capsys)
    one_line_error(code, err, pattern)
    assert not out.exists()  # nothing started
    # `harness data check` names the same problem (exit 1: something is missing), without a traceback
    code, report, err = run_cli(["data", "check", task, "--data_root", str(root)], capsys)
    assert "Traceback" not in err + report
    if "no samples" not in pattern:  # an empty split is found (0 samples); the eval refuses it
        assert code == 1 and "missing" in report, report


def test_a_mat_file_that_crashes_scipy_is_one_line(tmp_path, capsys, monkeypatch):
    """scipy's .mat reader (1.17) dies with a segfault on some damaged files, here one changed
    byte of setid.mat: the whole process died without a word before the loader read .mat
    files in a child process. Now it is one line (whatever a later scipy makes of the byte)."""
    root = tmp_path / "data"
    ff.write_all(root)
    mat = root / "flowers-102/setid.mat"
    damaged = bytearray(mat.read_bytes())
    damaged[145] = 0xFF  # inside the first variable's array header
    mat.write_bytes(bytes(damaged))
    no_model(monkeypatch)
    code, _, err = run_cli(["eval", "--model", "tiny", "--tasks", "flowers102_test", "--data_root", str(root),
                            "--no_progress", "--output_path", str(tmp_path / "run")], capsys)
    one_line_error(code, err, r"flowers102: .*setid.mat is not a readable .mat file \(")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ corrupt images
class DecodingBackend(Backend):
    """Decodes every image it is given (as hf, vllm and openai do) and answers a fixed text;
    records which samples it was asked for."""

    name = "decoding"

    def __init__(self, answer: str = "tench") -> None:
        self.answer = answer
        self.asked: list[str] = []

    @property
    def conventions(self) -> ModelConventions:
        return ModelConventions()

    def fingerprint(self) -> str:
        return "decoding-0"

    def generate(self, prompts, params):
        for p in prompts:
            self.asked.append(p.images[0].uri)
            for im in p.images:
                im.load()
        return [[self.answer] * params.n for _ in prompts]


def corrupt(path: Path, how: str) -> None:
    if how == "truncated JPEG":
        path.write_bytes(path.read_bytes()[:60])
    elif how == "zero bytes":
        path.write_bytes(b"")
    elif how == "not an image":
        path.write_text("<html>404 Not Found</html>")
    elif how == "missing":
        path.unlink()


DAMAGES = ("truncated JPEG", "zero bytes", "not an image", "missing")
ERRORS = {"truncated JPEG": r"OSError|image file is truncated|Truncated File Read",
          "zero bytes": r"UnidentifiedImageError: cannot identify image file",
          "not an image": r"UnidentifiedImageError: cannot identify image file",
          "missing": r"FileNotFoundError"}


def _records(run: Path, task: str) -> dict[str, dict]:
    return {r["sample_id"]: r for r in RunDir(run).read(task)}


CORRUPT_CASES = {  # task: (fixture writer, image paths to damage, one damage each)
    # (a missing ImageNet file is no sample at all: the split is the class folders' listing)
    "imagenet_val": (fi.write_imagenet, lambda r: sorted((r / "imagenet" / "val").rglob("*.JPEG"))[1:4], DAMAGES[:3]),
    "refcoco_train": (fr.write_refer, lambda r: [r / "coco" / "train2014" / fr.coco_name(100)], ("truncated JPEG",)),
    "vlmr1_refcoco_val": (fr.write_vlmr1, lambda r: [r / "coco" / "train2014" / fr.coco_name(200)], ("missing",)),
}


@pytest.mark.parametrize("task", list(CORRUPT_CASES))
def test_corrupt_images_are_per_sample_failures_and_a_rerun_redoes_only_them(task, tmp_path):
    write, pick, damages = CORRUPT_CASES[task]
    root = tmp_path / "data"
    write(root)
    images = pick(root)
    pristine = {p: p.read_bytes() for p in images}
    for path, how in zip(images, damages):
        corrupt(path, how)
    bad = {str(p): how for p, how in zip(images, damages)}
    data.configure(root, {})
    cfg = EvalConfig(model="tiny", tasks=[task], batch_size=3, n_boot=20, output_path=str(tmp_path / "run"),
                     progress=False, data_root=str(root), num_workers=0)
    first = DecodingBackend()
    result = run_eval(cfg, backend=first)
    recs = _records(result.run_dir, task)
    n = len(recs)
    assert n == result.aggregates[0]["n"] > 0  # every sample has a record, the run finished
    failed = {sid: r for sid, r in recs.items() if (r["failure"] or "").startswith("generation error")}
    for r in recs.values():
        uri = r["images"][0]
        if uri in bad:
            assert re.search(ERRORS[bad[uri]], r["failure"]), r["failure"]
            assert r["failure"].startswith("generation error: ") and all(v == 0 for v in r["scores"].values())
        else:
            assert not (r["failure"] or "").startswith("generation error"), r
    assert failed and len(failed) < n
    # the same command again with the images fixed
    for path, content in pristine.items():
        path.write_bytes(content)
    dataset_task._INDEX_CACHE.clear()
    second = DecodingBackend()
    result = run_eval(cfg, backend=second)
    again = _records(result.run_dir, task)
    assert set(again) == set(recs)  # nothing lost
    # a batch is generated whole again (the same batch composition as an uninterrupted run), but
    # only its failed samples get new records: the batches with a failure, nothing else
    blocks = {r["index"] // cfg.batch_size for r in failed.values()}
    assert len(second.asked) == sum(r["index"] // cfg.batch_size in blocks for r in recs.values())
    assert not any((r["failure"] or "").startswith("generation error") for r in again.values())
    for sid, r in recs.items():
        if sid not in failed:
            assert again[sid] == r  # kept as it was, not redone


def test_an_unreadable_image_header_in_a_multiple_choice_grounding_task_is_one_line(tmp_path):
    """VLM-R1 rows give no image size, so a sample's size comes from its image header; an
    unreadable header leaves its :mc options (boxes in the model's space) uncomputable: a
    clear error naming the problem (not a ZeroDivisionError), the run resumable."""
    root = tmp_path / "data"
    fr.write_vlmr1(root)
    bad = root / "coco" / "train2014" / fr.coco_name(100)  # the split's last sample
    good = bad.read_bytes()
    corrupt(bad, "zero bytes")
    data.configure(root, {})
    cfg = EvalConfig(model="tiny", tasks=["vlmr1_refcoco_val:mc"], batch_size=1, n_boot=10, progress=False,
                     output_path=str(tmp_path / "run"), data_root=str(root), num_workers=0)
    with pytest.raises(UsageError, match=r"an image of size 0x0 \(its header could not be read\)"):
        run_eval(cfg, backend=DecodingBackend("A"))
    kept = _records(tmp_path / "run", "vlmr1_refcoco_val:mc")
    assert len(kept) == 2  # the samples before it were written
    bad.write_bytes(good)
    dataset_task._INDEX_CACHE.clear()
    backend = DecodingBackend("A")
    run_eval(cfg, backend=backend)
    assert len(_records(tmp_path / "run", "vlmr1_refcoco_val:mc")) == 3 and len(backend.asked) == 1


def test_a_corrupt_image_with_the_real_model(tmp_path, capsys):
    """The same through the command and the hf backend on the shipped tiny model."""
    root = tmp_path / "data"
    fi.write_imagenet(root)
    bad = sorted((root / "imagenet" / "val").rglob("*.JPEG"))[1]
    corrupt(bad, "truncated JPEG")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["eval", "--model", "tiny", "--tasks", "imagenet_val", "--data_root", str(root),
                                 "--limit", "3", "--batch_size", "3", "--bootstrap", "10", "--num_workers", "0",
                                 "--output_path", str(out), "--no_progress"], capsys)
    assert code == 0 and "Traceback" not in err, err
    recs = _records(out, "imagenet_val")
    assert len(recs) == 3
    failures = [r["failure"] for r in recs.values() if (r["failure"] or "").startswith("generation error")]
    assert len(failures) == 1 and "Truncated File Read" in failures[0] or "truncated" in failures[0]


# ------------------------------------------------------------------ OpenAI-compatible servers
class StubServer:
    """A chat-completions server on 127.0.0.1 whose answers ``mode`` decides: "ok" (the
    word "circle"), "not json", "no choices", "content not text", "http 500", "sleep"
    (longer than the client's timeout), "die" (the server goes away at this request)."""

    def __init__(self, mode: str = "ok", port: int = 0) -> None:
        self.mode = mode
        self.posts = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self._send(200, json.dumps({"data": [{"id": "stub-model"}]}).encode())

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                stub.posts += 1
                mode = stub.mode
                if mode == "die":  # like a killed server: this connection cut, no one listening any more
                    threading.Thread(target=stub.stop, daemon=True).start()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "sleep":
                    time.sleep(1.0)
                    mode = "ok"
                reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "circle"}}]}
                if mode == "not json":
                    self._send(200, b"<html>502 Bad Gateway</html>")
                elif mode == "no choices":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
                elif mode == "content not text":
                    self._send(200, json.dumps({"choices": [{"index": 0, "message": {"content": {"x": 1}}}]}).encode())
                elif mode == "http 500":
                    self._send(500, json.dumps({"error": {"message": "CUDA out of memory"}}).encode())
                else:
                    try:
                        self._send(200, json.dumps(reply).encode())
                    except OSError:  # the client gave up (timeout): nobody reads this answer
                        pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            httpd, self.httpd = self.httpd, None
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture
def stub():
    server = StubServer()
    yield server
    server.stop()


def _openai_cfg(url: str, out: Path) -> EvalConfig:
    args = {"base_url": url, "timeout": 0.3, "retries": 1, "backoff": 0.0, "max_wait": 0.3, "concurrency": 2}
    return EvalConfig(model="stub-model", tasks=["synth_cls_id"], backend="openai", model_args=args, limit=4,
                      batch_size=2, n_boot=10, output_path=str(out), progress=False, num_workers=0)


REASONS = {"not json": r"HTTP 200 with a body that is not JSON", "no choices": r"reply without choices",
           "content not text": r"reply without choices/message text", "http 500": r"HTTP 500: CUDA out of memory",
           "sleep": r"no reply within timeout=0.3 s"}


@pytest.mark.parametrize("mode", list(REASONS))
def test_server_garbage_is_recorded_per_sample_and_a_rerun_completes(mode, stub, tmp_path):
    stub.mode = mode
    out = tmp_path / "run"
    result = run_eval(_openai_cfg(stub.url, out))
    recs = _records(out, "synth_cls_id")
    assert len(recs) == 4 and result.aggregates[0]["n"] == 4
    for r in recs.values():
        assert r["failure"].startswith("generation error: ") and re.search(REASONS[mode], r["failure"]), r["failure"]
        assert r["output"] == "" and r["scores"] == {"acc": 0.0}
    stub.mode, stub.posts = "ok", 0
    run_eval(_openai_cfg(stub.url, out))
    recs = _records(out, "synth_cls_id")
    assert stub.posts == 4 and len(recs) == 4
    assert all(r["failure"] is None and r["output"] == "circle" for r in recs.values())


def test_a_server_that_dies_mid_run_loses_nothing(stub, tmp_path):
    """The server goes away after answering the first batch: the rest are per-sample failures
    (fail fast once it is found down), and rerunning against the restarted server finishes the
    run without asking again for what was answered."""
    out = tmp_path / "run"
    cfg = _openai_cfg(stub.url, out)
    cfg.limit = 6
    answered = []

    def die_after_first_batch():
        while stub.posts < 2:
            time.sleep(0.01)
        answered.append(stub.posts)
        stub.mode = "die"

    threading.Thread(target=die_after_first_batch, daemon=True).start()
    run_eval(cfg)
    recs = _records(out, "synth_cls_id")
    assert len(recs) == 6  # every sample has a record, the run finished
    done = {sid for sid, r in recs.items() if r["failure"] is None}
    failed = {sid for sid, r in recs.items() if (r["failure"] or "").startswith("generation error")}
    assert done and failed and done | failed == set(recs)
    assert all(re.search(r"ServerUnavailable|RequestFailed|connection", recs[s]["failure"]) for s in failed)
    restarted = StubServer(port=stub.port)  # the same address: the run's identity holds base_url
    try:
        run_eval(cfg)
        again = _records(out, "synth_cls_id")
        assert all(again[s] == recs[s] for s in done)  # kept, not redone
        assert all(again[s]["failure"] is None for s in failed)
        blocks = {recs[s]["index"] // cfg.batch_size for s in failed}  # the batches with a failure, nothing else
        assert restarted.posts == sum(r["index"] // cfg.batch_size in blocks for r in recs.values())
    finally:
        restarted.stop()


def test_a_server_that_refuses_connections_is_one_line(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    t0 = time.perf_counter()
    code, _, err = run_cli(["eval", "--model", "stub-model", "--backend", "openai", "--tasks", "synth_cls_id",
                            "--model_args", f"base_url=http://127.0.0.1:{port}/v1,max_wait=0.2,backoff=0",
                            "--output_path", str(out), "--no_progress"], capsys)
    one_line_error(code, err, rf"no OpenAI-compatible server at http://127.0.0.1:{port}/v1 .*start it first")
    assert time.perf_counter() - t0 < 20 and not out.exists()
