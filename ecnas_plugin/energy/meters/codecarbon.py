"""codecarbon's ``OfflineEmissionsTracker`` as a meter: CPU, GPU and RAM energy plus CO2eq.

Offline (no network): the carbon intensity comes from ``country_iso_code`` (default "DNK").
Nothing is written to the working directory (no output method, a throw-away ``output_dir``),
codecarbon's own PUE stays 1.0 (apply PUE explicitly with ``apply_pue``).

How each number was obtained is read from the hardware objects codecarbon set up (checked
against codecarbon 3.3.2 source, ``core/resource_tracker.py`` and ``external/hardware.py``):
CPU mode ``intel_rapl``/``windows_emi`` reads RAPL energy counters -> "counter"; ``cpu_load``
(TDP x CPU load) and ``constant`` (TDP / 2) are what codecarbon falls back to without RAPL ->
"estimated"; RAM always comes from a DIMM power model -> "estimated"; NVIDIA/AMD GPUs use their
cumulative energy counters -> "counter". Anything unrecognised is labelled "estimated".
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from collections.abc import Sequence
from typing import Any

from .base import J_PER_KWH, Meter, MeterError, Reading

INSTALL_HINT = "codecarbon is not installed: pip install codecarbon"
_CPU_MODES = {
    "intel_rapl": "counter",
    "windows_emi": "counter",
    "intel_power_gadget": "sampled",
    "cpu_load": "estimated",
    "constant": "estimated",
}


def _hardware_methods(tracker: Any) -> tuple[dict[str, str], list[str]]:
    """Method per component from the tracker's hardware list, and the hardware descriptions."""
    methods: dict[str, str] = {}
    described: list[str] = []
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__
        described.append(hw.description() if hasattr(hw, "description") else kind)
        if kind == "CPU":
            methods["cpu"] = _CPU_MODES.get(getattr(hw, "_mode", ""), "estimated")
        elif kind == "GPU":
            methods["gpu"] = "counter"
        elif kind == "RAM":
            methods["ram"] = "estimated"
        elif kind in ("AppleSiliconChip", "Raspberry"):  # powermetrics / PMIC power readings
            part = str(getattr(hw, "chip_part", "")).lower()
            if part in ("cpu", "gpu", "ram"):
                methods[part] = "sampled"
    return methods, described


def _accepts(cls: type, param: str) -> bool:
    """Whether any ``__init__`` along the MRO names ``param`` (subclasses pass **kwargs up)."""
    return any(
        param in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c)
    )


class CodecarbonMeter(Meter):
    """codecarbon's offline tracker around one window; CO2eq from the country's grid mix."""

    name = "codecarbon"
    components = ("cpu", "gpu", "ram")
    methods = {"cpu": "estimated", "gpu": "counter", "ram": "estimated"}

    def __init__(
        self,
        country_iso_code: str = "DNK",
        components: Sequence[str] | None = None,
        measure_power_secs: float = 15.0,
        tracking_mode: str = "machine",
        **tracker_kwargs: Any,
    ):
        super().__init__(components)
        self.country_iso_code = country_iso_code
        self.measure_power_secs = measure_power_secs
        self.tracking_mode = tracking_mode
        self.tracker_kwargs = tracker_kwargs
        self._tracker: Any = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @classmethod
    def probe(cls) -> tuple[bool, str]:
        try:
            import codecarbon
        except ImportError:
            return False, INSTALL_HINT
        from .rapl import RaplMeter

        rapl_ok, rapl_why = RaplMeter.probe()
        cpu = "CPU from RAPL counters" if rapl_ok else f"CPU is a TDP estimate ({rapl_why})"
        return True, f"codecarbon {codecarbon.__version__} offline; {cpu}; RAM is an estimate"

    @classmethod
    def expected_methods(cls) -> dict[str, str]:
        """CPU from RAPL counters where they are readable, else a TDP estimate; RAM always an
        estimate; GPU through NVML as NVML itself would read it, only where NVML sees a GPU."""
        from .nvml import NvmlMeter
        from .rapl import RaplMeter

        methods = {"cpu": "counter" if RaplMeter.probe()[0] else "estimated", "ram": "estimated"}
        if NvmlMeter.probe()[0]:
            methods["gpu"] = NvmlMeter.expected_methods()["gpu"]
        return methods

    def _begin(self) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError:
            raise MeterError(INSTALL_HINT) from None
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # before init logs anything
        if self._tmp is None:  # removed when the meter is garbage collected or at exit
            self._tmp = tempfile.TemporaryDirectory(prefix="ecnas-codecarbon-")
        kwargs: dict[str, Any] = dict(
            country_iso_code=self.country_iso_code,
            log_level="error",
            output_dir=self._tmp.name,
            measure_power_secs=self.measure_power_secs,
            tracking_mode=self.tracking_mode,
            pue=1.0,
        )
        if _accepts(OfflineEmissionsTracker, "output_methods"):
            kwargs["output_methods"] = []  # codecarbon >= 3.3
        else:
            kwargs["save_to_file"] = False
        kwargs.update(self.tracker_kwargs)
        try:
            self._tracker = OfflineEmissionsTracker(**kwargs)
            self._tracker.start()
        except Exception:
            self._tracker = None
            raise

    def _abort(self) -> None:
        if self._tracker is not None:
            try:
                self._tracker.stop()
            finally:
                self._tracker = None

    def _end(self, duration_s: float) -> Reading:
        tracker = self._tracker
        try:
            emissions_kg = tracker.stop()
            data = tracker.final_emissions_data
            methods, hardware = _hardware_methods(tracker)
        finally:
            self._tracker = None
        if data is None:
            raise MeterError("codecarbon returned no emissions data for the window")
        kwh = {"cpu": data.cpu_energy, "gpu": data.gpu_energy, "ram": data.ram_energy}
        # a component codecarbon had no hardware for (no GPU) is left out, not reported as 0 J
        measured = [c for c in self.selected if c in methods]
        energy = {c: float(kwh[c]) * J_PER_KWH for c in measured}
        # CO2 scales with energy; keep only the share of the selected components
        total_kwh = float(data.energy_consumed)
        share = sum(kwh[c] for c in measured) / total_kwh if total_kwh > 0 else 0.0
        return Reading(
            meter=self.name,
            energy_j=energy,
            method={c: methods[c] for c in measured},
            duration_s=duration_s,
            devices=tuple(hardware),
            co2eq_g=None if emissions_kg is None else float(emissions_kg) * 1000.0 * share,
            raw={
                "codecarbon_version": data.codecarbon_version,
                "energy_kwh": {c: float(v) for c, v in kwh.items()},
                "power_w": {"cpu": data.cpu_power, "gpu": data.gpu_power, "ram": data.ram_power},
                "emissions_kg": emissions_kg,
                "country_iso_code": data.country_iso_code,
                "cpu_model": data.cpu_model,
                "gpu_model": data.gpu_model,
                "tracking_mode": data.tracking_mode,
                "codecarbon_duration_s": data.duration,
            },
        )
