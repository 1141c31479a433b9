"""The ``energy`` section of a NASLib config: parsing and validation (no NASLib import).

``energy: True`` takes the defaults; ``energy: False`` or no key leaves NASLib untouched; a
mapping chooses (every key optional)::

    energy:
      objective: penalty          # penalty | constraint | soft | chebyshev
      weight: 0.1                 # penalty: acc - weight * E / reference_kwh
      exponent: -0.07             # soft:    acc * (E / reference_kwh) ** exponent
      limit_kwh: 0.02             # constraint: per-model training energy limit (required there)
      reference_kwh: null         # penalty/soft/chebyshev scale; null = the table's median energy
      column: train_energy_kwh    # energy column of the table
      epochs: null                # epoch budget of accuracy and energy; null = the table's largest
      table: null                 # energy table; null = the search space's default
      hardware: null              # for tables with several hardware/campaigns
      campaign: null
      dataset: null               # the table's dataset to take energy from; null = the run's own
                                  #   (a table of another dataset only when named here: never silently)
      missing: error              # cell without a measured value: error | predict (energy surrogate)
      predictor: null             # predict: saved surrogate folder; null = the shipped default
      calibrate: false            # predict: calibrate the surrogate on the table's measured cells
                                  #   (needed when the table's campaign/hardware differs from the model's)
      epoch_scaling: null         # predict: linear | fit, to reach a table budget above the model's
      surrogate: null             # a curve surrogate that extends a table served without a NASLib
                                  #   mapping (search_space: nb201-joint-flowers17-cpu) to its whole
                                  #   space: a registered curve surrogate's name (bezier, gbm-epoch:
                                  #   fitted on the table when the run starts, seed 0) or the folder
                                  #   of a saved curve model; configurations the table lacks are its
                                  #   predictions, labelled predicted
      search_budget_kwh: null     # stop once the summed energy of evaluated cells exceeds this
      reference_point: null       # hypervolume reference [error, energy]; null = [1, table max]
      trace: true                 # write energy_trace.parquet and pareto_front.json
      seed: null                  # chebyshev weight draws; null = the run's seed

Every bad value raises :class:`ConfigError` naming the key (``energy.<key>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from ecnas_plugin.errors import ConfigError, UnknownName
from ecnas_plugin.objectives import OBJECTIVES

MISSING_POLICIES = ("error", "predict")
EPOCH_SCALINGS = ("linear", "fit")
# Keys that only make sense for some objectives.
_ONLY_FOR = {"weight": ("penalty",), "exponent": ("soft",), "limit_kwh": ("constraint",),
             "reference_kwh": ("penalty", "soft", "chebyshev")}


@dataclass(frozen=True)
class EnergyConfig:
    """The validated ``energy`` section."""

    objective: str = "penalty"
    weight: float = 0.1
    exponent: float = -0.07
    limit_kwh: float | None = None
    reference_kwh: float | None = None
    column: str = "train_energy_kwh"
    epochs: int | None = None
    table: str | None = None
    hardware: str | None = None
    campaign: str | None = None
    dataset: str | None = None
    missing: str = "error"
    predictor: str | None = None
    calibrate: bool = False
    epoch_scaling: str | None = None
    surrogate: str | None = None
    search_budget_kwh: float | None = None
    reference_point: tuple[float, float] | None = None
    trace: bool = True
    seed: int | None = None

    def objective_params(self) -> dict:
        """Parameters for :func:`ecnas_plugin.objectives.make_objective` (reference filled later)."""
        if self.objective == "penalty":
            return {"weight": self.weight}
        if self.objective == "soft":
            return {"exponent": self.exponent}
        if self.objective == "constraint":
            return {"limit_kwh": self.limit_kwh}
        return {}


KEYS = tuple(f.name for f in fields(EnergyConfig))


def _number(key: str, value: object, positive: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(key, f"must be > 0, got {value!r}")
    return float(value)


def _name(key: str, value: object, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a name (string), got {value!r}")
    return value


def parse_energy(value: object) -> EnergyConfig | None:
    """The ``energy`` config value → EnergyConfig, or None when energy is off (None/False)."""
    if value is None or value is False:
        return None
    if value is True:
        return EnergyConfig()
    if not isinstance(value, Mapping):
        raise ConfigError("energy", f"expected true, false or a mapping, got {value!r}")
    raw = dict(value)
    unknown = sorted(set(raw) - set(KEYS) - {"enabled"})
    if unknown:
        raise ConfigError(f"energy.{unknown[0]}", f"unknown key; known keys: {', '.join(KEYS + ('enabled',))}")
    enabled = raw.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("energy.enabled", f"expected true or false, got {enabled!r}")
    if not enabled:
        return None

    out: dict = {}
    objective = raw.get("objective", "penalty")
    if objective not in OBJECTIVES:
        raise ConfigError("energy.objective", f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    out["objective"] = objective
    for key, allowed in _ONLY_FOR.items():
        if raw.get(key) is not None and objective not in allowed:
            raise ConfigError(f"energy.{key}", f"applies to objective {' or '.join(allowed)}, not {objective!r}")
    if "weight" in raw:
        out["weight"] = _number("energy.weight", raw["weight"])
        if out["weight"] < 0:
            raise ConfigError("energy.weight", f"must be >= 0, got {raw['weight']!r}")
    if "exponent" in raw:
        out["exponent"] = _number("energy.exponent", raw["exponent"])
    out["limit_kwh"] = _number("energy.limit_kwh", raw.get("limit_kwh"), positive=True, allow_none=True)
    if objective == "constraint" and out["limit_kwh"] is None:
        raise ConfigError("energy.limit_kwh", "required for objective 'constraint'")
    out["reference_kwh"] = _number("energy.reference_kwh", raw.get("reference_kwh"), positive=True, allow_none=True)
    out["search_budget_kwh"] = _number("energy.search_budget_kwh", raw.get("search_budget_kwh"),
                                       positive=True, allow_none=True)
    column = _name("energy.column", raw.get("column", "train_energy_kwh"), allow_none=False)
    if not (column.endswith("_kwh") or column.endswith("_mj")):  # type: ignore[union-attr]
        raise ConfigError("energy.column", f"{column!r} is not an energy column (name ending _kwh or _mj)")
    out["column"] = column
    epochs = raw.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0):
        raise ConfigError("energy.epochs", f"expected a positive integer or null, got {epochs!r}")
    out["epochs"] = epochs
    for key in ("table", "hardware", "campaign", "dataset"):
        out[key] = _name(f"energy.{key}", raw.get(key))
    missing = raw.get("missing", "error")
    if missing not in MISSING_POLICIES:
        raise ConfigError("energy.missing", f"expected one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    out["missing"] = missing
    out["predictor"] = _name("energy.predictor", raw.get("predictor"))
    calibrate = raw.get("calibrate", False)
    if not isinstance(calibrate, bool):
        raise ConfigError("energy.calibrate", f"expected true or false, got {calibrate!r}")
    out["calibrate"] = calibrate
    scaling = raw.get("epoch_scaling")
    if scaling is not None and scaling not in EPOCH_SCALINGS:
        raise ConfigError("energy.epoch_scaling", f"expected null or one of {', '.join(EPOCH_SCALINGS)}, got {scaling!r}")
    out["epoch_scaling"] = scaling
    for key in ("predictor", "calibrate", "epoch_scaling"):
        if missing != "predict" and raw.get(key) not in (None, False):
            raise ConfigError(f"energy.{key}", "applies only with energy.missing: predict")
    surrogate = raw.get("surrogate")
    if surrogate is not None:
        try:
            out["surrogate"] = check_surrogate(surrogate, "energy.surrogate")
        except UnknownName as exc:
            raise ConfigError("energy.surrogate", str(exc)) from None
        if missing == "predict":
            raise ConfigError("energy.surrogate", "cannot be combined with energy.missing: predict: with a curve "
                                                  "surrogate every configuration the table lacks is the surrogate's "
                                                  "prediction (accuracy and energy); leave energy.missing at error")
        if column != "train_energy_kwh":
            raise ConfigError("energy.column", f"a curve surrogate predicts train_energy_kwh only, not {column!r}")
    ref = raw.get("reference_point")
    if ref is not None:
        if not isinstance(ref, (list, tuple)) or len(ref) != 2:
            raise ConfigError("energy.reference_point", f"expected [error, energy], got {ref!r}")
        out["reference_point"] = tuple(_number("energy.reference_point", v) for v in ref)
    trace = raw.get("trace", True)
    if not isinstance(trace, bool):
        raise ConfigError("energy.trace", f"expected true or false, got {trace!r}")
    out["trace"] = trace
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("energy.seed", f"expected an integer or null, got {seed!r}")
    out["seed"] = seed
    return EnergyConfig(**out)


def check_surrogate(value: object, key: str, error: type[ConfigError] = ConfigError) -> str:
    """A ``surrogate`` setting (the NASLib bridge's ``energy.surrogate``, a study space entry's
    ``surrogate``): a registered curve surrogate's name (fitted on the table when the run starts,
    seed 0, as :func:`ecnas_plugin.search.load_space` does) or the folder of a saved curve model.
    ``error(key, detail)`` for a value that is neither a name nor a folder; :class:`UnknownName`
    (naming ``key``) for a name no curve surrogate is registered under that is no model folder either."""
    from ecnas_plugin.energy.surrogates.curves import MODEL_FILE, curve_surrogate_classes

    if not isinstance(value, str) or not value:
        raise error(key, f"a curve surrogate's name or a saved curve model's folder, got {value!r}")
    if value not in curve_surrogate_classes() and not (Path(value) / MODEL_FILE).is_file():
        raise UnknownName("curve surrogate", value, curve_surrogate_classes(),
                          context=f"in {key} (nor a folder holding {MODEL_FILE})")
    return value


def energy_of_config(config: object) -> EnergyConfig | None:
    """Parse ``config.energy`` of a NASLib CfgNode (or any mapping); None when absent or off."""
    value = config.get("energy") if isinstance(config, Mapping) else getattr(config, "energy", None)
    return parse_energy(value)
