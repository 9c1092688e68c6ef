"""Training in several processes through accelerate (data parallel: DDP; DeepSpeed or FSDP by an accelerate config).

Two ways in, one behaviour:

1. ``harness train-and-eval ... --num_processes N`` (or ``python -m trainers ... --num_processes N``).
   The command's own process stays single: it validates everything, scores the base
   model, and for each trainer checks the run directory (identity, crash debris, corrupt
   resume files) before starting anything slow. The training itself then runs as
   ``python -m accelerate.commands.launch --multi_gpu --num_processes N -m trainers <name> ...``
   (accelerate's launcher; torchrun underneath; gloo on CPU, NCCL on GPUs). The parent
   follows ``<output_dir>/checkpoints/``: each checkpoint the processes publish is scored
   in the parent, by the same ``on_checkpoint`` as in one process, while every training
   process waits (its waiting is not counted as training time). The parent then writes
   ``<output_dir>/launch/scored-<step>`` and training goes on. So scoring, resume and the
   leaderboard are exactly those of a single-process study; only the training is spread.
   The launcher dies with the parent (and each training process with the launcher), so
   a killed study leaves no trainer behind; rerunning it resumes every rank from the last
   complete checkpoint.

2. ``accelerate launch [--config_file ds.yaml] -m harness.cli train-and-eval ...`` (or
   ``-m trainers``). Every process runs the whole command: validation everywhere; files
   (study.json, trainer.json, the train log, checkpoints, plots, leaderboard) written by
   rank 0 only, the others waiting for it and stopping with its error if it fails; each
   checkpoint scored by all processes together (the evaluator's data-parallel eval,
   harness/distributed.py), then training resumes.

In both, the global batch is the config's: each process takes ``batch_size / N`` rows
per optimizer step (SFT: examples; GRPO: prompts, each with its ``num_generations``
completions on the same process, so TRL's generation batch ``batch_size x G`` always
holds whole groups), and a batch that does not divide is a UsageError before any model
loads. Rows are assigned in the single-process order: step ``s`` trains on rows
``s*batch_size .. (s+1)*batch_size-1``, process ``r`` on the ``r``-th slice of them
(accelerate shards the sequential sampler's per-process batches). The cost record
counts every process: examples and optimizer steps are global by construction, TRL
gathers SFT's token count, and GRPO's generated tokens are summed over the processes
at every log and save. ``num_processes`` is part of a run's identity when it is not 1
(GRPO samples different completions with a different split of the batch), so a run
resumes with the N it started with.

Only trainers that are one TRL run (``sft``, ``grpo`` and plug-ins that keep
``TRLTrainer.train``) train in several processes; the others (``curr_rl``, ``rs_sft``,
the DC-SFT trainers, which sample or profile before or between TRL runs) say so.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness import distributed
from harness.atomic import write_json_atomic
from harness.distributed import World
from harness.errors import HarnessError, UsageError

#: in ``<output_dir>``: the launched run's config, its scored-<step> markers and error lines
LAUNCH_DIR = "launch"
#: set by the parent for the processes it launches: where LAUNCH_DIR is, whose death stops
#: them, and whether each checkpoint waits for the parent's scoring
ENV_DIR = "HARNESS_LAUNCH_DIR"
ENV_PARENT = "HARNESS_LAUNCH_PARENT"
ENV_WAIT = "HARNESS_LAUNCH_WAIT"
#: how often rank 0 looks for the parent's marker and tells the other ranks (short
#: collectives: none of them comes near a process-group timeout while a checkpoint is scored)
POLL_S = 0.5


# ----------------------------------------------------------------------------- checks (before any model loads)
def supports(trainer: Any) -> bool:
    """Whether the trainer is one TRL run that the launched processes can rebuild by name."""
    from harness.registry import TRAINERS
    from trainers.trl_run import TRLTrainer

    cls = type(trainer)
    return (isinstance(trainer, TRLTrainer) and cls.train is TRLTrainer.train
            and trainer.name in TRAINERS and TRAINERS.get(trainer.name) is cls)


def supported_names() -> list[str]:
    from harness.registry import TRAINERS

    return [n for n in TRAINERS.names() if supports(TRAINERS.get(n)())]


def processes_for(requested: int | None, world: World, option: str = "--num_processes") -> int | None:
    """The process count a command runs with: ``requested``, or under a launcher the
    launcher's (a different ``requested`` is refused). None: the configs' own."""
    if requested is not None and requested < 1:
        raise UsageError(f"{option} must be >= 1, got {requested}")
    if world.size > 1:
        if requested not in (None, world.size):
            raise UsageError(f"{option} {requested}: this command runs under a launcher that started {world.size} "
                             f"processes; leave {option} out (or give {world.size})")
        return world.size
    return requested


def check_processes(trainer: Any, config: Any) -> None:
    """Before any model loads: the trainer trains in ``config.num_processes`` processes."""
    n = getattr(config, "num_processes", 1)
    if n < 1:
        raise UsageError(f"num_processes must be >= 1, got {n}")
    if n == 1:
        return
    if not supports(trainer):
        raise UsageError(f"{trainer.name}: num_processes {n}: training in several processes is supported for "
                         f"{', '.join(supported_names())} (one TRL run each); train {trainer.name} in one process")
    if config.batch_size % n:
        raise UsageError(f"{trainer.name}: batch_size {config.batch_size} is not divisible by num_processes {n}: "
                         f"each process takes batch_size / num_processes rows per step, so that the global batch "
                         f"stays batch_size; choose a batch_size that is a multiple of {n}")
    if distributed.current().size == 1 and getattr(config, "device", "cpu") != "cpu":
        import torch  # launched here: one GPU per process where training is on GPUs

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus and n > gpus:
            raise UsageError(f"{trainer.name}: num_processes {n}: this machine has {gpus} GPUs and each training "
                             f"process takes one; use at most {gpus}, or device=cpu")


def in_world(config: Any, world: World) -> Any:
    """The config as this process runs it: under a launcher, ``num_processes`` is the launcher's."""
    n = getattr(config, "num_processes", 1)
    if world.size <= 1 or n == world.size:
        return config
    if n != 1:
        raise UsageError(f"num_processes {n}: this process runs under a launcher that started {world.size} "
                         "processes; leave num_processes unset")
    return dataclasses.replace(config, num_processes=world.size)


def per_process(config: Any) -> Any:
    """The config a TRL trainer is built from: ``batch_size`` rows per process and step."""
    n = getattr(config, "num_processes", 1)
    return config if n == 1 else dataclasses.replace(config, batch_size=config.batch_size // n)


# ----------------------------------------------------------------------------- ranks
def uses_cpu(device: str) -> bool:
    import torch

    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def join(world: World, cpu: bool) -> None:
    """Make the process group the way the TRL trainer will (accelerate's PartialState: gloo
    on CPU, NCCL on GPUs, DeepSpeed's when an accelerate config asks for it), so that the
    collectives before training and the evaluator's use the same group."""
    if world.size > 1:
        from accelerate import PartialState

        PartialState(cpu=cpu)


def on_main(world: World, work: Callable[[], Any]) -> Any:
    """``work()`` on rank 0, its result on every rank; its error raised on every rank."""
    if world.size <= 1:
        return work()
    result, failure = None, None
    if world.main:
        try:
            result = work()
        except Exception as exc:  # shared, then raised on every rank
            failure = exc
    shared = distributed.share(world, ("error", f"{failure}") if failure is not None else ("ok", result))
    if failure is not None:
        raise failure
    if shared[0] == "error":
        raise HarnessError(f"rank 0 stopped: {shared[1]}")
    return shared[1]


def wait_together(world: World, ready: Callable[[], bool], poll: float = POLL_S) -> None:
    """Rank 0 asks ``ready()`` every ``poll`` seconds and tells the others; all return together."""
    while not on_main(world, ready):
        time.sleep(poll)


def sum_over(world: World, values: list[int]) -> list[int]:
    if world.size <= 1:
        return list(values)
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    t = torch.tensor(values, dtype=torch.int64, device=PartialState().device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def ranked_callback(world: World, *args: Any, **kwargs: Any):
    """trainers.callbacks.HarnessCallback for one of several processes: every rank keeps the
    meter (GRPO's generated tokens summed over the ranks), rank 0 alone writes the log."""
    from trainers.callbacks import HarnessCallback

    class RankedCallback(HarnessCallback):
        def __init__(self) -> None:
            super().__init__(*args, **kwargs)
            self._synced = self.meter.generated_tokens  # the global count at the last sync

        def _sync(self, state) -> None:
            super()._sync(state)
            # each rank's reward function adds its own completions to the meter
            mine = self.meter.generated_tokens - self._synced
            self.meter.generated_tokens = self._synced + sum_over(world, [mine])[0]
            self._synced = self.meter.generated_tokens

        def on_log(self, args, state, control, logs=None, **kw):
            if world.main:
                return super().on_log(args, state, control, logs=logs, **kw)
            if logs and "train_runtime" not in logs:  # the same condition as the parent's: one sync each
                self._sync(state)

    return RankedCallback()


def ranked_publish(world: World, publish: Callable[..., Any]) -> Callable[..., Any]:
    """``publish`` on rank 0 once every rank has written its share of TRL's checkpoint
    (its rng_state_<rank>.pth); the Checkpoint on every rank."""
    def run(*args: Any) -> Any:
        distributed.barrier(world)
        return on_main(world, functools.partial(publish, *args))

    return run


# ----------------------------------------------------------------------------- the launched side
def launched() -> bool:
    return bool(os.environ.get(ENV_DIR))


def launched_setup() -> None:
    """In a process the parent launched: die with the launcher (which dies with the parent)."""
    if launched():
        from harness.children import die_with_parent

        die_with_parent()


def report_error(message: str) -> None:
    """A launched process's one-line error, for the parent to raise."""
    if launched():
        path = Path(os.environ[ENV_DIR]) / f"error-{distributed.current().rank}.txt"
        try:
            path.write_text(message, encoding="utf-8")
        except OSError:
            pass


def scoring_handshake(world: World) -> Callable[[Any], None] | None:
    """The ``on_checkpoint`` of launched processes: wait until the parent has scored it."""
    if not launched() or os.environ.get(ENV_WAIT) != "1":
        return None
    where = Path(os.environ[ENV_DIR])
    parent = int(os.environ[ENV_PARENT])

    def wait(ckpt: Any) -> None:
        _free_accelerator_memory()  # the parent scores on this machine's first GPU
        marker = where / f"scored-{ckpt.step}"

        def ready() -> bool:
            if marker.exists():
                return True
            if not _alive(parent):
                raise HarnessError(f"the process that launched this training ({parent}) has gone; stopping")
            return False

        wait_together(world, ready)

    return wait


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the parent side
def command(trainer_name: str, model: Path, suite: str, out: Path, config_file: Path, n: int) -> list[str]:
    """accelerate's launcher around ``python -m trainers`` (--multi_gpu: its multi-process
    launcher, torchrun; on a machine without GPUs the processes train on CPU with gloo)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "trainers", trainer_name, "--model", str(model), "--suite", suite, "--output_dir", str(out),
            "--config", str(config_file), "--num_processes", str(n)]


def run_launched(trainer: Any, model: Path, suite: Any, config: Any, out: Path,
                 on_checkpoint: Callable[[Any], None] | None) -> None:
    """Train in ``config.num_processes`` launched processes; score each new checkpoint here."""
    from harness.children import die_with_parent
    from harness.registry import SUITES
    from trainers.run_dir import complete_checkpoints

    if suite.name not in SUITES or SUITES.get(suite.name) is not suite:
        raise UsageError(f"suite {suite.name!r} is not registered: processes launched for training find their "
                         "suite by name (register it, e.g. through the harness.suites entry points)")
    n = config.num_processes
    where = out / LAUNCH_DIR
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    config_file = where / "config.json"
    write_json_atomic(config_file, {k: v for k, v in config.to_dict().items() if k != "output_dir"})
    env = {**os.environ, ENV_DIR: str(where), ENV_PARENT: str(os.getpid()), ENV_WAIT: "1" if on_checkpoint else "0"}
    env.setdefault("OMP_NUM_THREADS", "1")  # N processes share the cores
    seen = {c.step for c in complete_checkpoints(out)}  # the caller scored these before
    print(f"[{trainer.name}] training in {n} processes (accelerate launch); output in {out}", file=sys.stderr,
          flush=True)
    proc = subprocess.Popen(command(trainer.name, model, suite.name, out, config_file, n), env=env,
                            stdout=2, preexec_fn=functools.partial(die_with_parent, os.getpid()))
    try:
        while True:
            code = proc.poll()
            for ckpt in complete_checkpoints(out):
                if ckpt.step in seen:
                    continue
                seen.add(ckpt.step)
                if on_checkpoint is not None:
                    on_checkpoint(ckpt)
                (where / f"scored-{ckpt.step}").touch()
            if code is not None:
                break
            time.sleep(POLL_S / 2)
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        errors = sorted(where.glob("error-*.txt"))
        if errors:
            raise HarnessError(errors[0].read_text(encoding="utf-8").strip())
        raise HarnessError(f"{trainer.name}: training in {n} processes failed (exit status {code}); the processes' "
                           "output above says why. Rerun the same command to resume from the last checkpoint")


def _stop(proc: subprocess.Popen) -> None:
    """The launcher forwards SIGTERM to its processes and waits for them."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
