"""torchvision (PyPI CUDA build) on a CPU torch: in-process fix and the start-up hook.

Subprocesses run with ``-S`` plus an explicit ``sys.path`` so that a hook already
installed in this environment's site-packages cannot hide a broken fix.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.compat import torchvision_cpu as tvc

REPO = Path(__file__).resolve().parents[1]
SITE = sysconfig.get_paths()["purelib"]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed")


def run_bare(code: str, extra_site: Path | None = None) -> subprocess.CompletedProcess:
    """Python without automatic site processing: this env's site-packages on sys.path
    (its .pth files NOT executed), optionally ``extra_site`` added with site.addsitedir
    (its .pth files executed)."""
    prelude = f"import sys; sys.path[:0] = [{str(REPO)!r}, {SITE!r}]\n"
    if extra_site is not None:
        prelude += f"import site; site.addsitedir({str(extra_site)!r})\n"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-S", "-c", prelude + code], capture_output=True, text=True, env=env, cwd=str(REPO))


@pytest.fixture(scope="module")
def needs_fix() -> bool:
    """Whether this environment's torchvision is the CUDA-only build (else the fix is moot)."""
    proc = run_bare("import torchvision")
    if proc.returncode == 0:
        return False
    assert tvc.MISSING_OP_ERROR in proc.stderr, proc.stderr[-2000:]
    return True


def test_version_mapping():
    assert tvc.torchvision_version_for("2.13.0+cpu") == "0.28.*"
    assert tvc.torchvision_version_for("2.5.1") == "0.20.*"
    assert tvc.torchvision_version_for("2.0.1+cu118") == "0.15.*"
    with pytest.raises(ValueError):
        tvc.torchvision_version_for("1.13.1")


def test_ensure_torchvision_in_process(needs_fix):
    proc = run_bare(
        "from harness.compat.torchvision_cpu import ensure_torchvision\n"
        "from harness.compat import _tv_hook\n"
        "assert ensure_torchvision() and ensure_torchvision()\n"
        "import torch, torchvision.transforms.v2 as T\n"
        "from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor\n"
        "print(type(_tv_hook._LIB).__name__, hasattr(torch.ops.torchvision, 'nms'))\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lib, has_nms = proc.stdout.split()
    assert has_nms == "True"
    assert lib == ("Library" if needs_fix else "NoneType")  # schemas defined only when needed


def test_hook_fixes_plain_import_and_costs_nothing_at_startup(tmp_path, needs_fix):
    written = tvc.install_hook(tmp_path)
    assert {p.name for p in written} == {tvc.PTH_NAME, f"{tvc.HOOK_MODULE}.py"}
    assert tvc.hook_installed(tmp_path)
    assert tvc.install_hook(tmp_path) == []  # idempotent
    assert list((tmp_path / "__pycache__").glob(f"{tvc.HOOK_MODULE}.*.pyc"))  # pre-compiled
    proc = run_bare(
        "assert '_harness_tv_hook' in sys.modules\n"
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules\n"  # nothing heavy at start-up
        "import torchvision, torchvision.transforms.functional\n"
        "print('ok')\n",
        extra_site=tmp_path,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert [p.name for p in tvc.remove_hook(tmp_path)] == [tvc.PTH_NAME, f"{tvc.HOOK_MODULE}.py"]
    assert not tvc.hook_installed(tmp_path)


def test_hook_source_is_self_contained():
    src = Path(tvc._tv_hook.__file__).read_text()
    assert "harness" not in "".join(line for line in src.splitlines() if line.lstrip().startswith(("import ", "from ")))


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout")
def test_setup_environment_in_throwaway_venv(tmp_path, needs_fix):
    """setup_environment() writes the hook into *its interpreter's* site-packages, so
    run it from a throwaway venv that sees this environment's packages (path .pth)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site_dir = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site_dir / "zz_parent_env.pth").write_text(SITE + "\n")  # a path line: its .pth files stay inactive
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    code = "from harness.compat.torchvision_cpu import setup_environment as s; print('\\n'.join(s({})))"

    def setup(dry_run: bool = False) -> str:
        proc = subprocess.run([str(py), "-c", code.format(dry_run)], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    if needs_fix:
        dry = setup(dry_run=True)
        assert "would write" in dry and not (site_dir / tvc.PTH_NAME).exists()
        first = setup()
        assert "import torchvision works now" in first
        assert (site_dir / tvc.PTH_NAME).exists() and (site_dir / f"{tvc.HOOK_MODULE}.py").exists()
    assert "nothing to do" in setup()
    ok = subprocess.run([str(py), "-c", "import torchvision.transforms"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_setup_environment_dry_run_when_torchvision_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchvision" else real(name, *a))
    import torch

    msgs = tvc.setup_environment(dry_run=True)
    expected = f"torchvision=={tvc.torchvision_version_for(torch.__version__)}"
    assert msgs == [f"would run: {sys.executable} -m pip install --no-deps {expected}"]
