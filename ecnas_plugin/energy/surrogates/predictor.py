"""Fit, save, load and predict: a surrogate bound to its space's features and to the data it learned from.

A :class:`Predictor` predicts the training energy of architectures of one search space for exactly
one (campaign, epoch budget, hardware, dataset): the one it was trained on. The space comes from
the training table's ``space`` column (then from the manifest) and is looked up in the registry;
features are the space's own (``space.features``; NB101 keeps its vectorised CellBatch path, see
``features.space_features``), and a space without the ``features`` capability is refused before
anything runs. Its output rows say what they speak for and are flagged ``source="predicted"``
with ``train_energy_sd_kwh``; a measured value never comes out of it. To speak for another
campaign, :meth:`Predictor.calibrate` fits a monotone map on a few of that campaign's measured
cells and relabels the output: campaigns never mix silently.

Storage (a folder, no pickle): ``manifest.json`` (format and schema version, the context with its
space, feature set label and feature names, model config and calibration, training-data checksum,
metrics, sha256 of every file) plus the model's own files (LightGBM text models ``*.txt``, JSON,
torch state_dict ``*.pt``). Loading refuses a model whose feature names or label differ from what
the space computes now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecnas_plugin.errors import DataFormatError, SchemaError, UnknownName
from ecnas_plugin.schema import DATA_SOURCES, SCHEMA_VERSION
from ecnas_plugin.version import __version__

from . import features as F
from .base import Surrogate

FORMAT = "ecnas-surrogate"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WH_PER_KWH = 1000.0
DEFAULT_DIR = Path(__file__).with_name("default")
TARGET = "train_energy_kwh"


def surrogate_classes() -> dict[str, type[Surrogate]]:
    """Surrogate classes by name: the built-ins plus any from ``ecnas_surrogates`` plugins."""
    from ecnas_plugin.registry import get_registry

    return dict(get_registry().items["surrogates"])


def training_checksum(keys: Sequence[str], energy_kwh: np.ndarray) -> str:
    """sha256 over the sorted (arch_key, energy repr) pairs the model was trained on."""
    lines = sorted(f"{k},{float(e)!r}" for k, e in zip(keys, energy_kwh))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class Context:
    """What a prediction speaks for: the training rows' campaign, budget, hardware, dataset."""

    campaign: str
    epochs: int
    hardware: str
    dataset: str
    space: str = "nasbench101"  # models saved before spaces were recorded were all NB101


def _single(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].unique().tolist()
    if len(values) != 1:
        raise SchemaError(f"training rows hold {len(values)} values of {column!r} ({sorted(map(str, values))}); "
                          f"a surrogate learns one {column} at a time: filter the rows first "
                          "(other campaigns are reached with Predictor.calibrate)", column=column)
    return values[0]


def space_of(name: str, flow: str, where: str = ""):
    """The registered space ``name``, refused by name unless it offers surrogate features."""
    from ecnas_plugin.registry import get_registry

    try:
        space = get_registry().space(name)
    except UnknownName:
        raise UnknownName("space", name, get_registry().items.get("spaces", {}),
                          context=where or f"needed by {flow}") from None
    space.require("features", flow=flow)
    return space


def _context(frame: pd.DataFrame) -> Context:
    """The one context rows speak for; refuses rows that mix campaigns, budgets, hardware, datasets."""
    return Context(campaign=_single(frame, "campaign"), epochs=int(_single(frame, "epochs")),
                   hardware=_single(frame, "hardware"), dataset=_single(frame, "dataset"),
                   space=_single(frame, "space"))


def measured_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured (or estimated) rows reduced to one per arch_key (mean over repeats), one context
    only. A surrogate learns one kind of energy: measured or estimated (a power model), never
    derived values (scaled, predicted) and never the two kinds mixed."""
    if "source" in frame:
        kinds = sorted(frame["source"].unique())
        derived = [k for k in kinds if k not in DATA_SOURCES]
        if derived:
            raise SchemaError(f"a surrogate trains on measured or estimated rows only; got source {derived}",
                              column="source")
        if len(kinds) > 1:
            raise SchemaError(f"training rows mix sources {kinds}: a surrogate learns measured or estimated "
                              "energies, not both (filter the rows first)", column="source")
    _context(frame)
    return frame.groupby("arch_key", sort=True, as_index=False)[TARGET].mean()


@dataclass
class Predictor:
    """A fitted surrogate plus the context and provenance it was trained for.

    ``feature_names`` are the columns the model was trained on (the space's feature names);
    ``feature_set`` their version label (``features.SpaceFeatures.label``).
    """

    model: Surrogate
    context: Context
    feature_set: str = F.FEATURE_SET
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # campaign map: log E' = a + b log E
    feature_names: list[str] | None = None
    _features: F.SpaceFeatures | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.feature_names is None:
            self.feature_names = self.features.names()
        if self.model.feature_names is None:
            self.model.feature_names = self.feature_names

    # ------------------------------------------------------------------ features
    @property
    def space(self):
        """The search space this predictor predicts (from the registry)."""
        return self.features.space

    @property
    def features(self) -> F.SpaceFeatures:
        if self._features is None:
            self._features = F.space_features(space_of(self.context.space, "ecnas surrogate predict"))
        return self._features

    def _check_features(self, names: Sequence[str], where: object = "this model") -> None:
        """Refuse features whose names or label differ from the ones the model was trained on."""
        names = list(names)
        label = self.features.label(names)
        if self.feature_names is None:
            self.feature_names = names
            self.model.feature_names = names
        if names != self.feature_names or label != self.feature_set:
            raise SchemaError(f"{where}: model uses feature set {self.feature_set!r} "
                              f"({len(self.feature_names or [])} features), space {self.context.space!r} now "
                              f"computes {label!r} ({len(names)} features; names differ: "
                              f"{names != self.feature_names}); retrain it (`ecnas surrogate fit`)")

    def _predict_rows(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean kWh, sd kWh) for feature rows; each distinct row is predicted once."""
        X = np.ascontiguousarray(X, np.float32)
        if len(X) == 0:
            return np.zeros(0), np.zeros(0)
        # Many cells share a feature row (NB101's features are labelling-invariant): predict each once.
        rows = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        mean, sd = self.model.predict(X[first])
        mean, sd = mean[inverse.ravel()], sd[inverse.ravel()]
        if self.calibration is not None:
            a, b = self.calibration["a"], self.calibration["b"]
            scaled = np.exp(a) * np.power(np.maximum(mean, 1e-9), b)
            sd = sd * b * scaled / np.maximum(mean, 1e-9) * self.calibration["sd_factor"]
            mean = scaled
        return mean / WH_PER_KWH, sd / WH_PER_KWH

    # ------------------------------------------------------------------ predict
    def predict_batch(self, batch: F.CellBatch) -> tuple[np.ndarray, np.ndarray]:
        """(mean kWh, sd kWh) for an NB101 CellBatch, vectorised (the fast path for many cells)."""
        if not isinstance(self.features, F.Nb101Features):
            raise SchemaError(f"predict_batch takes NB101 CellBatches; this model predicts space "
                              f"{self.context.space!r}: use predict_energy or predict_keys", column="space")
        self._check_features(F.nb101_feature_names())
        return self._predict_rows(F.nb101_features(batch))

    def predict_keys(self, keys: Sequence[str], index: F.CellIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean kWh, sd kWh) for the architectures a table's canonical keys name (NB101 hashes
        through ``index``, default every known cell)."""
        X, names = self.features.of_keys(list(keys), index)
        self._check_features(names)
        return self._predict_rows(X)

    def predict_energy(self, archs: Iterable[object] | F.CellBatch, index: F.CellIndex | None = None) -> pd.DataFrame:
        """Predicted training energy of architectures of the model's space, in any form the space
        accepts (NB101: Cells, (matrix, ops), dicts, module hashes or a CellBatch; NB201: arch
        strings, op names or NASLib op indices).

        Returns a DataFrame with the table's key columns, ``source="predicted"``,
        ``train_energy_kwh`` and ``train_energy_sd_kwh``. Raises InvalidArchitecture for an invalid
        architecture and UnknownName for an NB101 hash no known cell has (pass the cell itself then).
        """
        keys, X, names = self.features.of_archs(archs, index)
        self._check_features(names)
        mean, sd = self._predict_rows(X)
        c = self.context
        rows = pd.DataFrame({
            "space": c.space, "arch_key": keys, "dataset": c.dataset, "epochs": c.epochs,
            "hardware": c.hardware, "campaign": c.campaign, "repeat": 0, "source": "predicted",
            "train_energy_kwh": mean, "train_energy_sd_kwh": sd,
        })
        if self.training.get("energy_source") == "estimated":  # a prediction of an estimate says so
            rows["energy_method"] = "estimated"
        return rows

    # ------------------------------------------------------------------ campaigns
    def calibrate(self, measured: pd.DataFrame) -> Predictor:
        """A predictor for the campaign of ``measured`` (its measured rows, one context).

        Fits log E_measured = a + b log E_predicted on those cells (needs >= 10 cells) and labels
        every prediction with their campaign, budget and hardware. Ranks are unchanged (b > 0).
        """
        targets = measured_targets(measured)
        if len(targets) < 10:
            raise ValueError(f"calibration needs at least 10 measured cells, got {len(targets)}")
        ctx = _context(measured)
        if ctx.space != self.context.space:
            raise SchemaError(f"calibration rows are of space {ctx.space!r}; the model predicts "
                              f"{self.context.space!r}", column="space")
        mean, sd = replace(self, calibration=None).predict_keys(list(targets["arch_key"]))
        x, y = np.log(mean * WH_PER_KWH), np.log(targets[TARGET].to_numpy() * WH_PER_KWH)
        b, a = np.polyfit(x, y, 1)
        if b <= 0:
            raise ValueError(f"calibration to campaign {ctx.campaign!r} found no positive relation (slope {b:.3g})")
        resid = y - (a + b * x)
        rel_sd = float(np.std(resid))
        base_rel = float(np.median(sd / mean))
        cal = {"a": float(a), "b": float(b), "from_campaign": self.context.campaign, "cells": len(targets),
               "sd_factor": max(rel_sd / max(b * base_rel, 1e-12), 1.0)}
        return replace(self, context=ctx, calibration=cal)

    # ------------------------------------------------------------------ storage
    def save(self, folder: Path) -> Path:
        """Write manifest.json and the model files to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {**self.model.member_files(), **self.model.sd_files()}
        for name, data in files.items():
            (folder / name).write_bytes(data)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
            "feature_set": self.feature_set, "feature_names": list(self.feature_names or []),
            "model": self.model.config(), "context": self.context.__dict__, "calibration": self.calibration,
            "training": self.training, "metrics": self.metrics,
            "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ecnas_plugin_version": __version__,
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Predictor:
        """Read a saved predictor; refuses another format, schema version or feature set, naming why."""
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise DataFormatError(folder, None, f"not a surrogate folder: {MANIFEST_FILE} is missing")
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, exc.pos, f"manifest is not valid JSON: {exc.msg}") from None
        if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
            raise SchemaError(f"{path}: format {m.get('format')!r} v{m.get('format_version')!r} is not "
                              f"{FORMAT!r} v{FORMAT_VERSION}")
        if m.get("schema_version") != SCHEMA_VERSION:
            raise SchemaError(f"{path}: model was trained under table schema version {m.get('schema_version')!r}, "
                              f"this ecnas-plugin uses {SCHEMA_VERSION}; retrain it (`ecnas surrogate fit`)")
        context = Context(**m["context"])
        space = space_of(context.space, "ecnas surrogate predict", where=f"the space of the model in {path}")
        features = F.space_features(space)
        names = features.names()  # None: the space cannot say without an architecture; checked on use
        if names is not None and (m.get("feature_set") != features.label(names) or m.get("feature_names") != names):
            raise SchemaError(f"{path}: model uses feature set {m.get('feature_set')!r}, space {space.name!r} "
                              f"computes {features.label(names)!r} (feature names differ: "
                              f"{m.get('feature_names') != names}); retrain it (`ecnas surrogate fit`)")
        config = m["model"]
        classes = surrogate_classes()
        if config["name"] not in classes:
            raise UnknownName("surrogate model", config["name"], classes, context=f"named in {path}")
        files = {}
        for name, digest in m["files"].items():
            data = (folder / name).read_bytes() if (folder / name).is_file() else None
            if data is None:
                raise DataFormatError(folder / name, None, "model file named in the manifest is missing")
            if hashlib.sha256(data).hexdigest() != digest:
                raise DataFormatError(folder / name, None, "sha256 does not match the manifest")
            files[name] = data
        model = classes[config["name"]](folds=config["folds"], seed=config["seed"], **config["params"])
        model.feature_names = list(m["feature_names"])
        model.load_members(files, len(m["feature_names"]))
        model.calibration = dict(config["calibration"])
        model.load_sd_files(files, len(m["feature_names"]))
        predictor = cls(model=model, context=context, feature_set=m["feature_set"], training=m["training"],
                        metrics=m["metrics"], calibration=m["calibration"], feature_names=list(m["feature_names"]))
        predictor._features = features
        return predictor


def fit(frame: pd.DataFrame, model: str = "lightgbm", *, index: F.CellIndex | None = None,
        source_table: str = "", **params: Any) -> Predictor:
    """Train a surrogate on the measured rows of one context (space, campaign, budget, hardware, dataset).

    ``frame`` is an EnergyTable's frame (or a subset of its rows); its ``space`` column names the
    space, whose features the model learns from (a space without the ``features`` capability is
    refused here, before anything is trained). Architectures are found from their keys with
    ``space.decode``; NB101 hashes through ``index`` (default: every ≤5-vertex cell plus
    7v_data.pt's). Repeats are averaged.
    """
    classes = surrogate_classes()
    if model not in classes:
        raise UnknownName("surrogate model", model, classes)
    ctx = _context(frame)
    features = F.space_features(space_of(ctx.space, "ecnas surrogate fit"))
    targets = measured_targets(frame)
    keys = list(targets["arch_key"])
    surrogate = classes[model](**params)
    if len(keys) < 2 * surrogate.folds:
        raise SchemaError(f"a {surrogate.folds}-fold {model} surrogate needs at least {2 * surrogate.folds} measured "
                          f"cells; these rows have {len(keys)} (of {ctx.space}, campaign {ctx.campaign!r}, "
                          f"{ctx.epochs} epochs)", column="arch_key")
    X, names = features.of_keys(keys, index)
    surrogate.feature_names = names
    surrogate.fit(X, targets[TARGET].to_numpy() * WH_PER_KWH)
    training = {"table": source_table, "cells": len(targets), "rows": len(frame), "target": TARGET,
                # predictions of a model trained on estimates predict estimates: say so with them
                "energy_source": str(frame["source"].iloc[0]) if "source" in frame and len(frame) else "measured",
                "arch_keys": keys, "sha256": training_checksum(keys, targets[TARGET].to_numpy())}
    predictor = Predictor(model=surrogate, context=ctx, feature_set=features.label(names), training=training,
                          feature_names=names)
    predictor._features = features
    return predictor


_DEFAULT: Predictor | None = None


def default_predictor() -> Predictor:
    """The NB101 energy surrogate shipped with ecnas-plugin (trained on EC-NAS's measured 5v data)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Predictor.load(DEFAULT_DIR)
    return _DEFAULT


def predict_energy(archs: Iterable[object], predictor: Predictor | None = None) -> pd.DataFrame:
    """Predicted energy of architectures of the predictor's space (default: the shipped NB101
    surrogate, for NB101 cells or module hashes).

    Every row is ``source="predicted"`` with ``train_energy_sd_kwh``; see Predictor.predict_energy.
    """
    return (predictor or default_predictor()).predict_energy(archs)


def as_mapping(predictor: Predictor) -> Mapping[str, Any]:
    """A short JSON-ready description (for the CLI)."""
    training = {k: v for k, v in predictor.training.items() if k != "arch_keys"}
    return {"model": predictor.model.name, "context": predictor.context.__dict__,
            "training": training, "metrics": predictor.metrics, "calibration": predictor.calibration}
