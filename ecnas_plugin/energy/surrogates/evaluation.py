"""How good is a surrogate on cells it never saw: rank and error metrics, σ calibration, learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecnas_plugin.errors import SchemaError

from . import features as F
from .predictor import TARGET, WH_PER_KWH, Predictor, fit, measured_targets


def metrics(true_kwh: np.ndarray, mean_kwh: np.ndarray, sd_kwh: np.ndarray | None = None) -> dict[str, float]:
    """Kendall τ, Spearman ρ, R², MAE (Wh), and the share of true values inside ±1σ / ±2σ."""
    from scipy.stats import kendalltau, spearmanr

    t, p = np.asarray(true_kwh, float), np.asarray(mean_kwh, float)
    if len(t) != len(p) or len(t) < 3:
        raise ValueError(f"need at least 3 paired values, got {len(t)} and {len(p)}")
    err = p - t
    out = {"cells": int(len(t)), "kendall_tau": float(kendalltau(t, p)[0]), "spearman_rho": float(spearmanr(t, p)[0]),
           "r2": float(1 - np.sum(err**2) / np.sum((t - t.mean()) ** 2)),
           "mae_wh": float(np.mean(np.abs(err)) * WH_PER_KWH)}
    if sd_kwh is not None:
        sd = np.asarray(sd_kwh, float)
        out["within_1sd"] = float(np.mean(np.abs(err) <= sd))
        out["within_2sd"] = float(np.mean(np.abs(err) <= 2 * sd))
    return out


def evaluate(predictor: Predictor, frame: pd.DataFrame, index: F.CellIndex | None = None,
             rank_only: bool = False) -> dict[str, float]:
    """Metrics of ``predictor`` on the measured rows of ``frame`` (repeats averaged).

    Cells the model was trained on are left out (reported as ``excluded_training_cells``). Rows of
    another space are refused; rows of another campaign/budget/hardware/dataset than the
    predictor's are refused unless ``rank_only`` (then only τ and ρ are reported: MAE and R² would
    compare different campaigns). ``index`` resolves NB101 hashes (default: every known cell).
    """
    targets = measured_targets(frame)
    seen = set(predictor.training.get("arch_keys", ()))
    unseen = ~targets["arch_key"].isin(seen).to_numpy()
    excluded = int((~unseen).sum())
    targets = targets[unseen]
    c = predictor.context
    if frame["space"].iloc[0] != c.space:  # other features: not even ranks compare
        raise SchemaError(f"rows are of space {frame['space'].iloc[0]!r}; the model predicts {c.space!r}",
                          column="space")
    other = {col: v for col, v in (("campaign", c.campaign), ("epochs", c.epochs), ("hardware", c.hardware),
                                   ("dataset", c.dataset)) if frame[col].iloc[0] != v}
    if other and not rank_only:
        raise SchemaError(f"rows are of another {', '.join(other)} than the model's ({c.campaign}, {c.epochs} epochs, "
                          f"{c.hardware}, {c.dataset}): calibrate the model to them first, or ask for rank_only",
                          column=next(iter(other)))
    mean, sd = predictor.predict_keys(list(targets["arch_key"]), index)
    out = metrics(targets[TARGET].to_numpy(), mean, sd)
    if other:
        out = {k: out[k] for k in ("cells", "kendall_tau", "spearman_rho")}
    return {**out, "excluded_training_cells": excluded}


def split(frame: pd.DataFrame, test_fraction: float = 0.4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows by architecture (all repeats of a cell land on the same side)."""
    keys = np.array(sorted(frame["arch_key"].unique()))
    rng = np.random.default_rng(seed)
    test = set(rng.choice(keys, int(round(len(keys) * test_fraction)), replace=False))
    mask = frame["arch_key"].isin(test)
    return frame[~mask], frame[mask]


def training_order(train: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """The cells of ``train`` in the random order training sets are taken from: the first n are the
    n-cell set, so sets of growing size are nested. Drawn with ``seed + 1``, apart from ``split``'s draw."""
    return np.random.default_rng(seed + 1).permutation(sorted(train["arch_key"].unique()))


def holdout(frame: pd.DataFrame, test_keys: Sequence[str], train_cells: int = 1000, model: str = "additive",
            seed: int = 0, index: F.CellIndex | None = None, **params: Any) -> tuple[Predictor, dict[str, float]]:
    """A structural hold-out: fit on ``train_cells`` random cells (seeded) of those not in
    ``test_keys``, score on the ``test_keys`` cells. Returns (predictor, metrics)."""
    held = frame["arch_key"].isin(set(test_keys))
    rest = frame[~held]
    keys = training_order(rest, seed)[:train_cells]
    predictor = fit(rest[rest["arch_key"].isin(keys)], model, index=index, seed=seed, **params)
    return predictor, evaluate(predictor, frame[held], index)


def nb101_regions(frame: pd.DataFrame, index: F.CellIndex | None = None) -> dict[str, list[str]]:
    """Structural hold-outs of an NB101 table (name → the cells held out), each a region the rest
    of the table does not cover: 5-vertex cells with >= 2 conv3x3 ops; the 20% of cells with the
    most and with the fewest parameters; cells of fewer than 5 vertices (the model then sees only
    5-vertex cells)."""
    keys = sorted(frame["arch_key"].unique())
    batch = (index or F.default_cell_index()).batch(keys)
    X, names = F.nb101_features(batch), F.nb101_feature_names()
    vertices, conv3 = X[:, names.index("vertices")], X[:, names.index("n_conv3x3")]
    params = F.size_counts(batch)["params"]
    keys = np.array(keys)
    return {
        "5 vertices, >=2 conv3x3": list(keys[(vertices == 5) & (conv3 >= 2)]),
        "params top 20%": list(keys[params >= np.quantile(params, 0.8)]),
        "params bottom 20%": list(keys[params <= np.quantile(params, 0.2)]),
        "< 5 vertices (trained on 5)": list(keys[vertices < 5]),
    }


def learning_curve(frame: pd.DataFrame, sizes: Sequence[int] = (50, 100, 200, 500, 1000, 1500),
                   model: str = "lightgbm", test_fraction: float = 0.4, seed: int = 0,
                   index: F.CellIndex | None = None, **params: Any) -> pd.DataFrame:
    """Held-out metrics against training-set size; one fixed test set, nested random training sets."""
    train, test = split(frame, test_fraction, seed)
    keys = training_order(train, seed)
    too_big = [n for n in sizes if n > len(keys)]
    if too_big:
        raise ValueError(f"training sizes {too_big} exceed the {len(keys)} cells left for training")
    rows = []
    for n in sizes:
        predictor = fit(train[train["arch_key"].isin(keys[:n])], model, index=index, seed=seed, **params)
        rows.append({"train_cells": n, **evaluate(predictor, test, index)})
    return pd.DataFrame(rows)


def plot_learning_curve(curve: pd.DataFrame, path: Path, title: str = "Energy surrogate learning curve") -> Path:
    """Kendall τ and MAE (Wh) against training cells, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["train_cells"], curve["kendall_tau"], "o-", color="tab:blue", label="Kendall τ")
    ax.set_xscale("log")
    ax.set_xlabel("training cells")
    ax.set_ylabel("Kendall τ (held out)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(curve["train_cells"], curve["mae_wh"], "s--", color="tab:red", label="MAE")
    ax2.set_ylabel("MAE (Wh)", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
