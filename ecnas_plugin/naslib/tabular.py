"""A table of a space without a NASLib mapping, served as a NASLib search space (any registered table
whose space offers the ``sample`` and ``neighbours`` capabilities, e.g. ``nb201-joint-flowers17-cpu``).

NASLib's own graphs exist only for NASLib's spaces; an NB101 table is served through them
(:mod:`ecnas_plugin.naslib.subspace`). Any other table is served by :func:`graph_class`, a small
class that speaks NASLib's search-space interface as far as its tabular optimizers (RS, RE, LS) and
its ``Trainer`` use it — ``clone``, ``sample_random_architecture``, ``mutate``, ``get_nbhd``,
``get_hash``, ``get_type``, ``set_spec``/``get_spec`` and ``query`` — over the table's configurations:

- its moves are those of :class:`~ecnas_plugin.search.space.TabularSpace` (the table's
  configurations at the run's budget; the space's own mutation, kept inside the table), its
  neighbourhood the configurations one edit away inside the table or, where a sparse table holds
  none, the nearest ones (the rule ``TabularSpace.mutate`` follows);
- a query answers from the table's runs (:class:`TableRuns`: one repeat drawn per query, as
  NAS-Bench-101 does), accuracies in percent like NASLib's benchmarks. It answers at the run's
  budget, the one charged (``energy.epochs``, default the table's largest), whatever ``epoch`` a
  single-value query passes — NASLib's NB101 query ignores it too, and RS passes
  ``search.fidelity``, a setting of NASLib's spaces; with ``full_lc`` it returns the recorded curve
  up to ``epoch``. The table holds one dataset and answers for it (a table mixing several is
  refused); NASLib's ``dataset`` names its data loaders and is not consulted, as for served NB101 tables.

With a curve surrogate (``energy.surrogate``: a registered curve surrogate's name, fitted on the
table when the run starts, or a saved model's folder; :meth:`TabularBench.extend`) the served
space is the whole space, as for the built-in optimizers
(:func:`ecnas_plugin.search.load_space` with ``surrogate``, whose
:class:`~ecnas_plugin.search.space.TabularSpace` gives the moves and the predictions): sampling,
mutation and neighbourhoods range over every configuration, a configuration the table holds
answers from its runs as above, and any other from the surrogate — validation and test accuracy
in percent at the run's budget, ``full_lc`` the predicted curve, training accuracy, time and
parameters not predicted (NaN) — and its energy is the surrogate's (:class:`CurveEnergy`),
labelled ``predicted`` in the trace, ``errors.json`` and the front. A surrogate of another space,
dataset, hardware or campaign, or one that learnt fewer epochs than the run's budget, is refused
(ConfigError naming the key).

The bridge wraps this class's ``query`` exactly as NASLib's (``hooks.own_targets``), so energy,
its source label (``estimated`` stays ``estimated``), the search-energy budget and the trace work
as on NASLib's spaces. NASLib's encoders (BANANAS, NPENAS, BP) know only NASLib's own graphs: those
optimizers are refused before anything runs (:func:`ecnas_plugin.naslib.spaces.check_optimizer`).

Nothing here imports NASLib except :func:`graph_class`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from ecnas_plugin.errors import ConfigError, EcnasError, SchemaError, UnknownName

# What a query returns per repeat: NAS-Bench-101's key (NASLib's tabular benchmarks share these
# names) -> the table column it is read from.
METRICS = {"train_accuracy": "train_acc", "validation_accuracy": "val_acc", "test_accuracy": "test_acc",
           "training_time": "train_time_s", "trainable_parameters": "params", "train_energy_kwh": "train_energy_kwh"}
# dataset_api keys of a served table (NB101 or tabular): its name and its TableRuns.
NAME_KEY = "ecnas_space"
SERVED_KEY = "ecnas_served"
GRAPH_TYPE = "ecnas-tabular"  # get_type() of served configurations: no NASLib encoder knows it


class TableRuns:
    """The runs of a table at its epoch budgets, per configuration key, as NASLib's tabular
    benchmarks answer them: one dict of :data:`METRICS` per repeat, built on first use per budget.

    ``keys``: the configurations served (default: those of the table at ``default_epochs``, the
    table's largest budget unless given); ``what`` names one in messages (``"ecnas-4v cell"``).
    """

    def __init__(self, table: object, keys: Collection[str] | None, name: str, what: str,
                 default_epochs: int | None = None):
        epochs = table.values("epochs")  # type: ignore[attr-defined]
        if default_epochs is None:
            default_epochs = epochs[-1]
        if default_epochs not in epochs:
            raise UnknownName("epoch budget", default_epochs, epochs, context=f"in table {table.name!r}")  # type: ignore[attr-defined]
        mixed = [c for c in ("dataset", "hardware", "campaign") if len(table.values(c)) > 1]  # type: ignore[attr-defined]
        if mixed:
            raise SchemaError(f"table {table.name!r} mixes several {mixed[0]} values; a table served as a "  # type: ignore[attr-defined]
                              "NASLib search space needs a single one", column=mixed[0])
        self.table = table
        self.name = name
        self.what = what
        self.default_epochs = int(default_epochs)
        # epochs -> key -> one metric dict per repeat: a query is a dict lookup and a copy.
        self._rows: dict[int, dict[str, list[dict]]] = {}
        rows = self._runs_at(self.default_epochs)
        self.keys: list[str] = sorted(rows if keys is None else keys)
        self._key_set = frozenset(self.keys)

    def __deepcopy__(self, memo: dict) -> TableRuns:  # shared by every clone of a NASLib graph
        return self

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def _runs_at(self, epochs: int) -> dict[str, list[dict]]:
        rows = self._rows.get(epochs)
        if rows is None:
            s = self.table.slice(epochs=epochs, columns=tuple(METRICS.values()))  # type: ignore[attr-defined]
            missing = [col for col in ("val_acc", "test_acc") if col not in s.means or np.isnan(s.means[col]).all()]
            if missing:
                raise SchemaError(f"table {self.table.name!r} has no {missing[0]} at {epochs} epochs: an "  # type: ignore[attr-defined]
                                  "energy-only table cannot be served as a NASLib search space", column=missing[0])
            rows = {}
            for key in s.keys:
                rec = s.repeats[key]
                n = len(rec["val_acc"])
                rows[key] = [{name: float(rec[col][r]) if col in rec else float("nan") for name, col in METRICS.items()}
                             for r in range(n)]
            self._rows[epochs] = rows
        return rows

    def _runs(self, key: str, epochs: int) -> list[dict]:
        rows = self._rows.get(epochs)
        if rows is None:
            budgets = self.table.values("epochs")  # type: ignore[attr-defined]
            if epochs not in budgets:
                raise UnknownName("epoch budget", epochs, budgets, context=f"in table {self.table.name!r}")  # type: ignore[attr-defined]
            rows = self._runs_at(epochs)
        try:
            return rows[key]
        except KeyError:
            if key not in self._key_set:
                raise UnknownName(self.what, key, self.keys) from None
            has = [e for e in self.table.values("epochs") if key in self._runs_at(e)]  # type: ignore[attr-defined]
            raise UnknownName("epoch budget", epochs, has, context=f"for {key}") from None

    def draw(self, key: str, epochs: int | None = None) -> dict:
        """One of the repeats of ``key`` (``random.randint``, as NAS-Bench-101 picks one)."""
        runs = self._runs(key, self.default_epochs if epochs is None else int(epochs))
        return dict(runs[random.randint(0, len(runs) - 1)])

    def mean(self, key: str, epochs: int | None = None) -> dict:
        """Metrics of ``key`` averaged over repeats (deterministic; used for energy accounting)."""
        runs = self._runs(key, self.default_epochs if epochs is None else int(epochs))
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def _rng() -> np.random.Generator:
    """A Generator drawn from the global ``numpy.random`` stream, which NASLib seeds
    (``utils.set_seed``, ``Trainer.search``): a seed gives the same search, as on NASLib's spaces."""
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


# TabularSpaces with a fitted curve surrogate handed to the bridge by a caller that has one already
# (a study's worker: its run's space), keyed (table, budget, surrogate setting): no second fit.
_PROVIDED: dict[tuple[str, int, str], object] = {}
# Passed where TabularSpace.evaluate takes a generator but a predicted point draws nothing.
_NO_DRAW = np.random.default_rng(0)


@contextmanager
def provided(space: object, surrogate: str) -> Iterator[None]:
    """Inside, a served table extended with ``surrogate`` (:meth:`TabularBench.extend`) at the
    budget of ``space`` (a :class:`~ecnas_plugin.search.space.TabularSpace` of that table with
    its curve predictor, e.g. ``load_space(table, epochs, surrogate)``) uses ``space`` itself:
    the same fitted model, the same predictions, no refit."""
    if getattr(space, "predictor", None) is None or space.epochs is None:  # type: ignore[attr-defined]
        raise ValueError(f"{space!r} has no curve predictor or searches several budgets")
    key = (str(space.table.name), int(space.epochs), surrogate)  # type: ignore[attr-defined]
    before = _PROVIDED.get(key)
    _PROVIDED[key] = space
    try:
        yield
    finally:
        if before is None:
            _PROVIDED.pop(key, None)
        else:
            _PROVIDED[key] = before


class TabularBench(TableRuns):
    """A table of a space without a NASLib mapping, served: its configurations at one budget (a
    :class:`~ecnas_plugin.search.space.TabularSpace`, which gives the moves) and their runs; with
    a curve surrogate (:meth:`extend`) the whole space, configurations outside the table predicted.

    The budget must be one the table has runs of: energy is charged from those rows
    (:class:`ecnas_plugin.naslib.trace.EnergySource`), so budgets read from checkpoints are not served.
    """

    def __init__(self, name: str, table: object | None = None, epochs: int | None = None,
                 surrogate: str | None = None):
        import ecnas_plugin as ep
        from ecnas_plugin.registry import get_registry
        from ecnas_plugin.search.space import TabularSpace

        if table is None:
            table = ep.load_table(name)
        adapter = get_registry().space(table.space)  # type: ignore[attr-defined]
        adapter.require("sample", "neighbours", flow=f"serving table {name!r} as a NASLib search space")
        budgets = table.values("epochs")  # type: ignore[attr-defined]
        if epochs is not None and epochs not in budgets:
            raise UnknownName("epoch budget", epochs, budgets, context=f"in table {name!r} (energy is charged from "
                              "a budget's rows; budgets read from checkpoints are not served to NASLib)")
        super().__init__(table, None, name, f"{name} configuration", epochs)
        self.space = TabularSpace(table, epochs=self.default_epochs, name=name)  # type: ignore[arg-type]
        self.adapter = adapter
        self.surrogate: str | None = None  # the energy.surrogate setting the space was extended with
        self.predictor = None  # its CurvePredictor
        if surrogate is not None:
            self.extend(surrogate)

    def extend(self, surrogate: str) -> None:
        """Serve the whole space: moves and predictions of ``load_space(table, budget, surrogate)``
        (``surrogate``: a registered curve surrogate's name, fitted on the table, seed 0, or a saved
        model's folder; a space :func:`provided` is used as it is). ConfigError naming the key for a
        model of another space, dataset, hardware or campaign, or one that learnt fewer epochs."""
        if self.surrogate == surrogate:
            return
        if self.surrogate is not None:
            raise ConfigError("energy.surrogate", f"table {self.name!r} is served with curve surrogate "
                                                  f"{self.surrogate!r} already, not {surrogate!r}")
        space = _PROVIDED.get((self.name, self.default_epochs, surrogate))
        if space is None:
            from ecnas_plugin.search.space import load_space

            try:
                space = load_space(self.name, self.default_epochs, surrogate)
            except UnknownName as exc:
                if exc.what == "epoch budget":
                    raise ConfigError("energy.epochs", f"{self.default_epochs} epochs is beyond what curve surrogate "
                                                       f"{surrogate!r} learnt: {exc}") from None
                raise ConfigError("energy.surrogate", f"{surrogate!r}: {exc}") from None
            except EcnasError as exc:  # another space, a model that cannot load, a table it cannot learn
                raise ConfigError("energy.surrogate", f"{surrogate!r} cannot extend table {self.name!r}: {exc}") from None
        predictor = space.predictor  # type: ignore[attr-defined]
        if predictor is not None and predictor.model.observes:
            raise ConfigError("energy.surrogate", f"curve surrogate {surrogate!r} ({predictor.model.name}) extrapolates "
                              f"a configuration's own first {predictor.model.observes} epochs: it cannot predict one "
                              "never trained; use bezier or gbm-epoch")
        if predictor is None or space.key_set != self.space.key_set:  # type: ignore[attr-defined]
            raise ConfigError("energy.surrogate", f"{surrogate!r}: the extended space is not of the served table "
                                                  f"{self.name!r} at {self.default_epochs} epochs")
        ctx = predictor.context
        for what in ("dataset", "hardware", "campaign"):
            have = str(self.table.values(what)[0])  # type: ignore[attr-defined]  # one value: TableRuns checks
            if str(ctx.get(what)) != have:
                raise ConfigError("energy.surrogate", f"curve surrogate {surrogate!r} learnt {what} {ctx.get(what)!r} "
                                  f"(table {ctx.get('table')!r}); table {self.name!r} is {what} {have!r}: its "
                                  "predictions would not speak for this table")
        self.space, self.predictor, self.surrogate = space, predictor, surrogate

    def predicted(self, key: str) -> bool:
        """Whether ``key`` is answered by the curve surrogate (a configuration outside the table)."""
        return self.predictor is not None and key not in self._key_set

    def _prediction(self, key: str, epochs: int | None = None):
        """The surrogate's :class:`~ecnas_plugin.search.space.Evaluation` of ``key`` at the budget
        (TabularSpace's own, cached per configuration: a study's conversion reads the same values)."""
        from ecnas_plugin.search.space import Point

        if epochs not in (None, self.default_epochs):
            raise UnknownName("epoch budget", epochs, [self.default_epochs], context=f"for predicted {key}")
        return self.space.evaluate(Point(key, self.default_epochs), _NO_DRAW)

    def draw(self, key: str, epochs: int | None = None) -> dict:
        if self.predicted(key):  # one prediction, no repeats; what the surrogate does not predict is NaN
            ev = self._prediction(key, epochs)
            nan = math.nan
            return {"train_accuracy": nan, "validation_accuracy": ev.val_acc, "test_accuracy": ev.test_acc,
                    "training_time": nan, "trainable_parameters": nan, "train_energy_kwh": ev.train_energy_kwh}
        return super().draw(key, epochs)

    def mean(self, key: str, epochs: int | None = None) -> dict:
        return self.draw(key, epochs) if self.predicted(key) else super().mean(key, epochs)

    def energy_predictor(self, source: object) -> CurveEnergy:
        """The energy of configurations outside the table, for the run's EnergySource."""
        if self.predictor is None:
            raise ValueError(f"table {self.name!r} is served without a curve surrogate")
        return CurveEnergy(self, source)

    def key_of(self, config: object) -> str:
        """The canonical key of a configuration (key text, or any form the space accepts) of the
        table (with a curve surrogate: of the space); UnknownName naming it otherwise."""
        return self.space.point(config, self.default_epochs).key

    def sample(self) -> str:
        """A uniformly drawn configuration of the table (with a curve surrogate: of the whole space)."""
        return self.space.sample(_rng()).key

    def mutate(self, key: str) -> str:
        """The space's own mutation of ``key``, kept inside the table unless a curve surrogate
        extends it (``TabularSpace.mutate``)."""
        from ecnas_plugin.search.space import Point

        return self.space.mutate(Point(key, self.default_epochs), _rng()).key

    def neighbours(self, key: str) -> list[str]:
        """The table's configurations one edit away; where it holds none (a sparse sample of a big
        space), the nearest ones, so a local search always has a next step. With a curve surrogate,
        every configuration of the space one edit away. Unshuffled."""
        arch = self.space.archs.get(key)
        if arch is None:  # a predicted configuration
            arch = self.adapter.decode(key)
        if self.predictor is not None:  # the whole space: every configuration one edit away
            found = self.adapter.neighbours(arch)
        else:
            found = self.adapter.neighbours(arch, self.space.key_set) or self.adapter.nearest(arch, self.space.key_set)
        out = dict.fromkeys(self.adapter.canonical_key(a) for a in found)
        out.pop(key, None)
        return list(out)

    def curve(self, key: str, column: str, epoch: int = -1) -> list[float]:
        """The recorded curve of ``column`` for one repeat of ``key`` (drawn), up to ``epoch``; a
        predicted configuration's predicted curve (validation and test accuracy)."""
        if self.predicted(key):
            frame = self.space.query(key, self.default_epochs).curve
            have = [c for c in ("train_acc", "val_acc", "test_acc", "train_loss", "train_time_s") if c in frame.columns]
            if column not in have:
                raise UnknownName("learning-curve column", column, have,
                                  context=f"predicted by curve surrogate {self.surrogate!r} for {key}")
            values = frame[column].tolist()
            return values if epoch in (-1, None) else values[:int(epoch)]
        repeat = random.randint(0, len(self._runs(key, self.default_epochs)) - 1)
        curve = self.table.curve(key, epochs=self.default_epochs, repeat=repeat)  # type: ignore[attr-defined]
        if curve is None or column not in curve.columns:
            raise UnknownName("learning-curve column", column, [] if curve is None else list(curve.columns),
                              context=f"in table {self.name!r} (its checkpoints)")
        values = curve[column].tolist()
        return values if epoch in (-1, None) else values[:int(epoch)]


class CurveEnergy:
    """Training energy (kWh, with σ) of configurations outside a served table, from its curve
    surrogate at the run's budget: ``EnergySource.predict`` of a run with ``energy.surrogate``
    (every value it gives is labelled ``predicted``; :meth:`describe` says how it was made)."""

    def __init__(self, bench: TabularBench, source: object):
        self.bench = bench
        self.epochs = int(source.epochs)  # type: ignore[attr-defined]
        if self.epochs != bench.default_epochs:
            raise ConfigError("energy.epochs", f"{self.epochs} differs from the served budget {bench.default_epochs}")
        self.predicted = 0

    def __call__(self, key: str, spec: object = None) -> tuple[float, float]:
        bench = self.bench
        if not bench.predicted(key):  # a table configuration without this energy: not the surrogate's to fill
            raise UnknownName("configuration", key, (), context=f"has no energy in table {bench.name!r} at "
                                                                f"{self.epochs} epochs")
        energy = float(bench._prediction(key).train_energy_kwh)
        out = bench.predictor.predict([bench.adapter.decode(key)], [self.epochs])  # type: ignore[union-attr]
        sd = out.get("energy_sd_kwh")
        sd = math.nan if sd is None else float(np.asarray(sd)[0, 0])
        if not (math.isfinite(energy) and energy > 0):
            raise ConfigError("energy.surrogate", f"curve surrogate {bench.surrogate!r} gave no usable energy for "
                                                  f"{key} ({energy!r} kWh)")
        self.predicted += 1
        return energy, sd

    def describe(self) -> dict:
        """How predictions were made (for pareto_front.json)."""
        p = self.bench.predictor
        return {"source": "predicted", "kind": "curve surrogate", "surrogate": self.bench.surrogate,
                "model": p.context.get("model"), "model_context": dict(p.context),  # type: ignore[union-attr]
                "epochs": self.epochs, "predicts": ["val_acc", "test_acc", "train_energy_kwh"],
                "not_predicted": ["train_acc", "train_time_s", "params"],
                "energy_method": "estimated" if p.context.get("energy_source") == "estimated" else None,  # type: ignore[union-attr]
                "cells_predicted": self.predicted}


def build_dataset_api(name: str, table: object | None = None, epochs: int | None = None,
                      surrogate: str | None = None) -> dict:
    """NASLib ``dataset_api`` for table ``name`` served through :func:`graph_class`:
    ``{NAME_KEY: name, SERVED_KEY: TabularBench}`` (``surrogate``: see :meth:`TabularBench.extend`;
    a run's ``energy.surrogate`` extends it when its energy section is planned)."""
    return {NAME_KEY: name, SERVED_KEY: TabularBench(name, table, epochs, surrogate)}


@lru_cache(maxsize=1)
def graph_class() -> type:
    """The NASLib-compatible search-space class for :class:`TabularBench` tables (imports NASLib)."""
    import torch
    from naslib.search_spaces.core.query_metrics import Metric

    # single values: Metric -> (METRICS key, factor to NASLib's unit: accuracies in percent)
    single = {Metric.TRAIN_ACCURACY: ("train_accuracy", 100.0), Metric.VAL_ACCURACY: ("validation_accuracy", 100.0),
              Metric.TEST_ACCURACY: ("test_accuracy", 100.0), Metric.TRAIN_TIME: ("training_time", 1.0),
              Metric.PARAMETERS: ("trainable_parameters", 1.0)}
    # learning curves: Metric -> (checkpoint column, factor)
    curves = {Metric.TRAIN_ACCURACY: ("train_acc", 100.0), Metric.VAL_ACCURACY: ("val_acc", 100.0),
              Metric.TEST_ACCURACY: ("test_acc", 100.0), Metric.TRAIN_LOSS: ("train_loss", 1.0),
              Metric.TRAIN_TIME: ("train_time_s", 1.0)}

    class TabularSearchSpace:
        """One configuration (``spec``: its canonical key) of a served table; see the module."""

        QUERYABLE = True
        OPTIMIZER_SCOPE = ()  # read by NASLib's optimizers; a table has no graph scopes

        def __init__(self, bench: TabularBench, spec: str | None = None):
            self.bench = bench  # shared by clones (TableRuns.__deepcopy__ returns itself)
            self.spec = spec

        def __repr__(self) -> str:
            return f"{type(self).__name__}({self.bench.name!r}, {self.spec!r})"

        def clone(self) -> TabularSearchSpace:
            return type(self)(self.bench, self.spec)

        def get_type(self) -> str:
            return GRAPH_TYPE

        def get_hash(self) -> str:
            return self.table_key()

        def get_spec(self) -> str | None:
            return self.spec

        def table_key(self) -> str:
            """The canonical key the energy tables use (the bridge keys graphs by it)."""
            if self.spec is None:
                raise ValueError(f"no configuration of {self.bench.name} set "
                                 "(sample_random_architecture or set_spec first)")
            return self.spec

        def set_spec(self, spec, dataset_api=None) -> None:
            self.spec = self.bench.key_of(spec)

        def sample_random_architecture(self, dataset_api=None, load_labeled: bool = False) -> None:
            if load_labeled:
                raise NotImplementedError("load_labeled (zero-cost benchmark samples) is not available "
                                          f"for {self.bench.name}")
            self.spec = self.bench.sample()

        def mutate(self, parent, dataset_api=None) -> None:
            self.spec = self.bench.mutate(parent.table_key())

        def get_nbhd(self, dataset_api=None) -> list:
            nbhd = []
            for key in self.bench.neighbours(self.table_key()):
                model = torch.nn.Module()
                model.arch = type(self)(self.bench, key)
                nbhd.append(model)
            random.shuffle(nbhd)
            return nbhd

        def get_arch_iterator(self, dataset_api=None):
            return iter(self.bench.keys)

        def query(self, metric, dataset=None, path=None, epoch=-1, full_lc=False, dataset_api=None):
            key = self.table_key()
            if full_lc:
                if metric not in curves:
                    raise NotImplementedError(f"{metric} has no learning curve in table {self.bench.name!r} "
                                              f"(it has {', '.join(m.name for m in curves)})")
                column, factor = curves[metric]
                return [v * factor for v in self.bench.curve(key, column, epoch)]
            run = self.bench.draw(key)
            if metric is Metric.RAW:
                return run
            if metric not in single:
                raise NotImplementedError(f"{metric} is not recorded in table {self.bench.name!r} "
                                          f"(it answers {', '.join(m.name for m in single)} and RAW)")
            name, factor = single[metric]
            return run[name] * factor

    return TabularSearchSpace
