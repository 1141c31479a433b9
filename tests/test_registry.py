"""The plugin host, tested with real entry points: distributions installed on a temporary path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import install_distribution
from ecnas_plugin.registry import Registry

GOOD = '''
from ecnas_plugin.hookspecs import hookimpl
from ecnas_plugin.adapters.base import SearchSpace
from ecnas_plugin.table import TableSpec


class ToySpace(SearchSpace):
    name = "toyspace"
    key_description = "the architecture name itself"

    def canonical_key(self, arch):
        return str(arch)

    def parse_arch(self, text):
        return text


def _build(paths):
    raise NotImplementedError


@hookimpl
def ecnas_search_spaces():
    return [ToySpace()]


@hookimpl
def ecnas_tables():
    return [TableSpec(name="toy-table", space="toyspace", description="a toy", data_files=(), build=_build)]
'''

PLUGINS = {
    "good": GOOD,
    "broken_import": "import a_module_that_does_not_exist\n",
    "raises": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl

        @hookimpl
        def ecnas_tables():
            raise RuntimeError("boom from a plugin")
    '''),
    "exits_at_import": "import sys\nsys.exit('a plugin that ends the process')\n",
    "exits_in_hook": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl

        @hookimpl
        def ecnas_tables():
            raise SystemExit(3)
    '''),
    "path_names": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl
        from ecnas_plugin.table import TableSpec

        @hookimpl
        def ecnas_tables():
            return [TableSpec(name="../../outside", space="nasbench101", description="", data_files=(),
                              build=lambda paths: None)]
    '''),
    "duplicate": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl
        from ecnas_plugin.adapters.nasbench101 import NasBench101

        @hookimpl
        def ecnas_search_spaces():
            return [NasBench101()]   # the name "nasbench101" is taken by the built-in
    '''),
    "typo": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl

        @hookimpl
        def ecnas_tabels():
            return []
    '''),
    "wrong_type": textwrap.dedent('''
        from ecnas_plugin.hookspecs import hookimpl

        @hookimpl
        def ecnas_data_files():
            return ["not a DataFile"]
    '''),
}


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    for name, source in PLUGINS.items():
        install_distribution(site, name, source)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("ECNAS_PLUGINS", raising=False)
    return site


def _by_name(registry: Registry) -> dict:
    return {p.entry_point: p for p in registry.plugins}


def test_builtins_load_through_entry_points():
    registry = Registry(allowed="")
    plugins = _by_name(registry)
    assert {"nasbench101", "nasbench201", "ecnas_tables", "data_files"} <= set(plugins)
    assert all(p.builtin and p.loaded and not p.errors for p in plugins.values())
    assert registry.owner("tables", "ecnas-5v").distribution == "ecnas-plugin"
    assert "nasbench101" in registry.items["spaces"]


def test_third_party_plugins_good_and_bad(site):
    registry = Registry()
    plugins = _by_name(registry)

    good = plugins["good"]
    assert good.loaded and not good.errors and not good.builtin
    assert good.distribution == "ecnas-test-good"
    assert registry.space("toyspace").canonical_key("x") == "x"
    assert registry.owner("tables", "toy-table").label == "ecnas-test-good:good"

    assert "failed to import ecnas_test_broken_import" in plugins["broken_import"].errors[0]
    assert "a_module_that_does_not_exist" in plugins["broken_import"].errors[0]
    assert "ecnas_tables raised RuntimeError: boom from a plugin" in plugins["raises"].errors[0]
    assert "SystemExit: a plugin that ends the process" in plugins["exits_at_import"].errors[0]
    assert "ecnas_tables raised SystemExit: 3" in plugins["exits_in_hook"].errors[0]
    assert "registers table '../../outside': a name must be plain" in plugins["path_names"].errors[0]
    assert "../../outside" not in registry.items["tables"]
    assert "already registered by ecnas-plugin:nasbench101" in plugins["duplicate"].errors[0]
    assert "unknown hook(s) ['ecnas_tabels']" in plugins["typo"].errors[0]
    assert "not a DataFile" in plugins["wrong_type"].errors[0]

    # the failures did not take anything else down
    assert registry.owner("spaces", "nasbench101").builtin
    assert {"ecnas-4v", "ecnas-5v", "toy-table"} <= set(registry.items["tables"])
    assert {p.entry_point for p in registry.failures} == {"broken_import", "raises", "duplicate", "typo", "wrong_type",
                                                          "exits_at_import", "exits_in_hook", "path_names"}


def test_environment_variable_restricts_third_party_plugins(site, monkeypatch):
    monkeypatch.setenv("ECNAS_PLUGINS", "good")
    plugins = _by_name(Registry())
    assert "good" in plugins and "broken_import" not in plugins and "typo" not in plugins
    assert "nasbench101" in plugins  # built-ins always load

    monkeypatch.setenv("ECNAS_PLUGINS", "")
    plugins = _by_name(Registry())
    assert not [p for p in plugins.values() if not p.builtin]


def test_unknown_names_are_listed():
    from ecnas_plugin.errors import UnknownName

    with pytest.raises(UnknownName, match=r"unknown space 'nasbench999'; available: nasbench101, nasbench201"):
        Registry(allowed="").space("nasbench999")


def test_ecnas_plugins_command_reports_problems(site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    env.pop("ECNAS_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "ecnas_plugin.cli", "plugins"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ecnas-test-good:good  (third-party, ecnas_test_good)  loaded" in out.stdout
    assert "tables: toy-table" in out.stdout
    assert "ecnas-test-broken-import:broken_import" in out.stdout and "FAILED" in out.stdout
    assert "tables: ecnas-4v, ecnas-4v-linscale, ecnas-5v, ecnas-7v" in out.stdout
    assert "8 plugin(s) had problems" in out.stderr


def test_the_registry_depends_on_contracts_only():
    """registry.py imports the contract types it checks plugins' answers against, never an
    implementation: no meter, surrogate model, adapter or importer comes in with it."""
    code = ("import sys, ecnas_plugin.registry as r; r._kinds(); "
            "print(sorted(m for m in sys.modules if m.startswith('ecnas_plugin')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(eval(out.stdout))
    for implementation in ("ecnas_plugin.energy.meters.nvml", "ecnas_plugin.energy.meters.rapl",
                           "ecnas_plugin.energy.meters.codecarbon", "ecnas_plugin.energy.surrogates.models",
                           "ecnas_plugin.adapters.nasbench101", "ecnas_plugin.importers.ecnas", "ecnas_plugin.api"):
        assert implementation not in loaded
    assert {"ecnas_plugin.adapters.base", "ecnas_plugin.energy.meters.base", "ecnas_plugin.energy.surrogates.base"} <= loaded
