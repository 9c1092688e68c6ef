"""DC-SFT trainers (trainers/dcsft.py): which samples they train on, their checks, and a short run.

The index selection (subset, holdout, equalize, subset_size, hard_ratio) is tested on
label maps without a model; the checks on hand-written profiles; one tiny-model run
profiles its own starting model (16 samples, G 4), trains sft_m 2 steps on the medium
samples only, and a sibling sft_em reuses the profile.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.difficulty import DIFFICULTY_FILE, labels_fingerprint  # noqa: E402
from harness.errors import HarnessError, UsageError  # noqa: E402
from trainers import get_trainer, load_config  # noqa: E402
from trainers.dcsft import choose_indices  # noqa: E402

SPLIT = "synth_cls_train"


def label_map(easy: int, medium: int, hard: int, start: int = 0) -> dict[int, str]:
    """Consecutive indices from ``start``: ``easy`` easy ones, then medium, then hard."""
    labels = ["easy"] * easy + ["medium"] * medium + ["hard"] * hard
    return {start + i: label for i, label in enumerate(labels)}


# ------------------------------------------------------------------ index selection


def test_subsets_pick_their_labels_after_the_holdout():
    labels = label_map(30, 50, 20)
    assert choose_indices(labels, ("medium",)) == list(range(30, 80))
    assert choose_indices(labels, ("easy", "medium")) == list(range(80))
    assert choose_indices(labels, ("hard",)) == list(range(80, 100))
    assert choose_indices(labels, ("easy",), holdout=10) == list(range(10, 30))  # the holdout is never trained on


def test_equalize_cuts_every_subset_to_the_smallest():
    labels = label_map(30, 50, 20)
    picked = {s: choose_indices(labels, (s,), equalize=True, seed=0) for s in ("easy", "medium", "hard")}
    assert {s: len(v) for s, v in picked.items()} == {"easy": 20, "medium": 20, "hard": 20}
    assert set(picked["medium"]) <= set(range(30, 80)) and picked["medium"] == sorted(picked["medium"])
    assert picked["medium"] == choose_indices(labels, ("medium",), equalize=True, seed=0)  # seeded
    assert picked["medium"] != choose_indices(labels, ("medium",), equalize=True, seed=1)
    assert len(choose_indices(labels, ("easy", "medium"), equalize=True)) == 20


def test_hard_ratio_replaces_a_share_of_the_pool():
    labels = label_map(40, 40, 30)
    for ratio, n_hard in ((0.0, 0), (0.05, 4), (0.25, 20)):
        picked = choose_indices(labels, ("easy", "medium"), hard_ratio=ratio, seed=3)
        assert len(picked) == 80 and Counter(labels[i] for i in picked)["hard"] == n_hard
    # the same pool size with and without hard samples, so only the mix changes
    picked = choose_indices(labels, ("easy", "medium"), hard_ratio=0.25, subset_size=40, seed=3)
    assert len(picked) == 40 and Counter(labels[i] for i in picked)["hard"] == 10
    assert picked == choose_indices(labels, ("easy", "medium"), hard_ratio=0.25, subset_size=40, seed=3)
    with pytest.raises(UsageError, match=r"hard_ratio 0.5: 40 hard samples needed for a pool of 80, only 30"):
        choose_indices(labels, ("easy", "medium"), hard_ratio=0.5)
    with pytest.raises(UsageError, match="already holds the hard ones"):
        choose_indices(labels, ("hard",), hard_ratio=0.1)


def test_subset_size_and_empty_subsets_are_explained():
    labels = label_map(1900, 0, 100)
    with pytest.raises(UsageError, match=r"sft_m: no medium samples among 2000 profiled \(easy 1900, hard 100\)"):
        choose_indices(labels, ("medium",), what="sft_m: ")
    with pytest.raises(UsageError, match=r"equalize: no medium samples among 2000 profiled"):
        choose_indices(labels, ("easy",), equalize=True)
    with pytest.raises(UsageError, match=r"subset_size 200: only 100 hard samples"):
        choose_indices(labels, ("hard",), subset_size=200)
    assert len(choose_indices(labels, ("easy",), subset_size=64)) == 64
    with pytest.raises(UsageError, match="after the holdout of 2000"):
        choose_indices(labels, ("easy",), holdout=2000)


# ------------------------------------------------------------------ configs and checks


def write_profile(path: Path, labels: dict[int, str], task: str = SPLIT, **settings) -> Path:
    """A difficulty.json as harness profile-difficulty writes it (no records: enough for checks)."""
    path.mkdir(parents=True)
    doc = {
        "version": 1, "task": task, "model": "m", "model_fingerprint": "",
        "settings": {"task": task, "num_generations": 8, "temperature": 0.9, "top_p": 1.0, "seed": 0, "limit": None,
                     "subsample": len(labels), "holdout": 0, "correct_threshold": 0.5, "profile": "strict",
                     "batch_size": 16, "max_new_tokens": None, **settings},
        "counts": {**Counter(labels.values()), "profiled": len(labels), "failed": 0},
        "cost": {"wall_s": 12.5, "generated_tokens": 1000, "prompts": len(labels), "completions": 8 * len(labels)},
        "fingerprint": labels_fingerprint(task, labels),
        "samples": [{"index": i, "sample_id": f"{i:06d}", "pass_rate": 0.5, "label": x} for i, x in labels.items()],
        "failed": [],
    }
    (path / DIFFICULTY_FILE).write_text(json.dumps(doc))
    return path


def check(trainer: str, tmp_path: Path, *sets: str, suite: str = "synth_cls"):
    config = load_config(trainer, overrides=list(sets), output_dir=str(tmp_path / "train" / trainer))
    return get_trainer(trainer).check(suite, config)


@pytest.mark.parametrize("sets, message", [
    (["num_generations=1"], "num_generations must be >= 2"),
    (["profile_temperature=0"], "profile_temperature must be > 0"),
    (["correct_threshold=1.5"], r"correct_threshold must be in \(0, 1\]"),
    (["hard_ratio=1.5"], r"hard_ratio must be in \[0, 1\]"),
    (["subset_size=0"], "subset_size must be > 0"),
    (["profile_samples=0"], "profile_samples must be > 0"),
    (["formats=open,mc"], "formats open,mc: DC-SFT trainers train on the open-ended form"),
    (["profile=nope"], "unknown protocol profile 'nope'"),
])
def test_bad_options_are_refused_before_any_model(tmp_path, sets, message):
    with pytest.raises(HarnessError, match=message):
        check("sft_m", tmp_path, *sets)


def test_given_profiles_are_checked(tmp_path):
    with pytest.raises(UsageError, match="no such directory"):
        check("sft_m", tmp_path, f"difficulty={tmp_path / 'missing'}")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="not a finished difficulty profile"):
        check("sft_m", tmp_path, f"difficulty={tmp_path / 'unfinished'}")
    other = write_profile(tmp_path / "count", label_map(5, 5, 5), task="synth_count_train")
    with pytest.raises(UsageError, match="profiles synth_count_train, but suite 'synth_cls' trains on synth_cls_train"):
        check("sft_m", tmp_path, f"difficulty={other}")
    easy_only = write_profile(tmp_path / "easy", label_map(1900, 0, 100))
    with pytest.raises(UsageError, match=r"no medium samples among 2000 profiled \(easy 1900, hard 100\)"):
        check("sft_m", tmp_path, f"difficulty={easy_only}")
    assert check("sft_em", tmp_path, f"difficulty={easy_only}").train == SPLIT
    with pytest.raises(UsageError, match="num_generations=4, but difficulty .* was profiled with num_generations 8"):
        check("sft_em", tmp_path, f"difficulty={easy_only}", "num_generations=4")


def test_run_identity_names_the_labels_not_the_profile_path(tmp_path):
    config = load_config("sft_m", overrides=[f"difficulty={tmp_path}", "profile_batch_size=4"],
                         output_dir=str(tmp_path / "o"))
    identity = config.identity()
    assert "difficulty" not in identity and "profile_batch_size" not in identity
    assert identity["num_generations"] == 8 and identity["equalize"] is False


# ------------------------------------------------------------------ a short run


@pytest.mark.slow
def test_sft_m_trains_on_medium_samples_and_pays_for_profiling(tmp_path, tiny_model_dir, no_git, monkeypatch):
    import trainers.trl_run as trl_run
    from harness.difficulty import load_difficulty
    from trainers.train_log import read_log

    used: list[list[int]] = []

    class SpyRows(trl_run.TrainRows):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            used.append(list(self.order))

    monkeypatch.setattr(trl_run, "TrainRows", SpyRows)
    sets = ["max_steps=2", "save_steps=2", "batch_size=4", "profile_samples=16", "num_generations=4",
            "holdout=100", "progress=false"]
    config = load_config("sft_m", overrides=sets, output_dir=str(tmp_path / "train" / "sft_m"))
    checkpoints = get_trainer("sft_m").train(tiny_model_dir, "synth_cls", config)

    (profile_dir,) = (tmp_path / "train" / "difficulty").iterdir()  # shared by the study's DC-SFT trainers
    diff = load_difficulty(profile_dir)
    assert diff.profiled == 16 and min(diff.labels) >= 100 and diff.counts["medium"] > 0
    assert used and len(used[0]) == 8 and set(used[0]) <= set(diff.indices("medium"))
    cost = checkpoints[-1].cost
    assert cost["optimizer_steps"] == 2 and checkpoints[-1].step == 2
    assert cost["profile_wall_s"] == diff.cost["wall_s"] > 0
    assert cost["wall_time_s"] > cost["profile_wall_s"]
    assert cost["generated_tokens"] == cost["profile_generated_tokens"] == diff.cost["generated_tokens"] >= 64
    rows = read_log(tmp_path / "train" / "sft_m" / "train_log.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["subset/medium"] == 1.0 and r["subset/hard"] == 0.0 and r["grad_norm"] > 0 for r in rows)
    trainer_json = json.loads((tmp_path / "train" / "sft_m" / "trainer.json").read_text())
    assert trainer_json["difficulty"] == diff.fingerprint

    # a sibling of the same study reuses the profile: no second profile, no model loaded to profile
    def no_profile(*a, **k):
        raise AssertionError("profiled again")

    monkeypatch.setattr("harness.evaluator.run_eval", no_profile)
    sibling = load_config("sft_em", overrides=[s.replace("sft_m", "sft_em") for s in sets],
                          output_dir=str(tmp_path / "train" / "sft_em"))
    checkpoints = get_trainer("sft_em").train(tiny_model_dir, "synth_cls", sibling)
    assert set(used[-1]) <= set(diff.indices("easy", "medium"))
    assert checkpoints[-1].cost["profile_wall_s"] == diff.cost["wall_s"]
    assert len(list((tmp_path / "train" / "difficulty").iterdir())) == 1
