"""The joint space: NAS-Bench-201 cells x training hyperparameters (JAHS-Bench-201's shape, plus
EA-HAS-Bench's optimizer and schedule), with epochs and input resolution as fidelities.

A configuration (:class:`JointConfig`) is a cell and one value per dimension:

========== =========== ====================================== ===================================
dimension  role        values                                 why
========== =========== ====================================== ===================================
arch       architecture the 15,625 NB201 cells (the codec's)  JAHS-Bench-201 / NAS-Bench-201
activation hyperparam. relu, hardswish, mish                  JAHS-Bench-201
lr         hyperparam. 1e-3 .. 1, log                         JAHS-Bench-201
weight_decay hyperparam. 1e-5 .. 1e-2, log                    JAHS-Bench-201
N          hyperparam. 1, 3, 5 (cells per stage)              JAHS-Bench-201's depth multiplier
W          hyperparam. 4, 8, 16 (stem channels)               JAHS-Bench-201's width multiplier
augment    hyperparam. on, off (random crop + flip)           JAHS uses TrivialAugment; no
                                                              torchvision here, so crop + flip
                                                              written with torch ops
optimizer  hyperparam. sgd, adam, adamw                       EA-HAS-Bench
schedule   hyperparam. cosine, exponential, linear            EA-HAS-Bench (per-step decay)
resolution fidelity    8, 12, 16 (input side, pixels)         JAHS's 0.25/0.5/1 of 32 px; Flowers-17
                                                              is 16 px, so 16 is the top, 8 the
                                                              smallest that keeps a 2x2 map after
                                                              the two reductions
epochs     fidelity    1 .. the table's budget                the curve; never in the key
========== =========== ====================================== ===================================

The canonical key is the cell's arch string, ``;name=value`` for each hyperparameter in the
order above and ``@resolution=R``, e.g.
``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|;activation=mish;lr=0.0316;weight_decay=0.000178;N=3;W=8;augment=on;optimizer=adamw;schedule=cosine@resolution=12``.
Learning rate and weight decay are kept to 3 significant digits (0.5% apart is far below what
training noise can tell apart), so the same configuration has one key however it was written.
Training clips the gradient norm at 5 (the DARTS/NB201 convention) and records a step whose loss
is not finite as skipped rather than ending the run: a learning rate of 1 with Adam is a
configuration to measure, not a crash.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from ecnas_plugin.adapters import nasbench201 as nb201
from ecnas_plugin.adapters.base import EPOCHS, Dimension, SearchSpace
from ecnas_plugin.errors import InvalidArchitecture, InvalidConfiguration
from ecnas_plugin.hookspecs import hookimpl

GRAD_CLIP = 5.0
SIGNIFICANT_DIGITS = 3

HYPERPARAMETERS = (
    Dimension("activation", "hyperparameter", "categorical", choices=("relu", "hardswish", "mish"), default="relu",
              description="activation of every conv op and of the head"),
    Dimension("lr", "hyperparameter", "float", low=1e-3, high=1.0, log=True, default=0.1,
              description="initial learning rate"),
    Dimension("weight_decay", "hyperparameter", "float", low=1e-5, high=1e-2, log=True, default=5e-4,
              description="weight decay (L2 for sgd/adam, decoupled for adamw)"),
    Dimension("N", "hyperparameter", "integer", choices=(1, 3, 5), default=5, description="cells per stage"),
    Dimension("W", "hyperparameter", "integer", choices=(4, 8, 16), default=16, description="stem channels"),
    Dimension("augment", "hyperparameter", "categorical", choices=("on", "off"), default="on",
              description="random crop (1/8 padding) and horizontal flip of training batches"),
    Dimension("optimizer", "hyperparameter", "categorical", choices=("sgd", "adam", "adamw"), default="sgd",
              description="sgd: Nesterov momentum 0.9"),
    Dimension("schedule", "hyperparameter", "categorical", choices=("cosine", "exponential", "linear"),
              default="cosine", description="per-step learning-rate decay"),
)
RESOLUTION = Dimension("resolution", "fidelity", "integer", choices=(8, 12, 16), default=16,
                       description="input side in pixels (Flowers-17 is 16)")
SETTINGS = tuple(d.name for d in HYPERPARAMETERS) + (RESOLUTION.name,)
_DIMS = {d.name: d for d in (*HYPERPARAMETERS, RESOLUTION)}
# Log-scale step of a local move in lr / weight decay (four steps per decade).
LOG_STEP = 0.25


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


@dataclass(frozen=True)
class JointConfig:
    """One configuration of the joint space: an NB201 cell (arch string) and its settings."""

    cell: str
    activation: str = "relu"
    lr: float = 0.1
    weight_decay: float = 5e-4
    N: int = 5
    W: int = 16
    augment: str = "on"
    optimizer: str = "sgd"
    schedule: str = "cosine"
    resolution: int = 16

    @property
    def settings(self) -> dict[str, Any]:
        """Hyperparameters and run fidelity by name (everything but the cell)."""
        values = asdict(self)
        values.pop("cell")
        return values


def _checked(cell: object, values: Mapping[str, Any], space: str) -> JointConfig:
    """A JointConfig from a cell in any NB201 form and setting values (defaults fill in), every
    value checked by its dimension; floats rounded to the key's precision."""
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise InvalidConfiguration(f"{space} hyperparameter", unknown[0],
                                   f"not a dimension of the space; it has {list(SETTINGS)}")
    out: dict[str, Any] = {}
    for name in SETTINGS:
        dim = _DIMS[name]
        value = dim.check(values.get(name, dim.default), space)
        out[name] = _round(value) if dim.kind == "float" else value
        dim.check(out[name], space)  # rounding at an edge (0.9996 -> 1.0) must stay in range
    return JointConfig(nb201.NasBench201().arch(cell), **out)


def _parse_value(dim: Dimension, text: str, space: str) -> Any:
    if dim.kind in ("integer", "float"):
        try:
            number = float(text)
        except ValueError:
            raise InvalidConfiguration(f"{space} {dim.role} {dim.name!r}", text, "must be a number") from None
        return int(number) if dim.kind == "integer" and number == int(number) else number
    return text


class Nb201Joint(SearchSpace):
    """NB201 cells x JAHS-Bench-201 hyperparameters x EA-HAS-Bench optimizer/schedule; see the module."""

    name = "nb201-joint"
    key_description = ("NB201 arch string, then ;name=value for activation, lr, weight_decay, N, W, augment, "
                       "optimizer, schedule, then @resolution=R")
    dimensions = (Dimension("arch", "architecture", "architecture", description="the NB201 cell"),
                  *HYPERPARAMETERS, EPOCHS, RESOLUTION)
    feature_set = "nb201-joint-v1"

    # ------------------------------------------------------------------ identity
    def parse_arch(self, text: str) -> JointConfig:
        """``arch_str;name=value;...@resolution=R`` (any NB201 cell form first; settings in any
        order, missing ones at their defaults), or a bare cell (every setting at its default)."""
        if not isinstance(text, str):
            raise InvalidArchitecture("syntax", "expected configuration text", text)
        head, _, fidelity = text.strip().partition("@")
        cell, *parts = head.split(";")
        if fidelity:
            parts.append(fidelity)
        values: dict[str, Any] = {}
        for part in parts:
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or not name:
                raise InvalidConfiguration(f"{self.name} setting", part, "must be written name=value")
            if name not in _DIMS:
                raise InvalidConfiguration(f"{self.name} hyperparameter", name,
                                           f"not a dimension of the space; it has {list(SETTINGS)}")
            if name in values:
                raise InvalidConfiguration(f"{self.name} hyperparameter", name, "given twice")
            values[name] = _parse_value(_DIMS[name], value.strip(), self.name)
        return _checked(cell.strip(), values, self.name)

    def arch(self, value: object) -> JointConfig:
        if isinstance(value, JointConfig):
            return _checked(value.cell, value.settings, self.name)
        if isinstance(value, str):
            return self.parse_arch(value)
        if isinstance(value, Mapping):
            values = dict(value)
            if "arch" not in values:
                raise InvalidArchitecture("bad-key", "a configuration mapping needs an 'arch' (the NB201 cell)", value)
            return _checked(values.pop("arch"), values, self.name)
        raise InvalidArchitecture("bad-key", "expected a JointConfig, configuration text or a mapping with 'arch'",
                                  value)

    def canonical_key(self, arch: object) -> str:
        config = self.arch(arch)
        return config.cell + self.settings_key(config.settings)

    def config_key(self, arch: object, values: Mapping[str, Any] | None = None) -> str:
        """The key of a cell (any NB201 form) with these settings (missing ones at their defaults)."""
        return self.canonical_key({"arch": arch, **dict(values or {})})

    def decode(self, key: str) -> JointConfig:
        # cached: a mutation inside a table measures the distance to every key of it
        return _decode(key)

    # ------------------------------------------------------------------ moves
    def sample(self, rng, subset: Collection[str] | None = None) -> JointConfig:
        """Uniform over the cells and categorical values, log-uniform over lr and weight decay."""
        if subset is not None:
            return super().sample(rng, subset)
        return self._from_unit(rng.random(len(nb201.STRING_EDGES) + len(SETTINGS)))

    def _from_unit(self, u: Sequence[float]) -> JointConfig:
        """The configuration a point of the unit cube names (edges first, then SETTINGS in order)."""
        n_edges = len(nb201.STRING_EDGES)
        ops = [nb201.OPS[min(int(x * len(nb201.OPS)), len(nb201.OPS) - 1)] for x in u[:n_edges]]
        values = {}
        for name, x in zip(SETTINGS, u[n_edges:]):
            dim = _DIMS[name]
            if dim.choices is not None:
                values[name] = dim.choices[min(int(x * len(dim.choices)), len(dim.choices) - 1)]
            else:
                lo, hi = math.log10(dim.low), math.log10(dim.high)
                values[name] = min(max(_round(10 ** (lo + x * (hi - lo))), dim.low), dim.high)
        return _checked(nb201.to_arch_str(ops), values, self.name)

    def design(self, n: int, seed: int = 0) -> list[JointConfig]:
        """``n`` distinct configurations from a Latin hypercube over every dimension (6 edges and 9
        settings): each edge op, each categorical value and each tenth of a log range gets its
        share of the sample, so a campaign spans cheap and costly, good and broken settings."""
        from scipy.stats import qmc

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"design size must be an integer >= 1, got {n!r}")
        sampler = qmc.LatinHypercube(d=len(nb201.STRING_EDGES) + len(SETTINGS), seed=seed)
        out, seen = [], set()
        while len(out) < n:
            for point in sampler.random(n - len(out)):
                config = self._from_unit(point)
                key = self.canonical_key(config)
                if key not in seen:
                    seen.add(key)
                    out.append(config)
        return out

    def neighbours(self, arch: object, subset: Collection[str] | None = None) -> list[JointConfig]:
        """One edit away: one edge's op changed (NB201's 24), one categorical setting changed, or
        lr / weight decay one log step (a quarter decade) up or down."""
        config = self.arch(arch)
        out = [replace(config, cell=c) for c in nb201.NasBench201().neighbours(config.cell)]
        for name in SETTINGS:
            dim, value = _DIMS[name], getattr(config, name)
            if dim.choices is not None:
                out += [replace(config, **{name: v}) for v in dim.choices if v != value]
            else:
                for step in (-LOG_STEP, LOG_STEP):
                    moved = _round(value * 10 ** step)
                    if dim.low <= moved <= dim.high:
                        out.append(replace(config, **{name: moved}))
        if subset is not None:
            out = [c for c in out if self.canonical_key(c) in subset]
        return out

    def mutate(self, arch: object, rng, subset: Collection[str] | None = None) -> JointConfig:
        """A random neighbour; inside ``subset`` (a measured table's configurations, sparse in a
        continuous space) the subset member closest to a random neighbour (:meth:`distance`)."""
        config = self.arch(arch)
        options = self.neighbours(config)
        proposal = options[int(rng.integers(len(options)))]
        if subset is None:
            return proposal
        own = self.canonical_key(config)
        keys, d = _distances(proposal, subset, own)
        return self.decode(keys[int(np.argmin(d))])  # the first of the closest, in key order

    def nearest(self, arch: object, subset: Collection[str] | None = None, max_edits: int = 4) -> list[JointConfig]:
        if subset is None:
            return self.neighbours(arch)
        config = self.arch(arch)
        keys, d = _distances(config, subset, self.canonical_key(config))
        return [self.decode(keys[i]) for i in np.flatnonzero(d == d.min())]

    def distance(self, a: JointConfig, b: JointConfig) -> float:
        """Edits between two configurations: differing edges and categorical settings count 1,
        lr and weight decay their distance in log steps."""
        return float(_edits(_coded(a), _coded(b)[None, :])[0])

    def stratum(self, arch: object) -> tuple:
        config = self.arch(arch)
        return (*nb201.NasBench201().stratum(config.cell), config.N, config.W, config.resolution)

    # ------------------------------------------------------------------ training
    def build_network(self, arch: object, num_classes: int, **settings: int):
        from ecnas_plugin.networks import build_nb201

        if settings:
            raise InvalidConfiguration(f"{self.name} network setting", sorted(settings)[0],
                                       "N and W are hyperparameters of the configuration, not campaign settings")
        config = self.arch(arch)
        return build_nb201(config.cell, C=config.W, N=config.N, num_classes=num_classes, activation=config.activation)

    def training_settings(self, arch: object) -> dict[str, Any]:
        config = self.arch(arch)
        return {"lr": config.lr, "optimizer": config.optimizer, "weight_decay": config.weight_decay,
                "schedule": config.schedule, "augment": config.augment == "on", "resolution": config.resolution,
                "grad_clip": GRAD_CLIP, "skip_nonfinite": True}

    # ------------------------------------------------------------------ surrogate features
    def features(self, archs: Sequence[object]) -> tuple[Any, list[str]]:
        """NB201's cell features (edge one-hots, log params, log FLOPs of the configured network
        at its resolution), then log10 lr, log10 weight decay, N, W, resolution, augment and the
        one-hots of activation, optimizer and schedule."""

        from ecnas_plugin.energy.surrogates.features import nb201_counts, nb201_feature_names, nb201_features

        configs = [self.arch(a) for a in archs]
        cell_names = nb201_feature_names()
        categorical = [(n, _DIMS[n].choices) for n in ("activation", "optimizer", "schedule")]
        names = (cell_names + ["log10_lr", "log10_weight_decay", "N", "W", "resolution", "augment"]
                 + [f"{n}_{v}" for n, choices in categorical for v in choices])
        if not configs:
            return np.zeros((0, len(names)), np.float32), names
        X = np.asarray(nb201_features([c.cell for c in configs]), np.float64)
        op_index = np.array([[nb201.OPS.index(o) for o in nb201.parse_arch_str(c.cell)] for c in configs])
        for i, c in enumerate(configs):  # params and FLOPs of this configuration's network
            counts = nb201_counts(op_index[i:i + 1], C=c.W, N=c.N, num_classes=17)
            X[i, len(cell_names) - 2] = math.log(counts["params"][0])
            X[i, len(cell_names) - 1] = math.log(counts["flops"][0] * (c.resolution / 32) ** 2)
        extra = np.array([[math.log10(c.lr), math.log10(c.weight_decay), c.N, c.W, c.resolution,
                           float(c.augment == "on")]
                          + [float(getattr(c, n) == v) for n, choices in categorical for v in choices]
                          for c in configs])
        return np.concatenate([X, extra], axis=1).astype(np.float32), names


# Distances as arrays: a configuration coded as its 6 edge ops and categorical settings (compared
# for equality) and its log-scale settings in log steps (compared by absolute difference), so a
# move inside a 610-configuration table costs one vectorised pass, not 610 Python distances.
_DISCRETE = 6 + sum(_DIMS[n].choices is not None for n in SETTINGS)


def _coded(config: JointConfig) -> np.ndarray:
    discrete = [nb201.OPS.index(op) for op in _ops(config.cell)]
    discrete += [_DIMS[n].choices.index(getattr(config, n)) for n in SETTINGS if _DIMS[n].choices is not None]
    logs = [math.log10(getattr(config, n)) / LOG_STEP for n in SETTINGS if _DIMS[n].choices is None]
    return np.array(discrete + logs, dtype=float)


def _edits(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return ((rows[:, :_DISCRETE] != a[:_DISCRETE]).sum(1)
            + np.abs(rows[:, _DISCRETE:] - a[_DISCRETE:]).sum(1))


@lru_cache(maxsize=8)
def _coded_subset(subset: frozenset[str]) -> tuple[list[str], np.ndarray]:
    keys = sorted(subset)
    return keys, np.array([_coded(_decode(k)) for k in keys])


def _distances(config: JointConfig, subset: Collection[str], own: str) -> tuple[list[str], np.ndarray]:
    """The subset's keys other than ``own`` (in key order) and their distances to ``config``."""
    keys, rows = _coded_subset(subset if isinstance(subset, frozenset) else frozenset(subset))
    d = _edits(_coded(config), rows)
    keep = np.array([k != own for k in keys])
    if not keep.any():
        raise InvalidArchitecture("no-neighbour", "the subset holds no other configuration of nb201-joint", own)
    return [k for k, ok in zip(keys, keep) if ok], d[keep]


@lru_cache(maxsize=15625)  # every NB201 cell
def _ops(cell: str) -> tuple[str, ...]:
    return nb201.parse_arch_str(cell)


@lru_cache(maxsize=65536)
def _decode(key: str) -> JointConfig:
    """The configuration a key names (JointConfig is frozen: one object may serve every caller)."""
    return Nb201Joint().parse_arch(key)


# The project's own measurements of this space, shipped in the package (parquet + manifest).
TABLE_NAME = "nb201-joint-flowers17-cpu"
TABLE_DIR = Path(__file__).resolve().parents[1] / "data" / TABLE_NAME
REBUILD = (f"ecnas measure nb201-joint --name {TABLE_NAME} --sample 610 --sample-seed 0 --epochs 10 --threads 1 "
           f"--out DIR  (then load DIR/table)")


def _shipped_table(paths: Mapping[str, Path]):
    from ecnas_plugin.table import EnergyTable

    return EnergyTable.load(TABLE_DIR)  # checksums and schema verified; parquet + JSON run no code


@hookimpl
def ecnas_search_spaces():
    return [Nb201Joint()]


@hookimpl
def ecnas_tables():
    from ecnas_plugin.table import TableSpec

    return [TableSpec(
        name=TABLE_NAME, space="nb201-joint",
        description=("610 joint configurations (Latin hypercube over every dimension) trained 10 epochs on "
                     "Flowers-17 on a 2-core CPU, full curves; energy ESTIMATED by codecarbon's power model "
                     f"(no RAPL there), not measured. Rebuild: {REBUILD}"),
        data_files=(), build=_shipped_table)]
