"""Run a study's grid: local process pool by default, Ray optionally; resumable.

Layout of a study folder::

    study.json                the validated config and the list of runs (JSON)
    runs/<run_id>/trace.parquet   one row per evaluation (see ecnas_plugin.search.TRACE_COLUMNS)
    runs/<run_id>/run.json        the run's settings and totals; written last, so its presence
                                  means the run finished (a killed run is simply redone)
    runs/<run_id>/naslib/         NASLib optimizers only: NASLib's errors.json, the bridge's pareto_front.json
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ecnas_plugin.errors import EcnasError, UnknownName
from ecnas_plugin.objectives import make_objective
from ecnas_plugin.search import load_space, make_optimizer, run_search

from . import naslib_runs
from .config import PARETO, PLAIN, RunSpec, Study

EXECUTORS = ("local", "ray")
RUNS_DIR = "runs"
TRACE_FILE = "trace.parquet"
RUN_FILE = "run.json"
STUDY_FILE = "study.json"


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _objective(spec: RunSpec):
    if spec.objective_name == PARETO:
        return None
    if spec.objective_name == PLAIN:
        return lambda acc, energy_kwh: acc
    return make_objective(spec.objective_name, **spec.objective_params)


def execute_run(spec: RunSpec, out_dir: str) -> dict:
    """Run one grid cell and store its trace and summary in ``out_dir/runs/<run_id>``."""
    start = time.perf_counter()
    space = load_space(spec.space, spec.epochs, spec.surrogate)
    folder = Path(out_dir) / RUNS_DIR / spec.run_id
    folder.mkdir(parents=True, exist_ok=True)
    if naslib_runs.is_naslib(spec.optimizer):
        trace = naslib_runs.run_naslib(spec, space, folder)
    else:
        # The optimizer's stream depends on the seed only, so all objectives of one seed start alike;
        # repeats are drawn from a second stream.
        opt_rng = np.random.default_rng(spec.seed)
        optimizer = make_optimizer(spec.optimizer, space, opt_rng, **spec.optimizer_params)
        trace = run_search(space, optimizer, spec.budget, _objective(spec), np.random.default_rng([spec.seed, 1]))
    tmp = folder / f".{TRACE_FILE}.tmp"
    trace.to_parquet(tmp, index=False)
    os.replace(tmp, folder / TRACE_FILE)
    summary = {
        "run_id": spec.run_id, "spec": spec.to_dict(), "epochs": space.budget_label, "evaluations": len(trace),
        "search_energy_kwh": float(trace["search_energy_kwh"].iloc[-1]),
        "best_true_test_acc": float(trace["best_true_test_acc"].iloc[-1]),
        "wall_s": time.perf_counter() - start,
    }
    _atomic_write(folder / RUN_FILE, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary


def is_finished(spec: RunSpec, out_dir: Path) -> bool:
    folder = out_dir / RUNS_DIR / spec.run_id
    return (folder / RUN_FILE).is_file() and (folder / TRACE_FILE).is_file()


def _local(pending: list[RunSpec], out_dir: Path, workers: int) -> Iterable[dict]:
    if workers == 1:
        for spec in pending:
            yield execute_run(spec, str(out_dir))
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(execute_run, spec, str(out_dir)) for spec in pending]
        for fut in as_completed(futures):
            yield fut.result()


def _ray(pending: list[RunSpec], out_dir: Path, workers: int) -> Iterable[dict]:
    try:
        import ray
    except ImportError:
        raise EcnasError("--executor ray needs Ray: pip install 'ray[default]' (and a running cluster, "
                         "or none for a local one)") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"))
    remote = ray.remote(execute_run)
    refs = [remote.remote(spec, str(out_dir)) for spec in pending]
    while refs:
        done, refs = ray.wait(refs, num_returns=1)
        yield ray.get(done[0])


def run_study(study: Study, out_dir: Path | None = None, executor: str = "local", workers: int | None = None,
              progress: bool = True) -> Path:
    """Run every unfinished run of ``study``; returns the study folder. Finished runs are kept."""
    if executor not in EXECUTORS:
        raise UnknownName("executor", executor, EXECUTORS)
    out_dir = Path(out_dir or study.output)
    (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / STUDY_FILE, json.dumps(
        {"name": study.name, "description": study.description, "config": study.source,
         "runs": [s.to_dict() | {"run_id": s.run_id} for s in study.runs]}, indent=2, default=str).encode())
    pending = [s for s in study.runs if not is_finished(s, out_dir)]
    # Build each space's table cache once here, so parallel workers do not all build it at once.
    for name in sorted({(s.space, s.epochs, s.surrogate) for s in pending}, key=str):
        load_space(*name)
    workers = workers or study.workers
    runner = _local(pending, out_dir, workers) if executor == "local" else _ray(pending, out_dir, workers)
    from tqdm import tqdm

    with tqdm(total=len(study.runs), initial=len(study.runs) - len(pending), desc=f"study {study.name}",
              unit="run", disable=not progress) as bar:
        for _ in runner:
            bar.update(1)
    return out_dir


def load_runs(out_dir: Path) -> tuple[dict, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(study.json, one row per finished run of this study, run_id -> trace)."""
    out_dir = Path(out_dir)
    study_file = out_dir / STUDY_FILE
    if not study_file.is_file():
        raise EcnasError(f"{out_dir} is not a study folder: {STUDY_FILE} is missing (run `ecnas study run` first)")
    study = json.loads(study_file.read_text())
    rows, traces = [], {}
    for spec in study["runs"]:
        folder = out_dir / RUNS_DIR / spec["run_id"]
        if not (folder / RUN_FILE).is_file():
            continue
        summary = json.loads((folder / RUN_FILE).read_text())
        traces[spec["run_id"]] = pd.read_parquet(folder / TRACE_FILE)
        b = spec["budget_evaluations"]
        rows.append({**{k: v for k, v in spec.items() if not isinstance(v, dict)},
                     "budget": f"{b}evals" if b is not None else f"{spec['budget_kwh']:g}kWh",
                     "epochs": str(summary["epochs"]), "evaluations": summary["evaluations"],
                     "search_energy_kwh": summary["search_energy_kwh"],
                     "best_true_test_acc": summary["best_true_test_acc"]})
    if not rows:
        raise EcnasError(f"{out_dir}: no finished runs yet")
    return study, pd.DataFrame(rows), traces
