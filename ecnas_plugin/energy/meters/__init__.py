"""Energy meters behind one interface, and which of them work on this machine.

``builtin_meters()`` is what the built-in plugin answers to the ``ecnas_meters`` hook;
``meter_classes()`` is every registered meter (built-in and third-party); ``meters_report()``
backs ``ecnas meters``; ``default_meter()`` (``auto``) builds the best combination of registered
meters that works here, as :func:`plan_meters` chooses it.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass
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
    synchronize_cuda,
)

# The built-in meters load on first use (the hook, or a name below), so importing the Meter
# contract (the registry does) imports no meter implementation.
_BUILTIN = {"NvmlMeter": ".nvml", "RaplMeter": ".rapl", "CodecarbonMeter": ".codecarbon"}


def __getattr__(name: str):
    if name in _BUILTIN:
        from importlib import import_module

        return getattr(import_module(_BUILTIN[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "COMPONENTS", "METHODS", "CodecarbonMeter", "CombinedMeter", "Meter", "MeterConfigError",
    "MeterError", "MeterPlan", "NvmlMeter", "RaplMeter", "Reading", "apply_pue", "builtin_meters",
    "default_meter", "meter_classes", "meters_report", "plan_meters", "synchronize_cuda",
]


def builtin_meters() -> list[type[Meter]]:
    """The meter classes this package ships, best measurement first."""
    from .codecarbon import CodecarbonMeter
    from .nvml import NvmlMeter
    from .rapl import RaplMeter

    return [NvmlMeter, RaplMeter, CodecarbonMeter]


@hookimpl
def ecnas_meters() -> list[type[Meter]]:
    return builtin_meters()


def meter_classes() -> dict[str, type[Meter]]:
    """Every registered meter class by name: built-ins first, then third-party plugins, as they
    answered the ``ecnas_meters`` hook (a broken plugin is reported by the registry and skipped)."""
    from ecnas_plugin.registry import get_registry

    return dict(get_registry().items["meters"])


def _expected(cls: type[Meter]) -> tuple[dict[str, str] | None, str]:
    """(component -> method this meter would deliver here, or None; why not), never raising."""
    try:
        works, reason = cls.probe()
    except Exception as exc:  # a third-party probe must not take `auto` down
        return None, f"probe raised {type(exc).__name__}: {exc}"
    if not works:
        return None, reason
    try:
        methods = dict(cls.expected_methods())
    except Exception as exc:
        return None, f"works, but expected_methods raised {type(exc).__name__}: {exc}"
    bad = {c: m for c, m in methods.items() if c not in cls.components or m not in METHODS}
    if bad:
        return None, (f"expected_methods names {bad}: components must be among {list(cls.components)}, "
                      f"methods among {list(METHODS)}")
    if not methods:
        return None, f"works, but would measure nothing here ({reason})"
    return methods, reason


def _takes_components(cls: type[Meter]) -> bool:
    """Whether the meter can be restricted to some of its components (its ``__init__`` takes
    ``components``), so ``auto`` may combine part of it with another meter."""
    return "components" in inspect.signature(cls.__init__).parameters


@dataclass(frozen=True)
class MeterPlan:
    """What ``auto`` chose: ``parts`` are (meter class, components it reports, whether it is
    restricted to them) with disjoint components; ``methods`` the method per component;
    ``considered`` every candidate as (name, methods it would give here or None, reason)."""

    parts: tuple[tuple[type[Meter], tuple[str, ...], bool], ...]
    methods: dict[str, str]
    considered: tuple[tuple[str, dict[str, str] | None, str], ...]

    @property
    def name(self) -> str:
        return "+".join(cls.name for cls, _, _ in self.parts)

    def build(self) -> Meter:
        meters = [cls(components=list(comps)) if restricted else cls() for cls, comps, restricted in self.parts]
        return meters[0] if len(meters) == 1 else CombinedMeter(meters)


def plan_meters(classes: list[type[Meter]] | None = None) -> MeterPlan:
    """Choose among ``classes`` (default: every registered meter) the best combination that works.

    Every working meter says which components it would measure here and how
    (:meth:`Meter.expected_methods`). Over all ways of giving each component to at most one meter
    (a meter either whole, or restricted to some components where it takes ``components=``), the
    choice is, in this order: no estimated component where any measurement (counter or sampled)
    exists, since a total is only as good as its weakest part; most components by counter, then
    by sampled power, then estimated; fewest meters; earliest registered (built-ins first).
    So NVML + RAPL where both work, a third-party counter meter over codecarbon's estimate, and
    codecarbon alone where nothing measures. Raises :class:`MeterError` listing every meter's
    reason when none works.
    """
    classes = list(meter_classes().values()) if classes is None else list(classes)
    considered = []
    working: list[tuple[int, type[Meter], dict[str, str], bool]] = []
    for order, cls in enumerate(classes):
        methods, reason = _expected(cls)
        considered.append((cls.name, methods, reason))
        if methods is not None:
            working.append((order, cls, methods, _takes_components(cls)))
    if not working:
        raise MeterError("no energy meter works here: " + "; ".join(f"{n}: {r}" for n, _, r in considered))
    components = [c for c in COMPONENTS if any(c in m for _, _, m, _ in working)]
    options = [[None, *(i for i, (_, _, m, _) in enumerate(working) if c in m)] for c in components]
    best: tuple | None = None
    for choice in itertools.product(*options):
        used: dict[int, list[str]] = {}
        for comp, i in zip(components, choice):
            if i is not None:
                used.setdefault(i, []).append(comp)
        if not used or any(not working[i][3] and set(comps) != set(working[i][2]) for i, comps in used.items()):
            continue  # nothing chosen, or a meter that cannot be split is only partly used
        methods = {c: working[i][2][c] for c, i in zip(components, choice) if i is not None}
        counts = [sum(m == method for m in methods.values()) for method in METHODS]
        score = ("estimated" in methods.values(), *(-n for n in counts), len(used),
                 tuple(sorted(working[i][0] for i in used)))
        if best is None or score < best[0]:
            best = (score, used, methods)
    _, used, methods = best  # type: ignore[misc]
    parts = tuple((working[i][1], tuple(comps), set(comps) != set(working[i][2])) for i, comps in sorted(used.items()))
    return MeterPlan(parts, methods, tuple(considered))


def default_meter(classes: list[type[Meter]] | None = None) -> Meter:
    """The meter ``auto`` means: :func:`plan_meters` over ``classes`` (default: every registered
    meter, built-in and third-party), built (one meter, or a :class:`CombinedMeter`)."""
    return plan_meters(classes).build()


def meters_report(meters: list[type[Meter]] | None = None) -> list[dict[str, Any]]:
    """One row per meter class: name, components, whether it works here and why (not), and the
    method per component it would deliver (empty when it does not work)."""
    rows = []
    for cls in builtin_meters() if meters is None else meters:
        methods, reason = _expected(cls)
        rows.append({"name": cls.name, "components": list(cls.components), "works": methods is not None,
                     "reason": reason, "methods": methods or {}})
    return rows
