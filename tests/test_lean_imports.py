"""transformers' start-up import of scikit-learn (assisted generation only) is skipped by the hf backend."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def poisoned_sklearn(tmp_path):
    """A scikit-learn that fails when imported, first on the path: importing it is detectable."""
    pkg = tmp_path / "sklearn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('raise RuntimeError("sklearn was imported")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _run(code: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_transformers_imports_sklearn_unless_told_not_to(poisoned_sklearn):
    plain = _run("import transformers.generation.utils", poisoned_sklearn)
    assert plain.returncode != 0 and "sklearn was imported" in plain.stderr  # the cost being avoided exists
    lean = _run("from harness.compat.lean_imports import skip_sklearn_in_transformers as skip\n"
                "assert skip()\n"
                "import sys, transformers.generation.utils\n"
                "assert 'sklearn' not in sys.modules\n"
                "assert not skip()  # too late now: nothing changes twice", poisoned_sklearn)
    assert lean.returncode == 0, lean.stderr


@pytest.mark.slow
def test_hf_backend_loads_and_generates_without_importing_sklearn(tiny_model_dir, poisoned_sklearn):
    code = ("from harness.backends.hf import HFBackend\n"
            "from harness.backends.base import SamplingParams\n"
            "from harness.taskspec import make_task\n"
            f"b = HFBackend(model={tiny_model_dir!r})\n"
            "t = make_task('synth_cls_id'); s = next(iter(t.samples()))\n"
            "print(b.generate([t.prompt(s, b.conventions)], SamplingParams(max_new_tokens=3)))\n")
    done = _run(code, poisoned_sklearn)
    assert done.returncode == 0, done.stderr[-2000:]
