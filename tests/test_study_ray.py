"""A study on a local Ray instance (CPU only) gives the same traces as the local process pool."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from ecnas_plugin.study import parse_study, run_study
from ecnas_plugin.study.runner import RUNS_DIR

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
REPO = Path(__file__).resolve().parents[1]


def test_ray_executor_matches_local_runs(tmp_path, shared_data):
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
           **{k: os.environ[k] for k in ("ECNAS_CACHE_DIR", "ECNAS_DATA_MIRROR") if k in os.environ}}
    study = parse_study({"name": "ray-study", "spaces": ["ecnas-5v"], "optimizers": ["random", "sms-emoa"],
                         "objectives": ["accuracy"], "budgets": [{"evaluations": 8}], "seeds": 2})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        run_study(study, out_dir=tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    run_study(study, out_dir=tmp_path / "local", workers=1, progress=False)
    ran = sorted((tmp_path / "ray" / RUNS_DIR).iterdir())
    assert len(ran) == len(study.runs) == 4
    for run in ran:
        local = tmp_path / "local" / RUNS_DIR / run.name
        pd.testing.assert_frame_equal(pd.read_parquet(run / "trace.parquet"), pd.read_parquet(local / "trace.parquet"))
        assert (run / "run.json").is_file()
