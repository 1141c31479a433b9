"""Shared fixtures. Tests read the real benchmark data in place from ../shared/data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ECNAS_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (set ECNAS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own user cache, and the offline mirror is ../shared/data."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ECNAS_CACHE_DIR", str(tmp_path_factory.mktemp("ecnas-cache")))
    if SHARED_DATA.is_dir():
        mp.setenv("ECNAS_DATA_MIRROR", str(SHARED_DATA))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def meter_works():
    """Skips tests that measure energy where no meter works (no RAPL, NVML or codecarbon here)."""
    from ecnas_plugin.energy.meters import default_meter
    from ecnas_plugin.errors import MeterError

    try:
        default_meter()
    except MeterError as exc:
        pytest.skip(f"no energy meter works here: {exc}")


@pytest.fixture
def study_cli():
    """``study_cli(config, out)``: the parsed arguments of ``ecnas study run CONFIG --out OUT``."""
    import argparse

    from ecnas_plugin.study.cli import add_subparser

    def parse(config: Path, out: Path) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_subparser(parser.add_subparsers(dest="command", required=True))
        return parser.parse_args(["study", "run", str(config), "--out", str(out)])

    return parse


def install_distribution(site: Path, name: str, source: str) -> None:
    """A module ``ecnas_test_<name>`` plus a dist-info with an ``ecnas_plugin`` entry point ``name``,
    as pip would write them into ``site``: a real third-party plugin, found by entry-point discovery."""
    module = f"ecnas_test_{name}"
    (site / f"{module}.py").write_text(source)
    info = site / f"ecnas_test_{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ecnas-test-{name.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ecnas_plugin]\n{name} = {module}\n")


def load_plugin(monkeypatch, site: Path, name: str, source: str):
    """``source`` installed as the distribution of entry point ``name`` in ``site`` (on sys.path for
    the test) and loaded, the only third-party plugin, as the process registry: (registry, plugin)."""
    from ecnas_plugin import registry as reg

    site.mkdir(exist_ok=True)
    install_distribution(site, name, source)
    monkeypatch.syspath_prepend(str(site))
    registry = reg.Registry(allowed=name)
    plugin = next(p for p in registry.plugins if p.entry_point == name)
    assert plugin.loaded and not plugin.errors and not plugin.builtin, plugin.errors
    monkeypatch.setattr(reg, "_REGISTRY", registry)
    return registry, plugin


EXAMPLE_PACKAGE = REPO / "examples" / "ecnas-example-tables"


@pytest.fixture(scope="session")
def example_installed(tmp_path_factory) -> Path:
    """The example package ``pip install --no-deps --target``-ed for real (no build litter in the
    source tree, no network); put the returned folder on sys.path to have it discovered."""
    work = tmp_path_factory.mktemp("example")
    source = shutil.copytree(EXAMPLE_PACKAGE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the example plugin:\n{proc.stdout}\n{proc.stderr}")
    return target


def _naslib_missing() -> list[str]:
    from ecnas_plugin.naslib.compat import missing_requirements

    return missing_requirements()


NASLIB_MISSING = _naslib_missing()
needs_naslib = pytest.mark.skipif(bool(NASLIB_MISSING), reason=f"NASLib is not installed here (missing: "
                                                               f"{', '.join(NASLIB_MISSING)}); see "
                                                               "ecnas_plugin.naslib.compat.install_help()")


@pytest.fixture
def unmovable_space(monkeypatch) -> str:
    """A registered space ``flat-test`` that can name configurations but neither sample nor move:
    what the bridge's own search-space class cannot serve."""
    from ecnas_plugin.adapters.base import SearchSpace
    from ecnas_plugin.registry import get_registry

    class Flat(SearchSpace):
        name = "flat-test"

        def canonical_key(self, arch):
            return str(arch)

        def parse_arch(self, text):
            return text

    monkeypatch.setitem(get_registry().items["spaces"], Flat.name, Flat())
    return Flat.name


@pytest.fixture(scope="module")
def bridge():
    """The NASLib bridge installed for a test module (tests using it are marked needs NASLib)."""
    from ecnas_plugin import naslib as bridge

    bridge.install()
    yield bridge
    bridge.install()
