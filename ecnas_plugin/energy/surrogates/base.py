"""The surrogate plugin contract: :class:`Surrogate`, base class of every ``ecnas_surrogates`` model.

Light on purpose (numpy only): the registry checks plugins against this class, so importing it
must not pull in an implementation (LightGBM, torch) or the rest of the surrogate package.

A surrogate is a K-fold ensemble: member k is trained without fold k, so each training cell has an
out-of-fold prediction. A prediction is ``(mean, sd)`` in Wh (targets are given in Wh too).

The σ (``calibration["method"] == "log-distance"``, :meth:`Surrogate.fit_sd`): energy errors are
multiplicative (energy = time × power, both off by a few percent), so the σ is relative to the
prediction, and it grows with the distance from the training cells:

    sd = mean × scale × sqrt(a + b·D(x)² + J(x)²)

``J`` is the delete-a-fold jackknife sd of the log ensemble mean (sqrt(K - 1) × the members' sd:
members trained on different folds disagree off the training data); ``D`` the mean Euclidean
distance to the ``sd_neighbours`` nearest training cells in standardised features (a feature
(nearly) constant in training is measured in units of ``sd_floor`` of its magnitude: a value the
model never saw varied is far). ``a`` and ``b`` are fitted by maximum likelihood (normal log
residuals, J² as a known part of the variance) to residuals of cells the model did not see: the
out-of-fold cells (near the training data) and extrapolation folds, each holding out one tail
(``sd_tail_fraction``) of one of the first ``sd_tail_components`` principal components of the
standardised features, or of the energy itself (``sd_target_tails``: beyond the largest and below
the smallest energies trained on). ``scale`` then makes ±2σ hold ``sd_coverage`` of those
residuals (they are heavier-tailed than normal: ±1σ then holds more than 68%).
Extrapolation-fold members are used for the calibration only; the stored members are the K-fold
ones, so the σ method does not move a mean prediction. Models saved before (a constant
``noise_var_wh2``) still load and predict as they did.

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
TWO_SIGMA = 0.9544997361036416  # share inside ±2σ
SD_METHOD = "log-distance"
SD_FILE = "sd_reference.json"  # the standardised training cells D is measured from


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
    # The σ's settings (see the module docstring); an instance may set its own before fit.
    sd_neighbours: ClassVar[int] = 5
    sd_tail_components: ClassVar[int] = 3
    sd_tail_fraction: ClassVar[float] = 0.15
    sd_coverage: ClassVar[float] = TWO_SIGMA
    sd_floor: ClassVar[float] = 0.01
    sd_target_tails: ClassVar[bool] = True  # also hold out the most and the least energy-hungry cells
    sd_tail_min_cells: ClassVar[int] = 20  # fewer training cells: out-of-fold residuals only

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
        self.calibration: dict[str, Any] = {}
        self.reference: dict[str, np.ndarray] = {}  # "center", "scale", "points" (standardised training cells)

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: np.ndarray, y: np.ndarray) -> Surrogate:
        """Train ``folds`` members on K-fold splits of (X, y Wh) and calibrate the σ."""
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.float64)
        if len(X) != len(y) or len(y) < 2 * self.folds:
            raise ValueError(f"need at least {2 * self.folds} cells with one target each, got X {X.shape}, y {y.shape}")
        if not np.isfinite(y).all() or (y <= 0).any():
            raise ValueError("targets must be positive, finite energies (Wh)")
        fold = self._folds(len(y))
        self.members = []
        oof = np.empty(len(y))
        for k in range(self.folds):
            train = fold != k
            member = self._fit_member(X[train], y[train], seed=self.seed * 1000 + k)
            self.members.append(member)
            oof[~train] = self._predict_members([member], X[~train])[0]
        return self.fit_sd(X, y, oof)

    def _folds(self, n: int) -> np.ndarray:
        """Fold of each of ``n`` training cells (fixed by the seed)."""
        return np.random.default_rng(self.seed).permutation(n) % self.folds

    # ------------------------------------------------------------------ σ
    def fit_sd(self, X: np.ndarray, y: np.ndarray, oof: np.ndarray | None = None) -> Surrogate:
        """Calibrate the σ on the training cells (X, y Wh) of the fitted members; see the module
        docstring. ``oof``: the out-of-fold predictions, recomputed from the members when not given
        (so a loaded model can be recalibrated without moving its mean predictions)."""
        X = np.asarray(X, np.float32)
        y = np.asarray(y, np.float64)
        fold = self._folds(len(y))
        if oof is None:
            oof = np.empty(len(y))
            for k, member in enumerate(self.members):
                oof[fold == k] = self._predict_members([member], X[fold == k])[0]
        center = X.astype(np.float64).mean(axis=0)
        scale = X.astype(np.float64).std(axis=0)
        scale = np.maximum(scale, self.sd_floor * np.maximum(np.abs(center), 1.0))
        # rounded as the JSON file keeps them, so a loaded model predicts exactly what this one does
        points = np.round((X - center) / scale, 6)
        self.reference = {"center": center, "scale": scale, "points": points}
        k = self._neighbours(len(points))
        spread = self._log_spread(X)
        resid, dist, offset = [np.log(y / np.maximum(oof, 1e-9))], [], [spread**2]
        d = np.empty(len(y))
        for f in range(self.folds):
            d[fold == f] = _knn_distance(points[fold != f], points[fold == f], k)
        dist.append(d)
        tails = 0
        if len(y) >= self.sd_tail_min_cells and self.sd_tail_components > 0:
            centred = points - points.mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            directions = [centred @ vt[c] for c in range(min(self.sd_tail_components, len(vt)))]
            if self.sd_target_tails:
                directions.append(np.log(y))
            for score in directions:
                for side in (1.0, -1.0):
                    held = side * score >= np.quantile(side * score, 1.0 - self.sd_tail_fraction)
                    if held.all() or held.sum() < 2:
                        continue
                    member = self._fit_member(X[~held], y[~held], seed=self.seed * 1000 + 500 + tails)
                    pred = self._predict_members([member], X[held])[0]
                    resid.append(np.log(y[held] / np.maximum(pred, 1e-9)))
                    dist.append(_knn_distance(points[~held], points[held], k))
                    offset.append(spread[held] ** 2)
                    tails += 1
        r, D, c = np.concatenate(resid), np.concatenate(dist), np.concatenate(offset)
        a, b = _fit_variance(r, D**2, c)
        z = np.abs(r) / np.sqrt(a + b * D**2 + c)
        s = float(np.quantile(z, self.sd_coverage) / 2.0)
        n_oof = len(y)
        self.calibration = {
            "method": SD_METHOD, "a": a, "b": b, "scale": s, "neighbours": k, "floor": self.sd_floor,
            "tail_components": self.sd_tail_components, "target_tails": bool(self.sd_target_tails),
            "tail_fraction": self.sd_tail_fraction,
            "tail_folds": tails, "coverage_target_2sd": self.sd_coverage,
            "oof_mae_wh": float(np.mean(np.abs(y - oof))),
            # shares of the calibration residuals inside ±1σ / ±2σ (z <= k·scale)
            "cv_within_1sd": {"out_of_fold": float(np.mean(z[:n_oof] <= s)),
                              "extrapolation": float(np.mean(z[n_oof:] <= s)) if tails else None},
            "cv_within_2sd": {"out_of_fold": float(np.mean(z[:n_oof] <= 2 * s)),
                              "extrapolation": float(np.mean(z[n_oof:] <= 2 * s)) if tails else None},
        }
        return self

    def _neighbours(self, n_points: int) -> int:
        return max(1, min(int(self.sd_neighbours), n_points - 1))

    def _log_spread(self, X: np.ndarray) -> np.ndarray:
        """Delete-a-fold jackknife sd of the log ensemble mean: sqrt(K - 1) × the members' sd."""
        preds = self._predict_members(self.members, np.asarray(X, np.float32))
        return _jackknife(preds)

    def distance(self, X: np.ndarray) -> np.ndarray:
        """D: mean distance of each row of X to its nearest training cells (standardised features)."""
        ref = self.reference
        if not ref:
            raise RuntimeError(f"surrogate {self.name!r} has no σ reference (fit it, or load it with its files)")
        Z = (np.asarray(X, np.float64) - ref["center"]) / ref["scale"]
        return _knn_distance(ref["points"], Z, int(self.calibration["neighbours"]))

    def _ensemble(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = self._predict_members(self.members, np.asarray(X, np.float32))
        return preds.mean(axis=0), preds.std(axis=0)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sd) in Wh for every row of X."""
        if not self.members:
            raise RuntimeError(f"surrogate {self.name!r} is not fitted")
        X = np.asarray(X, np.float32)
        preds = self._predict_members(self.members, X)
        mean = preds.mean(axis=0)
        c = self.calibration
        if c.get("method") == SD_METHOD:
            spread = _jackknife(preds)
            D = self.distance(X)
            sd = np.maximum(mean, 0.0) * c["scale"] * np.sqrt(c["a"] + c["b"] * D**2 + spread**2)
        else:  # saved before the σ grew with distance: a constant noise term in Wh
            sd = c["sd_scale"] * np.sqrt(preds.std(axis=0) ** 2 + c["noise_var_wh2"])
        return np.maximum(mean, 0.0), sd

    def sd_files(self) -> dict[str, bytes]:
        """File name → bytes of the σ reference (JSON, no pickle); empty for a model without one."""
        if not self.reference:
            return {}
        import json

        ref = self.reference
        return {SD_FILE: json.dumps({"center": ref["center"].tolist(), "scale": ref["scale"].tolist(),
                                     "points": ref["points"].tolist()}, separators=(",", ":")).encode()}

    def load_sd_files(self, files: dict[str, bytes], n_inputs: int) -> None:
        """Inverse of :meth:`sd_files` (a model calibrated by ``log-distance`` needs its file)."""
        if self.calibration.get("method") != SD_METHOD:
            return
        import json

        if SD_FILE not in files:
            raise ValueError(f"σ calibration {SD_METHOD!r} needs {SD_FILE}, which the model's files lack")
        data = json.loads(files[SD_FILE])
        ref = {k: np.asarray(data[k], np.float64) for k in ("center", "scale", "points")}
        if ref["center"].shape != (n_inputs,) or ref["points"].ndim != 2 or ref["points"].shape[1] != n_inputs:
            raise ValueError(f"{SD_FILE} holds {ref['points'].shape} points for {n_inputs} features")
        self.reference = ref

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


def _jackknife(preds: np.ndarray) -> np.ndarray:
    """sqrt(K - 1) × the sd over K member predictions of log energy: the delete-a-fold jackknife
    estimate of the ensemble's own error, which grows where members trained on different folds
    disagree (off the training data)."""
    k = len(preds)
    return np.sqrt(max(k - 1, 1)) * np.log(np.maximum(preds, 1e-9)).std(axis=0)


def _knn_distance(points: np.ndarray, queries: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest rows of ``points``."""
    points = np.asarray(points, np.float64)
    queries = np.asarray(queries, np.float64)
    out = np.empty(len(queries))
    if len(points) == 0:
        out[:] = np.inf
        return out
    k = max(1, min(k, len(points)))
    p2 = (points**2).sum(axis=1)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        d2 = np.maximum((q**2).sum(axis=1)[:, None] + p2[None, :] - 2.0 * q @ points.T, 0.0)
        near = np.partition(d2, k - 1, axis=1)[:, :k] if k < len(points) else d2
        out[start:start + chunk] = np.sqrt(near).mean(axis=1)
    return out


def _fit_variance(r: np.ndarray, d2: np.ndarray, offset: np.ndarray) -> tuple[float, float]:
    """(a, b) >= 0 maximising the normal likelihood of residuals r with variance a + b·d2 + offset
    (a grid search: the likelihood is smooth and two-dimensional)."""
    var = max(float(np.mean(r**2)), 1e-12)
    mean_d2 = max(float(np.mean(d2)), 1e-12)
    a_grid = var * np.geomspace(1e-3, 2.0, 60)
    b_grid = np.concatenate([[0.0], var / mean_d2 * np.geomspace(1e-4, 1e2, 80)])
    best = (np.inf, var, 0.0)
    for a in a_grid:
        v = a + b_grid[:, None] * d2[None, :] + offset[None, :]
        nll = (np.log(v) + r[None, :] ** 2 / v).sum(axis=1)
        j = int(np.argmin(nll))
        if nll[j] < best[0]:
            best = (float(nll[j]), float(a), float(b_grid[j]))
    return best[1], best[2]


class CurveSurrogate(ABC):
    """Base class of every learning-curve surrogate plugin (``ecnas_curve_surrogates`` hook).

    A curve surrogate learns, from configurations measured along an epoch fidelity, the
    validation-accuracy curve and the training energy of any configuration at any epoch up to
    the training budget, each with a σ (None where the model has none).
    :class:`~ecnas_plugin.energy.surrogates.curves.CurvePredictor` holds one with its context.

    Inputs: ``X`` (n configurations × k features of the space), ``epochs`` (the E epochs of the
    curves, 1..budget), ``acc`` (n × E validation accuracy) and ``energy`` (n × E cumulative kWh).
    ``observes`` > 0: the model extrapolates a configuration's own first ``observes`` epochs (a
    parametric curve), so ``predict`` needs them (``observed_acc``/``observed_energy``).
    """

    name: ClassVar[str]
    observes: ClassVar[int] = 0
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, seed: int = 0, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            from ecnas_plugin.errors import UnknownName

            raise UnknownName(f"parameter of curve surrogate {self.name!r}", unknown[0], self.defaults)
        self.seed = seed
        self.params = {**self.defaults, **params}

    @abstractmethod
    def fit(self, X: np.ndarray, epochs: np.ndarray, acc: np.ndarray, energy: np.ndarray) -> CurveSurrogate:
        """Learn from n measured configurations; returns self."""

    @abstractmethod
    def predict(self, X: np.ndarray, epochs: np.ndarray, observed_acc: np.ndarray | None = None,
                observed_energy: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
        """``{"acc", "acc_sd", "energy_kwh", "energy_sd_kwh"}``, each n × len(epochs) (sd: None
        without a σ) at ``epochs`` (any within 1..the training budget)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model, as JSON-able values (no pickle)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> CurveSurrogate:
        """The model :meth:`state` describes."""
