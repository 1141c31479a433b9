"""The issue's NASLib evidence: per optimizer, 100-epoch searches on EC-NAS's 5-vertex space with
energy off, ``penalty`` and ``constraint`` (the shipped configs), and one table of the results.

Per run: the incumbent's true validation/test accuracy (what NASLib records: the last entry of
``errors.json``'s ``valid_acc``/``test_acc``), its training energy (the table's mean at the run's
epoch budget), whether the constraint holds, and the hypervolume (moocore; error vs energy,
reference [1, table max]) of every architecture the optimizer evaluated. BANANAS/NPENAS candidate
predictions are not evaluations and are not counted. "off" runs plain NASLib (bridge uninstalled,
no ``energy`` section) on the same space and epoch budget; its evaluated set is recorded by an
instance wrapper around the space's ``dataset_api`` (NASLib itself untouched).

Needs NASLib (see docs)::

    ECNAS_DATA_MIRROR=/work/shared/data python benchmarks/naslib_runs.py \
        [--optimizers rs re ls bananas npenas] [--modes off penalty constraint] \
        [--results /tmp/ecnas_naslib_runs.jsonl] [--table-only] [--search-epochs N]

Each finished run is appended to ``--results`` (JSON lines), so the matrix can be run in pieces;
the table is printed from that file (latest row per optimizer and mode).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "naslib"
MODES = ("off", "penalty", "constraint")
OPTIMIZERS = ("rs", "re", "ls", "bananas", "npenas")


def config_path(optimizer: str, mode: str) -> Path:
    """The shipped config of (optimizer, mode); "off" uses the penalty config minus its energy section."""
    return CONFIGS / f"ecnas-5v_{optimizer}_{'penalty' if mode == 'off' else mode}.yaml"


def run_one(optimizer: str, mode: str, out_dir: str, search_epochs: int | None = None) -> dict:
    """One search + evaluation, as ``ecnas naslib run`` does it, recording the evaluated cells."""
    import yaml
    from naslib import utils
    from naslib.defaults.trainer import Trainer

    import ecnas_plugin as ep
    from ecnas_plugin import naslib as bridge
    from ecnas_plugin import objectives
    from ecnas_plugin.naslib import runner, spaces, subspace
    from ecnas_plugin.naslib.hooks import truth_mode

    path = config_path(optimizer, mode)
    raw = yaml.safe_load(path.read_text())
    epochs = int(raw["energy"]["epochs"])
    limit = raw["energy"].get("limit_kwh")
    if mode == "off":
        raw.pop("energy")
        bridge.uninstall()
    else:
        bridge.install()
    raw["out_dir"] = out_dir
    if search_epochs is not None:
        raw["search"]["epochs"] = search_epochs
    tmp_cfg = Path(out_dir) / "config.yaml"
    tmp_cfg.parent.mkdir(parents=True, exist_ok=True)
    tmp_cfg.write_text(yaml.safe_dump(raw))
    config = runner.load_config(str(tmp_cfg), [])

    table = ep.load_table("ecnas-5v")
    api = subspace.build_dataset_api("ecnas-5v", table=table, epochs=epochs)
    bench = api["nb101_data"]
    space = spaces.search_space("ecnas-5v")
    opt = runner._optimizer(config.optimizer, config)

    evaluated: set[str] = set()
    peeking = [0]
    bench_query = bench.query

    def recording_query(spec, *args, **kwargs):  # every answer an optimizer gets, peeks excluded
        if not peeking[0]:
            evaluated.add(spec.hash_spec())
        return bench_query(spec, *args, **kwargs)

    bench.query = recording_query
    if hasattr(opt, "_get_new_candidates"):
        get_candidates = opt._get_new_candidates

        def candidates(*args, **kwargs):
            peeking[0] += 1
            try:
                return get_candidates(*args, **kwargs)
            finally:
                peeking[0] -= 1

        opt._get_new_candidates = candidates

    utils.set_seed(config.seed)
    opt.adapt_search_space(space, dataset_api=api)
    trainer = Trainer(opt, config, lightweight_output=True)
    t0 = time.perf_counter()
    trainer.search(resume_from="")
    seconds = time.perf_counter() - t0
    del bench.query
    with truth_mode():
        key = subspace.spec_hash(opt.get_final_architecture().get_spec()["matrix"],
                                 opt.get_final_architecture().get_spec()["ops"])
    traj = trainer.search_trajectory
    cells = [bench.mean(k, epochs) for k in sorted(evaluated)]
    energies = [c["train_energy_kwh"] for c in cells]
    ref = (1.0, float(table.frame.loc[table.frame["epochs"] == epochs, "train_energy_kwh"].max()))
    hv = objectives.hypervolume([c["validation_accuracy"] for c in cells], energies, ref)
    energy = bench.mean(key, epochs)["train_energy_kwh"]
    row = {"optimizer": optimizer, "mode": mode, "config": path.name, "seed": int(config.seed),
           "search_epochs": int(config.search.epochs), "epoch_budget": epochs,
           "incumbent": key, "valid_acc": float(traj.valid_acc[-1]), "test_acc": float(traj.test_acc[-1]),
           "energy_kwh": energy, "limit_kwh": limit, "constraint_holds": None if limit is None else energy <= limit,
           "evaluated_cells": len(evaluated), "hypervolume": hv, "search_s": round(seconds, 1)}
    front = Path(config.save) / "pareto_front.json"
    if mode != "off" and front.exists():
        row["hypervolume_bridge"] = json.loads(front.read_text())["hypervolume_val"]
    return row


def latest(results: Path) -> dict[tuple[str, str], dict]:
    rows = {}
    if results.exists():
        for line in results.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[(r["optimizer"], r["mode"])] = r
    return rows


def table(rows: dict[tuple[str, str], dict]) -> str:
    head = (f"{'optimizer':<9} {'mode':<10} {'val %':>6} {'test %':>6} {'energy kWh':>10} {'limit':>6} "
            f"{'holds':>5} {'cells':>5} {'HV':>8} {'HV bridge':>9} {'search s':>8}  config")
    lines = [head, "-" * len(head)]
    for opt in OPTIMIZERS:
        for mode in MODES:
            r = rows.get((opt, mode))
            if r is None:
                continue
            hb = r.get("hypervolume_bridge")
            lines.append(f"{opt:<9} {mode:<10} {r['valid_acc']:6.2f} {r['test_acc']:6.2f} {r['energy_kwh']:10.5f} "
                         f"{r['limit_kwh'] if r['limit_kwh'] is not None else '-':>6} "
                         f"{str(r['constraint_holds']) if r['constraint_holds'] is not None else '-':>5} "
                         f"{r['evaluated_cells']:5d} {r['hypervolume']:8.5f} {'-' if hb is None else f'{hb:.5f}':>9} "
                         f"{r['search_s']:8.1f}  {r['config']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--results", type=Path, default=Path(tempfile.gettempdir()) / "ecnas_naslib_runs.jsonl")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--search-epochs", type=int, default=None, help="override search.epochs (smoke tests)")
    args = parser.parse_args()
    if not args.table_only:
        from ecnas_plugin import naslib as bridge

        bridge.install()  # compat shims (NASLib imports); off runs uninstall the wrappers again
        logging.disable(logging.WARNING)
        for opt in args.optimizers:
            for mode in args.modes:
                with tempfile.TemporaryDirectory() as tmp:
                    row = run_one(opt, mode, tmp, args.search_epochs)
                with args.results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print(table(latest(args.results)))


if __name__ == "__main__":
    main()
