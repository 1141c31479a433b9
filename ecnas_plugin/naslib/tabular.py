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

The bridge wraps this class's ``query`` exactly as NASLib's (``hooks.own_targets``), so energy,
its source label (``estimated`` stays ``estimated``), the search-energy budget and the trace work
as on NASLib's spaces. NASLib's encoders (BANANAS, NPENAS, BP) know only NASLib's own graphs: those
optimizers are refused before anything runs (:func:`ecnas_plugin.naslib.spaces.check_optimizer`).

Nothing here imports NASLib except :func:`graph_class`.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from functools import lru_cache

import numpy as np

from ecnas_plugin.errors import SchemaError, UnknownName

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


class TabularBench(TableRuns):
    """A table of a space without a NASLib mapping, served: its configurations at one budget (a
    :class:`~ecnas_plugin.search.space.TabularSpace`, which gives the moves) and their runs.

    The budget must be one the table has runs of: energy is charged from those rows
    (:class:`ecnas_plugin.naslib.trace.EnergySource`), so budgets read from checkpoints are not served.
    """

    def __init__(self, name: str, table: object | None = None, epochs: int | None = None):
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

    def key_of(self, config: object) -> str:
        """The canonical key of a configuration (key text, or any form the space accepts) of the
        table; UnknownName naming it otherwise."""
        return self.space.point(config, self.default_epochs).key

    def sample(self) -> str:
        """A uniformly drawn configuration of the table."""
        return self.space.sample(_rng()).key

    def mutate(self, key: str) -> str:
        """The space's own mutation of ``key``, kept inside the table (``TabularSpace.mutate``)."""
        from ecnas_plugin.search.space import Point

        return self.space.mutate(Point(key, self.default_epochs), _rng()).key

    def neighbours(self, key: str) -> list[str]:
        """The table's configurations one edit away; where it holds none (a sparse sample of a big
        space), the nearest ones, so a local search always has a next step. Unshuffled."""
        arch = self.space.archs[key]
        found = self.adapter.neighbours(arch, self.space.key_set) or self.adapter.nearest(arch, self.space.key_set)
        out = dict.fromkeys(self.adapter.canonical_key(a) for a in found)
        out.pop(key, None)
        return list(out)

    def curve(self, key: str, column: str, epoch: int = -1) -> list[float]:
        """The recorded curve of ``column`` for one repeat of ``key`` (drawn), up to ``epoch``."""
        repeat = random.randint(0, len(self._runs(key, self.default_epochs)) - 1)
        curve = self.table.curve(key, epochs=self.default_epochs, repeat=repeat)  # type: ignore[attr-defined]
        if curve is None or column not in curve.columns:
            raise UnknownName("learning-curve column", column, [] if curve is None else list(curve.columns),
                              context=f"in table {self.name!r} (its checkpoints)")
        values = curve[column].tolist()
        return values if epoch in (-1, None) else values[:int(epoch)]


def build_dataset_api(name: str, table: object | None = None, epochs: int | None = None) -> dict:
    """NASLib ``dataset_api`` for table ``name`` served through :func:`graph_class`:
    ``{NAME_KEY: name, SERVED_KEY: TabularBench}``."""
    return {NAME_KEY: name, SERVED_KEY: TabularBench(name, table, epochs)}


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
