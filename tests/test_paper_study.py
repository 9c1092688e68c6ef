"""harness study curr-reft|dc-sft: checks before any model loads, checkpoint selection, and both quick studies
end to end in one directory (what CI runs), resumed by a rerun."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from harness.errors import UnknownName, UsageError  # noqa: E402
from harness.paper_study import PaperStudyConfig, choose, prepare  # noqa: E402


def test_selection_takes_the_best_validation_score_and_the_later_checkpoint_on_ties():
    assert choose([(100, 0.5), (200, 0.7), (300, 0.6)], "val") == (200, "best id-val of 3")
    assert choose([(100, 0.7), (200, 0.7)], "val") == (200, "best id-val of 2")
    assert choose([(100, 0.9), (200, 0.1)], "last") == (200, "last checkpoint")


@pytest.mark.parametrize("changes, error, message", [
    ({"seeds": ()}, UsageError, "--seeds"),
    ({"seeds": (0, 0)}, UsageError, "distinct seeds"),
    ({"methods": ("sft", "dpo")}, UsageError, "dpo not in the curr-reft study"),
    ({"methods": ("rs_sft",)}, UsageError, "rs_sft trains after curr_rl"),
    ({"val_size": 10**9}, UsageError, "leaves nothing"),
    ({"select": "best"}, UsageError, "--select"),
    ({"suite": "nope"}, UnknownName, "nope"),
    ({"paper": "visual-rft"}, UsageError, "unknown study"),
    ({"overrides": ["grpo.num_generations=1"]}, UsageError, "num_generations must be >= 2"),
])
def test_bad_settings_fail_before_any_model_loads(changes, error, message, tmp_path):
    cfg = PaperStudyConfig(**{"paper": "curr-reft", "output_path": str(tmp_path / "s"), **changes})
    with pytest.raises(error, match=message):
        prepare(cfg)
    assert not (tmp_path / "s").exists()


def _table_rows(md: str) -> dict[str, list[str]]:
    """Rows of the first table (the leaderboard), by their first cell."""
    rows: dict[str, list[str]] = {}
    for line in md.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("| ") and not line.startswith("| row") and not line.startswith("|--"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_quick_studies_of_both_papers_share_a_directory_and_resume(tmp_path):
    from harness.cli import main

    root = tmp_path / "study"
    common = ["--model", "tiny", "--suite", "synth_cls", "--quick", "--output_path", str(root), "--no_progress"]
    assert main(["study", "curr-reft", *common]) == 0
    md = (root / "study-curr-reft.md").read_text()
    rows = _table_rows(md)
    assert {"base", "sft", "grpo", "curr_rl", "rs_sft"} <= set(rows), rows.keys()
    assert "MDD (80 % power)" in rows
    header = next(line for line in md.splitlines() if line.startswith("| row"))
    assert "selected by" in header and "seeds" in header and "wall time" in header
    for method in ("sft", "grpo", "curr_rl", "rs_sft"):
        assert "2 (0/1)" in rows[method], rows[method]  # both seeds in one row
        assert "best id-val of" in " ".join(rows[method])
        assert re.search(r"seeds [\d.]+ / [\d.]+", " ".join(rows[method]))
    assert "## Train/test overlap" in md and "## Cost" in md
    paired = md[md.index("## Differences from SFT (paired 95 % CIs)"):md.index("## Cost")]
    assert re.search(r"\| GRPO \| [+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", paired), paired
    for seed in (0, 1):  # RS-SFT sampled from Curr-RL's final checkpoint of its own seed
        config = (root / "train" / "rs_sft" / f"seed-{seed}" / "samples" / "config.json").read_text()
        assert f"curr_rl/seed-{seed}/checkpoints/step-" in config
    sft_ckpt = root / "train" / "sft" / "seed-0" / "checkpoints" / "step-000004" / "harness_checkpoint.json"
    trained_at = sft_ckpt.stat().st_mtime_ns

    assert main(["study", "dc-sft", *common]) == 0
    dc = (root / "study-dc-sft.md").read_text()
    rows = _table_rows(dc)
    assert {"base", "sft", "grpo", "sft_m", "sft_em", "sft_e_eq", "sft_m_eq", "sft_h_eq"} <= set(rows), rows.keys()
    assert sft_ckpt.stat().st_mtime_ns == trained_at  # shared methods are not trained again
    counts = dict(re.findall(r"\| (easy|medium|hard) \| (\d+) \|", dc))
    assert sum(int(v) for v in counts.values()) == 48, counts  # every profiled prompt has one label
    assert "include the difficulty profiling" in dc

    again = main(["study", "curr-reft", *common])  # a finished study: nothing retrained, the same tables
    assert again == 0 and (root / "study-curr-reft.md").read_text() == md
    other_suite = [a if a != "synth_cls" else "synth_count" for a in common]
    assert main(["study", "curr-reft", *other_suite]) == 2  # one line: a study with a different suite is there


def test_a_study_directory_refuses_different_shared_settings(tmp_path):
    from harness.paper_study import _check_study_file

    plan = prepare(PaperStudyConfig(paper="curr-reft", quick=True, output_path=str(tmp_path / "s")))
    plan.root.mkdir(parents=True)
    _check_study_file(plan)
    other = prepare(PaperStudyConfig(paper="dc-sft", quick=True, output_path=str(tmp_path / "s")))
    _check_study_file(other)  # the other paper on the same settings: fine
    changed = prepare(PaperStudyConfig(paper="curr-reft", quick=True, val_size=16, output_path=str(tmp_path / "s")))
    with pytest.raises(UsageError, match="different val_size"):
        _check_study_file(changed)
    assert Path(plan.root / "study.json").is_file()
