"""Learning-curve surrogates side by side on held-out configurations of the joint space.

    python benchmarks/bench_curve_surrogate.py [--table nb201-joint-flowers17-cpu] [--splits 3]

Splits are by configuration (never by epoch): a share of the table's configurations is held out,
each model fits on the rest and predicts the held-out curves. Models: ``bezier`` (Bézier curves,
control points predicted by an ensemble), ``gbm-epoch`` (one LightGBM with the epoch as an input,
JAHS-Bench-201's approach) and ``pow3`` (a parametric curve fitted to each held-out configuration's
own first 3 epochs and extrapolated: it sees data the others do not). Printed per model, as the
median over the splits: final-epoch Kendall τ and MAE of validation accuracy, whole-curve RMSE,
energy τ and MAPE at the budget, ±1σ/±2σ coverage of the final accuracy and energy, and fit time.
Then the learning curve over training-set sizes (bezier and gbm-epoch), and the goal check:
Bézier at least matches the better baseline on final-epoch τ and beats both on curve RMSE.
The energies of the committed table are codecarbon ESTIMATES (a power model), so the energy
columns measure how well the models learn that estimate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

MODELS = ("bezier", "gbm-epoch", "pow3")
COLUMNS = ("final_acc_kendall_tau", "final_acc_mae", "curve_rmse", "energy_kendall_tau", "energy_mape",
           "acc_coverage_1sd", "acc_coverage_2sd", "energy_coverage_1sd", "energy_coverage_2sd")
SHORT = ("τ final", "MAE final", "curve RMSE", "E τ", "E MAPE", "acc ±1σ", "acc ±2σ", "E ±1σ", "E ±2σ")


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="nb201-joint-flowers17-cpu")
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    args = parser.parse_args()

    from ecnas_plugin.api import load_table
    from ecnas_plugin.energy.surrogates.curves import CurvePredictor, curves_of, evaluate_curves, split_curves

    table = load_table(args.table)
    curves = curves_of(table)
    print(f"{args.table}: {len(curves.keys)} configurations, epochs 1..{curves.epochs[-1]}, energy "
          f"{table.sources_text()}; {args.splits} splits holding out {args.test_fraction:.0%} of the configurations")
    results: dict[str, list[dict]] = {m: [] for m in MODELS}
    degrees = []
    for seed in range(args.splits):
        train, test = split_curves(curves, args.test_fraction, seed)
        held_out = curves.subset(test)
        for model in MODELS:
            started = time.perf_counter()
            predictor = CurvePredictor.fit(table, model, seed=seed, only=[curves.keys[i] for i in train])
            fit_s = time.perf_counter() - started
            results[model].append({**evaluate_curves(predictor, held_out), "fit_s": fit_s})
            if model == "bezier":
                degrees.append(predictor.model.degree)
    print(f"\nmedian over {args.splits} splits ({len(test)} held-out configurations each; Bézier degree chosen by "
          f"validation: {degrees})")
    print(f"{'model':<10} " + " ".join(f"{c:>10}" for c in SHORT) + f" {'fit s':>7}")
    med = {m: {c: _median([r[c] for r in rs]) for c in (*COLUMNS, "fit_s")} for m, rs in results.items()}
    for model in MODELS:
        print(f"{model:<10} " + " ".join(f"{_fmt(med[model][c]):>10}" for c in COLUMNS)
              + f" {med[model]['fit_s']:7.1f}")
    print("(pow3 fits each held-out configuration's own first 3 epochs: it has no σ and sees data the others do not)")

    print("\nlearning curve over training-set sizes (split 0, the same held-out configurations)")
    train, test = split_curves(curves, args.test_fraction, 0)
    held_out = curves.subset(test)
    print(f"{'size':>6} {'model':<10} {'τ final':>8} {'MAE final':>10} {'curve RMSE':>11} {'E MAPE':>8}")
    for size in [s for s in args.sizes if s <= len(train)]:
        chosen = np.random.default_rng(size).permutation(train)[:size]
        for model in ("bezier", "gbm-epoch"):
            m = evaluate_curves(CurvePredictor.fit(table, model, seed=0, only=[curves.keys[i] for i in chosen]),
                                held_out)
            print(f"{size:>6} {model:<10} {m['final_acc_kendall_tau']:8.3f} {m['final_acc_mae']:10.4f} "
                  f"{m['curve_rmse']:11.4f} {m['energy_mape']:8.3f}")

    best_tau = max(med["gbm-epoch"]["final_acc_kendall_tau"], med["pow3"]["final_acc_kendall_tau"])
    best_rmse = min(med["gbm-epoch"]["curve_rmse"], med["pow3"]["curve_rmse"])
    b = med["bezier"]
    print(f"\ngoal: Bézier final-epoch τ {b['final_acc_kendall_tau']:.3f} vs the better baseline {best_tau:.3f}: "
          f"{'met' if b['final_acc_kendall_tau'] >= best_tau else 'NOT met'}; curve RMSE {b['curve_rmse']:.4f} vs "
          f"the better baseline {best_rmse:.4f}: {'met' if b['curve_rmse'] < best_rmse else 'NOT met'}")


if __name__ == "__main__":
    main()
