"""The meter interface: a window (start .. stop) that yields one :class:`Reading`.

Every number a meter returns carries how it was obtained (``method``), so an estimate can never
pass for a measurement:

- ``"counter"``: difference of a cumulative hardware energy counter (NVML total energy, RAPL);
- ``"sampled"``: power samples integrated over time (NVML power on GPUs without the counter);
- ``"estimated"``: a model or TDP constant (codecarbon without RAPL); never a measurement.

A meter declares what it would deliver here through :meth:`Meter.expected_methods` (by default
its class attribute ``methods``; a component it does not declare counts as ``"estimated"``), which
is how ``auto`` (:func:`ecnas_plugin.energy.meters.default_meter`) ranks every registered meter.

Window edges are synchronised with CUDA by :meth:`Meter.start` and :meth:`Meter.stop` themselves
(when torch is imported and CUDA is initialised), so a window always covers the kernels queued
inside it, whoever opens it.
"""

from __future__ import annotations

import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ecnas_plugin.errors import MeterConfigError, MeterError, UnknownName

from ecnas_plugin.schema import J_PER_KWH, METHODS  # noqa: F401  (re-exported for meters)

COMPONENTS = ("gpu", "cpu", "ram")


def weakest_method(methods: Iterable[str]) -> str:
    """The least trustworthy of several methods: a sum is only as good as its weakest part."""
    return max(methods, key=METHODS.index)


def synchronize_cuda() -> bool:
    """Wait for the kernels queued on the current CUDA device, where torch is already imported
    and CUDA initialised (never imports torch, never initialises CUDA). True if it synchronised."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return False
    cuda.synchronize()
    return True


@dataclass(frozen=True)
class Reading:
    """Energy spent in one meter window, per component, with how each number was obtained.

    ``energy_j`` and ``method`` have the same keys (a subset of ``"gpu"``, ``"cpu"``, ``"ram"``).
    A component absent from ``energy_j`` was not measured; it is never reported as zero.
    ``co2eq_g`` is set only by meters that know the carbon intensity; ``raw`` keeps
    meter-specific values (per device/domain energy, counter wraps, tool versions).
    """

    meter: str
    energy_j: dict[str, float]
    method: dict[str, str]
    duration_s: float
    devices: tuple[str, ...] = ()
    co2eq_g: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for comp in self.energy_j:
            if comp not in COMPONENTS:
                raise UnknownName("energy component", comp, COMPONENTS)
        if set(self.method) != set(self.energy_j):
            raise MeterConfigError(
                f"reading from {self.meter!r}: method keys {sorted(self.method)} differ from "
                f"energy keys {sorted(self.energy_j)}"
            )
        for comp, m in self.method.items():
            if m not in METHODS:
                raise UnknownName("measurement method", m, METHODS)
        for comp, j in self.energy_j.items():
            if not (math.isfinite(j) and j >= 0):
                raise MeterError(f"meter {self.meter!r} returned {j!r} J for {comp}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise MeterError(f"meter {self.meter!r} returned duration {self.duration_s!r} s")

    @property
    def total_j(self) -> float:
        """Sum over the measured components, in joules (before any PUE)."""
        return float(sum(self.energy_j.values()))

    @property
    def is_estimate(self) -> bool:
        """True if any component is an estimate rather than a measurement."""
        return any(m == "estimated" for m in self.method.values())


class Meter(ABC):
    """One energy meter. ``start()`` opens a window, ``stop()`` closes it and returns a Reading.

    A meter can be reused: every start/stop pair is a new window (e.g. one per epoch). As a
    context manager, ``with meter: ...`` stores the window's reading in ``meter.reading``.
    ``start`` and ``stop`` synchronise CUDA (see :func:`synchronize_cuda`) before they read
    anything, so GPU work queued before the window is outside it and work queued inside is in it.
    """

    name: ClassVar[str]
    components: ClassVar[tuple[str, ...]]  # what this kind of meter can measure
    #: how each component's number is obtained (a METHODS value); undeclared ones are "estimated"
    methods: ClassVar[Mapping[str, str]] = {}

    def __init__(self, components: Sequence[str] | None = None) -> None:
        #: components this instance reports (a subset of ``components``, e.g. to combine meters)
        self.selected: tuple[str, ...] = select_components(type(self), components)
        self._t0: float | None = None
        self.reading: Reading | None = None

    @classmethod
    @abstractmethod
    def probe(cls) -> tuple[bool, str]:
        """Whether this meter works here, and a one-line reason (what is missing, if not)."""

    @classmethod
    def expected_methods(cls) -> dict[str, str]:
        """Component -> method this meter would report on this machine (asked only after
        :meth:`probe` said it works). Default: ``methods``, "estimated" where it says nothing;
        meters whose coverage depends on the machine (RAPL without DRAM, GPUs without the energy
        counter) override it. ``auto`` prefers the strongest methods it finds."""
        return {c: cls.methods.get(c, "estimated") for c in cls.components}

    @abstractmethod
    def _begin(self) -> None:
        """Read the starting state (counters), start samplers."""

    @abstractmethod
    def _end(self, duration_s: float) -> Reading:
        """Read the final state, stop samplers, build the Reading."""

    def _abort(self) -> None:  # noqa: B027 - optional: release resources after a failed start
        """Release whatever ``_begin`` acquired when the window is abandoned."""

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def start(self) -> None:
        """Open a window. Raises :class:`MeterError` when the meter cannot read its source."""
        if self._t0 is not None:
            raise MeterError(f"meter {self.name!r} already started; stop() it first")
        synchronize_cuda()  # kernels queued before the window belong to no window
        self._begin()
        self._t0 = time.perf_counter()

    def stop(self) -> Reading:
        """Close the window and return its Reading."""
        if self._t0 is None:
            raise MeterError(f"meter {self.name!r} was not started")
        synchronize_cuda()  # the window must cover the kernels queued inside it
        duration = time.perf_counter() - self._t0
        self._t0 = None
        self.reading = self._end(duration)
        return self.reading

    def __enter__(self) -> Meter:
        self.start()
        return self

    def abandon(self) -> None:
        """Close an open window without a reading (after an error); no-op when not running."""
        if self._t0 is not None:
            self._t0 = None
            self._abort()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.abandon()


def select_components(meter: type[Meter], wanted: Sequence[str] | None) -> tuple[str, ...]:
    """Validate a user's component subset for ``meter`` (None means all it can measure)."""
    if wanted is None:
        return meter.components
    for comp in wanted:
        if comp not in meter.components:
            raise UnknownName(f"component of meter {meter.name!r}", comp, meter.components)
    return tuple(wanted)


class CombinedMeter(Meter):
    """Several meters over one window, e.g. NVML for the GPU and RAPL for CPU and RAM.

    Two meters that claim the same component are refused: the sum would double count it.
    """

    name = "combined"
    components: tuple[str, ...] = ()

    def __init__(self, meters: Sequence[Meter]):
        if not meters:
            raise MeterConfigError("CombinedMeter needs at least one meter")
        owner: dict[str, str] = {}
        for m in meters:
            for comp in m.selected:
                if comp in owner:
                    raise MeterConfigError(
                        f"meters {owner[comp]!r} and {m.name!r} both measure {comp!r}; "
                        f"restrict one of them with components=..."
                    )
                owner[comp] = m.name
        self.meters = list(meters)
        self.components = self.selected = tuple(owner)
        self.name = "+".join(m.name for m in meters)
        self._t0 = None
        self.reading = None

    @classmethod
    def probe(cls) -> tuple[bool, str]:
        return True, "works when each of its meters works"

    def _begin(self) -> None:
        started: list[Meter] = []
        try:
            for m in self.meters:
                m.start()
                started.append(m)
        except BaseException:
            for m in reversed(started):  # leave no sampler thread behind
                m.abandon()
            raise

    def _abort(self) -> None:
        for m in reversed(self.meters):
            m.abandon()

    def _end(self, duration_s: float) -> Reading:
        readings: list[Reading] = []
        try:
            for m in reversed(self.meters):
                readings.insert(0, m.stop())
        except BaseException:
            self._abort()  # one meter failed: still close the others
            raise
        energy: dict[str, float] = {}
        method: dict[str, str] = {}
        devices: list[str] = []
        for r in readings:
            energy.update(r.energy_j)
            method.update(r.method)
            devices += [f"{r.meter}:{d}" for d in r.devices]
        co2 = [r.co2eq_g for r in readings]
        return Reading(
            meter=self.name,
            energy_j=energy,
            method=method,
            duration_s=duration_s,
            devices=tuple(devices),
            # a partial CO2 figure (only some components) would mislead: all or nothing
            co2eq_g=None if any(c is None for c in co2) else float(sum(co2)),  # type: ignore[arg-type]
            raw={r.meter: {"duration_s": r.duration_s, **r.raw} for r in readings},
        )


def apply_pue(reading: Reading, pue: float = 1.0) -> dict[str, Any]:
    """Energy of a window in kWh with the PUE applied explicitly, raw joules kept beside it.

    ``pue`` (power usage effectiveness, facility energy / IT energy) is 1.0 by default, meaning
    none; EC-NAS used 1.59. The result always records the PUE used, the per-component joules as
    measured, their methods, the IT energy before PUE (``it_energy_kwh`` and the per-component
    ``<c>_energy_kwh``) and the facility energy after it (``energy_kwh``).
    ``co2eq_g`` (if the meter knows it) scales with the PUE like the energy does.
    """
    if not (isinstance(pue, (int, float)) and math.isfinite(pue) and pue >= 1.0):
        raise MeterConfigError(f"PUE must be a finite number >= 1.0 (1.0 = none), got {pue!r}")
    it_kwh = reading.total_j / J_PER_KWH
    return {
        "meter": reading.meter,
        "components": sorted(reading.energy_j),
        "energy_j": dict(reading.energy_j),
        "method": dict(reading.method),
        "estimated": reading.is_estimate,
        "duration_s": reading.duration_s,
        "pue": float(pue),
        "it_energy_kwh": it_kwh,
        "energy_kwh": it_kwh * pue,
        **{f"{c}_energy_kwh": j / J_PER_KWH for c, j in reading.energy_j.items()},
        "co2eq_g": None if reading.co2eq_g is None else reading.co2eq_g * pue,
    }
