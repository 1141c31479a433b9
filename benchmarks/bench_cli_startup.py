"""How long `ecnas --help` (and a subcommand's --help) takes, side by side with a bare interpreter.

    python benchmarks/bench_cli_startup.py [--repeats 7]

Each is a fresh process (what a user waits for), best and median of the repeats. Goal: `ecnas
--help` within 0.3 s. The package, the registry's plugins, pandas and torch load where they are
used, not to build the parser.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass (the floor)": [sys.executable, "-c", "pass"],
    "ecnas --help": [sys.executable, "-m", "ecnas_plugin.cli", "--help"],
    "ecnas measure --help": [sys.executable, "-m", "ecnas_plugin.cli", "measure", "--help"],
    "ecnas study run --help": [sys.executable, "-m", "ecnas_plugin.cli", "study", "run", "--help"],
    "import ecnas_plugin.api (pandas, the table layer)": [sys.executable, "-c", "import ecnas_plugin.api"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'command':<52}{'best s':>8}{'median s':>10}{'vs floor':>10}")
    floor = None
    for label, cmd in CASES.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        best, median = min(times), statistics.median(times)
        floor = best if floor is None else floor
        print(f"{label:<52}{best:8.3f}{median:10.3f}{best / floor:9.1f}x")


if __name__ == "__main__":
    main()
