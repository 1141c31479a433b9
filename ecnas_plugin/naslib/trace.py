"""Per-run energy state and its records: objective, search budget, trace, Pareto front (no NASLib).

One :class:`RunState` lives in the run's ``dataset_api`` (key ``STATE_KEY``) while energy is on.
Every evaluation the optimizer makes goes through :meth:`RunState.evaluate`, which returns the
objective and appends a trace row with the *true* accuracies and energy. At the end,
:meth:`RunState.write` saves ``energy_trace.parquet`` and ``pareto_front.json``.

Every energy value carries its source: the table's own label (``measured``, ``estimated`` or ``scaled``) or
``predicted`` (``energy.missing: predict``, see :mod:`ecnas_plugin.naslib.predict`), in the trace
(``energy_source``, ``energy_sd_kwh``), in ``errors.json`` and in the front (with how predictions
were made); a prediction is never labelled measured.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator
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
    """Values of one cell at the run's budget, averaged over repeats; ``source`` says where the
    energy comes from (the table's own label: measured, estimated or scaled; or predicted, with ``energy_sd``).
    Accuracies of a predicted cell are NaN until the benchmark supplies them."""

    energy: float
    train_acc: float
    val_acc: float
    test_acc: float
    source: str = "measured"
    energy_sd: float = math.nan


class EnergySource:
    """Energy (and true accuracies) per architecture key from one slice of an energy table
    (:meth:`ecnas_plugin.table.EnergyTable.slice`); with ``missing: predict``, cells the slice
    lacks get a labelled surrogate prediction."""

    def __init__(self, table: object, cfg: EnergyConfig, dataset: str | None = None):
        self.table_name = str(table.name)  # type: ignore[attr-defined]
        columns = table.frame.columns  # type: ignore[attr-defined]
        if cfg.column not in columns:
            energy_cols = [c for c in columns if c.endswith(("_kwh", "_mj"))]
            raise ConfigError("energy.column", str(UnknownName("energy column", cfg.column, energy_cols,
                                                               context=f"in table {self.table_name!r}")))
        chosen: dict = {}
        for col, want, key in (("epochs", cfg.epochs, "energy.epochs"), ("hardware", cfg.hardware, "energy.hardware"),
                               ("campaign", cfg.campaign, "energy.campaign"), ("dataset", dataset, "dataset")):
            have = table.values(col)  # type: ignore[attr-defined]
            if want is None:
                if col == "epochs":
                    want = have[-1]
                elif len(have) > 1:
                    raise ConfigError(key, f"table {self.table_name!r} has several ({have}); choose one")
                else:
                    want = have[0]
            if want not in have:
                raise ConfigError(key, f"{want!r} not in table {self.table_name!r}; available: {have}")
            chosen[col] = want
        try:
            s = table.slice(epochs=chosen["epochs"], dataset=chosen["dataset"], hardware=chosen["hardware"],  # type: ignore[attr-defined]
                            campaign=chosen["campaign"], columns=(cfg.column, "train_acc", "val_acc", "test_acc", "source"))
        except UnknownName as exc:  # each part exists, but not together
            raise ConfigError("energy.epochs", f"table {self.table_name!r} has no rows at {chosen}: {exc}") from None
        self.epochs = int(s.epochs)
        self.dataset = s.dataset
        self.column = cfg.column
        nan = np.full(len(s.keys), math.nan)
        energy, train, val, test = (s.means.get(c, nan) for c in (cfg.column, "train_acc", "val_acc", "test_acc"))
        self.values: dict[str, CellValues] = {}
        for i, k in enumerate(s.keys):
            if math.isnan(energy[i]):
                continue  # no repeat has this energy column: the cell is missing here
            labels = s.repeats[k].get("source")
            # a cell's label: measured when all its repeats are; else its (first) other label, e.g. scaled
            label = "measured"
            if labels is not None and not (labels == "measured").all():
                label = min(str(x) for x in labels if x != "measured")
            self.values[k] = CellValues(float(energy[i]), float(train[i]), float(val[i]), float(test[i]), source=label)
        if not self.values:
            raise ConfigError("energy.column", f"table {self.table_name!r} has no {cfg.column} at {chosen}")
        # key -> energy: the one lookup every evaluation makes (predictions are added as they come)
        self.energy: dict[str, float] = {k: v.energy for k, v in self.values.items()}
        energies = np.fromiter(self.energy.values(), dtype=float)
        self.median_energy = float(np.median(energies))
        self.max_energy = float(energies.max())
        self.predict = None
        if cfg.missing == "predict":
            from ecnas_plugin.naslib.predict import PredictedEnergy

            self.predict = PredictedEnergy(cfg, self.table_name, table.frame, dict(chosen, space=s.space))  # type: ignore[attr-defined]

    def get(self, key: str, spec: object = None) -> CellValues:
        """Values of cell ``key``; a cell the table lacks is predicted (``missing: predict``; ``spec``:
        its NASLib spec, needed for cells outside the surrogate's index) or refused (``error``)."""
        cell = self.values.get(key)
        if cell is not None:
            return cell
        if self.predict is None:
            raise UnknownName("architecture", key, (),
                              context=f"has no {self.column} in table {self.table_name!r} at {self.epochs} "
                                      "epochs (energy.missing: error)")
        energy, sd = self.predict(key, spec)
        nan = math.nan
        cell = self.values[key] = CellValues(energy, nan, nan, nan, source="predicted", energy_sd=sd)
        self.energy[key] = energy
        return cell

    def set_accuracies(self, key: str, train_acc: float, val_acc: float, test_acc: float) -> None:
        """Accuracies of a predicted cell, from the benchmark (the table has none)."""
        cell = self.values[key]
        self.values[key] = CellValues(cell.energy, train_acc, val_acc, test_acc, cell.source, cell.energy_sd)


class RunState:
    """Objective, budget and records of one energy-aware search run.

    :meth:`evaluate` takes and returns accuracies in the benchmark's own unit (NASLib's tabular
    benchmarks: percent, ``accuracy_scale=100``), so the hot path never converts; the trace, the
    front and ``errors.json`` columns are in fractions, like the energy tables.
    """

    def __init__(self, cfg: EnergyConfig, source: EnergySource, seed: int = 0, accuracy_scale: float = 1.0,
                 provenance: dict | None = None):
        self.cfg = cfg
        # the software behind the run (ecnas-plugin and NASLib versions, NASLib's commit where known)
        self.provenance = provenance
        self.accuracy_scale = float(accuracy_scale)
        self.source = source
        params = cfg.objective_params()
        if cfg.objective in ("penalty", "soft", "chebyshev"):
            params["reference_kwh"] = cfg.reference_kwh or source.median_energy
        if cfg.objective == "chebyshev":
            params["seed"] = seed if cfg.seed is None else cfg.seed
        self.objective = objectives.make_objective(cfg.objective, **params)
        self._budget = objectives.SearchBudget(cfg.search_budget_kwh)
        self.reference_point = cfg.reference_point or (1.0, source.max_energy)
        # One entry per evaluation in each column list, in the benchmark's unit (no tuple per row: an
        # evaluation costs a dict lookup and three appends); epochs and search energy are derived
        # from them when read.
        self.keys: list[str] = []
        self.val_accs: list[float] = []
        self.objective_values: list[float] = []
        self._epoch_starts: list[tuple[int, int]] = []  # (epoch, index of its first evaluation)
        self._charged = 0  # evaluations already added to the budget
        self.epoch_weights: dict[int, tuple[float, float]] = {}
        self.columns: dict[str, list] = {"train_energy_kwh": [], "energy_source": [], "objective": [],
                                         "search_energy_kwh": [], "evaluations": []}
        if cfg.column != "train_energy_kwh":
            self.columns[cfg.column] = self.columns.pop("train_energy_kwh")
        self.stopped_early = False
        self._peeking = 0
        self._affine = objectives.affine_form(self.objective)
        # key -> (a, b, energy) with objective = a * acc + b in the benchmark's unit (penalty,
        # constraint, soft; a = b = None for chebyshev), filled on a cell's first evaluation
        self.seen: dict[str, tuple] = {}
        self._recording = self._make_evaluate_seen(record=True)
        self._not_recording = self._make_evaluate_seen(record=False)
        self.evaluate_seen = self._recording

    @property
    def budget(self) -> objectives.SearchBudget:
        """The search-energy account, charged with the evaluations recorded since it was last read."""
        budget, seen = self._budget, self.seen
        for key in self.keys[self._charged:]:
            budget.charge(seen[key][2])
        self._charged = len(self.keys)
        return budget

    # ---------------------------------------------------------------- during the search
    def begin_epoch(self, epoch: int) -> None:
        """Called before each search epoch: stops on an exhausted budget, redraws Chebyshev weights."""
        self.budget.check()
        self._epoch_starts.append((epoch, len(self.keys)))
        if isinstance(self.objective, objectives.Chebyshev):
            self.epoch_weights[epoch] = self.objective.redraw()

    @contextmanager
    def peeking(self) -> Iterator[None]:
        """Queries in here are predictions of candidates, not evaluations: not charged, not traced."""
        self._peeking += 1
        self.evaluate_seen = self._not_recording  # swapped, not tested per query: the hot path stays short
        try:
            yield
        finally:
            self._peeking -= 1
            if not self._peeking:
                self.evaluate_seen = self._recording

    def _resolve(self, key: str, spec: object) -> tuple[float, float, float] | tuple[None, None, float]:
        energy = self.source.energy.get(key)
        if energy is None:
            energy = self.source.get(key, spec).energy
        if self._affine is None:
            a = b = None
        else:  # objective(acc) = a * acc + b in fractions; in the benchmark's unit b scales too
            a, b = self._affine(energy)
            b *= self.accuracy_scale
        entry = self.seen[key] = (a, b, energy)
        return entry

    def evaluate(self, key: str, val_acc: float, spec: object = None,
                 truth: Callable[[], tuple[float, float]] | None = None) -> float:
        """Objective of cell ``key`` whose true validation accuracy is ``val_acc`` (benchmark's unit).

        ``spec`` (NASLib spec) lets a missing cell be predicted; ``truth`` returns its true
        (train, test) accuracy from the benchmark, asked once per predicted cell for the trace.
        """
        if key not in self.seen:
            self._resolve(key, spec)
            cell = self.source.values[key]
            if truth is not None and cell.source == "predicted" and math.isnan(cell.test_acc):
                scale = self.accuracy_scale
                train, test = truth()
                self.source.set_accuracies(key, train / scale, val_acc / scale, test / scale)
        return self.evaluate_seen(key, val_acc)  # type: ignore[return-value]

    def _make_evaluate_seen(self, record: bool) -> Callable[[str, float], float | None]:
        """``evaluate_seen(key, val_acc)``: :meth:`evaluate` for a cell evaluated before, None for
        one never evaluated; ``record=False``: the variant used while peeking (nothing recorded).

        This is every repeated query of a search, so it is a closure over locals (no attribute
        lookups, no unit conversion, no tuple allocated): one dict lookup, ``a * acc + b`` and
        three appends.
        """
        seen_get, objective, scale = self.seen.get, self.objective, self.accuracy_scale
        keys, accs, values = self.keys.append, self.val_accs.append, self.objective_values.append

        def evaluate_seen(key: str, val_acc: float) -> float | None:
            entry = seen_get(key)
            if entry is None:
                return None
            a, b, energy = entry
            value = a * val_acc + b if a is not None else scale * objective(val_acc / scale, energy)
            if value - value != 0.0:  # NaN or ±inf: so was the accuracy (one subtraction: hot path)
                raise ValueError(f"objective needs a finite accuracy, got {val_acc!r} for {key}")
            if record:
                keys(key)
                accs(val_acc)
                values(value)
            return value

        return evaluate_seen

    def last_objective(self, key: str) -> float | None:
        """The objective (fraction) of the latest evaluation of ``key`` (None if never evaluated)."""
        keys = self.keys
        return next((self.objective_values[i] / self.accuracy_scale
                     for i in range(len(keys) - 1, -1, -1) if keys[i] == key), None)

    def last_evaluation(self) -> tuple[str, float] | tuple[None, None]:
        """Key and objective (fraction) of the latest evaluation (None, None before any)."""
        return (self.keys[-1], self.objective_values[-1] / self.accuracy_scale) if self.keys else (None, None)

    def _epochs(self) -> list[int]:
        """The search epoch of each evaluation (-1 before the first epoch began)."""
        epochs = [-1] * len(self.keys)
        for (epoch, start), (_, end) in zip(self._epoch_starts, self._epoch_starts[1:] + [(None, len(epochs))]):
            epochs[start:end] = [epoch] * (end - start)
        return epochs

    def end_epoch(self, incumbent_key: str | None, incumbent_objective: float | None) -> None:
        """Record the incumbent's energy, its source and objective and the search energy so far (errors.json)."""
        cell = self.source.get(incumbent_key) if incumbent_key is not None else None
        self.columns[self.source.column].append(math.nan if cell is None else cell.energy)
        self.columns["energy_source"].append(None if cell is None else cell.source)
        self.columns["objective"].append(math.nan if incumbent_objective is None else float(incumbent_objective))
        self.columns["search_energy_kwh"].append(self.budget.spent_kwh)
        self.columns["evaluations"].append(self.budget.evaluations)

    # ---------------------------------------------------------------- results
    def trace(self) -> pd.DataFrame:
        """One row per evaluation, in order: true accuracies, energy and its source, objective."""
        cols = ["epoch", "evaluation", "arch_key", "val_acc", "val_acc_mean", "test_acc", "train_acc",
                self.source.column, "energy_source", "energy_sd_kwh", "objective", "search_energy_kwh"]
        if isinstance(self.objective, objectives.Constraint):
            cols.append("feasible")
        if isinstance(self.objective, objectives.Chebyshev):
            cols += ["weight_acc", "weight_energy"]
        if not self.keys:
            return pd.DataFrame(columns=cols)
        scale = self.accuracy_scale
        epoch, key = self._epochs(), self.keys
        val, objective = [v / scale for v in self.val_accs], [o / scale for o in self.objective_values]
        cells = [self.source.values[k] for k in key]
        # the budget's own sums, in its order (SearchBudget.charge adds one evaluation at a time)
        spent = list(itertools.accumulate(self.seen[k][2] for k in key))
        observed: dict[str, list[float]] = {}
        for k, v in zip(key, val):
            observed.setdefault(k, []).append(v)
        # a predicted cell's accuracies are the benchmark's answers, not table means
        val_mean = [c.val_acc if c.source != "predicted" else float(np.mean(observed[k])) for k, c in zip(key, cells)]
        frame = pd.DataFrame({
            "epoch": epoch, "evaluation": range(len(key)), "arch_key": key, "val_acc": val,
            "val_acc_mean": val_mean, "test_acc": [c.test_acc for c in cells], "train_acc": [c.train_acc for c in cells],
            self.source.column: [c.energy for c in cells], "energy_source": [c.source for c in cells],
            "energy_sd_kwh": [c.energy_sd for c in cells], "objective": objective, "search_energy_kwh": spent})
        if isinstance(self.objective, objectives.Constraint):
            frame["feasible"] = frame[self.source.column] <= self.objective.limit_kwh
        if isinstance(self.objective, objectives.Chebyshev):
            w = [self.epoch_weights.get(e, (0.5, 0.5)) for e in epoch]
            frame["weight_acc"], frame["weight_energy"] = [a for a, _ in w], [b for _, b in w]
        return frame[cols]

    def front(self) -> dict:
        """Pareto front (mean val accuracy vs energy) of the distinct evaluated cells, and hypervolumes."""
        frame = self.trace()
        out = {"reference_point": {"error": self.reference_point[0], self.source.column: self.reference_point[1]},
               "objective": self.cfg.objective, "table": self.source.table_name, "epochs": self.source.epochs,
               "energy_dataset": self.source.dataset,
               "search_energy_kwh": self.budget.spent_kwh, "evaluations": self.budget.evaluations,
               "budget_kwh": self.budget.budget_kwh, "stopped_by_budget": self.stopped_early,
               "hypervolume_val": 0.0, "hypervolume_test": 0.0, "front": [],
               "energy_sources": {}, "prediction": None if self.source.predict is None else self.source.predict.describe(),
               "provenance": self.provenance}
        if frame.empty:
            return out
        cells = frame.drop_duplicates("arch_key")
        out["energy_sources"] = {str(k): int(v) for k, v in cells["energy_source"].value_counts().items()}
        acc, energy = cells["val_acc_mean"].to_numpy(), cells[self.source.column].to_numpy()
        mask = objectives.pareto_mask(acc, energy)
        front = cells[mask].sort_values(self.source.column)
        out["front"] = [{"arch_key": r.arch_key, "val_acc": float(r.val_acc_mean), "test_acc": float(r.test_acc),
                         self.source.column: float(getattr(r, self.source.column)),
                         "energy_source": r.energy_source} for r in front.itertuples()]
        out["hypervolume_val"] = objectives.hypervolume(acc, energy, self.reference_point)
        known = cells["test_acc"].notna().to_numpy()  # a predicted cell without benchmark test accuracy
        out["hypervolume_test"] = objectives.hypervolume(cells["test_acc"].to_numpy()[known], energy[known],
                                                         self.reference_point)
        out["hypervolume_test_cells"] = int(known.sum())
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
