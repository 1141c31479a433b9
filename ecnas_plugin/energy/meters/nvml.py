"""NVIDIA GPU energy through NVML (module ``pynvml``, distribution ``nvidia-ml-py``).

The cumulative counter ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded,
Volta and newer) gives method ``"counter"``. On GPUs without it a background thread samples
``nvmlDeviceGetPowerUsage`` (mW) every ``sample_interval_s`` and integrates with the trapezoid
rule: method ``"sampled"``. Device indices are NVML's (``nvidia-smi`` order), which
``CUDA_VISIBLE_DEVICES`` does not renumber.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .base import Meter, MeterConfigError, MeterError, Reading, weakest_method

INSTALL_HINT = "pynvml is not installed: pip install nvidia-ml-py"


def _import_pynvml() -> ModuleType:
    try:
        import pynvml  # lazy: the package imports without NVML
    except ImportError:
        raise MeterError(INSTALL_HINT) from None
    return pynvml


def _unsupported(pynvml: ModuleType, err: Exception) -> bool:
    """True for NVML's 'not supported' / 'function not found' (old driver) errors."""
    codes = {
        getattr(pynvml, "NVML_ERROR_NOT_SUPPORTED", 3),
        getattr(pynvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
    }
    return getattr(err, "value", None) in codes


def _name(pynvml: ModuleType, handle: Any) -> str:
    name = pynvml.nvmlDeviceGetName(handle)
    return name.decode() if isinstance(name, bytes) else str(name)


class NvmlMeter(Meter):
    """GPU energy of the selected devices (all by default), summed into component ``"gpu"``."""

    name = "nvml"
    components = ("gpu",)
    methods = {"gpu": "counter"}  # "sampled" on GPUs without the counter (see expected_methods)

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        sample_interval_s: float = 0.1,
        force_sampling: bool = False,
    ):
        super().__init__()
        if not sample_interval_s > 0:
            raise MeterConfigError(f"sample_interval_s must be > 0, got {sample_interval_s!r}")
        self.device_indices = None if devices is None else [int(i) for i in devices]
        self.sample_interval_s = sample_interval_s
        self.force_sampling = force_sampling
        self._nvml: ModuleType | None = None
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._counter_start: dict[int, int] = {}  # position -> mJ at start (counter devices)
        self._sampled: list[int] = []  # positions of devices integrated from power samples
        self._energy_mj: dict[int, float] = {}
        self._last_sample: tuple[float, list[float]] | None = None
        self._n_samples = 0
        self._first_sample_t: float | None = None
        self._halt = threading.Event()
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def probe(cls) -> tuple[bool, str]:
        try:
            pynvml = _import_pynvml()
        except MeterError as e:
            return False, str(e)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            return False, f"NVML cannot start: {e} (no NVIDIA driver or GPU here)"
        try:
            n = pynvml.nvmlDeviceGetCount()
            if n == 0:
                return False, "NVML found no GPU"
            names = [_name(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
            return True, f"{n} GPU(s): {', '.join(names)}"
        except pynvml.NVMLError as e:
            return False, f"NVML error while listing GPUs: {e}"
        finally:
            pynvml.nvmlShutdown()

    @classmethod
    def expected_methods(cls) -> dict[str, str]:
        """``counter`` where every GPU has NVML's energy counter, else ``sampled`` (power samples)."""
        pynvml = _import_pynvml()
        pynvml.nvmlInit()
        try:
            for i in range(pynvml.nvmlDeviceGetCount()):
                try:
                    pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(i))
                except pynvml.NVMLError as e:
                    if _unsupported(pynvml, e):
                        return {"gpu": "sampled"}
                    raise MeterError(f"NVML energy counter of GPU {i}: {e}") from None
        finally:
            pynvml.nvmlShutdown()
        return {"gpu": "counter"}

    def _begin(self) -> None:
        pynvml = _import_pynvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise MeterError(f"NVML cannot start: {e} (no NVIDIA driver or GPU here)") from None
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise MeterError("NVML found no GPU")
            indices = list(range(count)) if self.device_indices is None else self.device_indices
            for i in indices:
                if not 0 <= i < count:
                    raise MeterError(f"GPU index {i} out of range: NVML sees {count} GPU(s)")
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
            self._names = [f"{i}: {_name(pynvml, h)}" for i, h in zip(indices, self._handles)]
            self._counter_start, self._sampled = {}, []
            for pos, h in enumerate(self._handles):
                if self.force_sampling:
                    self._sampled.append(pos)
                    continue
                try:
                    self._counter_start[pos] = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                except pynvml.NVMLError as e:
                    if not _unsupported(pynvml, e):
                        raise MeterError(f"NVML energy counter of GPU {self._names[pos]}: {e}") from None
                    self._sampled.append(pos)
        except BaseException:
            pynvml.nvmlShutdown()
            raise
        self._nvml = pynvml
        self._energy_mj = {pos: 0.0 for pos in self._sampled}
        self._n_samples = 0
        self._last_sample = self._first_sample_t = None
        if self._sampled:
            self._sample()
            self._halt.clear()
            self._sampler = threading.Thread(target=self._sample_loop, name="nvml-power", daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        """Read power of the sampled devices and add the trapezoid since the previous sample."""
        pynvml = self._nvml
        watts = [pynvml.nvmlDeviceGetPowerUsage(self._handles[p]) / 1000.0 for p in self._sampled]
        now = time.perf_counter()
        with self._lock:
            if self._last_sample is not None:
                t0, w0 = self._last_sample
                for p, a, b in zip(self._sampled, w0, watts):
                    self._energy_mj[p] += (a + b) / 2 * (now - t0) * 1000.0
            else:
                self._first_sample_t = now
            self._last_sample = (now, watts)
            self._n_samples += 1

    def _sample_loop(self) -> None:
        while not self._halt.wait(self.sample_interval_s):
            self._sample()

    def _stop_sampler(self) -> None:
        if self._sampler is not None:
            self._halt.set()
            self._sampler.join()
            self._sampler = None

    def _abort(self) -> None:
        self._stop_sampler()
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None

    def _end(self, duration_s: float) -> Reading:
        pynvml = self._nvml
        try:
            self._stop_sampler()
            per_device: dict[str, dict[str, Any]] = {}
            for pos, start in self._counter_start.items():
                mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[pos]) - start
                per_device[self._names[pos]] = {"energy_j": mj / 1000.0, "method": "counter"}
            if self._sampled:
                self._sample()
                for pos in self._sampled:
                    per_device[self._names[pos]] = {
                        "energy_j": self._energy_mj[pos] / 1000.0,
                        "method": "sampled",
                    }
        except pynvml.NVMLError as e:
            raise MeterError(f"NVML failed while closing the window: {e}") from None
        finally:
            pynvml.nvmlShutdown()
            self._nvml = None
        return Reading(
            meter=self.name,
            energy_j={"gpu": sum(d["energy_j"] for d in per_device.values())},
            method={"gpu": weakest_method(d["method"] for d in per_device.values())},
            duration_s=duration_s,
            devices=tuple(self._names),
            raw={
                "devices": per_device,
                "power_samples": self._n_samples,
                # time between the first and last power sample: what the integral covers
                "sampled_span_s": (
                    self._last_sample[0] - self._first_sample_t if self._sampled else None
                ),
                "sample_interval_s": self.sample_interval_s if self._sampled else None,
            },
        )
