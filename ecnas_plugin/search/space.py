"""Tabular benchmarks for the built-in optimizers: the configurations of an energy table, at one
epoch budget or with the budget as a search dimension.

A :class:`TabularSpace` is a table's configurations (its ``arch_key`` values) in the registered
search space the table names, evaluated at the table's epoch budgets. Each evaluation is a
:class:`Point`, a (configuration, budget) pair; with one budget every point has the same budget
and the search is the usual one. Sampling and mutation never leave the table: mutation asks the
space for a neighbour inside the table's keys (``SearchSpace.mutate(arch, rng, subset)``) or, with
several budgets, moves to an adjacent budget. Evaluating a point draws one of its measured repeats
(as NAS-Bench-101 does), so the optimizer sees a noisy accuracy, while the trace also keeps the
repeat means ("true" values). A query at a budget returns accuracy, the energy to train to it and
the recorded learning curve up to it (:meth:`TabularSpace.query`).

Budgets read from the checkpoints of one run (the joint table's epochs 1..10, EC-NAS 5V's epoch 2
of its 4-epoch runs) belong to that run (:meth:`TabularSpace.run_of`): a search that continues a
configuration to a later budget of the same run pays only the extra epochs. Budgets trained as runs
of their own (EC-NAS 4V's 4, 12, 36, 108, each with its own schedule) do not share a run, so
each is paid in full.

With a curve surrogate (``predictor``, a :class:`~ecnas_plugin.energy.surrogates.curves.CurvePredictor`
of the table's space) the search leaves the table: sampling and mutation range over the whole
space, a configuration the table holds is looked up as before and any other is the surrogate's
prediction, ``source = "predicted"`` in its evaluation and trace row (its "true" values are the
prediction too; its training time is not predicted: NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from ecnas_plugin.adapters.base import SearchSpace
from ecnas_plugin.errors import InvalidArchitecture, SchemaError, UnknownName
from ecnas_plugin.table import EnergyTable, TableSlice

# The probability that a mutation moves the budget rather than the architecture (several budgets only).
BUDGET_MOVE = 0.5


@dataclass(frozen=True, order=True)
class Point:
    """One evaluation: a configuration (canonical key) trained to a budget."""

    key: str
    epochs: int


class Evaluation(NamedTuple):
    """One point trained (looked up): what the optimizer sees and what really happened. (A named
    tuple: one is built per optimizer step, and it builds 3x faster than a frozen dataclass.)"""

    point: Point
    config: str  # the space's text form of the configuration (``SearchSpace.describe``)
    repeat: int
    val_acc: float  # observed: this repeat (what the optimizer sees)
    test_acc: float
    train_energy_kwh: float  # energy this training cost: counted in the search energy
    train_time_s: float
    source: str  # measured | estimated | scaled | predicted (schema.SOURCES): where this energy came from
    true_val_acc: float  # mean over the table's repeats
    true_test_acc: float
    true_energy_kwh: float
    # What this evaluation added to the search energy where it continued a run already paid for
    # up to an earlier budget (None: trained from scratch, so ``train_energy_kwh``).
    charged_kwh: float | None = None

    @property
    def key(self) -> str:
        return self.point.key

    @property
    def cost_kwh(self) -> float:
        """The search energy this evaluation cost (EA-HAS-Bench's accounting, continuation charged the extra)."""
        return self.train_energy_kwh if self.charged_kwh is None else self.charged_kwh


@dataclass(frozen=True)
class QueryResult:
    """What a point costs and yields: accuracy and the energy/time to train to its budget (repeat
    means), where the energy came from, and the recorded curve up to the budget (or None)."""

    point: Point
    val_acc: float
    test_acc: float
    train_energy_kwh: float
    train_time_s: float
    sources: tuple[str, ...]
    repeats: int
    curve: pd.DataFrame | None


class TabularSpace:
    """The configurations of a table, at the budgets searched over."""

    def __init__(self, table: EnergyTable, space: SearchSpace | None = None,
                 epochs: int | Sequence[int] | None = None, name: str | None = None,
                 dataset: str | None = None, hardware: str | None = None, campaign: str | None = None,
                 predictor=None):
        if space is None:
            from ecnas_plugin.registry import get_registry

            space = get_registry().space(table.space)
        if space.name != table.space:
            raise SchemaError(f"table {table.name!r} holds space {table.space!r}, not {space.name!r}", column="space")
        self.table = table
        self.adapter = space
        self.name = name or table.name
        available = table.values("epochs")
        if epochs is None:
            epochs = [max(available)]
        budgets = sorted({space.fidelity(epochs=e)["epochs"] for e in ([epochs] if np.ndim(epochs) == 0 else epochs)})
        # A budget the table has no runs of is read from the checkpoints of its longest runs
        # (epoch e of a max-budget schedule), where the table has checkpoints there.
        longest = max(available)
        for e in budgets:
            if e not in available and (table.checkpoints is None or e > longest
                                       or not (table.checkpoints["epoch"] == float(e)).any()):
                raise UnknownName("epoch budget", e, available, context=f"in table {table.name!r} (nor an epoch its "
                                                                        f"runs have checkpoints of)")
        self.budgets: tuple[int, ...] = tuple(budgets)
        self.slices: dict[int, TableSlice] = {
            e: (table.slice(epochs=e, dataset=dataset, hardware=hardware, campaign=campaign) if e in available else
                table.slice(epochs=longest, dataset=dataset, hardware=hardware, campaign=campaign, at_epoch=e))
            for e in self.budgets}
        keys = sorted(set().union(*(s.keys for s in self.slices.values())))
        for e, s in self.slices.items():
            missing = sorted(set(keys) - set(s.keys))
            if missing:
                raise SchemaError(f"table {table.name!r} has no row for configuration {missing[0]} at {e} epochs "
                                  f"(and {len(missing) - 1} more); a search over budgets {list(self.budgets)} "
                                  "needs every configuration at every budget", column="arch_key")
            for column in ("val_acc", "test_acc"):
                if np.isnan(s.means[column]).any():
                    bad = s.keys[int(np.flatnonzero(np.isnan(s.means[column]))[0])]
                    raise SchemaError(f"table {table.name!r} lacks {column} for {bad} at {e} epochs; a search "
                                      "needs accuracies (an energy-only campaign cannot be searched)", column=column)
        self.keys: tuple[str, ...] = tuple(keys)
        self.key_set = frozenset(keys)
        self.archs: dict[str, object] = space.archs_of(table.frame[table.frame["arch_key"].isin(self.key_set)])
        self.points: tuple[Point, ...] = tuple(Point(k, e) for e in self.budgets for k in keys)
        self._index = {p: i for i, p in enumerate(self.points)}
        self._described: dict[str, str] = {}
        self._encodings: dict[str, np.ndarray] = {}
        self._rows: dict[Point, tuple[list[tuple], tuple[float, float, float]]] = {}
        self.true_val_acc = np.concatenate([self.slices[e].means["val_acc"] for e in self.budgets])
        self.true_test_acc = np.concatenate([self.slices[e].means["test_acc"] for e in self.budgets])
        self.true_energy_kwh = np.concatenate([self.slices[e].means["train_energy_kwh"] for e in self.budgets])
        self.predictor = predictor
        if predictor is not None:
            if predictor.context["space"] != space.name:
                raise SchemaError(f"the curve model predicts space {predictor.context['space']!r}, the table "
                                  f"{table.name!r} holds {space.name!r}", column="space")
            too_long = [e for e in self.budgets if e > predictor.budget]
            if too_long:
                raise UnknownName("epoch budget", too_long[0], list(range(1, predictor.budget + 1)),
                                  context="(the curve model learnt no further)")
            space.require("sample", flow="a search beyond a table")
            self.name = name or f"{table.name}+{predictor.context.get('model', 'surrogate')}"
        self._predicted: dict[Point, Evaluation] = {}

    def __len__(self) -> int:
        # with a surrogate, the whole space: no search runs out of configurations
        return len(self.points) if self.predictor is None else 2**62

    def __repr__(self) -> str:
        return f"TabularSpace({self.name!r}, configurations={len(self.keys)}, budgets={list(self.budgets)})"

    @property
    def epochs(self) -> int | None:
        """The budget when there is one; None when the budget is searched over."""
        return self.budgets[0] if len(self.budgets) == 1 else None

    @property
    def budget_label(self) -> str:
        return "/".join(str(e) for e in self.budgets)

    # ------------------------------------------------------------------ points
    def point(self, config: object, epochs: int | None = None) -> Point:
        """The point of a configuration (any form the space accepts) at ``epochs`` (default: the
        only budget); UnknownName if the table does not hold it."""
        key = config if isinstance(config, str) and config in self.key_set else self.adapter.canonical_key(
            self.adapter.arch(config))
        if epochs is None:
            if len(self.budgets) > 1:
                raise UnknownName("epoch budget", None, self.budgets, context="(not given; the space has several)")
            epochs = self.budgets[0]
        p = Point(key, int(epochs))
        if p not in self._index:
            if self.predictor is not None and int(epochs) in self.budgets:
                return p
            if key not in self.key_set:
                raise UnknownName(f"{self.adapter.name} configuration", key, context=f"in table {self.table.name!r}")
            raise UnknownName("epoch budget", epochs, self.budgets, context=f"of {self.name}")
        return p

    def index(self, point: Point) -> int:
        try:
            return self._index[point]
        except KeyError:
            raise UnknownName(f"{self.name} point", point) from None

    def encodings(self, keys: Sequence[str]) -> np.ndarray:
        """The space's encodings of configurations (``SearchSpace.encoding``: its features, and
        what else a distance between configurations needs), computed once per configuration: what
        a model-based optimizer learns from."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._encodings]
        if missing:
            for k, row in zip(missing, self.adapter.encoding([self._arch(k) for k in missing])):
                self._encodings[k] = row
        return np.array([self._encodings[k] for k in keys])

    def describe(self, point: Point) -> str:
        """The space's text form of the point's configuration (computed once per configuration)."""
        text = self._described.get(point.key)
        if text is None:
            text = self._described[point.key] = self.adapter.describe(self._arch(point.key))
        return text

    def _arch(self, key: str) -> object:
        arch = self.archs.get(key)
        return self.adapter.decode(key) if arch is None else arch

    # ------------------------------------------------------------------ moves
    def sample(self, rng: np.random.Generator, exclude: set[Point] | frozenset[Point] = frozenset()) -> Point:
        """A uniformly random point not in ``exclude`` (points already evaluated)."""
        if self.predictor is not None:
            while True:
                arch = self.adapter.sample(rng)
                p = Point(self.adapter.canonical_key(arch), self.budgets[int(rng.integers(len(self.budgets)))])
                if p not in exclude:
                    return p
        if len(exclude) >= len(self.points):
            raise ValueError(f"every one of the {len(self)} points of {self.name} is excluded")
        while True:  # rejection: fast while most points are still free
            p = self.points[int(rng.integers(len(self.points)))]
            if p not in exclude:
                return p

    def mutate(self, point: Point, rng: np.random.Generator) -> Point:
        """A different point near ``point``: with several budgets, an adjacent budget with
        probability :data:`BUDGET_MOVE`; otherwise the space's own mutation of the architecture,
        kept inside the table."""
        if len(self.budgets) > 1 and rng.random() < BUDGET_MOVE:
            i = self.budgets.index(point.epochs)
            steps = [j for j in (i - 1, i + 1) if 0 <= j < len(self.budgets)]
            return Point(point.key, self.budgets[steps[int(rng.integers(len(steps)))]])
        arch = self._arch(point.key)
        if self.predictor is not None:
            return Point(self.adapter.canonical_key(self.adapter.mutate(arch, rng)), point.epochs)
        try:
            child = self.adapter.mutate(arch, rng, self.key_set)
        except InvalidArchitecture as exc:
            if exc.rule != "no-neighbour" or not self.adapter.supports("neighbours"):
                raise
            # The space's own move found nothing inside the table (a sparse sample of a big
            # space): take one of the table's configurations fewest edits away.
            options = self.adapter.nearest(arch, self.key_set)
            child = options[int(rng.integers(len(options)))]
        return Point(self.adapter.canonical_key(child), point.epochs)

    # ------------------------------------------------------------------ evaluation
    def repeats(self, key: str, epochs: int | None = None) -> Mapping[str, np.ndarray]:
        """The table's repeats of configuration ``key`` at ``epochs``: val_acc, test_acc,
        train_energy_kwh, train_time_s, source arrays."""
        p = self.point(key, epochs)
        return self.slices[p.epochs].of(p.key)

    def run_of(self, point: Point) -> tuple[str, object]:
        """The training run the point is a checkpoint of. Points of one run share it: budgets read
        from the checkpoints of the table's longest runs, or a predicted configuration's budgets
        (one predicted curve). A budget the table holds runs of is its own run."""
        if self.predictor is not None and point not in self._index:
            return (point.key, "predicted")
        return (point.key, self.slices[point.epochs].epochs)

    def same_run(self, earlier: int, later: int) -> bool:
        """Whether the table's configurations at budget ``later`` continue their runs at ``earlier``."""
        return self.slices[earlier].epochs == self.slices[later].epochs

    def evaluate(self, point: Point, rng: np.random.Generator, repeat: int | None = None) -> Evaluation:
        """Look the point up, drawing one measured repeat (no draw where there is one repeat, or
        where ``repeat`` names the one of a run being continued)."""
        found = self._rows.get(point)
        if found is None:
            if self.predictor is not None and point not in self._index:
                return self._predict(point)
            found = self._row(point)
        repeats, true = found
        if repeat is not None:
            r = repeat
        else:
            r = int(rng.random() * len(repeats)) if len(repeats) > 1 else 0
        return Evaluation(point, self.describe(point), r, *repeats[r], *true)

    def _row(self, point: Point) -> tuple[list[tuple], tuple[float, float, float]]:
        """The point's repeats as plain tuples and its true values: built once, so an evaluation
        is one dict lookup (benchmarks/bench_tables.py, section 4)."""
        i = self._index.get(point)
        if i is None:
            raise UnknownName(f"{self.name} point", point)
        rec = self.slices[point.epochs].repeats[point.key]
        cols = [rec[c].tolist() for c in ("val_acc", "test_acc", "train_energy_kwh", "train_time_s")]
        repeats = [(*(float(c[r]) for c in cols), str(rec["source"][r])) for r in range(len(cols[0]))]
        true = (float(self.true_val_acc[i]), float(self.true_test_acc[i]), float(self.true_energy_kwh[i]))
        self._rows[point] = (repeats, true)
        return self._rows[point]

    def _predict(self, point: Point) -> Evaluation:
        """The curve surrogate's values of a configuration outside the table (cached per point)."""
        found = self._predicted.get(point)
        if found is None:
            out = self.predictor.predict([self._arch(point.key)], [point.epochs])
            val, test, energy = (float(out[c][0, 0]) for c in ("acc", "test_acc", "energy_kwh"))
            found = self._predicted[point] = Evaluation(point, self.describe(point), 0, val, test, energy, math.nan,
                                                        "predicted", val, test, energy)
        return found

    def query(self, config: object, epochs: int | None = None) -> QueryResult:
        """Value and cost of a configuration at a budget, with the curve up to it where recorded
        (a predicted configuration: the surrogate's values and curve, source predicted)."""
        p = self.point(config, epochs)
        if p not in self._index:
            ev = self._predict(p)
            curve = self.predictor.predict_frame([self._arch(p.key)], list(range(1, p.epochs + 1)))
            return QueryResult(p, ev.val_acc, ev.test_acc, ev.train_energy_kwh, ev.train_time_s, ("predicted",), 0,
                               curve.rename(columns={"epochs": "epoch", "train_energy_kwh": "energy_kwh"}))
        i = self._index[p]
        rec = self.slices[p.epochs].repeats[p.key]
        s = self.slices[p.epochs]
        curve = self.table.curve(p.key, epochs=s.epochs, dataset=s.dataset, hardware=s.hardware, campaign=s.campaign)
        if curve is not None and s.epochs != p.epochs:  # a budget read from a longer run: its curve up to there
            curve = curve[curve["epoch"] <= p.epochs].reset_index(drop=True)
        return QueryResult(p, float(self.true_val_acc[i]), float(self.true_test_acc[i]),
                           float(self.true_energy_kwh[i]), float(np.mean(rec["train_time_s"])),
                           tuple(sorted(set(rec["source"].tolist()))), len(rec["val_acc"]), curve)


_CACHE: dict[tuple, TabularSpace] = {}


def load_space(name: str, epochs: int | Sequence[int] | None = None, surrogate: str | None = None) -> TabularSpace:
    """The table ``name`` (any registered table) as a search space, at ``epochs`` (one budget, a
    list of budgets searched over, or None for the table's largest), built once per process.
    ``surrogate``: a curve model that extends the search to the whole space, either the folder of
    a saved one or a registered curve surrogate's name (fitted here on the table, seed 0)."""
    from ecnas_plugin.api import load_table

    cache_key = (name, tuple(epochs) if isinstance(epochs, (list, tuple)) else epochs, surrogate)
    if cache_key not in _CACHE:
        table = load_table(name)
        predictor = None
        if surrogate is not None:
            from pathlib import Path

            from ecnas_plugin.energy.surrogates.curves import MODEL_FILE, CurvePredictor

            if (Path(surrogate) / MODEL_FILE).is_file():
                predictor = CurvePredictor.load(surrogate)
            else:
                predictor = CurvePredictor.fit(table, surrogate)
        _CACHE[cache_key] = TabularSpace(table, epochs=epochs, name=name, predictor=predictor)
    return _CACHE[cache_key]
