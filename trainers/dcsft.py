"""DC-SFT (Lu et al., "Why does RL generalize better than SFT?"): SFT on difficulty-curated subsets.

The starting model's difficulty profile (harness/difficulty.py: G sampled answers per
training prompt; easy = all correct, hard = none, medium = mixed) picks the rows; rows,
prompts, targets and loss are exactly ``sft``'s (trainers/sft.py). Trainers:

- ``sft_m``: medium samples only (the paper's SFT-M: mimics RL's implicit filter).
- ``sft_em``: easy + medium (SFT-EM: drops the hard samples; the paper's best OOD).
- ``sft_e``, ``sft_h``: easy only, hard only: the difficulty study (Table 1), with
  ``equalize=true`` so every subset has the size of the smallest one.

Options beyond ``sft``'s (DCSFTConfig): ``difficulty`` (a finished profile run
directory; null: the trainer profiles its own starting model first, into
``<output_dir>/../difficulty/<hash of model weights, split, settings>``, a directory
that sibling trainers of one study share, so sft_m and sft_em profile once),
``profile_samples`` (a seeded subsample of the split after the holdout),
``num_generations``, ``profile_temperature``, ``profile_top_p``, ``correct_threshold``,
``profile`` (scoring protocol), ``equalize``, ``hard_ratio`` (the ablation of Sec. 6.1:
that share of the pool replaced by hard samples), ``subset_size``. With a given
``difficulty`` directory its own settings hold: the profiling options must then be
left at their defaults or match it.

Cost: the profile's generation time and tokens start every run's cost meter
(``TRLTrainer.starting_cost``), so every checkpoint's ``wall_time_s`` and
``generated_tokens`` include them (the paper's Fig. 4 counts "constructing the
difficulty-curated subset" in DC-SFT's time); ``profile_wall_s`` and
``profile_generated_tokens`` say how much. The train log carries TRL's ``grad_norm``
and, per logged step, the share of its rows from each difficulty (``subset/easy``,
``subset/medium``, ``subset/hard``); :func:`plot_grad_norms` draws the gradient norms
of several runs (sft_e, sft_m, sft_h) on one plot (the paper's Fig. 6).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.suite import Suite
from harness.task import stable_rng
from trainers.base import Checkpoint, OnCheckpoint, TrainerConfig
from trainers.sft import SFTTrainer, SFTTrainerConfig
from trainers.trl_run import RunContext, check_model_dir

LABELS = ("easy", "medium", "hard")
#: where a trainer profiles its own model, next to its output_dir (shared by its siblings)
SHARED_DIR = "difficulty"


@dataclass
class DCSFTConfig(SFTTrainerConfig):
    #: a finished `harness profile-difficulty` run directory; null: profile the starting model first
    difficulty: str | None = None
    #: samples of the train split to profile (a seeded subsample after the holdout)
    profile_samples: int = 2000
    #: profiling: G answers per prompt, sampled at this temperature and top-p (the paper: 8, 0.9, 1.0)
    num_generations: int = 8
    profile_temperature: float = 0.9
    profile_top_p: float = 1.0
    #: an answer is correct when the task's primary metric is >= this
    correct_threshold: float = 0.5
    #: protocol profile answers are scored under when profiling (harness.protocol)
    profile: str = "strict"
    #: prompts per generate call when profiling
    profile_batch_size: int = 16
    #: subsample the chosen subset to the size of the smallest of easy / medium / hard (difficulty study)
    equalize: bool = False
    #: ablation: replace this share of the training pool by hard samples (seeded)
    hard_ratio: float | None = None
    #: train on a seeded subsample of this many samples of the chosen subset
    subset_size: int | None = None

    def validate(self) -> None:
        from harness.protocol import get_profile

        super().validate()
        if tuple(self.formats) != ("open",):
            raise UsageError(f"formats {','.join(self.formats)}: DC-SFT trainers train on the open-ended form its "
                             "difficulty was profiled on; use formats=open")
        for key in ("profile_samples", "profile_batch_size"):
            if getattr(self, key) <= 0:
                raise UsageError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.num_generations < 2:
            raise UsageError(f"num_generations must be >= 2 to tell easy, medium and hard apart, got "
                             f"{self.num_generations}")
        if self.profile_temperature <= 0:
            raise UsageError(f"profile_temperature must be > 0 (profiling samples its answers), got "
                             f"{self.profile_temperature}")
        if not 0 < self.profile_top_p <= 1:
            raise UsageError(f"profile_top_p must be in (0, 1], got {self.profile_top_p}")
        if not 0 < self.correct_threshold <= 1:
            raise UsageError(f"correct_threshold must be in (0, 1], got {self.correct_threshold}")
        if self.hard_ratio is not None and not 0 <= self.hard_ratio <= 1:
            raise UsageError(f"hard_ratio must be in [0, 1] or null, got {self.hard_ratio}")
        if self.subset_size is not None and self.subset_size <= 0:
            raise UsageError(f"subset_size must be > 0 or null, got {self.subset_size}")
        get_profile(self.profile)

    def identity(self) -> dict[str, Any]:
        # the labels' fingerprint stands for the profile (trainer identity), not where it lives
        out = super().identity()
        for key in ("difficulty", "profile_batch_size"):
            out.pop(key, None)
        return out


#: profiling options -> the setting of a profile (difficulty.json) they correspond to
PROFILE_KEYS = {"num_generations": "num_generations", "profile_temperature": "temperature",
                "profile_top_p": "top_p", "correct_threshold": "correct_threshold", "profile": "profile"}


def choose_indices(labels: dict[int, str], subset: tuple[str, ...], *, holdout: int = 0, equalize: bool = False,
                   hard_ratio: float | None = None, subset_size: int | None = None, seed: int = 0,
                   what: str = "") -> list[int]:
    """The split indices to train on, in split order: samples labelled with ``subset`` (after
    the holdout), cut to the smallest label's size (``equalize``) and/or ``subset_size``
    (seeded), with ``hard_ratio`` of the result replaced by hard samples (seeded). The size
    is the same with and without ``hard_ratio``, so the ablation changes only the mix."""
    eligible = {i: label for i, label in labels.items() if i >= holdout}
    counts = {label: sum(x == label for x in eligible.values()) for label in LABELS}
    among = f"among {len(eligible)} profiled" + (f" after the holdout of {holdout}" if holdout else "")
    pool = sorted(i for i, label in eligible.items() if label in subset)
    if not pool:
        others = ", ".join(f"{x} {counts[x]}" for x in LABELS if x not in subset)
        raise UsageError(f"{what}no {' or '.join(subset)} samples {among} ({others})")
    if hard_ratio is not None and "hard" in subset:
        raise UsageError(f"{what}hard_ratio mixes hard samples into an easy/medium pool; this subset already holds "
                         f"the hard ones ({'+'.join(subset)})")
    size = len(pool)
    if equalize:
        smallest = min(LABELS, key=lambda x: counts[x])
        if counts[smallest] == 0:
            raise UsageError(f"{what}equalize: no {smallest} samples {among} ({_counts_text(counts)}); every subset "
                             "would be cut to 0")
        size = counts[smallest]
    if subset_size is not None:
        if subset_size > size:
            raise UsageError(f"{what}subset_size {subset_size}: only {size} {'+'.join(subset)} samples {among} "
                             f"({_counts_text(counts)}{', equalized' if equalize else ''})")
        size = subset_size
    n_hard = round((hard_ratio or 0.0) * size)
    hard = sorted(i for i, label in eligible.items() if label == "hard")
    if n_hard > len(hard):
        raise UsageError(f"{what}hard_ratio {hard_ratio}: {n_hard} hard samples needed for a pool of {size}, only "
                         f"{len(hard)} {among} ({_counts_text(counts)})")
    rng = stable_rng("dcsft-subset", seed, "+".join(subset))
    chosen = pool if size - n_hard == len(pool) else rng.sample(pool, size - n_hard)
    if n_hard:
        chosen = chosen + stable_rng("dcsft-hard", seed).sample(hard, n_hard)
    return sorted(chosen)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{x} {counts[x]}" for x in LABELS)


class DCSFTTrainer(SFTTrainer):
    """SFT on the samples of ``subset`` (difficulty labels of the starting model)."""

    name = "sft_m"
    subset: tuple[str, ...] = ("medium",)
    config_class = DCSFTConfig
    presets = {**SFTTrainer.presets,
               # the paper's classification check is a case-insensitive exact match: the dc-sft profile
               "dc-sft": {**SFTTrainer.presets["dc-sft"], "profile": "dc-sft"}}

    def __init__(self) -> None:
        self._fingerprints: dict[Path, str] = {}
        self._chosen: tuple[Any, list[int]] | None = None

    # ---------------------------------------------------------------- checks
    def check(self, suite: Suite | str, config: TrainerConfig) -> Suite:
        suite = super().check(suite, config)
        if config.difficulty is not None:  # given: check it and the subset now, before any model loads
            self.choose(self.given_profile(suite, config), config)
        return suite

    def given_profile(self, suite: Suite, config: DCSFTConfig):
        from harness.difficulty import load_difficulty

        diff = load_difficulty(config.difficulty)
        if diff.task != suite.train:
            raise UsageError(f"difficulty {config.difficulty} profiles {diff.task}, but suite {suite.name!r} trains "
                             f"on {suite.train}; profile that split (harness profile-difficulty --task {suite.name})")
        # the given profile's settings hold: a profiling option set to something else would be ignored
        defaults = DCSFTConfig()
        for key, setting in PROFILE_KEYS.items():
            value, recorded = getattr(config, key), diff.settings.get(setting)
            if value != recorded and value != getattr(defaults, key):
                raise UsageError(f"{self.name}: {key}={value}, but difficulty {config.difficulty} was profiled with "
                                 f"{setting} {recorded}; drop {key}, or drop difficulty to profile with it")
        return diff

    def choose(self, diff: Any, config: DCSFTConfig) -> list[int]:
        return choose_indices(diff.labels, self.subset, holdout=config.holdout, equalize=config.equalize,
                              hard_ratio=config.hard_ratio, subset_size=config.subset_size, seed=config.seed,
                              what=f"{self.name}: ")

    # ------------------------------------------------------------- profiling
    def fingerprint(self, model_path: Path) -> str:
        from harness.backends.hf import weights_fingerprint

        if model_path not in self._fingerprints:
            self._fingerprints[model_path] = weights_fingerprint(model_path)
        return self._fingerprints[model_path]

    def profile_config(self, model_path: Path, suite: Suite, config: DCSFTConfig):
        """The profile of the starting model this trainer makes (and its siblings share)."""
        from harness.difficulty import ProfileConfig

        device = config.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        model_args: dict[str, Any] = {}
        if device != "cpu":
            model_args["device"] = device
        if config.dtype != "float32":
            model_args["dtype"] = config.dtype
        if config.threads != 1:
            model_args["threads"] = config.threads
        cfg = ProfileConfig(model=str(model_path), task=suite.train, num_generations=config.num_generations,
                            temperature=config.profile_temperature, top_p=config.profile_top_p, seed=config.seed,
                            subsample=config.profile_samples, holdout=config.holdout,
                            correct_threshold=config.correct_threshold, batch_size=config.profile_batch_size,
                            model_args=model_args, profile=config.profile, progress=config.progress)
        key = json.dumps({"model": self.fingerprint(model_path), "settings": cfg.settings(), "model_args": model_args},
                         sort_keys=True)
        out = Path(config.output_dir).expanduser().resolve().parent / SHARED_DIR
        cfg.output_path = str(out / hashlib.sha256(key.encode()).hexdigest()[:12])
        return cfg

    def difficulty_of(self, model_path: Path, suite: Suite, config: DCSFTConfig):
        from harness.difficulty import load_difficulty, profile_difficulty

        if config.difficulty is not None:
            diff = self.given_profile(suite, config)
            full_model = (model_path / "config.json").is_file()
            if full_model and diff.model_fingerprint not in ("", self.fingerprint(model_path)):
                print(f"{self.name}: warning: difficulty {config.difficulty} was profiled with other weights "
                      f"({diff.model}) than the model trained here ({model_path})", file=sys.stderr)
            return diff
        return load_difficulty(profile_difficulty(self.profile_config(model_path, suite, config)))

    # -------------------------------------------------------------- training
    def train(self, model_dir: str, suite: Suite | str, config: TrainerConfig,
              on_checkpoint: OnCheckpoint | None = None) -> list[Checkpoint]:
        suite = self.check(suite, config)
        model_path = check_model_dir(model_dir)
        diff = self.difficulty_of(model_path, suite, config)
        self._chosen = (diff, self.choose(diff, config))
        return super().train(model_dir, suite, config, on_checkpoint)

    def _profile(self):
        if self._chosen is None:
            raise RuntimeError("DC-SFT trainer used before train() chose its samples")
        return self._chosen

    def identity(self, model_dir: Path, suite: Suite, config: Any) -> dict[str, Any]:
        diff, _ = self._profile()
        return {**super().identity(model_dir, suite, config), "difficulty": diff.fingerprint}

    def train_indices(self, config: Any) -> list[int] | None:
        return list(self._profile()[1])

    def starting_cost(self, config: Any) -> dict[str, Any]:
        cost = self._profile()[0].cost
        wall, tokens = float(cost.get("wall_s") or 0.0), cost.get("generated_tokens")
        out: dict[str, Any] = {"wall_time_s": wall, "profile_wall_s": wall,
                               "profile_completions": int(cost.get("completions") or 0)}
        if tokens is not None:  # unknown (a remote model's tokenizer): not counted rather than guessed
            out.update(generated_tokens=int(tokens), profile_generated_tokens=int(tokens))
        return out

    def build(self, model: Any, dataset: Any, args: dict[str, Any], ctx: RunContext) -> Any:
        trainer = super().build(model, dataset, args, ctx)
        diff, _ = self._profile()
        trainer.add_callback(subset_log(ctx.rows.order, diff.labels, self.rows_per_step(ctx.config)))
        return trainer


def subset_log(order: list[int], labels: dict[int, str], rows_per_step: int):
    """A callback adding, to each logged step, the share of its rows from each difficulty
    (``subset/<label>``): added before the harness's log callback, which writes the line."""
    from transformers import TrainerCallback

    class SubsetLog(TrainerCallback):
        def __init__(self) -> None:
            self.last = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = state.global_step  # a resumed run logs from its checkpoint on

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "train_runtime" in logs:
                return
            rows = order[self.last * rows_per_step: state.global_step * rows_per_step]
            self.last = state.global_step
            if rows:
                for label in LABELS:
                    logs[f"subset/{label}"] = sum(labels.get(i) == label for i in rows) / len(rows)

    return SubsetLog()


class SFTEMTrainer(DCSFTTrainer):
    name = "sft_em"
    subset = ("easy", "medium")


class SFTETrainer(DCSFTTrainer):
    name = "sft_e"
    subset = ("easy",)


class SFTHTrainer(DCSFTTrainer):
    name = "sft_h"
    subset = ("hard",)


TRAINERS = {t.name: t for t in (DCSFTTrainer, SFTEMTrainer, SFTETrainer, SFTHTrainer)}


def plot_grad_norms(runs: dict[str, str | Path], out: str | Path, title: str = "gradient norm per subset") -> Path:
    """One plot of ``grad_norm`` against step for several training runs (label -> output_dir),
    e.g. sft_e / sft_m / sft_h of a difficulty study (the paper's Fig. 6)."""
    from trainers.plots import _pyplot, _save, _series
    from trainers.train_log import LOG_FILE, read_log

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    drawn = 0
    for label, run_dir in runs.items():
        xs, ys = _series(read_log(Path(run_dir) / LOG_FILE), "grad_norm")
        if xs:
            ax.plot(xs, ys, label=label, linewidth=1)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise UsageError(f"no grad_norm in the training logs of {', '.join(map(str, runs.values()))}")
    ax.set_xlabel("step")
    ax.set_ylabel("grad norm")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, Path(out), plt)


__all__ = ["DCSFTConfig", "DCSFTTrainer", "SFTEMTrainer", "SFTETrainer", "SFTHTrainer", "choose_indices",
           "plot_grad_norms"]
