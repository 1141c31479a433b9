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


def on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray, before: float = np.nan) -> np.ndarray:
    """Step function y(x): the last value at or before each grid point (``before`` ahead of the
    first x; the last value carried on after the last, as a finished run keeps what it found)."""
    idx = np.searchsorted(x, grid, side="right") - 1
    return np.where(idx >= 0, y[np.clip(idx, 0, None)], before)


def seed_band(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and interquartile band over seeds of curves on one grid. Each seed's curve is
    defined at every grid point (see :func:`on_grid`), so the median of monotone curves stays
    monotone (a mean over the seeds present at each point would dip as seeds join)."""
    stacked = np.vstack(curves)
    return np.median(stacked, axis=0), np.quantile(stacked, 0.25, axis=0), np.quantile(stacked, 0.75, axis=0)


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median over seeds (NaN for fewer than 2)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(len(values), size=(resamples, len(values)))], axis=1)
    # inverted_cdf picks resampled medians themselves: no interpolation across an infinite one
    return tuple(float(q) for q in np.quantile(medians, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf"))


def paired_test(values: pd.Series, reference: pd.Series) -> tuple[int, int, float]:
    """(seeds better than the reference, seeds paired, two-sided Wilcoxon signed-rank p-value),
    pairing by index (the seed). p is 1 where every difference is zero, NaN with no pair."""
    from scipy.stats import wilcoxon

    diff = (values - reference.reindex(values.index)).dropna()
    if diff.empty:
        return 0, 0, float("nan")
    wins = int((diff > 0).sum())
    if (diff == 0).all():
        return wins, len(diff), 1.0
    return wins, len(diff), float(wilcoxon(diff.to_numpy()).pvalue)


def median_reach(energies: np.ndarray) -> float:
    """Median over seeds of the energy to reach a target, seeds that never did counting as
    infinite: NaN where fewer than half reached it (never inf in a table)."""
    value = float(np.median(np.where(np.isfinite(energies), energies, np.inf)))
    return value if np.isfinite(value) else float("nan")


def summarise(runs: pd.DataFrame, traces: dict[str, pd.DataFrame], norms: dict[str, Normalisation],
              best_hv: dict[str, float], energy_aware: dict[tuple[str, str], bool] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run metrics and per-group summary: medians over seeds with bootstrap CIs, a paired
    test against random search, the rank within each (space, budget), energy to a target.

    A group is (space, budget, optimizer, objective). ``hv_ratio`` is the run's normalised
    hypervolume over the space's best possible; ``hv30_ratio`` the same after its first 30
    evaluations. The energy columns compare with random search on the plain accuracy objective
    of the same space and budget: ``target_acc`` is its median final accuracy;
    ``energy_to_target_kwh`` the median over seeds of the search energy each run needed to
    reach it (NaN where fewer than half the seeds did); random search's own figure is its median
    total search energy (what it spends to deliver that accuracy), with a bootstrap CI of the
    median for the others (NaN bounds: not reached). ``saving_vs_rs`` is 1 - a
    group's figure / random search's, ``saving_vs_best_blind`` the same against the best
    energy-blind group (lowest figure among those that ignore energy: ``energy_aware`` maps
    (optimizer, objective) to whether it uses energy). Groups are ranked by median ``hv_ratio``.
    """
    energy_aware = energy_aware or {}
    per_run = runs.copy()
    per_run["hv"] = [normalised_hv(traces[r][ACC].to_numpy(), traces[r][ENERGY].to_numpy(), norms[s])
                     for r, s in zip(runs["run_id"], runs["space"])]
    per_run["hv_ratio"] = per_run["hv"] / per_run["space"].map(best_hv)
    per_run["hv30_ratio"] = [normalised_hv(traces[r][ACC].to_numpy()[:30], traces[r][ENERGY].to_numpy()[:30], norms[s])
                             / best_hv[s] if len(traces[r]) >= 30 else np.nan
                             for r, s in zip(runs["run_id"], runs["space"])]
    per_run["front_size"] = [len(front(traces[r])) for r in runs["run_id"]]
    per_run["energy_aware"] = [bool(energy_aware.get((o, j), j not in ("accuracy",)))
                               for o, j in zip(per_run["optimizer"], per_run["objective"])]
    keys = ["space", "budget", "optimizer", "objective"]
    rs = per_run[(per_run["optimizer"] == "random") & (per_run["objective"] == "accuracy")]
    target = rs.groupby(["space", "budget"])["best_true_test_acc"].median()
    rs_total = rs.groupby(["space", "budget"])["search_energy_kwh"].median()
    per_run["target_acc"] = [target.get((s, b), np.nan) for s, b in zip(per_run["space"], per_run["budget"])]
    per_run["energy_to_target_kwh"] = [energy_to_reach(traces[r], t) if np.isfinite(t) else np.nan
                                       for r, t in zip(per_run["run_id"], per_run["target_acc"])]
    rows = []
    for group, grp in per_run.groupby(keys, sort=False):
        space, budget, optimizer, objective = group
        is_rs = optimizer == "random" and objective == "accuracy"
        ref = rs[(rs["space"] == space) & (rs["budget"] == budget)].set_index("seed")
        wins, paired, p = (0, 0, np.nan) if is_rs or ref.empty else paired_test(grp.set_index("seed")["hv"], ref["hv"])
        reach = grp["energy_to_target_kwh"].to_numpy(dtype=float)
        rows.append({
            "space": space, "budget": budget, "optimizer": optimizer, "objective": objective,
            "energy_aware": bool(grp["energy_aware"].iloc[0]), "seeds": len(grp),
            "evaluations": float(grp["evaluations"].median()),
            "hv_ratio_median": float(grp["hv_ratio"].median()),
            **dict(zip(("hv_ratio_ci_low", "hv_ratio_ci_high"), bootstrap_ci(grp["hv_ratio"]))),
            "hv30_ratio_median": float(grp["hv30_ratio"].median()),
            "hv_mean": float(grp["hv"].mean()),
            "final_acc_median": float(grp["best_true_test_acc"].median()),
            **dict(zip(("final_acc_ci_low", "final_acc_ci_high"), bootstrap_ci(grp["best_true_test_acc"]))),
            "search_kwh_median": float(grp["search_energy_kwh"].median()),
            "target_acc": target.get((space, budget), np.nan),
            "reached_target": int(np.isfinite(reach).sum()),
            "energy_to_target_kwh": (rs_total.get((space, budget), np.nan) if is_rs else median_reach(reach)),
            # seeds that never reached the target count as infinite; an infinite bound is NaN ("not reached")
            **dict(zip(("energy_to_target_ci_low", "energy_to_target_ci_high"),
                       (np.nan, np.nan) if is_rs else (v if np.isfinite(v) else np.nan for v in bootstrap_ci(
                           np.where(np.isfinite(reach), reach, np.inf))))),
            "hv_wins_vs_rs": wins, "hv_paired_seeds": paired, "hv_p_vs_rs": p,
        })
    summary = pd.DataFrame(rows)
    summary["rank"] = summary.groupby(["space", "budget"])["hv_ratio_median"].rank(ascending=False, method="min")
    rs_cost = np.array([rs_total.get((s, b), np.nan) for s, b in zip(summary["space"], summary["budget"])])
    summary["saving_vs_rs"] = 1.0 - summary["energy_to_target_kwh"] / rs_cost
    blind = summary[~summary["energy_aware"]].groupby(["space", "budget"])["energy_to_target_kwh"].min()
    summary["saving_vs_best_blind"] = 1.0 - summary["energy_to_target_kwh"] / np.array(
        [blind.get((s, b), np.nan) for s, b in zip(summary["space"], summary["budget"])])
    return per_run, summary.sort_values(["space", "budget", "rank"], kind="stable").reset_index(drop=True)
