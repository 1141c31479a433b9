"""NASLib's own optimizers as study optimizers (``naslib:rs``, ``naslib:re``, ...), run through the bridge.

A study run with a NASLib optimizer builds a NASLib config (yacs CfgNode, loaded by NASLib's own
config loader) whose ``energy:`` section carries the study's objective and budget, runs it with
:func:`ecnas_plugin.naslib.runner.search` in the worker process, and converts the bridge's
``energy_trace.parquet`` into the study's trace format (:data:`ecnas_plugin.search.TRACE_COLUMNS`),
so metrics and the report treat it like a built-in optimizer's run.

Mapping:

- objective ``accuracy`` → ``energy: {objective: penalty, weight: 0}`` (the objective *is* the
  accuracy; energy on only so that the bridge traces and charges every evaluation);
  ``penalty``/``soft``/``constraint``/``chebyshev`` → the same objective with the parameters the
  built-in optimizers would use (their defaults filled in, so no table-median reference sneaks in).
  Chebyshev through the bridge redraws its weights every search epoch (the bridge's semantics).
- ``{evaluations: N}`` → ``search.epochs: N`` (NASLib's rs/re/ls/bananas/npenas evaluate one cell
  per epoch; the trace is cut at N should an optimizer ever evaluate more);
  ``{search_kwh: X}`` → ``energy.search_budget_kwh: X`` with ``search.epochs`` = the number of
  cells of the space (the built-in searches stop there too).
- The study space (a table name) → ``search_space``: any registered NB101 table with accuracies is
  served to NASLib as an EC-NAS-style subspace (:mod:`ecnas_plugin.naslib.subspace`); its epoch
  budget → ``energy.epochs``; its ``surrogate`` → ``energy.surrogate`` (a table served by the
  bridge's own class, e.g. the joint table: the bridge searches the whole space and is handed the
  run's own fitted model, :func:`ecnas_plugin.naslib.tabular.provided`; predicted rows are the
  space's predictions, ``source = predicted``). :func:`require` refuses, before anything runs, a table the bridge
  cannot serve (another space's, or one without accuracies), naming it.

Differences from a built-in run, by construction of the bridge: the bridge charges each evaluation
the cell's *mean* training energy over the table's repeats (a built-in run charges the drawn
repeat's), so ``train_energy_kwh`` equals ``true_energy_kwh`` here; the observed repeat is
recovered from the validation accuracy NASLib saw, and ``config``, ``source`` and the true values
come from the study's :class:`~ecnas_plugin.search.space.TabularSpace` of the same table. NASLib's checkpoints (torch pickles) are
written to a temporary folder and dropped; its ``errors.json`` and the bridge's
``pareto_front.json`` are kept under ``runs/<run_id>/naslib/``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecnas_plugin.errors import DataFormatError, EcnasError
from ecnas_plugin.objectives import make_objective
from ecnas_plugin.search.run import TRACE_COLUMNS
from ecnas_plugin.search.space import Point, TabularSpace

PREFIX = "naslib:"
OPTIMIZERS = ("rs", "re", "ls", "bananas", "npenas")
KEPT_FILES = ("errors.json", "pareto_front.json")
NASLIB_DIR = "naslib"

# NASLib ``search:`` settings a study may override per optimizer (``params:``), with defaults.
PARAMS: dict[str, object] = {
    "population_size": 30, "sample_size": 10,  # re
    "num_init": 10,  # ls, bananas, npenas
    "predictor_type": "bananas", "k": 10, "num_ensemble": 3, "acq_fn_type": "its",  # bananas, npenas
    "acq_fn_optimization": "mutation", "encoding_type": "path", "num_arches_to_mutate": 2,
    "max_mutations": 1, "num_candidates": 20,
}
# Read by NASLib's trainer and loaders but meaningless for tabular search: fixed.
_FIXED_SEARCH = {"checkpoint_freq": 100000, "fidelity": 108, "batch_size": 256, "data_size": 25000,
                 "cutout": False, "cutout_length": 16, "cutout_prob": 1.0, "train_portion": 0.7,
                 "debug_predictor": False}


def is_naslib(optimizer: str) -> bool:
    """Whether a study optimizer name names one of NASLib's optimizers (``naslib:<name>``)."""
    return optimizer.startswith(PREFIX)


def names() -> tuple[str, ...]:
    """Every NASLib optimizer name a study config accepts."""
    return tuple(PREFIX + n for n in OPTIMIZERS)


def check_tables(tables: list[str]) -> None:
    """Refuse (before anything runs) a study table the bridge cannot serve to NASLib as a search
    space: one neither of NASLib's NB101 graph type nor of a space that can sample and move
    (ConfigError naming ``spaces``). Needs no NASLib and loads no table."""
    from ecnas_plugin.naslib import spaces
    from ecnas_plugin.study.config import ConfigError

    for name in tables:
        try:
            spaces.target(name)
        except EcnasError as exc:
            raise ConfigError(f"spaces[{name}]", f"NASLib optimizers cannot search table {name!r}: {exc}") from None


def require(optimizers: list[str], tables: Sequence[str] = ()) -> None:
    """Refuse (before anything runs) when NASLib is missing: says which optimizers need it and how
    to install; and ``tables`` the bridge cannot serve (:func:`check_tables`)."""
    from ecnas_plugin.naslib.compat import NaslibUnavailable, require_naslib

    check_tables(list(tables))
    try:
        require_naslib()
    except NaslibUnavailable as exc:
        raise NaslibUnavailable(f"study config: optimizer(s) {', '.join(optimizers)} run NASLib's own optimizers "
                                "through the bridge, but NASLib is not installed here. Use the built-in optimizers "
                                f"(random, evolution, sms-emoa) instead, or install NASLib.\n{exc}") from None


def energy_section(objective_name: str, objective_params: dict, epochs: int,
                   search_kwh: float | None, surrogate: str | None = None) -> dict:
    """The bridge's ``energy:`` section for a study objective (see the module docstring)."""
    if objective_name == "accuracy":
        section: dict = {"objective": "penalty", "weight": 0.0, "reference_kwh": 1.0}
    else:
        obj = make_objective(objective_name, **objective_params)  # the built-in run's objective, defaults filled
        section = {"objective": objective_name}
        for key in ("weight", "exponent", "limit_kwh", "reference_kwh"):
            if hasattr(obj, key):
                section[key] = float(getattr(obj, key))
        if objective_name == "chebyshev":
            section["seed"] = int(obj.seed)
    section["epochs"] = int(epochs)
    if search_kwh is not None:
        section["search_budget_kwh"] = float(search_kwh)
    if surrogate is not None:  # the study space's curve surrogate: the bridge searches the whole space
        section["surrogate"] = str(surrogate)
    return section


def config_dict(spec, space: TabularSpace, save_dir: str) -> dict:
    """The NASLib config (as a plain mapping) for one study run ``spec`` (a ``RunSpec``)."""
    search = {**_FIXED_SEARCH, **PARAMS, **spec.optimizer_params}
    search["epochs"] = spec.budget_evaluations if spec.budget_evaluations is not None else len(space)
    return {
        "seed": int(spec.seed), "optimizer": spec.optimizer[len(PREFIX):], "search_space": spec.space,
        "dataset": "cifar10", "out_dir": save_dir, "search": search, "evaluation": {"checkpoint_freq": 100000},
        "energy": energy_section(spec.objective_name, spec.objective_params, space.epochs, spec.budget_kwh,
                                 getattr(spec, "surrogate", None)),
    }


def run_naslib(spec, space: TabularSpace, run_folder: Path) -> pd.DataFrame:
    """Run one study cell with a NASLib optimizer; returns its trace in the study's format.

    Keeps NASLib's ``errors.json`` and the bridge's ``pareto_front.json`` in ``run_folder/naslib``.
    """
    import yaml

    from contextlib import nullcontext

    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import runner, tabular
    from ecnas_plugin.naslib.trace import TRACE_FILE

    bridge.install()  # raises NaslibUnavailable with install steps when NASLib is missing
    surrogate = getattr(spec, "surrogate", None)
    # with a surrogate the bridge serves this run's own space (its fitted model: no refit, the same predictions)
    serving = tabular.provided(space, surrogate) if surrogate is not None else nullcontext()
    with tempfile.TemporaryDirectory(prefix="ecnas-naslib-") as tmp, serving:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config_dict(spec, space, str(Path(tmp) / "out"))))
        config = runner.load_config(str(path), [])
        runner.search(config)
        save = Path(config.save)
        if not (save / TRACE_FILE).is_file():
            raise EcnasError(f"NASLib run {spec.run_id}: the bridge wrote no {TRACE_FILE} (was energy on?)")
        bridge_trace = pd.read_parquet(save / TRACE_FILE)
        kept = run_folder / NASLIB_DIR
        kept.mkdir(parents=True, exist_ok=True)
        for name in KEPT_FILES:
            if (save / name).is_file():
                shutil.copyfile(save / name, kept / name)
    if spec.budget_evaluations is not None:
        bridge_trace = bridge_trace.head(spec.budget_evaluations)
    return convert_trace(bridge_trace, space, source=str(save / TRACE_FILE))


def convert_trace(bridge_trace: pd.DataFrame, space: TabularSpace, source: str = "energy_trace.parquet") -> pd.DataFrame:
    """The bridge's energy trace → the study's trace (one row per evaluation, ``TRACE_COLUMNS``).

    True values, the configuration's text form and the energy's source label come from ``space``
    (the same table slice the bridge used); the observed repeat is the one whose validation
    accuracy NASLib saw. ``best_*`` follow the accuracy incumbent (highest observed validation
    accuracy so far), as in a built-in run.
    """
    need = ("arch_key", "val_acc", "train_energy_kwh", "objective", "search_energy_kwh")
    for col in need:
        if col not in bridge_trace.columns:
            raise DataFormatError(source, None, f"bridge trace lacks column {col!r} (has {list(bridge_trace.columns)})")
    labels = bridge_trace["energy_source"] if "energy_source" in bridge_trace.columns else None
    if labels is not None and space.predictor is None:
        predicted = int((labels == "predicted").sum())
        if predicted:  # the study's true energies are the table's own values: never mix in predictions
            raise DataFormatError(source, None, f"bridge trace has {predicted} predicted energies; a study needs "
                                                "the table's own (or a space with its curve surrogate)")
    if space.epochs is None:
        raise DataFormatError(source, None, f"space {space.name} searches budgets {list(space.budgets)}; a NASLib "
                                            "run searches one")
    epochs = space.epochs
    rows: list[tuple] = []
    best = None
    for n, r in enumerate(bridge_trace.itertuples(index=False), start=1):
        if r.arch_key not in space.key_set and space.predictor is not None:
            # outside the table: the space's prediction (the bridge served this space's surrogate)
            point = Point(r.arch_key, epochs)
            ev = space.evaluate(point, np.random.default_rng(0))  # a predicted point draws nothing
            label = getattr(r, "energy_source", "predicted")
            if label != "predicted" or not np.isclose(ev.val_acc, r.val_acc, rtol=0, atol=1e-9) or \
                    not np.isclose(ev.train_energy_kwh, r.train_energy_kwh, rtol=1e-9, atol=0):
                raise DataFormatError(source, n - 1, f"configuration {r.arch_key} (outside table {space.table.name}) "
                                      f"is {label} with accuracy {r.val_acc!r} and {r.train_energy_kwh!r} kWh; the "
                                      f"surrogate predicts {ev.val_acc!r} and {ev.train_energy_kwh!r} kWh")
            if best is None or r.val_acc > best[0]:
                best = (float(r.val_acc), ev.true_test_acc, ev.true_energy_kwh)
            rows.append((n, r.arch_key, space.describe(point), epochs, 0, float(r.val_acc), ev.test_acc,
                         float(r.train_energy_kwh), float(r.train_energy_kwh), ev.train_time_s, "predicted",
                         ev.true_val_acc, ev.true_test_acc, ev.true_energy_kwh,
                         float(r.objective), float(r.search_energy_kwh), *best))
            continue
        if r.arch_key not in space.key_set:
            raise DataFormatError(source, n - 1, f"cell {r.arch_key} is not in space {space.name}")
        point = Point(r.arch_key, epochs)
        i = space.index(point)
        rec = space.repeats(r.arch_key, epochs)
        hits = np.flatnonzero(np.isclose(rec["val_acc"], r.val_acc, rtol=0, atol=1e-9))
        if not len(hits):
            raise DataFormatError(source, n - 1, f"validation accuracy {r.val_acc!r} of cell {r.arch_key} matches "
                                                 f"no repeat of table {space.name} at {epochs} epochs")
        rep = int(hits[0])
        true = (float(space.true_val_acc[i]), float(space.true_test_acc[i]), float(space.true_energy_kwh[i]))
        if best is None or r.val_acc > best[0]:
            best = (float(r.val_acc), true[1], true[2])
        rows.append((n, r.arch_key, space.describe(point), epochs, rep,
                     float(r.val_acc), float(rec["test_acc"][rep]), float(r.train_energy_kwh),
                     float(r.train_energy_kwh),  # the bridge trains every evaluation from scratch: charged in full
                     float(rec["train_time_s"][rep]), str(rec["source"][rep]), *true,
                     float(r.objective), float(r.search_energy_kwh), *best))
    return pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
