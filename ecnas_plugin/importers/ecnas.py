"""Importers for EC-NAS-Bench's energy tables (NAS-Bench-101 cells, CIFAR-10).

Reads the upstream ``.tfrecord`` files in their own format (TFRecord framing, JSON rows, the
``ModelMetricsEnergy`` protobuf decoded by a schema written here) and the 7-vertex surrogate
training data ``7v_data.pt`` (torch zip archive, loaded with ``weights_only=True``). Every field
is kept: run totals and per-device power/energy in the table, each evaluation in checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..adapters import nasbench101 as nb101
from ..errors import DataFormatError, EcnasError
from ..schema import J_PER_KWH
from ..hookspecs import hookimpl
from ..datasets import sha256_file
from ..table import EnergyTable, Manifest, TableSpec
from .protowire import WireError, decode
from .tfrecord import read_records

# EC-NAS's ModelMetricsEnergy (an extension of NAS-Bench-101's ModelMetrics), by field number.
_VALUE = {1: ("value", "double", False)}
_NAME = {1: ("name", "string", False)}
_DEVICE_USAGE = {
    1: ("avg_power_w", _VALUE, True),
    2: ("energy_j", _VALUE, True),
    3: ("device", _NAME, True),
}
_EVALUATION = {
    1: ("epoch", "double", False),
    2: ("train_time_s", "double", False),
    3: ("train_acc", "double", False),
    4: ("val_acc", "double", False),
    5: ("test_acc", "double", False),
    6: ("energy_kwh", "double", False),
    7: ("co2eq_g", "double", False),
    8: ("carbon_intensity_g_per_kwh", "double", False),
    9: ("start_time", "string", False),
    10: ("stop_time", "string", False),
    11: ("tracker_predicted_energy_kwh", "double", False),
    12: ("tracker_predicted_co2eq_g", "double", False),
    13: ("tracker_predicted_time_s", "double", False),
    14: ("tracker_predicted_intensity_g_per_kwh", "double", False),
    15: ("checkpoint_path", "string", False),
}
METRICS_SCHEMA = {
    1: ("evaluations", _EVALUATION, True),
    2: ("params", "int", False),
    3: ("run_time_s", "double", False),
    4: ("run_energy_kwh", "double", False),
    5: ("run_co2eq_g", "double", False),
    6: ("start_time", "string", False),
    7: ("stop_time", "string", False),
    8: ("carbon_intensity_g_per_kwh", "double", False),
    9: ("power", {1: ("gpu", _DEVICE_USAGE, False), 2: ("cpu", _DEVICE_USAGE, False)}, False),
}

EC_NAS_PUE = 1.59  # carbontracker's default, applied by EC-NAS to every energy it reports
EC_NAS_LICENSE = "MIT"
EC_NAS_CITATION = ("Bakhtiarifard, Igel, Selvan. EC-NAS: Energy Consumption Aware Tabular Benchmarks for "
                   "Neural Architecture Search. ICASSP 2024.")
DATASET = "cifar10"
SPACE = "nasbench101"


def _hardware_name(device_names: str) -> str:
    """One name per device model: drivers reported the same GPU with and without a vendor prefix."""
    first = device_names.split(";")[0]
    return first.removeprefix("NVIDIA ").strip()


def _device_totals(usage: Mapping | None) -> tuple[float, float, str] | None:
    """(raw energy kWh, summed average power W, device names) of one component, or None."""
    if not usage or not usage.get("energy_j"):
        return None
    energy = sum(e["value"] for e in usage["energy_j"]) / J_PER_KWH
    power = sum(p["value"] for p in usage["avg_power_w"])
    names = ";".join(d["name"] for d in usage["device"])
    return energy, power, names


def read_ecnas_tfrecord(path: Path, campaign: str, scaled_above: int | None = None
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse one EC-NAS file into (rows, checkpoints) DataFrames under the schema.

    ``scaled_above``: energies of budgets above this many epochs were scaled linearly from it,
    not measured (EC-NAS's ``linscale`` files); those rows get ``source = "scaled"``.
    Raises DataFormatError with the record's byte offset for anything malformed, including a
    stored module hash that is not the fingerprint of the stored cell.
    """
    rows, checkpoints = [], []
    repeats: dict[tuple[str, int], int] = {}
    for offset, payload in read_records(path):
        try:
            stored_hash, epochs, adjacency, operations, metrics_b64 = json.loads(payload)
            # upstream wrote MIME-style base64 (newline every 76 chars): strip those, refuse anything else
            raw = base64.b64decode(metrics_b64.replace("\n", ""), validate=True)
            metrics = decode(raw, METRICS_SCHEMA)
        except (ValueError, TypeError, binascii.Error) as exc:
            where = f" (protobuf byte {exc.pos})" if isinstance(exc, WireError) else ""
            raise DataFormatError(path, offset, f"record is not an EC-NAS row{where}: {exc}") from None
        try:
            cell = nb101.from_flat_adjacency(adjacency, operations)
            computed = nb101.module_hash(cell)
        except EcnasError as exc:
            raise DataFormatError(path, offset, f"record's cell is invalid: {exc}") from None
        if computed != stored_hash:
            raise DataFormatError(path, offset, f"stored module hash {stored_hash} is not the fingerprint "
                                                f"of the stored cell ({computed})")
        evaluations = metrics["evaluations"]
        if not evaluations:
            raise DataFormatError(path, offset, f"record of {stored_hash} has no evaluations")
        final = evaluations[-1]
        gpu = _device_totals(metrics.get("power", {}).get("gpu"))
        cpu = _device_totals(metrics.get("power", {}).get("cpu"))
        repeat = repeats.get((stored_hash, epochs), 0)
        repeats[(stored_hash, epochs)] = repeat + 1
        key = {"space": SPACE, "arch_key": stored_hash, "dataset": DATASET, "epochs": int(epochs),
               "hardware": _hardware_name(gpu[2]) if gpu else "unknown", "campaign": campaign, "repeat": repeat}
        try:
            row = {
                **key,
                "source": "scaled" if scaled_above is not None and epochs > scaled_above else "measured",
                "train_energy_kwh": final["energy_kwh"],
                "train_time_s": final["train_time_s"],
                "co2eq_g": final["co2eq_g"],
                "train_acc": final["train_acc"],
                "val_acc": final["val_acc"],
                "test_acc": final["test_acc"],
                "run_energy_kwh": metrics["run_energy_kwh"],
                "run_time_s": metrics["run_time_s"],
                "run_co2eq_g": metrics["run_co2eq_g"],
                "carbon_intensity_g_per_kwh": metrics["carbon_intensity_g_per_kwh"],
                "params": metrics["params"],
            }
        except KeyError as exc:
            raise DataFormatError(path, offset, f"record of {stored_hash} lacks field {exc.args[0]!r}") from None
        for field in ("start_time", "stop_time"):  # not every file records them
            if field in metrics:
                row[f"run_{field}"] = metrics[field]
        if gpu:
            row.update(gpu_energy_kwh=gpu[0], gpu_power_w=gpu[1], gpu_devices=gpu[2])
        if cpu:
            row.update(cpu_energy_kwh=cpu[0], cpu_power_w=cpu[1], cpu_devices=cpu[2])
        rows.append(row)
        for i, ev in enumerate(evaluations):
            checkpoints.append({**key, "checkpoint": i, **ev})
    if not rows:
        raise DataFormatError(path, 0, "file holds no records")
    return pd.DataFrame(rows), pd.DataFrame(checkpoints)


def _manifest(name: str, description: str, files: Mapping[str, Path], notes: str = "",
              pue: float | None = EC_NAS_PUE, tool: str = "carbontracker",
              components: tuple[str, ...] = ("gpu", "cpu")) -> Manifest:
    return Manifest(
        name=name, space=SPACE, description=description, tool=tool, pue=pue, components=components,
        license=EC_NAS_LICENSE, citation=EC_NAS_CITATION, notes=notes,
        source_files=tuple({"name": n, "sha256": sha256_file(p)} for n, p in sorted(files.items())),
    )


def _tfrecord_table(name: str, file: str, description: str, scaled_above: int | None = None, notes: str = ""):
    def build(paths: Mapping[str, Path]) -> EnergyTable:
        rows, checkpoints = read_ecnas_tfrecord(paths[file], campaign=name, scaled_above=scaled_above)
        return EnergyTable(rows, _manifest(name, description, {file: paths[file]}, notes), checkpoints)

    return TableSpec(name=name, space=SPACE, description=description, data_files=(file,), build=build)


# ---------------------------------------------------------------------------- 7 vertices
SEVEN_V_FILE = "7v_data.pt"
ZC_NB101_FILE = "zc_nasbench101.json"


def read_7v_arrays(path: Path) -> tuple[list[nb101.Cell], np.ndarray, np.ndarray]:
    """Cells (pruned), energy (kWh) and parameter counts of EC-NAS's ``7v_data.pt``, checked."""
    import torch  # heavy; only needed here

    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
        adjacency, opcodes, energy, params = (t.numpy() for t in data)
    except Exception as exc:  # torch raises many types for a bad archive
        raise DataFormatError(path, None, f"not the EC-NAS 7-vertex archive "
                                          f"(tuple of adjacency, ops, energy, params): {exc}") from None
    n = len(adjacency)
    if not (adjacency.shape == (n, 7, 7) and opcodes.shape == (n, 7) and len(energy) == n == len(params)):
        raise DataFormatError(path, None, f"unexpected shapes {adjacency.shape}, {opcodes.shape}, "
                                          f"{energy.shape}, {params.shape}")
    cells = []
    for i in range(n):
        try:
            cells.append(nb101.from_7v_arrays(adjacency[i], opcodes[i]).pruned())
        except EcnasError as exc:
            raise DataFormatError(path, None, f"cell {i}: {exc}") from None
    return cells, energy, params


def read_7v(path: Path) -> pd.DataFrame:
    """The 4,310 measured 7-vertex cells of EC-NAS's surrogate training data (4 epochs)."""
    cells, energy, params = read_7v_arrays(path)
    return pd.DataFrame({
        "space": SPACE, "arch_key": [nb101.module_hash(c) for c in cells], "dataset": DATASET, "epochs": 4, "hardware": "unknown",
        "campaign": "ecnas-7v", "repeat": 0, "source": "measured",
        "train_energy_kwh": energy.astype("float64"), "params": params.astype("int64"),
    })


def read_zc_nb101_accuracy(path: Path) -> pd.Series:
    """NAS-Bench-101 108-epoch validation accuracy (fraction) per module hash, from NASLib's zc file.

    Cells sampled more than once get the mean of their samples.
    """
    try:
        entries = json.loads(Path(path).read_text())["nasbench101"]["cifar10"]
    except (ValueError, KeyError) as exc:
        raise DataFormatError(path, None, f"not NASLib's zc_nasbench101.json: {exc}") from None
    keys, accs = [], []
    for text, entry in entries.items():
        try:
            cell = nb101.from_naslib_tuple(tuple(int(x) for x in text.strip("()").split(",")))
        except (ValueError, EcnasError) as exc:
            raise DataFormatError(path, None, f"entry {text}: {exc}") from None
        keys.append(nb101.module_hash(cell))
        accs.append(entry["val_accuracy"] / 100.0)
    return pd.Series(accs, index=keys).groupby(level=0).mean()


def _build_7v(paths: Mapping[str, Path]) -> EnergyTable:
    frame = read_7v(paths[SEVEN_V_FILE])
    accuracy = read_zc_nb101_accuracy(paths[ZC_NB101_FILE])
    frame["nb101_val_acc_108"] = frame["arch_key"].map(accuracy).astype("float64")
    manifest = _manifest(
        "ecnas-7v", _DESCRIPTIONS["ecnas-7v"], {SEVEN_V_FILE: paths[SEVEN_V_FILE], ZC_NB101_FILE: paths[ZC_NB101_FILE]},
        pue=None, tool="unrecorded (EC-NAS surrogate training data)", components=(),
        notes="Energy as published in raghavian/surrogate-ec-nasbench 7v_data.pt; hardware, PUE and the components "
              "measured are not recorded there. Values run 30-45% lower than ecnas-4v/ecnas-5v on shared cells: a "
              "different campaign. nb101_val_acc_108 is NAS-Bench-101's 108-epoch validation accuracy from NASLib's "
              "zc_nasbench101.json (mean over samples), empty where NASLib has no sample of the cell.")
    return EnergyTable(frame, manifest)


_DESCRIPTIONS = {
    "ecnas-4v": "EC-NAS measured: all 91 NB101 cells with <=4 vertices, 4/12/36/108 epochs, 3 repeats, CIFAR-10",
    "ecnas-4v-linscale": "EC-NAS 4-vertex cells with NAS-Bench-101 accuracies; energy measured at 4 epochs "
                         "and scaled linearly to 12/36/108",
    "ecnas-5v": "EC-NAS measured: all 2,532 NB101 cells with <=5 vertices, 4 epochs, CIFAR-10",
    "ecnas-7v": "EC-NAS surrogate training data: measured 4-epoch energy of 4,310 NB101 7-vertex cells",
}

TABLES = (
    _tfrecord_table("ecnas-4v", "energy_4V9E_4epochs.tfrecord", _DESCRIPTIONS["ecnas-4v"]),
    _tfrecord_table("ecnas-4v-linscale", "energy_4V9E_linscale.tfrecord", _DESCRIPTIONS["ecnas-4v-linscale"],
                    scaled_above=4, notes="Accuracies and times are NAS-Bench-101's; energies above 4 epochs are "
                                          "the measured 4-epoch value scaled linearly (source = scaled)."),
    _tfrecord_table("ecnas-5v", "energy_5V9E_4epochs.tfrecord", _DESCRIPTIONS["ecnas-5v"]),
    TableSpec(name="ecnas-7v", space=SPACE, description=_DESCRIPTIONS["ecnas-7v"],
              data_files=(SEVEN_V_FILE, ZC_NB101_FILE), build=_build_7v),
)


@hookimpl
def ecnas_tables():
    return list(TABLES)
