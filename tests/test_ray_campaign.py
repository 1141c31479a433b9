"""A campaign on a local Ray instance (CPU only): concurrent workers never lose or duplicate rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ecnas_plugin.energy import campaign as cp
from ecnas_plugin.energy.executors import RayExecutor, get_executor
from ecnas_plugin.errors import UnknownName

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray(meter_works):
    # workers import ecnas_plugin, and this module for the failing task below
    path = os.pathsep.join(p for p in (str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, **{k: os.environ[k] for k in ("ECNAS_CACHE_DIR", "ECNAS_DATA_MIRROR") if k in os.environ}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


def test_ray_campaign_resumes_and_keeps_every_row_once(tmp_path, shared_data, local_ray):
    archs = cp.sample_cells("nasbench201", 6, seed=5)
    base = dict(name="ray-campaign", space="nasbench201", epochs=1, network={"C": 4, "N": 1},
                data_root=str(shared_data / "flowers17"), torch_threads=1)
    # two cells measured locally first: the Ray run must skip them, not redo or duplicate them
    cp.run_campaign(cp.CampaignSpec(archs=tuple(archs[:2]), **base), tmp_path, progress=False)
    executor = RayExecutor()
    assert executor.num_gpus == 0 and executor.num_cpus == 1 and executor.max_in_flight == 4
    result = cp.run_campaign(cp.CampaignSpec(archs=tuple(archs), **base), tmp_path, executor, progress=False)
    assert result.resumed == 2 and result.measured_now == 4

    lines = (tmp_path / cp.JOURNAL_FILE).read_text().splitlines()
    records = [json.loads(x) for x in lines[1:]]
    assert sorted(r["arch_key"] for r in records) == sorted(archs)  # none lost, none twice
    ray_pids = {r["pid"] for r in records[2:]}
    assert os.getpid() not in ray_pids  # measured in Ray workers, journaled by the driver
    assert sorted(result.table.frame["arch_key"]) == sorted(archs)
    assert len(result.table.checkpoints) == 6


def test_ray_task_failure_comes_back_with_its_task(local_ray):
    """A task that raises comes back as its exception, beside the others' results."""
    executor = RayExecutor()
    outcomes = dict(executor.map(_maybe_fail, 10, [(1,), (0,), (3,)]))
    assert outcomes[(1,)] == 10 and outcomes[(3,)] == pytest.approx(10 / 3)
    assert isinstance(outcomes[(0,)], ZeroDivisionError)


def _maybe_fail(shared: int, x: int) -> float:
    return shared / x


def test_unknown_executor_is_named():
    with pytest.raises(UnknownName, match="executor"):
        get_executor("dask")
