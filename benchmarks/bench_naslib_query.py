"""Overhead of the NASLib bridge on the EC-NAS 5-vertex space (needs NASLib; see the docs).

1. Per query: ``query(Metric.VAL_ACCURACY)`` on the same N architectures with energy on (penalty
   objective, trace and budget accounting included) vs the bridge uninstalled. Goal <= 1.2x.
2. Whole run: a regularized-evolution search (NASLib's Trainer, 100 epochs) with energy on vs
   with the bridge uninstalled.

    python benchmarks/bench_naslib_query.py [--archs 500] [--repeats 21] [--epochs 100] [--no-run]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path


def _best_of(fn, repeats: int, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


CLOCK = time.process_time


def bench_query(n_archs: int, repeats: int) -> dict:
    import random

    import numpy as np
    from naslib.search_spaces.core.query_metrics import Metric

    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import hooks, spaces, subspace
    from ecnas_plugin.naslib.config import parse_energy

    random.seed(0)
    np.random.seed(0)
    api = subspace.build_dataset_api("ecnas-5v")
    space = spaces.search_space("ecnas-5v")
    archs = []
    for _ in range(n_archs):
        g = space.clone()
        g.sample_random_architecture(dataset_api=api)
        archs.append(g)

    def run_all():
        for g in archs:
            g.query(Metric.VAL_ACCURACY, "cifar10", dataset_api=api)

    class _Opt:  # what adapt_search_space sees: a config with an energy section
        pass

    cfg = {"energy": {"objective": "penalty", "weight": 0.1}, "seed": 0, "dataset": "cifar10", "search": {}}
    assert parse_energy(cfg["energy"]) is not None
    state = hooks.make_state(_Opt(), space, api, _Config(cfg))
    def switch(setting: str) -> None:
        if setting == "off":
            bridge.uninstall()
        else:
            bridge.install()
        if setting == "on":
            api[hooks.STATE_KEY] = state
        else:
            api.pop(hooks.STATE_KEY, None)

    # The machine is shared: time CPU time of this process (other processes' load does not count),
    # interleave the three settings round by round, and report each setting's best and median round.
    # After each switch one untimed pass runs first, the same for every setting: a switch (patching
    # NASLib's classes) is a one-off cost the whole-run figure includes, and the pass keeps its
    # cache and interpreter-specialisation effects out of the steady-state per-query figure.
    times: dict[str, list[float]] = {"off": [], "on": [], "installed_energy_off": []}
    for _ in range(repeats):
        for setting in times:
            switch(setting)
            run_all()
            times[setting].append(_best_of(run_all, 1, CLOCK))
    out = {"archs": n_archs, "rounds": repeats}
    for name, values in times.items():
        out[f"{name}_us_per_query_best"] = 1e6 * min(values) / n_archs
        out[f"{name}_us_per_query_median"] = 1e6 * statistics.median(values) / n_archs
    out["ratio_on_vs_off_best"] = min(times["on"]) / min(times["off"])
    out["ratio_on_vs_off_median"] = statistics.median(times["on"]) / statistics.median(times["off"])
    out["ratio_on_vs_off_median_of_rounds"] = statistics.median(on / off for on, off in zip(times["on"], times["off"]))
    return out


class _Config(dict):
    """Attribute access like NASLib's CfgNode."""

    def __getattr__(self, name):
        return self[name]


def bench_run(epochs: int) -> dict:
    import yaml

    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import runner

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "configs/naslib/ecnas-5v_re_penalty.yaml").read_text())
    base["search"]["epochs"] = epochs
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("off", "on"):
            config = dict(base, out_dir=f"{tmp}/{mode}")
            if mode == "off":
                config.pop("energy")
                bridge.uninstall()
            else:
                bridge.install()
            path = Path(tmp) / f"{mode}.yaml"
            path.write_text(yaml.safe_dump(config))
            cfg = runner.load_config(str(path), [])
            out[f"{mode}_s"] = _best_of(lambda: runner.search(cfg), 3)
    out["ratio_on_vs_off"] = out["on_s"] / out["off_s"]
    out["epochs"] = epochs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--no-run", action="store_true", help="per-query benchmark only")
    args = parser.parse_args()
    from ecnas_plugin import naslib as bridge

    bridge.install()
    logging.disable(logging.INFO)
    result = {"query": bench_query(args.archs, args.repeats)}
    if not args.no_run:
        result["run"] = bench_run(args.epochs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
