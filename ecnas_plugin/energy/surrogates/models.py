"""Energy surrogate models: LightGBM, a torch MLP (as EC-NAS's), an ensemble of both, and an
additive cost model with tree corrections (the shipped default).

Every model is a K-fold ensemble of :class:`~ecnas_plugin.energy.surrogates.base.Surrogate` (the
plugin base class, kept in ``base.py`` so the registry can check plugins without importing these
models); LightGBM and torch are imported only when a member is fitted or loaded.

Members are stored without pickle: LightGBM's own text model format, torch ``state_dict`` tensors
(loaded with ``weights_only=True``), and JSON for everything else (``member_files``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from .base import ONE_SIGMA, Surrogate

__all__ = ["ONE_SIGMA", "Surrogate", "LightGBMSurrogate", "MLPSurrogate", "EnsembleSurrogate",
           "AdditiveSurrogate", "BUILTIN_SURROGATES"]


# ---------------------------------------------------------------------------------- LightGBM


class LightGBMSurrogate(Surrogate):
    """Gradient-boosted trees (LightGBM, L1 loss on Wh: robust to the measurement drift)."""

    name = "lightgbm"
    defaults = {"num_leaves": 4, "learning_rate": 0.1, "rounds": 300, "min_data_in_leaf": 5,
                "bagging_fraction": 0.8, "feature_fraction": 0.5, "objective": "l1", "threads": 2}

    def _booster_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {"objective": p["objective"], "num_leaves": p["num_leaves"], "learning_rate": p["learning_rate"],
                "min_data_in_leaf": p["min_data_in_leaf"], "bagging_fraction": p["bagging_fraction"],
                "bagging_freq": 1, "feature_fraction": p["feature_fraction"], "seed": seed,
                "deterministic": True, "num_threads": p["threads"], "verbose": -1}

    def _fit_member(self, X: np.ndarray, y: np.ndarray, seed: int) -> Any:
        import lightgbm as lgb

        data = lgb.Dataset(X, y, params={"verbose": -1})
        return lgb.train(self._booster_params(seed), data, num_boost_round=self.params["rounds"])

    def _predict_members(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(X, num_threads=self.params["threads"]) for m in members])

    def member_files(self) -> dict[str, bytes]:
        return {f"lightgbm_{k}.txt": m.model_to_string().encode() for k, m in enumerate(self.members)}

    def load_members(self, files: dict[str, bytes], n_inputs: int) -> None:
        import lightgbm as lgb

        self.members = []
        for k in range(self.folds):
            booster = lgb.Booster(model_str=files[f"lightgbm_{k}.txt"].decode())
            if booster.num_feature() != n_inputs:
                raise ValueError(f"lightgbm_{k}.txt expects {booster.num_feature()} features, not {n_inputs}")
            self.members.append(booster)


# ---------------------------------------------------------------------------------- MLP


class _MLPMember:
    """One torch MLP on standardised features, predicting standardised log-energy."""

    def __init__(self, n_inputs: int, hidden: int, layers: int):
        import torch
        from torch import nn

        dims = [n_inputs] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-1], 1))
        self.buffers = {k: torch.zeros(n) for k, n in (("x_mean", n_inputs), ("x_std", n_inputs),
                                                       ("y_mean", 1), ("y_std", 1))}

    def state_dict(self) -> dict[str, Any]:
        return {**{f"net.{k}": v for k, v in self.net.state_dict().items()}, **self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        self.buffers = {k: state[k] for k in self.buffers}

    def predict(self, X: np.ndarray) -> np.ndarray:
        import torch

        b = self.buffers
        with torch.no_grad():
            x = (torch.from_numpy(np.asarray(X, np.float32)) - b["x_mean"]) / b["x_std"]
            out = self.net(x).squeeze(1) * b["y_std"] + b["y_mean"]
        return np.exp(out.double().numpy())


class MLPSurrogate(Surrogate):
    """A small torch MLP like EC-NAS's surrogate (full-batch AdamW, L1 on log energy), K-fold ensemble."""

    name = "mlp"
    defaults = {"hidden": 64, "layers": 2, "steps": 1500, "learning_rate": 3e-3, "weight_decay": 1e-3}

    def _fit_member(self, X: np.ndarray, y: np.ndarray, seed: int) -> _MLPMember:
        import torch

        torch.manual_seed(seed)
        p = self.params
        member = _MLPMember(X.shape[1], p["hidden"], p["layers"])
        xt, yt = torch.from_numpy(X), torch.from_numpy(np.log(y).astype(np.float32))
        std = xt.std(dim=0)
        member.buffers = {"x_mean": xt.mean(dim=0), "x_std": torch.where(std > 0, std, torch.ones_like(std)),
                          "y_mean": yt.mean().reshape(1), "y_std": yt.std().reshape(1)}
        xs = (xt - member.buffers["x_mean"]) / member.buffers["x_std"]
        ys = (yt - member.buffers["y_mean"]) / member.buffers["y_std"]
        opt = torch.optim.AdamW(member.net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p["steps"])
        for _ in range(p["steps"]):  # full batch: training sets are small (≤ a few thousand cells)
            opt.zero_grad()
            loss = (member.net(xs).squeeze(1) - ys).abs().mean()
            loss.backward()
            opt.step()
            sched.step()
        member.net.eval()
        return member

    def _predict_members(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(X) for m in members])

    def member_files(self) -> dict[str, bytes]:
        import torch

        buf = io.BytesIO()
        torch.save({f"member{k}.{name}": t for k, m in enumerate(self.members)
                    for name, t in m.state_dict().items()}, buf)
        return {"mlp.pt": buf.getvalue()}

    def load_members(self, files: dict[str, bytes], n_inputs: int) -> None:
        import torch

        state = torch.load(io.BytesIO(files["mlp.pt"]), weights_only=True, map_location="cpu")
        self.members = []
        for k in range(self.folds):
            prefix = f"member{k}."
            member = _MLPMember(n_inputs, self.params["hidden"], self.params["layers"])
            member.load_state_dict({key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)})
            member.net.eval()
            self.members.append(member)


# ---------------------------------------------------------------------------------- ensemble


class EnsembleSurrogate(Surrogate):
    """LightGBM and MLP members averaged (weight ``lightgbm_weight`` on the trees)."""

    name = "ensemble"
    defaults = {"lightgbm_weight": 0.5, "lightgbm": {}, "mlp": {}}

    def __init__(self, folds: int = 5, seed: int = 0, **params: Any):
        super().__init__(folds, seed, **params)
        self.lgb = LightGBMSurrogate(folds, seed, **self.params["lightgbm"])
        self.mlp = MLPSurrogate(folds, seed, **self.params["mlp"])

    def _fit_member(self, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[Any, Any]:
        return self.lgb._fit_member(X, y, seed), self.mlp._fit_member(X, y, seed)

    def _predict_members(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        w = self.params["lightgbm_weight"]
        trees = self.lgb._predict_members([m[0] for m in members], X)
        nets = self.mlp._predict_members([m[1] for m in members], X)
        return w * trees + (1 - w) * nets

    def _sync(self) -> None:
        self.lgb.members = [m[0] for m in self.members]
        self.mlp.members = [m[1] for m in self.members]

    def member_files(self) -> dict[str, bytes]:
        self._sync()
        return {**self.lgb.member_files(), **self.mlp.member_files()}

    def load_members(self, files: dict[str, bytes], n_inputs: int) -> None:
        self.lgb.load_members(files, n_inputs)
        self.mlp.load_members(files, n_inputs)
        self.members = list(zip(self.lgb.members, self.mlp.members))


# ---------------------------------------------------------------------------------- additive


class _AdditiveMember:
    """A ridge regression of energy on additive cost terms, times exp(trees on the log residual)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, booster: Any):
        self.mean, self.scale, self.coef, self.booster = mean, scale, coef, booster

    def to_json(self) -> bytes:
        return json.dumps({"mean": self.mean.tolist(), "scale": self.scale.tolist(),
                           "coef": self.coef.tolist()}).encode()


class AdditiveSurrogate(Surrogate):
    """Energy ≈ (linear in the network's cost terms) × exp(LightGBM correction).

    Training time, and so energy, adds up over a network's layers: a linear model in the network's
    cost terms (``features.cost_terms``: for NB101 every stack's FLOPs and activations per op kind
    plus the op and edge counts; for other spaces every feature column, log columns as amounts)
    gets it right on average, which trees (piecewise constant) need many cells to do. LightGBM then
    learns what is not additive (the GPU's power at each cell's load) as a log-ratio, with L1 loss
    against the measurement noise. Settings were chosen by out-of-fold error inside the training
    cells (see ``train_default.py``).
    """

    name = "additive"
    defaults = {"ridge": 0.1, "num_leaves": 2, "learning_rate": 0.05, "rounds": 600, "min_data_in_leaf": 20,
                "bagging_fraction": 0.8, "feature_fraction": 0.8, "threads": 2}

    def __init__(self, folds: int = 5, seed: int = 0, **params: Any):
        super().__init__(folds, seed, **params)
        p = self.params
        self.trees = LightGBMSurrogate(folds, seed, objective="l1", **{k: p[k] for k in (
            "num_leaves", "learning_rate", "rounds", "min_data_in_leaf", "bagging_fraction", "feature_fraction",
            "threads")})

    @property
    def linear(self) -> list[int]:
        """Input columns the ridge regression is linear in (``features.cost_terms`` of the names)."""
        from .features import cost_terms

        return cost_terms(self.feature_names)[0]

    @property
    def log_encoded(self) -> list[int]:
        """Which of :attr:`linear` are stored as logs (``expm1``-ed back to amounts)."""
        from .features import cost_terms

        return cost_terms(self.feature_names)[1]

    def _terms(self, X: np.ndarray) -> np.ndarray:
        linear, log_encoded = self.linear, self.log_encoded
        if np.shape(X)[1] <= max(linear, default=-1):
            raise ValueError(f"additive surrogate: inputs have {np.shape(X)[1]} columns, its cost terms need "
                             f"{max(linear) + 1}; set feature_names to the inputs' column names")
        Z = np.asarray(X, np.float64)[:, linear]
        logged = np.isin(linear, log_encoded)
        Z[:, logged] = np.expm1(Z[:, logged])
        return Z

    @staticmethod
    def _base(member: _AdditiveMember, Z: np.ndarray) -> np.ndarray:
        # floor at 1 mWh: an extrapolated linear base must stay a positive energy for the log ratio
        return np.maximum(((Z - member.mean) / member.scale) @ member.coef[:-1] + member.coef[-1], 1e-3)

    def _fit_member(self, X: np.ndarray, y: np.ndarray, seed: int) -> _AdditiveMember:
        Z = self._terms(X)
        mean, scale = Z.mean(axis=0), Z.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        A = np.column_stack([(Z - mean) / scale, np.ones(len(Z))])
        penalty = self.params["ridge"] * np.eye(A.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not shrunk
        coef = np.linalg.solve(A.T @ A + penalty, A.T @ y)
        member = _AdditiveMember(mean, scale, coef, None)
        base = self._base(member, Z)
        inputs = np.column_stack([X, np.log(base)]).astype(np.float32)
        member.booster = self.trees._fit_member(inputs, np.log(y / base), seed)
        return member

    def _predict_members(self, members: list[Any], X: np.ndarray) -> np.ndarray:
        Z = self._terms(X)
        out = []
        for m in members:
            base = self._base(m, Z)
            inputs = np.column_stack([X, np.log(base)]).astype(np.float32)
            out.append(base * np.exp(m.booster.predict(inputs, num_threads=self.params["threads"])))
        return np.stack(out)

    def member_files(self) -> dict[str, bytes]:
        self.trees.members = [m.booster for m in self.members]
        return {**self.trees.member_files(), **{f"ridge_{k}.json": m.to_json() for k, m in enumerate(self.members)}}

    def load_members(self, files: dict[str, bytes], n_inputs: int) -> None:
        self.trees.load_members(files, n_inputs + 1)  # the trees also see log(base)
        self.members = []
        for k, booster in enumerate(self.trees.members):
            r = json.loads(files[f"ridge_{k}.json"])
            coef = np.asarray(r["coef"], np.float64)
            if len(coef) != len(self.linear) + 1:
                raise ValueError(f"ridge_{k}.json has {len(coef) - 1} cost terms, this feature set {len(self.linear)}")
            self.members.append(_AdditiveMember(np.asarray(r["mean"]), np.asarray(r["scale"]), coef, booster))


BUILTIN_SURROGATES: tuple[type[Surrogate], ...] = (LightGBMSurrogate, MLPSurrogate, EnsembleSurrogate,
                                                    AdditiveSurrogate)
