"""`ecnas measure`, `ecnas contribute` and `ecnas meters`: thin layers over campaign/contribute/meters.

Hook into the main parser with ``add_subparsers(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _network(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"--network takes NAME=INT pairs, got {item!r}")
        out[name] = int(value)
    return out


def _cmd_measure(args: argparse.Namespace) -> int:
    from ecnas_plugin import datasets

    from .campaign import CampaignSpec, run_campaign, sample_cells
    from .executors import get_executor

    archs: list[str] = list(args.cells or [])
    if args.cells_file:
        archs += [ln.strip() for ln in Path(args.cells_file).read_text().splitlines()
                  if ln.strip() and not ln.startswith("#")]
    if args.sample:
        archs += [a for a in sample_cells(args.space, args.sample, seed=args.sample_seed, max_vertices=args.max_vertices)
                  if a not in archs]
    if not archs:
        print("ecnas measure: give cells with --cells, --cells-file or --sample N", file=sys.stderr)
        return 2
    spec = CampaignSpec(
        name=args.name, space=args.space, archs=tuple(archs), epochs=args.epochs, dataset=args.dataset,
        meter=args.meter, pue=args.pue, hardware=args.hardware or "", repeats=args.repeats, seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, network=_network(args.network),
        synthetic_samples=args.synthetic_samples, data_root=str(args.data_root or ""),
        torch_threads=args.threads, license=args.license, citation=args.citation)
    out = args.out or datasets.cache_dir() / "campaigns" / args.name
    executor = get_executor("ray", address=args.ray_address) if args.executor == "ray" else "local"
    result = run_campaign(spec, out, executor, progress=not args.quiet)
    print(f"{len(result.table)} measurement(s) ({result.measured_now} now, {result.resumed} from the journal) "
          f"-> {result.table_dir}")
    print(f"contribute them with: ecnas contribute {result.table_dir}")
    return 0


def _cmd_contribute(args: argparse.Namespace) -> int:
    from .contribute import contribute

    power = tuple(args.power_range) if args.power_range else None
    report = contribute(args.file, into=args.into, manifest=args.manifest, power_range_w=power,
                        dry_run=args.dry_run)
    print(report.text(), file=sys.stdout if report.accepted else sys.stderr)
    return 0 if report.accepted else 1


def _cmd_meters(args: argparse.Namespace) -> int:
    from .campaign import meter_classes
    from .meters import meters_report

    rows = meters_report(list(meter_classes().values()))
    for row in rows:
        state = "works" if row["works"] else "unavailable"
        print(f"{row['name']:<12} {'+'.join(row['components']):<12} {state:<12} {row['reason']}")
    return 0 if any(r["works"] for r in rows) else 1


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `measure`, `contribute` and `meters` to the `ecnas` command."""
    from .campaign import DATASETS, SPACES
    from .executors import EXECUTORS

    p = subparsers.add_parser("measure", help="run an energy measurement campaign (resumable)")
    p.add_argument("space", choices=SPACES)
    p.add_argument("--name", required=True, help="campaign name (the `campaign` column of every row)")
    p.add_argument("--cells", nargs="+", metavar="ARCH",
                   help="cells: NB201 arch strings or indices; NB101 ADJ:OPS or JSON {matrix, ops}")
    p.add_argument("--cells-file", type=Path, help="a file with one cell per line")
    p.add_argument("--sample", type=int, metavar="N", help="add N cells, stratified over the space")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the stratified sample")
    p.add_argument("--max-vertices", type=int, default=5, help="NB101 sampling: cells of at most this many vertices")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--dataset", choices=DATASETS, default="flowers17",
                   help="flowers17: real accuracy; cifar10-synthetic: energy only at CIFAR-10 scale")
    p.add_argument("--data-root", type=Path, help="Flowers-17 folder (default: the data registry: offline mirror, cache or a verified download)")
    p.add_argument("--synthetic-samples", type=int, default=2048, help="training images per epoch, synthetic data")
    p.add_argument("--meter", default="auto", help="auto, nvml, rapl, codecarbon, or a combination like nvml+rapl")
    p.add_argument("--pue", type=float, default=1.0, help="power usage effectiveness to apply (1.0 = none)")
    p.add_argument("--hardware", help="hardware label of the rows (default: detected GPU or CPU model)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--network", nargs="+", metavar="NAME=INT",
                   help="builder sizes, e.g. C=16 N=5 (NB201) or stem_channels=128 (NB101)")
    p.add_argument("--threads", type=int, help="torch threads per measurement")
    p.add_argument("--out", type=Path, help="campaign folder (journal + table); default: the user cache")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: local instance or $RAY_ADDRESS)")
    p.add_argument("--license", default="CC-BY-4.0")
    p.add_argument("--citation", default="")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)

    p = subparsers.add_parser("contribute", help="validate a measurement file and merge it into your tables")
    p.add_argument("file", type=Path, help="table folder, `ecnas measure` output folder, or .parquet file")
    p.add_argument("--manifest", type=Path, help="manifest of a .parquet file (default: beside it)")
    p.add_argument("--into", help="user table to merge into (default: user-<space>)")
    p.add_argument("--power-range", type=float, nargs=2, metavar=("MIN_W", "MAX_W"),
                   help="plausible average IT power of the device instead of the built-in ranges")
    p.add_argument("--dry-run", action="store_true", help="check only, write nothing")
    p.set_defaults(func=_cmd_contribute)

    p = subparsers.add_parser("meters", help="which energy meters work on this machine, and why not")
    p.set_defaults(func=_cmd_meters)

