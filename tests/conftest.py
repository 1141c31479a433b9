"""Shared fixtures. Tests read the real benchmark data in place from ../shared/data."""

from __future__ import annotations

import os
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
