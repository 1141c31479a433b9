"""How far a scaled steady-state window is from a whole-epoch measurement, on real runs here.

    python benchmarks/bench_window_scaling.py [--configs 24] [--epochs 2] [--warmup 2] [--steps 4]

For each configuration of the joint space (a design with another seed than the committed
campaign's), the same training is measured twice, back to back on this machine: once metering
every whole epoch, once metering only ``--steps`` training steps after ``--warmup`` steps of each
epoch and scaling them to the epoch's samples (``CampaignSpec.window_steps``; those rows say
``source = scaled``), and once more metering whole epochs: the two whole-epoch passes give the
noise floor (how far a measurement here is from itself), the yardstick for the window's error. It prints, per configuration and in summary, the scaled energy and time per
epoch against the whole-epoch values (ratio and absolute relative error), and how many training
steps the window saved. On a machine without an energy counter both energies are codecarbon
ESTIMATES (a power model), so the energy comparison mostly repeats the time comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dataset", default="flowers17", choices=("flowers17", "cifar10-synthetic"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import torch

    from ecnas_plugin.energy.campaign import CampaignSpec, build_table, measure
    from ecnas_plugin.registry import get_registry

    torch.set_num_threads(1)
    space = get_registry().space("nb201-joint")
    archs = tuple(space.describe(a) for a in space.design(args.configs, seed=args.seed))
    common = dict(space=space.name, archs=archs, epochs=args.epochs, dataset=args.dataset, torch_threads=1)
    whole = CampaignSpec(name="window-check-whole", **common)
    scaled = CampaignSpec(name="window-check-scaled", window_steps=args.steps, window_warmup=args.warmup, **common)
    records: dict[str, list] = {"whole": [], "scaled": [], "again": []}
    started = time.perf_counter()
    for arch in archs:  # back to back per configuration: both see the same machine load
        records["whole"].append(measure(whole.to_dict(), arch, 0))
        records["scaled"].append(measure(scaled.to_dict(), arch, 0))
        records["again"].append(measure(whole.to_dict(), arch, 0))
    wall = time.perf_counter() - started
    tables = {"whole": build_table(whole, records["whole"]), "scaled": build_table(scaled, records["scaled"]),
              "again": build_table(whole, records["again"])}
    w = tables["whole"].frame.set_index("arch_key")
    s = tables["scaled"].frame.set_index("arch_key").loc[w.index]
    again = tables["again"].frame.set_index("arch_key").loc[w.index]
    epoch_steps = int(s["epoch_steps"].iloc[0])
    print(f"{len(w)} configurations x {args.epochs} epochs of {epoch_steps} steps on {args.dataset}; window: steps "
          f"{args.warmup + 1}-{args.warmup + args.steps} of each epoch, scaled x{epoch_steps / args.steps:.2f}; "
          f"energy sources: whole {tables['whole'].sources_text()}, windowed {tables['scaled'].sources_text()}")
    print(f"{'configuration':<60} {'time/epoch s':>12} {'scaled':>8} {'ratio':>6} {'energy Wh':>10} {'scaled':>8} "
          f"{'ratio':>6}")
    ratios_t, ratios_e, floor_t, floor_e = [], [], [], []
    for key in w.index:
        floor_t.append(again.at[key, "train_time_s"] / w.at[key, "train_time_s"])
        floor_e.append(again.at[key, "train_energy_kwh"] / w.at[key, "train_energy_kwh"])
        tw, ts = w.at[key, "train_time_s"] / args.epochs, s.at[key, "train_time_s"] / args.epochs
        ew, es = w.at[key, "train_energy_kwh"] * 1e3 / args.epochs, s.at[key, "train_energy_kwh"] * 1e3 / args.epochs
        ratios_t.append(ts / tw)
        ratios_e.append(es / ew)
        label = key.split(";", 1)[1][:60]
        print(f"{label:<60} {tw:>12.3f} {ts:>8.3f} {ts / tw:>6.2f} {ew:>10.5f} {es:>8.5f} {es / ew:>6.2f}")

    def summary(name: str, ratios: list[float]) -> str:
        errors = sorted(abs(r - 1) for r in ratios)
        return (f"{name}: median ratio {statistics.median(ratios):.3f}, median |error| {statistics.median(errors):.1%}, "
                f"90th percentile |error| {errors[int(0.9 * (len(errors) - 1))]:.1%}, worst {errors[-1]:.1%}")

    print(summary("scaled window / whole epoch, time  ", ratios_t))
    print(summary("scaled window / whole epoch, energy", ratios_e))
    print(summary("noise floor: whole epoch again / whole epoch, time  ", floor_t))
    print(summary("noise floor: whole epoch again / whole epoch, energy", floor_e))
    trained = args.warmup + args.steps
    print(f"the windowed runs trained {trained} of {epoch_steps} steps per epoch ({trained / epoch_steps:.0%}); "
          f"total wall time of the three passes {wall:.0f} s")


if __name__ == "__main__":
    main()
