"""The built-in optimizers for NASLib users: every one of ``ecnas_plugin.search.OPTIMIZERS`` behind
NASLib's optimizer interface (``naslib.optimizers.core.metaclasses.MetaOptimizer``).

:func:`naslib_optimizer` returns a ``MetaOptimizer`` subclass that drives the built-in ask/tell
optimizer of that name; NASLib is imported only when it is called (after
``ecnas_plugin.naslib.compat.apply()``, which lets NASLib import on Python >= 3.10, or
``ecnas_plugin.naslib.install()``, which also installs the bridge)::

    from ecnas_plugin.naslib import compat; compat.apply()
    from ecnas_plugin.naslib import spaces, subspace
    api = subspace.build_dataset_api("ecnas-4v")            # or tabular.build_dataset_api("nb201-joint-flowers17-cpu")
    optimizer = naslib_optimizer("bo", initial=8)(config)  # config: NASLib CfgNode (dataset, seed, search)
    optimizer.adapt_search_space(spaces.search_space("ecnas-4v", served=api["ecnas_served"]), dataset_api=api)
    for epoch in range(config.search.epochs): optimizer.new_epoch(epoch)   # or NASLib's Trainer(optimizer, config)

The built-in optimizer sees a :class:`NaslibView`, which answers what the optimizers use of a
:class:`~ecnas_plugin.search.space.TabularSpace` (``sample(rng, exclude)``, ``mutate(point, rng)``,
``budgets``, ``same_run``, ``run_of``, ``encodings(keys)``, ``adapter``, ``name``, ``len``) on top of
the NASLib search space: a point is ``Point(key, epochs)``, ``key`` the energy tables' key of a NASLib
graph (:func:`ecnas_plugin.naslib.spaces.key_of`), and the view keeps the graph of every key.
Each ``new_epoch`` is one step: propose, query ``Metric.VAL_ACCURACY`` through NASLib, observe.

- Moves (``moves=``): ``"naslib"`` (default) samples and mutates with the NASLib space's own
  ``sample_random_architecture`` / ``mutate`` (NASLib's ``random``/``numpy.random`` streams, which
  NASLib seeds); ``"table"`` (tables served as search spaces only) moves as the built-in search does
  (the served table's ``TabularSpace`` moves, drawn from the optimizer's Generator seeded by
  ``config.seed``) and sets the NASLib graph to the chosen key, so a run reproduces
  :func:`~ecnas_plugin.search.run.run_search` with the same seed wherever evaluating draws no repeat
  (a one-repeat table; with several repeats the built-in run draws them from that Generator,
  NASLib with ``random.randint``).
- Scores: a single-objective optimizer maximises the queried ``VAL_ACCURACY`` as a fraction; with
  the bridge's ``energy:`` section on, that already is the energy-aware objective. The
  multi-objective ones (``sms-emoa``, ``mo-hyperband``, ``parego``) take the observed accuracy and
  the training energy as two objectives: run them with energy off, or with energy on they take the
  true accuracy the bridge recorded for the query, not its objective.
- Energy: with the bridge's energy on, the energy the bridge charged for the query (its energy
  table, ``energy.missing: predict`` included); otherwise the served table's mean over repeats
  (``dataset_api["ecnas_served"]``, any table served as a NASLib search space). NASLib's own spaces
  therefore need energy on.
- Features (``bo``, ``ea-bo``, ``parego``): the served table's registered space, through its
  ``TabularSpace`` (``TabularSpace.encodings``); on NASLib's own spaces, the registered space that
  maps the graphs. A space without ``features`` is refused by the optimizer (MissingCapability).
- Budgets: one, the run's (the served table's budget; with energy on ``energy.epochs``). A NASLib
  config may say so (``search.budgets: [108]``); several are refused (see :func:`_budget`), so the
  multi-fidelity optimizers run with one rung (with a single budget the Hyperband variants reduce
  to random search, as the built-in ones do).
- Parameters: those given to :func:`naslib_optimizer`, else ``config.search.<param>`` where the
  config has it (``population_size``, ``sample_size``, ...), else the built-in default.
- With the bridge's energy on, the optimizer is wrapped exactly as NASLib's own (``hooks``: the
  run's energy state, trace, search-energy budget, true accuracies in the statistics); energy on
  without the bridge installed is refused.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np

from ecnas_plugin.errors import ConfigError, EcnasError, UnknownName

from .optimizers import OPTIMIZERS
from .space import Evaluation, Point

MOVES = ("naslib", "table")
ACCURACY_SCALE = 100.0  # NASLib's tabular benchmarks answer accuracies in percent
_MAX_DRAWS = 100_000  # NASLib samples drawn before a search gives up finding an unevaluated one


def _get(node: object, key: str, default: object = None) -> object:
    """``node[key]`` of a NASLib CfgNode, a dict or an attribute holder."""
    if isinstance(node, Mapping):
        return node.get(key, default)
    return getattr(node, key, default)


def _label(labels: object) -> str:
    """One label for a cell's energy (as the bridge's EnergySource): measured when every repeat is."""
    values = [str(x) for x in np.asarray(labels, dtype=object).ravel()] if labels is not None else []
    other = sorted(v for v in values if v != "measured")
    return other[0] if other else "measured"


def _budget(search: object, served: int | None, name: str) -> int:
    """The one epoch budget the run searches at: ``served`` (the served table's, or the bridge's
    ``energy.epochs``), checked against ``search.budgets`` where the config has it.

    Several budgets are refused: NASLib's queries answer a served table at one budget (NB101's
    ``query`` ignores ``epoch``; a served table answers single values at the run's budget), and the
    bridge charges every query that budget's whole training energy, so a promotion could neither be
    evaluated at a later budget nor charged only its extra epochs as the built-in run does.
    """
    given = _get(search, "budgets") if search is not None else None
    if given is None:
        if served is None:
            raise EcnasError(f"no epoch budget for {name}: serve a table as the search space or turn the bridge's "
                             "energy: section on (its energy.epochs is the budget)")
        return int(served)
    budgets = [given] if np.ndim(given) == 0 else list(given)
    try:
        budgets = sorted({int(b) for b in budgets})
    except (TypeError, ValueError):
        raise ConfigError("search.budgets", f"expected epoch budgets (integers), got {given!r}") from None
    if len(budgets) != 1:
        raise ConfigError("search.budgets", f"{budgets}: the built-in optimizers under NASLib search one budget. "
                          f"NASLib's queries answer {name} at one budget and the bridge charges each query that "
                          "budget's whole training energy, so a configuration promoted to a later budget could "
                          "neither be evaluated there nor charged only its extra epochs; search several budgets "
                          "with the built-in search (ecnas_plugin.search.run_search, or a study)")
    if served is not None and budgets[0] != served:
        raise UnknownName("epoch budget", budgets[0], [served], context=f"(config key 'search.budgets') for {name} "
                          "(the budget its NASLib queries answer at)")
    return budgets[0]


class NaslibView:
    """What the built-in optimizers use of a :class:`~ecnas_plugin.search.space.TabularSpace`,
    answered from a NASLib search space and its ``dataset_api`` (see the module docstring).

    ``graphs`` maps every key a move produced to its NASLib graph. ``tabular``: the served
    table's ``TabularSpace`` (None on NASLib's own spaces), for encodings, text forms, table moves.
    """

    def __init__(self, search_space: object, dataset_api: dict | None, budget: int, moves: str = "naslib"):
        from ecnas_plugin.naslib import spaces
        from ecnas_plugin.naslib.tabular import NAME_KEY, SERVED_KEY

        api = dataset_api if isinstance(dataset_api, dict) else {}
        self.base = search_space
        self.dataset_api = dataset_api
        self.served = api.get(SERVED_KEY)
        self.moves = moves
        self.budgets: tuple[int, ...] = (int(budget),)
        self.graphs: dict[str, object] = {}
        self._scratch: object | None = None  # a graph a move produced whose key was known: reused
        self._arches: dict[str, object] = {}
        self._sources: dict[str, str] = {}
        self.tabular = None
        if self.served is not None:
            from .space import TabularSpace

            self.name = str(api.get(NAME_KEY) or self.served.name)
            tab = getattr(self.served, "space", None)  # a TabularBench holds one at its budget
            if not isinstance(tab, TabularSpace) or tab.budgets != self.budgets:
                tab = TabularSpace(self.served.table, epochs=int(budget), name=self.name)
            self.tabular = tab
            self.adapter = tab.adapter
        else:
            if moves == "table":
                raise EcnasError("moves='table' needs a table served as the search space (its dataset_api from "
                                 "ecnas_plugin.naslib.subspace or tabular.build_dataset_api); NASLib's own spaces "
                                 "move with moves='naslib'")
            self.adapter = spaces.for_graph_type(search_space.get_type())  # type: ignore[attr-defined]
            self.name = f"NASLib {self.adapter.naslib.search_space}"  # type: ignore[union-attr]

    def __len__(self) -> int:
        if self.served is not None:
            return len(self.served.keys) * len(self.budgets)
        return (self.adapter.size or 2**62) * len(self.budgets)

    def __repr__(self) -> str:
        return f"NaslibView({self.name!r}, budgets={list(self.budgets)}, moves={self.moves!r})"

    @property
    def epochs(self) -> int:
        return self.budgets[0]

    # ------------------------------------------------------------------ graphs and keys
    @staticmethod
    def key_of(graph: object) -> str:
        from ecnas_plugin.naslib.spaces import key_of

        return key_of(graph)

    def _keep(self, graph: object) -> str:
        """Key of a graph a move produced; the graph is kept for a new key, else reused as scratch."""
        key = self.key_of(graph)
        if key in self.graphs:
            self._scratch = graph
        else:
            self.graphs[key] = graph
        return key

    def _blank(self) -> object:
        graph, self._scratch = self._scratch, None
        return graph if graph is not None else self.base.clone()  # type: ignore[attr-defined]

    def graph(self, key: str) -> object:
        """The NASLib graph of ``key`` (set from the key where no NASLib move produced it: table moves)."""
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.base.clone()  # type: ignore[attr-defined]
            graph.set_spec(key, dataset_api=self.dataset_api)
            if self.key_of(graph) != key:
                raise EcnasError(f"the NASLib graph set to {key} answers key {self.key_of(graph)} in {self.name}")
            self.graphs[key] = graph
        return graph

    # ------------------------------------------------------------------ what the optimizers use
    def sample(self, rng: np.random.Generator, exclude: set[Point] | frozenset[Point] = frozenset()) -> Point:
        """A random point not in ``exclude``: NASLib's ``sample_random_architecture`` (or the table's move)."""
        if len(exclude) >= len(self):
            raise ValueError(f"every one of the {len(self)} points of {self.name} is excluded")
        if self.moves == "table":
            return self.tabular.sample(rng, exclude)  # type: ignore[union-attr]
        for _ in range(_MAX_DRAWS):
            graph = self._blank()
            graph.sample_random_architecture(dataset_api=self.dataset_api)  # type: ignore[attr-defined]
            point = Point(self._keep(graph), self.epochs)
            if point not in exclude:
                return point
        raise ValueError(f"no unevaluated configuration of {self.name} in {_MAX_DRAWS} NASLib samples")

    def mutate(self, point: Point, rng: np.random.Generator) -> Point:
        """NASLib's ``mutate`` of the point's graph (or the table's move), at the same budget."""
        if self.moves == "table":
            return self.tabular.mutate(point, rng)  # type: ignore[union-attr]
        child = self._blank()
        child.mutate(self.graph(point.key), dataset_api=self.dataset_api)  # type: ignore[attr-defined]
        return Point(self._keep(child), point.epochs)

    def same_run(self, earlier: int, later: int) -> bool:
        return earlier == later  # one budget: every point is its own run, trained from scratch

    def run_of(self, point: Point) -> tuple[str, int]:
        return (point.key, point.epochs)

    def _arch(self, key: str) -> object:
        arch = self._arches.get(key)
        if arch is None:
            from ecnas_plugin.naslib.spaces import spec_of

            spec = spec_of(self.graph(key))
            arch = self._arches[key] = self.adapter.arch(spec) if spec is not None else self.adapter.decode(key)
        return arch

    def encodings(self, keys: list[str]) -> np.ndarray:
        """The registered space's encodings of configurations (what a model-based optimizer learns from)."""
        if self.tabular is not None:
            return self.tabular.encodings(keys)
        return self.adapter.encoding([self._arch(k) for k in keys])

    def describe(self, point: Point) -> str:
        """The registered space's text form of the point's configuration."""
        if self.tabular is not None and point.key in self.tabular.key_set:
            return self.tabular.describe(Point(point.key, self.tabular.budgets[0]))
        return self.adapter.describe(self._arch(point.key))

    def _source(self, key: str) -> str:
        label = self._sources.get(key)
        if label is None:
            label = self._sources[key] = _label(self.tabular.repeats(key).get("source"))  # type: ignore[union-attr]
        return label

    def evaluation(self, point: Point, value: float, state: object | None, recorded_before: int) -> Evaluation:
        """The Evaluation of ``point`` whose ``VAL_ACCURACY`` query answered ``value`` (percent).

        With the bridge's energy state, the query recorded the true drawn accuracy and charged an
        energy: both are read back (``value`` is then the objective). Otherwise ``value`` is the
        accuracy and the energy is the served table's mean over repeats. NASLib draws the repeat
        itself, so the repeat is -1 and that repeat's test accuracy and time are not known (NaN).
        """
        key, nan = point.key, math.nan
        keys = getattr(state, "keys", None)
        if keys is not None and len(keys) == recorded_before + 1 and keys[-1] == key:
            cell = state.source.values[key]  # type: ignore[union-attr]
            val_acc = state.val_accs[-1] / state.accuracy_scale  # type: ignore[union-attr]
            energy, source = float(state.seen[key][2]), cell.source  # type: ignore[union-attr]
            true = (cell.val_acc, cell.test_acc, cell.energy)
        elif state is not None:
            raise EcnasError(f"the bridge's energy state recorded no evaluation for the query of {key} (is the "
                             "bridge installed? ecnas_plugin.naslib.install())")
        elif self.served is not None:
            mean = self.served.mean(key)
            val_acc = value / ACCURACY_SCALE
            energy, source = float(mean["train_energy_kwh"]), self._source(key)
            true = (mean["validation_accuracy"], mean["test_accuracy"], energy)
        else:
            raise EcnasError(f"no training energy for {key} of {self.name}: serve a table as the search space or "
                             "turn the bridge's energy: section on")
        return Evaluation(point=point, config=self.describe(point), repeat=-1, val_acc=float(val_acc), test_acc=nan,
                          train_energy_kwh=energy, train_time_s=nan, source=str(source),
                          true_val_acc=float(true[0]), true_test_acc=float(true[1]), true_energy_kwh=float(true[2]))


def _class_name(name: str) -> str:
    return f"{OPTIMIZERS[name].__name__}Naslib"


@functools.lru_cache(maxsize=1)
def _base_class() -> type:
    """The NASLib ``MetaOptimizer`` subclass every wrapped optimizer derives from (imports NASLib)."""
    import torch
    from naslib.optimizers.core.metaclasses import MetaOptimizer
    from naslib.search_spaces.core.query_metrics import Metric

    from ecnas_plugin.naslib import hooks
    from ecnas_plugin.naslib.trace import STATE_KEY

    class BuiltinNaslibOptimizer(MetaOptimizer):
        """A built-in optimizer (``optimizer_name``) driven through NASLib's optimizer interface.

        ``history``: every evaluated model (``.arch`` the NASLib graph, ``.accuracy`` the queried
        ``VAL_ACCURACY`` in percent, ``.energy_kwh``, ``.evaluation`` the built-in Evaluation);
        ``optimizer``: the built-in optimizer (after ``adapt_search_space``); ``view``: its space.
        """

        using_step_function = False
        optimizer_name: str = ""
        fixed_params: dict = {}
        moves: str = "naslib"

        def __init__(self, config):
            super().__init__()
            self.config = config
            self.dataset = _get(config, "dataset")
            self.search_config = _get(config, "search") or {}
            self.seed = int(_get(config, "seed", 0) or 0)
            builtin = OPTIMIZERS[self.optimizer_name]
            self.params = {k: self.fixed_params[k] if k in self.fixed_params else _get(self.search_config, k)
                           for k in builtin.params
                           if k in self.fixed_params or _get(self.search_config, k) is not None}
            self.multi_objective = builtin.multi_objective
            self.rng = np.random.default_rng(self.seed)
            self.history = torch.nn.ModuleList()
            self.optimizer = None
            self.view: NaslibView | None = None
            self.dataset_api = None
            self._models: dict[Point, object] = {}

        def adapt_search_space(self, search_space, scope=None, dataset_api=None):
            if not getattr(search_space, "QUERYABLE", False):
                raise EcnasError(f"optimizer {self.optimizer_name!r} under NASLib needs a queryable (tabular) "
                                 "search space")
            state = dataset_api.get(STATE_KEY) if isinstance(dataset_api, dict) else None
            if state is not None and not hooks.is_patched():
                dataset_api.pop(STATE_KEY, None)
                raise ConfigError("energy", "is on, but the bridge is not installed, so NASLib's queries would "
                                  "answer plain accuracy: call ecnas_plugin.naslib.install() first")
            self.search_space = search_space.clone()
            self.scope = scope if scope else getattr(search_space, "OPTIMIZER_SCOPE", None)
            self.dataset_api = dataset_api
            from ecnas_plugin.naslib.tabular import SERVED_KEY

            served = dataset_api.get(SERVED_KEY) if isinstance(dataset_api, dict) else None
            budget = state.source.epochs if state is not None else getattr(served, "default_epochs", None)
            name = getattr(served, "name", None) or f"NASLib space {search_space.get_type()!r}"
            self.view = NaslibView(self.search_space, dataset_api, _budget(self.search_config, budget, name),
                                   self.moves)
            self.optimizer = OPTIMIZERS[self.optimizer_name](self.view, self.rng, **self.params)

        def new_epoch(self, epoch: int):
            """One step: the built-in optimizer proposes, NASLib answers, the optimizer observes."""
            if self.optimizer is None:
                raise EcnasError(f"optimizer {self.optimizer_name!r}: call adapt_search_space before new_epoch")
            point = self.optimizer.propose()
            graph = self.view.graph(point.key)
            state = self.dataset_api.get(STATE_KEY) if isinstance(self.dataset_api, dict) else None
            before = len(state.keys) if state is not None else 0
            value = graph.query(Metric.VAL_ACCURACY, self.dataset, dataset_api=self.dataset_api)
            if value == -1:  # NASLib's answer for an invalid NB101 spec
                raise EcnasError(f"NASLib answered -1 (an invalid cell) for {point.key} of {self.view.name}")
            evaluation = self.view.evaluation(point, float(value), state, before)
            self.optimizer.observe(evaluation, None if self.multi_objective else float(value) / ACCURACY_SCALE)
            model = torch.nn.Module()
            model.arch = graph
            model.accuracy = value
            model.energy_kwh = evaluation.train_energy_kwh
            model.evaluation = evaluation
            self.history.append(model)
            self._models[point] = model

        @property
        def evaluations(self) -> list[Evaluation]:
            """The built-in evaluations, in order."""
            return [m.evaluation for m in self.history]

        @property
        def population(self) -> list:
            """The built-in optimizer's population (where it keeps one) as evaluated models."""
            members = getattr(self.optimizer, "population", None) or ()
            return [self._models[m[0] if isinstance(m, tuple) else m] for m in members]

        def pareto_front(self) -> list:
            """Evaluated models on the (observed accuracy, energy) Pareto front."""
            from ecnas_plugin.objectives import pareto_mask

            models = list(self.history)
            mask = pareto_mask([m.evaluation.val_acc for m in models], [m.energy_kwh for m in models])
            return [m for m, keep in zip(models, mask) if keep]

        def get_final_architecture(self):
            """The evaluated architecture with the highest queried validation value (NASLib's incumbent)."""
            if not len(self.history):
                raise EcnasError(f"optimizer {self.optimizer_name!r} has evaluated nothing yet")
            return max(self.history, key=lambda m: m.accuracy).arch

        def train_statistics(self, report_incumbent: bool = True):
            arch = self.get_final_architecture() if report_incumbent else self.history[-1].arch
            return tuple(arch.query(m, self.dataset, dataset_api=self.dataset_api) for m in
                         (Metric.TRAIN_ACCURACY, Metric.VAL_ACCURACY, Metric.TEST_ACCURACY, Metric.TRAIN_TIME))

        def test_statistics(self):
            return self.get_final_architecture().query(Metric.RAW, self.dataset, dataset_api=self.dataset_api)

        def get_op_optimizer(self):
            raise NotImplementedError

        def get_checkpointables(self):
            return {"model": self.history}

    # Wrapped as the bridge wraps NASLib's own optimizers (each a no-op without the run's energy
    # state): the config kept, the energy state attached, the budget checked per epoch, true
    # accuracies in the statistics.
    for attr, make in (("__init__", hooks._wrap_init), ("adapt_search_space", hooks._wrap_adapt),
                       ("new_epoch", hooks._wrap_new_epoch), ("train_statistics", hooks._wrap_train_statistics),
                       ("test_statistics", hooks._wrap_truth)):
        original = BuiltinNaslibOptimizer.__dict__[attr]
        setattr(BuiltinNaslibOptimizer, attr, functools.update_wrapper(make(original), original))
    return BuiltinNaslibOptimizer


_CLASSES: dict[tuple, type] = {}


def naslib_optimizer(name: str, *, moves: str = "naslib", **params: object) -> type:
    """The NASLib ``MetaOptimizer`` subclass driving built-in optimizer ``name`` (a key of
    ``ecnas_plugin.search.OPTIMIZERS``) with ``params`` (the built-in optimizer's parameters; the
    others come from ``config.search`` or the defaults). ``moves``: ``"naslib"`` or ``"table"`` (see
    the module docstring). Names are checked before NASLib is imported; one class per arguments."""
    builtin = OPTIMIZERS.get(name)
    if builtin is None:
        raise UnknownName("optimizer", name, OPTIMIZERS)
    unknown = sorted(set(params) - set(builtin.params))
    if unknown:
        raise UnknownName(f"parameter of optimizer {name!r}", unknown[0], builtin.params)
    if moves not in MOVES:
        raise UnknownName("moves", moves, MOVES, context=f"for optimizer {name!r}")
    try:
        cache_key: tuple = (name, moves, tuple(sorted(params.items())))
        hash(cache_key)
    except TypeError:
        cache_key = (name, moves, repr(sorted(params.items())))
    cls = _CLASSES.get(cache_key)
    if cls is None:
        base = _base_class()
        title = _class_name(name)
        cls = _CLASSES[cache_key] = type(title, (base,), {
            "__module__": __name__, "__qualname__": title, "optimizer_name": name, "fixed_params": dict(params),
            "moves": moves, "__doc__": f"The built-in {name!r} optimizer ({builtin.__name__}) through NASLib's "
                                       f"optimizer interface; see ecnas_plugin.search.naslib_optimizer."})
    return cls


def naslib_sms_emoa() -> type:
    """The built-in SMS-EMOA as a NASLib optimizer: ``naslib_optimizer("sms-emoa")``."""
    return naslib_optimizer("sms-emoa")


__all__ = ["MOVES", "NaslibView", "naslib_optimizer", "naslib_sms_emoa"]
