"""Measurement campaigns: train cells, meter every epoch, journal each finished measurement.

A campaign (:class:`CampaignSpec`) names a space, its cells (a list, or a stratified sample from
:func:`sample_cells`), the epochs, a dataset, a meter, the PUE and a hardware label.
:func:`run_campaign` trains every (cell, repeat) not yet in the journal, through an executor
(local by default, Ray to scale out), and appends each finished measurement to an append-only
JSON-lines journal; the driver is its only writer. Kill it at any moment and run it again: it
resumes, losing no finished measurement and writing none twice (see the journal protocol below).
When every measurement is in, the journal becomes an :class:`EnergyTable` (one row per cell and
repeat; per-epoch values in the checkpoints frame) saved to ``<out>/table``.

Datasets: ``flowers17`` (real images, real accuracies) and ``cifar10-synthetic`` (CIFAR-10-shaped
random inputs: energy at CIFAR scale only; accuracy columns stay empty, and the dataset name says
so). The meter window covers each epoch's training steps; evaluation runs outside it.

Journal protocol (one writer, the campaign driver, holding an exclusive ``flock`` on
``<journal>.lock``): line 1 is the campaign header, every later line one finished measurement,
written as ONE ``write`` of ``json + "\\n"`` to a file opened ``O_APPEND`` and ``fsync``-ed before
the measurement counts as finished; every line carries the sha256 of its own content. A kill can
leave at most one torn line, at the end and without its newline: on open it is reported and cut
off (it never was a finished measurement). A newline-terminated line that fails its checksum, or
a key recorded twice, means outside damage and raises :class:`DataFormatError`: nothing is
silently merged or dropped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ecnas_plugin.version import __version__
from ecnas_plugin.errors import DataFormatError, EcnasError, UnknownName

SPACES = ("nasbench101", "nasbench201")
DATASETS = ("flowers17", "cifar10-synthetic")
JOURNAL_FILE = "journal.jsonl"
TABLE_DIR = "table"
# Changing any of these between runs would mix incomparable measurements in one journal.
_IDENTITY_EXCLUDED = ("archs", "data_root", "torch_threads")
# Default network sizes: NAS-Bench-201 / NAS-Bench-101 CIFAR-10 configurations.
DEFAULT_NETWORK = {"nasbench201": {"C": 16, "N": 5}, "nasbench101": {"stem_channels": 128, "num_stacks": 3,
                                                                    "cells_per_stack": 3}}


class CampaignError(EcnasError, RuntimeError):
    """Some measurements of a campaign failed; the finished ones are in the journal."""


# ====================================================================== the journal
FORMAT = 1


class JournalBusy(EcnasError, RuntimeError):
    """Another process is writing this journal."""


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def encode(record: Mapping[str, Any]) -> bytes:
    """One journal line (with its checksum and trailing newline)."""
    sealed = {**record, "sha256": _digest(record)}
    return (json.dumps(sealed, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def record_key(record: Mapping[str, Any]) -> tuple[str, int]:
    return (record["arch_key"], int(record["repeat"]))


def read(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """Header, measurement records and the byte length of the intact part of ``path``.

    Bytes after the last newline are a torn write (reported with a warning, not returned).
    """
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    if end < len(data):
        warnings.warn(f"{path}: ignoring a torn last line of {len(data) - end} bytes at byte {end} "
                      f"(a write interrupted by a kill; that measurement was not finished)", stacklevel=2)
    header = None
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], int] = {}
    offset = 0
    for line in data[:end].splitlines(keepends=True):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and record.get("sha256") == _digest(record)
        except (json.JSONDecodeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise DataFormatError(path, offset, "journal line is corrupt (bad JSON or checksum) but complete: "
                                                "the file was damaged after it was written; refusing to guess")
        if offset == 0:
            if record.get("kind") != "campaign" or record.get("format") != FORMAT:
                raise DataFormatError(path, 0, f"first line is not a format-{FORMAT} campaign header")
            header = record
        elif record.get("kind") != "measurement":
            raise DataFormatError(path, offset, f"unexpected record kind {record.get('kind')!r}")
        else:
            key = record_key(record)
            if key in seen:
                raise DataFormatError(path, offset, f"measurement {key} recorded twice (first at byte "
                                                    f"{seen[key]}): two writers? refusing to merge")
            seen[key] = offset
            records.append(record)
        offset += len(line)
    return header, records, end


class Journal:
    """The writer side: lock, recover a torn tail, check the header, append records durably."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.keys: set[tuple[str, int]] = set()

    def open(self, header: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Lock the journal and return (header as stored, finished records).

        A new journal gets ``header``; an existing one must have been started with it (compared
        by the caller through the returned header).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            stored, records, intact = read(self.path)
            if self.path.exists() and intact < self.path.stat().st_size:
                os.truncate(self.path, intact)  # drop the torn tail so the next line starts clean
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if stored is None:
                stored = {"kind": "campaign", "format": FORMAT, **header}
                self._write(encode(stored))
                _fsync_dir(self.path.parent)
                stored = read(self.path)[0]
        except BaseException:
            self.close()
            raise
        self.keys = {record_key(r) for r in records}
        return stored, records  # type: ignore[return-value]

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one finished measurement durably; a key already recorded is refused."""
        if self._fd is None:
            raise EcnasError(f"journal {self.path} is not open")
        key = record_key(record)
        if key in self.keys:
            raise EcnasError(f"measurement {key} is already in {self.path}; not writing it twice")
        self._write(encode({"kind": "measurement", **record}))
        self.keys.add(key)

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        os.fsync(self._fd)  # type: ignore[arg-type]

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # no flock (Windows): single-writer is the user's responsibility
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalBusy(f"{self.path} is being written by another process "
                              f"(lock {lock_path} is held); wait for it or use another output folder") from None

    def close(self) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)  # closing the lock fd releases the flock
                setattr(self, attr, None)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ====================================================================== the campaign
@dataclass(frozen=True)
class CampaignSpec:
    """What to measure and how. ``archs`` are canonical NB201 arch strings, or NB101 cells as
    ``ADJ:OPS`` (flattened adjacency, comma-separated ops; a module hash alone cannot be built).
    ``hardware`` is the label rows get (``""``: detected, e.g. ``"cpu: AMD EPYC 7B13"``).
    ``network`` overrides builder sizes (NB201: C, N; NB101: stem_channels, num_stacks,
    cells_per_stack); the defaults are the benchmarks' CIFAR-10 networks.
    """

    name: str
    space: str
    archs: tuple[str, ...]
    epochs: int
    dataset: str = "flowers17"
    meter: str = "auto"
    pue: float = 1.0
    hardware: str = ""
    repeats: int = 1
    seed: int = 0
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    network: Mapping[str, int] = field(default_factory=dict)
    synthetic_samples: int = 2048
    data_root: str = ""
    torch_threads: int | None = None
    license: str = "CC-BY-4.0"
    citation: str = ""

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise UnknownName("campaign search space", self.space, SPACES)
        if self.dataset not in DATASETS:
            raise UnknownName("campaign dataset", self.dataset, DATASETS)
        if not self.name or "\n" in self.name:
            raise ValueError(f"campaign name must be one non-empty line, got {self.name!r}")
        if self.epochs < 1 or self.repeats < 1 or self.batch_size < 1:
            raise ValueError("epochs, repeats and batch_size must be >= 1")
        if not (math.isfinite(self.pue) and self.pue >= 1.0):
            raise ValueError(f"PUE must be >= 1.0 (1.0 = none), got {self.pue!r}")
        unknown = set(self.network) - set(DEFAULT_NETWORK[self.space])
        if unknown:
            raise UnknownName(f"{self.space} network setting", sorted(unknown)[0], DEFAULT_NETWORK[self.space])
        archs = tuple(canonical_arch(self.space, a) for a in self.archs)
        if len(set(archs)) != len(archs):
            raise ValueError("the cell list names a cell twice")
        object.__setattr__(self, "archs", archs)
        object.__setattr__(self, "network", {**DEFAULT_NETWORK[self.space], **dict(self.network)})
        if not self.hardware:
            object.__setattr__(self, "hardware", detect_hardware())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["archs"], data["network"] = list(self.archs), dict(self.network)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CampaignSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "archs" else v) for k, v in data.items() if k in known})

    def identity(self) -> dict[str, Any]:
        """The settings every measurement of this campaign shares (what a resume must not change)."""
        return {k: v for k, v in self.to_dict().items() if k not in _IDENTITY_EXCLUDED}


def canonical_arch(space: str, arch: object) -> str:
    """The buildable form of a cell: NB201 arch string; NB101 ``ADJ:OPS`` of the pruned cell."""
    if space == "nasbench201":
        from ecnas_plugin.adapters.nasbench201 import NasBench201

        adapter = NasBench201()
        return adapter.canonical_key(adapter.parse_arch(arch) if isinstance(arch, str) else arch)
    from ecnas_plugin.adapters.nasbench101 import Cell, NasBench101, to_flat_adjacency
    from ecnas_plugin.errors import InvalidArchitecture

    cell = NasBench101().parse_arch(arch) if isinstance(arch, str) else arch
    if isinstance(cell, (tuple, list)) and len(cell) == 2:
        cell = Cell(*cell)
    if not isinstance(cell, Cell):
        raise InvalidArchitecture("not-buildable", "a module hash names a cell but cannot build it; "
                                  "give the cell as ADJ:OPS or JSON {matrix, ops}", arch)
    return ":".join(to_flat_adjacency(cell.pruned()))


def arch_key(space: str, arch: str) -> str:
    """The table key of a buildable cell (NB101: module hash; NB201: the arch string itself)."""
    if space == "nasbench201":
        return arch
    from ecnas_plugin.adapters.nasbench101 import from_flat_adjacency, module_hash

    return module_hash(from_flat_adjacency(*arch.split(":", 1)))


def detect_hardware() -> str:
    """A label for the device training runs on: the CUDA GPU's name, else the CPU model."""
    import torch

    if torch.cuda.is_available():
        return f"gpu: {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}"


# ---------------------------------------------------------------------- stratified samples
def _strata(space: str, max_vertices: int) -> list[tuple[tuple, str]]:
    """Every cell of the space with its stratum: op counts (NB201); vertices, edges, op counts (NB101)."""
    if space == "nasbench201":
        from ecnas_plugin.adapters.nasbench201 import OPS, to_arch_str

        return [(tuple(ops.count(o) for o in OPS), to_arch_str(ops)) for ops in itertools.product(OPS, repeat=6)]
    if space == "nasbench101":
        from ecnas_plugin.adapters.nasbench101 import OPS, enumerate_cells, to_flat_adjacency

        out = []
        for cell in enumerate_cells(max_vertices):
            inner = tuple(cell.ops)[1:-1]
            stratum = (cell.num_vertices, cell.num_edges, *(inner.count(o) for o in OPS))
            out.append((stratum, ":".join(to_flat_adjacency(cell))))
        return out
    raise UnknownName("campaign search space", space, SPACES)


def sample_cells(space: str, n: int, seed: int = 0, max_vertices: int = 5) -> list[str]:
    """``n`` distinct cells drawn by systematic stratified sampling over the whole space.

    Cells are ordered by stratum (NB201: how many edges carry each op; NB101: vertices, edges and
    op counts, over cells of at most ``max_vertices`` vertices), randomly within a stratum, and
    every (size/n)-th is taken from a random start: each stratum gets its proportional share
    (within one cell), so the sample spans cheap and expensive cells alike.
    """
    population = _strata(space, max_vertices)
    if not 1 <= n <= len(population):
        raise ValueError(f"sample size must be in 1..{len(population)} for {space}, got {n}")
    rng = np.random.default_rng(seed)
    jitter = rng.random(len(population))
    order = sorted(range(len(population)), key=lambda i: (population[i][0], jitter[i]))
    step = len(population) / n
    start = rng.uniform(0, step)
    return [population[order[int(start + i * step)]][1] for i in range(n)]


# ---------------------------------------------------------------------- meters
def make_meter(name: str, gpus: Sequence[int] | None = None):
    """A meter by name: ``auto`` (best that works here), ``nvml``, ``rapl``, ``codecarbon``, or
    several joined by ``+`` (e.g. ``nvml+rapl``) combined over one window. ``gpus`` restricts NVML
    to those device indices (a task's own GPU, not its neighbours')."""
    from ecnas_plugin.energy.meters import CombinedMeter, NvmlMeter, default_meter

    if name == "auto":
        meter = default_meter()
    else:
        classes = meter_classes()
        parts = name.split("+")
        for part in parts:
            if part not in classes:
                raise UnknownName("meter", part, ["auto", *classes])
        meters = [classes[p]() for p in parts]
        meter = meters[0] if len(meters) == 1 else CombinedMeter(meters)
    if gpus is not None:
        for m in getattr(meter, "meters", [meter]):
            if isinstance(m, NvmlMeter):
                m.device_indices = list(gpus)
    return meter


def visible_gpus() -> list[int] | None:
    """NVML indices of the GPUs this process may use (``CUDA_VISIBLE_DEVICES``, as Ray sets it)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not all(v.strip().isdigit() for v in value.split(",")):
        return None  # unset, or UUIDs: NVML meters every GPU and the record says which
    return [int(v) for v in value.split(",")]


def meter_classes() -> dict[str, type]:
    """Meter classes by name, as the plugins (built-ins first) registered them through ``ecnas_meters``.

    A broken plugin is reported by the registry and skipped; the others still measure."""
    from ecnas_plugin.registry import get_registry

    return dict(get_registry().items["meters"])


# ---------------------------------------------------------------------- one measurement
@lru_cache(maxsize=4)
def _data(dataset: str, data_root: str, samples: int, seed: int):
    from ecnas_plugin.networks import load_flowers17, synthetic_cifar10

    if dataset == "flowers17":
        return load_flowers17(data_root or None)  # no folder given: the data registry's verified files
    return (synthetic_cifar10(samples, seed=seed), None, None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def measure(spec_data: Mapping[str, Any], arch: str, repeat: int) -> dict[str, Any]:
    """Train one cell once under the campaign's settings, metering every epoch.

    Returns the journal record: key, per-epoch readings (raw joules per component, methods,
    durations, CO2, accuracies) and model size. Runs in the driver or in a worker; writes nothing.
    """
    import torch

    from ecnas_plugin.networks import build_nb101, build_nb201, count_flops, count_params, evaluate, train

    spec = CampaignSpec.from_dict(spec_data)
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    train_split, val, test = _data(spec.dataset, spec.data_root, spec.synthetic_samples, spec.seed)
    classes = 17 if spec.dataset == "flowers17" else 10
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(spec.seed + repeat)
    if spec.space == "nasbench201":
        model = build_nb201(arch, num_classes=classes, **spec.network)
    else:
        from ecnas_plugin.adapters.nasbench101 import from_flat_adjacency

        model = build_nb101(from_flat_adjacency(*arch.split(":", 1)), num_classes=classes, bn_momentum=0.1,
                            **spec.network)
    model.to(device)
    input_shape = tuple(train_split.x.shape[1:])
    params, flops = count_params(model), count_flops(model, input_shape)
    meter = make_meter(spec.meter, visible_gpus() if device.type == "cuda" else None)
    epochs: list[dict[str, Any]] = []
    window: dict[str, Any] = {}

    def start(epoch: int) -> None:
        window["start"] = _now()
        meter.start()

    def end(epoch: int, stats) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()  # the window must cover the queued kernels
        reading = meter.stop()
        stop = _now()
        real = spec.dataset == "flowers17"
        epochs.append({
            "epoch": epoch, "start_time": window["start"], "stop_time": stop,
            "duration_s": reading.duration_s, "energy_j": dict(reading.energy_j), "method": dict(reading.method),
            "co2eq_g": reading.co2eq_g, "devices": list(reading.devices),
            "train_acc": stats.train_acc if real else None,
            "val_acc": evaluate(model, val) if real else None,
            "test_acc": evaluate(model, test) if real else None,
        })

    started, t0 = _now(), time.perf_counter()
    try:
        train(model, train_split, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
              optimizer=spec.optimizer, seed=spec.seed + repeat, on_epoch_start=start, on_epoch_end=end)
    finally:
        meter.abandon()  # no-op unless training raised inside a window
    return {
        "arch_key": arch_key(spec.space, arch), "arch": arch, "repeat": repeat,
        "meter": meter.name, "device": detect_hardware(), "host": platform.node(), "pid": os.getpid(),
        "params": params, "flops": flops, "run_start_time": started, "run_stop_time": _now(),
        "run_time_s": time.perf_counter() - t0, "epochs": epochs,
        "torch": torch.__version__,
    }


# ---------------------------------------------------------------------- running
@dataclass
class CampaignResult:
    """What a run did: the table (when complete), where things are, and what was measured now."""

    table: Any  # EnergyTable
    journal: Path
    table_dir: Path
    measured_now: int
    resumed: int


def run_campaign(spec: CampaignSpec, out: Path | str, executor: object = "local", *, progress: bool = True,
                 on_record: Callable[[dict[str, Any]], None] | None = None) -> CampaignResult:
    """Measure every (cell, repeat) of ``spec`` not yet in ``<out>/journal.jsonl``, then save the table.

    ``executor`` is ``"local"``, ``"ray"`` or an executor object (see ``executors.py``). Only this
    function (the driver) writes the journal, one fsync-ed line per finished measurement, so
    concurrent workers can neither lose nor duplicate a row. Measurements that fail are not
    journaled; :class:`CampaignError` lists them after the others finished (re-run to retry).
    """
    from tqdm.auto import tqdm

    from ecnas_plugin.energy.executors import get_executor

    out = Path(out)
    runner = get_executor(executor) if isinstance(executor, str) else executor
    journal = Journal(out / JOURNAL_FILE)
    header, records = journal.open({"spec": spec.to_dict()})
    try:
        stored = CampaignSpec.from_dict(header["spec"])
        if stored.identity() != spec.identity():
            diff = sorted(k for k, v in spec.identity().items() if stored.identity().get(k) != v)
            raise CampaignError(f"{journal.path} belongs to a campaign with other settings ({', '.join(diff)}); "
                                f"use another output folder or the same settings")
        done = set(journal.keys)
        todo = [(a, r) for a in spec.archs for r in range(spec.repeats) if (arch_key(spec.space, a), r) not in done]
        failures: list[str] = []
        bar = tqdm(total=len(done) + len(todo), initial=len(done), desc=f"measure {spec.name}",
                   unit="run", disable=not progress)
        with bar:
            for (arch, repeat), outcome in runner.map(measure, spec.to_dict(), todo):
                if isinstance(outcome, BaseException):
                    failures.append(f"{arch} repeat {repeat}: {type(outcome).__name__}: {outcome}")
                    continue
                outcome = {**outcome, "executor": getattr(runner, "name", type(runner).__name__)}
                journal.append(outcome)
                records.append(outcome)
                bar.update(1)
                if on_record is not None:
                    on_record(outcome)
    finally:
        journal.close()
    if failures:
        raise CampaignError(f"{len(failures)} measurement(s) failed (the {len(records)} finished are in "
                            f"{journal.path}; run again to retry):\n  " + "\n  ".join(failures))
    table = build_table(spec, records)
    table.save(out / TABLE_DIR)
    return CampaignResult(table, journal.path, out / TABLE_DIR, len(todo), len(done))


def load_journal(path: Path | str) -> tuple[CampaignSpec, list[dict[str, Any]]]:
    """The campaign spec and finished measurements of a journal (a torn tail is ignored)."""
    header, records, _ = read(Path(path))
    if header is None:
        raise DataFormatError(path, 0, "empty journal: no campaign header")
    return CampaignSpec.from_dict(header["spec"]), records


# ---------------------------------------------------------------------- the table
def build_table(spec: CampaignSpec, records: Sequence[Mapping[str, Any]]):
    """The campaign's EnergyTable: one row per measurement, one checkpoint row per epoch.

    Energies: ``train_energy_kwh`` is the sum of the epoch windows with the PUE applied;
    ``<component>_energy_kwh`` stay raw. Refuses records from different meters, methods or
    devices: one campaign, one way of measuring.
    """
    import pandas as pd

    from ecnas_plugin.energy.meters.base import weakest_method
    from ecnas_plugin.schema import J_PER_KWH
    from ecnas_plugin.table import EnergyTable, Manifest

    if not records:
        raise CampaignError(f"campaign {spec.name!r} has no finished measurement")
    first = records[0]
    methods = first["epochs"][0]["method"]
    for rec in records:
        for what, value, ref in (("meter", rec["meter"], first["meter"]), ("device", rec["device"], first["device"]),
                                 ("methods", [e["method"] for e in rec["epochs"]], [methods] * len(rec["epochs"]))):
            if value != ref:
                raise CampaignError(f"campaign {spec.name!r} mixes {what}: {rec['arch_key']} repeat {rec['repeat']} "
                                    f"has {value!r}, others {ref!r}; split it into separate campaigns")
    components = sorted(methods)
    with_co2 = all(e["co2eq_g"] is not None for r in records for e in r["epochs"])
    real = spec.dataset == "flowers17"
    rows, checkpoints = [], []
    for rec in records:
        key = {"space": spec.space, "arch_key": rec["arch_key"], "dataset": spec.dataset, "epochs": spec.epochs,
               "hardware": spec.hardware, "campaign": spec.name, "repeat": rec["repeat"]}
        joules = {c: 0.0 for c in components}
        seconds = co2 = 0.0
        for e in rec["epochs"]:
            for c in components:
                joules[c] += e["energy_j"][c]
            seconds += e["duration_s"]
            if with_co2:
                co2 += e["co2eq_g"] * spec.pue
            checkpoints.append({
                **key, "checkpoint": e["epoch"], "epoch": float(e["epoch"]), "train_time_s": seconds,
                "train_acc": e["train_acc"], "val_acc": e["val_acc"], "test_acc": e["test_acc"],
                "energy_kwh": sum(joules.values()) / J_PER_KWH * spec.pue,
                **({"co2eq_g": co2} if with_co2 else {}),
                "start_time": e["start_time"], "stop_time": e["stop_time"],
            })
        last = rec["epochs"][-1]
        row = {**key, "source": "measured", "train_energy_kwh": sum(joules.values()) / J_PER_KWH * spec.pue,
               "train_time_s": seconds, "run_time_s": rec["run_time_s"],
               "run_start_time": rec["run_start_time"], "run_stop_time": rec["run_stop_time"],
               **{f"{c}_energy_kwh": j / J_PER_KWH for c, j in joules.items()},
               **{f"{c}_power_w": joules[c] / seconds for c in ("gpu", "cpu") if c in joules and seconds > 0},
               "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": last["test_acc"],
               "params": rec["params"], "flops": float(rec["flops"])}
        if with_co2:
            row["co2eq_g"] = co2
        row["energy_method"] = weakest_method(methods.values())
        rows.append(row)
    estimated = sorted(c for c, m in methods.items() if m == "estimated")
    executors = sorted({r.get("executor", "local") for r in records})
    tool = (f"ecnas-plugin {__version__} `ecnas measure`; meter {first['meter']} ("
            + ", ".join(f"{c}: {m}" for c, m in sorted(methods.items())) + ")")
    metadata = {**spec.identity(), "cells": len({r["arch_key"] for r in records}), "measurements": len(records),
                "meter": first["meter"], "methods": methods, "device": first["device"],
                "hosts": len({r["host"] for r in records}), "executors": executors, "torch": first["torch"],
                "energy_window": "training steps of each epoch; evaluation outside the window",
                "accuracy": "real (Flowers-17 val/test splits)" if real else
                            "none: synthetic CIFAR-10-shaped inputs, energy only"}
    notes = []
    if estimated:
        notes.append(f"ESTIMATED, NOT MEASURED: {', '.join(estimated)} energy comes from a power model "
                     f"(codecarbon TDP/load or RAM model), not from an energy counter.")
    if not real:
        notes.append("Energy-only campaign on synthetic CIFAR-10-shaped inputs: accuracy columns are empty.")
    if executors != ["local"] and {"cpu", "ram"} & set(components):
        notes.append("CPU/RAM counters are machine-wide: where several tasks shared a node their windows "
                     "include each other's load.")
    notes.append("Energy covers the training steps of every epoch (evaluation excluded); component columns "
                 "are raw, train_energy_kwh has the PUE applied.")
    manifest = Manifest(
        name=spec.name, space=spec.space,
        description=f"{spec.space} training energy on {spec.dataset}, {spec.epochs} epoch(s), "
                    f"{len(records)} measurement(s) by `ecnas measure`",
        tool=tool, pue=float(spec.pue), components=tuple(components), license=spec.license,
        citation=spec.citation, hardware=(spec.hardware,), notes="\n".join(notes), campaigns=(metadata,))
    frame = pd.DataFrame(rows)
    return EnergyTable(frame, manifest, pd.DataFrame(checkpoints))


def campaign_metadata(manifest) -> dict[str, Any] | None:
    """The settings of the (first) campaign recorded in a manifest by :func:`build_table`, or None."""
    return dict(manifest.campaigns[0]) if manifest.campaigns else None


