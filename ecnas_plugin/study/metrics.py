"""Study metrics: Pareto fronts, normalised hypervolume, HV curves, attainment surfaces, energy to target.

Objectives: true accuracy (test accuracy averaged over the table's repeats, higher is better) and
true training energy (kWh averaged over repeats, lower is better) of every evaluated cell.

Hypervolume reference point, declared: both objectives are normalised to [0, 1] over the whole
search space (error = 1 - accuracy between the best and worst cell of the space; energy between
the cheapest and the dearest cell), and the reference point is (1.1, 1.1) in those units. So the
space's ideal point is (0, 0), its nadir (1, 1), every cell of the space counts (the margin lets
the extreme cells of a front add volume) and both objectives weigh the same. Values are also
given as a fraction of the space's own best possible hypervolume (its true Pareto front).

Why not EC-NAS's raw-unit reference point [0.5 accuracy, 1e6 kWh]: training energies in these
spaces are 0.005-0.9 kWh, a millionth of the 1e6 kWh extent of the box, so the volume is
(acc - 0.5) * ~1e6 for any front: it ranks fronts by their best accuracy alone and energy moves it
in the sixth significant digit. And with 0.5 as the accuracy bound, every cell below 50%
accuracy (most of the 5-vertex space at 4 epochs, median 44%) contributes nothing.

Pareto fronts and hypervolumes come from :mod:`ecnas_plugin.objectives` (moocore underneath);
attainment surfaces from moocore's EAF. Nothing here computes a hypervolume by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

from ecnas_plugin.objectives import hypervolume, pareto_mask
from ecnas_plugin.search.space import TabularSpace

REFERENCE = (1.1, 1.1)  # normalised (error, energy)
ACC = "true_test_acc"
ENERGY = "true_energy_kwh"


@dataclass(frozen=True)
class Normalisation:
    """Maps (accuracy, kWh) of one space onto [0, 1]² minimisation units."""

    space: str
    acc_min: float
    acc_max: float
    energy_min: float
    energy_max: float

    @classmethod
    def of_space(cls, space: TabularSpace) -> Normalisation:
        return cls(space.name, float(space.true_test_acc.min()), float(space.true_test_acc.max()),
                   float(space.true_energy_kwh.min()), float(space.true_energy_kwh.max()))

    def error(self, acc: np.ndarray) -> np.ndarray:
        return (self.acc_max - np.asarray(acc, dtype=float)) / (self.acc_max - self.acc_min)

    def energy(self, energy_kwh: np.ndarray) -> np.ndarray:
        return (np.asarray(energy_kwh, dtype=float) - self.energy_min) / (self.energy_max - self.energy_min)

    def to_raw(self, error_n: np.ndarray, energy_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Back to (accuracy, kWh), e.g. to draw attainment surfaces in real units."""
        acc = self.acc_max - np.asarray(error_n) * (self.acc_max - self.acc_min)
        return acc, self.energy_min + np.asarray(energy_n) * (self.energy_max - self.energy_min)


def normalised_hv(acc: np.ndarray, energy_kwh: np.ndarray, norm: Normalisation) -> float:
    """Hypervolume of the points in normalised units w.r.t. :data:`REFERENCE`."""
    # objectives.hypervolume works on (1 - acc, energy); hand it the normalised error as 1 - acc.
    return hypervolume(1.0 - norm.error(acc), norm.energy(energy_kwh), reference=REFERENCE)


def space_hv(space: TabularSpace, norm: Normalisation) -> float:
    """The best hypervolume any search can reach: that of every cell of the space."""
    return normalised_hv(space.true_test_acc, space.true_energy_kwh, norm)


def front(trace: pd.DataFrame) -> pd.DataFrame:
    """The evaluated points (configuration, budget) on the run's Pareto front (true accuracy vs
    true energy), by energy."""
    cells = trace.drop_duplicates(["arch_key", "epochs"])
    mask = pareto_mask(cells[ACC].to_numpy(), cells[ENERGY].to_numpy())
    return cells[mask].sort_values(ENERGY)


def hv_curve(trace: pd.DataFrame, norm: Normalisation) -> np.ndarray:
    """Normalised hypervolume of the first k evaluations, k = 1..len(trace)."""
    acc = trace[ACC].to_numpy()
    energy = trace[ENERGY].to_numpy()
    out = np.empty(len(trace))
    keep = np.zeros(0, dtype=int)  # indices of the current front: HV of it equals HV of all so far
    for k in range(len(trace)):
        cand = np.append(keep, k)
        keep = cand[pareto_mask(acc[cand], energy[cand])]
        out[k] = normalised_hv(acc[keep], energy[keep], norm)
    return out


def energy_to_reach(trace: pd.DataFrame, target_acc: float) -> float:
    """Cumulative search energy when the accuracy incumbent first reaches ``target_acc`` (inf if never)."""
    hit = np.flatnonzero(trace["best_true_test_acc"].to_numpy() >= target_acc - 1e-12)
    return float(trace["search_energy_kwh"].iloc[hit[0]]) if len(hit) else float("inf")


def attainment(fronts: list[pd.DataFrame], norm: Normalisation, percentiles=(10, 50, 90)) -> dict[int, np.ndarray]:
    """Empirical attainment surfaces (moocore.eaf) of several runs' fronts, in (accuracy, kWh).

    Returns percentile -> points (accuracy, kWh) of the surface, sorted by energy. The 50% surface
    is what half of the runs reached or beat.
    """
    pts, sets = [], []
    for i, f in enumerate(fronts):
        pts.append(np.column_stack([norm.error(f[ACC]), norm.energy(f[ENERGY])]))
        sets.append(np.full(len(f), i + 1))
    surf = moocore.eaf(np.vstack(pts), np.concatenate(sets), percentiles=list(percentiles))
    out = {}
    for p in percentiles:
        rows = surf[np.isclose(surf[:, -1], p)]
        acc, energy = norm.to_raw(rows[:, 0], rows[:, 1])
        order = np.argsort(energy)
        out[p] = np.column_stack([acc[order], energy[order]])
    return out


def on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Step function y(x) (last value at or before each grid point; NaN before the first x)."""
    idx = np.searchsorted(x, grid, side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)
    return out


def summarise(runs: pd.DataFrame, traces: dict[str, pd.DataFrame], norms: dict[str, Normalisation],
              best_hv: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run metrics and per-group summary (mean ± sd over seeds).

    A group is (space, budget, optimizer, objective). The energy-saving columns compare with
    random search on the plain accuracy objective of the same space and budget: ``target_acc`` is
    its final accuracy (mean over seeds); ``energy_to_target_kwh`` the median over seeds of the
    search energy each run needed to reach it (inf where fewer than half the seeds reach it);
    ``saving_vs_rs_total`` is 1 - that / random search's median total search energy.
    """
    per_run = runs.copy()
    per_run["hv"] = [normalised_hv(traces[r][ACC].to_numpy(), traces[r][ENERGY].to_numpy(), norms[s])
                     for r, s in zip(runs["run_id"], runs["space"])]
    per_run["hv_ratio"] = per_run["hv"] / per_run["space"].map(best_hv)
    per_run["front_size"] = [len(front(traces[r])) for r in runs["run_id"]]
    keys = ["space", "budget", "optimizer", "objective"]
    rs = per_run[(per_run["optimizer"] == "random") & (per_run["objective"] == "accuracy")]
    target = rs.groupby(["space", "budget"])["best_true_test_acc"].mean()
    rs_total = rs.groupby(["space", "budget"])["search_energy_kwh"].median()
    per_run["target_acc"] = [target.get((s, b), np.nan) for s, b in zip(per_run["space"], per_run["budget"])]
    per_run["energy_to_target_kwh"] = [energy_to_reach(traces[r], t) if np.isfinite(t) else np.nan
                                       for r, t in zip(per_run["run_id"], per_run["target_acc"])]
    g = per_run.groupby(keys, sort=False)
    summary = pd.DataFrame({
        "seeds": g.size(),
        "evaluations": g["evaluations"].mean(),
        "hv_mean": g["hv"].mean(), "hv_sd": g["hv"].std(ddof=1),
        "hv_ratio_mean": g["hv_ratio"].mean(),
        "final_acc_mean": g["best_true_test_acc"].mean(), "final_acc_sd": g["best_true_test_acc"].std(ddof=1),
        "search_kwh_median": g["search_energy_kwh"].median(),
        "reached_target": g["energy_to_target_kwh"].apply(lambda v: float(np.mean(np.isfinite(v)))),
        "energy_to_target_kwh": g["energy_to_target_kwh"].median(),
    }).reset_index()
    summary["target_acc"] = [target.get((s, b), np.nan) for s, b in zip(summary["space"], summary["budget"])]
    rs_tot = np.array([rs_total.get((s, b), np.nan) for s, b in zip(summary["space"], summary["budget"])])
    summary["saving_vs_rs_total"] = 1.0 - summary["energy_to_target_kwh"] / rs_tot
    # HV difference to random search at equal evaluations, paired by seed.
    rs_hv = rs.set_index(["space", "budget", "seed"])["hv"]
    per_run["hv_minus_rs"] = [h - rs_hv.get((s, b, seed), np.nan) for h, s, b, seed in
                              zip(per_run["hv"], per_run["space"], per_run["budget"], per_run["seed"])]
    g = per_run.groupby(keys, sort=False)
    summary["hv_wins_vs_rs"] = g["hv_minus_rs"].apply(lambda d: f"{int((d > 0).sum())}/{int(d.notna().sum())}").values
    return per_run, summary
