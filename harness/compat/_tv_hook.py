"""Self-contained torchvision-on-CPU-torch fix (standard library only at import).

PyPI's torchvision wheels are CUDA builds; on a CPU-only torch their compiled ops
(``torchvision/_C.so``) fail to load, and ``import torchvision`` then dies with
``RuntimeError: operator torchvision::nms does not exist`` because
``torchvision._meta_registrations`` registers fake kernels for ops that were never
defined. Defining the two op *schemas* (no kernels) before torchvision is imported
is enough for everything pure-Python (transforms, ``transforms.v2``, ``io`` helpers
used by transformers' image and video processors). Calling ``torchvision.ops.nms``
itself still fails, loudly, as it should.

This file is used in two ways:

* imported as ``harness.compat._tv_hook`` by :func:`harness.compat.torchvision_cpu.ensure_torchvision`;
* copied verbatim into site-packages (as ``_harness_tv_hook.py``) next to a ``.pth``
  file by :func:`harness.compat.torchvision_cpu.setup_environment`, so that every
  interpreter of the environment installs :class:`TorchvisionFinder`. It must
  therefore import nothing from ``harness`` and nothing heavy at import time.

The finder only reacts to ``import torchvision``; interpreter start-up cost is one
small module import and a ``sys.meta_path`` insert.
"""

import sys

# Schemas of the ops that torchvision's Python code references at import time.
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

# Module-level reference: the definitions live as long as this Library object.
_LIB = None


def _extension_paths(package_dirs):
    import os

    out = []
    for d in package_dirs or ():
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in sorted(names):
            if name.startswith("_C.") and name.endswith((".so", ".pyd", ".dylib")):
                out.append(os.path.join(d, name))
    return out


def ops_defined():
    """Whether ``torchvision::nms`` is known to the dispatcher (cheap, no side effects)."""
    import torch

    return hasattr(torch.ops.torchvision, "nms")


def register_schemas(package_dirs=None):
    """Make ``import torchvision`` work on a CPU torch; return what was done.

    Returns ``"present"`` when the ops already exist (a matching build, or an
    earlier call), ``"loaded"`` when torchvision's own compiled extension loads
    (the same ``torch.ops.load_library`` call torchvision makes; a failing dlopen
    costs well under a millisecond), and ``"registered"`` when the extension does
    not load and the schemas were defined here.
    """
    global _LIB
    import torch

    if ops_defined():
        return "present"
    if package_dirs is None:
        package_dirs = _torchvision_dirs()
    for path in _extension_paths(package_dirs):
        try:
            torch.ops.load_library(path)
        except (OSError, ImportError):
            continue
        if ops_defined():
            return "loaded"
    lib = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS:
        lib.define(schema)
    _LIB = lib
    return "registered"


def _torchvision_dirs():
    """Directories of the torchvision package, found without importing it."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("torchvision")
    if spec is None or spec.submodule_search_locations is None:
        return []
    return list(spec.submodule_search_locations)


class TorchvisionFinder:
    """A ``sys.meta_path`` entry that fixes torchvision right before its first import.

    It never finds anything itself: on the first ``import torchvision`` it
    registers the schemas if needed and lets the normal finders continue.
    """

    done = False

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        # Stays in sys.meta_path after firing (removing an entry while importlib
        # iterates the list would make it skip the next finder); costs one
        # comparison per import afterwards.
        if cls.done or fullname != "torchvision":
            return None
        cls.done = True
        try:
            register_schemas()
        except Exception as exc:  # never break an import because of the fix itself
            sys.stderr.write(f"harness torchvision hook: could not register ops: {exc}\n")
        return None

    # importlib calls this on meta-path entries when caches are invalidated
    @classmethod
    def invalidate_caches(cls):
        return None


def install():
    """Insert the finder (idempotent). A no-op when torchvision is already imported."""
    if "torchvision" in sys.modules:
        return
    for entry in sys.meta_path:
        if getattr(entry, "__name__", None) == "TorchvisionFinder":
            return
    sys.meta_path.insert(0, TorchvisionFinder)


def uninstall():
    sys.meta_path[:] = [e for e in sys.meta_path if getattr(e, "__name__", None) != "TorchvisionFinder"]
