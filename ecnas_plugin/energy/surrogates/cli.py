"""`ecnas surrogate fit | eval | predict`: thin layer over the Python API (hook: ``add_subparser``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecnas_plugin.argtypes import fraction, int_at_least


def _frame(table: str, epochs: int | None):
    """Measured rows of ``table`` (a registered table name, or the folder of a saved table such as
    ``ecnas measure``'s ``OUT/table``) at one budget (default: its smallest)."""
    from ecnas_plugin.api import load_table
    from ecnas_plugin.schema import DATA_SOURCES
    from ecnas_plugin.table import EnergyTable

    path = Path(table)
    frame = EnergyTable.load(path).frame if (path / "manifest.json").is_file() else load_table(table).frame
    frame = frame[frame["source"].isin(DATA_SOURCES)]
    if frame["source"].nunique() > 1:  # a model learns one kind: measured unless the table has none
        frame = frame[frame["source"] == "measured"]
    if epochs is not None:
        frame = frame[frame["epochs"] == epochs]
    elif frame["epochs"].nunique() > 1:
        frame = frame[frame["epochs"] == frame["epochs"].min()]
    return frame


def _load(model_dir: Path | None):
    from .predictor import Predictor, default_predictor

    return default_predictor() if model_dir is None else Predictor.load(model_dir)


def _table(table: str):
    """A registered table by name, or the folder of a saved table."""
    from ecnas_plugin.api import load_table
    from ecnas_plugin.table import EnergyTable

    path = Path(table)
    return EnergyTable.load(path) if (path / "manifest.json").is_file() else load_table(table)


def _is_curve_model(name: str) -> bool:
    from .curves import curve_surrogate_classes

    return name in curve_surrogate_classes()


def _is_curve_dir(folder: Path | None) -> bool:
    from .curves import MODEL_FILE

    return folder is not None and (Path(folder) / MODEL_FILE).is_file()


def _curve_table(args: argparse.Namespace):
    """The table's measured curves at one budget (its largest, or ``--epochs``)."""
    table = _table(args.table)
    budgets = sorted(table.frame["epochs"].unique())
    budget = args.epochs or int(budgets[-1])
    keys = table.frame.loc[table.frame["epochs"] == budget, "arch_key"]
    return table.subset(keys) if len(budgets) > 1 else table


def _curve_fit(args: argparse.Namespace) -> int:
    """Fit a curve surrogate on a share of the table's configurations; metrics on the rest."""
    from .curves import CurvePredictor, curves_of, evaluate_curves, split_curves

    table = _curve_table(args)
    curves = curves_of(table)
    train, test = split_curves(curves, args.test_fraction, args.seed)
    if args.train_cells:
        train = train[: args.train_cells]
    predictor = CurvePredictor.fit(table, args.model, seed=args.seed, only=[curves.keys[i] for i in train])
    if len(test) >= 3:
        predictor.metrics = {"held_out": evaluate_curves(predictor, curves.subset(test))}
    predictor.save(args.out)
    print(json.dumps({"saved": str(args.out), "model": args.model, **predictor.context, **predictor.metrics}, indent=2))
    return 0


def fit_command(args: argparse.Namespace) -> int:
    """Fit on a table's measured rows (one budget), hold out cells, print and save metrics."""
    from .evaluation import evaluate, split
    from .predictor import fit

    if _is_curve_model(args.model):
        return _curve_fit(args)

    frame = _frame(args.table, args.epochs)
    train, test = split(frame, args.test_fraction, args.seed)
    if args.train_cells:
        import numpy as np

        keys = np.random.default_rng(args.seed).permutation(sorted(train["arch_key"].unique()))
        train = train[train["arch_key"].isin(keys[: args.train_cells])]
    predictor = fit(train, args.model, source_table=args.table, seed=args.seed)
    # metrics need 3 held-out cells; a smaller table is fitted and saved without them
    predictor.metrics = {"held_out": evaluate(predictor, test)} if test["arch_key"].nunique() >= 3 else {}
    predictor.save(args.out)
    print(json.dumps({"saved": str(args.out), **predictor.metrics}, indent=2))
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """Metrics of a saved (or the shipped) model on a table's cells it never saw; learning curve."""
    from .evaluation import evaluate, learning_curve, plot_learning_curve

    if _is_curve_dir(args.model_dir):
        from .curves import CurvePredictor, curves_of, evaluate_curves

        metrics = evaluate_curves(CurvePredictor.load(args.model_dir), curves_of(_curve_table(args)))
        print(json.dumps({"metrics": metrics}, indent=2))
        return 0
    frame = _frame(args.table, args.epochs)
    out = {}
    if not args.curve_only:
        out["metrics"] = evaluate(_load(args.model_dir), frame, rank_only=args.rank_only)
    if args.learning_curve:
        curve = learning_curve(frame, sizes=args.learning_curve, model=args.model, seed=args.seed)
        out["learning_curve"] = curve.to_dict(orient="records")
        print(curve.to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=sys.stderr)
        if args.csv:
            curve.to_csv(args.csv, index=False)
        if args.png:
            plot_learning_curve(curve, args.png, title=f"{args.model} on {args.table}")
    print(json.dumps(out, indent=2))
    return 0


def _fail(option: str, message: object) -> int:
    """A bad argument of ``surrogate predict``: one line on stderr naming it, exit status 2."""
    text = " ".join(str(message).split())  # one line, whatever the message held
    print(f"ecnas: error: surrogate predict {option}: {text}", file=sys.stderr)
    return 2


def predict_command(args: argparse.Namespace) -> int:
    """Predicted energy (source=predicted, with σ) for architectures in any form the model's space
    reads (NB101: hash, ADJ:OPS or JSON; NB201: arch string, op indices or index), or, with
    ``--all --out DIR``, every NB101 cell as a predicted EnergyTable in DIR."""
    from ecnas_plugin.errors import EcnasError

    for option, value in (("--out", args.out), ("--name", args.name), ("--workers", args.workers)):
        if value is not None and not args.all:
            return _fail(option, "is only for --all (single predictions go to stdout)")
    if args.all and (args.arch or args.input):
        return _fail("--all", "predicts every cell; it takes no --arch or --input")
    if args.all and args.out is None:
        return _fail("--out", "is required with --all: the folder to write the predicted table to")
    if args.all and (args.out.is_file() or (args.out.is_dir() and any(args.out.iterdir())
                                                  and not (args.out / "manifest.json").is_file())):
        return _fail("--out", f"{args.out} exists and is not a table folder (give a new or a table folder)")
    texts: list[tuple[str, str]] = [(f"--arch {t!r}", t) for t in (args.arch or [])]
    if args.input:
        try:
            lines = Path(args.input).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            return _fail("--input", f"cannot read {args.input}: {getattr(exc, 'strerror', None) or exc}")
        texts += [(f"--input {args.input} line {i}", line.strip()) for i, line in enumerate(lines, 1) if line.strip()]
    if not texts and not args.all:
        return _fail("--arch", "no architecture given; pass --arch (repeatable), --input FILE or --all --out DIR")
    if _is_curve_dir(args.model_dir):
        return _curve_predict(args, texts)
    if args.epochs is not None:
        return _fail("--epochs", "is for curve models (an energy model predicts its own budget)")
    try:
        predictor = _load(args.model_dir)
    except (EcnasError, ValueError, OSError) as exc:
        return _fail("--model-dir" if args.model_dir else "(shipped model)", exc)
    if args.all:
        return _predict_all(predictor, args)
    archs = _parsed(texts, predictor.space.parse_arch)  # the model's own space (manifest), from the registry
    if isinstance(archs, int):
        return archs
    try:
        frame = predictor.predict_energy(archs)
    except EcnasError:
        for (where, _), arch in zip(texts, archs):  # name the first architecture it cannot predict
            try:
                predictor.predict_energy([arch])
            except EcnasError as exc:
                return _fail(where, exc)
        raise
    return _print_frame(frame, args.format)


def _parsed(texts: list[tuple[str, str]], parse) -> list | int:
    """Each text through ``parse`` (the model's space's reader), or the exit status of a one-line
    error naming where the first one it refuses came from."""
    from ecnas_plugin.errors import EcnasError

    archs = []
    for where, text in texts:
        try:
            archs.append(parse(text))
        except EcnasError as exc:
            return _fail(where, exc)
    return archs


def _print_frame(frame, fmt: str) -> int:
    if fmt == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def _curve_predict(args: argparse.Namespace, texts: list[tuple[str, str]]) -> int:
    """Predicted curve values (source=predicted, σ) of configurations at ``--epochs``."""
    from ecnas_plugin.errors import EcnasError

    from .curves import CurvePredictor

    if args.all:
        return _fail("--all", "a curve model's space has no finite list of configurations to predict")
    try:
        predictor = CurvePredictor.load(args.model_dir)
    except (EcnasError, ValueError, OSError) as exc:
        return _fail("--model-dir", exc)
    archs = _parsed(texts, predictor.space.arch)
    if isinstance(archs, int):
        return archs
    try:
        frame = predictor.predict_frame(archs, args.epochs)
    except EcnasError as exc:
        return _fail("--epochs", exc)
    return _print_frame(frame, args.format)


def _predict_all(predictor, args: argparse.Namespace) -> int:
    """``--all``: every NB101 cell, predicted, saved as an EnergyTable in ``args.out``."""
    import time

    from ecnas_plugin.errors import SchemaError

    from ecnas_plugin.errors import MissingCapability

    start = time.perf_counter()
    try:  # the space's featuriser knows its fastest way to the whole space
        table = predictor.features.whole_space_table(predictor, name=args.name or "", workers=args.workers)
    except (SchemaError, MissingCapability) as exc:
        return _fail("--all" if isinstance(exc, MissingCapability) else "--model-dir", exc)
    folder = table.save(args.out)
    summary = {"saved": str(folder), "name": table.name, "rows": len(table), "sources": table.sources(),
               "campaign": predictor.context.campaign, "epochs": predictor.context.epochs,
               "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(summary, indent=2))
    return 0


def _surrogate_name(name: str) -> str:
    """An argparse type: a registered surrogate model's name (energy or curve surrogate)."""
    from .curves import curve_surrogate_classes
    from .predictor import surrogate_classes

    known = sorted({*surrogate_classes(), *curve_surrogate_classes()})
    if name not in known:
        raise argparse.ArgumentTypeError(f"unknown surrogate model {name!r}; available: {', '.join(known)}")
    return name


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``surrogate fit|eval|predict`` to the ``ecnas`` parser."""
    p = subparsers.add_parser("surrogate", help="energy surrogates: fit, evaluate, predict")
    sub = p.add_subparsers(dest="surrogate_command", required=True)
    # Model names are checked when an argument is parsed (registry loaded then), so building the
    # parser for `ecnas --help` imports no surrogate code.
    models = _surrogate_name

    f = sub.add_parser("fit", help="train a surrogate on a table's measured energies")
    f.add_argument("--table", default="ecnas-5v", help="table name, or the folder of a saved table")
    f.add_argument("--epochs", type=int_at_least(1), help="budget to learn (default: the table's smallest)")
    f.add_argument("--model", default="additive", type=models,
                   help="a registered surrogate model: energy (additive, lightgbm, mlp, ensemble, ...) or "
                        "learning curve (bezier, gbm-epoch, pow3: the table's curves, at its largest budget)")
    f.add_argument("--train-cells", type=int_at_least(1), help="train on at most this many cells")
    f.add_argument("--test-fraction", type=fraction(open_low=False), default=0.4,
                   help="share of cells held out for the metrics, in [0, 1)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path, required=True, help="folder to write the model to")
    f.set_defaults(func=fit_command)

    e = sub.add_parser("eval", help="metrics on unseen cells; optional learning curve (table + PNG)")
    e.add_argument("--model-dir", type=Path, help="saved model folder (default: the shipped model)")
    e.add_argument("--table", default="ecnas-5v", help="table name, or the folder of a saved table")
    e.add_argument("--epochs", type=int_at_least(1))
    e.add_argument("--rank-only", action="store_true", help="another campaign: report τ and ρ only")
    e.add_argument("--learning-curve", type=int_at_least(1), nargs="+", metavar="N",
                   help="training sizes, e.g. 50 100 500 1000")
    e.add_argument("--curve-only", action="store_true", help="only the learning curve")
    e.add_argument("--model", default="additive", type=models, help="model for the learning curve")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--csv", type=Path, help="write the learning curve table here")
    e.add_argument("--png", type=Path, help="write the learning curve figure here")
    e.set_defaults(func=eval_command)

    q = sub.add_parser("predict", help="predicted energy with σ for architectures of the model's space")
    q.add_argument("--arch", action="append",
                   help="architecture as the model's space reads it (NB101: module hash, ADJ:OPS or JSON; "
                        "NB201: arch string or op indices); repeatable")
    q.add_argument("--input", type=Path, help="file with one architecture per line")
    q.add_argument("--model-dir", type=Path, help="saved model folder (default: the shipped model)")
    q.add_argument("--format", choices=("csv", "json"), default="csv")
    q.add_argument("--epochs", type=int_at_least(1), nargs="+",
                   help="curve models: the epochs to predict (default: the budget the model learnt)")
    q.add_argument("--all", action="store_true",
                   help="every configuration of the model's space as a predicted table (source=predicted, σ, "
                        "arch_text) written to --out (NB101: all 423,624 cells in about 20 s); load it with "
                        "EnergyTable.load(DIR)")
    q.add_argument("--out", type=Path, help="with --all: the table folder to write")
    q.add_argument("--name", help="with --all: the table's name (default <space>-predicted-<campaign>)")
    q.add_argument("--workers", type=int_at_least(1),
                   help="with --all: processes for the module hashes (default: the CPUs, at most 4)")
    q.set_defaults(func=predict_command)
