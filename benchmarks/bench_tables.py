"""Table figures for the foundation, side by side in one run.

    python benchmarks/bench_tables.py [--mirror ../shared/data]

1. Import of the 5-vertex EC-NAS file: records per second (framing + CRC only, and the full
   import with protobuf decoding, hash verification and validation).
2. Single lookup latency (median µs) of ``EnergyTable.get`` against a plain dict lookup of the
   same prebuilt records (the floor; goal ≤ 3× the floor), and 10,000 vectorised lookups.
3. Loading a cached table: seconds and peak memory, against re-parsing the upstream file
   (each in a fresh process, so neither warms the other).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path(os.environ.get("ECNAS_DATA_MIRROR", REPO.parent / "shared" / "data")))
    args = parser.parse_args()
    os.environ["ECNAS_DATA_MIRROR"] = str(args.mirror)
    os.environ.setdefault("ECNAS_CACHE_DIR", tempfile.mkdtemp(prefix="ecnas-bench-"))
    bench_import(args.mirror)
    bench_lookup()
    bench_load(args.mirror)


if __name__ == "__main__":
    main()
