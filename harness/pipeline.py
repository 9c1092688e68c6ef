"""Pipelined evaluation: while batch k generates, batch k+1 is prepared in worker
processes and batch k-1 is scored and written in a thread.

On a 2-core machine a serial loop leaves one core idle while images are rendered or
decoded and the processor runs (about 11 % of a tiny-model eval, more with JPEG
folders and large images). Here:

- :func:`plan_batches` is the one definition of a run's batches (which samples, in which
  blocks). The main process and every worker iterate it identically, so a worker's
  batch k is the main process's batch k; the ids are compared to make sure.
- :class:`Prefetcher` runs ``Backend.prepare`` (the CPU part of ``generate``: images,
  chat template, processor) in torch ``DataLoader`` workers (forked, so tasks need not
  pickle; tensors come back through shared memory; ``prefetch_factor`` bounds what is
  queued, so memory stays flat). A batch a worker fails to prepare (a corrupt image)
  goes through the serial path, which records the failure per sample exactly as
  before; a worker that dies (OOM-killed) turns the rest of the run serial, with a
  warning. Backends without ``prepare`` (vllm, openai: their engine or server does
  that work) need no worker.
- :class:`OrderedSink` runs the scoring and record writing of each batch in one
  thread, in submission order, behind a bounded queue. Work submitted before an
  error or interrupt is finished before the error propagates, so no generated batch
  is lost.

Records are identical to the serial path's (timings aside): the same batches, seeds,
inputs and order. ``num_workers=0`` is the serial path itself.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import threading
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterator

from harness.errors import HarnessError, UsageError

log = logging.getLogger(__name__)


@dataclass
class Batch:
    task_pos: int  # position of its task in the run's task list
    block: int  # planned position // batch_size: seeds sampling, fixes composition on resume
    items: list[tuple[int, Any]]  # (split index, Sample): the whole block
    #: ids of the items recorded before a resume: generated again with the others, not written
    recorded: frozenset[str] = frozenset()

    def ids(self) -> list[str]:
        return [s.id for _, s in self.items]


def planned_samples(task, wanted: list[int]):
    """(index, sample) for the wanted indices; the sample after the last one is never made."""
    if not wanted:
        return
    want = set(wanted)
    for index, sample in enumerate(islice(task.samples(), wanted[-1] + 1)):
        if index in want:
            yield index, sample


def plan_batches(tasks: list, chosen: dict[str, list[int]], done: dict[str, set], owns: Callable[[int], bool],
                 batch_size: int) -> Iterator[Batch]:
    """The batches still to generate, task by task: each block (``batch_size`` consecutive
    planned positions) with a sample not yet recorded, whole, so a resumed run groups (and
    seeds) samples exactly as a fresh one. A block can be part-recorded (a kill tore its
    write: the torn record is dropped on resume, or a sample's generation failed); its
    recorded samples are generated again, as sampling draws for the whole batch, but not
    written (``Batch.recorded``). ``owns(block)`` is this process's share of a data-parallel run."""
    for pos, task in enumerate(tasks):
        finished = done[task.full_name]
        items: list[tuple[int, Any]] = []
        block = 0
        for position, (index, sample) in enumerate(planned_samples(task, chosen[task.full_name])):
            b = position // batch_size
            if not owns(b):
                continue
            if items and b != block:
                yield from _unfinished(pos, block, items, finished)
                items = []
            if not items:
                block = b
            items.append((index, sample))
        if items:
            yield from _unfinished(pos, block, items, finished)


def _unfinished(pos: int, block: int, items: list[tuple[int, Any]], finished: set) -> Iterator[Batch]:
    recorded = frozenset(s.id for _, s in items if s.id in finished)
    if len(recorded) < len(items):
        yield Batch(pos, block, items, recorded)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def resolve_num_workers(num_workers: int | None, accelerator: bool = False) -> int:
    """``None`` (auto): one preparing worker where a second core exists, as generation on
    the CPU keeps a core busy and preparation is a fraction of it; two with an accelerator,
    where preparation is a larger share (measured on an H100, tiny model, batch 32: serial
    1.00, one worker 0.72, two 0.66; bench/results/pipeline_ratio_h100.txt). Workers are
    forked (tasks hold closures that do not pickle), so platforms without fork run serially."""
    import multiprocessing

    daemon = multiprocessing.current_process().daemon  # a daemonic process may not start children
    if num_workers is None:
        if daemon or not can_fork():
            return 0
        return max(0, min(2 if accelerator else 1, cpu_count() - 1))
    if num_workers > 0 and (daemon or not can_fork()):
        why = "runs in a daemonic process" if daemon else "needs the fork start method, which this platform lacks"
        raise UsageError(f"--num_workers {num_workers}: this eval {why}; use --num_workers 0")
    return num_workers


def _to_numpy(value):
    """Tensors as numpy arrays, which pickle through the worker's pipe as bytes: a prepared
    batch is small (kilobytes to a few megabytes), and torch's shared-memory transfer of
    tensors (one file descriptor per tensor) cost more here (about 6 ms per batch)."""
    import torch

    if isinstance(value, torch.Tensor):
        return _Array(value.numpy())
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _from_numpy(value):
    import torch

    if isinstance(value, _Array):
        return torch.from_numpy(value.array)
    if isinstance(value, dict):
        return {k: _from_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_numpy(v) for v in value)
    return value


@dataclass
class _Array:  # a tensor in transit (a plain numpy array in a payload stays one)
    array: Any


def _worker_init(parent_pid: int, worker_id: int) -> None:
    # torch's own check (the worker polls its parent) stops the loop, but an orphan then
    # blocked at exit for good, flushing a prepared batch into a pipe nobody reads
    from harness.children import die_with_parent

    die_with_parent(parent_pid)


def _first(x):  # DataLoader collate: the prepared batch as it is (module level: picklable)
    return x


class _PrepareStream:
    """What each DataLoader worker iterates: every batch of the plan, preparing those
    with ``k % num_workers == worker id`` (the loader reads workers round-robin, so
    they come back in order k = 0, 1, 2, ...)."""

    def __init__(self, batches: Callable[[], Iterator[Batch]], prepare: Callable[[Batch], Any]) -> None:
        self.batches, self.prepare = batches, prepare

    def __iter__(self):
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for k, batch in enumerate(self.batches()):
            if k % nw != wid:
                continue
            try:
                payload, error = _to_numpy(self.prepare(batch)), None
            except Exception as exc:  # the serial path redoes this batch and records what failed
                payload, error = None, f"{type(exc).__name__}: {exc}"
            yield k, batch.ids(), payload, error


class Prefetcher:
    """Prepared inputs for the plan's batches, in order, from ``num_workers`` processes."""

    def __init__(self, batches: Callable[[], Iterator[Batch]], prepare: Callable[[Batch], Any], num_workers: int,
                 prefetch: int = 2) -> None:
        import torch.utils.data as tud

        stream = type("PrepareStream", (_PrepareStream, tud.IterableDataset), {})(batches, prepare)
        self._loader = tud.DataLoader(stream, batch_size=None, collate_fn=_first, num_workers=num_workers,
                                      prefetch_factor=prefetch, multiprocessing_context="fork",
                                      persistent_workers=False,
                                      worker_init_fn=functools.partial(_worker_init, os.getpid()))
        # Forks the workers now: they start preparing batch 0. DataLoader also installs a
        # SIGCHLD handler that raises in the main thread wherever it is when a worker dies
        # (inside generate(), that would turn into a batch of failure records); put the old
        # handler back: next() finds a dead worker by itself (it polls them while waiting).
        previous = _sigchld_handler()
        self._it = iter(self._loader)
        if previous is not None:
            signal.signal(signal.SIGCHLD, previous)

    def get(self, k: int, batch: Batch) -> Any | None:
        """Batch k's prepared inputs, or None: the serial path does it (the worker could not,
        or no worker is left)."""
        if self._it is None:
            return None
        try:
            got_k, ids, payload, error = next(self._it)
        except StopIteration:
            raise HarnessError(f"the preparing workers ended before batch {k}: the batch plan differs between "
                               "processes (a task whose samples() is not deterministic?)") from None
        except RuntimeError as exc:  # a worker died (OOM killer, signal): finish serially
            log.warning("a data-preparing worker stopped (%s); the rest of the run is prepared serially", exc)
            self.close()
            return None
        if got_k != k or ids != batch.ids():
            self.close()
            raise HarnessError(f"prepared batch {got_k} does not match batch {k} of this process: the batch plan "
                               "differs between processes (a task whose samples() is not deterministic?)")
        return None if error is not None else _from_numpy(payload)

    def close(self) -> None:
        if self._it is not None:
            it, self._it = self._it, None
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def _sigchld_handler():
    if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGCHLD)


class OrderedSink:
    """Runs submitted jobs one at a time in submission order: in a thread (``threaded``)
    behind a queue of ``depth`` jobs, or inline. The first error stops later jobs and is
    raised by the next :meth:`submit` or by :meth:`close`."""

    _STOP = object()

    def __init__(self, threaded: bool, depth: int = 2) -> None:
        self.error: BaseException | None = None
        self._queue: queue.Queue | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._run, name="harness-scoring", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is self._STOP:
                return
            if self.error is None:
                try:
                    job()
                except BaseException as exc:  # reported in the main thread
                    self.error = exc

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        if self._queue is None:
            job()
        else:
            self._queue.put(job)

    def close(self) -> None:
        """Finish every submitted job (even when the caller is unwinding from an error:
        generated batches are written), then raise the sink's own error, if any."""
        if self._queue is not None:
            self._queue.put(self._STOP)
            self._thread.join()
            self._queue = None
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
