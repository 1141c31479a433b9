"""Class-level wrappers on NASLib: the whole bridge, reversible (``patch`` / ``unpatch``).

Every wrapper first looks for the run's :class:`RunState` in the optimizer's ``dataset_api``; with
none (energy off) it calls the original and does nothing else, so results are NASLib's own.
With energy on:

- ``<queryable space>.query`` (NASLib's, and that of tables served without a NASLib mapping,
  :mod:`ecnas_plugin.naslib.tabular`): ``Metric.VAL_ACCURACY`` asked by the optimizer returns the
  energy-aware objective (scaled like NASLib's accuracies, ×100) and is recorded in the trace;
  in *truth mode* (below) it returns the true accuracy. A cell seen before costs a cached key,
  one dict lookup, ``a * acc + b`` and three list appends; a cell the energy table lacks is predicted
  on first sight (``energy.missing: predict``) and its true train/test accuracies are asked once.
- optimizers' ``train_statistics``/``test_statistics`` and ``Trainer.evaluate`` run in truth mode,
  so ``errors.json`` and the final evaluation keep the true accuracies.
- optimizers' ``__init__`` keeps the config; ``adapt_search_space`` attaches the RunState to the
  ``dataset_api`` (refusing ``search.use_zc_api``, which would bypass ``query``).
- optimizers' ``new_epoch`` checks the search-energy budget (raises ``BudgetExhausted`` at an
  epoch boundary) and redraws Chebyshev weights; BANANAS/NPENAS ``_get_new_candidates`` queries
  (and BP's ``evaluate_predictor``, a debug check) are predictions, not evaluations (not charged).
- ``Trainer.search`` ends cleanly on ``BudgetExhausted`` (NASLib has no stop hook: the
  trajectory so far is written and ``after_training`` runs) and writes the energy trace and
  Pareto front; ``Trainer._log_to_json`` adds the energy columns and the run's provenance
  (ecnas-plugin and NASLib versions, NASLib's commit where known) to ``errors.json``.

Every NASLib attribute wrapped or used is declared in :func:`patch_points`; :func:`patch` checks
them all before it wraps the first (a missing or renamed one is :class:`PatchPointMissing`, naming
it) and undoes what it applied if a wrapper fails half-way.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ecnas_plugin.errors import EcnasError
from ecnas_plugin.naslib import spaces
from ecnas_plugin.naslib.config import ConfigError, energy_of_config
from ecnas_plugin.naslib.trace import STATE_KEY, RunState
from ecnas_plugin.objectives import BudgetExhausted

logger = logging.getLogger(__name__)

_ABSENT = object()
_originals: dict[tuple[type, str], object] = {}
_truth_depth = 0
# NASLib's tabular benchmarks report accuracies in percent; objectives work on fractions.
ACCURACY_SCALE = 100.0


@contextmanager
def truth_mode() -> Iterator[None]:
    """Inside, every ``query`` returns the true metric, never the objective."""
    global _truth_depth
    _truth_depth += 1
    try:
        yield
    finally:
        _truth_depth -= 1


def state_of(dataset_api: object) -> RunState | None:
    return dataset_api.get(STATE_KEY) if isinstance(dataset_api, dict) else None


def _optimizer_state(optimizer: object) -> RunState | None:
    return state_of(getattr(optimizer, "dataset_api", None))


class PatchPointMissing(EcnasError, AttributeError):
    """A NASLib attribute the bridge wraps or needs is missing or changed (NASLib renamed something).

    ``point``: its dotted name (``naslib.optimizers.Bananas._get_new_candidates``); raised by
    :func:`patch` before anything is wrapped."""

    def __init__(self, point: str, problem: str, why: str):
        self.point = point
        super().__init__(f"NASLib's {point} {problem}; the bridge needs it: {why}. Nothing was patched: this "
                         f"NASLib ({naslib_description()}) does not match the one the bridge was written "
                         "for (upstream automl/NASLib, branch Develop)")


def naslib_description() -> str:
    from ecnas_plugin.naslib import compat

    info = compat.naslib_provenance()
    return f"version {info['version']}, commit {info['commit']}, at {info['path']}"


def _patch(cls: type, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(cls, name)
    wrapper = functools.wraps(original)(make(original))
    wrapper.__ecnas_original__ = original  # type: ignore[attr-defined]
    _originals[(cls, name)] = cls.__dict__.get(name, _ABSENT)
    setattr(cls, name, wrapper)


def unpatch() -> None:
    """Restore every wrapped attribute exactly as it was."""
    for (cls, name), original in reversed(list(_originals.items())):
        if original is _ABSENT:
            delattr(cls, name)
        else:
            setattr(cls, name, original)
    _originals.clear()
    spaces.forget()


def is_patched() -> bool:
    return bool(_originals)


# ---------------------------------------------------------------- query
def _arch_key(graph: object) -> str:
    """The energy tables' key of a NASLib graph, from the registered space that maps its
    ``get_type()`` (``NaslibMapping.key_of_graph``). Graphs that keep their architecture in a
    ``spec`` attribute (NASLib's NB101: ``set_spec`` replaces the object) cache the key against it."""
    d = graph.__dict__
    token = d.get("spec")
    cached = d.get("_ecnas_key")
    if cached is not None and token is not None and cached[0] is token:
        return cached[1]
    key = spaces.key_of(graph)
    if token is not None and token is d.get("spec"):
        d["_ecnas_key"] = (token, key)
    return key


def _spec(graph: object) -> object:
    """What a surrogate predicts from (``NaslibMapping.spec_of_graph``; None when the key is enough)."""
    return spaces.spec_of(graph)


QUERY_PARAMS = ("self", "metric", "dataset", "path", "epoch", "full_lc", "dataset_api")


def _wrap_query(original: Callable) -> Callable:
    from naslib.search_spaces.core.query_metrics import Metric

    val, train, test = Metric.VAL_ACCURACY, Metric.TRAIN_ACCURACY, Metric.TEST_ACCURACY

    def energy_value(self, value, state, call) -> float:
        """The objective for true accuracy ``value`` of graph ``self`` (``call(metric)``: the original)."""
        if value == -1:  # NASLib's answer for an invalid NB101 spec
            return value
        d = self.__dict__
        cached = d.get("_ecnas_key")
        key = cached[1] if cached is not None and cached[0] is d.get("spec") else _arch_key(self)
        objective = state.evaluate_seen(key, float(value))
        if objective is not None:  # cell evaluated before: nothing to resolve
            return objective

        def truth() -> tuple[float, float]:  # asked once per predicted cell
            with truth_mode():
                return call(train), call(test)

        return state.evaluate(key, float(value), _spec(self), truth)

    params = inspect.signature(original).parameters
    if tuple(params) == QUERY_PARAMS and all((p.default is p.empty) == (n in ("self", "metric"))
                                             for n, p in params.items()):
        # NASLib's benchmark signature: a wrapper with the same parameters and defaults, calling the
        # original positionally (no *args/**kwargs packing: this is the hot path).
        d = {n: p.default for n, p in params.items()}
        state_key = STATE_KEY  # a closure variable is read faster than a module global

        def query(self, metric, dataset=d["dataset"], path=d["path"], epoch=d["epoch"],
                  full_lc=d["full_lc"], dataset_api=d["dataset_api"]):
            value = original(self, metric, dataset, path, epoch, full_lc, dataset_api)
            if metric is not val or _truth_depth or full_lc or type(dataset_api) is not dict:
                return value
            state = dataset_api.get(state_key)
            if state is None:
                return value
            attrs = self.__dict__
            cached = attrs.get("_ecnas_key")
            if cached is not None and cached[0] is attrs.get("spec") and value != -1:
                objective = state.evaluate_seen(cached[1], value)
                if objective is not None:
                    return objective
            return energy_value(self, value, state,
                                lambda m: original(self, m, dataset, path, epoch, full_lc, dataset_api))

        return query

    # Any other signature: read dataset_api and full_lc by position or keyword.
    def generic_query(self, metric, *args, **kwargs):
        value = original(self, metric, *args, **kwargs)
        if metric is not val or _truth_depth:
            return value
        dataset_api = kwargs.get("dataset_api") if kwargs else None
        if dataset_api is None and len(args) > 4:
            dataset_api = args[4]
        state = dataset_api.get(STATE_KEY) if type(dataset_api) is dict else None
        if state is None or kwargs.get("full_lc") or (len(args) > 3 and args[3]):
            return value
        return energy_value(self, value, state, lambda m: original(self, m, *args, **kwargs))

    return generic_query


# ---------------------------------------------------------------- optimizers
def _wrap_init(original: Callable) -> Callable:
    def __init__(self, config, *args, **kwargs):
        original(self, config, *args, **kwargs)
        self.__dict__["_ecnas_config"] = config  # plain attribute, even on a torch Module

    return __init__


def make_state(optimizer: object, search_space: object, dataset_api: dict, config: object) -> RunState:
    """Resolve the energy section of ``config`` against the run's space and tables
    (:func:`ecnas_plugin.naslib.spaces.plan`: every refusal names its key)."""
    from ecnas_plugin.naslib.compat import provenance
    from ecnas_plugin.naslib.tabular import NAME_KEY, SERVED_KEY

    checked = dataset_api.pop(spaces.PLAN_KEY, None)
    if checked is not None and checked.config is config:  # checked by the runner already
        return RunState(checked.energy, checked.source, seed=int(getattr(config, "seed", 0) or 0),
                        accuracy_scale=ACCURACY_SCALE, provenance=provenance())
    bench = dataset_api.get(SERVED_KEY)
    if bench is not None:  # a table served as the search space (subspace.py or tabular.py)
        tgt = spaces.target(dataset_api[NAME_KEY])
        spaces.check_optimizer(optimizer, tgt)  # a script driving NASLib itself: refused here
    else:
        space = spaces.for_graph_type(search_space.get_type())  # type: ignore[attr-defined]
        tgt = spaces.Target(space.naslib.search_space, space)  # type: ignore[union-attr]
        bench = None
    checked = spaces.plan(config, tgt, served=bench)
    assert checked is not None
    return RunState(checked.energy, checked.source, seed=int(getattr(config, "seed", 0) or 0),
                    accuracy_scale=ACCURACY_SCALE, provenance=provenance())


def _wrap_adapt(original: Callable) -> Callable:
    sig = inspect.signature(original)

    def adapt_search_space(self, search_space, *args, **kwargs):
        dataset_api = sig.bind(self, search_space, *args, **kwargs).arguments.get("dataset_api")
        if isinstance(dataset_api, dict):
            dataset_api.pop(STATE_KEY, None)  # a state from an earlier run never leaks into this one
        config = self.__dict__.get("_ecnas_config")
        if config is not None and energy_of_config(config) is not None:
            if not isinstance(dataset_api, dict):
                raise ConfigError("energy", "needs a tabular benchmark (a dataset_api dict); this optimizer "
                                            "or space has none")
            dataset_api[STATE_KEY] = make_state(self, search_space, dataset_api, config)
        return original(self, search_space, *args, **kwargs)

    return adapt_search_space


def _wrap_new_epoch(original: Callable) -> Callable:
    def new_epoch(self, epoch, *args, **kwargs):
        state = _optimizer_state(self)
        if state is not None:
            state.begin_epoch(epoch)
        return original(self, epoch, *args, **kwargs)

    return new_epoch


def _wrap_train_statistics(original: Callable) -> Callable:
    def train_statistics(self, *args, **kwargs):
        with truth_mode():
            result = original(self, *args, **kwargs)
        state = _optimizer_state(self)
        if state is not None:
            report_incumbent = (args[0] if args else kwargs.get("report_incumbent", True))
            if report_incumbent:
                key = _arch_key(self.get_final_architecture())
                objective = state.last_objective(key)
            else:
                key, objective = state.last_evaluation()
            state.end_epoch(key, objective)
        return result

    return train_statistics


def _wrap_truth(original: Callable) -> Callable:
    def method(self, *args, **kwargs):
        with truth_mode():
            return original(self, *args, **kwargs)

    return method


def _wrap_candidates(original: Callable) -> Callable:
    def _get_new_candidates(self, *args, **kwargs):
        state = _optimizer_state(self)
        if state is None:
            return original(self, *args, **kwargs)
        with state.peeking():
            return original(self, *args, **kwargs)

    return _get_new_candidates


# ---------------------------------------------------------------- trainer
def _wrap_search(original: Callable) -> Callable:
    def search(self, *args, **kwargs):
        state = _optimizer_state(self.optimizer)
        if state is None:
            return original(self, *args, **kwargs)
        try:
            return original(self, *args, **kwargs)
        except BudgetExhausted as exc:
            state.stopped_early = True
            logger.info("ecnas: %s; search stopped", exc)
            self._log_to_json()
            # what the last epoch's periodic checkpoint would have saved; evaluate() loads it
            self.periodic_checkpointer.checkpointer.save("model_final")
            self.optimizer.after_training()
        finally:
            state.write(self.config.save)

    return search


def _wrap_log_to_json(original: Callable) -> Callable:
    def _log_to_json(self, *args, **kwargs):
        state = _optimizer_state(self.optimizer)
        if state is not None:
            for name, values in state.columns.items():
                self.search_trajectory[name] = list(values)
            self.search_trajectory[PROVENANCE_KEY] = state.provenance
        return original(self, *args, **kwargs)

    return _log_to_json


# ---------------------------------------------------------------- the patch points
@dataclass(frozen=True)
class PatchPoint:
    """One NASLib attribute the bridge wraps (``make``: the wrapper factory) or only uses (``make``
    None). ``owner``: ``module:attribute path``; ``params``: parameter names it must accept; ``why``:
    what breaks without it. Every declared point is required: :func:`patch` refuses a NASLib that
    lacks one, naming it, before anything is wrapped."""

    owner: str
    attr: str
    why: str
    make: Callable[[Callable], Callable] | None = None
    params: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.attr}"


_OPTIMIZER_POINTS = (
    ("__init__", _wrap_init, ("config",), "it keeps the run's config, whose energy section adapt_search_space reads"),
    ("adapt_search_space", _wrap_adapt, ("search_space", "dataset_api"),
     "it attaches the run's energy state to the dataset_api (without it energy is silently off)"),
    ("new_epoch", _wrap_new_epoch, ("epoch",), "it checks the search-energy budget and starts each epoch's trace"),
    ("train_statistics", _wrap_train_statistics, ("report_incumbent",),
     "it reports true accuracies to errors.json and records the incumbent's energy"),
    ("test_statistics", _wrap_truth, (), "it reports true accuracies"),
    ("get_final_architecture", None, (), "the incumbent whose energy errors.json records"),
    ("after_training", None, (), "it finishes a run stopped by the search-energy budget"),
)
# Optimizer class -> its own extra points: queries that are predictions, not evaluations.
_PEEKS = {
    "Bananas": (("_get_new_candidates", "its queries rank the predictor's candidates; without the wrapper "
                                        "they would be charged and traced as evaluations"),),
    "Npenas": (("_get_new_candidates", "its queries rank the predictor's candidates; without the wrapper "
                                       "they would be charged and traced as evaluations"),),
    "BasePredictor": (("evaluate_predictor", "its queries (debug_predictor) check the predictor on test "
                                             "cells; without the wrapper they would be charged as evaluations"),),
}
PROVENANCE_KEY = "ecnas_provenance"  # errors.json: the software behind the run (compat.provenance)
OPTIMIZER_NAMES = ("RandomSearch", "RegularizedEvolution", "LocalSearch", "Bananas", "Npenas", "BasePredictor")


def patch_points() -> list[PatchPoint]:
    """Every NASLib attribute the bridge wraps or uses (the query of each registered space's NASLib
    class comes from the registry: ``supported_search_spaces[NaslibMapping.search_space]``)."""
    points = [
        PatchPoint("naslib.search_spaces.core.query_metrics:Metric", m, "the wrappers tell the optimizer's "
                   "metric from the others by it") for m in ("VAL_ACCURACY", "TRAIN_ACCURACY", "TEST_ACCURACY")]
    points.append(PatchPoint("naslib.search_spaces", "supported_search_spaces",
                             "it maps a config's search_space name onto NASLib's class"))
    for name in sorted({s.naslib.search_space for s in spaces.mapped_spaces()}):  # type: ignore[union-attr]
        points.append(PatchPoint(f"naslib.search_spaces:supported_search_spaces[{name}]", "query",
                                 f"energy on NASLib's {name!r} space is answered through it", _wrap_query,
                                 ("metric", "dataset_api", "full_lc")))
    points.append(PatchPoint("naslib.search_spaces", "NasBench101SearchSpace",
                             "tables served as search spaces (ecnas-4v, ecnas-5v, ...) subclass it"))
    for cls in OPTIMIZER_NAMES:
        for attr, make, params, why in _OPTIMIZER_POINTS:
            points.append(PatchPoint(f"naslib.optimizers:{cls}", attr, why, make, params))
        for attr, why in _PEEKS.get(cls, ()):
            points.append(PatchPoint(f"naslib.optimizers:{cls}", attr, why, _wrap_candidates))
    trainer = "naslib.defaults.trainer:Trainer"
    points += [
        PatchPoint(trainer, "search", "it ends a run cleanly on the search-energy budget and writes the energy "
                                      "trace and Pareto front", _wrap_search),
        PatchPoint(trainer, "evaluate", "the final evaluation must see true accuracies", _wrap_truth),
        PatchPoint(trainer, "_log_to_json", "it adds the energy columns to errors.json", _wrap_log_to_json),
    ]
    points += [PatchPoint("naslib.utils", f, "ecnas naslib run uses it as NASLib's runner does")
               for f in ("get_dataset_api", "parse_args", "get_config_from_args", "set_seed", "setup_logger")]
    points.append(PatchPoint("naslib.search_spaces", "get_search_space", "ecnas naslib run builds NASLib's space with it"))
    return points


def _owner(point: PatchPoint) -> object:
    module, _, path = point.owner.partition(":")
    try:
        obj: object = importlib.import_module(module)
    except ImportError as exc:
        raise PatchPointMissing(point.name, f"cannot be imported ({exc})", point.why) from None
    for part in filter(None, path.split(".")):
        name, _, key = part.partition("[")
        if not hasattr(obj, name):
            raise PatchPointMissing(point.owner.replace(":", ".").split("[")[0], "does not exist", point.why)
        obj = getattr(obj, name)
        if key:
            key = key.rstrip("]")
            if not isinstance(obj, dict) or key not in obj:
                raise PatchPointMissing(point.owner.replace(":", "."), "does not exist", point.why)
            obj = obj[key]
    return obj


def _naslib_class(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "naslib"


def resolve(points: list[PatchPoint] | None = None) -> list[tuple[type, str, Callable]]:
    """(class, attribute, wrapper factory) for every wrapped point, each wrapped where NASLib defines it
    (once); raises :class:`PatchPointMissing` naming the first point that is missing or changed."""
    base = PatchPoint("naslib.search_spaces.core.graph", "Graph", "a space's own query is told from the base "
                      "class's by it")
    graph = getattr(_owner(base), base.attr, None)
    if not isinstance(graph, type):
        raise PatchPointMissing(base.name, "does not exist", base.why)
    targets: dict[tuple[type, str], Callable] = {}
    for point in patch_points() if points is None else points:
        owner = _owner(point)
        if point.make is None:
            if not hasattr(owner, point.attr):
                raise PatchPointMissing(point.name, "does not exist", point.why)
            continue
        definer = next((c for c in getattr(owner, "__mro__", ()) if point.attr in c.__dict__), None)
        if definer is None or not _naslib_class(definer) or (point.attr == "query" and definer is graph):
            problem = ("does not exist" if definer is None else
                       f"is only {definer.__module__}.{definer.__qualname__}.{point.attr}, not NASLib's own")
            raise PatchPointMissing(point.name, problem, point.why)
        if point.params:
            try:
                have = inspect.signature(getattr(owner, point.attr)).parameters
            except (TypeError, ValueError):
                have = {}
            lacking = [p for p in point.params if p not in have]
            if lacking:
                raise PatchPointMissing(point.name, f"takes no parameter {lacking[0]!r} (it takes "
                                        f"{', '.join(have) or 'nothing readable'})", point.why)
        targets.setdefault((definer, point.attr), point.make)
    return [(cls, attr, make) for (cls, attr), make in targets.items()]


def own_targets() -> list[tuple[type, str, Callable]]:
    """The bridge's own NASLib-compatible classes, wrapped like NASLib's (not patch points: they
    cannot go missing): the ``query`` of tables served without a NASLib mapping (tabular.py)."""
    from ecnas_plugin.naslib.tabular import graph_class

    return [(graph_class(), "query", _wrap_query)]


def patch() -> None:
    """Wrap NASLib's classes and the bridge's own (:func:`own_targets`), all or nothing (imports
    NASLib: call :func:`ecnas_plugin.naslib.compat.apply` first). Every declared point is checked
    before the first is wrapped; a wrapper that fails half-way undoes the ones already applied."""
    if is_patched():
        return
    targets = resolve() + own_targets()
    try:
        for cls, attr, make in targets:
            _patch(cls, attr, make)
    except BaseException:
        unpatch()
        raise
