"""Class-level wrappers on NASLib: the whole bridge, reversible (``patch`` / ``unpatch``).

Every wrapper first looks for the run's :class:`RunState` in the optimizer's ``dataset_api``; with
none (energy off) it calls the original and does nothing else, so results are NASLib's own.
With energy on:

- ``<queryable space>.query``: ``Metric.VAL_ACCURACY`` asked by the optimizer returns the
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
  are predictions, not evaluations (not charged).
- ``Trainer.search`` ends cleanly on ``BudgetExhausted`` (NASLib has no stop hook: the
  trajectory so far is written and ``after_training`` runs) and writes the energy trace and
  Pareto front; ``Trainer._log_to_json`` adds the energy columns to ``errors.json``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


def _patch(cls: type, name: str, make: Callable[[Callable], Callable]) -> None:
    if (cls, name) in _originals or not hasattr(cls, name):
        return
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


def is_patched() -> bool:
    return bool(_originals)


# ---------------------------------------------------------------- query
def _arch_key(graph: object) -> str:
    """The energy tables' key of a NASLib graph: NB101 module hash, NB201 architecture string."""
    d = graph.__dict__
    cached = d.get("_ecnas_key")
    # NB101 graphs keep their spec in ``spec`` (set_spec replaces the object): same object, same key
    if cached is not None and cached[0] is d.get("spec"):
        return cached[1]
    kind = graph.get_type()  # type: ignore[attr-defined]
    if kind == "nasbench101":
        from ecnas_plugin.naslib.subspace import spec_hash

        spec = graph.get_spec()  # type: ignore[attr-defined]
        key = spec_hash(spec["matrix"], spec["ops"])
        if spec is d.get("spec"):
            d["_ecnas_key"] = (spec, key)
        return key
    if kind == "nasbench201":
        from ecnas_plugin.adapters.nasbench201 import from_op_indices

        return from_op_indices(graph.get_hash())  # type: ignore[attr-defined]
    raise ConfigError("search_space", f"energy is not available for NASLib space {kind!r} (nasbench101, "
                                      "nasbench201 and the EC-NAS spaces are)")


def _spec(graph: object) -> object:
    return graph.get_spec() if graph.get_type() == "nasbench101" else None  # type: ignore[attr-defined]


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
    """Resolve the energy section of ``config`` against the run's space and tables."""
    import ecnas_plugin as ep
    from ecnas_plugin.naslib.subspace import EcnasBench
    from ecnas_plugin.naslib.trace import EnergySource

    energy = energy_of_config(config)
    assert energy is not None
    search = config.get("search", {}) if hasattr(config, "get") else {}
    if search.get("use_zc_api"):
        raise ConfigError("search.use_zc_api", "cannot be combined with energy: the zero-cost API hands "
                                               "BANANAS/NPENAS accuracies without query, bypassing the objective")
    bench = dataset_api.get("nb101_data")
    if isinstance(bench, EcnasBench):
        table = bench.table if energy.table is None else ep.load_table(energy.table)
        if energy.epochs is not None and energy.epochs != bench.default_epochs:
            raise ConfigError("energy.epochs", f"{energy.epochs} differs from the space's epoch budget "
                                               f"{bench.default_epochs}")
        if energy.epochs is None:
            from dataclasses import replace

            energy = replace(energy, epochs=bench.default_epochs)
    else:
        kind = search_space.get_type()  # type: ignore[attr-defined]
        name = energy.table or _default_table(kind)
        table = ep.load_table(name)
    dataset = getattr(config, "dataset", None)
    frame_datasets = set(table.frame["dataset"].unique().tolist())
    source = EnergySource(table, energy, dataset if dataset in frame_datasets else None)
    return RunState(energy, source, seed=int(getattr(config, "seed", 0) or 0), accuracy_scale=ACCURACY_SCALE)


def _default_table(kind: str) -> str:
    import ecnas_plugin as ep

    tables = [t.name for t in ep.list_tables() if t.space == kind]
    preferred = {"nasbench101": "ecnas-7v"}.get(kind)
    if preferred in tables:
        return preferred  # type: ignore[return-value]
    if not tables:
        raise ConfigError("energy.table", f"no energy table is registered for NASLib space {kind!r}; "
                                          "register one (hook ecnas_tables) or pick another space")
    return tables[0]


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
        return original(self, *args, **kwargs)

    return _log_to_json


OPTIMIZER_NAMES = ("RandomSearch", "RegularizedEvolution", "LocalSearch", "Bananas", "Npenas", "BasePredictor")


def patch() -> None:
    """Wrap NASLib's classes (imports NASLib: call :func:`ecnas_plugin.naslib.compat.apply` first)."""
    if is_patched():
        return
    import naslib.optimizers as optimizers
    import naslib.search_spaces as spaces
    from naslib.defaults.trainer import Trainer
    from naslib.search_spaces.core.graph import Graph

    for obj in vars(spaces).values():
        if isinstance(obj, type) and issubclass(obj, Graph) and "query" in obj.__dict__:
            _patch(obj, "query", _wrap_query)
    for name in OPTIMIZER_NAMES:
        cls = getattr(optimizers, name, None)
        if cls is None:
            continue
        for attr, make in (("__init__", _wrap_init), ("adapt_search_space", _wrap_adapt),
                           ("new_epoch", _wrap_new_epoch), ("train_statistics", _wrap_train_statistics),
                           ("test_statistics", _wrap_truth), ("_get_new_candidates", _wrap_candidates)):
            if attr in cls.__dict__:
                _patch(cls, attr, make)
    _patch(Trainer, "search", _wrap_search)
    _patch(Trainer, "evaluate", _wrap_truth)
    _patch(Trainer, "_log_to_json", _wrap_log_to_json)
