"""Epoch scaling: energy at a larger budget from the energy measured (or predicted) at a small one.

EC-NAS filled its 12/36/108-epoch energies by multiplying the 4-epoch value (``E_e = E_4 · e/4``).
The 4-vertex table measured every budget, and shows that a 4-epoch run carries extra fixed cost
(start-up, warm-up of the first epoch), so linear scaling overestimates by 10–16%. The model here
lets the per-epoch energy after the base budget be affine in the base energy:

    E_e = E_b + (e − b) · (α + β · E_b)        (b = base budget, energies in Wh)

two parameters fitted by least squares on relative error over every measured budget above b.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ecnas_plugin.errors import SchemaError

WH_PER_KWH = 1000.0


def budgets(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured energy in Wh per cell (rows) and budget (columns), repeats averaged; one campaign."""
    measured = frame[frame["source"] == "measured"]
    if measured["campaign"].nunique() != 1 or measured["hardware"].nunique() != 1:
        raise SchemaError("epoch scaling is fitted within one campaign and hardware; got "
                          f"{sorted(measured['campaign'].unique())} / {sorted(measured['hardware'].unique())}",
                          column="campaign")
    return measured.pivot_table(index="arch_key", columns="epochs", values="train_energy_kwh",
                                aggfunc="mean") * WH_PER_KWH


@dataclass(frozen=True)
class EpochScaling:
    """``E_e = E_b + (e − b)(α + β E_b)`` in Wh; ``linear()`` is EC-NAS's ``E_b · e / b``."""

    alpha_wh: float
    beta: float
    base_epochs: int = 4

    @classmethod
    def linear(cls, base_epochs: int = 4) -> EpochScaling:
        return cls(alpha_wh=0.0, beta=1.0 / base_epochs, base_epochs=base_epochs)

    @classmethod
    def fit(cls, frame: pd.DataFrame, base_epochs: int = 4) -> EpochScaling:
        """Fit α, β on a table with measured rows at ``base_epochs`` and at larger budgets."""
        wide = budgets(frame)
        if base_epochs not in wide or len([e for e in wide.columns if e > base_epochs]) == 0:
            raise SchemaError(f"need measured rows at {base_epochs} epochs and at a larger budget; table has "
                              f"budgets {list(wide.columns)}", column="epochs")
        rows, targets, weights = [], [], []
        base = wide[base_epochs]
        for e in (c for c in wide.columns if c > base_epochs):
            ok = wide[e].notna() & base.notna()
            d = e - base_epochs
            rows.append(np.stack([np.full(ok.sum(), d), d * base[ok]], axis=1))
            targets.append((wide[e] - base)[ok])
            weights.append(1.0 / wide[e][ok])  # relative error
        A, y, w = np.concatenate(rows), np.concatenate(targets), np.concatenate(weights)
        (alpha, beta), *_ = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)
        return cls(alpha_wh=float(alpha), beta=float(beta), base_epochs=base_epochs)

    def scale(self, base_energy_kwh: np.ndarray | float, epochs: int | np.ndarray) -> np.ndarray:
        """Energy (kWh) at ``epochs`` from the energy (kWh) at ``base_epochs``."""
        e_b = np.asarray(base_energy_kwh, float) * WH_PER_KWH
        e = np.asarray(epochs, float)
        if (e < self.base_epochs).any():
            raise ValueError(f"epoch scaling only extrapolates upwards from {self.base_epochs} epochs")
        return (e_b + (e - self.base_epochs) * (self.alpha_wh + self.beta * e_b)) / WH_PER_KWH

    def to_dict(self) -> dict:
        return asdict(self)


def scaling_errors(frame: pd.DataFrame, base_epochs: int = 4, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """Per budget: error of linear scaling and of :class:`EpochScaling` (fitted out-of-fold over cells).

    Columns: epochs, cells, mean ratio measured/linear, MAPE and MAE (Wh) of each method.
    """
    wide = budgets(frame)
    keys = np.array(wide.index)
    fold = np.random.default_rng(seed).permutation(len(keys)) % folds
    fitted = pd.DataFrame(index=wide.index, columns=wide.columns, dtype=float)
    measured = frame[frame["source"] == "measured"]
    for k in range(folds):
        model = EpochScaling.fit(measured[measured["arch_key"].isin(keys[fold != k])], base_epochs)
        test = keys[fold == k]
        for e in wide.columns:
            fitted.loc[test, e] = model.scale(wide.loc[test, base_epochs] / WH_PER_KWH, e) * WH_PER_KWH
    linear = EpochScaling.linear(base_epochs)
    rows = []
    for e in (c for c in wide.columns if c > base_epochs):
        true = wide[e]
        lin = linear.scale(wide[base_epochs] / WH_PER_KWH, e) * WH_PER_KWH
        rows.append({"epochs": int(e), "cells": int(true.notna().sum()),
                     "measured_over_linear": float((true / lin).mean()),
                     "linear_mape": float((np.abs(lin - true) / true).mean()),
                     "linear_mae_wh": float(np.abs(lin - true).mean()),
                     "fitted_mape": float((np.abs(fitted[e] - true) / true).mean()),
                     "fitted_mae_wh": float(np.abs(fitted[e] - true).mean())})
    return pd.DataFrame(rows)
