"""``harness view``: a run's samples as one standalone HTML page (no server, no network).

Per task of the run, a grid of samples: the image with the ground-truth boxes and the
predicted boxes drawn over it, the prompt, the raw output, the extracted answer, the
parsed value, the scores and the failure reason; filters (correct / wrong / parse
failure, ID / OOD, task) and pages of ``page_size`` samples. With a second run, the
samples on which the two runs differ (a score or the parsed answer), side by side.
The page (harness/viewer_page.py) holds everything: the data is one JSON blob, each
distinct image is embedded once, downscaled, as a data URI, and only the current page
is drawn.

Where each piece comes from:

- the record (records/<task>.jsonl): prompt, output, answer, parsed value, target,
  scores, failure. A box task's parsed value is already in pixels of the original
  image (``Task.parse`` converted it with the run's conventions) and so is its target
  (``Task.target_json``); they are drawn as they are.
- what a record lacks is rebuilt through the task (the registry resolves its name;
  a synthetic sample is regenerated from its index, a dataset sample is read from the
  local files under the run's recorded ``data_root`` / ``data_args``, or ``--data_root``):
  the image when its URI is not a readable file, the prompt (``Task.prompt``), the parsed
  value (``Task.evaluate`` under the run's conventions and profile), and for a
  multiple-choice answer to a box task the chosen option's box (read by the task's own
  parser). An image that cannot be loaded is a placeholder with the reason.
- config.json (model, profile, conventions, roles: each task's ID / OOD role as the run
  resolved it), provenance.json (commit, model fingerprint), aggregates.json (the
  task's metrics with CIs).

A sample is correct when its primary metric is at least the cut difficulty profiling
uses (0.5: "scored 1" for 0/1 metrics, the midpoint for a graded one such as a
detection's F1), wrong when it is below, and a parse failure when the record has a
failure reason (as aggregates count them). A record line that is not JSON or lacks the
fields every record has is shown as a broken record with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness import data
from harness.atomic import write_text_atomic
from harness.boxes import is_finite_box
from harness.conventions import ModelConventions
from harness.difficulty import ProfileConfig
from harness.errors import HarnessError, UsageError
from harness.protocol import get_profile
from harness.rundir import RECORD_KEYS, RunDir
from harness.task import MC, OPEN
from harness.taskspec import make_task, split_format
from harness.validation import check_number, check_output_file, read_json_file

#: a sample is "correct" at this primary-metric score: the cut of difficulty profiling
CORRECT_AT = ProfileConfig.correct_threshold
STATUSES = ("correct", "wrong", "parse", "broken")


@dataclass
class ViewConfig:
    run: str
    run2: str | None = None
    output: str | None = None  # default RUN/view.html, or RUN/compare-<RUN2 name>.html
    page_size: int = 50
    image_side: int = 320  # longest side of an embedded image, in pixels
    data_root: str | None = None  # where local datasets are now (default: as the run recorded)
    data_args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> tuple[Path, Path | None, Path]:
        """(run, run2, output), checked before any record or image is read."""
        check_number("--page_size", self.page_size, minimum=1, maximum=10_000, integer=True, allow_none=False)
        check_number("--image_side", self.image_side, minimum=16, maximum=4096, integer=True, allow_none=False)
        run = check_run_dir(self.run, "RUN")
        run2 = check_run_dir(self.run2, "RUN2") if self.run2 else None
        if run2 is not None:
            if run2.resolve() == run.resolve():
                raise UsageError(f"RUN2 {run2} is RUN itself; give another run to compare with")
            a, b = set(run_tasks(run)), set(run_tasks(run2))
            if a != b:
                only_a, only_b = ", ".join(sorted(a - b)) or "none", ", ".join(sorted(b - a)) or "none"
                raise UsageError(f"RUN2 {run2} has other tasks than RUN {run} (only in RUN: {only_a}; only in RUN2: "
                                 f"{only_b}); compare runs of the same tasks")
        output = Path(self.output) if self.output else default_output(run, run2)
        check_output_file(output)
        if self.data_root is not None or self.data_args:
            with _data_config(self.data_root, self.data_args):  # raises UsageError for a path that is not there
                pass
        return run, run2, output


def check_run_dir(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{what} {p} is not a directory; give a run directory (config.json, records/)")
    cfg = RunDir(p).read_config()  # one-line UsageError without config.json
    if not isinstance(cfg.get("tasks", []), list):
        raise UsageError(f"{p / 'config.json'}: 'tasks' is not a list; not a run's config")
    return p


def default_output(run: Path, run2: Path | None) -> Path:
    return run / ("view.html" if run2 is None else f"compare-{run2.resolve().name}.html")


def run_tasks(run: Path) -> list[str]:
    """The run's tasks (full names): as its config lists them, then any other records file."""
    tasks = [str(t) for t in RunDir(run).read_config().get("tasks") or []]
    folder = run / "records"
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            if ".rank" in path.name:  # a data-parallel shard: merged into the task's file when the run ends
                continue
            name = path.stem.replace("@", ":")
            if name not in tasks and RunDir(run).records_path(name) == path:
                tasks.append(name)
    return tasks


@contextlib.contextmanager
def _data_config(root: str | None, options: dict[str, Any]) -> Iterator[None]:
    """The process's data configuration set to ``root`` / ``options`` for a while (a view of
    two runs may need two), restored afterwards."""
    saved = data._config
    try:
        data.configure(root, options)
        yield
    finally:
        data._config = saved


# ----------------------------------------------------------------------------- records
@dataclass
class Line:
    """One line of a records file: a record, or why it is not one."""

    lineno: int
    record: dict[str, Any] | None
    problem: str | None = None
    text: str = ""


def read_lines(path: Path) -> list[Line]:
    """Every non-empty line of a records file; a line that is not a record is kept with the
    reason (never raises for the file's content)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return [Line(0, None, f"cannot read {path}: {exc.strerror or exc}")]
    out: list[Line] = []
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            out.append(Line(i, None, f"not JSON ({msg})", line[:300]))
            continue
        if not isinstance(rec, dict):
            out.append(Line(i, None, f"not a JSON object (a {type(rec).__name__})", line[:300]))
            continue
        missing = [k for k in RECORD_KEYS if k not in rec]
        if missing:
            out.append(Line(i, None, f"lacks {', '.join(missing)}", line[:300]))
        elif not isinstance(rec["scores"], dict):
            out.append(Line(i, None, "'scores' is not an object", line[:300]))
        elif not isinstance(rec["index"], int) or isinstance(rec["index"], bool):
            out.append(Line(i, None, "'index' is not an integer", line[:300]))
        else:
            out.append(Line(i, rec))
    return out


def boxes_of(value: Any) -> list[list[float]] | None:
    """The boxes a parsed value or a target holds, in the stored order: one box
    ``[x1, y1, x2, y2]``, or a list of boxes (a detection's entries may carry a score after
    the four coordinates). None when the value holds no boxes (text, a number, a letter)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 4 and is_finite_box(value):
            return [[float(v) for v in value]]
        if all(isinstance(v, (list, tuple)) and len(v) >= 4 and is_finite_box(v[:4]) for v in value):
            return [[float(x) for x in v[:4]] for v in value]
    return None


def _rounded(value: Any, digits: int = 2) -> Any:
    """For display: floats to ``digits`` decimals, recursively."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {str(k): _rounded(v, digits) for k, v in value.items()}
    return value


def _parsed_text(parsed: Any, task) -> str | None:
    if parsed is None:
        return None
    if task is not None and task.fmt == MC and isinstance(parsed, int) and 0 <= parsed < 26:
        return f"option {string.ascii_uppercase[parsed]}"  # the record keeps the option's index
    return _text(parsed)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_rounded(value), ensure_ascii=False, default=str)


# ----------------------------------------------------------------------------- samples and images
class Images:
    """Distinct images of a page, each embedded once, downscaled: data URIs by image key."""

    def __init__(self, side: int) -> None:
        self.side = side
        self.uris: list[str] = []
        self._by_key: dict[str, tuple[int, tuple[int, int] | None, str | None]] = {}

    def get(self, key: str, load) -> tuple[int, tuple[int, int] | None, str | None]:
        """(index in :attr:`uris` or -1, original size, why it is missing); ``load()`` returns a
        PIL image or raises with the reason; it runs once per key."""
        if key not in self._by_key:
            try:
                image = load()
                size = image.size
                self.uris.append(self.encode(image))
                self._by_key[key] = (len(self.uris) - 1, size, None)
            except Exception as exc:  # an unreadable image is a placeholder, never a crash
                self._by_key[key] = (-1, None, str(exc).strip() or type(exc).__name__)
        return self._by_key[key]

    def encode(self, image) -> str:
        from PIL import Image

        image = image.convert("RGB")
        if max(image.size) > self.side:
            image = image.copy()
            image.thumbnail((self.side, self.side), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=82)
        mime, best = "image/jpeg", buf.getvalue()
        # PNG wins only on images of few colours (diagrams, charts, flat renders); on photos and
        # shaded scenes it is larger, and deflating it took 40 % of a 10,000-image page's build
        if image.getcolors(256) is not None:
            buf = io.BytesIO()
            image.save(buf, "PNG")
            if buf.tell() < len(best):
                mime, best = "image/png", buf.getvalue()
        return f"data:{mime};base64,{base64.b64encode(best).decode('ascii')}"


class RunSamples:
    """One run's tasks and samples, rebuilt on demand under the run's conventions, profile
    and data configuration."""

    def __init__(self, config: dict[str, Any], data_root: str | None, data_args: dict[str, Any]) -> None:
        conv = config.get("conventions")
        self.conv = ModelConventions.from_dict(conv) if isinstance(conv, dict) else ModelConventions()
        try:
            self.profile = get_profile(str(config.get("profile") or "strict"))
        except HarnessError:
            self.profile = None
        recorded_root = config.get("data_root")
        if data_root is None and isinstance(recorded_root, str) and Path(recorded_root).is_dir():
            data_root = recorded_root  # a recorded root that is gone falls back to $HARNESS_DATA
        recorded = config.get("data_args") if isinstance(config.get("data_args"), dict) else {}
        options = {k: v for k, v in recorded.items() if isinstance(v, str) and Path(v).expanduser().exists()}
        self.data_root, self.data_args = data_root, {**options, **data_args}
        self._tasks: dict[str, tuple[Any, str | None]] = {}
        self._samples: dict[tuple[str, str], tuple[Any, str | None]] = {}

    def task(self, full_name: str):
        """(task, None) or (None, why it cannot be built)."""
        if full_name not in self._tasks:
            try:
                name, fmt = split_format(full_name)
                self._tasks[full_name] = (make_task(name, fmt), None)
            except Exception as exc:
                self._tasks[full_name] = (None, f"task {full_name!r} cannot be rebuilt: {exc}")
        return self._tasks[full_name]

    def sample(self, full_name: str, sample_id: str):
        """(sample, None) or (None, why it cannot be rebuilt)."""
        key = (full_name, sample_id)
        if key not in self._samples:
            task, why = self.task(full_name)
            if task is None:
                self._samples[key] = (None, why)
            else:
                try:
                    with _data_config(self.data_root, self.data_args):
                        self._samples[key] = (task.get_sample(sample_id), None)
                except Exception as exc:
                    self._samples[key] = (None, f"sample {sample_id} of {full_name} cannot be rebuilt: {exc}")
            if len(self._samples) > 4096:  # samples hold scenes; keep the cache small
                self._samples.pop(next(iter(self._samples)))
        return self._samples[key]

    def load_image(self, uri: str | None, full_name: str, sample_id: str):
        """The record's image: its URI when that is a readable file, else the rebuilt sample's."""
        why_file = None
        if uri and "://" not in uri and "#" not in uri:
            path = Path(uri)
            if path.is_file():
                from PIL import Image

                with Image.open(path) as im:
                    im.load()
                    return im.convert("RGB")
            why_file = f"{uri} is not there (moved?)"
        sample, why = self.sample(full_name, sample_id)
        if sample is None:
            raise RuntimeError("; ".join(w for w in (why_file, why) if w))
        if not sample.images:
            raise RuntimeError("the sample has no image")
        with _data_config(self.data_root, self.data_args):
            return sample.images[0].load()


# ----------------------------------------------------------------------------- items
def _role_of(full_name: str, config: dict[str, Any], aggregate: dict[str, Any] | None) -> str:
    """'id', 'ood' or '' (no role): as the run resolved it, else a suite that names the task."""
    roles = config.get("roles") if isinstance(config.get("roles"), dict) else {}
    role = roles.get(full_name) or (aggregate or {}).get("role")
    if role in ("id", "ood"):
        return role
    if role:
        return ""
    from harness.registry import SUITES

    try:
        for name in SUITES.names():
            found = SUITES.get(name).role_of(full_name)
            if found in ("id", "ood"):
                return found
    except Exception:  # a broken suite plug-in: no role
        pass
    return ""


def _status(rec: dict[str, Any], primary: str | None) -> str:
    if rec.get("failure"):
        return "parse"
    score = rec["scores"].get(primary) if primary else None
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
        return "wrong"
    return "correct" if score >= CORRECT_AT else "wrong"


def _compact(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None and v != ""}


@dataclass
class TaskView:
    name: str
    role: str
    primary: str | None
    box: bool  # the task's answers are boxes: draw them
    aggregate: dict[str, Any] | None
    note: str = ""


class RunView:
    """One run read for the page: its tasks and an item per record line."""

    def __init__(self, path: Path, images: Images, data_root: str | None = None,
                 data_args: dict[str, Any] | None = None) -> None:
        self.path = path
        self.config = RunDir(path).read_config()
        prov = path / "provenance.json"
        self.provenance = _json_or_none(prov)
        aggs = _json_or_none(path / "aggregates.json")
        self.aggregates = {a["task"]: a for a in aggs if isinstance(a, dict) and "task" in a} \
            if isinstance(aggs, list) else {}
        self.samples = RunSamples(self.config, data_root, data_args or {})
        self.images = images
        self.tasks: list[TaskView] = []
        self.items: list[dict[str, Any]] = []
        self.keys: list[tuple[str, str]] = []  # (task, sample id) of each item
        # (task, sample id) -> the recorded scores and parsed value, what a comparison of two runs compares
        self.raw: dict[tuple[str, str], str] = {}
        for name in run_tasks(path):
            self._read_task(name)

    def _read_task(self, name: str) -> None:
        task, why = self.samples.task(name)
        agg = self.aggregates.get(name)
        primary = task.primary_metric if task is not None else (agg or {}).get("primary_metric")
        box = task is not None and task.answer_kind == "box"
        view = TaskView(name, _role_of(name, self.config, agg), primary, box, agg, why or "")
        t = len(self.tasks)
        self.tasks.append(view)
        path = RunDir(self.path).records_path(name)
        if not path.exists():
            view.note = (view.note + "; " if view.note else "") + "no records file"
            return
        rel = f"records/{path.name}"
        for line in read_lines(path):
            if line.record is None:
                item = {"t": t, "i": -1, "id": f"line {line.lineno}", "st": "broken",
                        "f": f"{rel}:{line.lineno}: {line.problem}", "o": line.text}
            else:
                rec = line.record
                try:
                    item = self._item(t, view, task, rec)
                    self.raw[(name, item["id"])] = json.dumps([rec["scores"], rec.get("parsed")], sort_keys=True,
                                                              default=str)
                except Exception as exc:  # a record this page cannot show is shown as broken, never a crash
                    item = {"t": t, "i": -1, "id": str(rec.get("sample_id")), "st": "broken",
                            "f": f"{rel}:{line.lineno}: cannot be shown: {type(exc).__name__}: {exc}"}
            self.items.append(_compact(item))
            self.keys.append((name, item["id"]))

    def _item(self, t: int, view: TaskView, task, rec: dict[str, Any]) -> dict[str, Any]:
        sid = str(rec["sample_id"])
        images = rec.get("images") if isinstance(rec.get("images"), list) else []
        uri = str(images[0]) if images else None
        notes: list[str] = []
        prompt = rec.get("prompt")
        parsed_known = "parsed" in rec
        parsed, failure = rec.get("parsed"), rec.get("failure")
        if task is not None and (prompt is None or (not parsed_known and isinstance(rec.get("output"), str))):
            sample, why = self.samples.sample(view.name, sid)
            if sample is not None and prompt is None:
                prompt = task.prompt(sample, self.samples.conv).text
                notes.append("prompt rebuilt through the task")
            if sample is not None and not parsed_known and isinstance(rec.get("output"), str) and self.samples.profile:
                p, _ = task.evaluate(rec["output"], sample, self.samples.conv, self.samples.profile)
                parsed, failure = p.value, failure or p.failure
                notes.append("parsed value rebuilt through the task")
            if why:
                notes.append(why)
        key = uri or f"{view.name}#{sid}"
        index, size, img_why = self.images.get(key, lambda: self.samples.load_image(uri, view.name, sid))
        gt = pred = None
        if view.box:
            gt = boxes_of(rec.get("target")) or []
            pred = self._pred_boxes(task, view.name, sid, parsed, failure)
        item = {
            "t": t, "i": rec["index"], "id": sid, "st": _status(rec, view.primary),
            "img": index, "sz": list(size) if size else None, "ir": img_why,
            "gt": _rounded(gt), "pr": _rounded(pred),
            "q": prompt if isinstance(prompt, str) else None, "o": _text(rec.get("output", "")),
            "a": _text(rec["answer"]) if rec.get("answer") is not None else None,
            "v": _parsed_text(parsed, task),
            "y": _text(rec["target"]) if "target" in rec else None,
            "g": _text(rec["gold"]) if rec.get("gold") is not None else None,
            "s": {str(k): _rounded(v, 4) for k, v in rec["scores"].items()},
            "f": _text(failure) if failure else None,
            "n": "; ".join(notes) or None,
        }
        if len(images) > 1:
            item["n"] = "; ".join(filter(None, [item["n"], f"{len(images)} images, the first shown"]))
        return _compact(item)

    def _pred_boxes(self, task, name: str, sid: str, parsed: Any, failure: Any) -> list[list[float]]:
        if failure or parsed is None or task is None:
            return []
        if task.fmt == OPEN:
            return boxes_of(parsed) or []
        if task.fmt == MC and isinstance(parsed, int) and self.samples.profile is not None:
            # the chosen option is a box written in the model's space: the task's own parser reads it
            sample, _ = self.samples.sample(name, sid)
            if sample is None:
                return []
            options, _ = task._options(sample, self.samples.conv)
            if 0 <= parsed < len(options):
                value = task.parse_open(options[parsed], sample, self.samples.conv, self.samples.profile)
                return (boxes_of(value.value) or []) if value.ok else []
        return []  # yes/no: a verdict on a claim, no box of its own

    def summary(self) -> dict[str, Any]:
        cfg, prov = self.config, self.provenance if isinstance(self.provenance, dict) else {}
        model = prov.get("model") if isinstance(prov.get("model"), dict) else {}
        git = prov.get("git") if isinstance(prov.get("git"), dict) else {}
        conv = cfg.get("conventions") if isinstance(cfg.get("conventions"), dict) else {}
        facts = {
            "model": cfg.get("model"), "backend": cfg.get("backend"), "profile": cfg.get("profile"),
            "box space": conv.get("box_space"), "seed": cfg.get("seed"), "limit": cfg.get("limit"),
            "subsample": cfg.get("subsample"), "model fingerprint": model.get("fingerprint"),
            "commit": git.get("commit"), "created": prov.get("created"),
        }
        meta = cfg.get("meta") if isinstance(cfg.get("meta"), dict) else {}
        facts.update({f"meta.{k}": v for k, v in meta.items() if isinstance(v, (str, int, float))})
        return {"name": self.path.resolve().name, "path": str(self.path.resolve()),
                "facts": {k: str(v) for k, v in facts.items() if v is not None}}


def _json_or_none(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return read_json_file(path, "run file")
    except UsageError:
        return None


def _task_entries(runs: list[RunView]) -> list[dict[str, Any]]:
    out = []
    for view in runs[0].tasks:
        entry = {"name": view.name, "role": view.role, "primary": view.primary, "box": view.box,
                 "note": view.note, "aggregates": []}
        for run in runs:
            other = next((v for v in run.tasks if v.name == view.name), None)
            agg = other.aggregate if other else None
            entry["aggregates"].append(None if not agg else {
                "n": agg.get("n"), "parse_failures": agg.get("parse_failures"),
                "metrics": {m: {"value": v.get("value"), "ci": v.get("ci")}
                            for m, v in (agg.get("metrics") or {}).items() if isinstance(v, dict)}})
        out.append(entry)
    return out


def _primary(item: dict[str, Any] | None, primary: str | None) -> float | None:
    if item is None or item["st"] == "broken" or not primary:
        return None
    v = item.get("s", {}).get(primary)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _differences(a: RunView, b: RunView) -> list[dict[str, Any]]:
    """Pairs of items (same task and sample) on which the runs differ: a score or the parsed
    answer as recorded, or a sample only one run has (or a broken line in either); ``w``
    says which run scored higher on the task's primary metric."""
    by_b = {key: it for key, it in zip(b.keys, b.items)}
    pairs: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for key, it in zip(a.keys, a.items):
        if key in seen:
            continue
        seen.add(key)
        other = by_b.get(key)
        if other is not None and "broken" not in (it["st"], other["st"]) and a.raw[key] == b.raw[key]:
            continue
        pairs.append(_pair(it["t"], it, other, a.tasks[it["t"]].primary))
    names = [v.name for v in a.tasks]
    for key, it in zip(b.keys, b.items):
        if key not in seen:
            seen.add(key)
            pairs.append(_pair(names.index(key[0]), None, it, b.tasks[it["t"]].primary))
    pairs.sort(key=lambda p: (p["t"], (p["a"] or p["b"])["i"], (p["a"] or p["b"])["id"]))
    return pairs


def _pair(t: int, a: dict[str, Any] | None, b: dict[str, Any] | None, primary: str | None) -> dict[str, Any]:
    sa, sb = _primary(a, primary), _primary(b, primary)
    if a is None or b is None:
        which = "only"
    elif sa is not None and sb is not None and sa != sb:
        which = "a" if sa > sb else "b"
    else:
        which = "same"
    return {"t": t, "w": which, "a": a, "b": b}


def page_data(cfg: ViewConfig, run: Path, run2: Path | None) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able object."""
    images = Images(cfg.image_side)
    runs = [RunView(run, images, cfg.data_root, cfg.data_args)]
    if run2 is not None:
        runs.append(RunView(run2, images, cfg.data_root, cfg.data_args))
    out: dict[str, Any] = {
        "version": 1, "compare": run2 is not None, "page_size": cfg.page_size, "correct_at": CORRECT_AT,
        "runs": [r.summary() for r in runs], "tasks": _task_entries(runs), "images": images.uris,
    }
    if run2 is None:
        out["items"] = runs[0].items
    else:
        out["compared"] = len(set(runs[0].keys) | set(runs[1].keys))
        out["items"] = _differences(runs[0], runs[1])
    return out


def write_view(cfg: ViewConfig) -> tuple[Path, dict[str, Any]]:
    """Validate, build and write the page atomically; returns (path, page data)."""
    from harness.viewer_page import render_page

    run, run2, output = cfg.validate()
    page = page_data(cfg, run, run2)
    write_text_atomic(output, render_page(page))
    return output, page


def view_name(run: Path) -> str:
    """A file name for a run's page among other runs' pages (leaderboards' views/ folder):
    the directory's name and a hash of its resolved path, which tells runs of one name apart."""
    resolved = str(Path(run).resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(resolved).name)[:80]
    return f"{safe}-{digest}.html"


