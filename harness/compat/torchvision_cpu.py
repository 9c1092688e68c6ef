"""Make PyPI's (CUDA-built) torchvision importable next to a CPU-only torch.

transformers' Qwen2-VL image and video processors need torchvision, but the only
torchvision wheel matching a CPU torch on PyPI is a CUDA build whose compiled ops
do not load; ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist``. Defining the op
schemas before the first import fixes all pure-Python parts (see
:mod:`harness.compat._tv_hook`, which holds the fix itself).

* :func:`ensure_torchvision` fixes the *current* process (call it before
  importing transformers' processors).
* :func:`setup_environment` fixes *every* process of the environment (vLLM and
  DataLoader workers start their own interpreters) with a ``.pth`` start-up hook.

Cheap check used to decide whether the fix is needed: whether the dispatcher knows
``torchvision::nms`` (``hasattr(torch.ops.torchvision, "nms")``); if not, the
extension is loaded exactly as torchvision would (``torch.ops.load_library`` on
``torchvision/_C*.so``; a failing dlopen costs < 1 ms), and only if that fails are
the schemas defined. A working (matching) torchvision is therefore never touched.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.compat import _tv_hook

HOOK_MODULE = "_harness_tv_hook"
PTH_NAME = "harness_torchvision_cpu.pth"
# A .pth line starting with "import" is executed by site.py at interpreter start-up.
PTH_LINE = f"import {HOOK_MODULE}; {HOOK_MODULE}.install()\n"
MISSING_OP_ERROR = "operator torchvision::nms does not exist"


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work in this process; True if it is importable.

    Idempotent and cheap after the first call. Returns False when torchvision is
    not installed (transformers then falls back to its PIL image processors, but
    the Qwen2-VL video processor and processor class need torchvision).
    """
    if "torchvision" in sys.modules:
        return True
    if importlib.util.find_spec("torchvision") is None:
        return False
    _tv_hook.register_schemas()
    import torchvision  # noqa: F401

    return True


def torchvision_version_for(torch_version: str) -> str:
    """The torchvision release series matching a torch version, as a pip specifier.

    torch 2.x pairs with torchvision 0.(x+15): 2.0 -> 0.15, 2.5 -> 0.20,
    2.13 -> 0.28. Patch releases usually but not always match (torch 2.0.1 went
    with torchvision 0.15.2), so the patch level is left free: ``0.28.*``.
    """
    base = torch_version.split("+")[0]
    major, minor = (int(p) for p in base.split(".")[:2])
    if major != 2:
        raise ValueError(f"no known torchvision pairing for torch {torch_version}")
    return f"0.{minor + 15}.*"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _probe(python: str = sys.executable) -> tuple[bool, str]:
    """Does ``import torchvision`` work in a fresh interpreter? (ok, error text)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [python, "-c", "import torchvision"], capture_output=True, text=True, env=env, cwd=os.path.expanduser("~")
    )
    err = proc.stderr.strip().splitlines()
    return proc.returncode == 0, (err[-1] if err else "")


def startup_seconds(python: str = sys.executable, runs: int = 10) -> float:
    """Median wall time of ``python -c pass`` (to measure what the hook costs)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def hook_installed(site_dir: Path | None = None) -> bool:
    site_dir = Path(site_dir) if site_dir else _site_packages()
    return (site_dir / PTH_NAME).exists() and (site_dir / f"{HOOK_MODULE}.py").exists()


def install_hook(site_dir: Path | None = None) -> list[Path]:
    """Write the start-up hook (module + .pth) into ``site_dir`` (default: this
    interpreter's site-packages). Rewrites it when the hook's source changed."""
    site_dir = Path(site_dir) if site_dir else _site_packages()
    src = Path(_tv_hook.__file__).read_text()
    written = []
    for path, text in ((site_dir / f"{HOOK_MODULE}.py", src), (site_dir / PTH_NAME, PTH_LINE)):
        if path.exists() and path.read_text() == text:
            continue
        write_text_atomic(path, text)
        written.append(path)
    # Byte-compile now: with PYTHONDONTWRITEBYTECODE set the interpreter would
    # otherwise recompile the hook at every start-up (~2 ms instead of ~0.2 ms).
    py_compile.compile(str(site_dir / f"{HOOK_MODULE}.py"), doraise=True)
    return written


def remove_hook(site_dir: Path | None = None) -> list[Path]:
    site_dir = Path(site_dir) if site_dir else _site_packages()
    removed = []
    for path in (site_dir / PTH_NAME, site_dir / f"{HOOK_MODULE}.py"):
        if path.exists():
            path.unlink()
            removed.append(path)
    cache = site_dir / "__pycache__"
    for stale in cache.glob(f"{HOOK_MODULE}.*.pyc") if cache.is_dir() else ():
        stale.unlink()
    return removed


def setup_environment(dry_run: bool = False) -> list[str]:
    """Make torchvision work in every process of this environment; messages of what was done.

    (a) installs torchvision (``--no-deps``, the series matching torch) if missing;
    (b) tests ``import torchvision`` in a fresh interpreter; if it fails with the
        missing-op error, writes the ``.pth`` start-up hook into site-packages;
    (c) tests again. Idempotent: a second run reports "nothing to do".
    ``dry_run`` reports what would be done without changing anything.
    """
    msgs: list[str] = []
    site_dir = _site_packages()
    changed = False

    if importlib.util.find_spec("torchvision") is None:
        import torch

        spec = f"torchvision=={torchvision_version_for(torch.__version__)}"
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", spec]
        if dry_run:
            msgs.append(f"would run: {' '.join(cmd)}")
            return msgs
        msgs.append(f"torchvision missing; running: {' '.join(cmd)}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise RuntimeError(f"pip could not install {spec}:\n{tail}")
        importlib.invalidate_caches()
        msgs.append(f"installed {spec}")
        changed = True

    ok, err = _probe()
    if ok:
        if hook_installed(site_dir) and not dry_run and install_hook(site_dir):
            # keep an installed hook's code current (it is a no-op where ops load natively)
            msgs.append(f"updated the torchvision start-up hook in {site_dir}")
            changed = True
        msgs.append("import torchvision works" + ("" if changed else "; nothing to do"))
        return msgs

    if MISSING_OP_ERROR not in err:
        raise RuntimeError(f"import torchvision fails for another reason than the CUDA-only build: {err}")
    msgs.append(f"import torchvision fails: {err}")
    if dry_run:
        msgs.append(f"would write {PTH_NAME} and {HOOK_MODULE}.py into {site_dir}")
        return msgs
    for path in install_hook(site_dir):
        msgs.append(f"wrote {path}")
    ok, err = _probe()
    if not ok:
        raise RuntimeError(f"import torchvision still fails after installing the hook: {err}")
    msgs.append("import torchvision works now (schemas registered by the start-up hook)")
    return msgs


def _main() -> None:  # python -m harness.compat.torchvision_cpu [--dry-run|--remove|--timing]
    args = sys.argv[1:]
    if "--remove" in args:
        for p in remove_hook():
            print(f"removed {p}")
        return
    for line in setup_environment(dry_run="--dry-run" in args):
        print(line)
    if "--timing" in args:
        print(f"python -c pass: {startup_seconds() * 1000:.1f} ms (median of 10)")


if __name__ == "__main__":
    _main()

__all__ = [
    "ensure_torchvision",
    "setup_environment",
    "install_hook",
    "remove_hook",
    "hook_installed",
    "torchvision_version_for",
    "startup_seconds",
]
