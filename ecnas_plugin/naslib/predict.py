"""``energy.missing: predict``: energy for cells the table lacks, from an energy surrogate of its space
(default: the shipped NB101 model; ``energy.predictor`` names a saved one, e.g. fitted on an NB201 table).

A prediction must speak for the same thing as the table it fills: same dataset, campaign,
hardware and epoch budget. Where the surrogate's context differs, :class:`PredictedEnergy` refuses
with a :class:`ConfigError` naming the key to change, unless the config asks for the explicit fix:
``calibrate: true`` (Predictor.calibrate on the table's measured cells at the model's budget) for
another campaign/hardware, ``epoch_scaling: linear|fit`` (scaling.EpochScaling) for a larger budget.
Every value it returns is labelled ``predicted``; :meth:`describe` records how it was made.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ecnas_plugin.errors import EcnasError
from ecnas_plugin.naslib.config import ConfigError, EnergyConfig


class PredictedEnergy:
    """Training energy (kWh, with sd) of any valid architecture of the table's space for one table slice."""

    def __init__(self, cfg: EnergyConfig, table_name: str, frame: pd.DataFrame, want: dict):
        """``frame``: the whole table; ``want``: the slice's dataset, hardware, campaign, epochs, space."""
        from ecnas_plugin.energy import surrogates as S

        if cfg.column != "train_energy_kwh":
            raise ConfigError("energy.missing", f"'predict' fills train_energy_kwh only, not {cfg.column!r}")
        try:
            predictor = S.Predictor.load(Path(cfg.predictor)) if cfg.predictor else S.default_predictor()
        except EcnasError as exc:
            raise ConfigError("energy.predictor", str(exc)) from None
        ctx = predictor.context
        if ctx.space != want["space"]:
            raise ConfigError("energy.predictor", f"the surrogate predicts space {ctx.space!r}; table "
                              f"{table_name!r} is space {want['space']!r}: set energy.predictor to a model "
                              f"fitted on that space (`ecnas surrogate fit --table ... --out DIR`)")
        self.model_context = dict(ctx.__dict__)
        if ctx.dataset != want["dataset"]:
            raise ConfigError("energy.predictor", f"the surrogate predicts dataset {ctx.dataset!r}; table "
                                                  f"{table_name!r} is {want['dataset']!r}")
        if (ctx.campaign, ctx.hardware) != (want["campaign"], want["hardware"]):
            if not cfg.calibrate:
                raise ConfigError("energy.calibrate", f"the surrogate predicts campaign {ctx.campaign!r} on "
                                  f"{ctx.hardware!r}; table {table_name!r} is campaign {want['campaign']!r} on "
                                  f"{want['hardware']!r}. Set energy.calibrate: true to calibrate it on the "
                                  "table's measured cells, or choose a matching table or predictor")
            rows = frame[(frame["campaign"] == want["campaign"]) & (frame["hardware"] == want["hardware"])
                         & (frame["dataset"] == want["dataset"]) & (frame["epochs"] == ctx.epochs)
                         & (frame["source"] == "measured")]
            if rows.empty:
                raise ConfigError("energy.calibrate", f"table {table_name!r} has no measured cells at the "
                                                      f"surrogate's budget of {ctx.epochs} epochs to calibrate on")
            try:
                predictor = predictor.calibrate(rows)
            except (ValueError, EcnasError) as exc:
                raise ConfigError("energy.calibrate", f"calibration on table {table_name!r} failed: {exc}") from None
        self.predictor = predictor
        self.scaling = None
        base, target = predictor.context.epochs, int(want["epochs"])
        if target < base:
            raise ConfigError("energy.epochs", f"the surrogate predicts {base}-epoch energy; it cannot fill "
                                               f"a {target}-epoch table (epoch scaling only goes upwards)")
        if target > base:
            if cfg.epoch_scaling is None:
                raise ConfigError("energy.epoch_scaling", f"the surrogate predicts {base}-epoch energy and table "
                                  f"{table_name!r} is at {target} epochs; set energy.epoch_scaling: linear or "
                                  "fit to scale predictions up (they stay labelled 'predicted')")
            if cfg.epoch_scaling == "linear":
                self.scaling = S.EpochScaling.linear(base)
            else:
                rows = frame[(frame["campaign"] == want["campaign"]) & (frame["hardware"] == want["hardware"])
                             & (frame["dataset"] == want["dataset"])]
                try:
                    self.scaling = S.EpochScaling.fit(rows, base)
                except EcnasError as exc:
                    raise ConfigError("energy.epoch_scaling", f"'fit' on table {table_name!r}: {exc}") from None
        self.epochs = target
        self.predicted = 0

    def __call__(self, key: str, spec: object = None) -> tuple[float, float]:
        """(energy kWh, sd kWh) of ``spec`` (the space's NASLib spec, e.g. NB101's ``{"matrix", "ops"}``)
        or, without one, of the architecture with canonical key ``key``."""
        frame = self.predictor.predict_energy([spec if spec is not None else key])
        mean, sd = float(frame["train_energy_kwh"].iloc[0]), float(frame["train_energy_sd_kwh"].iloc[0])
        if self.scaling is not None:
            scaled = float(self.scaling.scale(mean, self.epochs))
            sd, mean = sd * scaled / mean, scaled  # same relative sd
        if not (math.isfinite(mean) and mean > 0 and math.isfinite(sd)):
            raise ConfigError("energy.missing", f"the surrogate gave no usable energy for cell {key} ({mean!r} kWh)")
        self.predicted += 1
        return mean, sd

    def describe(self) -> dict:
        """How predictions were made (for pareto_front.json)."""
        p = self.predictor
        return {"source": "predicted", "model": p.model.name, "model_context": self.model_context,
                "context": dict(p.context.__dict__, epochs=self.epochs), "calibration": p.calibration,
                "epoch_scaling": None if self.scaling is None else dict(self.scaling.to_dict(),
                                                                         target_epochs=self.epochs),
                "training_table": p.training.get("table"), "cells_predicted": self.predicted}

