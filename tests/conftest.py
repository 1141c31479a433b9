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
