"""Train the shipped NB101 energy surrogate (``default/``) on EC-NAS's measured 5-vertex data.

    python -m ecnas_plugin.energy.surrogates.train_default [--out DIR]

Holds out 40% of the 2,532 cells (by a fixed seed), trains a 10-member additive surrogate
(``models.AdditiveSurrogate``: ridge on the network's additive cost terms times a LightGBM
correction) on 1,000 of the rest, and stores the held-out metrics and the cross-campaign rank
correlation on the 7-vertex campaign in the manifest, with the split and whether issue 4's goals
are met. Deterministic for a given seed.

Why this model: its settings (ridge 0.1; 2-leaf L1 trees, 600 rounds at 0.05, 20 cells per leaf)
were chosen by 5-fold out-of-fold MAE inside the 1,000 training cells, among 24 tree settings and
ridge strengths, with and without relative weights. Trees alone (the earlier default: held-out τ
0.8955, MAE 0.851 Wh), log-energy targets, Huber/L1 losses, extra structural features, monotone
constraints, an MLP and LightGBM+MLP blends all did worse: trees approximate a quantity that adds
up over layers only coarsely. Training time is predicted to 0.7%, but the run's power is largely
not predictable from the cell (held-out R² ~0.3) and explains much of the residual: the MAE goal (≤
0.8 Wh) looks limited by measurement noise, not by the model. EC-NAS ran up to 8 trainings at once
on one machine whose CPU/DRAM counters are shared: cells measured within the same ~15 minutes share
36% of the held-out log residual. The 91 four-vertex cells measured in both EC-NAS campaigns on the
same GPU model differ by a log-energy sd of 0.062 (training time: 0.007), about this model's
held-out log error, and on the held-out ones the surrogate is closer to the 5v value than the
3-repeat 4v measurement is. Even each held-out cell's *measured* training time times a power model
reaches only MAE 0.78 Wh, and this model trained on all 2,532 cells, the held-out ones included,
still misses those cells by MAE 0.79 Wh (out-of-fold over all cells: 0.805; 30 bagged members, a
median of members, or a Gaussian-process correction in place of the trees do no better). Over 12
random splits the held-out MAE is 0.804 ± 0.020 Wh (τ 0.901 ± 0.003): the goal sits inside the
split-to-split spread. ``benchmarks/bench_surrogate.py`` prints these diagnostics.

σ (issue 15 item 3; ``base.Surrogate.fit_sd``): the σ was a constant ~0.94 Wh from 15 to 64 Wh and
±2σ held 80% of the held-out 5-vertex cells with >= 2 conv3x3 ops. It is now relative to the
prediction and grows with the distance from the training cells and with the members' jackknife
disagreement, calibrated on out-of-fold and extrapolation-fold residuals. The shipped members were
kept (``--recalibrate``: the mean predictions did not move; a fresh ``train`` gives the same
members up to 1e-10 relative in the ridge coefficients). Held out (this recipe, 10 folds),
±1σ / ±2σ: random split 0.790 / 0.975; 5-vertex cells with >= 2 conv3x3 0.761 / 0.973; params top
20% 0.759 / 0.994; params bottom 20% 0.705 / 0.948; cells of < 5 vertices, trained on 5-vertex
cells only, 0.505 / 0.967 (the model is 17% high there on average, and the σ widens for it). The
manifest's ``metrics`` records them. Known limit: a fit on few cells that extrapolates badly is
not always caught (400 cells, 3 folds, seed 0, params top 20%: MAE 3.7 Wh, ±2σ 0.76; seeds 1-2
and every 1,000-cell fit tried: >= 0.92).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


MODEL = "additive"
TRAIN_CELLS = 1000
TEST_FRACTION = 0.4
SEED = 0
GOALS = {"kendall_tau": 0.90, "mae_wh": 0.8}  # issue 4, held-out 5v 4-epoch energies, <= 1,000 cells


def train(out: Path, train_cells: int = TRAIN_CELLS, seed: int = SEED, recalibrate: bool = False):
    """Fit, evaluate and save the default predictor; returns it.

    ``recalibrate``: keep the members of the model saved in ``out`` and only refit its σ (so its
    mean predictions stay as they are); it must have been trained on this recipe's cells.
    """
    from ecnas_plugin.api import load_table

    from .evaluation import evaluate, split, training_order
    from .predictor import DEFAULT_DIR, Predictor, fit

    table = load_table("ecnas-5v")
    frame = table.frame
    train_rows, test_rows = split(frame, TEST_FRACTION, seed)
    keys = training_order(train_rows, seed)[:train_cells]
    chosen = train_rows[train_rows["arch_key"].isin(keys)]
    if recalibrate:
        predictor = Predictor.load(out or DEFAULT_DIR)
        if sorted(predictor.training["arch_keys"]) != sorted(keys):
            raise ValueError("the saved model was trained on other cells than this recipe's; train it afresh")
        targets = chosen.groupby("arch_key", sort=True)["train_energy_kwh"].mean()
        X, _ = predictor.features.of_keys(list(predictor.training["arch_keys"]))
        y = targets.loc[predictor.training["arch_keys"]].to_numpy() * 1000.0
        predictor.model.fit_sd(X, y)
    else:
        predictor = fit(chosen, MODEL, source_table="ecnas-5v", seed=seed, folds=10)
    # what the predicted energies inherit from the table they were learned from
    predictor.training.update({"pue": table.manifest.pue, "components": list(table.manifest.components)})
    held = evaluate(predictor, test_rows)
    predictor.metrics = {
        "held_out_ecnas_5v": held,
        "held_out_split": {"table": "ecnas-5v", "by": "arch_key", "test_fraction": TEST_FRACTION,
                           "seed": seed, "train_cells": len(keys),
                           "train_selection": "first train_cells of permutation(seed + 1) of the other cells"},
        "goals": {"kendall_tau_min": GOALS["kendall_tau"], "mae_wh_max": GOALS["mae_wh"],
                  "kendall_tau_met": held["kendall_tau"] >= GOALS["kendall_tau"],
                  "mae_wh_met": held["mae_wh"] <= GOALS["mae_wh"]},
        "rank_on_ecnas_7v": evaluate(predictor, load_table("ecnas-7v").frame, rank_only=True),
        "sd_structural_holdouts": structural_holdouts(frame, train_cells, seed),
    }
    predictor.save(out or DEFAULT_DIR)
    return predictor


def structural_holdouts(frame, train_cells: int = TRAIN_CELLS, seed: int = SEED) -> dict[str, dict]:
    """This recipe (``train_cells`` cells, 10 folds) scored on regions it never saw
    (``evaluation.nb101_regions``): what the σ is worth off the training distribution."""
    from .evaluation import holdout, nb101_regions

    return {name: holdout(frame, keys, train_cells, MODEL, seed, folds=10)[1]
            for name, keys in nb101_regions(frame).items()}


def main(argv: list[str] | None = None) -> int:
    from .predictor import DEFAULT_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--train-cells", type=int, default=TRAIN_CELLS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--recalibrate", action="store_true",
                        help="keep the saved model's members, refit only its σ (mean predictions unchanged)")
    args = parser.parse_args(argv)
    predictor = train(args.out, args.train_cells, args.seed, recalibrate=args.recalibrate)
    print(json.dumps(predictor.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
