"""Energy table columns, units and validation rules: the only place they are defined.

Tables are long format: one row per (space, arch_key, dataset, epochs, hardware, campaign,
repeat). Every column name carries its unit (``_kwh``, ``_s``, ``_w``, ``_g``...); accuracies are
fractions in [0, 1]. Optional columns may be absent from a table; a column marked ``nullable``
may be empty in some rows where that value was not recorded (accuracy of an energy-only campaign,
CO2 or per-component energy a meter does not give); every other column may not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SchemaError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

# Where a row's energy came from. "estimated": a power model (TDP/load, a RAM model: codecarbon
# without RAPL), never a measurement; "scaled": derived from a measurement by scaling (a window to
# an epoch, a budget to another); "predicted": a surrogate's prediction (with its σ).
SOURCES = ("measured", "estimated", "scaled", "predicted")
DATA_SOURCES = ("measured", "estimated")  # what a campaign produces and a contribution may hold
METHODS = ("counter", "sampled", "estimated")  # strongest first
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "int" | "float"
    description: str
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None


KEY_COLUMNS = ("space", "arch_key", "dataset", "epochs", "hardware", "campaign", "repeat")

_COLUMNS = [
    # key
    Column("space", "str", "search space name, e.g. nasbench101", required=True),
    Column("arch_key", "str", "canonical architecture key of the space", required=True),
    Column("arch_text", "str", "the architecture in its space's text form (space.describe: NB101 ADJ:OPS), "
                               "for keys the space cannot decode (NB101 cells of 6-7 vertices)"),
    Column("dataset", "str", "dataset trained on, e.g. cifar10", required=True),
    Column("epochs", "int", "training budget in epochs", required=True, minimum=0),
    Column("hardware", "str", "device the row was measured on", required=True),
    Column("campaign", "str", "measurement campaign; rows of different campaigns never mix", required=True),
    Column("repeat", "int", "repeat index of the same (arch, budget)", required=True, minimum=0),
    # what the row is
    Column("source", "str", "how the energy was obtained: measured, estimated (a power model, not a "
                            "measurement), scaled or predicted", required=True, choices=SOURCES),
    Column("energy_method", "str",
           "how a measured energy was read: counter (hardware energy counter), sampled (integrated power "
           "samples) or estimated (power model/TDP, not a measurement); the weakest over the components",
           nullable=True, choices=METHODS),
    # energy and time of training to the budget
    Column("train_energy_kwh", "float", "energy to train to the budget, PUE applied as the manifest says", required=True, minimum=0),
    Column("train_time_s", "float", "training time to the budget", minimum=0),
    Column("co2eq_g", "float", "CO2-equivalent of the training energy", nullable=True, minimum=0),
    Column("train_energy_sd_kwh", "float", "standard deviation of a predicted training energy", minimum=0),
    # whole run (training plus evaluations), as the measuring tool reported it
    Column("run_energy_kwh", "float", "energy of the whole run incl. evaluations, PUE applied", minimum=0),
    Column("run_time_s", "float", "wall time of the whole run", nullable=True, minimum=0),
    Column("run_co2eq_g", "float", "CO2-equivalent of the whole run", minimum=0),
    Column("carbon_intensity_g_per_kwh", "float", "average carbon intensity over the run", minimum=0),
    Column("run_start_time", "str", "start timestamp of the run as recorded", nullable=True),
    Column("run_stop_time", "str", "stop timestamp of the run as recorded", nullable=True),
    # per component, raw (no PUE), whole run
    Column("gpu_energy_kwh", "float", "raw GPU energy of the whole run, no PUE", nullable=True, minimum=0),
    Column("cpu_energy_kwh", "float", "raw CPU energy of the whole run, no PUE", nullable=True, minimum=0),
    Column("ram_energy_kwh", "float", "raw RAM energy of the whole run, no PUE", nullable=True, minimum=0),
    Column("gpu_power_w", "float", "average GPU power over the run", nullable=True, minimum=0),
    Column("cpu_power_w", "float", "average CPU power over the run", nullable=True, minimum=0),
    Column("gpu_devices", "str", "GPU device names, ';'-separated"),
    Column("cpu_devices", "str", "CPU device names, ';'-separated"),
    Column("infer_energy_mj", "float", "inference energy per sample", minimum=0),
    # quality
    Column("train_acc", "float", "training accuracy at the budget (fraction)", nullable=True, minimum=0, maximum=1),
    Column("val_acc", "float", "validation accuracy at the budget (fraction)", nullable=True, minimum=0, maximum=1),
    Column("test_acc", "float", "test accuracy at the budget (fraction)", nullable=True, minimum=0, maximum=1),
    Column("nb101_val_acc_108", "float",
           "NAS-Bench-101's own 108-epoch validation accuracy (NASLib zc file), joined for reference, not measured in this campaign",
           nullable=True, minimum=0, maximum=1),
    # a steady-state window scaled to the epoch (source = scaled)
    Column("window_steps", "int", "training steps of each epoch that were metered (scaled to epoch_steps)", minimum=1),
    Column("window_warmup_steps", "int", "steps of each epoch before the metered window", minimum=0),
    Column("epoch_steps", "int", "training steps of a whole epoch (what a window was scaled to)", minimum=1),
    # size
    Column("params", "int", "trainable parameters", minimum=0),
    Column("flops", "float", "floating point operations of one forward pass", minimum=0),
]

# Per-checkpoint values (evaluations during training), stored beside the table.
CHECKPOINT_COLUMNS = KEY_COLUMNS + ("checkpoint",)
_CHECKPOINT_COLUMNS = [
    Column("checkpoint", "int", "position of the evaluation in the run (0 = untrained)", required=True, minimum=0),
    Column("epoch", "float", "epoch reached at this evaluation", required=True, minimum=0),
    Column("train_time_s", "float", "training time to this point", minimum=0),
    Column("train_loss", "float", "mean training loss of this epoch's steps", nullable=True, minimum=0),
    Column("skipped_steps", "int", "training steps of this epoch skipped because their loss was not finite",
           minimum=0),
    Column("train_acc", "float", "training accuracy (fraction)", nullable=True, minimum=0, maximum=1),
    Column("val_acc", "float", "validation accuracy (fraction)", nullable=True, minimum=0, maximum=1),
    Column("test_acc", "float", "test accuracy (fraction)", nullable=True, minimum=0, maximum=1),
    Column("energy_kwh", "float", "energy to this point, cumulative", minimum=0),
    Column("co2eq_g", "float", "CO2-equivalent to this point, cumulative", nullable=True, minimum=0),
    Column("carbon_intensity_g_per_kwh", "float", "average carbon intensity", minimum=0),
    Column("start_time", "str", "evaluation start timestamp as recorded"),
    Column("stop_time", "str", "evaluation stop timestamp as recorded"),
    Column("tracker_predicted_energy_kwh", "float", "the tracker's PREDICTION of full-budget energy (not a measurement)", nullable=True, minimum=0),
    Column("tracker_predicted_co2eq_g", "float", "the tracker's PREDICTION of full-budget CO2 (not a measurement)", nullable=True, minimum=0),
    Column("tracker_predicted_time_s", "float", "the tracker's PREDICTION of full-budget time (not a measurement)", nullable=True, minimum=0),
    Column("tracker_predicted_intensity_g_per_kwh", "float", "the tracker's PREDICTION of carbon intensity", nullable=True, minimum=0),
    Column("checkpoint_path", "str", "checkpoint path as recorded"),
]

COLUMNS: dict[str, Column] = {c.name: c for c in _COLUMNS}
CHECKPOINT_SCHEMA: dict[str, Column] = {
    **{k: COLUMNS[k] for k in KEY_COLUMNS},
    **{c.name: c for c in _CHECKPOINT_COLUMNS},
}

_DTYPES = {"str": object, "int": "int64", "float": "float64"}


def row_problems(frame: pd.DataFrame, columns: dict[str, Column] | None = None) -> list[tuple[int, str, str]]:
    """Every value that breaks its column's rule, as (row position, column, problem).

    Columns the schema does not define are skipped (``validate_frame`` refuses them).
    """
    columns = COLUMNS if columns is None else columns
    problems: list[tuple[int, str, str]] = []

    def flag(mask: np.ndarray, name: str, message: str) -> None:
        problems.extend((int(i), name, message) for i in np.flatnonzero(mask))

    for name in frame.columns:
        col = columns.get(name)
        if col is None:
            continue
        values = frame[name]
        empty = values.isna().to_numpy()
        if not col.nullable:
            flag(empty, name, "has NaN/empty values")
        if col.kind == "str":
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):  # fast path: all text
                flag(~empty & ~values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool), name, "must hold text")
        else:
            if values.dtype.kind not in "biufcm":  # numeric text ("1.5") is not a number: refuse, never convert
                text = values.map(lambda v: isinstance(v, (str, bytes))).to_numpy(dtype=bool)
                flag(text, name, "holds text where numbers belong")
                values = values.where(~text)
            numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            flag(~empty & np.isnan(numeric) & ~values.isna().to_numpy(), name, "must be numeric")
            flag(np.isinf(numeric), name, "has infinite values")
            with np.errstate(invalid="ignore"):
                if col.kind == "int":
                    flag(np.isfinite(numeric) & (np.floor(numeric) != numeric), name, "must hold integers")
                if col.minimum is not None:
                    flag(numeric < col.minimum, name, f"has values below {col.minimum}")
                if col.maximum is not None:
                    flag(numeric > col.maximum, name, f"has values above {col.maximum}")
        if col.choices is not None:
            flag(~empty & ~values.isin(col.choices).to_numpy(), name, f"must be one of {list(col.choices)}")
    return problems


def _describe_rows(rows: list[object], total: int) -> str:
    more = f" and {total - len(rows)} more" if total > len(rows) else ""
    return f"row(s) {', '.join(str(r) for r in rows)}{more}"


def validate_frame(frame: pd.DataFrame, columns: dict[str, Column] | None = None,
                   key: tuple[str, ...] = KEY_COLUMNS, what: str = "table") -> pd.DataFrame:
    """Check ``frame`` against the schema and return it with canonical dtypes.

    Raises SchemaError naming the column and the first offending rows for: unknown or missing
    columns, NaN or empty values where not allowed, negative energy, accuracy outside [0, 1],
    values outside their choices, and duplicate keys.
    """
    columns = COLUMNS if columns is None else columns
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:
        raise SchemaError(f"{what}: unknown column(s) {unknown}; the schema defines {sorted(columns)}",
                          column=unknown[0])
    missing = [c.name for c in columns.values() if c.required and c.name not in frame.columns]
    if missing:
        raise SchemaError(f"{what}: missing required column(s) {missing}", column=missing[0])
    problems = row_problems(frame, columns)
    if problems:
        _, column, message = problems[0]
        positions = [r for r, c, m in problems if c == column and m == message]
        rows = list(frame.index[positions[:5]])
        raise SchemaError(f"{what}: column {column!r} {message} at {_describe_rows(rows, len(positions))}",
                          column=column, rows=rows)

    out = {}
    for name in frame.columns:
        col = columns[name]
        values = frame[name]
        if col.kind == "str":
            out[name] = values.astype(object)
        else:
            numeric = pd.to_numeric(values)
            integral = col.kind == "int" and not numeric.isna().any()
            out[name] = numeric.astype("int64" if integral else "float64")
    result = pd.DataFrame(out, index=frame.index)
    dup = result.duplicated(list(key), keep=False).to_numpy()
    if dup.any():
        positions = np.flatnonzero(dup)
        rows = list(result.index[positions[:5]])
        first = result.iloc[positions[0]][list(key)].to_dict()
        raise SchemaError(f"{what}: duplicate key {first} at {_describe_rows(rows, int(dup.sum()))}",
                          column="arch_key", rows=rows)
    return result.reset_index(drop=True)


def check_schema_version(version: object, where: str) -> None:
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SchemaError(f"{where}: schema version {version!r} is not known to this ecnas-plugin "
                          f"(supported: {list(SUPPORTED_SCHEMA_VERSIONS)}); upgrade ecnas-plugin or rebuild the table")
