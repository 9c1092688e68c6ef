"""Child processes that die with their parent.

A forked helper (a batch-preparing worker, a study's job process) whose parent is killed
with SIGKILL is otherwise left behind: measured with torch's DataLoader workers, an
orphan blocked at exit for good, flushing a prepared batch into a pipe nobody reads.
"""

from __future__ import annotations

import os
import signal


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); where that is
    unavailable, nothing happens. With ``parent_pid``, exit now if the parent is already
    gone (it may have died before the request was made)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
