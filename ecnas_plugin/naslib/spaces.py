"""Which registered space and energy table a NASLib run uses, checked before NASLib loads any data.

Nothing here names a space: every answer comes from the registered spaces' ``NaslibMapping``
(``ecnas_plugin.adapters.base``) and capabilities. A NASLib config's ``search_space`` is either

- the name of one of NASLib's own spaces that a registered space maps onto
  (``NaslibMapping.search_space``, e.g. ``nasbench101``, ``nasbench201``): NASLib's own graphs and
  data file give the accuracies, an energy table of that space gives the energy; or
- the name of a registered energy table, served as a search space (accuracy and energy from the
  table, no NASLib data file needed):

  - a table whose space maps onto NASLib's NB101 graphs (e.g. ``ecnas-4v``, ``ecnas-5v``, or a
    user's contributed NB101 table): its cells as an EC-NAS-style subspace of NASLib's own NB101
    space (:mod:`ecnas_plugin.naslib.subspace`, serving :data:`SUBSPACE`);
  - a table whose space has no NASLib mapping but offers ``sample`` and ``neighbours`` (e.g.
    ``nb201-joint-flowers17-cpu``): its configurations through the bridge's own NASLib-compatible
    class (:mod:`ecnas_plugin.naslib.tabular`, serving :data:`TABULAR`), for NASLib's RS, RE and
    LS; optimizers that encode architectures with NASLib's encoders are refused
    (:func:`check_optimizer`). With ``energy.surrogate`` (a curve surrogate) the search ranges
    over the whole space, configurations the table lacks predicted; :func:`check_surrogate`
    refuses one for any other target.

:func:`plan` resolves and checks a config's ``energy:`` section against that target — the table
exists and holds the target's space, the slice (epochs, hardware, campaign) exists, and the table
covers every cell the search can reach (unless ``energy.missing: predict``) — raising
:class:`ConfigError` naming the key. The runner calls it before NASLib loads its data file; the
bridge's ``adapt_search_space`` wrapper calls it again for scripts that drive NASLib themselves.

:func:`search_space` (imports NASLib: only after ``compat.apply``) builds the NASLib search space
of a served table.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import lru_cache

from ecnas_plugin.adapters.base import NaslibMapping, SearchSpace
from ecnas_plugin.errors import EcnasError, UnknownName
from ecnas_plugin.naslib.config import ConfigError, EnergyConfig, energy_of_config


# ---------------------------------------------------------------- registered spaces
def mapped_spaces() -> list[SearchSpace]:
    """Every registered space that maps onto a NASLib space."""
    from ecnas_plugin.registry import get_registry

    return [s for s in get_registry().items["spaces"].values() if s.supports("naslib")]


_BY_TYPE: dict[str, SearchSpace] = {}


def for_graph_type(graph_type: str) -> SearchSpace:
    """The registered space whose NASLib graphs answer ``get_type() == graph_type`` (cached)."""
    space = _BY_TYPE.get(graph_type)
    if space is None:
        found = [s for s in mapped_spaces() if s.naslib.graph_type == graph_type]  # type: ignore[union-attr]
        if not found:
            raise ConfigError("search_space", f"energy is not available for NASLib graphs of type {graph_type!r}: "
                              "no registered search space maps onto them (mapped: "
                              f"{', '.join(sorted(s.naslib.graph_type for s in mapped_spaces())) or 'none'})")  # type: ignore[union-attr]
        space = _BY_TYPE[graph_type] = found[0]
    return space


def mapping_of(graph: object) -> NaslibMapping:
    """The NaslibMapping for a NASLib graph (by its ``get_type()``)."""
    return for_graph_type(graph.get_type()).naslib  # type: ignore[attr-defined,return-value]


def key_of(graph: object) -> str:
    """The energy tables' canonical key of a NASLib graph (a configuration of a table served
    without a mapping knows its own: ``table_key()``)."""
    own = getattr(graph, "table_key", None)
    if own is not None:
        return own()
    return mapping_of(graph).key_of_graph(graph)


def spec_of(graph: object) -> object:
    """What an energy surrogate predicts from (``NaslibMapping.spec_of_graph``); None when the key
    is enough, as for a configuration of a table served without a mapping (the space decodes it)."""
    if getattr(graph, "table_key", None) is not None:
        return None
    return mapping_of(graph).spec_of_graph(graph)


def forget() -> None:
    """Drop the cached graph-type lookups (after the registry changed)."""
    _BY_TYPE.clear()


# How a table named as search_space is served (Target.serving)
SUBSPACE = "subspace"  # NB101 cells as a subclass of NASLib's NB101 space (subspace.py)
TABULAR = "tabular"  # any other space with sample + neighbours: the bridge's own class (tabular.py)


@dataclass(frozen=True)
class Target:
    """What a NASLib ``search_space`` names: the registered space, the served table (None:
    NASLib's own space and data) and how it is served (:data:`SUBSPACE` or :data:`TABULAR`)."""

    name: str
    space: SearchSpace
    table: str | None = None
    serving: str | None = None

    @property
    def naslib_space(self) -> str | None:
        """NASLib's name of the space (None for a space without a NASLib mapping)."""
        return self.space.naslib.search_space if self.space.naslib is not None else None  # type: ignore[union-attr]


def target(name: str) -> Target | None:
    """The target of NASLib ``search_space: name``; None for a NASLib space no registered space maps."""
    from ecnas_plugin.registry import get_registry

    for space in mapped_spaces():
        if space.naslib.search_space == name:  # type: ignore[union-attr]
            return Target(name, space)
    reg = get_registry()
    if name in reg.items["tables"]:
        space = reg.space(reg.table_spec(name).space)
        serving = _serving(space)
        if serving is None:
            space.require("sample", "neighbours", flow=f"search_space {name!r} (a table of a space NASLib's "
                                                       "graphs cannot serve, served as a NASLib search space)")
        return Target(name, space, table=name, serving=serving)
    return None


def _serving(space: SearchSpace) -> str | None:
    """How a table of ``space`` is served as a search space (None: it cannot be): NASLib's own
    graphs where the subspace can serve them (NB101), else the bridge's own class where the space
    can sample and move (the joint space; NB201, whose NASLib graphs answer from NASLib's own data,
    not from a table)."""
    from ecnas_plugin.naslib.subspace import GRAPH_TYPE

    if space.supports("naslib") and space.naslib.graph_type == GRAPH_TYPE:  # type: ignore[union-attr]
        return SUBSPACE
    return TABULAR if space.supports("sample") and space.supports("neighbours") else None


def servable_tables() -> list[str]:
    """Registered tables a NASLib config may name as ``search_space``."""
    import ecnas_plugin as ep
    from ecnas_plugin.registry import get_registry

    reg = get_registry()
    kinds = {s.name for s in reg.items["spaces"].values() if _serving(s) is not None}
    return sorted(t.name for t in ep.list_tables() if t.space in kinds)


# NASLib optimizers (config name -> class) whose predictors encode architectures with NASLib's
# encoders (naslib.predictors.utils.encodings), which know only NASLib's own spaces' graphs.
ENCODING_OPTIMIZERS = {"bananas": "Bananas", "npenas": "Npenas", "bp": "BasePredictor"}


def check_optimizer(optimizer: str | object, tgt: Target) -> None:
    """Refuse (ConfigError ``optimizer``), before anything runs, a NASLib optimizer that cannot
    search ``tgt``: one that encodes architectures, on a table served by the bridge's own class.
    ``optimizer``: its config name (``bananas``) or the optimizer itself."""
    if tgt.serving != TABULAR:
        return
    if isinstance(optimizer, str):
        name = optimizer
    else:  # an optimizer object: by its class or the NASLib class it subclasses
        classes = {c.__name__ for c in type(optimizer).__mro__}
        name = next((n for n, c in ENCODING_OPTIMIZERS.items() if c in classes), type(optimizer).__name__)
    if name in ENCODING_OPTIMIZERS:
        raise ConfigError("optimizer", f"NASLib optimizer {name!r} cannot search {tgt.name!r}: it encodes "
                          f"architectures with NASLib's encoders, which know only NASLib's own spaces' graphs, and "
                          f"the table of space {tgt.space.name!r} is served by the bridge's own search-space class, "
                          "not as NASLib graphs; use rs, re or ls")


def check_search(name: str, optimizers: list[str]) -> Target | None:
    """Everything about ``search_space: name`` with these NASLib optimizers (config names) that
    can be refused without NASLib: the target (:func:`target`) and each optimizer on it
    (:func:`check_optimizer`). For callers that validate before anything runs (study configs)."""
    tgt = target(name)
    if tgt is not None:
        for optimizer in optimizers:
            check_optimizer(optimizer, tgt)
    return tgt


def check_surrogate(tgt: Target | None) -> None:
    """Refuse (ConfigError ``energy.surrogate``), without NASLib, a curve surrogate for a target
    it cannot extend: only a table served by the bridge's own class (:data:`TABULAR`: a space
    without a NASLib mapping, or NB201) leaves the table through one. NASLib's own spaces (NB101, NB201) and
    NB101 tables served as subspaces answer from NASLib's graphs and data."""
    if tgt is not None and tgt.serving == TABULAR:
        return
    if tgt is None:
        where = "no registered search space maps onto it"
    elif tgt.table is None:
        where = (f"it is NASLib's own {tgt.naslib_space!r} space (registered space {tgt.space.name!r}), whose "
                 "graphs and data file answer every query; energy a table lacks comes from energy.missing: predict")
    else:
        where = (f"table {tgt.table!r} is space {tgt.space.name!r}, served through NASLib's own "
                 f"{tgt.naslib_space!r} graphs, which the bridge does not extend beyond the table")
    served = [t for t in servable_tables() if _serving(_space_of_table(t)) == TABULAR]
    name = tgt.name if tgt is not None else "?"
    raise ConfigError("energy.surrogate", f"a curve surrogate extends a table served by the bridge's own search-space "
                      f"class ({', '.join(served) or 'none registered'}); "
                      f"search_space {name!r} is not one: {where}")


def _space_of_table(name: str) -> SearchSpace:
    from ecnas_plugin.registry import get_registry

    reg = get_registry()
    return reg.space(reg.table_spec(name).space)


def default_table(space: SearchSpace) -> str:
    """The energy table used when a config names none: the mapping's preferred table if
    registered, else the only table of the space; a named ConfigError otherwise."""
    import ecnas_plugin as ep

    tables = sorted(t.name for t in ep.list_tables() if t.space == space.name)
    preferred = space.naslib.preferred_table  # type: ignore[union-attr]
    if preferred in tables:
        return preferred  # type: ignore[return-value]
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise ConfigError("energy.table", f"no energy table is registered for space {space.name!r} (NASLib "
                                          f"{space.naslib.search_space!r}); measure and contribute one "  # type: ignore[union-attr]
                                          "(ecnas measure / ecnas contribute) or install a package that has one")
    raise ConfigError("energy.table", f"several energy tables hold space {space.name!r} ({', '.join(tables)}); "
                                      "choose one")


# ---------------------------------------------------------------- the energy plan
PLAN_KEY = "ecnas_plan"  # dataset_api key: the runner's checked plan, reused by adapt_search_space


@dataclass(frozen=True)
class Plan:
    """A checked ``energy:`` section: the config (epochs filled in), its table and slice, and the
    NASLib config it was checked for."""

    energy: EnergyConfig
    table: object
    source: object  # EnergySource
    target: Target
    config: object = None


def _load(name: str, key: str) -> object:
    import ecnas_plugin as ep

    try:
        return ep.load_table(name)
    except UnknownName as exc:
        raise ConfigError(key, str(exc)) from None
    except EcnasError as exc:  # a registered table whose data cannot be had here
        raise ConfigError(key, f"table {name!r} cannot be loaded: {exc}") from None


def plan(config: object, tgt: Target, served: object | None = None) -> Plan | None:
    """Resolve and check the ``energy`` section of ``config`` for target ``tgt`` (None: energy off).

    ``served``: the served table's runs (``dataset_api[SERVED_KEY]``: an EcnasBench or a
    TabularBench, both :class:`~ecnas_plugin.naslib.tabular.TableRuns`) when the target is a table.
    Every refusal is a ConfigError naming the key; nothing of NASLib is loaded.
    """
    from ecnas_plugin.naslib.trace import EnergySource

    energy = energy_of_config(config)
    if energy is None:
        return None
    search = config.get("search", {}) if hasattr(config, "get") else {}
    if (search or {}).get("use_zc_api"):
        raise ConfigError("search.use_zc_api", "cannot be combined with energy: the zero-cost API hands "
                                               "BANANAS/NPENAS accuracies without query, bypassing the objective")
    if energy.surrogate is not None:
        check_surrogate(tgt)
        if served is None:
            raise ConfigError("energy.surrogate", f"needs the served table of search_space {tgt.name!r} "
                                                  "(its dataset_api, tabular.build_dataset_api)")
        if energy.table not in (None, tgt.table):
            raise ConfigError("energy.table", f"with energy.surrogate the energy is the served table's "
                                              f"({tgt.table!r}) and the surrogate's, not {energy.table!r}")
    space = tgt.space
    if tgt.table is not None:
        default_epochs = served.default_epochs if served is not None else None  # type: ignore[attr-defined]
        if energy.epochs is not None and default_epochs is not None and energy.epochs != default_epochs:
            raise ConfigError("energy.epochs", f"{energy.epochs} differs from the space's epoch budget {default_epochs}")
        if energy.epochs is None and default_epochs is not None:
            energy = replace(energy, epochs=default_epochs)
        name = energy.table or tgt.table
    else:
        name = energy.table or default_table(space)
    table = served.table if served is not None and name == tgt.table else _load(name, "energy.table")  # type: ignore[attr-defined]
    if table.space != space.name:  # type: ignore[attr-defined]
        raise ConfigError("energy.table", f"table {name!r} holds space {table.space!r}; search_space "  # type: ignore[attr-defined]
                                          f"{tgt.name!r} is space {space.name!r}")
    dataset = getattr(config, "dataset", None) if not isinstance(config, dict) else config.get("dataset")
    datasets = table.values("dataset")  # type: ignore[attr-defined]
    if energy.dataset is not None:  # asked for by name: energy of that dataset, whatever the run trains on
        if energy.dataset not in datasets:
            raise ConfigError("energy.dataset", f"table {name!r} has no dataset {energy.dataset!r}; it has "
                                                f"{', '.join(map(str, datasets))}")
        dataset = energy.dataset
    elif dataset not in datasets and served is None:
        # NASLib's own space: the run's accuracies are of `dataset`; energy of another one is taken
        # only when the config says so (and pareto_front.json records it as energy_dataset).
        raise ConfigError("energy.dataset", f"table {name!r} holds energy of {', '.join(map(str, datasets))}, "
                                            f"not of the run's dataset {dataset!r}; set energy.dataset to one of "
                                            "them to pair that energy with this run's accuracies")
    source = EnergySource(table, energy, dataset if dataset in datasets else None)
    if energy.epochs is None:
        energy = replace(energy, epochs=source.epochs)
    if energy.surrogate is not None:  # the search leaves the table: the rest is the surrogate's
        served.extend(energy.surrogate)  # type: ignore[union-attr]
        source.predict = served.energy_predictor(source)  # type: ignore[union-attr]
    if energy.missing == "error":
        _check_covers(source, tgt, served, name)
    return Plan(energy, table, source, tgt, config)


def _check_covers(source: object, tgt: Target, served: object | None, name: str) -> None:
    """Refuse (energy.table) a table lacking a cell the search can reach, before the search."""
    have = source.energy  # type: ignore[attr-defined]
    where = f"at {source.epochs} epochs"  # type: ignore[attr-defined]
    if served is not None:
        keys = served.keys  # type: ignore[attr-defined]
        lacking = [k for k in keys if k not in have]
        if lacking:
            raise ConfigError("energy.table", f"table {name!r} lacks {len(lacking)} of the {len(keys)} cells of "
                                              f"search space {tgt.name!r} {where} (first: {lacking[0]}); choose a "
                                              "table that covers it, or energy.missing: predict")
        return
    space = tgt.space
    if space.size is not None and len(have) < space.size:  # cannot cover it: no need to list the space
        raise ConfigError("energy.table", f"table {name!r} holds {len(have)} cells of {space.name!r} {where}, "
                          f"not all {space.size:,} of NASLib's {tgt.naslib_space!r} space, and the search can reach "
                          f"any of them; a search there would stop at the first cell it lacks. Use a table that "
                          f"covers the space, energy.missing: predict, or search the cells of a table with "
                          f"accuracies, named as search_space (registered: {', '.join(servable_tables()) or 'none'})")
    if not space.supports("enumerate"):
        return  # cannot tell here: a missing cell is refused when the search reaches it
    for arch in space.enumerate():
        key = space.canonical_key(arch)
        if key not in have:
            raise ConfigError("energy.table", f"table {name!r} holds {len(have)} cells of {space.name!r} {where}, "
                              f"not every cell of NASLib's {tgt.naslib_space!r} space (cell {key} is missing, "
                              f"and the search can reach any of them); a search there would stop at the first cell "
                              f"it lacks. Use a table that covers the space, energy.missing: predict, or search the "
                              f"cells of a table with accuracies, named as search_space (registered: "
                              f"{', '.join(servable_tables()) or 'none'})")


# ---------------------------------------------------------------- NASLib classes (import NASLib)
@lru_cache(maxsize=1)
def space_class() -> type:
    """The NASLib search-space class for served NB101 tables (built once, on first use)."""
    import torch
    from naslib.search_spaces import NasBench101SearchSpace

    from ecnas_plugin.naslib.subspace import Subspace

    class EcnasNasBench101SearchSpace(NasBench101SearchSpace):
        """NAS-Bench-101 restricted to the cells of an energy table (module-hash canonical specs)."""

        QUERYABLE = True

        def __init__(self, subspace: Subspace, n_classes: int = 10):
            super().__init__(n_classes=n_classes)
            self.subspace = subspace  # shared by clones (Subspace.__deepcopy__ returns itself)
            self.ecnas_space = subspace.name
            self.instantiate_model = False  # tabular: no torch model per sampled cell

        def _key(self) -> str:
            key = self.subspace.key_of(self.get_spec())
            if key is None:
                raise ValueError(f"spec is not a cell of {self.ecnas_space}")
            return key

        def set_spec(self, spec, dataset_api=None) -> None:
            if isinstance(spec, str):  # a module hash
                spec = self.subspace.spec(spec)
            super().set_spec(spec, dataset_api)

        def sample_random_architecture(self, dataset_api=None, load_labeled: bool = False) -> None:
            if load_labeled:
                raise NotImplementedError("load_labeled (zero-cost benchmark samples) is not available "
                                          f"for {self.ecnas_space}")
            self.set_spec(self.subspace.spec(self.subspace.sample()))

        def mutate(self, parent, dataset_api=None, edits: int = 1) -> None:
            key = self.subspace.key_of(parent.get_spec())
            if key is None:
                raise ValueError(f"parent is not a cell of {self.ecnas_space}")
            for _ in range(edits):
                key = self.subspace.mutate(key)
            self.set_spec(self.subspace.spec(key))

        def get_nbhd(self, dataset_api=None) -> list:
            nbhd = []
            for key in self.subspace.neighbours(self._key()):
                nbr = type(self)(self.subspace, self.num_classes)
                nbr.set_spec(self.subspace.spec(key))
                model = torch.nn.Module()
                model.arch = nbr
                nbhd.append(model)
            random.shuffle(nbhd)
            return nbhd

        def get_arch_iterator(self, dataset_api=None):
            return iter(self.subspace.keys)

    return EcnasNasBench101SearchSpace


def search_space(name: str, n_classes: int = 10, served: object | None = None) -> object:
    """A fresh NASLib search space for table ``name`` served as a search space: any registered NB101
    table as a subspace, or a table of a space without a NASLib mapping through
    :func:`ecnas_plugin.naslib.tabular.graph_class`, answering from ``served`` (the run's
    ``dataset_api[SERVED_KEY]``; default: the table at its largest budget)."""
    tgt = target(name)
    if tgt is not None and tgt.serving == TABULAR:
        from ecnas_plugin.naslib import tabular

        return tabular.graph_class()(served if served is not None else tabular.TabularBench(name))
    from ecnas_plugin.naslib.subspace import load_subspace

    return space_class()(load_subspace(name), n_classes=n_classes)
