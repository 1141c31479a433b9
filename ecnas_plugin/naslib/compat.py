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
import importlib.metadata
import importlib.util
import json
import re
import shlex
import sys
import urllib.parse
from pathlib import Path

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
    # imported by pybnn and tensorwatch at NASLib import (missing where those were installed --no-deps)
    "emcee": "emcee",
    "zmq": "pyzmq",
    "nbformat": "nbformat",
    "graphviz": "graphviz",
    "ipywidgets": "ipywidgets",
    "matplotlib": "matplotlib",
}

# What NASLib's steps install with pip, beyond torch/torchvision and ecnas-plugin itself (pip names).
NASLIB_PIP = ("ConfigSpace", "fvcore", "yacs", "scikit-learn", "scikit-image", "pytorch-msssim", "transforms3d",
              "nasbench-pytorch", "seaborn", "ngboost", "xgboost", "pybnn", "pyro-ppl", "grakel", "six",
              "tensorwatch", "tornado", "pillow", "emcee", "pyzmq", "nbformat", "graphviz", "ipywidgets")
NUMPY_PIN = "numpy<2.4"  # NASLib's Trainer.__init__ breaks on numpy >= 2.4
TORCH_TESTED = "2.13.0"  # the torch the bridge was checked with (torchvision 0.28.0)
NASLIB_REPO = "https://github.com/automl/NASLib"


def torchvision_for(torch_version: str) -> str | None:
    """The torchvision release built for ``torch_version`` (torch 2.m.p ↔ torchvision 0.(m+15).p)."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", torch_version)
    if not m or m.group(1) != "2":
        return None
    minor, patch = int(m.group(2)), int(m.group(3))
    return {(0, 1): "0.15.2"}.get((minor, patch), f"0.{minor + 15}.{patch}")


def _torch_pair() -> tuple[str, str]:
    """(torch, torchvision) for the steps: this environment's torch if it has one with a known
    torchvision, else the tested pair."""
    try:
        found = importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        found = None
    vision = torchvision_for(found) if found else None
    return (found, vision) if vision else (TORCH_TESTED, torchvision_for(TORCH_TESTED))  # type: ignore[return-value]


def _package_root() -> Path:
    """The folder of the imported ``ecnas_plugin`` package (a checkout's, or site-packages')."""
    import ecnas_plugin

    return Path(ecnas_plugin.__file__).resolve().parent


def plugin_source() -> tuple[str, str]:
    """Where this ecnas-plugin comes from, as (kind, what pip installs):
    ``checkout`` (the package lies in a source tree: ``-e PATH``); else what pip recorded in
    ``direct_url.json``: ``wheel`` (the wheel file it was installed from), ``editable`` /
    ``directory`` (a source folder), ``vcs`` or ``url``; else ``index`` (``ecnas-plugin==VERSION``)."""
    from ecnas_plugin.version import __version__

    root = _package_root().parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"ecnas-plugin"', pyproject.read_text(), re.M):
        return "checkout", str(root)
    try:
        direct = importlib.metadata.distribution("ecnas-plugin").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        direct = None
    info = json.loads(direct) if direct else {}
    url = str(info.get("url", ""))
    if url.startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
        if "dir_info" in info:
            return ("editable" if info["dir_info"].get("editable") else "directory"), path
        return "wheel", path
    if "vcs_info" in info:
        vcs = info["vcs_info"]
        return "vcs", f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}".rstrip("@")
    if url:
        return "url", url
    return "index", f"ecnas-plugin=={__version__}"


def install_steps() -> list[str]:
    """The shell commands that give a fresh virtual environment NASLib next to this ecnas-plugin
    (checked for real in fresh venvs, from a checkout and from a wheel)."""
    torch, vision = _torch_pair()
    kind, what = plugin_source()
    plugin = ["-e", shlex.quote(what)] if kind in ("checkout", "editable") else [shlex.quote(what)]
    purelib = "$(python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')"
    return [
        f"git clone -b Develop {NASLIB_REPO} NASLib",
        "python3 -m venv naslib-venv && . naslib-venv/bin/activate",
        f"printf '{NUMPY_PIN}\\ntorch=={torch}\\n' > naslib-constraints.txt",
        # one resolution for everything: nothing installed by one step is downgraded by the next
        _wrapped(("pip install -c naslib-constraints.txt", " ".join(plugin), f"torchvision=={vision}", *NASLIB_PIP), 8),
        f'echo "$PWD/NASLib" > "{purelib}/naslib-src.pth"',
        "python -c 'import ecnas_plugin.naslib as bridge; bridge.install(); print(\"NASLib bridge ready\")'",
    ]


def _wrapped(words: tuple[str, ...], indent: int, width: int = 88) -> str:
    """``words`` joined by spaces, continued with backslash-newlines (the steps stay runnable)."""
    lines, line = [], ""
    for w in words:
        if line and len(line) + len(w) + 1 > width - indent - 2:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    return (" \\\n" + " " * indent).join(lines)


def install_help() -> str:
    """The printed set-up: why, then :func:`install_steps` for this copy of ecnas-plugin."""
    kind, what = plugin_source()
    source = {"checkout": f"the checkout at {what}", "directory": f"the source folder {what}",
              "editable": f"the source folder {what} (editable)",
              "wheel": f"the wheel it was installed from ({what}"
                       + (")" if Path(what).exists() else "; not there any more: give its new path)"),
              "vcs": f"the repository it was installed from ({what})", "url": f"{what}",
              "index": f"your package index ({what})"}[kind]
    steps = "\n".join(f"    {s}" for s in install_steps())
    return (
        "NASLib is not on PyPI; install it from source in a fresh virtual environment, next to ecnas-plugin.\n"
        "NASLib's setup.py refuses Python > 3.9 and its code needs small shims on Python >= 3.10 (ecnas-plugin\n"
        "applies them at run time), so its source folder goes on the path with a .pth file. numpy stays below\n"
        "2.4 (NASLib's Trainer breaks on 2.4) and torchvision is the one built for torch "
        f"{_torch_pair()[0]}.\n"
        f"ecnas-plugin is installed from {source}:\n\n{steps}\n"
    )


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
        raise NaslibUnavailable(f"NASLib cannot be imported; missing: {what}\n\n{install_help()}")


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


def applied() -> list[str]:
    """The shims in force now (applied and not reverted)."""
    return list(_applied)


def revert() -> list[str]:
    """Undo every shim :func:`apply` applied; returns what was undone.

    The ``collections`` aliases are removed again (NASLib code that needs them at call time fails as
    it does upstream), and the torchvision op schemas are withdrawn (``torch.library``); an imported
    torchvision stays imported (Python cannot unload a module) and keeps working, since it only
    needed the schemas while its import registered kernels for them.
    """
    undone = []
    for name in _ABC_NAMES:
        if f"collections.{name}" in _applied and getattr(collections, name, None) is getattr(collections.abc, name):
            delattr(collections, name)
            undone.append(f"collections.{name}")
    while _torch_libraries:
        _torch_libraries.pop()._destroy()
    undone += [a for a in _applied if a.startswith("torchvision::")]
    _applied.clear()
    return undone


# ---------------------------------------------------------------- provenance
def _git_head(root: Path) -> str | None:
    """The commit checked out in ``root`` (a NASLib source tree), read from ``root/.git`` alone (a
    folder further up may be another project's repository); None where that cannot be read."""
    git = root / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: PATH"
        text = git.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git = root / text.partition(":")[2].strip()
    try:
        head = (git / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.partition(":")[2].strip()
    folders = [git]
    if (git / "commondir").is_file():  # a worktree keeps its refs in the main repository
        folders.append(git / (git / "commondir").read_text().strip())
    for folder in folders:
        if (folder / ref).is_file():
            return (folder / ref).read_text().strip() or None
        packed = folder / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    return None


def naslib_provenance(package: Path | None = None) -> dict:
    """Which NASLib this is, as far as can be known without importing it: version, source path,
    distribution record and commit (``"unknown"`` when neither a ``.git`` in its source tree nor
    pip's VCS record says). ``package``: the ``naslib`` package folder (default: the one found)."""
    info: dict = {"version": "unknown", "version_from": None, "path": None, "distribution": None,
                  "commit": "unknown", "commit_from": None}
    if package is None:
        try:
            spec = importlib.util.find_spec("naslib")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            package = Path(next(iter(spec.submodule_search_locations)))
    if package is not None:
        info["path"] = str(package)
        version_file = package / "__version__.py"
        if version_file.is_file():
            m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", version_file.read_text())
            if m:
                info["version"], info["version_from"] = m.group(1), str(version_file)
    try:
        dist = importlib.metadata.distribution("naslib")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    direct: dict = {}
    if dist is not None:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        info["distribution"] = {"name": dist.metadata["Name"], "version": dist.version, "url": direct.get("url"),
                                "editable": bool(direct.get("dir_info", {}).get("editable"))}
        if info["version"] == "unknown":
            info["version"], info["version_from"] = dist.version, "distribution metadata"
    commit = direct.get("vcs_info", {}).get("commit_id")
    if commit:
        info["commit"], info["commit_from"] = commit, "pip's direct_url.json"
    elif package is not None:
        commit = _git_head(package.parent)
        if commit:
            info["commit"], info["commit_from"] = commit, str(package.parent / ".git")
    if package is None:
        info["commit_from"] = "NASLib is not installed"
    elif info["commit"] == "unknown":
        info["commit_from"] = f"no .git in {package.parent} and no VCS record from pip"
    return info


def provenance() -> dict:
    """What a run records of the software that produced it (errors.json, pareto_front.json)."""
    from ecnas_plugin.version import __version__

    kind, what = plugin_source()
    return {"ecnas_plugin": {"version": __version__, "installed_from": f"{kind}: {what}"},
            "naslib": naslib_provenance(), "shims": applied()}
