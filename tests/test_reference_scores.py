"""The shipped tiny model scores exactly the committed reference numbers.

Any change to prompts, parsing, scoring, aggregation, the synthetic data or the model
shows up here. When such a change is intended, regenerate the reference and commit it
with the change (README's score table comes from the full, 300-per-split eval):

    harness eval --model tiny --tasks synth --limit 30 --bootstrap 200 --output_path /tmp/ref --overwrite
    harness regress /tmp/ref --baseline tests/reference/tiny_synth_limit30.json --write
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

REFERENCE = Path(__file__).parent / "reference" / "tiny_synth_limit30.json"
ARGS = ["--model", "tiny", "--tasks", "synth", "--limit", "30", "--bootstrap", "200", "--no_progress"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_git")]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["eval", *ARGS, "--output_path", str(out)]) == 0
    return out


def test_shipped_model_is_intact_and_is_the_current_recipe():
    from harness.models.embedded import SHIPPED_TINY, SyntheticTinyData, check_shipped
    from harness.models.tiny import SHIPPED_WEIGHTS, TinyRecipe

    info = check_shipped()
    # a recipe change without `harness build-tiny --ship` would leave a stale model shipped
    assert info["shipped"]["recipe_key"] == TinyRecipe().key(SyntheticTinyData().version)
    assert (SHIPPED_TINY / SHIPPED_WEIGHTS).stat().st_size < 5 * 2**20


def test_scores_equal_the_committed_reference_exactly(reference_run):
    from leaderboards.regress import baseline_from_run, open_run, read_baseline

    reference = read_baseline(REFERENCE)
    now = baseline_from_run(open_run(reference_run), reference_run)
    assert now["model_fingerprint"] == reference["model_fingerprint"]
    for task, expected in reference["tasks"].items():
        assert now["tasks"][task] == expected, task
    assert set(now["tasks"]) == set(reference["tasks"])


def test_regress_passes_on_an_honest_rerun_and_fails_on_a_doctored_one(reference_run, tmp_path, capsys):
    assert main(["regress", str(reference_run), "--baseline", str(REFERENCE), "--tolerance", "0"]) == 0
    doctored = tmp_path / "doctored"
    shutil.copytree(reference_run, doctored)
    aggregates = json.loads((doctored / "aggregates.json").read_text())
    cls = next(a for a in aggregates if a["task"] == "synth_cls_id")
    cls["metrics"]["acc"]["value"] -= 0.2  # a 20-point drop, far outside its CI
    (doctored / "aggregates.json").write_text(json.dumps(aggregates))
    capsys.readouterr()
    assert main(["regress", str(doctored), "--baseline", str(REFERENCE)]) == 1
    assert "FAIL" in capsys.readouterr().out
