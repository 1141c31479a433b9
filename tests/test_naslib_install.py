"""Installing the bridge on real NASLib: declared patch points, all or nothing, fully reversible.

Skipped (with the reason) where NASLib is not installed.
"""

from __future__ import annotations

import collections
import sys

import pytest

from ecnas_plugin.naslib import compat

MISSING = compat.missing_requirements()
if MISSING:
    pytest.skip(f"NASLib is not installed here (missing: {', '.join(MISSING)}); see "
                "ecnas_plugin.naslib.compat.install_help()", allow_module_level=True)

from ecnas_plugin import naslib as bridge  # noqa: E402
from ecnas_plugin.naslib import hooks  # noqa: E402

# collections.Iterable is the alias NASLib needs; Python >= 3.10 no longer has it
NEEDS_ALIAS = sys.version_info >= (3, 10)


@pytest.fixture(autouse=True)
def _reinstalled():
    bridge.install()
    yield
    bridge.install()  # whatever a test left, the next one finds the bridge installed


def _wrapped_anywhere() -> list[str]:
    """Every NASLib class attribute that is one of the bridge's wrappers."""
    import naslib.defaults.trainer as trainer
    import naslib.optimizers as optimizers
    import naslib.search_spaces as spaces

    found = []
    for module in (optimizers, spaces, trainer):
        for cls in [v for v in vars(module).values() if isinstance(v, type)]:
            for name, value in vars(cls).items():
                if hasattr(value, "__ecnas_original__"):
                    found.append(f"{cls.__name__}.{name}")
    return found


def _nothing_left():
    assert not bridge.installed() and _wrapped_anywhere() == []
    assert compat.applied() == []
    if NEEDS_ALIAS:
        assert not hasattr(collections, "Iterable")


def test_every_declared_patch_point_is_found_on_this_naslib():
    from naslib.defaults.trainer import Trainer
    from naslib.optimizers import Bananas, BasePredictor, Npenas
    from naslib.search_spaces import NasBench101SearchSpace, NasBench201SearchSpace

    names = {p.name for p in hooks.patch_points()}
    assert "naslib.optimizers.Bananas._get_new_candidates" in names
    assert "naslib.search_spaces.supported_search_spaces[nasbench201].query" in names
    targets = {(cls, attr) for cls, attr, _ in hooks.resolve()}
    for point in [(Bananas, "_get_new_candidates"), (Npenas, "_get_new_candidates"),
                  (BasePredictor, "evaluate_predictor"), (NasBench101SearchSpace, "query"),
                  (NasBench201SearchSpace, "query"), (Trainer, "_log_to_json")]:
        assert point in targets and hasattr(getattr(*point), "__ecnas_original__")


def _missing(name: str):
    """(owner, attribute) of a NASLib patch point, found at test time."""
    import naslib.search_spaces.core.query_metrics as qm
    from naslib.defaults.trainer import Trainer
    from naslib.optimizers import Bananas, Npenas, RandomSearch

    return {"Bananas._get_new_candidates": (Bananas, "_get_new_candidates"),
            "Npenas._get_new_candidates": (Npenas, "_get_new_candidates"),
            "RandomSearch.train_statistics": (RandomSearch, "train_statistics"),
            "Trainer._log_to_json": (Trainer, "_log_to_json"),
            "Metric": (qm, "Metric")}[name]


@pytest.mark.parametrize("name, named", [
    ("Bananas._get_new_candidates", "naslib.optimizers.Bananas._get_new_candidates"),
    ("Npenas._get_new_candidates", "naslib.optimizers.Npenas._get_new_candidates"),
    ("RandomSearch.train_statistics", "naslib.optimizers.RandomSearch.train_statistics"),
    ("Trainer._log_to_json", "naslib.defaults.trainer.Trainer._log_to_json"),
    ("Metric", "naslib.search_spaces.core.query_metrics.Metric"),
])
def test_a_renamed_patch_point_is_named_and_nothing_is_patched(monkeypatch, name, named):
    """NASLib without one attribute the bridge wraps or needs: install refuses, naming it (a missing
    ``_get_new_candidates`` used to be skipped silently, charging BANANAS' predictions as
    evaluations), and leaves NASLib and the shims as they were before install."""
    bridge.uninstall()
    owner, attr = _missing(name)
    monkeypatch.delattr(owner, attr)
    with pytest.raises(hooks.PatchPointMissing) as info:
        bridge.install()
    assert info.value.point.startswith(named) and named in str(info.value) and "Nothing was patched" in str(info.value)
    _nothing_left()


def test_a_changed_signature_is_refused(monkeypatch):
    """``adapt_search_space`` without ``dataset_api``: the wrapper could never attach the energy state."""
    from naslib.optimizers import RegularizedEvolution

    bridge.uninstall()
    monkeypatch.setattr(RegularizedEvolution, "adapt_search_space", lambda self, search_space, scope=None: None)
    with pytest.raises(hooks.PatchPointMissing, match="RegularizedEvolution.adapt_search_space takes no "
                                                      "parameter 'dataset_api'"):
        bridge.install()
    _nothing_left()


def test_a_registered_space_naslib_lacks_is_refused(monkeypatch):
    import naslib.search_spaces as ss

    bridge.uninstall()
    monkeypatch.delitem(ss.supported_search_spaces, "nasbench201")
    with pytest.raises(hooks.PatchPointMissing, match=r"supported_search_spaces\[nasbench201\]"):
        bridge.install()
    _nothing_left()


def test_a_wrapper_failing_half_way_leaves_nothing_patched(monkeypatch):
    """The tenth wrapper raises: the nine applied before it are removed and the shims reverted."""
    bridge.uninstall()
    real, applied = hooks._patch, []

    def flaky(cls, name, make):
        if len(applied) == 9:
            raise RuntimeError("wrapper failed")
        applied.append(name)
        real(cls, name, make)

    monkeypatch.setattr(hooks, "_patch", flaky)
    with pytest.raises(RuntimeError, match="wrapper failed"):
        bridge.install()
    assert len(applied) == 9
    _nothing_left()


def test_uninstall_undoes_every_shim_and_install_brings_the_bridge_back():
    import torch

    bridge.install()
    shims = compat.applied()
    if NEEDS_ALIAS:
        assert "collections.Iterable" in shims and collections.Iterable is collections.abc.Iterable
    ops = [s.split("::")[1].split()[0] for s in shims if s.startswith("torchvision::")]
    assert all(hasattr(torch.ops.torchvision, op) for op in ops)
    bridge.uninstall()
    _nothing_left()
    assert not any(hasattr(torch.ops.torchvision, op) for op in ops)  # the op schemas are withdrawn
    import torchvision.transforms  # noqa: F401  (an imported torchvision keeps working)

    bridge.install()
    assert bridge.installed() and "RandomSearch.new_epoch" in _wrapped_anywhere()
    if NEEDS_ALIAS:
        assert collections.Iterable is collections.abc.Iterable


def test_provenance_of_the_naslib_in_use():
    info = compat.naslib_provenance()
    import naslib

    assert info["path"] == str(next(iter(naslib.__path__)))
    assert info["version"] != "unknown"
    assert info["commit"] != "unknown" or "no .git in" in info["commit_from"]  # said, not guessed


def test_a_space_left_with_the_base_class_query_is_refused(monkeypatch):
    """NB201's own ``query`` gone: what remains is ``Graph.query`` (not a benchmark lookup)."""
    from naslib.search_spaces import NasBench201SearchSpace

    bridge.uninstall()
    monkeypatch.delattr(NasBench201SearchSpace, "query")
    with pytest.raises(hooks.PatchPointMissing, match=r"supported_search_spaces\[nasbench201\]\.query is only "
                                                      r"naslib\.search_spaces\.core\.graph\.Graph\.query"):
        bridge.install()
    _nothing_left()
