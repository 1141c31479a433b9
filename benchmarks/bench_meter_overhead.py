"""Wall-time overhead of energy meters around a fixed small torch training loop.

    python benchmarks/bench_meter_overhead.py [--repeats 7] [--epochs 5] [--steps 60]

Variants, run interleaved (one of each per round, order rotated each round), medians reported:
  none                 the loop alone
  default (1 window)   default_meter() around the whole loop (`auto`: the best combination of
                       the registered meters, built-in and third-party, that works here)
  default (per epoch)  default_meter() with one window per epoch
  rapl-fake (1 window) RaplMeter over a fake powercap tree (RAPL is absent here), whole loop
  rapl-fake (per epoch) the same, one window per epoch: the cost of windows themselves
  codecarbon own       codecarbon's OfflineEmissionsTracker used directly, as its docs show
Wall time is what the goal is about, but on a shared machine it is noisy, so the table also
gives the median CPU time (process and children) and an accounted overhead (cost of an empty
window x windows per run + CPU of the meter's threads while a window is open).
Meters are built once outside the timed region. Each variant runs once before timing, so
one-off setup (codecarbon's hardware probe, 1-2 s, cached per process) is reported separately
as a cold start, not as overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from ecnas_plugin.energy.meters import CodecarbonMeter, Meter, RaplMeter, default_meter, plan_meters  # noqa: E402


def make_fake_powercap(root: Path) -> Path:
    """Two packages with core and dram sub-zones, like a two-socket server."""
    for pkg in (0, 1):
        p = root / f"intel-rapl:{pkg}"
        p.mkdir(parents=True)
        zones = ((p, f"package-{pkg}"), (p / f"intel-rapl:{pkg}:0", "core"),
                 (p / f"intel-rapl:{pkg}:1", "dram"))
        for z, name in zones:
            z.mkdir(exist_ok=True)
            (z / "name").write_text(name + "\n")
            (z / "energy_uj").write_text("123456789\n")
            (z / "max_energy_range_uj").write_text("262143328850\n")
    return root


def make_loop(epochs: int, steps: int) -> Callable[[Callable[[], None], Callable[[], None]], None]:
    """A fixed MLP training loop on random tensors; hooks run before and after each epoch."""
    torch.manual_seed(0)
    x = torch.randn(steps, 128, 256)
    y = torch.randint(0, 10, (steps, 128))
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(before_epoch: Callable[[], None], after_epoch: Callable[[], None]) -> None:
        for _ in range(epochs):
            before_epoch()
            for i in range(steps):
                opt.zero_grad()
                loss_fn(model(x[i]), y[i]).backward()
                opt.step()
            after_epoch()

    return run


def noop() -> None:
    pass


def variants(fake_root: Path, tmp: Path) -> dict[str, Callable[[Callable], None]]:
    """name -> function(loop) that runs the loop once under that variant."""

    # meters are built once, outside the timed region, and reused: a meter is reusable
    def whole(m: Meter) -> Callable:
        def go(loop):
            m.start()
            loop(noop, noop)
            m.stop()
        return go

    def per_epoch(m: Meter) -> Callable:
        def go(loop):
            loop(m.start, lambda: m.stop())
        return go

    def codecarbon_own(loop):
        from codecarbon import OfflineEmissionsTracker

        t = OfflineEmissionsTracker(country_iso_code="DNK", log_level="error", output_dir=str(tmp))
        t.start()
        loop(noop, noop)
        t.stop()

    v: dict[str, Callable] = {
        "none": lambda loop: loop(noop, noop),
        "default (1 window)": whole(default_meter()),
        "default (per epoch)": per_epoch(default_meter()),
        "rapl-fake (1 window)": whole(RaplMeter(root=fake_root)),
        "rapl-fake (per epoch)": per_epoch(RaplMeter(root=fake_root)),
    }
    if CodecarbonMeter.probe()[0]:
        v["codecarbon own"] = codecarbon_own
    return v


def window_cost(m: Meter, n: int) -> float:
    """Median seconds of one empty start()+stop() pair."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        m.start()
        m.stop()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of finished children (codecarbon runs lscpu)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def background_cpu(m: Meter, seconds: float) -> float:
    """CPU seconds per wall second that an open window costs while the program itself sleeps."""
    idle0 = time.process_time()
    time.sleep(seconds)
    idle = time.process_time() - idle0
    m.start()
    c0 = time.process_time()
    time.sleep(seconds)
    busy = time.process_time() - c0
    m.stop()
    return max(busy - idle, 0.0) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per epoch")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as d:
        fake_root = make_fake_powercap(Path(d) / "powercap")
        out = Path(d) / "cc"
        out.mkdir()
        t0 = time.perf_counter()
        chosen = default_meter()
        print(f"default meter here: {chosen.name} (components {', '.join(chosen.selected)}); "
              f"default_meter() took {time.perf_counter() - t0:.3f} s (registry, probes and choice)")
        for name, methods, why in plan_meters().considered:
            print(f"  considered {name}: {methods if methods else 'unavailable'} ({why})")
        t0 = time.perf_counter()
        chosen.start()
        print(f"cold start of the default meter: {time.perf_counter() - t0:.3f} s")
        r = chosen.stop()
        print(f"its methods: {r.method}")

        loop = make_loop(args.epochs, args.steps)
        runs = variants(fake_root, out)
        for go in runs.values():  # warm-up: first-time setup is not overhead
            go(loop)

        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        for rep in range(args.repeats):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                c0, t0 = cpu_seconds(), time.perf_counter()
                runs[name](loop)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(cpu_seconds() - c0)

        base, base_min = statistics.median(times["none"]), min(times["none"])
        spread = (max(times["none"]) - base_min) / base
        print(f"\n{args.repeats} interleaved repeats, {args.epochs} epochs x {args.steps} steps, "
              f"torch threads {args.threads}; run-to-run spread of 'none': {100 * spread:.1f}%")
        cpu_base = statistics.median(cpu["none"])
        print(f"{'variant':24s} {'median s':>9s} {'min s':>8s} {'ovh(median)':>12s} {'ovh(min)':>9s}"
              f" {'CPU s':>7s} {'ovh(CPU)':>9s}")
        for name in names:
            med, lo, c = statistics.median(times[name]), min(times[name]), statistics.median(cpu[name])
            print(f"{name:24s} {med:9.3f} {lo:8.3f} {100 * (med - base) / base:+11.2f}% "
                  f"{100 * (lo - base_min) / base_min:+8.2f}% {c:7.3f} {100 * (c - cpu_base) / cpu_base:+8.2f}%")

        # The wall-time differences above sit inside the machine's noise when it is shared, so
        # also account the overhead directly: window open/close cost + CPU of meter threads.
        print("\naccounted overhead (window cost x windows + background CPU while open):")
        print(f"{'meter':24s} {'per window':>11s} {'bg CPU':>8s} {'1 window':>9s} {'per epoch':>10s}")
        for label, m, n in (("rapl-fake", RaplMeter(root=fake_root), 200), (f"default: {chosen.name}", chosen, 9)):
            w = window_cost(m, n)
            bg = background_cpu(m, 2.0)
            one = 100 * (w / base + bg)
            many = 100 * (args.epochs * w / base + bg)
            print(f"{label:24s} {1e3 * w:9.3f}ms {100 * bg:7.3f}% {one:8.3f}% {many:9.3f}%")


if __name__ == "__main__":
    main()
