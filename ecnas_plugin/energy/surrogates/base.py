"""The surrogate plugin contract: :class:`Surrogate`, base class of every ``ecnas_surrogates`` model.

Light on purpose (numpy only): the registry checks plugins against this class, so importing it
must not pull in an implementation (LightGBM, torch) or the rest of the surrogate package.

A surrogate is a K-fold ensemble: member k is trained without fold k, so each training cell has an
out-of-fold prediction. The members' spread is the model uncertainty; the out-of-fold residuals
give the noise variance and a scale factor that makes ±1σ hold ~68% of held-out values. A
prediction is ``(mean, sd)`` in Wh (targets are given in Wh too).

Inputs are the rows of a search space's ``features(archs)`` array; before fitting or loading, the
:class:`~ecnas_plugin.energy.surrogates.predictor.Predictor` sets ``feature_names`` (the space's
column names), so a model that treats columns differently (``AdditiveSurrogate``'s cost terms)
can pick them by name. Members are stored without pickle (:meth:`Surrogate.member_files`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

ONE_SIGMA = 0.6826894921370859  # share of a normal distribution inside ±1σ


class Surrogate(ABC):
    """Base class of every energy surrogate plugin (``ecnas_surrogates`` hook).

    Subclasses set ``name`` and implement ``_fit_member``, ``_predict_members`` and the
    member (de)serialisation; the K-fold ensemble and its calibration live here.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # Column names of the inputs (the space's features), set by the Predictor before fit/load;
    # None when a model is used on a bare array.
    feature_names: list[str] | None = None

    def __init__(self, folds: int = 5, seed: int = 0, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            from ecnas_plugin.errors import UnknownName  # errors is light, but only needed here

            raise UnknownName(f"parameter of surrogate {self.name!r}", unknown[0], self.defaults)
        if folds < 2:
            raise ValueError(f"folds must be >= 2 (members need out-of-fold cells), got {folds}")
        self.folds = folds
        self.seed = seed
        self.params = {**self.defaults, **params}
        self.members: list[Any] = []
        self.calibration: dict[str, float] = {}

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: np.ndarray, y: np.ndarray) -> Surrogate:
        """Train ``folds`` members on K-fold splits of (X, y Wh) and calibrate the σ."""
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.float64)
        if len(X) != len(y) or len(y) < 2 * self.folds:
            raise ValueError(f"need at least {2 * self.folds} cells with one target each, got X {X.shape}, y {y.shape}")
        if not np.isfinite(y).all() or (y <= 0).any():
            raise ValueError("targets must be positive, finite energies (Wh)")
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(len(y)) % self.folds
        self.members = []
        oof = np.empty(len(y))
        for k in range(self.folds):
            train = fold != k
            member = self._fit_member(X[train], y[train], seed=self.seed * 1000 + k)
            self.members.append(member)
            oof[~train] = self._predict_members([member], X[~train])[0]
        _, spread = self._ensemble(X)
        resid = y - oof
        # Members saw 1 - 1/K of the data; the noise is what their spread does not explain.
        noise_var = max(float(np.mean(resid**2) - np.mean(spread**2)), 0.0)
        sd = np.sqrt(spread**2 + noise_var)
        scale = float(np.quantile(np.abs(resid) / np.maximum(sd, 1e-12), ONE_SIGMA))
        self.calibration = {"noise_var_wh2": noise_var, "sd_scale": scale,
                            "oof_mae_wh": float(np.mean(np.abs(resid)))}
        return self

    def _ensemble(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = self._predict_members(self.members, np.asarray(X, np.float32))
        return preds.mean(axis=0), preds.std(axis=0)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sd) in Wh for every row of X."""
        if not self.members:
            raise RuntimeError(f"surrogate {self.name!r} is not fitted")
        mean, spread = self._ensemble(X)
        c = self.calibration
        sd = c["sd_scale"] * np.sqrt(spread**2 + c["noise_var_wh2"])
        return np.maximum(mean, 0.0), sd

    # ------------------------------------------------------------------ members
    @abstractmethod
    def _fit_member(self, X: np.ndarray, y: np.ndarray, seed: int) -> Any: ...

    @abstractmethod
    def _predict_members(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        """(members, N) predictions in Wh."""

    @abstractmethod
    def member_files(self) -> dict[str, bytes]:
        """File name → bytes for every member (no pickle)."""

    @abstractmethod
    def load_members(self, files: dict[str, bytes], n_inputs: int) -> None:
        """Inverse of :meth:`member_files`."""

    def config(self) -> dict[str, Any]:
        """JSON-ready description: name, folds, seed, params, calibration."""
        return {"name": self.name, "folds": self.folds, "seed": self.seed, "params": dict(self.params),
                "calibration": dict(self.calibration)}
