"""The crash campaign (issue 13): SIGKILL at seeded points of an eval (pipelined, and serial
with sampling), a difficulty profile, a training run and a paper study; each run is rerun
until it completes and must then equal an uninterrupted run of the same command, with no
file left half-written (tests/crash_driver.py says how points are chosen and checked).

Replay: every kill point is printed as ``[crash] <command> seed <s> kill <i>: threshold <k>
+ <delay> s ...``; ``HARNESS_CRASH_SEED=<base> pytest tests/test_crash_campaign.py -s`` runs
the same points again (the default base is 13).
"""

from __future__ import annotations

import os
import time

import pytest

try:  # tests/ is a plain directory (on sys.path) or a package
    from crash_driver import Command, run_campaign
except ImportError:  # pragma: no cover
    from tests.crash_driver import Command, run_campaign

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("HARNESS_CRASH_SEED", "13"))
QUIET = ("--no_progress",)

EVAL = Command("eval", ("eval", "--model", "tiny", "--tasks", "synth_cls_id,synth_detect_base,synth_ground_id:mc",
                        "--limit", "20", "--batch_size", "4", "--bootstrap", "50", *QUIET), "aggregates.json")
# serial, and sampled: a resumed run must draw the same samples (seeds per batch position)
EVAL_SERIAL = Command("eval_serial", ("eval", "--model", "tiny", "--tasks", "synth_count_id,synth_ground_id",
                                      "--limit", "20", "--batch_size", "4", "--num_workers", "0", "--temperature",
                                      "0.9", "--num_samples", "2", "--bootstrap", "50", *QUIET), "aggregates.json")
PROFILE = Command("profile", ("profile-difficulty", "--model", "tiny", "--task", "synth_cls_train", "--limit", "24",
                              "--num_generations", "4", "--batch_size", "4", *QUIET), "difficulty.json")
TRAIN = Command("train", ("train-and-eval", "--model", "tiny", "--suite", "synth_cls", "--trainers", "grpo",
                          "--max_steps", "4", "--eval_every", "1", "--eval_limit", "8", "--bootstrap", "20", *QUIET),
                "leaderboard.csv")
STUDY = Command("study", ("study", "curr-reft", "--quick", "--model", "tiny", "--suite", "synth_cls", "--methods",
                          "sft,grpo", "--seeds", "0", "--jobs", "1", "--eval_limit", "8", *QUIET),
                "study-curr-reft.json")

# (command, chains): each chain kills a run of the command `kills` times (a rerun killed again
# and again), then reruns it to completion and compares. A chain costs about one run plus a
# start per kill, so the long commands get one chain of many kills, the short ones several.
PLAN = [
    (STUDY, [dict(seed=SEED, kills=6)]),
    (TRAIN, [dict(seed=SEED, kills=6)]),
    (EVAL, [dict(seed=SEED, kills=2), dict(seed=SEED + 1, kills=1, tear=True), dict(seed=SEED + 2, kills=2)]),
    (EVAL_SERIAL, [dict(seed=SEED, kills=1), dict(seed=SEED + 1, kills=1, tear=True), dict(seed=SEED + 2, kills=2)]),
    (PROFILE, [dict(seed=SEED, kills=2, tear=True), dict(seed=SEED + 1, kills=3)]),
]
MIN_KILLS = 20  # of the 27 planned: a rerun that gets past every point left is not killed again


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, tiny_model_dir):
    work = tmp_path_factory.mktemp("crash")
    t0 = time.monotonic()
    # HARNESS_CRASH_EXEC=1: every run as `python -m harness.cli` instead of forked (slower)
    chains = run_campaign(PLAN, work, {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
                          forked=os.environ.get("HARNESS_CRASH_EXEC") != "1")
    kills = sum(len(c.kills) for c in chains)
    print(f"[crash] campaign (base seed {SEED}): {kills} kills in {len(chains)} chains, "
          f"{time.monotonic() - t0:.0f} s")
    return {cmd.name: [c for c in chains if c.command.name == cmd.name] for cmd, _ in PLAN}


@pytest.mark.parametrize("name", [cmd.name for cmd, _ in PLAN])
def test_killed_runs_complete_identical_to_an_uninterrupted_run_with_no_half_written_file(campaign, name):
    problems = [p for chain in campaign[name] for p in chain.problems]
    assert not problems, "\n".join(problems + [c.replay() for c in campaign[name]])


def test_the_campaign_kills_inside_the_work_at_enough_points(campaign):
    chains = [c for cs in campaign.values() for c in cs]
    kills = [k for c in chains for k in c.kills]
    assert len(kills) >= MIN_KILLS, [m for c in chains for m in c.missed]
    assert sum(len(c.kills) >= 2 for c in chains) >= 4  # reruns killed again
    assert any(k.torn for k in kills)


def test_a_temporary_file_of_a_killed_atomic_write_is_removed_by_the_next_write(tmp_path):
    """A SIGKILL between writing a temporary file and renaming it leaves the file behind
    (seen in this campaign: config.json's, a records file's); the next write of the same
    path removes it, and never the temporary file of a writer still alive."""
    import signal
    import subprocess
    import sys

    from harness.atomic import write_text_atomic

    target = tmp_path / "config.json"
    writer = ("import os, sys, time; from harness import atomic; "
              "os.replace = lambda *a: time.sleep(600); atomic.write_text_atomic(sys.argv[1], '{}')")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(target)])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".config.json.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.02)
        (left,) = tmp_path.glob(".config.json.*.tmp")
        write_text_atomic(target, '{"a": 1}')
        assert left.exists()  # its writer is alive: not ours to remove
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    write_text_atomic(target, '{"a": 2}')
    assert not left.exists() and target.read_text() == '{"a": 2}'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
