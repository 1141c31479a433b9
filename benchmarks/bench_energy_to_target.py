"""Search energy to reach random search's accuracy: energy-aware optimizers against energy-blind
ones, and against what a perfect energy model would give, side by side in one run.

    python benchmarks/bench_energy_to_target.py [--seeds 80] [--first-seed 100] [--mirror ../shared/data] [--out reach.csv]

Issue 14's goal asks the best energy-aware optimizer for >= 30% less search energy than the best
energy-blind one, to reach random search's median final accuracy. The study seeds (0-9) give wide
confidence intervals for that statistic, so this script measures it on many more seeds, chosen apart
from the study's (default 100-179, 80 seeds: on 40, a median moved by a fifth from one set of seeds
to the next), on the study's spaces and budgets: EC-NAS 5V at epochs 2/4 and the joint table at
epochs 1/3/10, 100 evaluations, the study runner's seeding (optimizer stream ``seed``, repeat draws
``[seed, 1]``) and the study's definitions (:mod:`ecnas_plugin.study.metrics`): the target is random
search's median final test accuracy over these seeds, a run's figure the search energy when its
incumbent first reaches it.

Besides the built-in optimizers it runs ``evolution (eta 3)``, regularized evolution screening its
children as ``ea-evolution`` does but with no energy model (what screening alone gives; on 5V, whose
budgets are too close to screen, evolution training every child at 4 epochs), and ``ea-bo (true kWh)``: cost-aware
expected improvement told each candidate's true training energy from the table before training it (a
perfect energy model: no real search has it). It shows how much cost awareness can save at all on
these tables; where even it does not reach 30% below the best energy-blind optimizer, a better
energy model cannot get there either.

Each optimizer runs twice per seed, side by side: with 100 evaluations (the study's equal
evaluation budget: an optimizer that trains cheap configurations gets no more of them), and with
an equal search-energy budget, random search's median total energy over its 100 evaluations (an
optimizer that trains cheaper configurations may then train more of them; the search ends when
the energy is spent). The target is the same in both: random search's at 100 evaluations.

Per space and budget the table prints how the table's energies were obtained (measured, or
estimated by a power model), then per optimizer: whether it uses energy, the median energy to
target over seeds with its 95% bootstrap CI (seeds that never reach it count as infinite; "not
reached" where fewer than half do), how many seeds reached it, the median number of evaluations
the search made, and the change against random search and against the best energy-blind
optimizer; ``--out`` also writes each search's energy to target (CSV). About 80 minutes on 2
cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout too

from ecnas_plugin.search import OPTIMIZERS, load_space, run_search  # noqa: E402
from ecnas_plugin.search.model_based import CostAwareExpectedImprovement  # noqa: E402
from ecnas_plugin.search.run import Budget  # noqa: E402
from ecnas_plugin.study.metrics import bootstrap_ci, energy_to_reach, median_reach  # noqa: E402

SPACES = (("ecnas-5v", [2, 4]), ("nb201-joint-flowers17-cpu", [1, 3, 10]))
EVALUATIONS = 100


class TrueEnergyCostAwareEI(CostAwareExpectedImprovement):
    """ea-bo told the table's true training energy of every candidate (a perfect energy model)."""

    name = "ea-bo (true kWh)"

    def _predicted_kwh(self, x, xc, candidates):
        return np.array([self.space.true_energy_kwh[self.space.index(c)] for c in candidates])


# (label, optimizer class, parameters); the study's settings (configs/studies/multi_fidelity.yaml)
RUNS = (
    ("random", OPTIMIZERS["random"], {}),
    ("evolution", OPTIMIZERS["evolution"], {"population_size": 10, "sample_size": 3}),
    # ea-evolution's screening without its energy model: what screening alone gives
    ("evolution (eta 3)", OPTIMIZERS["evolution"], {"population_size": 10, "sample_size": 3, "eta": 3}),
    ("bo", OPTIMIZERS["bo"], {}),
    ("hyperband", OPTIMIZERS["hyperband"], {"eta": 3}),
    ("ea-evolution", OPTIMIZERS["ea-evolution"], {"population_size": 10, "sample_size": 3, "candidates": 4, "eta": 3}),
    ("ea-bo", OPTIMIZERS["ea-bo"], {}),
    ("parego", OPTIMIZERS["parego"], {}),
    (TrueEnergyCostAwareEI.name, TrueEnergyCostAwareEI, {}),
)


def _accuracy(acc: float, energy_kwh: float) -> float:
    return acc


def one_search(job: tuple[str, list[int], int, int, Budget]) -> pd.DataFrame:
    """One search's trace: the incumbent's true test accuracy and the search energy, per evaluation."""
    name, epochs, run, seed, budget = job
    space = load_space(name, epochs)
    _, cls, params = RUNS[run]
    optimizer = cls(space, np.random.default_rng(seed), **params)
    trace = run_search(space, optimizer, budget,
                       None if optimizer.multi_objective else _accuracy, np.random.default_rng([seed, 1]))
    return trace[["best_true_test_acc", "search_energy_kwh"]]


def _kwh(v: float) -> str:
    return "not reached" if not np.isfinite(v) else f"{v:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("ECNAS_DATA_MIRROR", REPO.parent / "shared" / "data")))
    parser.add_argument("--seeds", type=int, default=80, help="searches per optimizer (default 80)")
    parser.add_argument("--first-seed", type=int, default=100, help="first seed (default 100: apart from the study's 0-9)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write each search's energy to target here (CSV)")
    parser.add_argument("--space", choices=[n for n, _ in SPACES], help="only this space (default: both)")
    args = parser.parse_args()
    os.environ["ECNAS_DATA_MIRROR"] = str(args.mirror)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"Seeds {seeds.start}-{seeds.stop - 1}; search energy to reach random search's median final accuracy "
          f"over {EVALUATIONS} evaluations: median over seeds [95% bootstrap CI]")
    with ProcessPoolExecutor(args.workers) as pool:
        for name, epochs in SPACES:
            if args.space not in (None, name):
                continue
            by_evaluations = Budget(evaluations=EVALUATIONS)
            rs = list(pool.map(one_search, [(name, epochs, 0, s, by_evaluations) for s in seeds]))
            target = float(np.median([t["best_true_test_acc"].iloc[-1] for t in rs]))
            rs_total = float(np.median([t["search_energy_kwh"].iloc[-1] for t in rs]))
            print(f"\n{name}, epochs {'/'.join(map(str, epochs))} (energies: "
                  f"{load_space(name, epochs).table.sources_text()}): target accuracy {target:.4f}; random "
                  f"search's median total over {EVALUATIONS} evaluations {rs_total:.3g} kWh")
            for label, budget in ((f"{EVALUATIONS} evaluations", by_evaluations),
                                  (f"equal search energy, {rs_total:.3g} kWh", Budget(search_kwh=rs_total))):
                jobs = [(name, epochs, r, s, budget) for r in range(1, len(RUNS)) for s in seeds]
                results = list(pool.map(one_search, jobs, chunksize=4))
                by_run = [rs] + [results[r * len(seeds):(r + 1) * len(seeds)] for r in range(len(RUNS) - 1)]
                print_table(label, by_run, target, rs_total, len(seeds))
                if args.out:
                    write_reach(args.out, name, label, by_run, seeds, target)


def write_reach(path: Path, space: str, label: str, by_run: list[list[pd.DataFrame]], seeds: range,
                target: float) -> None:
    """Append one row per search (space, budget, optimizer, seed, kWh to target or inf, evaluations)."""
    rows = [(space, label, name, seed, energy_to_reach(t, target), len(t))
            for (name, _, _), runs in zip(RUNS, by_run) for seed, t in zip(seeds, runs)]
    frame = pd.DataFrame(rows, columns=["space", "budget", "optimizer", "seed", "kwh_to_target", "evaluations"])
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def print_table(label: str, by_run: list[list[pd.DataFrame]], target: float, rs_total: float, seeds: int) -> None:
    """One budget's rows, random search's (always at 100 evaluations) first."""
    rows = []
    for (name, cls, _), runs in zip(RUNS, by_run):
        reach = np.array([energy_to_reach(t, target) for t in runs])
        figure = rs_total if name == "random" else median_reach(reach)
        lo, hi = (np.nan, np.nan) if name == "random" else bootstrap_ci(reach)
        evaluations = int(np.median([len(t) for t in runs]))
        rows.append((name, cls.uses_energy, figure, lo, hi, int(np.isfinite(reach).sum()), evaluations))
    blind = min((r[2] for r in rows if not r[1] and np.isfinite(r[2])), default=np.nan)
    blind_label = next(r[0] for r in rows if not r[1] and r[2] == blind)
    print(f"  budget: {label}; best energy-blind: {blind_label}")
    print(f"  {'optimizer':18s} {'uses energy':>11s} {'kWh to target':>14s} {'95% CI':>22s} {'reached':>8s} "
          f"{'evaluations':>11s} {'vs random':>10s} {'vs best blind':>14s}")
    for name, aware, figure, lo, hi, reached, evaluations in rows:
        ci = "" if name == "random" else f"[{_kwh(lo)}, {_kwh(hi)}]"
        vs_rs = f"{figure / rs_total - 1:+.0%}" if np.isfinite(figure) else ""
        vs_blind = f"{figure / blind - 1:+.0%}" if np.isfinite(figure) else ""
        print(f"  {name:18s} {'yes' if aware else 'no':>11s} {_kwh(figure):>14s} {ci:>22s} "
              f"{reached:>4d}/{seeds:<3d} {evaluations:>11d} {vs_rs:>10s} {vs_blind:>14s}", flush=True)

if __name__ == "__main__":
    main()
