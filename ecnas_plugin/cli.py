"""`ecnas ...`: the command line. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EcnasError, UnknownName


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    registry = get_registry()
    for p in registry.plugins:
        origin = "built-in" if p.builtin else "third-party"
        state = "loaded" if p.loaded and not p.errors else ("FAILED" if not p.loaded else "loaded with problems")
        print(f"{p.label}  ({origin}, {p.value})  {state}")
        for kind, names in sorted(p.provides.items()):
            print(f"    {kind}: {', '.join(names)}")
            if kind == "spaces":
                for name in names:
                    space = registry.space(name)
                    dims = ", ".join(f"{d.name} ({d.role})" for d in space.dimensions)
                    print(f"      {name}: key = {space.key_description}; dimensions: {dims}; "
                          f"can: {', '.join(space.capabilities) or 'identify configurations only'}")
        for err in p.errors:
            print(f"    problem: {err}")
    if registry.failures:
        print(f"\n{len(registry.failures)} plugin(s) had problems; the others work.", file=sys.stderr)
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from .api import list_tables, load_table, table_dir

    from .registry import get_registry

    for name in args.rebuild or []:
        table = load_table(name, mirror=args.mirror, rebuild=True)
        in_place = not get_registry().table_spec(name).data_files
        print(f"rebuilt {table.name}: {len(table)} rows -> " + ("(read in place from its plugin's files, never cached)"
                                                                 if in_place else str(table_dir(name))))
    if args.rebuild:
        return 0
    for spec in list_tables():
        cached = ("read in place" if not spec.data_files else
                  "cached" if table_dir(spec.name).exists() else "not built yet")
        print(f"{spec.name:<28} {spec.space:<16} {cached:<14} {spec.description}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from . import datasets
    from .registry import get_registry

    entries = list(get_registry().items["data files"].values())
    if args.data_command == "list":
        rows = datasets.status(entries, mirror=args.mirror)
        for row in rows:
            size = f"{row['size'] / 1e6:8.1f} MB"
            print(f"{row['name']:<38} {size}  {row['license']:<11} {row['where']:<8} {row['path'] or ''}")
        return 0
    path = datasets.pull(args.name, entries=entries, mirror=args.mirror, progress=not args.quiet)
    print(path)
    return 0


def _predicted_query(args: argparse.Namespace) -> int:
    """A configuration the table does not hold, from the curve model ``--surrogate`` (labelled)."""
    from .energy.surrogates.curves import CurvePredictor

    predictor = CurvePredictor.load(args.surrogate)
    if predictor.context["space"] != args.space:
        raise UnknownName("space of the curve model", args.space, [predictor.context["space"]])
    epochs = [args.epochs] if args.epochs else list(range(1, predictor.budget + 1)) if args.curve else None
    frame = predictor.predict_frame([args.arch], epochs)
    if args.format == "json":
        print(frame.to_json(orient="records", indent=2))
        return 0
    print(f"PREDICTED: table {args.table!r} does not hold this configuration; these values are the "
          f"{predictor.context['model']} curve model's (σ in the *_sd columns), trained on "
          f"{predictor.context['energy_source']} energies of {predictor.context['table']}", file=sys.stderr)
    print(frame.drop(columns=["space", "arch_key"]).to_string(index=False))
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .api import query

    try:
        rows = query(args.space, args.arch, table=args.table, dataset=args.dataset, epochs=args.epochs,
                     hardware=args.hardware, campaign=args.campaign)
    except UnknownName as exc:
        if args.surrogate is None or "configuration" not in exc.what and "architecture" not in exc.what:
            raise
        return _predicted_query(args)
    if (rows["source"] == "estimated").any() and args.format != "json":  # json rows carry `source` themselves
        print(f"ESTIMATED: {int((rows['source'] == 'estimated').sum())} of these {len(rows)} energies come from a "
              "power model (no energy counter was read), not from a measurement", file=sys.stderr)
    if args.format == "json":
        print(rows.to_json(orient="records", indent=2))
        return 0
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 40):
        print(rows.T.to_string(header=[f"{e} epochs, repeat {r}" for e, r in zip(rows["epochs"], rows["repeat"])]))
    # Means only over repeats of one budget, dataset, hardware and campaign: never across them.
    for (epochs, dataset, hardware, campaign), group in rows.groupby(["epochs", "dataset", "hardware", "campaign"]):
        if len(group) > 1:
            sources = ", ".join(f"{n} {s}" for s, n in group["source"].value_counts().sort_index().items())
            print(f"\n{epochs} epochs ({dataset}, {hardware}, {campaign}): mean over {len(group)} repeats "
                  f"({sources}): train_energy_kwh={group['train_energy_kwh'].mean():.6g}"
                  + (f", val_acc={group['val_acc'].mean():.4f}" if "val_acc" in group else ""))
    if args.curve:
        from .api import load_table

        table = load_table(args.table)
        for row in rows.itertuples(index=False):
            curve = table.curve(row.arch_key, row.epochs, row.dataset, row.hardware, row.campaign, row.repeat)
            print(f"\nlearning curve, {row.epochs} epochs, repeat {row.repeat}:")
            if curve is None:
                print("  (the table records no checkpoints)")
                continue
            cols = [c for c in ("epoch", "train_time_s", "energy_kwh", "train_acc", "val_acc", "test_acc")
                    if c in curve and curve[c].notna().any()]
            print(curve[cols].to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .argtypes import OneLineParser

    parser = OneLineParser(prog="ecnas", description="Energy-aware neural architecture search.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list loaded plugins, what each provides, and failures")
    p.set_defaults(func=_cmd_plugins)

    mirror_help = "offline mirror folder laid out like the shared data folder (default: $ECNAS_DATA_MIRROR)"
    p = sub.add_parser("tables", help="list energy tables, or rebuild them")
    p.add_argument("--rebuild", nargs="+", metavar="NAME", help="rebuild these tables from their upstream files")
    p.add_argument("--mirror", type=Path, help=mirror_help)
    p.set_defaults(func=_cmd_tables)

    p = sub.add_parser("data", help="upstream data files: list, pull")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("list", help="every registered file and where it is")
    d.add_argument("--mirror", type=Path, help=mirror_help)
    d = dsub.add_parser("pull", help="verified download into the user cache (or verify in the mirror)")
    d.add_argument("name")
    d.add_argument("--mirror", type=Path, help=mirror_help)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("query", help="print the record(s) of one architecture in a table")
    p.add_argument("space", help="search space, e.g. nasbench101")
    p.add_argument("--arch", required=True,
                   help="architecture: NB101 module hash, ADJ:OPS or JSON; NB201 arch string or op indices")
    p.add_argument("--table", required=True, help="table name (see `ecnas tables`)")
    p.add_argument("--dataset")
    p.add_argument("--epochs", type=int)
    p.add_argument("--hardware")
    p.add_argument("--campaign")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--curve", action="store_true", help="also print each run's recorded learning curve")
    p.add_argument("--surrogate", metavar="MODEL_DIR",
                   help="a saved curve model (`ecnas surrogate fit --model bezier`): a configuration the table "
                        "does not hold is predicted by it, labelled PREDICTED")
    p.set_defaults(func=_cmd_query)

    from .energy.cli import add_subparsers as add_energy
    from .energy.surrogates.cli import add_subparser as add_surrogate
    from .naslib.cli import add_subparser as add_naslib
    from .study.cli import add_subparser as add_study

    add_energy(sub)
    add_naslib(sub)
    add_surrogate(sub)
    add_study(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EcnasError as exc:
        print(f"ecnas: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
