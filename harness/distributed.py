"""Data-parallel eval on torch.distributed: which process this is, a barrier, and the launcher.

``harness eval --num_processes N`` relaunches itself under ``torchrun`` (torch's own
launcher, ``python -m torch.distributed.run``); ``accelerate launch -m harness.cli eval``
and ``torchrun ... -m harness.cli eval`` work the same, on one node or several, because
all of them set RANK / WORLD_SIZE / LOCAL_RANK and the rendezvous variables that
``init_process_group`` reads. The evaluator gives each process whole batches
(``block % world_size == rank``), so every batch is composed and seeded exactly as in a
single process and the merged records, hence the aggregates, are the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, block: int) -> bool:
        return block % self.size == self.rank


def current() -> World:
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise HarnessError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun or accelerate)") from None
    return World(rank, size, local) if size > 1 else World()


#: whether init() created the process group (finish() then destroys it, and only then)
_created = False


def init(world: World) -> None:
    """Join the process group (gloo: CPU collectives; only barriers and small objects pass).
    A group that already exists (a training run's, made by accelerate) is used as it is."""
    global _created
    if world.size <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        _created = True


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def share(world: World, value: object) -> object:
    """Rank 0's ``value`` on every rank (e.g. the error that stops the run, or None)."""
    if world.size <= 1:
        return value
    import torch.distributed as dist

    box = [value if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish(world: World) -> None:
    """Leave the group init() made; a group someone else made (an eval of a checkpoint inside
    multi-process training) stays up for its owner."""
    global _created
    if world.size > 1 and _created:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _created = False


def launch(argv: list[str], num_processes: int) -> int:
    """Run ``harness <argv>`` in ``num_processes`` processes on this machine under torchrun."""
    env = dict(os.environ)
    # one thread per process unless the user says otherwise: N processes share the cores
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
           "-m", "harness.cli", *argv]
    return subprocess.call(cmd, env=env)
