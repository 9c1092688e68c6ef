"""A crash campaign's driver: run a harness command, SIGKILL it at seeded points, rerun it
until it completes, and compare what it left with an uninterrupted run of the same command.

Kill points are counted in *progress events*, not seconds, so a seed names the same point
on a slow and a fast machine: the progress of a run directory is the number of files and
directories in it plus the number of lines of its ``*.jsonl`` files (records, training
logs), so every record batch, log line, checkpoint file and result file moves it. The
reference run is watched while it runs; each kill threshold is drawn (seeded) from the
progress values it went through before its last file appeared, and the killed run is
SIGKILLed once its own progress reaches the threshold; half of the kills wait a seeded part
of the time the reference took to its next value (so kills also land between events:
mid-step, mid-save). A rerun may be killed again (a chain of kills); the last rerun runs to
completion.

Commands run as ``python -m harness.cli ...`` (``exec``) or, to spare the 7 s import of
torch, transformers and TRL per start, forked from a server process that imported them
once (``fork``): the forked child calls the same ``harness.cli.console`` entry point in its
own session, with its own working directory and output files, and is SIGKILLed the same way.

After every kill (before the rerun) and after the completed rerun, :func:`integrity` scans
the tree for half-written files; :func:`compare_trees` compares the completed run with the
reference. Each kill point is printed (``[crash] <command> seed <s> kill <i>: threshold ...``,
and in a failure's message): a chain's seed gives the same progress thresholds on any machine
(unless the reference's last long-held value moves, see :func:`run_chain`); delays follow the
reference's timing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: fields that measure wall time, dropped before comparing (everything else must be equal):
#: a record's generation latency, a checkpoint's / training log's / profile's / study job's
#: elapsed seconds (the leaderboards' ``wall_s`` column is the checkpoint's ``wall_time_s``)
#: (and the size of TRL's trainer_state.json among a checkpoint's resume files: its log
#: history holds each step's ``step_time``, so its length varies with the digits of those)
WALL_CLOCK = frozenset({"latency_s", "wall_s", "wall_time_s", "step_time", "seconds"})
#: files that are not results: when and by which command line a run was made
NOT_RESULTS = frozenset({"provenance.json"})
#: names of temporary files and directories (harness/atomic.py: ``.<name>.<random>.tmp``;
#: trainers/plots.py: ``.<name>.tmp.png``; trainers/run_dir.py, curr_rl.py, trl_run.py:
#: ``.tmp-<name>``; harness/rundir.py --overwrite: ``.<name>.deleting-<pid>``)
TEMPORARY = re.compile(r"^\..*(\.tmp$|\.tmp\.png$|\.deleting-\d+$)|^\.tmp-")
#: TRL's resume state directory and where trainers/run_dir.py moves a torn one aside
TRL_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
INCOMPLETE = "incomplete"

#: imported once by the fork server (tests/crash_preload.py)
PRELOAD = ["crash_preload"]


def say(text: str) -> None:
    print(f"[crash] {text}", flush=True)


# ----- progress ------------------------------------------------------------------------------------

def progress(root: Path) -> int:
    """Files and directories under ``root`` plus the lines of its ``*.jsonl`` files."""
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        n += len(dirnames) + len(filenames)
        for name in filenames:
            if name.endswith(".jsonl"):
                try:
                    with open(os.path.join(dirpath, name), "rb") as f:
                        n += f.read().count(b"\n")
                except OSError:  # renamed away meanwhile
                    pass
    return n


def describe(root: Path) -> str:
    """What a killed run left, in one line: record and log lines, published checkpoints,
    finished evals, debris (temporary files, unpublished TRL checkpoints)."""
    if not root.exists():
        return "nothing"
    parts = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.suffix == ".jsonl":
            data = p.read_bytes()
            lines, torn = data.count(b"\n"), bool(data) and not data.endswith(b"\n")
            parts.append(f"{rel}:{lines}{'+torn' if torn else ''}")
        elif p.is_dir() and p.name.startswith("step-") and p.parent.name == "checkpoints":
            parts.append(rel)
        elif p.name in ("aggregates.json", "difficulty.json", "leaderboard.csv") or p.name.startswith("study-"):
            parts.append(rel)
        elif TEMPORARY.match(p.name):
            parts.append(f"{rel} (temporary)")
        elif p.is_dir() and TRL_CHECKPOINT.match(p.name) and not _published(p):
            parts.append(f"{rel} (unpublished)")
    return "; ".join(parts) or "an empty directory"


def _published(trl_dir: Path) -> bool:
    m = TRL_CHECKPOINT.match(trl_dir.name)
    return bool(m) and (trl_dir.parent / "checkpoints" / f"step-{int(m.group(1)):06d}").is_dir()


# ----- starting and killing commands ---------------------------------------------------------------

def _run_cli(argv: list[str], cwd: str, log: str, env: dict[str, str]) -> None:
    """A forked command: what ``harness ARGV`` does, in its own session (so its helpers can
    be found by process group), its output in ``log``, dying with the server that forked it."""
    os.setsid()
    from harness.children import die_with_parent

    die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.pop("PYTHONPATH", None)  # the server's own (Launcher._start_server); env has the caller's
    os.environ.update(env)
    sys.argv = ["harness", *argv]
    from harness.cli import console

    console()


class Proc:
    """A started command: ``pid``, ``poll()``, ``wait()`` and ``kill()`` (SIGKILL to the
    command's own process only: its helpers must die with it by themselves)."""

    def __init__(self, handle: Any, forked: bool) -> None:
        self.handle, self.forked = handle, forked
        self.pid: int = handle.pid

    def poll(self) -> int | None:
        if self.forked:
            return None if self.handle.is_alive() else self.handle.exitcode
        return self.handle.poll()

    def wait(self, timeout: float) -> int | None:
        if self.forked:
            self.handle.join(timeout)
            return self.handle.exitcode
        try:
            return self.handle.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


class Launcher:
    """Starts harness commands, forked from a preloaded server or as ``python -m harness.cli``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}), **env}
        self._ctx = None

    def start(self, argv: list[str], log: Path, forked: bool = True) -> Proc:
        if forked:
            if self._ctx is None:
                self._start_server()
            p = self._ctx.Process(target=_run_cli, args=(argv, str(REPO), str(log), self.env), daemon=False)
            p.start()
            return Proc(p, True)
        with open(log, "ab") as f:
            p = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=REPO, env={**os.environ, **self.env},
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        return Proc(p, False)

    def _start_server(self) -> None:
        from multiprocessing import forkserver

        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        # the server imports PRELOAD with the sys.path its interpreter starts with: tests/ on it
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), *([old] if old else [])])
        try:
            forkserver.ensure_running()
        finally:
            if old is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = old

    def close(self) -> None:
        if self._ctx is not None:
            from multiprocessing import forkserver

            forkserver._forkserver._stop()
            self._ctx.set_forkserver_preload([])  # a later user of the fork server starts it bare
            self._ctx = None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def wait_for_group(pgid: int, timeout: float = 15.0) -> list[int]:
    """Wait until nothing of the group is left; returns the survivors (then SIGKILLed)."""
    deadline = time.monotonic() + timeout
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# ----- a command, its reference run and its kill chains ----------------------------------------------

@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]  # after `harness`, without --output_path
    done: str  # the file a finished run writes last (its existence: the work is over)
    timeout: float = 300.0

    def argv(self, out: Path) -> list[str]:
        return [*self.args, "--output_path", str(out)]


@dataclass
class Reference:
    root: Path
    seconds: float
    #: progress values the run went through before its last file appeared (kill thresholds),
    #: each with the seconds until the next one
    values: list[int]
    gaps: dict[int, float]


@dataclass
class Kill:
    index: int
    threshold: int
    delay: float
    at_progress: int = -1
    seconds: float = 0.0
    left: str = ""
    torn: str = ""
    problems: list[str] = field(default_factory=list)


@dataclass
class Chain:
    command: Command
    seed: int
    root: Path
    kills: list[Kill] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def label(self) -> str:
        return f"{self.command.name} seed {self.seed}"

    def replay(self) -> str:
        """The chain's kill points, for a failure message."""
        lines = [f"{self.label()}: harness {' '.join(self.command.argv(self.root))}"]
        lines += [f"  kill {k.index}: progress >= {k.threshold}, then {k.delay} s; killed at {k.seconds} s, "
                  f"progress {k.at_progress}; left: {k.left[:500]}" + (f"; torn: {k.torn}" if k.torn else "")
                  for k in self.kills]
        return "\n".join(lines + [f"  missed: {m}" for m in self.missed])


def _log_tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_reference(cmd: Command, root: Path, launcher: Launcher, forked: bool = True) -> Reference:
    log = root.with_name(root.name + ".log")
    t0 = time.monotonic()
    proc = launcher.start(cmd.argv(root), log, forked)
    seen: dict[int, float] = {}  # progress value -> when it was first seen
    while proc.poll() is None:
        value = progress(root) if root.exists() else 0
        if not (root / cmd.done).exists():
            seen.setdefault(value, time.monotonic())
        if time.monotonic() - t0 > cmd.timeout:
            proc.kill()
            raise AssertionError(f"{cmd.name}: the reference run took over {cmd.timeout:.0f} s\n{_log_tail(log)}")
        time.sleep(0.03)
    seconds = time.monotonic() - t0
    if proc.poll() != 0:
        raise AssertionError(f"{cmd.name}: the reference run failed (exit {proc.poll()})\n{_log_tail(log)}")
    seen.pop(0, None)
    values = sorted(seen)
    gaps = {v: round(seen[w] - seen[v], 3) for v, w in zip(values, values[1:])}
    say(f"{cmd.name}: reference in {seconds:.1f} s, progress {min(values, default=0)}..{progress(root)}")
    return Reference(root, seconds, values, gaps)


def tear_last_line(root: Path) -> str:
    """Cut the last line of the most recently written ``*.jsonl`` in half: what a SIGKILL in
    the middle of a multi-page write leaves (a kill of a small append never does)."""
    files = [p for p in root.rglob("*.jsonl") if p.stat().st_size and INCOMPLETE not in p.parts]
    if not files:
        return ""
    path = max(files, key=lambda p: (p.stat().st_mtime_ns, str(p)))
    data = path.read_bytes()
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1
    cut = start + (len(body) - start) // 2
    with open(path, "r+b") as f:
        f.truncate(cut)
    return f"{path.relative_to(root)}: last line cut to {cut - start} of {len(body) - start} bytes"


def run_chain(cmd: Command, ref: Reference, root: Path, seed: int, kills: int, launcher: Launcher,
              forked: bool = True, tear: bool = False) -> Chain:
    """Kill a run of ``cmd`` ``kills`` times at seeded points (fewer when a rerun finishes
    first: ``missed``), then rerun it to completion. With ``tear``, the first kill that left a
    JSONL line also has that line cut in half. Problems are collected, not raised."""
    rng = random.Random(f"{cmd.name}/{seed}")
    chain = Chain(cmd, seed, root)
    log = root.with_name(root.name + ".log")
    t_chain = time.monotonic()
    for i in range(kills):
        start = progress(root) if root.exists() else 0
        later = [v for v in ref.values if v > start]
        if not later:
            chain.missed.append(f"kill {i + 1}: the run was already past every reference point ({start})")
            break
        # a count between here and the last value the reference held for 50 ms or more (briefer
        # ones, the last before it was done, are too brief to hit surely), in the first of
        # (kills - i) equal stretches so that later kills fit; a count, not an observed value,
        # so that a seed names the same point on every machine
        end = max((v for v in later if ref.gaps.get(v, 0.0) >= 0.05), default=later[-1])
        threshold = start + 1 + int(rng.random() * ((end - start - 1) / (kills - i) + 1))
        # half of the kills wait a part of what the reference took from there to its next value
        gap = ref.gaps.get(min((v for v in later if v >= threshold), default=end), 0.0)
        delay = rng.choice((0.0, round(rng.uniform(0, 0.9 * gap), 3)))
        kill = Kill(i + 1, threshold, delay)
        t0 = time.monotonic()
        proc = launcher.start(cmd.argv(root), log, forked)
        while proc.poll() is None and time.monotonic() - t0 < cmd.timeout:
            t_poll = time.monotonic()
            if progress(root) >= kill.threshold:
                break
            time.sleep(max(0.02, 5 * (time.monotonic() - t_poll)))  # a poll of a large tree takes ms: 2 cores
        if kill.delay and proc.poll() is None:
            time.sleep(kill.delay)
        if proc.poll() is not None or (root / cmd.done).exists():
            code = proc.wait(cmd.timeout)
            chain.missed.append(f"kill {kill.index} at {kill.threshold}+{kill.delay}s: the run "
                                f"{'ended' if code is not None else 'was done'} first (exit {code})")
            if code not in (0, None):
                chain.problems.append(f"{chain.label()}: a run exited {code} before its kill point\n{_log_tail(log)}")
            break
        proc.kill()
        proc.wait(30)
        kill.seconds, kill.at_progress = round(time.monotonic() - t0, 2), progress(root)
        survivors = wait_for_group(proc.pid)
        if survivors:
            kill.problems.append(f"processes of the killed command outlived it: {survivors}")
        kill.left = describe(root)
        if tear and not any(k.torn for k in chain.kills):
            kill.torn = tear_last_line(root)
        kill.problems += integrity(root, final=False)
        chain.kills.append(kill)
        say(f"{cmd.name} seed {seed} kill {kill.index}: threshold {kill.threshold} + {kill.delay} s, killed at "
            f"{kill.seconds} s, progress {kill.at_progress}; left: {kill.left}"
            + (f"; torn: {kill.torn}" if kill.torn else ""))
        chain.problems += [f"{chain.label()} kill {kill.index}: {p}" for p in kill.problems]
    t0 = time.monotonic()
    proc = launcher.start(cmd.argv(root), log, forked)
    code = proc.wait(cmd.timeout)
    if code is None:
        proc.kill()
        wait_for_group(proc.pid)
    if code != 0:
        chain.problems.append(f"{chain.label()}: the final rerun {'timed out' if code is None else f'exited {code}'}"
                              f"\n{_log_tail(log)}")
    else:
        chain.problems += [f"{chain.label()} after the rerun: {p}" for p in integrity(root, final=True)]
        chain.problems += [f"{chain.label()} differs from the reference: {p}" for p in compare_trees(ref.root, root)]
    chain.seconds = round(time.monotonic() - t_chain, 1)
    say(f"{chain.label()}: {len(chain.kills)} kills, rerun {time.monotonic() - t0:.1f} s, chain {chain.seconds} s, "
        f"{'OK' if not chain.problems else f'{len(chain.problems)} problems'}"
        + (f"; missed: {'; '.join(chain.missed)}" if chain.missed else ""))
    return chain


# ----- integrity: no half-written file ------------------------------------------------------------

def _unpublished_trl(p: Path, root: Path) -> bool:
    """Inside a TRL checkpoint-N without its published step-N, or inside incomplete/: debris of a
    killed save that TRL writes file by file (trainers/run_dir.py sets it aside on resume)."""
    for parent in [p, *p.parents]:
        if parent == root:
            return False
        if parent.name == INCOMPLETE:
            return True
        if TRL_CHECKPOINT.match(parent.name):
            return not _published(parent)
    return False


def _safetensors_problem(path: Path) -> str | None:
    data = path.read_bytes()
    if len(data) < 8:
        return "shorter than a header"
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return "header is not JSON"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if len(data) != 8 + n + end:
        return f"{len(data)} bytes, the header says {8 + n + end}"
    return None


def integrity(root: Path, final: bool) -> list[str]:
    """Half-written files under ``root``. After a kill (``final`` False): every JSON file parses,
    every JSONL line but a torn last one parses, CSV rows are whole, PNGs and safetensors
    are complete, every published checkpoint is complete (its resume files have the sizes it
    recorded); TRL's unpublished checkpoints and incomplete/ are debris and not read. After the
    completed rerun (``final``) also: no torn line, no temporary file, no unpublished TRL checkpoint."""
    problems = []
    if not root.exists():
        return problems
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if TEMPORARY.match(p.name):
            if final:
                problems.append(f"{rel}: a temporary file left behind")
            continue
        if _unpublished_trl(p, root):
            if final and p.parent.name != INCOMPLETE and TRL_CHECKPOINT.match(p.name):
                problems.append(f"{rel}: a TRL checkpoint without its published step directory")
            continue
        if p.is_dir():
            if p.parent.name == "checkpoints" and p.name.startswith("step-"):
                problems += _checkpoint_problems(p, rel)
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".jsonl":
                problems += [f"{rel}: {x}" for x in _jsonl_problems(p.read_bytes(), final)]
            elif p.suffix == ".csv":
                rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8"))))
                if not rows or any(len(r) != len(rows[0]) for r in rows):
                    problems.append(f"{rel}: CSV rows of unequal length (or empty)")
            elif p.suffix == ".png":
                data = p.read_bytes()
                if not data.startswith(b"\x89PNG") or not data.endswith(b"IEND\xaeB`\x82"):
                    problems.append(f"{rel}: not a complete PNG")
            elif p.suffix == ".safetensors":
                if (why := _safetensors_problem(p)) is not None:
                    problems.append(f"{rel}: {why}")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{rel}: does not parse ({type(exc).__name__}: {str(exc)[:100]})")
    return problems


def _jsonl_problems(data: bytes, final: bool) -> list[str]:
    if not data:
        return []
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")  # the last element is then a line without its newline
    problems = []
    for i, line in enumerate(lines[:-1] if not torn_tail else lines):
        last = torn_tail and i == len(lines) - 1
        try:
            json.loads(line)
        except ValueError:
            if not last:
                problems.append(f"line {i + 1} of {len(lines) - (not torn_tail)} does not parse")
    if torn_tail and final:
        problems.append("a torn last line (no newline) after the completed rerun")
    return problems


def _checkpoint_problems(step_dir: Path, rel: str) -> list[str]:
    info_path = step_dir / "harness_checkpoint.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{rel}: published without a readable harness_checkpoint.json ({exc})"]
    trl_dir = step_dir.parent.parent / info.get("resume_dir", "")
    problems = []
    for name, size in info.get("resume_files", {}).items():
        p = trl_dir / name
        if not p.is_file() or p.stat().st_size != size:
            problems.append(f"{rel}: resume file {p.name} is {'missing' if not p.is_file() else 'resized'}")
    if not any(step_dir.glob("*.safetensors")):
        problems.append(f"{rel}: published without weights")
    return problems


# ----- comparing a completed run with the reference ------------------------------------------------

def _drop_wall_clock(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "trainer_state.json" in obj and "optimizer.pt" in obj:  # a checkpoint's resume_files: sizes in bytes
            obj = {k: v for k, v in obj.items() if k != "trainer_state.json"}  # TRL's, with each step's step_time
        return {k: _drop_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK}
    if isinstance(obj, list):
        return [_drop_wall_clock(v) for v in obj]
    return obj


def _result_files(root: Path) -> dict[str, Path]:
    """The files that hold results: JSON, JSONL and CSV files, and published weights;
    not provenance, not TRL's resume state, not debris or temporary files."""
    out = {}
    for p in root.rglob("*"):
        if not p.is_file() or p.name in NOT_RESULTS or TEMPORARY.match(p.name):
            continue
        rel = p.relative_to(root)
        if INCOMPLETE in rel.parts or any(TRL_CHECKPOINT.match(x) for x in rel.parts):
            continue
        if p.suffix in (".json", ".jsonl", ".csv") or (p.suffix == ".safetensors" and "checkpoints" in rel.parts):
            out[rel.as_posix()] = p
    return out


def _load(path: Path, root: Path) -> Any:
    if path.suffix == ".safetensors":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    text = path.read_text(encoding="utf-8").replace(str(root), "<ROOT>")
    if path.suffix == ".json":
        return _drop_wall_clock(json.loads(text))
    if path.suffix == ".csv":
        return [_drop_wall_clock(r) for r in csv.DictReader(io.StringIO(text))]
    rows = [_drop_wall_clock(json.loads(line)) for line in text.splitlines() if line.strip()]
    if rows and all(isinstance(r, dict) and "sample_id" in r and "index" in r for r in rows):
        ids = [r["sample_id"] for r in rows]
        if len(ids) != len(set(ids)):
            return {"duplicate sample ids": sorted({i for i in ids if ids.count(i) > 1})}
        rows.sort(key=lambda r: r["index"])  # records: one per sample, in any order
    return rows


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if type(a) is not type(b):
        return f"{where or '/'}: {a!r:.120} != {b!r:.120}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}/{k}: only in the {'reference' if k in a else 'rerun'}"
            if a[k] != b[k]:
                return _first_difference(a[k], b[k], f"{where}/{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where or '/'}: {len(a)} items in the reference, {len(b)} in the rerun"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where or '/'}: {a!r:.120} != {b!r:.120}"


def compare_trees(ref_root: Path, got_root: Path) -> list[str]:
    """Every result file of the reference, equal in the completed run (wall-clock fields and
    the run's own path aside), and no result file the reference lacks."""
    ref, got = _result_files(ref_root), _result_files(got_root)
    problems = [f"{rel}: missing" for rel in sorted(set(ref) - set(got))]
    problems += [f"{rel}: not in the reference" for rel in sorted(set(got) - set(ref))]
    for rel in sorted(set(ref) & set(got)):
        a, b = _load(ref[rel], ref_root), _load(got[rel], got_root)
        if a != b:
            problems.append(f"{rel}: {_first_difference(a, b)}")
    return problems


def run_campaign(plan: list[tuple[Command, list[dict[str, Any]]]], workdir: Path, env: dict[str, str],
                 jobs: int = 2, forked: bool = True) -> list[Chain]:
    """Each command's reference run, then its chains (``run_chain`` keyword arguments), ``jobs``
    at a time; a command's chains start as soon as its reference is done."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    launcher = Launcher(env)
    chains: list[Chain] = []
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running = {pool.submit(run_reference, cmd, workdir / f"{cmd.name}-reference", launcher, forked):
                       (cmd, specs) for cmd, specs in plan}
            try:
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        what = running.pop(fut)
                        result = fut.result()
                        if isinstance(result, Reference):
                            cmd, specs = what
                            for spec in specs:
                                root = workdir / f"{cmd.name}-seed{spec['seed']}"
                                running[pool.submit(run_chain, cmd, result, root, launcher=launcher, forked=forked,
                                                    **spec)] = None
                        else:
                            chains.append(result)
            except BaseException:
                for fut in running:  # a reference failed: start nothing more (the pool waits for the rest)
                    fut.cancel()
                raise
    finally:
        launcher.close()
    return chains
