"""`ecnas measure`, `ecnas contribute` and `ecnas meters`: thin layers over campaign/contribute/meters.

Hook into the main parser with ``add_subparsers(subparsers)``. Bad input is one line on stderr
naming the argument, exit status 2, never a traceback: argument types are checked while parsing,
and what only the registry can judge (the space, its network settings and enumeration limits,
meters, cells) is an :class:`~ecnas_plugin.errors.EcnasError` the main command prints as one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ecnas_plugin.argtypes import float_at_least as _float_at_least
from ecnas_plugin.argtypes import int_at_least as _int_at_least
from ecnas_plugin.argtypes import name_int as _name_int
from ecnas_plugin.errors import (ConfigError, EcnasError, InvalidArchitecture, InvalidConfiguration, MissingCapability,
                                 UnknownName)

# CampaignSpec field -> the option that sets it (what an error message names)
_OPTION_OF = {"name": "--name", "epochs": "--epochs", "repeats": "--repeats", "batch_size": "--batch-size",
              "synthetic_samples": "--synthetic-samples", "pue": "--pue", "lr": "--lr",
              "torch_threads": "--threads", "archs": "--cells/--cells-file/--sample",
              "weight_decay": "--weight-decay", "window_steps": "--window-steps", "window_warmup": "--window-warmup"}


class ArgumentError(EcnasError, ValueError):
    """A command-line argument the registry or the campaign refused; names the argument."""


def _user_table(name: str) -> str:
    """An argparse type for ``--into``: a plain ``user-...`` name (checked by contribute's rule)."""
    from .contribute import user_table_dir

    try:
        user_table_dir(name)
    except EcnasError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _pairs(items: list[tuple[str, int]] | None, option: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in items or []:
        if name in out and out[name] != value:
            raise ArgumentError(f"argument {option}: {name} given twice ({out[name]} and {value})")
        out[name] = value
    return out


def _cells_file(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"argument --cells-file: cannot read {path}: {exc}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _cmd_measure(args: argparse.Namespace) -> int:
    from ecnas_plugin import datasets

    from .campaign import CampaignError, CampaignSpec, measurable_space, run_campaign, sample_cells
    from .executors import get_executor

    # the space first, refused by name (unknown, no network builder, no enumeration or strata for
    # --sample) before anything is read, enumerated or trained
    try:
        space = measurable_space(args.space, sample=bool(args.sample))
    except (UnknownName, MissingCapability) as exc:
        raise ArgumentError(f"argument space: {exc}") from None
    limits = _pairs(args.limit, "--limit")
    if limits and not args.sample:
        raise ArgumentError("argument --limit: limits only apply to --sample")
    archs: list[str] = list(args.cells or [])
    if args.cells_file:
        archs += _cells_file(args.cells_file)
    if args.sample:
        try:
            sample = sample_cells(space, args.sample, seed=args.sample_seed, limits=limits or None)
        except UnknownName as exc:  # a limit the space's enumeration does not take
            raise ArgumentError(f"argument --limit: {exc}") from None
        except CampaignError as exc:  # sample larger than the (limited) space, a limit out of range
            raise ArgumentError(f"argument --sample/--limit: {exc}") from None
        archs += [a for a in sample if a not in archs]
    if not archs:
        raise ArgumentError("arguments --cells/--cells-file/--sample: give cells with --cells, --cells-file "
                            "or --sample N")
    try:
        spec = CampaignSpec(
            name=args.name, space=space.name, archs=tuple(archs), epochs=args.epochs, dataset=args.dataset,
            meter=args.meter, pue=args.pue, hardware=args.hardware or "", repeats=args.repeats, seed=args.seed,
            batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
            schedule=args.schedule, window_steps=args.window_steps, window_warmup=args.window_warmup,
            network=_pairs(args.network, "--network"),
            synthetic_samples=args.synthetic_samples, data_root=str(args.data_root or ""),
            torch_threads=args.threads, license=args.license, citation=args.citation)
    except ConfigError as exc:
        option = _OPTION_OF.get(exc.key, f"--{exc.key.replace('_', '-')}")
        raise ArgumentError(f"argument {option}: {str(exc).split(': ', 1)[-1]}") from None
    except UnknownName as exc:
        option = {"meter": "--meter", "optimizer": "--optimizer", "schedule": "--schedule"}.get(exc.what, "--network")
        raise ArgumentError(f"argument {option}: {exc}") from None
    except (InvalidArchitecture, InvalidConfiguration) as exc:
        raise ArgumentError(f"argument --cells/--cells-file: {exc}") from None
    out = args.out or datasets.folder_for(datasets.cache_dir() / "campaigns", spec.name, "campaign name")
    if args.executor == "local":  # on a cluster the workers' meters count, not the driver's
        from ecnas_plugin.errors import MeterError

        from .campaign import check_meter

        try:
            check_meter(spec.meter)
        except MeterError as exc:
            raise ArgumentError(f"argument --meter: {exc}") from None
    executor = get_executor("ray", address=args.ray_address) if args.executor == "ray" else "local"
    result = run_campaign(spec, out, executor, progress=not args.quiet)
    print(f"{len(result.table)} run(s) ({result.measured_now} now, {result.resumed} from the journal), energy: "
          f"{result.table.sources_text()} -> {result.table_dir}")
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
    from .meters import MeterError, meter_classes, meters_report, plan_meters

    rows = meters_report(list(meter_classes().values()))
    for row in rows:
        state = "works" if row["works"] else "unavailable"
        how = ", ".join(f"{c}: {m}" for c, m in row["methods"].items())
        print(f"{row['name']:<12} {'+'.join(row['components']):<12} {state:<12} {how + '; ' if how else ''}"
              f"{row['reason']}")
    try:
        plan = plan_meters()
    except MeterError:
        return 1
    print(f"auto: {plan.name} (" + ", ".join(f"{c}: {m}" for c, m in plan.methods.items()) + ")")
    return 0


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `measure`, `contribute` and `meters` to the `ecnas` command."""
    from .campaign import DATASETS
    from .executors import EXECUTORS

    p = subparsers.add_parser(
        "measure", help="run an energy measurement campaign (resumable) on any registered space with a "
                        "network builder")
    p.add_argument("space", help="a registered search space (`ecnas plugins` lists them), e.g. nasbench201")
    p.add_argument("--name", required=True, help="campaign name (the `campaign` column of every row)")
    p.add_argument("--cells", nargs="+", metavar="ARCH",
                   help="cells in any form the space parses (NB201: arch strings or indices; "
                        "NB101: ADJ:OPS or JSON {matrix, ops})")
    p.add_argument("--cells-file", type=Path, help="a file with one cell per line")
    p.add_argument("--sample", type=_int_at_least(1), metavar="N",
                   help="add N cells, stratified over the space's enumeration")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the stratified sample")
    p.add_argument("--limit", type=_name_int(), action="append", metavar="NAME=INT",
                   help="a limit of the space's enumeration for --sample (repeatable), e.g. max_vertices=7 "
                        "for nasbench101 (default: the space's own default limits; NB101: max_vertices=5)")
    p.add_argument("--epochs", type=_int_at_least(1), required=True)
    p.add_argument("--dataset", choices=DATASETS, default="flowers17",
                   help="flowers17: real accuracy; cifar10-synthetic: energy only at CIFAR-10 scale")
    p.add_argument("--data-root", type=Path, help="Flowers-17 folder (default: the data registry: offline mirror, "
                                                  "cache or a verified download)")
    p.add_argument("--synthetic-samples", type=_int_at_least(1), default=2048,
                   help="training images per epoch, synthetic data")
    p.add_argument("--meter", default="auto",
                   help="auto (best combination of the registered meters that works here), a registered "
                        "meter's name (`ecnas meters`), or a combination like nvml+rapl")
    p.add_argument("--pue", type=_float_at_least(1.0), default=1.0,
                   help="power usage effectiveness to apply (1.0 = none)")
    p.add_argument("--hardware", help="hardware label of the rows (default: detected GPU or CPU model)")
    p.add_argument("--repeats", type=_int_at_least(1), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_int_at_least(1), default=64)
    p.add_argument("--lr", type=_float_at_least(0.0, strict=True), default=0.1,
                   help="learning rate (where the space's configurations do not fix their own)")
    p.add_argument("--optimizer", default="sgd", help="sgd, adam or adamw (likewise)")
    p.add_argument("--weight-decay", type=_float_at_least(0.0), default=5e-4, help="(likewise)")
    p.add_argument("--schedule", default="cosine", help="cosine, exponential or linear (likewise)")
    p.add_argument("--window-steps", type=_int_at_least(1), default=0, metavar="K",
                   help="meter K training steps of each epoch (after --window-warmup) and scale them to the "
                        "epoch: rows say source = scaled; each epoch trains only warmup + K steps (no accuracy)")
    p.add_argument("--window-warmup", type=_int_at_least(0), default=0, metavar="W",
                   help="steps of each epoch before the metered window")
    p.add_argument("--network", type=_name_int(), nargs="+", metavar="NAME=INT",
                   help="builder settings of the space (its network_defaults), e.g. C=16 N=5 (nasbench201) "
                        "or stem_channels=128 (nasbench101)")
    p.add_argument("--threads", type=_int_at_least(1), help="torch threads per measurement")
    p.add_argument("--out", type=Path, help="campaign folder (journal + table); default: the user cache")
    p.add_argument("--executor", choices=EXECUTORS, default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: local instance or $RAY_ADDRESS)")
    p.add_argument("--license", default="CC-BY-4.0")
    p.add_argument("--citation", default="")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)

    p = subparsers.add_parser(
        "contribute", help="validate a measurement file and merge it into your tables")
    p.add_argument("file", type=Path, help="table folder, `ecnas measure` output folder, or .parquet file")
    p.add_argument("--manifest", type=Path, help="manifest of a .parquet file (default: beside it)")
    p.add_argument("--into", type=_user_table, help="user table to merge into: a plain name starting with 'user-' "
                                  "(default: user-<space>)")
    p.add_argument("--power-range", type=_float_at_least(0.0), nargs=2, metavar=("MIN_W", "MAX_W"),
                   help="plausible average IT power of the device instead of the built-in ranges")
    p.add_argument("--dry-run", action="store_true", help="check only, write nothing")
    p.set_defaults(func=_cmd_contribute)

    p = subparsers.add_parser("meters", help="which energy meters work on this machine, and why not")
    p.set_defaults(func=_cmd_meters)
