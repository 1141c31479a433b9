"""Learning-curve surrogates: the validation-accuracy curve and the energy of a configuration at
any epoch up to a table's budget, each with a σ, for spaces measured along the epoch fidelity
(the joint NB201 x hyperparameter space; any table whose checkpoints hold every epoch).

Three models (``ecnas_curve_surrogates`` plugins; :data:`BUILTIN_CURVE_SURROGATES`):

- ``bezier`` (EA-HAS-Bench's idea, written here): each measured curve, as points (epoch / budget,
  accuracy), is a Bézier curve whose control points are fitted by least squares at chord-length
  parameters; a K-fold LightGBM ensemble predicts the control points from the configuration's
  features, so one prediction gives the whole curve. The degree is the one whose out-of-fold
  curves are closest (RMSE) to the measured ones among ``degrees``. Energy: a K-fold ensemble of
  log energy per epoch, times the epochs.
- ``gbm-epoch`` (JAHS-Bench-201's approach): one LightGBM with the epoch as an input, for
  accuracy and for log cumulative energy.
- ``pow3``: a parametric curve ``c - a * epoch^-alpha`` fitted to the configuration's own first
  ``observes`` epochs and extrapolated; energy extrapolated linearly from those epochs. It must
  see the start of every curve it predicts, and has no σ.

σ (bezier, gbm-epoch): ``scale * sqrt(a + b·D²)``, D the mean distance to the 5 nearest training
configurations in standardised features (so σ widens away from what the model learnt from), ``a,
b`` fitted by maximum likelihood on out-of-fold residuals (D of an out-of-fold configuration is
to its fold's training side), ``scale`` making ±2σ hold 95.45% of them; accuracy σ per epoch of
the curve (errors grow along it), energy σ relative (on log energy). The members' disagreement
is left out on purpose (see ``_Sd``).

:class:`CurvePredictor` ties a model to its context (space, campaign, dataset, hardware, budget,
feature set) and saves it as one JSON file (LightGBM boosters as their text form; no pickle);
loading refuses another format version or a space whose features changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import TWO_SIGMA, CurveSurrogate, _fit_variance, _knn_distance

CURVE_FORMAT = 1
MODEL_FILE = "curve_model.json"
SD_NEIGHBOURS = 5


# ====================================================================== measured curves
@dataclass
class Curves:
    """Measured curves of n configurations over epochs 1..budget (repeats averaged)."""

    keys: list[str]
    epochs: np.ndarray  # (E,) 1..budget
    acc: np.ndarray  # (n, E) validation accuracy
    energy: np.ndarray  # (n, E) cumulative training energy, kWh
    test_acc: np.ndarray  # (n, E)

    def subset(self, index) -> Curves:
        index = np.asarray(index)
        return Curves([self.keys[i] for i in index], self.epochs, self.acc[index], self.energy[index],
                      self.test_acc[index])


def curves_of(table) -> Curves:
    """The curves of an EnergyTable with one budget whose checkpoints hold every epoch 1..budget
    with validation accuracy and energy. Refuses, naming the configuration, a curve with a gap."""
    from ecnas_plugin.errors import DataFormatError

    frame, cp = table.frame, table.checkpoints
    where = f"table {getattr(table, 'name', '?')!r}"
    if cp is None or len(cp) == 0:
        raise DataFormatError(where, None, "has no checkpoints: a curve surrogate learns from per-epoch values")
    budgets = sorted(frame["epochs"].unique())
    if len(budgets) != 1:
        raise DataFormatError(where, None, f"holds budgets {budgets}; give one (EnergyTable.slice(epochs=...))")
    budget = int(budgets[0])
    epochs = np.arange(1, budget + 1)
    cp = cp[(cp["epochs"] == budget) & (cp["epoch"] >= 1)]
    for column in ("val_acc", "energy_kwh"):
        if cp[column].isna().any():
            bad = cp.loc[cp[column].isna(), "arch_key"].iloc[0]
            raise DataFormatError(where, None, f"checkpoint column {column!r} is empty for {bad} (an energy-only "
                                               f"campaign has no curve to learn)")
    grouped = cp.groupby(["arch_key", "epoch"])[["val_acc", "test_acc", "energy_kwh"]].mean()
    keys = sorted(frame["arch_key"].unique())
    out = {c: np.empty((len(keys), budget)) for c in ("val_acc", "test_acc", "energy_kwh")}
    for i, key in enumerate(keys):
        try:
            rows = grouped.loc[key]
        except KeyError:
            raise DataFormatError(where, None, f"{key} has no checkpoints") from None
        have = sorted(int(e) for e in rows.index)
        if have != list(epochs):
            missing = sorted(int(e) for e in set(epochs) - set(have))
            raise DataFormatError(where, None, f"the curve of {key} misses epoch(s) {missing[:5]}")
        for c in out:
            out[c][i] = rows[c].to_numpy(float)
    return Curves(keys, epochs, out["val_acc"], out["energy_kwh"], out["test_acc"])


# ====================================================================== Bézier curves
def bernstein(t: np.ndarray, degree: int) -> np.ndarray:
    """(len(t), degree + 1) Bernstein basis at parameters t in [0, 1]."""
    t = np.asarray(t, float)[:, None]
    k = np.arange(degree + 1)[None, :]
    coef = np.array([math.comb(degree, int(i)) for i in k[0]])[None, :]
    return coef * t**k * (1 - t) ** (degree - k)


def chord_parameters(points: np.ndarray) -> np.ndarray:
    """Chord-length parameters of a polyline (m, 2): cumulative segment length over the total."""
    seg = np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=1))
    total = seg.sum()
    if total <= 0:
        return np.linspace(0.0, 1.0, len(points))
    return np.concatenate([[0.0], np.cumsum(seg) / total])


def fit_bezier(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Control points (degree + 1, 2) of the least-squares Bézier curve through (x, y) at
    chord-length parameters."""
    points = np.column_stack([x, y])
    if len(points) < degree + 1:
        raise ValueError(f"a degree-{degree} Bézier curve needs at least {degree + 1} points, got {len(points)}")
    basis = bernstein(chord_parameters(points), degree)
    ctrl, *_ = np.linalg.lstsq(basis, points, rcond=None)
    return ctrl


_GRID = np.linspace(0.0, 1.0, 257)


def eval_bezier(ctrl: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y of the Bézier curve ``ctrl`` at abscissae ``x`` (the curve sampled densely, its x made
    non-decreasing, then interpolated; outside its x range the end values hold)."""
    pts = bernstein(_GRID, len(ctrl) - 1) @ ctrl
    xs = np.maximum.accumulate(pts[:, 0])
    return np.interp(x, xs, pts[:, 1])


# ====================================================================== shared parts
def _lgb_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"objective": "l2", "num_leaves": params["num_leaves"], "learning_rate": params["learning_rate"],
            "min_data_in_leaf": params["min_data_in_leaf"], "feature_fraction": params["feature_fraction"],
            "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed, "deterministic": True,
            "num_threads": params["threads"], "verbose": -1}


def _train(X: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int):
    import lightgbm as lgb

    return lgb.train(_lgb_params(params, seed), lgb.Dataset(X, y, params={"verbose": -1}),
                     num_boost_round=params["rounds"])


def _booster_text(booster) -> str:
    return booster.model_to_string()


def _booster(text: str):
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % k


@dataclass
class _Sd:
    """σ = scale * sqrt(a + b·D²), fitted on out-of-fold residuals (see the module).

    The members' disagreement is not a term: on a training configuration every member but one
    saw it, so the members' spread there is mostly the one out-of-fold member's own error and
    would leak the residual into its own calibration (measured: correlation 0.93, and ±2σ held
    76% of held-out energies instead of 95%)."""

    a: float = 0.0
    b: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, resid: np.ndarray, d: np.ndarray) -> _Sd:
        resid, d2 = np.ravel(resid), np.ravel(np.asarray(d) ** 2)
        ok = np.isfinite(resid) & np.isfinite(d2)
        a, b = _fit_variance(resid[ok], d2[ok], np.zeros(int(ok.sum())))
        sd = np.sqrt(a + b * d2[ok])
        scale = float(np.quantile(np.abs(resid[ok]) / np.maximum(sd, 1e-12), TWO_SIGMA) / 2.0)
        return cls(float(a), float(b), max(scale, 1e-6))

    def __call__(self, d: np.ndarray) -> np.ndarray:
        return self.scale * np.sqrt(self.a + self.b * np.asarray(d, float) ** 2)


@dataclass
class _SdByEpoch:
    """One :class:`_Sd` per epoch of the curve: errors grow along a curve (every configuration
    starts near chance), so one pooled σ would be too wide early and too narrow at the end."""

    per_epoch: list[_Sd]

    @classmethod
    def fit(cls, resid: np.ndarray, d: np.ndarray) -> _SdByEpoch:
        """``resid``: n configurations × E epochs; ``d``: the n distances."""
        return cls([_Sd.fit(resid[:, e], d) for e in range(resid.shape[1])])

    def __call__(self, d: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """σ at ``epochs`` (1-based), n × len(epochs), for the n configurations' distances."""
        return np.column_stack([self.per_epoch[int(e) - 1](d) for e in epochs])

    def state(self) -> list[dict[str, float]]:
        return [vars(sd) for sd in self.per_epoch]

    @classmethod
    def from_state(cls, state: list[dict[str, float]]) -> _SdByEpoch:
        return cls([_Sd(**sd) for sd in state])


@dataclass
class _Standardiser:
    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> _Standardiser:
        sd = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(sd > 1e-9, sd, np.maximum(np.abs(X.mean(axis=0)) * 0.01, 1e-3)))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, float) - self.mean) / self.sd


class _LogEnergyPerEpoch:
    """K-fold LightGBM ensemble of log energy per epoch (final energy / budget), σ on the log."""

    def __init__(self, params: dict[str, Any], folds: int, seed: int):
        self.params, self.folds, self.seed = params, folds, seed
        self.members: list = []
        self.sd = _Sd()

    def fit(self, X: np.ndarray, per_epoch_kwh: np.ndarray, Z: np.ndarray) -> _LogEnergyPerEpoch:
        y = np.log(per_epoch_kwh)
        fold = _folds(len(X), self.folds, self.seed)
        oof, dist = np.empty(len(X)), np.empty(len(X))
        self.members = []
        for k in range(self.folds):
            train, test = fold != k, fold == k
            member = _train(X[train], y[train], self.params, self.seed + k)
            self.members.append(member)
            oof[test] = member.predict(X[test])
            dist[test] = _knn_distance(Z[train], Z[test], SD_NEIGHBOURS)
        self.sd = _Sd.fit(y - oof, dist)
        return self

    def predict(self, X: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-epoch kWh, relative σ)."""
        members = np.stack([m.predict(X) for m in self.members])
        return np.exp(members.mean(axis=0)), self.sd(d)

    def state(self) -> dict[str, Any]:
        return {"members": [_booster_text(m) for m in self.members], "sd": vars(self.sd)}

    @classmethod
    def from_state(cls, state: dict[str, Any], params: dict[str, Any], folds: int, seed: int) -> _LogEnergyPerEpoch:
        out = cls(params, folds, seed)
        out.members = [_booster(t) for t in state["members"]]
        out.sd = _Sd(**state["sd"])
        return out


def _energy_out(per_epoch: np.ndarray, rel_sd: np.ndarray, epochs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    energy = per_epoch[:, None] * np.asarray(epochs, float)[None, :]
    return energy, energy * rel_sd[:, None]


_LGB_DEFAULTS = {"num_leaves": 15, "learning_rate": 0.05, "rounds": 300, "min_data_in_leaf": 10,
                 "feature_fraction": 0.8, "threads": 1, "folds": 5}


# ====================================================================== the models
class BezierCurves(CurveSurrogate):
    """Bézier learning curves with control points predicted by a K-fold LightGBM ensemble."""

    name = "bezier"
    defaults: ClassVar[dict[str, Any]] = {**_LGB_DEFAULTS, "degrees": (2, 3, 4, 5)}

    def fit(self, X, epochs, acc, energy):
        X, acc, epochs = np.asarray(X, float), np.asarray(acc, float), np.asarray(epochs)
        self.budget = int(epochs[-1])
        self.scaler = _Standardiser.fit(X)
        Z = self.scaler(X)
        self.train_Z = Z
        x = epochs / self.budget
        folds = int(self.params["folds"])
        fold = _folds(len(X), folds, self.seed)
        best = None
        for degree in self.params["degrees"]:
            if degree + 1 > len(epochs):
                continue
            ctrl = np.stack([fit_bezier(x, y, degree).ravel() for y in acc])  # n x 2(d+1)
            members, oof = self._kfold(X, ctrl, fold, folds)
            oof_curves = np.stack([eval_bezier(c.reshape(-1, 2), x) for c in oof])
            rmse = float(np.sqrt(np.mean((oof_curves - acc) ** 2)))
            if best is None or rmse < best[0]:
                best = (rmse, degree, members, oof_curves)
        if best is None:
            raise ValueError(f"curves of {len(epochs)} epochs are too short for degrees {self.params['degrees']}")
        self.validation_rmse, self.degree, self.members, oof_curves = best
        dist = np.empty(len(X))
        for k in range(folds):
            dist[fold == k] = _knn_distance(Z[fold != k], Z[fold == k], SD_NEIGHBOURS)
        self.acc_sd = _SdByEpoch.fit(acc - oof_curves, dist)
        self.energy = _LogEnergyPerEpoch(self.params, folds, self.seed).fit(X, energy[:, -1] / self.budget, Z)
        return self

    def _kfold(self, X, targets, fold, folds):
        members, oof = [], np.empty_like(targets)
        for k in range(folds):
            train, test = fold != k, fold == k
            boosters = [_train(X[train], targets[train, j], self.params, self.seed + 97 * k + j)
                        for j in range(targets.shape[1])]
            members.append(boosters)
            oof[test] = np.column_stack([b.predict(X[test]) for b in boosters])
        return members, oof

    def _member_curves(self, X, x) -> np.ndarray:
        """(K, n, len(x)) the curves each member predicts."""
        out = []
        for boosters in self.members:
            ctrl = np.column_stack([b.predict(X) for b in boosters])
            out.append(np.stack([eval_bezier(c.reshape(-1, 2), x) for c in ctrl]))
        return np.stack(out)

    def predict(self, X, epochs, observed_acc=None, observed_energy=None):
        X = np.asarray(X, float)
        x = np.asarray(epochs, float) / self.budget
        curves = self._member_curves(X, x)
        d = _knn_distance(self.train_Z, self.scaler(X), SD_NEIGHBOURS)
        acc_sd = self.acc_sd(d, np.asarray(epochs))
        per_epoch, rel = self.energy.predict(X, d)
        energy, energy_sd = _energy_out(per_epoch, rel, epochs)
        return {"acc": curves.mean(axis=0), "acc_sd": acc_sd, "energy_kwh": energy, "energy_sd_kwh": energy_sd}

    def state(self):
        return {"params": {**self.params, "degrees": list(self.params["degrees"])}, "seed": self.seed,
                "budget": self.budget, "degree": self.degree, "validation_rmse": self.validation_rmse,
                "scaler": {"mean": self.scaler.mean.tolist(), "sd": self.scaler.sd.tolist()},
                "train_Z": self.train_Z.tolist(), "acc_sd": self.acc_sd.state(),
                "members": [[_booster_text(b) for b in boosters] for boosters in self.members],
                "energy": self.energy.state()}

    @classmethod
    def from_state(cls, state):
        params = {**state["params"], "degrees": tuple(state["params"]["degrees"])}
        out = cls(seed=state["seed"], **params)
        out.budget, out.degree, out.validation_rmse = state["budget"], state["degree"], state["validation_rmse"]
        out.scaler = _Standardiser(np.array(state["scaler"]["mean"]), np.array(state["scaler"]["sd"]))
        out.train_Z = np.array(state["train_Z"])
        out.acc_sd = _SdByEpoch.from_state(state["acc_sd"])
        out.members = [[_booster(t) for t in boosters] for boosters in state["members"]]
        out.energy = _LogEnergyPerEpoch.from_state(state["energy"], out.params, int(out.params["folds"]), out.seed)
        return out


class GbmEpochCurves(CurveSurrogate):
    """One K-fold LightGBM with the epoch as an input (JAHS-Bench-201's surrogate shape)."""

    name = "gbm-epoch"
    defaults: ClassVar[dict[str, Any]] = dict(_LGB_DEFAULTS)

    def _rows(self, X, epochs):
        n, E = len(X), len(epochs)
        return np.column_stack([np.repeat(X, E, axis=0), np.tile(np.asarray(epochs, float), n)])

    def fit(self, X, epochs, acc, energy):
        X, epochs = np.asarray(X, float), np.asarray(epochs)
        self.budget = int(epochs[-1])
        self.scaler = _Standardiser.fit(X)
        Z = self.scaler(X)
        self.train_Z = Z
        folds = int(self.params["folds"])
        fold = np.repeat(_folds(len(X), folds, self.seed), len(epochs))  # split by configuration
        R = self._rows(X, epochs)
        ya, ye = np.ravel(acc), np.log(np.ravel(energy))
        self.acc_members, self.energy_members = [], []
        oof_a, oof_e, dist = np.empty_like(ya), np.empty_like(ye), np.empty(len(ya))
        cfg_fold = _folds(len(X), folds, self.seed)
        for k in range(folds):
            train, test = fold != k, fold == k
            self.acc_members.append(_train(R[train], ya[train], self.params, self.seed + k))
            self.energy_members.append(_train(R[train], ye[train], self.params, self.seed + 50 + k))
            oof_a[test] = self.acc_members[-1].predict(R[test])
            oof_e[test] = self.energy_members[-1].predict(R[test])
            dist[test] = np.repeat(_knn_distance(Z[cfg_fold != k], Z[cfg_fold == k], SD_NEIGHBOURS), len(epochs))
        grid = (len(X), len(epochs))
        self.acc_sd = _SdByEpoch.fit((ya - oof_a).reshape(grid), dist.reshape(grid)[:, 0])
        self.energy_sd = _Sd.fit(ye - oof_e, dist)
        return self

    def predict(self, X, epochs, observed_acc=None, observed_energy=None):
        X = np.asarray(X, float)
        R = self._rows(X, epochs)
        shape = (len(X), len(epochs))
        d_config = _knn_distance(self.train_Z, self.scaler(X), SD_NEIGHBOURS)
        d = np.repeat(d_config, len(epochs))
        a = np.stack([m.predict(R) for m in self.acc_members])
        e = np.stack([m.predict(R) for m in self.energy_members])
        energy = np.exp(e.mean(axis=0))
        acc_sd = self.acc_sd(d_config, np.asarray(epochs))
        return {"acc": a.mean(axis=0).reshape(shape), "acc_sd": acc_sd,
                "energy_kwh": energy.reshape(shape),
                "energy_sd_kwh": (energy * self.energy_sd(d)).reshape(shape)}

    def state(self):
        return {"params": self.params, "seed": self.seed, "budget": self.budget,
                "scaler": {"mean": self.scaler.mean.tolist(), "sd": self.scaler.sd.tolist()},
                "train_Z": self.train_Z.tolist(), "acc_sd": self.acc_sd.state(), "energy_sd": vars(self.energy_sd),
                "acc_members": [_booster_text(m) for m in self.acc_members],
                "energy_members": [_booster_text(m) for m in self.energy_members]}

    @classmethod
    def from_state(cls, state):
        out = cls(seed=state["seed"], **state["params"])
        out.budget = state["budget"]
        out.scaler = _Standardiser(np.array(state["scaler"]["mean"]), np.array(state["scaler"]["sd"]))
        out.train_Z = np.array(state["train_Z"])
        out.acc_sd, out.energy_sd = _SdByEpoch.from_state(state["acc_sd"]), _Sd(**state["energy_sd"])
        out.acc_members = [_booster(t) for t in state["acc_members"]]
        out.energy_members = [_booster(t) for t in state["energy_members"]]
        return out


def pow3(epochs: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    """``c - a * epochs^-alpha`` (Domhan et al.'s pow3 learning curve)."""
    return c - a * np.asarray(epochs, float) ** (-alpha)


class Pow3Curves(CurveSurrogate):
    """pow3 fitted to a configuration's own first ``observes`` epochs and extrapolated (no σ)."""

    name = "pow3"
    observes = 3
    defaults: ClassVar[dict[str, Any]] = {}

    def fit(self, X, epochs, acc, energy):
        self.budget = int(np.asarray(epochs)[-1])  # nothing to learn across configurations
        return self

    def predict(self, X, epochs, observed_acc=None, observed_energy=None):
        import warnings

        from scipy.optimize import OptimizeWarning, curve_fit

        if observed_acc is None or observed_energy is None:
            raise ValueError(f"pow3 extrapolates a configuration's own first {self.observes} epochs: give them")
        seen = np.arange(1, self.observes + 1, dtype=float)
        acc = np.empty((len(observed_acc), len(epochs)))
        for i, y in enumerate(np.asarray(observed_acc, float)):
            try:
                with warnings.catch_warnings():  # 3 points, 3 parameters: no covariance, by design
                    warnings.simplefilter("ignore", OptimizeWarning)
                    p, _ = curve_fit(pow3, seen, y, p0=(y[-1], max(y[-1] - y[0], 1e-3), 0.5),
                                     bounds=([0.0, -1.0, 0.0], [1.0, 1.0, 5.0]), maxfev=2000)
                acc[i] = np.clip(pow3(epochs, *p), 0.0, 1.0)
            except RuntimeError:  # no fit: the last observation holds
                acc[i] = y[-1]
        per_epoch = np.asarray(observed_energy, float)[:, -1] / self.observes
        energy = per_epoch[:, None] * np.asarray(epochs, float)[None, :]
        return {"acc": acc, "acc_sd": None, "energy_kwh": energy, "energy_sd_kwh": None}

    def state(self):
        return {"budget": self.budget, "seed": self.seed}

    @classmethod
    def from_state(cls, state):
        out = cls(seed=state["seed"])
        out.budget = state["budget"]
        return out


BUILTIN_CURVE_SURROGATES = (BezierCurves, GbmEpochCurves, Pow3Curves)


def curve_surrogate_classes() -> dict[str, type[CurveSurrogate]]:
    """Registered curve surrogate classes by name (the ``ecnas_curve_surrogates`` hook)."""
    from ecnas_plugin.registry import get_registry

    return dict(get_registry().items.get("curve surrogates", {}))


# ====================================================================== predictor
@dataclass
class CurvePredictor:
    """A fitted curve surrogate with its context; predicts configurations of its space."""

    model: CurveSurrogate  # validation accuracy and energy
    context: dict[str, Any]
    feature_names: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    test_model: CurveSurrogate | None = None  # test accuracy (its energy is not used)

    @property
    def space(self):
        from ecnas_plugin.registry import get_registry

        return get_registry().space(self.context["space"])

    @property
    def budget(self) -> int:
        return int(self.context["budget"])

    @classmethod
    def fit(cls, table, model: str = "bezier", *, seed: int = 0, only=None, **params) -> CurvePredictor:
        """Fit ``model`` (a registered curve surrogate) on a one-budget table's measured curves
        (``only``: just these configuration keys, e.g. a split's training side)."""
        from ecnas_plugin.errors import UnknownName

        classes = curve_surrogate_classes()
        if model not in classes:
            raise UnknownName("curve surrogate", model, classes)
        if only is not None:
            table = table.subset(only)
        frame = table.frame
        sources = sorted(frame["source"].unique())
        if len(sources) != 1 or sources[0] not in ("measured", "estimated"):
            from ecnas_plugin.errors import DataFormatError

            raise DataFormatError(f"table {table.name!r}", None, f"holds energies of sources {sources}: a curve "
                                  f"surrogate learns one kind, measured or estimated")
        curves = curves_of(table)
        space_name = str(frame["space"].iloc[0])
        from ecnas_plugin.registry import get_registry

        space = get_registry().space(space_name)
        space.require("features", flow="a curve surrogate")
        archs = space.archs_of(frame)
        X, names = space.features([archs[k] for k in curves.keys])
        X = np.asarray(X, float)
        fitted = classes[model](seed=seed, **params).fit(X, curves.epochs, curves.acc, curves.energy)
        # test accuracy has its own model: a prediction never passes validation accuracy off as test
        test_model = classes[model](seed=seed + 1, **params).fit(X, curves.epochs, curves.test_acc, curves.energy)
        context = {"space": space_name, "campaign": "+".join(sorted(frame["campaign"].unique())),
                   "dataset": "+".join(sorted(frame["dataset"].unique())),
                   "hardware": "+".join(sorted(frame["hardware"].unique())), "budget": int(curves.epochs[-1]),
                   "energy_source": sources[0], "table": table.name, "configurations": len(curves.keys),
                   "feature_set": space.feature_set or "", "model": model}
        return cls(fitted, context, list(names), test_model=test_model)

    def _X(self, configs) -> tuple[list[str], np.ndarray]:
        space = self.space
        archs = [space.arch(c) for c in configs]
        X, names = space.features(archs)
        if list(names) != self.feature_names:
            from ecnas_plugin.errors import SchemaError

            raise SchemaError(f"the {space.name} features changed since this curve model was fitted")
        return [space.canonical_key(a) for a in archs], np.asarray(X, float)

    def _epochs(self, epochs) -> np.ndarray:
        from ecnas_plugin.errors import InvalidConfiguration

        values = np.atleast_1d(np.asarray(epochs if epochs is not None else self.budget))
        for e in values:
            if not (float(e) == int(e) and 1 <= int(e) <= self.budget):
                raise InvalidConfiguration(f"{self.context['space']} fidelity 'epochs'", e.item(),
                                           f"must be an integer in 1..{self.budget} (the budget this model learnt)")
        return values.astype(int)

    def predict(self, configs, epochs=None, observed: Curves | None = None) -> dict[str, Any]:
        """Arrays (n × len(epochs)) for configurations in any form the space reads."""
        keys, X = self._X(configs)
        e = self._epochs(epochs)
        kw = {}
        if self.model.observes:
            if observed is None:
                raise ValueError(f"{self.model.name} needs each configuration's first {self.model.observes} epochs")
            kw = {"observed_acc": observed.acc[:, :self.model.observes],
                  "observed_energy": observed.energy[:, :self.model.observes]}
        out = {"keys": keys, "epochs": e, **self.model.predict(X, e, **kw)}
        if self.test_model is not None:
            if self.model.observes:
                kw["observed_acc"] = observed.test_acc[:, :self.model.observes]
            test = self.test_model.predict(X, e, **kw)
            out["test_acc"], out["test_acc_sd"] = test["acc"], test["acc_sd"]
        return out

    def predict_frame(self, configs, epochs=None):
        """One row per configuration and epoch: val_acc, val_acc_sd, train_energy_kwh,
        train_energy_sd_kwh, ``source = predicted``."""
        import pandas as pd

        out = self.predict(configs, epochs)
        n, E = len(out["keys"]), len(out["epochs"])
        rows = {"space": self.context["space"], "arch_key": np.repeat(out["keys"], E),
                "epochs": np.tile(out["epochs"], n), "source": "predicted",
                "val_acc": out["acc"].ravel(), "train_energy_kwh": out["energy_kwh"].ravel(),
                # learnt from power-model estimates: the prediction is of an estimate, and says so
                "energy_method": "estimated" if self.context.get("energy_source") == "estimated" else None}
        if "test_acc" in out:
            rows["test_acc"] = out["test_acc"].ravel()
        if out["acc_sd"] is not None:
            rows["val_acc_sd"] = out["acc_sd"].ravel()
        if out["energy_sd_kwh"] is not None:
            rows["train_energy_sd_kwh"] = out["energy_sd_kwh"].ravel()
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"format": CURVE_FORMAT, "model": self.model.name, "context": self.context,
               "feature_names": self.feature_names, "metrics": self.metrics, "state": self.model.state(),
               "test_state": None if self.test_model is None else self.test_model.state()}
        tmp = folder / f".{MODEL_FILE}.tmp"
        tmp.write_text(json.dumps(doc, default=_json_default))
        tmp.replace(folder / MODEL_FILE)
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> CurvePredictor:
        from ecnas_plugin.errors import SchemaError, UnknownName

        path = Path(folder) / MODEL_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path}: not a curve model ({exc})") from None
        if doc.get("format") != CURVE_FORMAT:
            raise SchemaError(f"{path}: curve model format {doc.get('format')!r}, this version reads {CURVE_FORMAT}")
        classes = curve_surrogate_classes()
        if doc["model"] not in classes:
            raise UnknownName("curve surrogate", doc["model"], classes)
        model_class = classes[doc["model"]]
        out = cls(model_class.from_state(doc["state"]), doc["context"], doc["feature_names"], doc.get("metrics", {}),
                  None if doc.get("test_state") is None else model_class.from_state(doc["test_state"]))
        space = out.space
        if (space.feature_set or "") != out.context.get("feature_set", "") or \
                list(space.features([])[1]) != out.feature_names:
            raise SchemaError(f"{path}: fitted on {space.name} features {out.context.get('feature_set')!r}; the "
                              f"space now computes {space.feature_set!r}: refit the model")
        return out


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a curve model")


# ====================================================================== evaluation
def evaluate_curves(predictor: CurvePredictor, table_or_curves) -> dict[str, float]:
    """Metrics on configurations the model never saw (split by configuration, never by epoch):
    final-epoch Kendall τ and MAE of validation accuracy, whole-curve RMSE, energy τ and MAPE at
    the budget, ±1σ/±2σ coverage of final accuracy and energy (None without a σ)."""
    from scipy.stats import kendalltau

    curves = table_or_curves if isinstance(table_or_curves, Curves) else curves_of(table_or_curves)
    configs = [predictor.space.decode(k) for k in curves.keys]
    out = predictor.predict(configs, curves.epochs, observed=curves)
    acc, energy = out["acc"], out["energy_kwh"]
    final_true, final_pred = curves.acc[:, -1], acc[:, -1]
    e_true, e_pred = curves.energy[:, -1], energy[:, -1]
    metrics = {
        "configurations": len(curves.keys),
        "final_acc_kendall_tau": float(kendalltau(final_true, final_pred)[0]),
        "final_acc_mae": float(np.mean(np.abs(final_true - final_pred))),
        "curve_rmse": float(np.sqrt(np.mean((acc - curves.acc) ** 2))),
        "energy_kendall_tau": float(kendalltau(e_true, e_pred)[0]),
        "energy_mape": float(np.mean(np.abs(e_pred - e_true) / e_true)),
    }
    for what, sd, truth, pred in (("acc", out["acc_sd"], final_true, final_pred),
                                  ("energy", out["energy_sd_kwh"], e_true, e_pred)):
        for k in (1, 2):
            metrics[f"{what}_coverage_{k}sd"] = (None if sd is None else
                                                 float(np.mean(np.abs(truth - pred) <= k * sd[:, -1])))
    return metrics


def split_curves(curves: Curves, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a split by configuration."""
    order = np.random.default_rng(seed).permutation(len(curves.keys))
    n_test = int(round(test_fraction * len(order)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
