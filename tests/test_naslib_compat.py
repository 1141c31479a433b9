"""The bridge without NASLib: no NASLib import at import time, a clear message when it is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecnas_plugin.naslib import compat


def test_importing_the_bridge_imports_neither_naslib_nor_torchvision():
    code = ("import sys, ecnas_plugin, ecnas_plugin.naslib, ecnas_plugin.naslib.runner, ecnas_plugin.objectives; "
            "print(sorted(m for m in ('naslib', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_packages_are_named_with_install_steps(monkeypatch, capsys):
    from ecnas_plugin.naslib import runner

    real = compat.importlib.util.find_spec
    monkeypatch.setattr(compat.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("naslib", "fvcore") else real(name, *a))
    assert runner.run("whatever.yaml", []) == 2
    err = capsys.readouterr().err
    assert "missing: naslib" in err and "fvcore (pip: fvcore)" in err
    assert "git clone -b Develop https://github.com/automl/NASLib" in err


def test_collections_aliases_are_added(monkeypatch):
    import collections

    monkeypatch.delattr(collections, "Iterable", raising=False)
    compat._alias_collections_abcs()
    assert collections.Iterable is collections.abc.Iterable


@pytest.mark.skipif(compat.importlib.util.find_spec("naslib") is not None, reason="NASLib is installed here")
def test_install_without_naslib_raises_naslib_unavailable():
    from ecnas_plugin import naslib as bridge

    with pytest.raises(bridge.NaslibUnavailable, match="naslib"):
        bridge.install()
