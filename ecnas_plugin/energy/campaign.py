"""Measurement campaigns: train cells, meter every epoch, journal each finished measurement.

A campaign (:class:`CampaignSpec`) names a registered search space, its cells (a list, or a
stratified sample from :func:`sample_cells`), the epochs, a dataset, a meter, the PUE and a
hardware label. Nothing here knows any particular space: the space comes from the registry and
must offer a network builder (``require("network")``; a stratified sample also needs
``enumerate`` and ``strata``). Its ``network_defaults`` name the builder settings a campaign may
override; a cell is stored as ``space.describe(space.arch(cell))`` (text the space reads back
into a buildable architecture), keyed by ``space.canonical_key`` and built with
``space.build_network(arch, num_classes, **network)``.

:func:`run_campaign` trains every (cell, repeat) not yet in the journal, through an executor
(local by default, Ray to scale out), and appends each finished measurement to the append-only
JSON-lines journal of :mod:`ecnas_plugin.energy.journal`; the driver is its only writer. Kill it
at any moment and run it again: it resumes, losing no finished measurement and writing none twice.
When every measurement is in, the journal becomes an :class:`EnergyTable` (one row per cell and
repeat; per-epoch values in the checkpoints frame) saved to ``<out>/table``.

Datasets: ``flowers17`` (real images, real accuracies) and ``cifar10-synthetic`` (CIFAR-10-shaped
random inputs: energy at CIFAR scale only; accuracy columns stay empty, and the dataset name says
so). The meter window covers each epoch's training steps (the meter itself synchronises CUDA at
the window's edges); evaluation runs outside it.
"""

from __future__ import annotations

import inspect
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from ecnas_plugin.errors import ConfigError, DataFormatError, EcnasError, UnknownName
from ecnas_plugin.version import __version__

from .journal import Journal, JournalBusy, read  # noqa: F401  (JournalBusy: what a second driver gets)

DATASETS = ("flowers17", "cifar10-synthetic")
JOURNAL_FILE = "journal.jsonl"
TABLE_DIR = "table"
# Changing any of these between runs would mix incomparable measurements in one journal.
_IDENTITY_EXCLUDED = ("archs", "data_root", "torch_threads")
MEASURE_FLOW = "ecnas measure"
SAMPLE_FLOW = "ecnas measure --sample"


class CampaignError(EcnasError, RuntimeError):
    """Some measurements of a campaign failed; the finished ones are in the journal."""


def measurable_space(space: object, *, sample: bool = False):
    """The registered space ``space`` (a name or a SearchSpace), refused by name when it cannot be
    measured: it needs a network builder, and for a stratified sample an enumeration and strata."""
    from ecnas_plugin.adapters.base import SearchSpace
    from ecnas_plugin.registry import get_registry

    resolved = space if isinstance(space, SearchSpace) else get_registry().space(space)
    resolved.require("network", flow=MEASURE_FLOW)
    if sample and not resolved.supports("design"):
        resolved.require("enumerate", "strata", flow=SAMPLE_FLOW)
    return resolved


# ====================================================================== the campaign
@dataclass(frozen=True)
class CampaignSpec:
    """What to measure and how.

    ``space`` is the name of a registered search space with a network builder (a SearchSpace
    given here is stored by its name). ``archs`` are
    cells in any text or object form the space accepts; they are stored as the space's buildable
    text (``describe``: NB201's arch string, NB101's ``ADJ:OPS``), so a form that names a cell
    without describing it (a module hash of a large NB101 cell) is refused with the space's rule.
    ``hardware`` is the label rows get (``""``: detected, e.g. ``"cpu: AMD EPYC 7B13"``).
    ``network`` overrides the space's builder settings (its ``network_defaults``, which are the
    rest of the recorded ``network``). ``lr``, ``optimizer``, ``weight_decay`` and ``schedule``
    train every cell, except where the space's ``training_settings`` fixes them per configuration
    (a joint architecture + hyperparameter space); the manifest says which.
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
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    network: Mapping[str, int] = field(default_factory=dict)
    # Steady-state window: after window_warmup steps, meter window_steps steps of each epoch and
    # scale them to the epoch's steps (rows say source = scaled). Each epoch then trains only
    # warmup + window steps: a windowed campaign measures cost, and records no accuracy.
    window_steps: int = 0
    window_warmup: int = 0
    synthetic_samples: int = 2048
    data_root: str = ""
    torch_threads: int | None = None
    license: str = "CC-BY-4.0"
    citation: str = ""

    def __post_init__(self) -> None:
        space = measurable_space(getattr(self.space, "name", self.space))  # always the registry's space
        if self.dataset not in DATASETS:
            raise UnknownName("campaign dataset", self.dataset, DATASETS)
        from ecnas_plugin.datasets import PLAIN_NAME

        if not isinstance(self.name, str) or not PLAIN_NAME.fullmatch(self.name):
            # the name is the campaign column and, by default, the campaign's folder in the cache
            raise ConfigError("name", f"must be a plain name (letters, digits, '.', '_', '-'; no path), "
                                      f"got {self.name!r}", "campaign")
        for what in ("epochs", "repeats", "batch_size", "synthetic_samples"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(what, f"must be an integer >= 1, got {value!r}", "campaign")
        if isinstance(self.pue, bool) or not (isinstance(self.pue, (int, float)) and math.isfinite(self.pue)
                                               and self.pue >= 1.0):
            raise ConfigError("pue", f"must be a number >= 1.0 (1.0 = none), got {self.pue!r}", "campaign")
        if isinstance(self.lr, bool) or not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)
                                              and self.lr > 0):
            raise ConfigError("lr", f"must be a number > 0, got {self.lr!r}", "campaign")
        if self.torch_threads is not None and (isinstance(self.torch_threads, bool)
                                               or not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ConfigError("torch_threads", f"must be an integer >= 1, got {self.torch_threads!r}", "campaign")
        meter_classes_of(self.meter)  # an unknown meter name is refused now, not when the first cell runs
        from ecnas_plugin.networks.train import OPTIMIZERS, SCHEDULES

        if self.optimizer not in OPTIMIZERS:
            raise UnknownName("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule not in SCHEDULES:
            raise UnknownName("schedule", self.schedule, SCHEDULES)
        if isinstance(self.weight_decay, bool) or not (isinstance(self.weight_decay, (int, float))
                                                        and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("weight_decay", f"must be a number >= 0, got {self.weight_decay!r}", "campaign")
        for what in ("window_steps", "window_warmup"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(what, f"must be an integer >= 0, got {value!r}", "campaign")
        if self.window_warmup and not self.window_steps:
            raise ConfigError("window_warmup", "a warmup needs window_steps >= 1", "campaign")
        defaults = dict(space.network_defaults)
        unknown = sorted(set(self.network) - set(defaults))
        if unknown:
            raise UnknownName(f"{self.space} network setting", unknown[0], defaults)
        for setting, value in self.network.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError("network", f"{setting} must be an integer >= 1, got {value!r}", "campaign")
        archs, keys, seen = [], {}, set()
        for given in self.archs:
            arch = space.arch(given)
            text, key = space.describe(arch), space.canonical_key(arch)
            if key in seen:
                raise ConfigError("archs", f"the cell list names {key!r} twice (the second time as {given!r})",
                                  "campaign")
            seen.add(key)
            archs.append(text)
            keys[text] = key
        object.__setattr__(self, "space", space.name)  # a SearchSpace given: stored by its name
        object.__setattr__(self, "archs", tuple(archs))
        object.__setattr__(self, "network", {**defaults, **dict(self.network)})
        object.__setattr__(self, "_keys", keys)
        if not self.hardware:
            object.__setattr__(self, "hardware", detect_hardware())

    @property
    def search_space(self):
        """The registered SearchSpace this campaign measures."""
        return measurable_space(self.space)

    def key(self, arch: str) -> str:
        """The table key (the space's canonical key) of one of this campaign's cells."""
        try:
            return self._keys[arch]  # type: ignore[attr-defined]
        except KeyError:
            return arch_key(self.search_space, arch)

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


def canonical_arch(space: object, arch: object) -> str:
    """The buildable text of a cell: ``space.describe(space.arch(arch))`` (``space``: a registered
    name or a SearchSpace)."""
    sp = measurable_space(space)
    return sp.describe(sp.arch(arch))


def arch_key(space: object, arch: object) -> str:
    """The table key of a cell: the space's canonical key of its architecture."""
    sp = measurable_space(space)
    return sp.canonical_key(sp.arch(arch))


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
def enumeration_limits(space) -> dict[str, inspect.Parameter]:
    """The keyword limits a space's ``enumerate`` takes (NB101: ``max_vertices``), by name."""
    params = inspect.signature(space.enumerate).parameters
    return {n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def strata(space, limits: Mapping[str, int] | None = None) -> list[tuple[tuple, str]]:
    """Every cell ``space.enumerate(**limits)`` yields, as (its ``stratum``, its ``describe`` text);
    no limits given: the space's ``default_limits`` (``{}`` enumerates the whole space).

    An unknown limit is refused naming the limits the space's enumeration takes."""
    sp = measurable_space(space, sample=True)
    limits = dict(sp.default_limits if limits is None else limits)
    accepted = enumeration_limits(sp)
    for name in limits:
        if name not in accepted:
            raise UnknownName(f"enumeration limit of {sp.name}", name, accepted,
                              context="" if accepted else "(its enumeration takes no limits)")
    try:
        cells = list(sp.enumerate(**limits))
    except (TypeError, ValueError) as exc:  # e.g. NB101's max_vertices outside 2..7
        raise CampaignError(f"{sp.name} enumeration with limits {limits}: {exc}") from None
    return [(tuple(sp.stratum(a)), sp.describe(a)) for a in cells]


def sample_cells(space: object, n: int, seed: int = 0, limits: Mapping[str, int] | None = None) -> list[str]:
    """``n`` distinct cells of ``space`` (a registered name or a SearchSpace) drawn by systematic
    stratified sampling over ``space.enumerate(**limits)``, or, where the space offers a
    space-filling ``design`` (and no limits are given), from that design.

    Cells are ordered by ``space.stratum`` (NB201: how many edges carry each op; NB101: vertices,
    edges and op counts), randomly within a stratum, and every (size/n)-th is taken from a random
    start: each stratum gets its proportional share (within one cell), so the sample spans cheap
    and expensive cells alike. Returns the cells' ``describe`` texts (what a CampaignSpec takes).
    """
    sp = measurable_space(space)
    if sp.supports("design") and not limits:
        # a space too continuous to stratify by enumeration spreads its own design over every dimension
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CampaignError(f"sample size must be an integer >= 1, got {n!r}")
        return [sp.describe(a) for a in sp.design(n, seed)]
    sp.require("enumerate", "strata", flow=SAMPLE_FLOW)  # limits need an enumeration, design or not
    population = strata(sp, limits)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(population):
        raise CampaignError(f"sample size must be in 1..{len(population)} for {sp.name}"
                            + (f" with limits {dict(limits)}" if limits else "") + f", got {n!r}")
    import numpy as np

    rng = np.random.default_rng(seed)
    jitter = rng.random(len(population))
    order = sorted(range(len(population)), key=lambda i: (population[i][0], jitter[i]))
    step = len(population) / n
    start = rng.uniform(0, step)
    return [population[order[int(start + i * step)]][1] for i in range(n)]


# ---------------------------------------------------------------------- meters
def meter_classes_of(name: object) -> list[type] | None:
    """The registered meter classes ``name`` joins with ``+`` (None for ``auto``); an unknown
    part is UnknownName listing the registered meters."""
    from ecnas_plugin.energy.meters import meter_classes

    if name == "auto":
        return None
    classes = meter_classes()
    parts = name.split("+") if isinstance(name, str) else [name]
    for part in parts:
        if part not in classes:
            raise UnknownName("meter", part, ["auto", *classes])
    return [classes[p] for p in parts]


def check_meter(name: str) -> None:
    """Raise MeterError, naming the meter and why, if ``name`` cannot measure on this machine
    (``auto``: if no registered meter works). Probes only: nothing is started."""
    from ecnas_plugin.energy.meters import default_meter
    from ecnas_plugin.errors import MeterError

    chosen = meter_classes_of(name)
    if chosen is None:
        default_meter()
        return
    for cls in chosen:
        works, why = cls.probe()
        if not works:
            raise MeterError(f"meter {cls.name!r} does not work on this machine: {why}")


def make_meter(name: str, gpus: Sequence[int] | None = None):
    """A meter by name: ``auto`` (the best combination of registered meters that works here, see
    :func:`~ecnas_plugin.energy.meters.default_meter`), any registered meter's name, or several
    joined by ``+`` (e.g. ``nvml+rapl``) combined over one window. ``gpus`` restricts meters that
    take ``device_indices`` (NVML) to those devices (a task's own GPU, not its neighbours')."""
    from ecnas_plugin.energy.meters import CombinedMeter, default_meter

    chosen = meter_classes_of(name)
    if chosen is None:
        meter = default_meter()
    else:
        meters = [cls() for cls in chosen]
        meter = meters[0] if len(meters) == 1 else CombinedMeter(meters)
    if gpus is not None:
        for m in getattr(meter, "meters", [meter]):
            if hasattr(m, "device_indices"):
                m.device_indices = list(gpus)
    return meter


def visible_gpus() -> list[int] | None:
    """NVML indices of the GPUs this process may use (``CUDA_VISIBLE_DEVICES``, as Ray sets it)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not all(v.strip().isdigit() for v in value.split(",")):
        return None  # unset, or UUIDs: NVML meters every GPU and the record says which
    return [int(v) for v in value.split(",")]


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
    """Train one cell once under the campaign's settings (and the configuration's own, where the
    space fixes them: ``training_settings``), metering every epoch or its steady-state window.

    Returns the journal record: key, per-epoch readings (raw joules per component, methods,
    durations, CO2, loss, accuracies, the window where one was metered) and model size. Runs in
    the driver or in a worker; writes nothing.
    """
    import torch

    from ecnas_plugin.networks import count_flops, count_params, evaluate, train
    from ecnas_plugin.networks.train import resize

    spec = CampaignSpec.from_dict(spec_data)
    space = spec.search_space
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    settings = {"lr": spec.lr, "optimizer": spec.optimizer, "weight_decay": spec.weight_decay,
                "schedule": spec.schedule, **space.training_settings(space.arch(arch))}
    resolution = settings.pop("resolution", None)
    train_split, val, test = _data(spec.dataset, spec.data_root, spec.synthetic_samples, spec.seed)
    if resolution is not None:
        train_split, val, test = (None if d is None else resize(d, resolution) for d in (train_split, val, test))
    classes = 17 if spec.dataset == "flowers17" else 10
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(spec.seed + repeat)
    model = space.build_network(space.arch(arch), classes, **spec.network)
    model.to(device)
    input_shape = tuple(train_split.x.shape[1:])
    params, flops = count_params(model), count_flops(model, input_shape)
    meter = make_meter(spec.meter, visible_gpus() if device.type == "cuda" else None)
    epoch_steps = math.ceil(len(train_split) / spec.batch_size)
    windowed = spec.window_steps > 0
    # samples the window's steps saw (the epoch's last batch may be short): the scale is by samples
    window_samples = min(len(train_split), (spec.window_warmup + spec.window_steps) * spec.batch_size) \
        - spec.window_warmup * spec.batch_size
    real = spec.dataset == "flowers17" and not windowed  # a window trains part of an epoch: no accuracy
    epochs: list[dict[str, Any]] = []
    window: dict[str, Any] = {}

    def start(epoch: int) -> None:
        window["start"] = _now()
        meter.start()

    def stop(epoch: int) -> None:
        window["reading"] = meter.stop()  # the meter synchronises CUDA first: the window covers queued kernels
        window["stop"] = _now()

    def end(epoch: int, stats) -> None:
        if not windowed:
            stop(epoch)
        reading = window["reading"]
        epochs.append({
            "epoch": epoch, "start_time": window["start"], "stop_time": window["stop"],
            "duration_s": reading.duration_s, "energy_j": dict(reading.energy_j), "method": dict(reading.method),
            "co2eq_g": reading.co2eq_g, "devices": list(reading.devices),
            "train_loss": stats.train_loss, "skipped_steps": stats.skipped_steps,
            "train_acc": stats.train_acc if real else None,
            "val_acc": evaluate(model, val) if real else None,
            "test_acc": evaluate(model, test) if real else None,
            **({"window": {"warmup_steps": spec.window_warmup, "steps": spec.window_steps,
                           "epoch_steps": epoch_steps, "samples": window_samples,
                           "epoch_samples": len(train_split)}} if windowed else {}),
        })

    started, t0 = _now(), time.perf_counter()
    try:
        train(model, train_split, epochs=spec.epochs, batch_size=spec.batch_size, seed=spec.seed + repeat,
              window=(spec.window_warmup, spec.window_steps) if windowed else None,
              on_epoch_start=None if windowed else start, on_epoch_end=end,
              on_window_start=start if windowed else None, on_window_end=stop if windowed else None, **settings)
    finally:
        meter.abandon()  # no-op unless training raised inside a window
    return {
        "arch_key": spec.key(arch), "arch": arch, "repeat": repeat,
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
    if getattr(runner, "name", None) == "local":
        check_meter(spec.meter)  # measuring here: a meter that cannot work here is refused now, no folder made
    journal = Journal(out / JOURNAL_FILE)
    header, records = journal.open({"spec": spec.to_dict()})
    try:
        stored = CampaignSpec.from_dict(header["spec"])
        if stored.identity() != spec.identity():
            diff = sorted(k for k, v in spec.identity().items() if stored.identity().get(k) != v)
            raise CampaignError(f"{journal.path} belongs to a campaign with other settings ({', '.join(diff)}); "
                                f"use another output folder or the same settings")
        done = set(journal.keys)
        todo = [(a, r) for a in spec.archs for r in range(spec.repeats) if (spec.key(a), r) not in done]
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

    Energies: the epoch windows are summed into one cumulative reading per checkpoint, and
    :func:`~ecnas_plugin.energy.meters.base.apply_pue` (the one PUE function) turns it into
    ``train_energy_kwh`` / checkpoint ``energy_kwh`` and ``co2eq_g`` with the PUE applied, and raw
    ``<component>_energy_kwh``. Refuses records from different meters, methods or devices: one
    campaign, one way of measuring.
    """
    import pandas as pd

    from ecnas_plugin.energy.meters.base import Reading, apply_pue, weakest_method
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
    windowed = spec.window_steps > 0
    real = spec.dataset == "flowers17" and not windowed
    rows, checkpoints = [], []
    for rec in records:
        key = {"space": spec.space, "arch_key": rec["arch_key"], "dataset": spec.dataset, "epochs": spec.epochs,
               "hardware": spec.hardware, "campaign": spec.name, "repeat": rec["repeat"]}
        joules = {c: 0.0 for c in components}
        seconds = co2 = 0.0
        for e in rec["epochs"]:
            # a metered window stands for its whole epoch: scaled by the epoch's samples over the window's
            # (by samples: an epoch's last batch may be short)
            scale = e["window"]["epoch_samples"] / e["window"]["samples"] if "window" in e else 1.0
            for c in components:
                joules[c] += e["energy_j"][c] * scale
            seconds += e["duration_s"] * scale
            if with_co2:
                co2 += e["co2eq_g"] * scale
            so_far = apply_pue(Reading(rec["meter"], dict(joules), dict(methods), seconds,
                                       co2eq_g=co2 if with_co2 else None), spec.pue)
            checkpoints.append({
                **key, "checkpoint": e["epoch"], "epoch": float(e["epoch"]), "train_time_s": seconds,
                **({"train_loss": e["train_loss"]} if real and "train_loss" in e else {}),
                **({"skipped_steps": e["skipped_steps"]} if "skipped_steps" in e else {}),
                "train_acc": e["train_acc"], "val_acc": e["val_acc"], "test_acc": e["test_acc"],
                "energy_kwh": so_far["energy_kwh"],
                **({"co2eq_g": so_far["co2eq_g"]} if with_co2 else {}),
                "start_time": e["start_time"], "stop_time": e["stop_time"],
            })
        last = rec["epochs"][-1]
        # An energy from a power model is an estimate wherever it shows, not only in the manifest.
        source = "estimated" if weakest_method(methods.values()) == "estimated" else "measured"
        if windowed:  # scaled from a window; energy_method still says whether the window was an estimate
            source = "scaled"
        row = {**key, "source": source, "train_energy_kwh": so_far["energy_kwh"],
               "train_time_s": seconds, "run_time_s": rec["run_time_s"],
               "run_start_time": rec["run_start_time"], "run_stop_time": rec["run_stop_time"],
               **{f"{c}_energy_kwh": so_far[f"{c}_energy_kwh"] for c in components},
               **{f"{c}_power_w": joules[c] / seconds for c in ("gpu", "cpu") if c in joules and seconds > 0},
               "train_acc": last["train_acc"], "val_acc": last["val_acc"], "test_acc": last["test_acc"],
               "params": rec["params"], "flops": float(rec["flops"]),
               "arch_text": rec["arch"],  # the buildable form: a fingerprint key may not decode
               **({"window_steps": spec.window_steps, "window_warmup_steps": spec.window_warmup,
                   "epoch_steps": last["window"]["epoch_steps"]} if windowed else {})}
        if with_co2:
            row["co2eq_g"] = so_far["co2eq_g"]
        row["energy_method"] = weakest_method(methods.values())
        rows.append(row)
    estimated = sorted(c for c, m in methods.items() if m == "estimated")
    executors = sorted({r.get("executor", "local") for r in records})
    tool = (f"ecnas-plugin {__version__} `ecnas measure`; meter {first['meter']} ("
            + ", ".join(f"{c}: {m}" for c, m in sorted(methods.items())) + ")")
    metadata = {**spec.identity(), "cells": len({r["arch_key"] for r in records}), "measurements": len(records),
                "meter": first["meter"], "methods": methods, "device": first["device"],
                "hosts": len({r["host"] for r in records}), "executors": executors, "torch": first["torch"],
                "energy_window": (f"SCALED: steps {spec.window_warmup + 1}-{spec.window_warmup + spec.window_steps} "
                                  f"of each epoch metered and scaled to the epoch's steps" if windowed else
                                  "training steps of each epoch; evaluation outside the window"),
                "accuracy": "real (Flowers-17 val/test splits)" if real else
                            ("none: a windowed campaign trains part of each epoch, energy only" if windowed else
                             "none: synthetic CIFAR-10-shaped inputs, energy only"),
                "training": _training_note(spec)}
    notes = []
    if estimated:
        notes.append(f"ESTIMATED, NOT MEASURED: {', '.join(estimated)} energy comes from a power model "
                     f"(codecarbon TDP/load or RAM model), not from an energy counter.")
    if windowed:
        notes.append(f"SCALED, source = scaled: energy and time of each epoch are a window of {spec.window_steps} "
                     f"training steps (after {spec.window_warmup} warmup steps) scaled to the epoch's steps; "
                     f"accuracy columns are empty.")
    elif not real:
        notes.append("Energy-only campaign on synthetic CIFAR-10-shaped inputs: accuracy columns are empty.")
    if executors != ["local"] and {"cpu", "ram"} & set(components):
        notes.append("CPU/RAM counters are machine-wide: where several tasks shared a node their windows "
                     "include each other's load.")
    notes.append("Energy covers the training steps of every epoch (evaluation excluded); component columns "
                 "are raw, train_energy_kwh has the PUE applied.")
    manifest = Manifest(
        name=spec.name, space=spec.space,
        description=(f"{spec.space} training energy on {spec.dataset}, {spec.epochs} epoch(s), "
                     f"{len(records)} run(s) by `ecnas measure`"
                     + (f"; energy ESTIMATED by a power model ({', '.join(estimated)}), not measured"
                        if estimated else "")),
        tool=tool, pue=float(spec.pue), components=tuple(components), license=spec.license,
        citation=spec.citation, hardware=(spec.hardware,), notes="\n".join(notes), campaigns=(metadata,))
    frame = pd.DataFrame(rows)
    return EnergyTable(frame, manifest, pd.DataFrame(checkpoints))


def _training_note(spec: CampaignSpec) -> str:
    """How the cells were trained: the campaign's settings, or the configuration's own where the
    space fixes them (read from the space: a joint space fixes lr, optimizer, ... per configuration)."""
    space = spec.search_space
    fixed = sorted(space.training_settings(space.arch(spec.archs[0]))) if spec.archs else []
    if fixed:
        return f"per configuration (the space's training_settings): {', '.join(fixed)}; campaign settings otherwise"
    return "the campaign's settings for every cell"


def campaign_metadata(manifest) -> dict[str, Any] | None:
    """The settings of the (first) campaign recorded in a manifest by :func:`build_table`, or None."""
    return dict(manifest.campaigns[0]) if manifest.campaigns else None


