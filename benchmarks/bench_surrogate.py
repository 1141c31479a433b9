"""Energy surrogate benchmark: held-out 5v metrics, bulk prediction speed and memory, learning curve,
cross-campaign rank correlation, NB201 on the example table, epoch-scaling error.

    python benchmarks/bench_surrogate.py [--png learning_curve.png] [--quick]

Uses the shipped default model for the held-out, bulk and cross-campaign figures; the learning
curve trains fresh ensembles of the default's model on nested training sets against one held-out
set, and prints plain LightGBM at 1,000 cells beside it (what the default replaced).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

import ecnas_plugin as ep
from ecnas_plugin.energy import surrogates as S
from ecnas_plugin.energy.surrogates import features as F
from ecnas_plugin.energy.surrogates.evaluation import split, training_order
from ecnas_plugin.energy.surrogates.train_default import MODEL, SEED, TEST_FRACTION, TRAIN_CELLS

ALL_NB101_CELLS = 423_624


def noise_diagnostic(model: S.Predictor, table, test) -> None:
    """Where the held-out error comes from (diagnostics only: none of this is available when
    predicting an unmeasured cell).

    1. How much of it the run's measured CPU power explains.
    2. When each cell was measured: EC-NAS ran up to 8 trainings at once on one machine, and the
       CPU/DRAM counters are the whole machine's. A leave-one-out kernel smoother (bandwidth 15
       min) over the other held-out cells' log residuals says how much of a cell's residual is
       shared by whatever else ran in the same hour.
    3. Reproducibility: the 91 four-vertex cells were measured in both EC-NAS campaigns on the same
       GPU model (ecnas-4v: mean of 3 repeats; ecnas-5v: one run); how far apart the two are, and
       whether re-measuring a held-out cell predicts its 5v value better than the model does.
    4. An oracle: the measured training time of every held-out cell (which no surrogate has) times
       a LightGBM power model (W, L1 loss like the shipped model) trained on the same 1,000 cells' features.
    5. Capacity: the default's model trained on all measured 5v cells, the held-out ones included,
       scored on the held-out cells it has now seen, and its out-of-fold MAE over all cells. If
       even that is near the goal, what is left is noise in the labels, not a model short of data.
    """
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    five = table.frame
    rows = test.groupby("arch_key", sort=True)[["train_energy_kwh", "cpu_power_w", "train_time_s"]].mean()
    index = F.default_cell_index()
    mean, _ = model.predict_batch(index.batch(list(rows.index)))
    true = rows["train_energy_kwh"].to_numpy()
    log_ratio = np.log(true / mean)
    design = np.column_stack([rows["cpu_power_w"].to_numpy(), np.ones(len(rows))])
    corrected = mean * np.exp(design @ np.linalg.lstsq(design, log_ratio, rcond=None)[0])
    m = S.metrics(true, corrected)
    print(f"  noise, CPU power: corr(relative residual, run CPU power) = "
          f"{np.corrcoef(true / mean - 1, rows['cpu_power_w'])[0, 1]:.3f}; with the measured CPU power "
          f"folded in: tau={m['kendall_tau']:.4f} MAE={m['mae_wh']:.4f} Wh")

    cp = table.checkpoints
    start = pd.to_datetime(cp["start_time"]).groupby(cp["arch_key"]).min()
    stop = pd.to_datetime(cp["stop_time"]).groupby(cp["arch_key"]).max()
    times = np.concatenate([start.to_numpy(), stop.to_numpy()])
    steps = np.concatenate([np.ones(len(start), int), -np.ones(len(stop), int)])
    running = np.cumsum(steps[np.lexsort((steps, times))])  # a stop before a start at the same second
    hours = ((start.loc[rows.index] - start.min()).dt.total_seconds() / 3600).to_numpy()
    kernel = np.exp(-0.5 * ((hours[:, None] - hours[None, :]) / 0.25) ** 2)
    np.fill_diagonal(kernel, 0.0)
    shared = kernel @ log_ratio / kernel.sum(axis=1)
    m = S.metrics(true, mean * np.exp(shared))
    print(f"  noise, measurement time: {len(start)} runs over {(stop.max() - start.min()).total_seconds() / 3600:.0f} h, "
          f"up to {running.max()} at once on one machine; the other held-out cells measured within ~15 min "
          f"explain {1 - np.var(log_ratio - shared) / np.var(log_ratio):.0%} of a cell's log residual "
          f"(corr {np.corrcoef(shared, log_ratio)[0, 1]:.2f}); folded in: tau={m['kendall_tau']:.4f} "
          f"MAE={m['mae_wh']:.4f} Wh")

    four = ep.load_table("ecnas-4v").frame
    four = four[four["epochs"] == 4].groupby("arch_key")[["train_energy_kwh", "train_time_s"]].mean()
    same = five.set_index("arch_key").loc[four.index]
    energy_sd = float(np.log(same["train_energy_kwh"] / four["train_energy_kwh"]).std())
    time_sd = float(np.log(same["train_time_s"] / four["train_time_s"]).std())
    print(f"  reproducibility: {len(four)} cells measured in both ecnas-4v and ecnas-5v (same GPU model): "
          f"sd of log(5v/4v) energy {energy_sd:.3f}, training time {time_sd:.3f}; held-out surrogate "
          f"sd of log(true/predicted) {float(log_ratio.std()):.3f}")
    held = [k for k in four.index if k in rows.index]
    offset = float(np.median(same["train_energy_kwh"] / four["train_energy_kwh"]))
    remeasured = four.loc[held, "train_energy_kwh"].to_numpy() * offset
    truth, predicted = rows.loc[held, "train_energy_kwh"].to_numpy(), mean[rows.index.get_indexer(held)]
    print(f"  re-measurement vs surrogate on the {len(held)} held-out cells ecnas-4v also measured: MAE of "
          f"4v (mean of 3 repeats x median 5v/4v ratio {offset:.3f}) {np.mean(np.abs(remeasured - truth)) * 1000:.4f} Wh, "
          f"of the surrogate {np.mean(np.abs(predicted - truth)) * 1000:.4f} Wh")

    train = five[five["arch_key"].isin(model.training["arch_keys"])].groupby("arch_key", sort=True)[
        ["train_energy_kwh", "train_time_s"]].mean()
    power = train["train_energy_kwh"] / train["train_time_s"]
    X, X_test = (F.nb101_features(index.batch(list(k))) for k in (train.index, rows.index))
    params = {"objective": "l1", "num_leaves": 4, "learning_rate": 0.1, "seed": SEED, "deterministic": True,
              "num_threads": 2, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X, power.to_numpy(), params={"verbose": -1}), num_boost_round=300)
    oracle = rows["train_time_s"].to_numpy() * booster.predict(X_test)
    m = S.metrics(true, oracle)
    print(f"  oracle (measured training time x predicted power): tau={m['kendall_tau']:.4f} "
          f"MAE={m['mae_wh']:.4f} Wh")

    everything = S.fit(five, MODEL, seed=SEED, folds=10)
    seen, _ = everything.predict_batch(index.batch(list(rows.index)))
    m = S.metrics(true, seen)
    print(f"  capacity: the same model trained on all {everything.training['cells']:,} measured cells, the "
          f"held-out ones included: MAE {m['mae_wh']:.4f} Wh on those held-out cells (seen in training), "
          f"out-of-fold MAE over all cells {everything.model.calibration['oof_mae_wh']:.4f} Wh")


def repeated_splits(five, splits: int = 12) -> None:
    """The fixed split's figures beside the spread over other random splits (same recipe, seeds 0..n-1)."""
    import numpy as np

    rows = []
    for seed in range(splits):
        train, test = split(five, TEST_FRACTION, seed)
        keys = training_order(train, seed)[:TRAIN_CELLS]
        chosen = train[train["arch_key"].isin(keys)]
        for name in (MODEL, "lightgbm"):
            m = S.evaluate(S.fit(chosen, name, seed=seed, folds=10), test)
            rows.append((name, m["kendall_tau"], m["mae_wh"]))
    print(f"[held-out 5v over {splits} random splits (40% held out, {TRAIN_CELLS} training cells each; "
          f"seed 0 is the shipped model's split)]")
    for name in (MODEL, "lightgbm"):
        tau = np.array([r[1] for r in rows if r[0] == name])
        mae = np.array([r[2] for r in rows if r[0] == name])
        print(f"  {name:9s} tau {tau.mean():.4f} +- {tau.std():.4f} (min {tau.min():.4f})  "
              f"MAE {mae.mean():.4f} +- {mae.std():.4f} Wh (range {mae.min():.3f}-{mae.max():.3f}); "
              f"MAE <= 0.8 in {int((mae <= 0.8).sum())} of {splits}")


EXAMPLE_NB201 = (Path(__file__).resolve().parents[1] / "examples" / "ecnas-example-tables" / "src"
                 / "ecnas_example_tables" / "data" / "nb201-flowers17-cpu")


def nb201_section(fmt) -> None:
    """NB201 through the generic space path: the example package's Flowers-17 table, held out where it
    has enough cells, and the time to predict every one of the 15,625 cells."""
    from ecnas_plugin.table import EnergyTable

    frame = EnergyTable.load(EXAMPLE_NB201).frame
    frame = frame[frame["source"] == "measured"]
    cells = frame["arch_key"].nunique()
    if cells < 10:
        print(f"[nb201] example table has {cells} cells; skipped (needs 10)")
        return
    train, test = split(frame, TEST_FRACTION, SEED)
    model = S.fit(train, MODEL, seed=SEED, folds=5)
    held = S.evaluate(model, test) if test["arch_key"].nunique() >= 3 else {}
    print(f"[nb201 held-out, example table {model.context.campaign}, {model.context.epochs} epochs, "
          f"{model.training['cells']} training cells]  " + fmt(held))
    everything = list(ep.get_space("nasbench201").enumerate())
    t0 = time.perf_counter()
    out = model.predict_energy(everything)
    print(f"[nb201 bulk] all {len(out):,} cells (parse + features + prediction): {time.perf_counter() - t0:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=Path("surrogate_learning_curve.png"))
    parser.add_argument("--quick", action="store_true", help="smaller learning curve")
    args = parser.parse_args()
    fmt = lambda d: "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())  # noqa: E731

    table = ep.load_table("ecnas-5v")
    five = table.frame
    model = S.default_predictor()
    _, test = split(five, TEST_FRACTION, SEED)
    held = S.evaluate(model, test)
    print(f"[held-out 5v, 4 epochs] model={model.model.name} trained on {model.training['cells']} cells")
    print("  " + fmt(held))
    print(f"  goals: tau>=0.90 {'MET' if held['kendall_tau'] >= 0.90 else 'NOT MET'}, "
          f"MAE<=0.8 Wh {'MET' if held['mae_wh'] <= 0.8 else 'NOT MET'}")
    noise_diagnostic(model, table, test)
    repeated_splits(five, 6 if args.quick else 12)

    batch = F.random_cell_batch(ALL_NB101_CELLS, seed=0)
    model.predict_batch(F.random_cell_batch(1000, seed=1))  # warm up (imports, lazy init)
    tracemalloc.start()
    t0 = time.perf_counter()
    mean, sd = model.predict_batch(batch)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[bulk] {len(batch):,} valid 7-vertex cells (features + prediction): {elapsed:.2f} s "
          f"(goal <= 5 s: {'MET' if elapsed <= 5 else 'NOT MET'}); peak traced numpy/python memory "
          f"{peak / 2**20:.0f} MiB; process max RSS {rss:.0f} MiB; mean {mean.mean() * 1000:.2f} Wh, "
          f"median sd {sorted(sd)[len(sd) // 2] * 1000:.2f} Wh")

    sizes = (50, 100, 200, 500, 1000) if args.quick else (50, 100, 200, 500, 1000, 1500)
    curve = S.learning_curve(five, sizes=sizes, model=MODEL, test_fraction=TEST_FRACTION, seed=SEED, folds=10)
    print(f"[learning curve, {MODEL} (the default's model), held-out 40% of ecnas-5v]")
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    trees = S.learning_curve(five, sizes=(1000,), model="lightgbm", test_fraction=TEST_FRACTION, seed=SEED, folds=10)
    print("  plain lightgbm, 1,000 cells: " + fmt(trees.iloc[0].to_dict()))
    S.plot_learning_curve(curve, args.png, title=f"{MODEL} energy surrogate, ecnas-5v held out")
    print(f"  figure: {args.png}")

    seven = ep.load_table("ecnas-7v").frame
    ranks = S.evaluate(model, seven, rank_only=True)
    print("[cross-campaign: trained on ecnas-5v, predicting ecnas-7v (rank only)]  " + fmt(ranks))
    calib = seven.sample(100, random_state=0)
    calibrated = model.calibrate(calib)
    rest = seven[~seven["arch_key"].isin(calib["arch_key"])]
    print("[cross-campaign, calibrated on 100 measured 7v cells, others]  " + fmt(S.evaluate(calibrated, rest)))

    nb201_section(fmt)

    errors = S.scaling_errors(ep.load_table("ecnas-4v").frame)
    print("[epoch scaling from 4 epochs on ecnas-4v's measured budgets (fitted: 5-fold over cells)]")
    print(errors.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"  fitted model on all cells: {S.EpochScaling.fit(ep.load_table('ecnas-4v').frame)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
