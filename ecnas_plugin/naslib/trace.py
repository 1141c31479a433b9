"""Per-run energy state and its records: objective, search budget, trace, Pareto front (no NASLib).

One :class:`RunState` lives in the run's ``dataset_api`` (key ``STATE_KEY``) while energy is on.
Every evaluation the optimizer makes goes through :meth:`RunState.evaluate`, which returns the
objective and appends a trace row with the *true* accuracies and energy. At the end,
:meth:`RunState.write` saves ``energy_trace.parquet`` and ``pareto_front.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecnas_plugin import objectives
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.naslib.config import ConfigError, EnergyConfig

STATE_KEY = "ecnas_energy"
TRACE_FILE = "energy_trace.parquet"
FRONT_FILE = "pareto_front.json"


@dataclass(frozen=True)
class CellValues:
    """Table values of one cell at the run's budget, averaged over repeats."""

    energy: float
    train_acc: float
    val_acc: float
    test_acc: float


class EnergySource:
    """Energy (and true accuracies) per architecture key from one slice of an energy table."""

    def __init__(self, table: object, cfg: EnergyConfig, dataset: str | None = None):
        frame: pd.DataFrame = table.frame  # type: ignore[attr-defined]
        self.table_name = str(table.name)  # type: ignore[attr-defined]
        if cfg.column not in frame.columns:
            energy_cols = [c for c in frame.columns if c.endswith(("_kwh", "_mj"))]
            raise UnknownName("energy column", cfg.column, energy_cols, context=f"in table {self.table_name!r}")
        rows = frame
        for col, want, key in (("epochs", cfg.epochs, "energy.epochs"), ("hardware", cfg.hardware, "energy.hardware"),
                               ("campaign", cfg.campaign, "energy.campaign"), ("dataset", dataset, "dataset")):
            have = sorted(rows[col].unique().tolist())
            if want is None:
                if col == "epochs":
                    want = have[-1]
                elif len(have) > 1:
                    raise ConfigError(key, f"table {self.table_name!r} has several ({have}); choose one")
                else:
                    continue
            if want not in have:
                raise ConfigError(key, f"{want!r} not in table {self.table_name!r}; available: {have}")
            rows = rows[rows[col] == want]
            if col == "epochs":
                self.epochs = int(want)
        rows = rows.dropna(subset=[cfg.column])
        means = rows.groupby("arch_key")[[cfg.column, "train_acc", "val_acc", "test_acc"]].mean()
        self.column = cfg.column
        self.values = {k: CellValues(*map(float, v)) for k, v in zip(means.index, means.to_numpy())}
        energies = means[cfg.column].to_numpy()
        self.median_energy = float(np.median(energies))
        self.max_energy = float(energies.max())

    def get(self, key: str) -> CellValues:
        try:
            return self.values[key]
        except KeyError:
            raise UnknownName("architecture", key, (),
                              context=f"has no {self.column} in table {self.table_name!r} at {self.epochs} "
                                      "epochs (energy.missing: error)") from None


class RunState:
    """Objective, budget and records of one energy-aware search run."""

    def __init__(self, cfg: EnergyConfig, source: EnergySource, seed: int = 0):
        self.cfg = cfg
        self.source = source
        params = cfg.objective_params()
        if cfg.objective in ("penalty", "soft", "chebyshev"):
            params["reference_kwh"] = cfg.reference_kwh or source.median_energy
        if cfg.objective == "chebyshev":
            params["seed"] = seed if cfg.seed is None else cfg.seed
        self.objective = objectives.make_objective(cfg.objective, **params)
        self.budget = objectives.SearchBudget(cfg.search_budget_kwh)
        self.reference_point = cfg.reference_point or (1.0, source.max_energy)
        self.rows: list[dict] = []
        self.epoch = -1
        self.columns: dict[str, list] = {"train_energy_kwh": [], "objective": [], "search_energy_kwh": [],
                                         "evaluations": []}
        if cfg.column != "train_energy_kwh":
            self.columns[cfg.column] = self.columns.pop("train_energy_kwh")
        self.stopped_early = False
        self._peeking = 0

    # ---------------------------------------------------------------- during the search
    def begin_epoch(self, epoch: int) -> None:
        """Called before each search epoch: stops on an exhausted budget, redraws Chebyshev weights."""
        self.budget.check()
        self.epoch = epoch
        if isinstance(self.objective, objectives.Chebyshev):
            self.objective.redraw()

    @contextmanager
    def peeking(self) -> Iterator[None]:
        """Queries in here are predictions of candidates, not evaluations: not charged, not traced."""
        self._peeking += 1
        try:
            yield
        finally:
            self._peeking -= 1

    def evaluate(self, key: str, val_acc: float) -> float:
        """Objective of cell ``key`` whose true validation accuracy (fraction) is ``val_acc``."""
        cell = self.source.values.get(key) or self.source.get(key)
        value = self.objective(val_acc, cell.energy)
        if self._peeking:
            return value
        spent = self.budget.charge(cell.energy)
        row = {"epoch": self.epoch, "evaluation": len(self.rows), "arch_key": key, "val_acc": val_acc,
               "val_acc_mean": cell.val_acc, "test_acc": cell.test_acc, "train_acc": cell.train_acc,
               self.source.column: cell.energy, "objective": value, "search_energy_kwh": spent}
        if isinstance(self.objective, objectives.Constraint):
            row["feasible"] = self.objective.feasible(cell.energy)
        if isinstance(self.objective, objectives.Chebyshev):
            row["weight_acc"], row["weight_energy"] = self.objective.weights
        self.rows.append(row)
        return value

    def end_epoch(self, incumbent_key: str | None, incumbent_objective: float | None) -> None:
        """Record the incumbent's energy and objective and the search energy so far (errors.json)."""
        energy = self.source.get(incumbent_key).energy if incumbent_key is not None else math.nan
        self.columns[self.source.column].append(energy)
        self.columns["objective"].append(math.nan if incumbent_objective is None else float(incumbent_objective))
        self.columns["search_energy_kwh"].append(self.budget.spent_kwh)
        self.columns["evaluations"].append(self.budget.evaluations)

    # ---------------------------------------------------------------- results
    def trace(self) -> pd.DataFrame:
        """One row per evaluation, in order."""
        return pd.DataFrame(self.rows)

    def front(self) -> dict:
        """Pareto front (mean val accuracy vs energy) of the distinct evaluated cells, and hypervolumes."""
        frame = self.trace()
        out = {"reference_point": {"error": self.reference_point[0], self.source.column: self.reference_point[1]},
               "objective": self.cfg.objective, "table": self.source.table_name, "epochs": self.source.epochs,
               "search_energy_kwh": self.budget.spent_kwh, "evaluations": self.budget.evaluations,
               "budget_kwh": self.budget.budget_kwh, "stopped_by_budget": self.stopped_early,
               "hypervolume_val": 0.0, "hypervolume_test": 0.0, "front": []}
        if frame.empty:
            return out
        cells = frame.drop_duplicates("arch_key")
        acc, energy = cells["val_acc_mean"].to_numpy(), cells[self.source.column].to_numpy()
        mask = objectives.pareto_mask(acc, energy)
        front = cells[mask].sort_values(self.source.column)
        out["front"] = [{"arch_key": r.arch_key, "val_acc": float(r.val_acc_mean), "test_acc": float(r.test_acc),
                         self.source.column: float(getattr(r, self.source.column))} for r in front.itertuples()]
        out["hypervolume_val"] = objectives.hypervolume(acc, energy, self.reference_point)
        out["hypervolume_test"] = objectives.hypervolume(cells["test_acc"].to_numpy(), energy, self.reference_point)
        return out

    def write(self, folder: str | Path) -> tuple[Path, Path] | None:
        """Write the trace (parquet) and the front (JSON) into ``folder``; nothing when trace is off."""
        if not self.cfg.trace:
            return None
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        trace_path, front_path = folder / TRACE_FILE, folder / FRONT_FILE
        self.trace().to_parquet(trace_path, index=False)
        front_path.write_text(json.dumps(self.front(), indent=1))
        return trace_path, front_path
