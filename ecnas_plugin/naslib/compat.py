"""Runtime shims that let upstream NASLib (branch Develop) import on Python >= 3.10 and new torch.

Nothing here edits NASLib's files, and nothing imports NASLib: :func:`apply` must run *before*
NASLib is imported (``ecnas_plugin.naslib.install`` and the runner call it). The shims:

1. ``collections.Iterable`` & co. (removed in Python 3.10; NASLib still imports them from
   ``collections``): aliased to the ``collections.abc`` classes.
2. torchvision's ``torchvision::nms``/``qnms`` operator schemas: NASLib imports torchvision
   unconditionally; the torchvision wheel matching torch 2.13 is a CUDA build whose compiled ops
   do not load on CPU torch, and its import then fails registering fake kernels for ops that
   were never defined. We define the two schemas with ``torch.library`` (no kernels: calling
   ``torchvision.ops.nms`` would still fail; NASLib's NAS code never calls it) and import again.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib.util
import re
import sys

from ecnas_plugin.errors import EcnasError

_ABC_NAMES = ("Iterable", "Mapping", "MutableMapping", "Sequence", "MutableSequence", "Callable",
              "Set", "MutableSet", "Hashable", "Sized", "Container", "Iterator", "Generator")
_TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_torch_libraries: list = []  # keep torch.library.Library objects alive: dropping one undefines its ops
_applied: list[str] = []

# Import name -> what to install; NASLib's import chain needs all of these.
REQUIREMENTS = {
    "naslib": "NASLib from source (see below)",
    "torch": "torch",
    "torchvision": "torchvision (the version matching your torch)",
    "fvcore": "fvcore",
    "yacs": "yacs",
    "ConfigSpace": "ConfigSpace",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "skimage": "scikit-image",
    "pytorch_msssim": "pytorch-msssim",
    "transforms3d": "transforms3d",
    "nasbench_pytorch": "nasbench-pytorch",
    "seaborn": "seaborn",
    "ngboost": "ngboost",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "pybnn": "pybnn",
    "pyro": "pyro-ppl",
    "grakel": "grakel",
    "six": "six",
    "tensorwatch": "tensorwatch",
    "tornado": "tornado",
}

INSTALL_HELP = """\
NASLib is not on PyPI; install it from source next to ecnas-plugin (Python >= 3.10 works with the
shims ecnas-plugin applies at run time; NASLib's setup.py refuses Python > 3.9, so put its source
directory on the path with a .pth file instead of running setup.py):

    git clone -b Develop https://github.com/automl/NASLib /path/to/NASLib
    python -m venv venv && . venv/bin/activate
    pip install torch 'numpy<2.4'          # NASLib's Trainer breaks on numpy >= 2.4
    pip install --no-deps torchvision==<the version matching torch>   # e.g. 0.28.0 for torch 2.13
    pip install ConfigSpace pyyaml fvcore scikit-learn scipy scikit-image pytorch-msssim \\
        transforms3d nasbench-pytorch seaborn ngboost xgboost lightgbm pybnn pyro-ppl grakel \\
        six tensorwatch tornado pillow
    echo /path/to/NASLib > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/naslib-src.pth"
    pip install ecnas-plugin
"""


class NaslibUnavailable(EcnasError, ImportError):
    """NASLib (or a package its import needs) is missing; the message says what and how to install."""


def missing_requirements() -> list[str]:
    """Import names NASLib needs that cannot be found (found by spec, nothing is imported)."""
    missing = []
    for name in REQUIREMENTS:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_naslib() -> None:
    """Raise :class:`NaslibUnavailable` naming every missing package, with install steps."""
    missing = missing_requirements()
    if missing:
        what = ", ".join(f"{m} (pip: {REQUIREMENTS[m]})" for m in missing)
        raise NaslibUnavailable(f"NASLib cannot be imported; missing: {what}\n\n{INSTALL_HELP}")


def _alias_collections_abcs() -> None:
    for name in _ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
            _applied.append(f"collections.{name}")


def _import_torchvision() -> None:
    """Import torchvision, defining missing op schemas it needs (CUDA build on CPU torch)."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    import torch

    for _ in range(len(_TORCHVISION_SCHEMAS) + 1):
        try:
            import torchvision  # noqa: F401
            return
        except RuntimeError as exc:
            match = re.search(r"operator torchvision::(\w+) does not exist", str(exc))
            if not match or match.group(1) not in _TORCHVISION_SCHEMAS:
                raise
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]  # drop the half-imported package, then retry
            lib = torch.library.Library("torchvision", "FRAGMENT")
            lib.define(_TORCHVISION_SCHEMAS[match.group(1)])
            _torch_libraries.append(lib)
            _applied.append(f"torchvision::{match.group(1)} schema")
    import torchvision  # noqa: F401,F811  (raises the real error if still broken)


def apply() -> list[str]:
    """Apply every shim (idempotent); returns the shims applied so far in this process."""
    _alias_collections_abcs()
    _import_torchvision()
    return list(_applied)
