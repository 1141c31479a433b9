"""Energy meters behind one interface, and which of them work on this machine.

``builtin_meters()`` is what the built-in plugin answers to the ``ecnas_meters`` hook;
``meters_report()`` backs ``ecnas meters``; ``default_meter()`` picks the best meter that works.
"""

from __future__ import annotations

from typing import Any

from ecnas_plugin.hookspecs import hookimpl

from .base import (
    COMPONENTS,
    METHODS,
    CombinedMeter,
    Meter,
    MeterConfigError,
    MeterError,
    Reading,
    apply_pue,
)
from .codecarbon import CodecarbonMeter
from .nvml import NvmlMeter
from .rapl import RaplMeter

__all__ = [
    "COMPONENTS", "METHODS", "CodecarbonMeter", "CombinedMeter", "Meter", "MeterConfigError",
    "MeterError", "NvmlMeter", "RaplMeter", "Reading", "apply_pue", "builtin_meters",
    "default_meter", "meters_report",
]


def builtin_meters() -> list[type[Meter]]:
    """The meter classes this package ships, best measurement first."""
    return [NvmlMeter, RaplMeter, CodecarbonMeter]


@hookimpl
def ecnas_meters() -> list[type[Meter]]:
    return builtin_meters()


def meters_report(meters: list[type[Meter]] | None = None) -> list[dict[str, Any]]:
    """One row per meter class: name, components, whether it works here and why (not)."""
    rows = []
    for cls in builtin_meters() if meters is None else meters:
        works, reason = cls.probe()
        rows.append({"name": cls.name, "components": list(cls.components), "works": works, "reason": reason})
    return rows


def default_meter() -> Meter:
    """The best meter that works here.

    Hardware counters first: NVML for the GPU and RAPL for CPU and RAM, combined when both
    work. Without either, codecarbon (whose CPU/RAM numbers are then labelled "estimated").
    Raises :class:`MeterError` listing every meter's reason when none works.
    """
    nvml_ok, nvml_why = NvmlMeter.probe()
    rapl_ok, rapl_why = RaplMeter.probe()
    measured: list[Meter] = ([NvmlMeter()] if nvml_ok else []) + ([RaplMeter()] if rapl_ok else [])
    if len(measured) == 2:
        return CombinedMeter(measured)
    if measured:
        return measured[0]
    cc_ok, cc_why = CodecarbonMeter.probe()
    if cc_ok:
        return CodecarbonMeter()
    raise MeterError(f"no energy meter works here: nvml: {nvml_why}; rapl: {rapl_why}; codecarbon: {cc_why}")
