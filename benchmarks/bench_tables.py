"""Table figures for the foundation, side by side in one run.

    python benchmarks/bench_tables.py [--mirror ../shared/data]

1. Import of the 5-vertex EC-NAS file: records per second (framing + CRC only, and the full
   import with protobuf decoding, hash verification and validation).
2. Single lookup latency (median µs) of ``EnergyTable.get`` against a plain dict lookup of the
   same prebuilt records (the floor; goal ≤ 3× the floor), and 10,000 vectorised lookups.
3. Loading a cached table: seconds and peak memory, against re-parsing the upstream file
   (each in a fresh process, so neither warms the other).
4. A query through the search-space contract (``TabularSpace.evaluate`` of a (cell, budget) point,
   what every built-in optimizer step costs, and ``TabularSpace.query`` with its learning curve)
   against a plain dict lookup of the same record and against ``EnergyTable.get``.
5. The cost of the verification policy (files up to 64 MiB re-hashed on every use, which catches
   bit rot that keeps size and mtime): ``datasets.resolve`` per file of the mirror, re-hashing,
   against trusting a size+mtime stamp as before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIVE_V = "ecnas/energy_5V9E_4epochs.tfrecord"


def bench_import(mirror: Path) -> None:
    from ecnas_plugin.importers.ecnas import read_ecnas_tfrecord
    from ecnas_plugin.importers.tfrecord import read_records
    from ecnas_plugin.table import EnergyTable
    from ecnas_plugin.importers.ecnas import _manifest

    path = mirror / FIVE_V
    n = sum(1 for _ in read_records(path))
    framing = min(timeit.repeat(lambda: sum(1 for _ in read_records(path)), number=1, repeat=5))
    def full():
        rows, cps = read_ecnas_tfrecord(path, campaign="ecnas-5v")
        EnergyTable(rows, _manifest("ecnas-5v", "bench", {path.name: path}), cps)
    whole = min(timeit.repeat(full, number=1, repeat=3))
    print("1. import of the 5-vertex file", f"({n} records)")
    print(f"   framing + CRC only            {n / framing:12,.0f} records/s  ({framing * 1e3:.1f} ms)")
    print(f"   full import (decode, verify)  {n / whole:12,.0f} records/s  ({whole * 1e3:.1f} ms)")


def bench_lookup() -> None:
    import numpy as np

    import ecnas_plugin as ep
    from ecnas_plugin.table import LOOKUP_KEY

    table = ep.load_table("ecnas-4v")
    frame = table.frame
    keys = list(zip(*(frame[c].tolist() for c in LOOKUP_KEY)))
    floor_records = {k: dict(zip(frame.columns, row)) for k, row in zip(keys, frame.itertuples(index=False))}
    rng = np.random.default_rng(0)
    sample = [keys[i] for i in rng.integers(0, len(keys), 200)]
    table.get(*sample[0])  # build the index once, outside the timing

    def per_call(fn, number=2000) -> float:
        return statistics.median(min(timeit.repeat(lambda: fn(k), number=number, repeat=3)) / number for k in sample)

    floor = per_call(lambda k: floor_records[k])
    floor_built = per_call(lambda k: floor_records[(k[0], k[1], k[2], k[3], k[4], k[5])])
    ours = per_call(lambda k: table.get(k[0], k[1], k[2], k[3], k[4], k[5]))
    ours_kw = per_call(lambda k: table.get(k[0], epochs=k[2], repeat=k[5]))
    print("2. single lookup, median over 200 keys of ecnas-4v")
    print(f"   plain dict, key tuple prebuilt (floor)             {floor * 1e6:8.3f} µs")
    print(f"   plain dict, key tuple built from the six values    {floor_built * 1e6:8.3f} µs")
    print(f"   EnergyTable.get(six values)                        {ours * 1e6:8.3f} µs   "
          f"{ours / floor:4.2f}x prebuilt floor, {ours / floor_built:4.2f}x built floor (goal <= 3x)")
    print(f"   EnergyTable.get(arch, epochs=, repeat=)            {ours_kw * 1e6:8.3f} µs   "
          f"{ours_kw / floor:4.2f}x prebuilt floor")

    many = [keys[i] for i in rng.integers(0, len(keys), 10_000)]
    arch, epochs, repeat = ([k[i] for k in many] for i in (0, 2, 5))
    t_floor = min(timeit.repeat(lambda: [floor_records[k] for k in many], number=1, repeat=5))
    t_many = min(timeit.repeat(lambda: table.get_many(arch, epochs=epochs, repeat=repeat), number=1, repeat=5))
    t_loop = min(timeit.repeat(lambda: [table.get(*k) for k in many], number=1, repeat=5))
    print("   10,000 lookups")
    print(f"   plain dict of prebuilt records, loop        {t_floor * 1e3:8.2f} ms")
    print(f"   EnergyTable.get in a loop                   {t_loop * 1e3:8.2f} ms")
    print(f"   EnergyTable.get_many -> DataFrame           {t_many * 1e3:8.2f} ms")


_CHILD = r"""
import json, sys, time, tracemalloc
import ecnas_plugin, pandas, pyarrow, pyarrow.parquet  # imports are not what we measure
from ecnas_plugin.importers import ecnas as imp
from ecnas_plugin.table import EnergyTable
pool = pyarrow.default_memory_pool()
tracemalloc.start()
t0 = time.perf_counter()
if sys.argv[1] == "cached":
    table = EnergyTable.load(sys.argv[2])
else:
    from pathlib import Path
    path = Path(sys.argv[2])
    rows, cps = imp.read_ecnas_tfrecord(path, campaign="ecnas-5v")
    table = EnergyTable(rows, imp._manifest("ecnas-5v", "bench", {path.name: path}), cps)
seconds = time.perf_counter() - t0
# Python-heap peak (numpy/pandas buffers included) plus Arrow's own allocator peak.
peak = tracemalloc.get_traced_memory()[1] + pool.max_memory()
print(json.dumps({"seconds": seconds, "peak_mib": peak / 2**20, "rows": len(table)}))
"""


def bench_load(mirror: Path) -> None:
    import ecnas_plugin as ep

    with tempfile.TemporaryDirectory() as tmp:
        folder = ep.load_table("ecnas-5v").save(Path(tmp) / "ecnas-5v")

        def child(mode: str, arg: Path) -> dict:
            runs = [json.loads(subprocess.run([sys.executable, "-c", _CHILD, mode, str(arg)], check=True,
                                              capture_output=True, text=True).stdout) for _ in range(3)]
            return {"seconds": min(r["seconds"] for r in runs), "peak_mib": max(r["peak_mib"] for r in runs)}

        cached = child("cached", folder)
        parsed = child("parse", mirror / FIVE_V)
    print("3. loading ecnas-5v (2,532 rows + 7,596 checkpoints), fresh process each, best of 3")
    print(f"   cached parquet + manifest   {cached['seconds'] * 1e3:8.1f} ms   peak +{cached['peak_mib']:6.1f} MiB")
    print(f"   re-parse upstream tfrecord  {parsed['seconds'] * 1e3:8.1f} ms   peak +{parsed['peak_mib']:6.1f} MiB")
    print(f"   speed-up {parsed['seconds'] / cached['seconds']:.1f}x")


def bench_contract_query() -> None:
    import numpy as np

    import ecnas_plugin as ep
    from ecnas_plugin.search import load_space

    space = load_space("ecnas-4v-linscale", [4, 12, 36, 108])
    table = ep.load_table("ecnas-4v-linscale")
    rng = np.random.default_rng(0)
    points = [space.points[i] for i in rng.integers(0, len(space), 200)]
    floor_records = {(p.key, p.epochs): dict(table.get(p.key, epochs=p.epochs)) for p in space.points}
    # The same work by hand: a dict of prebuilt (repeats, true values), draw a repeat, build a record.
    cols = ("val_acc", "test_acc", "train_energy_kwh", "train_time_s", "source")
    by_hand = {(p.key, p.epochs): ([tuple(r[c] for c in cols) for r in [floor_records[(p.key, p.epochs)]]],
                                   (1.0, 1.0, 1.0)) for p in space.points}

    def hand(p):
        repeats, true = by_hand[(p.key, p.epochs)]
        r = int(draw.random() * len(repeats)) if len(repeats) > 1 else 0
        return dict(zip(cols, repeats[r]), true=true)

    draw = np.random.default_rng(1)
    for p in points:  # warm every cache outside the timing
        space.evaluate(p, draw)

    def per_call(fn, number=2000) -> float:
        return statistics.median(min(timeit.repeat(lambda: fn(p), number=number, repeat=3)) / number for p in points)

    floor = per_call(lambda p: floor_records[(p.key, p.epochs)])
    get = per_call(lambda p: table.get(p.key, epochs=p.epochs))
    evaluate = per_call(lambda p: space.evaluate(p, draw))
    manual = per_call(hand)
    query = per_call(lambda p: space.query(p.key, p.epochs), number=200)
    print("4. a query through the search-space contract, median over 200 (cell, budget) points of ecnas-4v-linscale")
    print(f"   plain dict of prebuilt records (floor)             {floor * 1e6:8.3f} µs")
    print(f"   EnergyTable.get(arch, epochs=)                     {get * 1e6:8.3f} µs   {get / floor:5.2f}x floor")
    print(f"   the same evaluation by hand on plain dicts         {manual * 1e6:8.3f} µs   {manual / floor:5.2f}x floor")
    print(f"   TabularSpace.evaluate(point): draw a repeat, true  {evaluate * 1e6:8.3f} µs   {evaluate / floor:5.2f}x floor, "
          f"{evaluate / manual:4.2f}x by hand (goal <= 3x)")
    print("   means, config text, source (one optimizer step)")
    print(f"   TabularSpace.query(key, epochs) + learning curve   {query * 1e6:8.3f} µs   (a DataFrame per call)")


def bench_verification(mirror: Path) -> None:
    from ecnas_plugin import datasets

    entries = [e for e in datasets.builtin_data_files() if (mirror / e.mirror_path).is_file()]
    total_hash = total_stamp = 0.0
    print("5. verifying each mirror file on use: re-hash (the policy) vs a size+mtime stamp (the old shortcut)")
    for e in entries:
        path = mirror / e.mirror_path
        rehash = min(timeit.repeat(lambda: datasets.resolve(e, mirror=mirror, download=False), number=3, repeat=3)) / 3
        datasets._write_stamp(path, e.sha256)
        stamp = min(timeit.repeat(lambda: datasets._is_stamped(path, e.sha256), number=3, repeat=3)) / 3
        total_hash, total_stamp = total_hash + rehash, total_stamp + stamp
        print(f"   {e.name:<34} {e.size_bytes / 1e6:6.2f} MB   re-hash {rehash * 1e3:7.2f} ms   stamp {stamp * 1e3:6.3f} ms")
    print(f"   all {len(entries)} files                            re-hash {total_hash * 1e3:7.2f} ms   "
          f"stamp {total_stamp * 1e3:6.3f} ms  (a table build reads them all anyway)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("ECNAS_DATA_MIRROR", REPO.parent / "shared" / "data")))
    args = parser.parse_args()
    os.environ["ECNAS_DATA_MIRROR"] = str(args.mirror)
    os.environ.setdefault("ECNAS_CACHE_DIR", tempfile.mkdtemp(prefix="ecnas-bench-"))
    bench_import(args.mirror)
    bench_lookup()
    bench_load(args.mirror)
    bench_contract_query()
    bench_verification(args.mirror)


if __name__ == "__main__":
    main()
