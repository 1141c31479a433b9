"""The built-in optimizers' own cost per step against the table query they drive, side by side in one run.

    python benchmarks/bench_optimizer_overhead.py [--evaluations 100] [--seeds 3] [--mirror ../shared/data]
                                                  [--profile bo]

For every optimizer of ``ecnas_plugin.search.OPTIMIZERS``, on real tables (``ecnas-5v`` at epochs
2/4 and ``nb201-joint-flowers17-cpu`` at epochs 1/3/10), a search of ``--evaluations`` evaluations
is driven exactly as :func:`~ecnas_plugin.search.run.run_search` drives it (the same loop, with
the study runner's seeding: optimizer stream ``seed``, repeat draws ``[seed, 1]``; single-objective
optimizers get the plain accuracy objective, multi-objective ones none), with
``time.perf_counter_ns`` around ``propose()`` + ``observe()`` (one ask/tell step: the optimizer's
own cost, the space's sampling and mutation included) and, separately, around the
``TabularSpace.evaluate(point, rng)`` it drives (the query: what a tabular benchmark costs in place
of training). The clock's own cost (median of back-to-back reads) is subtracted from each interval.

Per space x optimizer the table prints: median and p95 µs per ask/tell, median µs per query, their
ratio, the optimizer's total seconds for the whole search, the share of that time spent inside the
space's moves (``TabularSpace.sample`` / ``mutate``, not the optimizer's own algorithm), and the
optimizer's share of a real (non-tabular) study: its total time against the training time the
table records for the very points it chose (continuations of a run charged the extra time only,
as ``run_search`` charges energy). Each figure is the median over ``--seeds`` seeds.

The query is timed where the search makes it, right after the optimizer's step; one point queried
again and again (the floor, as in bench_tables.py section 4) is printed per space. A search
queries a new point each time, and after a long step the table's dicts have left the CPU caches,
so a query in the loop costs several times its floor, most next to a model-based optimizer.

Caches are warm before anything is timed: every point of a space is evaluated once (the cost of
that first look-up, which builds the point's record, is printed per space), every configuration's
encoding is computed once (what model-based optimizers learn from), and each optimizer runs
one short untimed search first (the adapters cache decoded keys). A one-off cost therefore does
not depend on which optimizer happens to run first. Timings are wall time on whatever the machine
is doing: read the ratios, not the third digit. ``--profile NAME`` adds a cProfile of one seed of
that optimizer on each space (top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout too

SPACES = (("ecnas-5v", [2, 4]), ("nb201-joint-flowers17-cpu", [1, 3, 10]))
WARMUP_EVALUATIONS = 20
clock = time.perf_counter_ns


def accuracy(acc: float, energy_kwh: float) -> float:
    """The study runner's plain objective (``PLAIN``): the observed accuracy."""
    return acc


def clock_overhead_ns() -> int:
    """Median cost of one clock read (two back-to-back reads' difference)."""
    deltas = []
    for _ in range(20_000):
        t0 = clock()
        deltas.append(clock() - t0)
    return int(statistics.median(deltas))


class MoveTimer:
    """Wraps the space's ``sample`` and ``mutate`` on the instance and sums the time spent in them."""

    def __init__(self, space):
        self.space, self.ns = space, 0

    def __enter__(self):
        for name in ("sample", "mutate"):
            method = getattr(self.space, name)

            def timed(*args, _method=method, **kwargs):
                t0 = clock()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.ns += clock() - t0
            setattr(self.space, name, timed)
        return self

    def __exit__(self, *exc):
        for name in ("sample", "mutate"):
            delattr(self.space, name)


def timed_search(space, optimizer, evaluations: int, objective, rng, overhead_ns: int) -> dict:
    """``run_search``'s loop (search/run.py), timing propose+observe and evaluate apart; no trace rows."""
    from ecnas_plugin.objectives import SearchBudget

    ask_tell, query = [], []
    account = SearchBudget(None)
    limit = min(evaluations, len(space))
    paid: dict[object, tuple[float, int, float]] = {}  # run -> (energy paid up to, repeat, train time paid up to)
    trained_s = 0.0
    with MoveTimer(space) as moves:
        while not account.exhausted and account.evaluations < limit:
            t0 = clock()
            point = optimizer.propose()
            t1 = clock()
            run = space.run_of(point)
            before = paid.get(run)
            if before is None:
                t2 = clock()
                ev = space.evaluate(point, rng)
                t3 = clock()
                paid[run] = (ev.train_energy_kwh, ev.repeat, ev.train_time_s)
                trained_s += ev.train_time_s
            else:  # the same run continued: pay the extra epochs only (and count the extra training time)
                t2 = clock()
                ev = space.evaluate(point, rng, repeat=before[1])
                t3 = clock()
                ev = ev._replace(charged_kwh=max(0.0, ev.train_energy_kwh - before[0]))
                paid[run] = (max(ev.train_energy_kwh, before[0]), before[1], max(ev.train_time_s, before[2]))
                trained_s += max(0.0, ev.train_time_s - before[2])
            score = None if objective is None else float(objective(ev.val_acc, ev.train_energy_kwh))
            t4 = clock()
            optimizer.observe(ev, score)
            t5 = clock()
            account.charge(ev.cost_kwh)
            ask_tell.append(max(0, (t1 - t0) + (t5 - t4) - 2 * overhead_ns))
            query.append(max(0, (t3 - t2) - overhead_ns))
    steps = np.asarray(ask_tell, dtype=float) / 1e3  # µs
    queries = np.asarray(query, dtype=float) / 1e3
    total_s = steps.sum() / 1e6
    return {
        "median_us": float(np.median(steps)), "p95_us": float(np.percentile(steps, 95)),
        "query_us": float(np.median(queries)), "total_s": total_s, "query_total_s": queries.sum() / 1e6,
        "moves": moves.ns / 1e9 / total_s if total_s > 0 else 0.0,
        "real_share": total_s / (total_s + trained_s) if np.isfinite(trained_s) else float("nan"),
        "trained_s": trained_s, "evaluations": len(steps),
    }


def warm(space) -> tuple[float, float, float | None]:
    """Evaluate every point once and compute every feature vector once: µs per first look-up, per
    warm look-up back to back (the floor, median over 200 points) and per feature vector."""
    rng = np.random.default_rng(0)
    t0 = clock()
    for p in space.points:
        space.evaluate(p, rng)
    first_query_us = (clock() - t0) / 1e3 / len(space.points)
    sample = [space.points[i] for i in rng.integers(0, len(space.points), 200)]
    floor_us = 1e6 * statistics.median(
        min(timeit.repeat(lambda: space.evaluate(p, rng), number=200, repeat=3)) / 200 for p in sample)
    encoding_us = None
    if space.adapter.supports("features"):
        t0 = clock()
        space.encodings(list(space.keys))
        encoding_us = (clock() - t0) / 1e3 / len(space.keys)
    return first_query_us, floor_us, encoding_us


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bench_space(name: str, epochs: list[int], evaluations: int, seeds: int, overhead_ns: int,
                profile: str | None) -> dict:
    from ecnas_plugin.search import OPTIMIZERS, Budget, load_space, make_optimizer, run_search

    t0 = time.perf_counter()
    space = load_space(name, epochs)
    load_s = time.perf_counter() - t0
    first_query_us, floor_us, encoding_us = warm(space)
    top = space.budgets[-1]
    train_s = float(np.nanmedian(space.slices[top].means["train_time_s"]))
    print(f"{name} at epochs {space.budget_label}: {len(space.keys):,} configurations, {len(space.points):,} points "
          f"(loaded in {load_s:.2f} s)")
    print(f"   query: first look-up of a point {first_query_us:.1f} µs, one point back to back {floor_us:.2f} µs (the floor)"
          + ("" if encoding_us is None else f"; an encoding (the GP input), once per configuration, {encoding_us:.1f} µs"))
    print(f"   a real training of one configuration to {top} epochs (the table's median train_time_s): {train_s:,.1f} s "
          f"= {train_s * 1e6:.2e} µs")
    print(f"   {'optimizer':<13} {'ask/tell µs':>12} {'p95 µs':>10} {'query µs':>9} {'opt/query':>10} "
          f"{'opt s/' + str(evaluations) + ' evals':>16} {'in moves':>9} {'share of real study':>20}")
    results = {}
    for opt_name, cls in OPTIMIZERS.items():
        objective = None if cls.multi_objective else accuracy
        run_search(space, make_optimizer(opt_name, space, np.random.default_rng(10_000)),
                   Budget(evaluations=min(WARMUP_EVALUATIONS, evaluations)), objective,
                   np.random.default_rng([10_000, 1]))  # untimed: adapter caches, interpreter warm-up
        runs = [timed_search(space, make_optimizer(opt_name, space, np.random.default_rng(seed)), evaluations,
                             objective, np.random.default_rng([seed, 1]), overhead_ns) for seed in range(seeds)]
        r = results[opt_name] = median_of(runs)
        print(f"   {opt_name:<13} {r['median_us']:12,.1f} {r['p95_us']:10,.1f} {r['query_us']:9.2f} "
              f"{r['median_us'] / r['query_us']:9,.0f}x {r['total_s']:16.3f} {r['moves']:8.0%} "
              f"{r['real_share']:19.4%}")
    queries_ms = 1e3 * statistics.median(r["query_total_s"] for r in results.values())
    dearer = [o for o, r in results.items() if r["total_s"] > r["query_total_s"]]
    print(f"   tabular study: the {evaluations} queries of a search take {queries_ms:.2f} ms in all; {len(dearer)} of "
          f"{len(results)} optimizers spend more than that on themselves ({', '.join(dearer) or 'none'})")
    slowest = max(results, key=lambda o: results[o]["total_s"])
    s = results[slowest]
    print(f"   real training: the slowest, {slowest}, spends {s['total_s']:.2f} s on itself against {s['trained_s']:,.0f} s "
          f"of training for the points it chose; its median step is {s['median_us'] / (train_s * 1e6):.3%} of one "
          f"{top}-epoch training")
    if profile is not None:
        cls = OPTIMIZERS[profile]
        prof = cProfile.Profile()
        opt = make_optimizer(profile, space, np.random.default_rng(0))
        prof.enable()
        run_search(space, opt, Budget(evaluations=evaluations), None if cls.multi_objective else accuracy,
                   np.random.default_rng([0, 1]))
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
        print(f"   cProfile of {profile} on {name}, seed 0 (times inflated by the profiler), top by own time:")
        print("\n".join("      " + line for line in out.getvalue().splitlines() if line.strip()))
    print()
    return {"results": results, "train_s": train_s, "floor_us": floor_us, "top": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("ECNAS_DATA_MIRROR", REPO.parent / "shared" / "data")))
    parser.add_argument("--evaluations", type=int, default=100, help="evaluations per search (default 100)")
    parser.add_argument("--seeds", type=int, default=3, help="searches per optimizer, median reported (default 3)")
    parser.add_argument("--profile", metavar="OPTIMIZER", help="also cProfile one seed of this optimizer per space")
    args = parser.parse_args()
    os.environ["ECNAS_DATA_MIRROR"] = str(args.mirror)
    os.environ.setdefault("ECNAS_CACHE_DIR", tempfile.mkdtemp(prefix="ecnas-bench-"))
    from ecnas_plugin.search import OPTIMIZERS

    if args.profile is not None and args.profile not in OPTIMIZERS:
        parser.error(f"--profile: unknown optimizer {args.profile!r}; known: {', '.join(OPTIMIZERS)}")
    overhead = clock_overhead_ns()
    started = time.perf_counter()
    print(f"optimizer cost per ask/tell step vs the table query it drives: {args.evaluations} evaluations, "
          f"median of {args.seeds} seeds; clock read {overhead} ns (subtracted)")
    print("   ask/tell = propose() + observe(); query = TabularSpace.evaluate(point, rng); opt/query = ratio of the "
          "medians; in moves = share of the optimizer's time in the space's sample/mutate;")
    print("   share of real study = optimizer time / (optimizer time + the recorded training time of the points it chose)")
    print()
    spaces = {name: bench_space(name, epochs, args.evaluations, args.seeds, overhead, args.profile)
              for name, epochs in SPACES}
    summarise(spaces, args.evaluations)
    print(f"({time.perf_counter() - started:.0f} s in all)")


def summarise(spaces: dict[str, dict], evaluations: int) -> None:
    """The verdicts, from the figures: optimizer vs query, and optimizer vs real training."""
    rows = [(space, opt, r) for space, v in spaces.items() for opt, r in v["results"].items()]
    optimizers = list(dict.fromkeys(opt for _, opt, _ in rows))

    def span(values, fmt) -> str:
        lo, hi = min(values), max(values)
        return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else fmt.format(lo) + "-" + fmt.format(hi)

    ratios = ", ".join(f"{o} {span([r['median_us'] / r['query_us'] for _, p, r in rows if p == o], '{:,.0f}')}x"
                       for o in optimizers)
    print("summary")
    print(f"   optimizer/query per step (median ask/tell over median query), over {len(spaces)} spaces: {ratios}")
    model_based = [o for o in ("bo", "ea-bo", "parego") if o in optimizers]
    query_us = [r["query_us"] for _, _, r in rows]
    floors = [v["floor_us"] for v in spaces.values()]
    print(f"   a query costs {span(query_us, '{:.1f}')} µs in the loop ({span(floors, '{:.1f}')} µs for one point repeated back to back: "
          "a search queries a new point each time, and after a long optimizer step the table's dicts are out of the CPU "
          "caches)")
    if model_based:
        mb = [r for _, o, r in rows if o in model_based]
        totals = [r["total_s"] for r in mb]
        queries_ms = [1e3 * r["query_total_s"] for r in mb]
        moves = [r["moves"] for r in mb]
        verdict = ("so in a tabular study the optimizer, not the table, is the run time" if min(
            r["total_s"] / r["query_total_s"] for r in mb) > 10 else "comparable to the table")
        print(f"   vs the table: the model-based optimizers ({', '.join(model_based)}) take "
              f"{span([r['median_us'] / 1e3 for r in mb], '{:.0f}')} ms per step and {span(totals, '{:.1f}')} s per "
              f"{evaluations}-evaluation search against {span(queries_ms, '{:.1f}')} ms of queries: {verdict}. "
              f"{span(moves, '{:.0%}')} of their time is the space's mutations of their candidates, not the GP.")
    shares = max(rows, key=lambda row: row[2]["real_share"])
    trainings = [v["train_s"] for v in spaces.values()]
    verdict = ("training dominates and the optimizer does not" if shares[2]["real_share"] < 0.1 else
               "the optimizer is a real part of the study's time")
    print(f"   vs real training: one configuration trains for {span(trainings, '{:,.1f}')} s (median, top budget); the "
          f"optimizer's share of a real study of the points it chose is at most {shares[2]['real_share']:.2%} "
          f"({shares[1]} on {shares[0]}): {verdict}.")

if __name__ == "__main__":
    main()
