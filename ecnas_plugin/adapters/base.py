"""The search-space contract: what a space plugin declares and what every flow may ask of it.

This module sits at the bottom of the import graph (it imports only ``errors``), so the registry,
the flows and third-party plugins can all depend on it without pulling in an implementation.

A space is a :class:`SearchSpace` subclass returned by the ``ecnas_search_spaces`` hook. It
declares its **dimensions** (:class:`Dimension`): one architecture dimension (a codec), any
number of hyperparameters (typed, bounded, log-scaled where it matters) and fidelities (where a
configuration is *evaluated*: epochs; resolution where the space has it). A configuration's
identity is its architecture plus its hyperparameters in declaration order
(:meth:`SearchSpace.config_key`). Epochs, the *curve* fidelity, is never part of it: a run's
checkpoints lie along it. Any other fidelity is one a whole run is fixed at (a table row is
measured at one resolution), so it ends the key, after the hyperparameters, as ``@name=value``.

Required of every space: :meth:`~SearchSpace.canonical_key` and :meth:`~SearchSpace.parse_arch`
(both raise :class:`~ecnas_plugin.errors.InvalidArchitecture` naming the broken rule) and
:meth:`~SearchSpace.describe` where the key alone cannot rebuild the architecture. Everything
else is a **capability** (see :data:`CAPABILITIES`): a space offers it by overriding the method,
and a flow that needs one calls :meth:`~SearchSpace.require` before it starts, which raises
:class:`~ecnas_plugin.errors.MissingCapability` naming the space, the capability and the flow.
"""

from __future__ import annotations

import math
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecnas_plugin.errors import InvalidArchitecture, InvalidConfiguration, MissingCapability

ROLES = ("architecture", "hyperparameter", "fidelity")
KINDS = ("architecture", "categorical", "integer", "float")


@dataclass(frozen=True)
class Dimension:
    """One dimension of a space.

    ``role`` is architecture | hyperparameter | fidelity; ``kind`` architecture | categorical |
    integer | float. Categorical dimensions list ``choices``; numeric ones give ``low``/``high``
    (inclusive) and ``log`` where the scale is logarithmic (learning rates, weight decay), or
    ``choices`` where only a grid exists (epoch budgets of a table).
    """

    name: str
    role: str
    kind: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    default: Any = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"dimension {self.name!r}: role must be one of {ROLES}, got {self.role!r}")
        if self.kind not in KINDS:
            raise ValueError(f"dimension {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "categorical" and not self.choices:
            raise ValueError(f"dimension {self.name!r}: a categorical dimension needs choices")
        if self.log and not (self.low is not None and self.low > 0):
            raise ValueError(f"dimension {self.name!r}: a log-scaled dimension needs low > 0")

    def check(self, value: Any, space: str = "") -> Any:
        """``value`` as this dimension's type, or :class:`InvalidConfiguration` naming the dimension."""
        where = f"{space} " if space else ""

        def bad(detail: str) -> InvalidConfiguration:
            return InvalidConfiguration(f"{where}{self.role} {self.name!r}", value, detail)

        if self.kind == "integer":
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value != int(value)):
                raise bad("must be an integer")
            value = int(value)
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad("must be a finite number")
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise bad(f"must be one of {list(self.choices)}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            if self.high is None:
                raise bad(f"must be >= {self.low}")
            if self.low is None:
                raise bad(f"must be <= {self.high}")
            raise bad(f"must lie in [{self.low}, {self.high}]")
        return value


ARCHITECTURE = "arch"
EPOCHS = Dimension("epochs", "fidelity", "integer", low=1, description="training budget in epochs")
CURVE_FIDELITY = EPOCHS.name  # the fidelity along a run's checkpoints; the only one outside the key

# Capability → the method (or attribute) that provides it.
CAPABILITIES = {
    "enumerate": "enumerate",
    "sample": "sample",
    "neighbours": "neighbours",
    "network": "build_network",
    "features": "features",
    "strata": "stratum",
    "naslib": "naslib",
    "design": "design",
}


class SearchSpace(ABC):
    """One search space: its dimensions, its codec and whatever else it can do.

    Subclasses set ``name`` (how users and tables refer to the space) and ``key_description``
    (what the canonical key is, shown by ``ecnas plugins``), and may extend ``dimensions``.
    """

    name: str
    key_description: str
    dimensions: tuple[Dimension, ...] = (
        Dimension(ARCHITECTURE, "architecture", "architecture", description="the cell"), EPOCHS)
    # Builder settings a campaign may override (e.g. {"C": 16, "N": 5}); with build_network.
    network_defaults: Mapping[str, int] = {}
    # The NASLib space this one maps onto (a NaslibMapping), or None.
    naslib: NaslibMapping | None = None
    # How many configurations the whole space has, where known (NB101 423,624; NB201 15,625): lets a
    # flow tell that a table cannot cover the space without enumerating it.
    size: int | None = None
    # With ``enumerate``: the limits a flow applies when it enumerates without any given (stratified
    # measurement samples), so a space too big to list whole still samples in seconds.
    default_limits: Mapping[str, int] = {}
    # With ``features``: a name for the feature computation, changed whenever it changes, so a saved
    # surrogate refuses features it was not trained on (default: a digest of the feature names).
    feature_set: str | None = None

    # ------------------------------------------------------------------ identity (required)
    @abstractmethod
    def canonical_key(self, arch: object) -> str:
        """Canonical key of ``arch`` (any form this space accepts); raises InvalidArchitecture."""

    @abstractmethod
    def parse_arch(self, text: str) -> object:
        """Parse architecture text (command line, config, trace) into a form ``canonical_key`` takes."""

    def describe(self, arch: object) -> str:
        """A text form of ``arch`` that :meth:`parse_arch` reads back into a buildable architecture
        (traces and campaign cell lists carry it). Default: the canonical key."""
        return self.canonical_key(arch)

    def decode(self, key: str) -> object:
        """The architecture a canonical key names. Default: the key parsed back; spaces whose keys
        are fingerprints (NB101's module hash) override this or say that they cannot."""
        return self.parse_arch(key)

    def archs_of(self, frame) -> dict[str, object]:
        """Canonical key → architecture for every configuration of a table frame: from its
        ``arch_text`` column where the table carries one (needed where a key cannot be decoded,
        e.g. NB101 cells of 6-7 vertices), else :meth:`decode`. Raises InvalidArchitecture
        naming the key that can be neither."""
        texts = {}
        if "arch_text" in frame.columns:
            texts = dict(zip(frame["arch_key"], frame["arch_text"]))
        out = {}
        for key in sorted(set(frame["arch_key"])):
            text = texts.get(key)
            arch = self.arch(text) if isinstance(text, str) else self.decode(key)
            if self.canonical_key(arch) != key:
                raise InvalidArchitecture("key-mismatch", f"arch_text {text!r} is another configuration "
                                                          f"({self.canonical_key(arch)})", key)
            out[key] = arch
        return out

    def arch(self, value: object) -> object:
        """``value`` (text or any accepted form) as an architecture, validated."""
        arch = self.parse_arch(value) if isinstance(value, str) else value
        self.canonical_key(arch)
        return arch

    # ------------------------------------------------------------------ dimensions
    def dimensions_of(self, role: str) -> tuple[Dimension, ...]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return tuple(d for d in self.dimensions if d.role == role)

    @property
    def hyperparameters(self) -> tuple[Dimension, ...]:
        return self.dimensions_of("hyperparameter")

    @property
    def fidelities(self) -> tuple[Dimension, ...]:
        return self.dimensions_of("fidelity")

    @property
    def run_fidelities(self) -> tuple[Dimension, ...]:
        """The fidelities a whole run is fixed at (every fidelity but epochs): part of the key."""
        return tuple(d for d in self.fidelities if d.name != CURVE_FIDELITY)

    def config_key(self, arch: object, values: Mapping[str, Any] | None = None) -> str:
        """The canonical key of a configuration: the arch key, then each hyperparameter as
        ``;name=value`` in declaration order, then each run fidelity (:attr:`run_fidelities`) as
        ``@name=value`` (the arch key alone where the space has neither). ``values`` holds both;
        a missing one takes its dimension's default. Unknown, missing and out-of-range values are
        named errors; epochs is refused here (it is where a key is evaluated, not part of it)."""
        return self.canonical_key(arch) + self.settings_key(values)

    def settings_key(self, values: Mapping[str, Any] | None = None) -> str:
        """The part of :meth:`config_key` after the arch key (a joint space's ``canonical_key``
        appends it to its cell's key)."""
        given = dict(values or {})
        dims = self.hyperparameters + self.run_fidelities
        unknown = sorted(set(given) - {d.name for d in dims})
        if unknown:
            raise InvalidConfiguration(f"{self.name} hyperparameter", unknown[0],
                                       f"not a dimension of the space; it has {[d.name for d in dims]}")
        parts = []
        for d in dims:
            if d.name not in given:
                if d.default is None:
                    raise InvalidConfiguration(f"{self.name} {d.role}", d.name, "missing (no default)")
                given[d.name] = d.default
            value = d.check(given[d.name], self.name)
            sep = "@" if d.role == "fidelity" else ";"
            parts.append(f"{sep}{d.name}={value!r}" if d.kind == "float" else f"{sep}{d.name}={value}")
        return "".join(parts)

    def training_settings(self, arch: object) -> dict[str, Any]:
        """The training settings this configuration fixes, overriding a campaign's defaults: any of
        ``lr``, ``optimizer``, ``weight_decay``, ``schedule``, ``augment`` (bool), ``grad_clip``,
        ``skip_nonfinite`` (see :func:`ecnas_plugin.networks.train`) and ``resolution`` (the input
        side the data is resampled to). Default: none (the campaign's settings train every cell)."""
        return {}

    def fidelity(self, **values: Any) -> dict[str, Any]:
        """Validated fidelity values (e.g. ``fidelity(epochs=12)``); an unknown name is an error."""
        dims = {d.name: d for d in self.fidelities}
        out = {}
        for name, value in values.items():
            if name not in dims:
                raise InvalidConfiguration(f"{self.name} fidelity", name, f"the space's fidelities are {sorted(dims)}")
            out[name] = dims[name].check(value, self.name)
        return out

    # ------------------------------------------------------------------ capabilities
    def supports(self, capability: str) -> bool:
        """Whether this space offers ``capability`` (a key of :data:`CAPABILITIES`)."""
        attr = CAPABILITIES.get(capability)
        if attr is None:
            raise ValueError(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
        if capability == "naslib":
            return self.naslib is not None
        if capability == "sample":  # sampling also works through enumeration
            return self._overrides("sample") or self._overrides("enumerate")
        return self._overrides(attr)

    def _overrides(self, attr: str) -> bool:
        return getattr(type(self), attr) is not getattr(SearchSpace, attr)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return tuple(c for c in CAPABILITIES if self.supports(c))

    def require(self, *capabilities: str, flow: str) -> None:
        """Refuse ``flow`` before it runs if this space lacks any of ``capabilities``."""
        for capability in capabilities:
            if not self.supports(capability):
                raise MissingCapability(self.name, capability, flow)

    def _lacks(self, capability: str, flow: str = "this call"):
        return MissingCapability(self.name, capability, flow)

    # ------------------------------------------------------------------ moves (optional)
    def enumerate(self, **limits: int) -> Iterator[object]:
        """Every architecture of the space, one per canonical key (finite spaces only); a space may
        take limits (NB101: ``max_vertices``) and declare the ones flows use in ``default_limits``."""
        raise self._lacks("enumerate")

    def sample(self, rng, subset: Collection[str] | None = None) -> object:
        """A random architecture (numpy Generator ``rng``): uniform over ``subset`` (canonical keys,
        e.g. a table's) when given, else over the whole space. Default for the whole space: uniform
        over :meth:`enumerate`, listed once per process; spaces too big to list override this."""
        if subset is not None:
            return self.decode(sample_key(subset, rng))
        if not self._overrides("enumerate"):
            raise self._lacks("sample")
        archs = _enumerated(self)
        return archs[int(rng.integers(len(archs)))]

    def neighbours(self, arch: object, subset: Collection[str] | None = None) -> list[object]:
        """Every architecture one edit away from ``arch`` (its own rule of what an edit is),
        restricted to canonical keys in ``subset`` when one is given."""
        raise self._lacks("neighbours")

    def mutate(self, arch: object, rng, subset: Collection[str] | None = None) -> object:
        """A different architecture near ``arch``, inside ``subset`` when given. Default: uniformly
        one of the nearest (:meth:`nearest`)."""
        options = self.nearest(arch, subset)
        return options[int(rng.integers(len(options)))]

    def nearest(self, arch: object, subset: Collection[str] | None = None, max_edits: int = 4) -> list[object]:
        """The architectures fewest edits away from ``arch`` (at least one), inside ``subset`` when
        given: its neighbours, else their neighbours, ... up to ``max_edits`` edits. A table that
        samples a big space sparsely has few one-edit neighbours inside it; this keeps a mutation
        local there too. Raises InvalidArchitecture (rule "no-neighbour") where none is found."""
        start = self.canonical_key(arch)
        seen = {start}
        ring = [arch]
        for _ in range(max_edits):
            next_ring = []
            for a in ring:
                for b in self.neighbours(a):
                    k = self.canonical_key(b)
                    if k not in seen:
                        seen.add(k)
                        next_ring.append(b)
            hits = [b for b in next_ring if subset is None or self.canonical_key(b) in subset]
            if hits:
                return hits
            ring = next_ring
        raise InvalidArchitecture("no-neighbour", f"nothing within {max_edits} edits inside the "
                                                  f"{len(subset or ())} allowed configurations of {self.name}", start)

    def stratum(self, arch: object) -> tuple:
        """A tuple that groups architectures of similar cost (op counts, sizes), for stratified
        measurement samples."""
        raise self._lacks("strata")

    def build_network(self, arch: object, num_classes: int, **settings: int):
        """A torch ``nn.Module`` of ``arch`` (settings: keys of ``network_defaults``)."""
        raise self._lacks("network")

    def features(self, archs: Sequence[object]) -> tuple[Any, list[str]]:
        """(float array of shape (len(archs), k), the k feature names) for surrogate models."""
        raise self._lacks("features")

    def encoding(self, archs: Sequence[object]) -> Any:
        """(len(archs), k) floats a distance-based model compares configurations by (the GP kernel
        of the model-based optimizers, ``search.model_based``): by default the ``features``. A
        space whose features miss what makes two configurations alike adds to them (NB101: which
        op sequences a cell routes its input through)."""
        import numpy as np

        return np.asarray(self.features(archs)[0], dtype=float)

    def design(self, n: int, seed: int = 0) -> list[object]:
        """``n`` distinct configurations spread over every dimension (a space-filling design), for
        measurement campaigns of spaces too big or too continuous to stratify by enumeration."""
        raise self._lacks("design")


_ENUMERATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _enumerated(space: SearchSpace) -> list[object]:
    if space not in _ENUMERATED:
        _ENUMERATED[space] = list(space.enumerate())
    return _ENUMERATED[space]


def sample_key(subset: Collection[str], rng) -> str:
    """A uniformly random key of ``subset`` (sorted first, so a seed gives the same key every run)."""
    if not subset:
        raise ValueError("cannot sample from an empty subset")
    keys = sorted(subset)
    return keys[int(rng.integers(len(keys)))]


@dataclass(frozen=True)
class NaslibMapping:
    """How a space maps onto one of NASLib's search spaces.

    ``search_space``: the name a NASLib config uses (``search_space: nasbench201``);
    ``graph_type``: what its graphs' ``get_type()`` answer; ``key_of_graph(graph)``: the canonical
    key of a NASLib graph; ``spec_of_graph(graph)``: the architecture a surrogate can predict from
    (None when the key is enough); ``preferred_table``: the energy table used when a config names
    none.
    """

    search_space: str
    graph_type: str
    key_of_graph: Callable[[object], str]
    spec_of_graph: Callable[[object], object] = field(default=lambda graph: None)
    preferred_table: str | None = None

