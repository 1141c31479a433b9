"""Fit, save, load and predict: a surrogate bound to its features and to the data it learned from.

A :class:`Predictor` predicts the training energy of NB101 cells for exactly one (campaign,
epoch budget, hardware, dataset): the one it was trained on. Its output rows say so and are
flagged ``source="predicted"`` with ``train_energy_sd_kwh``; a measured value never comes out of
it. To speak for another campaign, :meth:`Predictor.calibrate` fits a monotone map on a few of that
campaign's measured cells and relabels the output: campaigns never mix silently.

Storage (a folder, no pickle): ``manifest.json`` (format and schema version, feature set and
names, model config and calibration, training-data checksum, metrics, sha256 of every file) plus
the model's own files (LightGBM text models ``*.txt``, torch state_dict ``*.pt``).
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

from ecnas_plugin.version import __version__
from ecnas_plugin.errors import DataFormatError, SchemaError, UnknownName
from ecnas_plugin.schema import SCHEMA_VERSION

from . import features as F
from .models import Surrogate

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
    space: str = "nasbench101"


def _single(frame: pd.DataFrame, column: str) -> Any:
    values = frame[column].unique().tolist()
    if len(values) != 1:
        raise SchemaError(f"training rows hold {len(values)} values of {column!r} ({sorted(map(str, values))}); "
                          f"a surrogate learns one {column} at a time: filter the rows first "
                          "(other campaigns are reached with Predictor.calibrate)", column=column)
    return values[0]


def _context(frame: pd.DataFrame) -> Context:
    """The one context rows speak for; refuses rows that mix campaigns, budgets, hardware, datasets."""
    return Context(campaign=_single(frame, "campaign"), epochs=int(_single(frame, "epochs")),
                   hardware=_single(frame, "hardware"), dataset=_single(frame, "dataset"),
                   space=_single(frame, "space"))


def measured_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured rows reduced to one per arch_key (mean over repeats), one context only."""
    if "source" in frame and (frame["source"] != "measured").any():
        bad = sorted(frame.loc[frame["source"] != "measured", "source"].unique())
        raise SchemaError(f"a surrogate trains on measured rows only; got source {bad}", column="source")
    _context(frame)
    return frame.groupby("arch_key", sort=True, as_index=False)[TARGET].mean()


@dataclass
class Predictor:
    """A fitted surrogate plus the context and provenance it was trained for."""

    model: Surrogate
    context: Context
    feature_set: str = F.FEATURE_SET
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # campaign map: log E' = a + b log E

    # ------------------------------------------------------------------ predict
    def predict_batch(self, batch: F.CellBatch) -> tuple[np.ndarray, np.ndarray]:
        """(mean kWh, sd kWh) for a CellBatch, vectorised (the fast path for many cells)."""
        X = F.nb101_features(batch)
        # Many cells share a feature row (features are labelling-invariant): predict each row once.
        rows = np.ascontiguousarray(X).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
        _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        mean, sd = self.model.predict(X[first])
        mean, sd = mean[inverse.ravel()], sd[inverse.ravel()]
        if self.calibration is not None:
            a, b = self.calibration["a"], self.calibration["b"]
            scaled = np.exp(a) * np.power(np.maximum(mean, 1e-9), b)
            sd = sd * b * scaled / np.maximum(mean, 1e-9) * self.calibration["sd_factor"]
            mean = scaled
        return mean / WH_PER_KWH, sd / WH_PER_KWH

    def predict_energy(self, archs: Iterable[object] | F.CellBatch, index: F.CellIndex | None = None) -> pd.DataFrame:
        """Predicted training energy of NB101 cells (Cells, (matrix, ops), dicts or module hashes).

        Returns a DataFrame with the table's key columns, ``source="predicted"``,
        ``train_energy_kwh`` and ``train_energy_sd_kwh``. Raises InvalidArchitecture for an invalid
        cell and UnknownName for a hash no known cell has (pass the cell itself then).
        """
        if isinstance(archs, F.CellBatch):
            batch = archs
            keys = batch.keys()
        else:
            items = list(archs)
            cells = []
            for a in items:
                if isinstance(a, str):
                    from ecnas_plugin.adapters.nasbench101 import NasBench101

                    key = NasBench101().canonical_key(a)  # validates the hash form
                    cells.append((index or F.default_cell_index()).cell(key))
                else:
                    cells.append(a)
            batch = F.CellBatch.from_cells(cells)
            keys = batch.keys()
        mean, sd = self.predict_batch(batch)
        c = self.context
        return pd.DataFrame({
            "space": c.space, "arch_key": keys, "dataset": c.dataset, "epochs": c.epochs,
            "hardware": c.hardware, "campaign": c.campaign, "repeat": 0, "source": "predicted",
            "train_energy_kwh": mean, "train_energy_sd_kwh": sd,
        })

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
        base = replace(self, calibration=None)
        pred = base.predict_energy(list(targets["arch_key"]))
        x, y = np.log(pred[TARGET].to_numpy() * WH_PER_KWH), np.log(targets[TARGET].to_numpy() * WH_PER_KWH)
        b, a = np.polyfit(x, y, 1)
        if b <= 0:
            raise ValueError(f"calibration to campaign {ctx.campaign!r} found no positive relation (slope {b:.3g})")
        resid = y - (a + b * x)
        rel_sd = float(np.std(resid))
        base_rel = float(np.median(pred["train_energy_sd_kwh"] / pred[TARGET]))
        cal = {"a": float(a), "b": float(b), "from_campaign": self.context.campaign, "cells": len(targets),
               "sd_factor": max(rel_sd / max(b * base_rel, 1e-12), 1.0)}
        return replace(self, context=ctx, calibration=cal)

    # ------------------------------------------------------------------ storage
    def save(self, folder: Path) -> Path:
        """Write manifest.json and the model files to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = self.model.member_files()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
            "feature_set": self.feature_set, "feature_names": F.nb101_feature_names(),
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
        if m.get("feature_set") != F.FEATURE_SET or m.get("feature_names") != F.nb101_feature_names():
            raise SchemaError(f"{path}: model uses feature set {m.get('feature_set')!r}, this ecnas-plugin computes "
                              f"{F.FEATURE_SET!r} (feature names differ); retrain it (`ecnas surrogate fit`)")
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
        model.load_members(files, len(m["feature_names"]))
        model.calibration = dict(config["calibration"])
        return cls(model=model, context=Context(**m["context"]), feature_set=m["feature_set"],
                   training=m["training"], metrics=m["metrics"], calibration=m["calibration"])


def fit(frame: pd.DataFrame, model: str = "lightgbm", *, index: F.CellIndex | None = None,
        source_table: str = "", **params: Any) -> Predictor:
    """Train a surrogate on the measured rows of one context (campaign, budget, hardware, dataset).

    ``frame`` is an EnergyTable's frame (or a subset of its rows); cells are found from their hash
    through ``index`` (default: every ≤5-vertex cell plus 7v_data.pt's). Repeats are averaged.
    """
    classes = surrogate_classes()
    if model not in classes:
        raise UnknownName("surrogate model", model, classes)
    targets = measured_targets(frame)
    ctx = _context(frame)
    if ctx.space != "nasbench101":
        raise UnknownName("surrogate search space", ctx.space, ["nasbench101"])
    batch = (index or F.default_cell_index()).batch(list(targets["arch_key"]))
    y = targets[TARGET].to_numpy() * WH_PER_KWH
    surrogate = classes[model](**params).fit(F.nb101_features(batch), y)
    training = {"table": source_table, "cells": len(targets), "rows": len(frame), "target": TARGET,
                "arch_keys": list(targets["arch_key"]), "sha256": training_checksum(list(targets["arch_key"]), targets[TARGET].to_numpy())}
    return Predictor(model=surrogate, context=ctx, training=training)


_DEFAULT: Predictor | None = None


def default_predictor() -> Predictor:
    """The NB101 energy surrogate shipped with ecnas-plugin (trained on EC-NAS's measured 5v data)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Predictor.load(DEFAULT_DIR)
    return _DEFAULT


def predict_energy(archs: Iterable[object], predictor: Predictor | None = None) -> pd.DataFrame:
    """Predicted energy of NB101 cells or module hashes with the shipped (or given) surrogate.

    Every row is ``source="predicted"`` with ``train_energy_sd_kwh``; see Predictor.predict_energy.
    """
    return (predictor or default_predictor()).predict_energy(archs)


def as_mapping(predictor: Predictor) -> Mapping[str, Any]:
    """A short JSON-ready description (for the CLI)."""
    training = {k: v for k, v in predictor.training.items() if k != "arch_keys"}
    return {"model": predictor.model.name, "context": predictor.context.__dict__,
            "training": training, "metrics": predictor.metrics, "calibration": predictor.calibration}
