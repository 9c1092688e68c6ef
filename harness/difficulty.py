"""Difficulty profiling (DC-SFT, Lu et al., Sec. 4.1-4.2): how hard each training prompt is for a model.

The model answers every profiled prompt of a train split ``G`` times by sampling
(paper: G 8, temperature 0.9, top-p 1.0). A sample is **easy** when all G answers
are correct, **hard** when none is, **medium** otherwise. An answer is correct when
the task's primary metric (the score ``Task.evaluate`` gives it, the same number the
evaluator reports and GRPO uses as reward) is at least ``correct_threshold`` (0.5):
for 0/1 metrics (accuracy, ACC@0.5) that is "scored 1"; for a graded metric (F1 of a
detection) it is the midpoint, the same cut the papers' IoU >= 0.5 makes.

A profile is an ordinary eval run directory (``run_eval`` with ``num_samples`` G), so
it resumes after a kill exactly like an eval, plus ``difficulty.json``::

    <run>/config.json, provenance.json    as for any eval (identity: model, split, G, T, top-p, seed, ...)
    <run>/records/<split>.jsonl           every sample's G outputs and each one's score (sample_scores)
    <run>/aggregates.json                 the first answer's metrics (an ordinary sampled eval)
    <run>/difficulty.json                 settings, per sample {index, sample_id, pass_rate, label},
                                          counts per label, failed samples, cost, labels fingerprint

A sample whose generation failed (the backend raised: an unreadable image, an engine
error) has no answers to judge: it gets no label, is counted as ``failed`` and is
never trained on. easy + medium + hard = profiled samples (those not failed).

Cost (``difficulty.json: cost``): ``wall_s`` is generation time, the sum of the
records' per-sample latencies, so it adds up over resumed segments (model loading
and scoring are not in it); ``generated_tokens`` counts every output with the model's
tokenizer, plus the end-of-turn token each stopped at, as GRPO counts (null when the
tokenizer is not local, e.g. a remote openai model);
``prompts`` and ``completions``. DC-SFT trainers add it to their checkpoints' cost.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness import data
from harness.atomic import write_json_atomic
from harness.errors import HarnessError, UnknownName, UsageError
from harness.validation import check_number, check_output_dir

LABELS = ("easy", "medium", "hard")
DIFFICULTY_FILE = "difficulty.json"
VERSION = 1


def train_split(name: str) -> str:
    """A task name as is, or a suite's train split (the open-ended form only)."""
    from harness.registry import SUITES, TASKS

    if ":" in name:
        raise UsageError(f"--task {name}: difficulty is profiled on the open-ended form; drop the :format suffix")
    if name in TASKS:
        return name
    if name in SUITES:
        suite = SUITES.get(name)
        if not suite.train:
            raise UsageError(f"suite {name!r} has no train split to profile")
        return suite.train
    with_train = [n for n in SUITES.names() if SUITES.get(n).train]
    raise UnknownName(f"unknown task or suite {name!r}; give a train split or a suite with one: "
                      f"{', '.join(with_train)}")


@dataclass
class ProfileConfig:
    model: str
    #: a train split, or a suite (its train split)
    task: str
    #: G, answers sampled per prompt
    num_generations: int = 8
    temperature: float = 0.9
    top_p: float = 1.0
    #: sampling and --subsample seed
    seed: int = 0
    #: profile the first N samples after the holdout, or a seeded random N of them
    limit: int | None = None
    subsample: int | None = None
    #: the split's first N samples are never profiled (a study's validation split)
    holdout: int = 0
    #: an answer is correct when its primary-metric score is >= this
    correct_threshold: float = 0.5
    output_path: str | None = None
    batch_size: int = 16
    backend: str = "hf"
    model_args: dict[str, Any] = field(default_factory=dict)
    #: scoring protocol profile (harness.protocol)
    profile: str = "strict"
    max_new_tokens: int | None = None
    progress: bool = True
    data_root: str | None = None
    data_args: dict[str, Any] = field(default_factory=dict)
    #: an LLM extracting math answers (see harness eval --math_judge); recorded in the run
    math_judge: str | None = None

    @property
    def split(self) -> str:
        return train_split(self.task)

    def validate(self) -> None:
        """Every option (and the backend's model check) before a model loads."""
        check_number("--num_generations", self.num_generations, minimum=1, integer=True, allow_none=False)
        if self.num_generations < 2:
            raise UsageError(f"--num_generations {self.num_generations}: at least 2 answers per prompt are needed to "
                             "tell easy, medium and hard apart (the paper samples 8)")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise UsageError(f"--temperature {self.temperature}: profiling samples its answers, give a temperature > 0 "
                             "(the paper uses 0.9); at 0 all G answers are one greedy answer")
        check_number("--correct_threshold", self.correct_threshold, minimum=0, maximum=1, exclusive_minimum=True,
                     allow_none=False)
        check_number("--holdout", self.holdout, minimum=0, integer=True, allow_none=False)
        data.configure(self.data_root, self.data_args)
        from harness.taskspec import make_task

        size = len(make_task(self.split))
        if self.holdout >= size:
            raise UsageError(f"--holdout {self.holdout}: {self.split} has {size} samples, none would be left to "
                             "profile")
        self.eval_config().validate()

    def eval_config(self) -> Any:
        from harness.evaluator import EvalConfig

        cfg = EvalConfig(model=self.model, tasks=[self.split], backend=self.backend, model_args=dict(self.model_args),
                         limit=self.limit, subsample=self.subsample, batch_size=self.batch_size, seed=self.seed,
                         profile=self.profile, temperature=float(self.temperature), top_p=float(self.top_p),
                         max_new_tokens=self.max_new_tokens, num_samples=self.num_generations,
                         skip_first=self.holdout, n_boot=0, progress=self.progress, data_root=self.data_root,
                         data_args=dict(self.data_args), math_judge=self.math_judge)
        cfg.output_path = self.output_path or self.default_output_path(cfg)
        return cfg

    def default_output_path(self, cfg: Any) -> str:
        digest = hashlib.sha256(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:8]
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model.rstrip("/")).name or "model")
        return str(Path("harness_runs") / f"difficulty-{slug}-{self.split}-{digest}")

    def settings(self) -> dict[str, Any]:
        """What decides the labels (recorded in difficulty.json)."""
        return {"task": self.split, "num_generations": self.num_generations, "temperature": float(self.temperature),
                "top_p": float(self.top_p), "seed": self.seed, "limit": self.limit, "subsample": self.subsample,
                "holdout": self.holdout, "correct_threshold": float(self.correct_threshold), "profile": self.profile,
                "batch_size": self.batch_size, "max_new_tokens": self.max_new_tokens}


@dataclass(frozen=True)
class Difficulty:
    """A finished profile, read from ``difficulty.json`` (see :func:`load_difficulty`)."""

    path: Path
    task: str
    settings: dict[str, Any]
    #: split index -> "easy" | "medium" | "hard" (failed samples have none)
    labels: dict[int, str]
    pass_rates: dict[int, float]
    sample_ids: dict[int, str]
    failed: tuple[int, ...]
    cost: dict[str, Any]
    #: hash of (split, every index and label): what a trainer's run identity records
    fingerprint: str
    model: str
    model_fingerprint: str

    @property
    def counts(self) -> dict[str, int]:
        out = {label: 0 for label in LABELS}
        for label in self.labels.values():
            out[label] += 1
        return out

    @property
    def profiled(self) -> int:
        return len(self.labels)

    def indices(self, *labels: str) -> list[int]:
        """Split indices with any of ``labels``, in split order."""
        bad = [x for x in labels if x not in LABELS]
        if bad:
            raise UsageError(f"unknown difficulty label {bad[0]!r}; choose from {', '.join(LABELS)}")
        return sorted(i for i, label in self.labels.items() if label in labels)

    def describe_counts(self) -> str:
        """``2000 profiled (easy 1900, medium 0, hard 100)`` for messages."""
        counts = self.counts
        return f"{self.profiled} profiled ({', '.join(f'{x} {counts[x]}' for x in LABELS)})"

    def records(self) -> Iterator[dict[str, Any]]:
        """The profile's records: every sample's ``outputs`` and ``sample_scores``."""
        from harness.rundir import RunDir

        return RunDir(self.path).iter(self.task)


def labels_fingerprint(task: str, labels: dict[int, str]) -> str:
    text = json.dumps([task, sorted(labels.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def label_of(correct: int, total: int) -> str:
    return "easy" if correct == total else "hard" if correct == 0 else "medium"


def profile_difficulty(cfg: ProfileConfig) -> Path:
    """Profile (or resume, or reuse) and write ``difficulty.json``; returns the run directory.

    A finished run with the same settings is read, not rerun: no model is loaded. A
    finished run whose only difference is ``correct_threshold`` is relabelled from its
    records (the threshold does not change what was generated).
    """
    from harness.evaluator import run_eval
    from harness.rundir import RunDir

    cfg.validate()
    ecfg = cfg.eval_config()
    path = Path(ecfg.output_path)
    check_output_dir(path)
    run = RunDir(path)
    run.check_identity(ecfg.identity(), keys=set(ecfg.identity()))  # a different profile: refused, no model
    recorded = run.recorded_config()
    if recorded is not None and recorded.get("tasks") != [cfg.split]:
        raise UsageError(f"{path} holds a run of {', '.join(recorded.get('tasks') or ['nothing'])}, not a profile of "
                         f"{cfg.split}; use another --output_path")
    if not (path / "aggregates.json").is_file() or not _same_weights(cfg, recorded):
        run_eval(ecfg)  # refuses weights other than the recorded ones (ConfigMismatch)
    elif _read_existing(path, cfg.settings()) is not None:
        return path
    write_difficulty(path, cfg)
    return path


def _same_weights(cfg: ProfileConfig, recorded: dict[str, Any] | None) -> bool:
    """Whether a finished profile was made from the weights now at ``cfg.model``. Checked
    without loading a model where the backend's fingerprint is a plain model directory's
    weights hash (hf, no adapter); otherwise the eval run (which loads it) decides."""
    from harness.backends.hf import weights_fingerprint
    from harness.evaluator import resolve_model

    model = Path(resolve_model(cfg.model)).expanduser()
    if cfg.backend != "hf" or cfg.model_args.get("adapter") or not (model / "config.json").is_file():
        return False
    return (recorded or {}).get("identity", {}).get("model_fingerprint") == weights_fingerprint(model)


def _read_existing(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        found = json.loads((path / DIFFICULTY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(found, dict) and found.get("version") == VERSION and found.get("settings") == settings:
        return found
    return None


def write_difficulty(path: Path, cfg: ProfileConfig) -> dict[str, Any]:
    """Label a finished profile run from its records and write ``difficulty.json`` atomically."""
    from harness.rundir import RunDir, retry_on_resume

    run = RunDir(path)
    config = run.read_config()
    split, g, threshold = cfg.split, cfg.num_generations, float(cfg.correct_threshold)
    samples, failed, texts = [], [], []
    wall = 0.0
    prompts = completions = 0
    for rec in sorted(run.iter(split), key=lambda r: r["index"]):
        prompts += 1
        wall += float(rec.get("latency_s") or 0.0)
        if retry_on_resume(rec):
            failed.append({"index": rec["index"], "sample_id": rec["sample_id"], "failure": rec["failure"]})
            continue
        scores = rec.get("sample_scores")
        if not isinstance(scores, list) or len(scores) != g:
            raise HarnessError(f"{run.records_path(split)}: sample {rec['sample_id']} has "
                               f"{len(scores) if isinstance(scores, list) else 'no'} sample scores, expected {g}; "
                               "this run directory is not a difficulty profile with these settings")
        correct = sum(float(s) >= threshold for s in scores)
        samples.append({"index": rec["index"], "sample_id": rec["sample_id"], "pass_rate": correct / g,
                        "label": label_of(correct, g)})
        outputs = rec.get("outputs") or [rec.get("output", "")]
        completions += len(outputs)
        texts += outputs
    counts = {label: sum(s["label"] == label for s in samples) for label in LABELS}
    # the definition of the taxonomy: every profiled sample has exactly one label
    assert sum(counts.values()) == len(samples), (counts, len(samples))
    labels = {s["index"]: s["label"] for s in samples}
    identity = config.get("identity", {})
    out = {
        "version": VERSION,
        "task": split,
        "model": identity.get("model", cfg.model),
        "model_fingerprint": identity.get("model_fingerprint", ""),
        "settings": cfg.settings(),
        "counts": {**counts, "profiled": len(samples), "failed": len(failed)},
        "cost": {"wall_s": round(wall, 3), "generated_tokens": count_tokens(cfg, texts), "prompts": prompts,
                 "completions": completions},
        "fingerprint": labels_fingerprint(split, labels),
        "samples": samples,
        "failed": failed,
    }
    write_json_atomic(path / DIFFICULTY_FILE, out)
    return out


def count_tokens(cfg: ProfileConfig, texts: list[str]) -> int | None:
    """Generated tokens of ``texts`` by the model's own tokenizer (None when it is not on this
    machine), counted as GRPO counts its completion ids: the text's tokens plus the end-of-turn
    token generation stopped at, which decoding drops (none for a completion cut at the limit)."""
    from harness.taskspec import make_task

    tokenizer = _tokenizer(cfg)
    if tokenizer is None:
        return None
    limit = cfg.max_new_tokens or make_task(cfg.split).max_new_tokens
    total = 0
    for start in range(0, len(texts), 1024):
        for ids in tokenizer(texts[start:start + 1024], add_special_tokens=False)["input_ids"]:
            total += len(ids) + (len(ids) < limit)
    return total


def _tokenizer(cfg: ProfileConfig) -> Any:
    from harness.evaluator import resolve_model

    try:
        from harness.backends.hf import resolve_model_and_adapters

        _, base_dir, adapters = resolve_model_and_adapters(resolve_model(cfg.model), cfg.model_args.get("adapter"))
    except (HarnessError, ValueError, OSError):
        return None
    # an adapter that ships its own tokenizer decoded the outputs with it (as the hf backend does)
    source = next((a for a in reversed(adapters) if (a / "tokenizer_config.json").is_file()), base_dir)
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError):
        return None


def load_difficulty(path: str | Path) -> Difficulty:
    """A finished profile: its run directory (or its ``difficulty.json``)."""
    p = Path(path).expanduser()
    file = p if p.name == DIFFICULTY_FILE and p.is_file() else p / DIFFICULTY_FILE
    run_dir = file.parent
    if not run_dir.is_dir():
        raise UsageError(f"difficulty profile {path}: no such directory; make one with `harness profile-difficulty`")
    if not file.is_file():
        hint = ("rerun the harness profile-difficulty command that made it, to finish it"
                if (run_dir / "config.json").is_file() else "make one with `harness profile-difficulty`")
        raise UsageError(f"{run_dir} is not a finished difficulty profile (no {DIFFICULTY_FILE}); {hint}")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
        labels = {int(s["index"]): str(s["label"]) for s in doc["samples"]}
        if any(x not in LABELS for x in labels.values()):
            raise ValueError("a label outside easy/medium/hard")
        diff = Difficulty(
            path=run_dir.resolve(), task=str(doc["task"]), settings=dict(doc["settings"]), labels=labels,
            pass_rates={int(s["index"]): float(s["pass_rate"]) for s in doc["samples"]},
            sample_ids={int(s["index"]): str(s["sample_id"]) for s in doc["samples"]},
            failed=tuple(int(f["index"]) for f in doc.get("failed", [])), cost=dict(doc["cost"]),
            fingerprint=str(doc["fingerprint"]), model=str(doc.get("model", "")),
            model_fingerprint=str(doc.get("model_fingerprint", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{file} is damaged ({exc}); delete it and rerun harness profile-difficulty to relabel "
                         "the run from its records") from None
    if diff.fingerprint != labels_fingerprint(diff.task, labels) or sum(diff.counts.values()) != diff.profiled:
        raise UsageError(f"{file} is inconsistent (its labels do not match its fingerprint); delete it and rerun "
                         "harness profile-difficulty to relabel the run from its records")
    return diff


def accepted_outputs(path: str | Path, threshold: float | None = None) -> dict[int, list[str]]:
    """Split index -> the profile's sampled answers that score >= ``threshold`` (default: the
    profile's ``correct_threshold``), for samples with at least one (rejection sampling)."""
    diff = load_difficulty(path)
    cut = float(diff.settings["correct_threshold"] if threshold is None else threshold)
    out: dict[int, list[str]] = {}
    for rec in diff.records():
        if rec["index"] not in diff.labels:  # a failed generation
            continue
        outputs = rec.get("outputs") or [rec.get("output", "")]
        kept = [o for o, s in zip(outputs, rec.get("sample_scores", [])) if float(s) >= cut]
        if kept:
            out[int(rec["index"])] = kept
    return out


def settings_line(settings: dict[str, Any]) -> str:
    return (f"G {settings['num_generations']}, temperature {settings['temperature']:g}, "
            f"top-p {settings['top_p']:g}, seed {settings['seed']}, correct: score >= "
            f"{settings['correct_threshold']:g}")


def counts_table(diff: Difficulty) -> str:
    from leaderboards.table import render_text

    counts, n = diff.counts, diff.profiled
    rows = [(label, str(counts[label]), f"{100 * counts[label] / n:.1f}" if n else "-") for label in LABELS]
    rows.append(("total", str(n), "100.0" if n else "-"))
    return render_text(rows, header=("label", "samples", "%"), right=(1, 2))


__all__ = ["DIFFICULTY_FILE", "LABELS", "Difficulty", "ProfileConfig", "accepted_outputs", "load_difficulty",
           "profile_difficulty", "train_split"]
