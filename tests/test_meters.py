"""Energy meters: RAPL, NVML, codecarbon, combining windows, PUE, ``auto``, CUDA window edges.

This machine has no GPU and no RAPL (/sys/class/powercap is absent), so fakes stand in for the
missing hardware, and only for it:
- RAPL: a fake powercap sysfs tree written into tmp_path, laid out like the kernel's
  (package zones with core/uncore/dram sub-zones, sub-zones also linked at the top level,
  psys and MMIO zones); the test writes the counter values the hardware would show.
  ``auto`` tests point ``rapl.DEFAULT_ROOT`` at such a tree.
- NVML: a fake ``pynvml`` module injected with ``monkeypatch.setitem(sys.modules, ...)``.
- CUDA: ``torch.cuda.is_initialized``/``synchronize`` replaced by recorders (torch here is a CPU
  build), to show where the meter synchronises.
- the third-party meters' "ACME" power distribution unit: counter files in tmp_path. The meter
  classes themselves are real plugin code, installed as a distribution with an ``ecnas_plugin``
  entry point on a temporary path (as tests/test_registry.py does) and found by the registry.
codecarbon is exercised for real (offline tracker, real CPU work) when it is installed.
"""

from __future__ import annotations

import builtins
import math
import os
import sys
import time
import subprocess
import types
from pathlib import Path

import pytest

from conftest import load_plugin
from ecnas_plugin.errors import DataFormatError, UnknownName
from ecnas_plugin.energy.meters import (
    CodecarbonMeter,
    CombinedMeter,
    MeterConfigError,
    MeterError,
    NvmlMeter,
    RaplMeter,
    Reading,
    apply_pue,
    builtin_meters,
    default_meter,
    meters_report,
    plan_meters,
    rapl,
    synchronize_cuda,
)

MAX_UJ = 262143328850  # a real max_energy_range_uj value (Intel Xeon)


# ---------------------------------------------------------------- fake RAPL sysfs


def make_zone(parent: Path, zone: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    z = parent / zone
    z.mkdir()
    (z / "name").write_text(name + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def set_uj(zone: Path, value: int) -> None:
    (zone / "energy_uj").write_text(f"{value}\n")


@pytest.fixture
def two_socket(tmp_path: Path) -> dict[str, Path]:
    """Fake powercap tree of a two-socket server (stands in for absent RAPL hardware).

    Each package has core, uncore and dram sub-zones; sub-zones are also symlinked at the top
    level as the kernel does; a psys zone and an MMIO copy of package 0 are present too.
    """
    root = tmp_path / "powercap"
    root.mkdir()
    (root / "intel-rapl").mkdir()  # the control-type directory: no counter
    z = {}
    for pkg in (0, 1):
        p = make_zone(root, f"intel-rapl:{pkg}", f"package-{pkg}", 1_000_000)
        z[f"pkg{pkg}"] = p
        for sub, name in enumerate(("core", "uncore", "dram")):
            s = make_zone(p, f"intel-rapl:{pkg}:{sub}", name, 500_000)
            z[f"{name}{pkg}"] = s
            (root / s.name).symlink_to(s, target_is_directory=True)
    z["psys"] = make_zone(root, "intel-rapl:2", "psys", 7_000_000)
    z["mmio"] = make_zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    z["root"] = root
    return z


def test_rapl_counts_packages_and_dram_once(two_socket):
    z = two_socket
    meter = RaplMeter(root=z["root"], poll_s=None)
    meter.start()
    set_uj(z["pkg0"], 1_000_000 + 30_000_000)  # +30 J
    set_uj(z["pkg1"], 1_000_000 + 20_000_000)  # +20 J
    set_uj(z["dram0"], 500_000 + 4_000_000)  # +4 J
    set_uj(z["dram1"], 500_000 + 1_000_000)  # +1 J
    for k in ("core0", "uncore0", "core1", "uncore1"):  # inside the packages: must not add
        set_uj(z[k], 500_000 + 99_000_000)
    set_uj(z["psys"], 7_000_000 + 99_000_000)  # whole SoC: must not add
    set_uj(z["mmio"], 1_000_000 + 99_000_000)  # MMIO copy of package 0: must not add
    r = meter.stop()
    assert r.energy_j == pytest.approx({"cpu": 50.0, "ram": 5.0})
    assert r.method == {"cpu": "counter", "ram": "counter"}
    assert sorted(r.raw["domains"]) == ["intel-rapl:0", "intel-rapl:0:2", "intel-rapl:1", "intel-rapl:1:2"]
    skipped = " ".join(r.raw["skipped"])
    for zone in ("intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1:0", "intel-rapl:1:1", "intel-rapl:2"):
        assert zone in skipped
    assert "mmio" not in " ".join(r.raw["domains"])
    assert len(r.devices) == 4 and r.raw["wraps"] == 0


def test_rapl_reads_across_a_wraparound(two_socket):
    """The package counter passes max_energy_range_uj during the window and restarts at 0."""
    z = two_socket
    set_uj(z["pkg0"], MAX_UJ - 2_000_000)
    meter = RaplMeter(root=z["root"], components=["cpu"], poll_s=None)
    meter.start()
    set_uj(z["pkg0"], 3_000_000)  # 2 J to the wrap, 3 J after it
    r = meter.stop()
    assert r.energy_j == pytest.approx({"cpu": 5.0})
    assert r.raw["wraps"] == 1
    assert "ram" not in r.energy_j


def test_rapl_periodic_reads_catch_repeated_wraps(two_socket):
    """Two wraps in one window are only seen with reads in between; ``_update`` is the read the
    background poller makes every ``poll_s`` seconds (called here directly to be deterministic)."""
    z = two_socket
    meter = RaplMeter(root=z["root"], components=["cpu"], poll_s=None)
    meter.start()
    set_uj(z["pkg0"], 500_000)  # wrapped: MAX - 0.5 J + 0.5 J = MAX
    meter._update()
    set_uj(z["pkg0"], 400_000)  # wrapped again
    r = meter.stop()
    expected = (MAX_UJ - 1_000_000 + 500_000) + (MAX_UJ - 500_000 + 400_000)
    assert r.energy_j["cpu"] == pytest.approx(expected / 1e6)
    assert r.raw["wraps"] == 2


def test_rapl_poller_thread_runs_and_stops(two_socket):
    z = two_socket
    meter = RaplMeter(root=z["root"], poll_s=0.01)
    with meter:
        set_uj(z["pkg0"], 1_000_000 + 10_000_000)
        time.sleep(0.1)
        assert meter._poller is not None and meter._poller.is_alive()
    assert meter._poller is None
    assert meter.reading.energy_j["cpu"] == pytest.approx(10.0)


def test_rapl_missing_file_is_named(two_socket):
    z = two_socket
    (z["pkg1"] / "energy_uj").unlink()
    ok, why = RaplMeter.probe(root=z["root"])
    assert not ok and str(z["pkg1"] / "energy_uj") in why and "missing" in why
    with pytest.raises(MeterError, match="missing.*intel-rapl:1/energy_uj"):
        RaplMeter(root=z["root"]).start()


def test_rapl_permission_denied_is_named(two_socket, monkeypatch):
    """Root ignores chmod 000, so ``open`` is patched to raise PermissionError for energy_uj,
    as a non-root process gets on Linux >= 5.10."""
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if str(file).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    ok, why = RaplMeter.probe(root=two_socket["root"])
    assert not ok
    assert why.startswith(f"permission denied reading {two_socket['pkg0'] / 'energy_uj'}")
    assert "root" in why
    with pytest.raises(MeterError, match="permission denied reading .*intel-rapl:0/energy_uj"):
        RaplMeter(root=two_socket["root"]).start()


def test_rapl_unreadable_or_garbled_counter_is_named(two_socket):
    """A directory where the counter file should be (an OSError other than permission)."""
    z = two_socket
    (z["dram0"] / "energy_uj").unlink()
    (z["dram0"] / "energy_uj").mkdir()
    with pytest.raises(MeterError, match="intel-rapl:0:2/energy_uj"):
        RaplMeter(root=z["root"]).start()
    (z["dram0"] / "energy_uj").rmdir()
    (z["dram0"] / "energy_uj").write_text("n/a\n")
    with pytest.raises(DataFormatError, match="intel-rapl:0:2/energy_uj"):
        RaplMeter(root=z["root"]).start()


def test_rapl_absent_root_and_empty_root(tmp_path):
    ok, why = RaplMeter.probe(root=tmp_path / "nope")
    assert not ok and str(tmp_path / "nope") in why
    ok, why = RaplMeter.probe(root=tmp_path)
    assert not ok and "no RAPL zones" in why and str(tmp_path) in why


def test_rapl_probe_here_tells_the_truth():
    """On this machine: works exactly when every counted energy_uj can be read."""
    ok, why = RaplMeter.probe()
    assert isinstance(why, str) and why
    if not Path("/sys/class/powercap").is_dir():
        assert not ok and "/sys/class/powercap" in why
    if ok:
        with RaplMeter(poll_s=None) as m:
            sum(i * i for i in range(10_000))
        assert m.reading.energy_j["cpu"] >= 0


def test_meter_state_errors(two_socket):
    meter = RaplMeter(root=two_socket["root"], poll_s=None)
    with pytest.raises(MeterError, match="not started"):
        meter.stop()
    meter.start()
    with pytest.raises(MeterError, match="already started"):
        meter.start()
    meter.stop()
    with pytest.raises(UnknownName, match="gpu"):
        RaplMeter(root=two_socket["root"], components=["gpu"])
    with pytest.raises(MeterConfigError):
        RaplMeter(poll_s=0)


def test_context_manager_cleans_up_on_error(two_socket):
    meter = RaplMeter(root=two_socket["root"], poll_s=0.01)
    with pytest.raises(ZeroDivisionError):
        with meter:
            1 / 0
    assert meter._poller is None and not meter.running and meter.reading is None


def test_windows_are_independent(two_socket):
    """Per-epoch windows: each start/stop pair measures only its own interval."""
    z = two_socket
    meter = RaplMeter(root=z["root"], components=["cpu"], poll_s=None)
    got = []
    value = 1_000_000
    for joules in (3, 7, 11):
        meter.start()
        value += joules * 1_000_000
        set_uj(z["pkg0"], value)
        got.append(meter.stop().energy_j["cpu"])
    assert got == pytest.approx([3.0, 7.0, 11.0])


# ---------------------------------------------------------------- fake NVML


def make_fake_pynvml(energy_mj=None, power_mw=None, names=None, init_error=None) -> types.ModuleType:
    """A stand-in for ``pynvml`` (no NVIDIA GPU or driver here).

    ``energy_mj[i]`` is GPU i's cumulative counter (None: counter not supported);
    ``power_mw[i]`` its power draw in mW (a number, or a function of nothing read at each call).
    Tests change these lists while a window is open.
    """
    fake = types.ModuleType("pynvml")
    fake.NVML_ERROR_NOT_SUPPORTED = 3
    fake.NVML_ERROR_LIBRARY_NOT_FOUND = 12

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value
            super().__init__({3: "Not Supported", 12: "NVML Shared Library Not Found"}.get(value, str(value)))

    fake.NVMLError = NVMLError
    fake.energy_mj = list(energy_mj or [])
    fake.power_mw = list(power_mw or [])
    fake.names = list(names or [f"Fake GPU {i}" for i in range(len(fake.energy_mj))])
    fake.inits = 0

    def nvmlInit():
        if init_error is not None:
            raise NVMLError(init_error)
        fake.inits += 1

    def nvmlShutdown():
        fake.inits -= 1

    def counter(h):
        if fake.energy_mj[h] is None:
            raise NVMLError(3)
        return fake.energy_mj[h]

    fake.nvmlInit = nvmlInit
    fake.nvmlShutdown = nvmlShutdown
    fake.nvmlDeviceGetCount = lambda: len(fake.energy_mj)
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetName = lambda h: fake.names[h]
    fake.nvmlDeviceGetTotalEnergyConsumption = counter
    fake.nvmlDeviceGetPowerUsage = lambda h: (
        fake.power_mw[h]() if callable(fake.power_mw[h]) else fake.power_mw[h]
    )
    return fake


def test_nvml_counter_path(monkeypatch):
    fake = make_fake_pynvml(energy_mj=[5_000_000, 9_000_000], power_mw=[1, 1])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert NvmlMeter.probe() == (True, "2 GPU(s): Fake GPU 0, Fake GPU 1")
    meter = NvmlMeter()
    meter.start()
    fake.energy_mj[0] += 120_500  # 120.5 J
    fake.energy_mj[1] += 80_000
    r = meter.stop()
    assert r.energy_j == pytest.approx({"gpu": 200.5})
    assert r.method == {"gpu": "counter"}
    assert r.devices == ("0: Fake GPU 0", "1: Fake GPU 1")
    assert r.raw["devices"]["0: Fake GPU 0"]["energy_j"] == pytest.approx(120.5)
    assert r.raw["power_samples"] == 0
    assert fake.inits == 0  # every nvmlInit was matched by nvmlShutdown


def test_nvml_device_selection(monkeypatch):
    fake = make_fake_pynvml(energy_mj=[0, 0, 0])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = NvmlMeter(devices=[2])
    meter.start()
    fake.energy_mj[0] += 1_000_000
    fake.energy_mj[2] += 7_000
    r = meter.stop()
    assert r.energy_j["gpu"] == pytest.approx(7.0) and r.devices == ("2: Fake GPU 2",)
    with pytest.raises(MeterError, match="GPU index 5 out of range"):
        NvmlMeter(devices=[5]).start()
    assert fake.inits == 0


def test_nvml_unsupported_counter_falls_back_to_sampling(monkeypatch):
    """GPU 1 has no energy counter (pre-Volta): its power is sampled and integrated.

    Its power ramps linearly from 100 W at 1 kW/s from the first sample on. The trapezoid rule
    is exact for a ramp whatever the sample spacing (a left or right Riemann sum is off by
    ~8% here), so over the sampled span S the result must be 100 S + 500 S^2 joules even when
    the sampler thread is delayed on a busy machine.
    """
    first: list[float] = []

    def ramp_mw() -> float:
        now = time.perf_counter()
        if not first:
            first.append(now)
        return 1000.0 * (100.0 + 1000.0 * (now - first[0]))

    fake = make_fake_pynvml(energy_mj=[1_000_000, None], power_mw=[50_000, ramp_mw])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = NvmlMeter(sample_interval_s=0.05)
    meter.start()
    fake.energy_mj[0] += 10_000
    time.sleep(0.3)
    r = meter.stop()
    assert r.method == {"gpu": "sampled"}  # the weakest device method labels the sum
    dev = r.raw["devices"]
    assert dev["0: Fake GPU 0"] == {"energy_j": pytest.approx(10.0), "method": "counter"}
    assert dev["1: Fake GPU 1"]["method"] == "sampled"
    span = r.raw["sampled_span_s"]
    assert span == pytest.approx(r.duration_s, abs=0.05)
    assert dev["1: Fake GPU 1"]["energy_j"] == pytest.approx(100 * span + 500 * span**2, rel=0.01)
    assert r.raw["power_samples"] >= 3
    assert r.energy_j["gpu"] == pytest.approx(10.0 + dev["1: Fake GPU 1"]["energy_j"])
    assert meter._sampler is None and fake.inits == 0


def test_nvml_no_gpu_messages(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(init_error=12))
    ok, why = NvmlMeter.probe()
    assert not ok and "NVML Shared Library Not Found" in why and "no NVIDIA driver" in why
    with pytest.raises(MeterError, match="NVML cannot start"):
        NvmlMeter().start()
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[]))
    assert NvmlMeter.probe() == (False, "NVML found no GPU")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    ok, why = NvmlMeter.probe()
    assert not ok and "pip install nvidia-ml-py" in why


# ---------------------------------------------------------------- combining, PUE, report


def test_combined_meter_gpu_from_nvml_cpu_ram_from_rapl(two_socket, monkeypatch):
    fake = make_fake_pynvml(energy_mj=[0])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    z = two_socket
    meter = CombinedMeter([NvmlMeter(), RaplMeter(root=z["root"], poll_s=None)])
    assert meter.name == "nvml+rapl" and set(meter.components) == {"gpu", "cpu", "ram"}
    with meter:
        fake.energy_mj[0] += 300_000
        set_uj(z["pkg0"], 1_000_000 + 40_000_000)
        set_uj(z["dram1"], 500_000 + 2_000_000)
    r = meter.reading
    assert r.energy_j == pytest.approx({"gpu": 300.0, "cpu": 40.0, "ram": 2.0})
    assert r.method == {"gpu": "counter", "cpu": "counter", "ram": "counter"}
    assert set(r.raw) == {"nvml", "rapl"} and r.co2eq_g is None
    assert r.devices[0] == "nvml:0: Fake GPU 0"


def test_combined_meter_refuses_double_claims(two_socket):
    with pytest.raises(MeterConfigError, match="'rapl' and 'codecarbon' both measure 'cpu'"):
        CombinedMeter([RaplMeter(root=two_socket["root"]), CodecarbonMeter()])
    ok = CombinedMeter([RaplMeter(root=two_socket["root"]), CodecarbonMeter(components=["gpu"])])
    assert ok.components == ("cpu", "ram", "gpu")


def test_combined_meter_failed_start_leaves_nothing_running(two_socket, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(init_error=12))
    rapl = RaplMeter(root=two_socket["root"], poll_s=0.01)
    meter = CombinedMeter([rapl, NvmlMeter()])
    with pytest.raises(MeterError, match="NVML cannot start"):
        meter.start()
    assert not rapl.running and rapl._poller is None and not meter.running


def test_apply_pue_is_explicit_and_keeps_raw_joules(two_socket):
    z = two_socket
    with RaplMeter(root=z["root"], poll_s=None) as meter:
        set_uj(z["pkg0"], 1_000_000 + 3_600_000_000)  # 3600 J = 0.001 kWh
        set_uj(z["dram0"], 500_000 + 360_000_000)
    r = meter.reading
    plain = apply_pue(r)
    assert plain["pue"] == 1.0 and plain["energy_kwh"] == plain["it_energy_kwh"]
    ecnas = apply_pue(r, 1.59)
    assert ecnas["pue"] == 1.59
    assert ecnas["it_energy_kwh"] == pytest.approx(r.total_j / 3.6e6)
    assert ecnas["energy_kwh"] == pytest.approx(ecnas["it_energy_kwh"] * 1.59)
    assert ecnas["energy_j"] == r.energy_j  # raw joules unchanged, side by side
    assert ecnas["cpu_energy_kwh"] == pytest.approx(r.energy_j["cpu"] / 3.6e6)
    assert ecnas["method"] == {"cpu": "counter", "ram": "counter"} and not ecnas["estimated"]
    for bad in (0.9, float("nan"), math.inf):
        with pytest.raises(MeterConfigError, match="PUE"):
            apply_pue(r, bad)


def test_reading_refuses_bad_values():
    with pytest.raises(MeterError, match="nan"):
        Reading("x", {"cpu": float("nan")}, {"cpu": "counter"}, 1.0)
    with pytest.raises(MeterConfigError, match="method keys"):
        Reading("x", {"cpu": 1.0}, {}, 1.0)
    with pytest.raises(UnknownName, match="measurement method"):
        Reading("x", {"cpu": 1.0}, {"cpu": "guessed"}, 1.0)
    with pytest.raises(UnknownName, match="energy component"):
        Reading("x", {"disk": 1.0}, {"disk": "counter"}, 1.0)


def test_meters_report_lists_every_builtin(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rows = meters_report()
    assert [r["name"] for r in rows] == [c.name for c in builtin_meters()] == ["nvml", "rapl", "codecarbon"]
    nvml = rows[0]
    assert nvml == {"name": "nvml", "components": ["gpu"], "works": False,
                    "reason": "pynvml is not installed: pip install nvidia-ml-py", "methods": {}}
    for row in rows:
        assert isinstance(row["works"], bool) and row["reason"]
        assert bool(row["methods"]) == row["works"]  # what it would deliver, only where it works


def test_codecarbon_absent_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    assert CodecarbonMeter.probe() == (False, "codecarbon is not installed: pip install codecarbon")
    with pytest.raises(MeterError, match="pip install codecarbon"):
        CodecarbonMeter().start()


# ---------------------------------------------------------------- real codecarbon


def test_codecarbon_real_window_labels_estimates(tmp_path, monkeypatch):
    """A real offline tracker around ~300 ms of real CPU work. Here codecarbon cannot read RAPL
    (no powercap tree), so its CPU number is a TDP x load estimate and must say so."""
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)  # proves nothing is written to the working directory
    meter = CodecarbonMeter(country_iso_code="DNK")
    with meter:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            sum(i * i for i in range(1000))
    r = meter.reading
    rapl_readable = RaplMeter.probe()[0]
    assert r.method["cpu"] == ("counter" if rapl_readable else "estimated")
    assert r.method["ram"] == "estimated"
    assert r.is_estimate
    if not NvmlMeter.probe()[0]:
        assert "gpu" not in r.energy_j  # no GPU: left out, not a fake 0 J
    assert r.energy_j["cpu"] > 0 and r.energy_j["ram"] > 0
    assert r.duration_s >= 0.3
    assert r.co2eq_g is not None and r.co2eq_g > 0
    assert r.raw["country_iso_code"] == "DNK"
    kwh = sum(r.raw["energy_kwh"][c] for c in r.energy_j)
    assert r.total_j == pytest.approx(kwh * 3.6e6)
    assert os.listdir(tmp_path) == []
    assert apply_pue(r, 1.59)["estimated"] is True


# ---------------------------------------------------------------- expected methods, `auto`


def one_package_no_dram(root: Path) -> Path:
    """Fake powercap tree of a desktop CPU whose RAPL has no DRAM domain (stands in for RAPL)."""
    root.mkdir()
    make_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    return root


def test_expected_methods_follow_the_hardware(two_socket, tmp_path, monkeypatch):
    assert RaplMeter.expected_methods(root=two_socket["root"]) == {"cpu": "counter", "ram": "counter"}
    assert RaplMeter.expected_methods(root=one_package_no_dram(tmp_path / "pc")) == {"cpu": "counter"}
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[0, 0]))
    assert NvmlMeter.expected_methods() == {"gpu": "counter"}
    monkeypatch.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[0, None], power_mw=[1, 1]))
    assert NvmlMeter.expected_methods() == {"gpu": "sampled"}  # one GPU without the counter


@pytest.fixture
def no_hardware(tmp_path, monkeypatch):
    """Neither NVML nor RAPL, whatever this machine has; tests add the fakes they need."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(rapl, "DEFAULT_ROOT", tmp_path / "no-powercap")
    return monkeypatch


def test_auto_combines_nvml_and_rapl_and_never_mixes_in_estimates(no_hardware, two_socket, tmp_path):
    builtins_ = builtin_meters()
    no_hardware.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[0]))
    no_hardware.setattr(rapl, "DEFAULT_ROOT", two_socket["root"])
    plan = plan_meters(builtins_)
    assert plan.name == "nvml+rapl" and plan.methods == {"gpu": "counter", "cpu": "counter", "ram": "counter"}
    meter = default_meter(builtins_)
    assert isinstance(meter, CombinedMeter) and meter.name == "nvml+rapl"
    # a GPU without the energy counter is still measured (sampled power), beside RAPL's counters
    no_hardware.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[None], power_mw=[1]))
    plan = plan_meters(builtins_)
    assert plan.name == "nvml+rapl" and plan.methods["gpu"] == "sampled"
    # RAPL without DRAM: the CPU counter alone, not topped up with codecarbon's RAM estimate
    no_hardware.setattr(rapl, "DEFAULT_ROOT", one_package_no_dram(tmp_path / "pc"))
    no_hardware.setitem(sys.modules, "pynvml", None)
    plan = plan_meters(builtins_)
    assert plan.name == "rapl" and plan.methods == {"cpu": "counter"}
    # only the GPU is measured: NVML alone; codecarbon's CPU/RAM estimates would make the total an estimate
    no_hardware.setattr(rapl, "DEFAULT_ROOT", tmp_path / "none")
    no_hardware.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[0]))
    assert plan_meters(builtins_).name == "nvml"


def test_auto_without_any_measurement(no_hardware):
    """codecarbon's estimates only where nothing measures; nothing at all is a named error."""
    plan_ok = CodecarbonMeter.probe()[0]
    if plan_ok:
        plan = plan_meters(builtin_meters())
        assert plan.name == "codecarbon" and set(plan.methods.values()) == {"estimated"}
    no_hardware.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(MeterError, match=r"no energy meter works here: nvml: pynvml is not installed.*"
                                         r"rapl: .*no-powercap.*codecarbon: codecarbon is not installed"):
        plan_meters(builtin_meters())


ACME = '''
import os
from pathlib import Path

from ecnas_plugin.energy.meters.base import Meter, MeterError, Reading
from ecnas_plugin.hookspecs import hookimpl

ENV = "ACME_PDU_DIR"


class _Counters(Meter):
    """Cumulative microjoule counters an ACME power distribution unit exposes as files."""

    files: dict = {}

    @classmethod
    def _present(cls):
        folder = os.environ.get(ENV)
        if not folder or not Path(folder).is_dir():
            return None, []
        return Path(folder), [c for c in cls.components if (Path(folder) / cls.files[c]).is_file()]

    @classmethod
    def probe(cls):
        folder, found = cls._present()
        if folder is None:
            return False, f"no ACME PDU (${ENV} is not a folder)"
        if not found:
            return False, f"no ACME counter for {list(cls.components)} in {folder}"
        return True, f"ACME PDU counters for {found} in {folder}"

    @classmethod
    def expected_methods(cls):
        return {c: "counter" for c in cls._present()[1]}

    def _read(self):
        try:
            return {c: int((self._folder / self.files[c]).read_text()) for c in self._measured}
        except (OSError, ValueError) as exc:
            raise MeterError(f"ACME counter unreadable: {exc}") from None

    def _begin(self):
        self._folder, found = self._present()
        self._measured = [c for c in self.selected if c in found]
        self._start = self._read()

    def _end(self, duration_s):
        now = self._read()
        energy = {c: (now[c] - self._start[c]) / 1e6 for c in self._measured}
        return Reading(self.name, energy, {c: "counter" for c in energy}, duration_s, devices=("acme-pdu",))


class AcmePduMeter(_Counters):
    name = "acme-pdu"
    components = ("cpu", "ram")
    methods = {"cpu": "counter", "ram": "counter"}
    files = {"cpu": "cpu_uj", "ram": "ram_uj"}


class AcmeGpuMeter(_Counters):
    name = "acme-gpu"
    components = ("gpu", "ram")
    methods = {"gpu": "counter", "ram": "counter"}
    files = {"gpu": "gpu_uj", "ram": "ram_uj"}


@hookimpl
def ecnas_meters():
    return [AcmePduMeter, AcmeGpuMeter]
'''


@pytest.fixture
def acme(tmp_path, no_hardware):
    """The third-party ``acme_meters`` distribution installed on a temporary path and loaded by the
    process registry; returns the folder its (fake) PDU counters will live in."""
    _, plugin = load_plugin(no_hardware, tmp_path / "site", "acme_meters", ACME)
    assert plugin.provides == {"meters": ["acme-pdu", "acme-gpu"]}
    no_hardware.delenv("ACME_PDU_DIR", raising=False)
    return tmp_path / "pdu"


def write_uj(folder: Path, name: str, value: int) -> None:
    tmp = folder / f".{name}.tmp"
    tmp.write_text(f"{value}\n")
    os.replace(tmp, folder / name)  # a reader never sees half a number


def test_auto_picks_a_third_party_meter_where_it_is_the_best_that_works(acme, no_hardware, capsys):
    from ecnas_plugin.cli import main as cli_main
    from ecnas_plugin.energy.campaign import make_meter

    # no PDU: auto falls back to what works (codecarbon's estimate, if installed) and says why not ACME
    try:
        plan = plan_meters()
        assert plan.name == "codecarbon"
    except MeterError as exc:
        assert "acme-pdu: no ACME PDU" in str(exc)
        plan = None
    if plan is not None:
        reasons = {name: why for name, _, why in plan.considered}
        assert reasons["acme-pdu"].startswith("no ACME PDU") and "acme-gpu" in reasons

    # the PDU counts CPU and RAM: a counter beats codecarbon's estimate
    acme.mkdir()
    write_uj(acme, "cpu_uj", 1_000_000)
    write_uj(acme, "ram_uj", 2_000_000)
    no_hardware.setenv("ACME_PDU_DIR", str(acme))
    plan = plan_meters()
    assert plan.name == "acme-pdu" and plan.methods == {"cpu": "counter", "ram": "counter"}
    meter = make_meter("auto")  # what `ecnas measure --meter auto` gets
    assert type(meter).__name__ == "AcmePduMeter" and type(meter).__module__ == "ecnas_test_acme_meters"
    with meter:
        write_uj(acme, "cpu_uj", 1_000_000 + 25_000_000)
        write_uj(acme, "ram_uj", 2_000_000 + 500_000)
    assert meter.reading.energy_j == pytest.approx({"cpu": 25.0, "ram": 0.5})
    assert cli_main(["meters"]) == 0
    shown = capsys.readouterr().out
    assert "acme-pdu" in shown and "auto: acme-pdu (cpu: counter, ram: counter)" in shown

    # a GPU (fake NVML) joins it: components that do not overlap are combined
    no_hardware.setitem(sys.modules, "pynvml", make_fake_pynvml(energy_mj=[0]))
    assert plan_meters().name == "nvml+acme-pdu"
    assert make_meter("auto").name == "nvml+acme-pdu"

    # without NVML, the second ACME meter gives the GPU, restricted to it (its RAM is taken)
    no_hardware.setitem(sys.modules, "pynvml", None)
    write_uj(acme, "gpu_uj", 0)
    plan = plan_meters()
    assert plan.name == "acme-pdu+acme-gpu" and plan.methods == {"gpu": "counter", "cpu": "counter",
                                                                  "ram": "counter"}
    meter = plan.build()
    assert [m.selected for m in meter.meters] == [("cpu", "ram"), ("gpu",)]

    # where built-in RAPL counts the same components as well, the built-in (registered first) is kept
    root = Path(str(acme) + "-powercap")
    root.mkdir()
    make_zone(root, "intel-rapl:0", "package-0", 0)
    make_zone(root / "intel-rapl:0", "intel-rapl:0:0", "dram", 0)
    no_hardware.setattr(rapl, "DEFAULT_ROOT", root)
    (acme / "gpu_uj").unlink()
    assert plan_meters().name == "rapl"


def test_campaign_with_auto_records_the_third_party_counter(acme, no_hardware, tmp_path, shared_data):
    """Real training on Flowers-17 metered by the third-party meter ``auto`` picked. The fake PDU
    draws a steady 30 W CPU + 3 W RAM: a thread advances its counters as the hardware would."""
    import threading

    from ecnas_plugin.energy import campaign as cp

    acme.mkdir()
    no_hardware.setenv("ACME_PDU_DIR", str(acme))
    t0 = time.perf_counter()
    halt = threading.Event()

    def tick():
        elapsed = time.perf_counter() - t0
        write_uj(acme, "cpu_uj", int(30e6 * elapsed))
        write_uj(acme, "ram_uj", int(3e6 * elapsed))

    def hardware():
        while not halt.wait(0.01):
            tick()

    tick()  # the counters exist before anyone probes them
    thread = threading.Thread(target=hardware, daemon=True)
    thread.start()
    try:
        spec = cp.CampaignSpec(name="acme", space="nasbench201", epochs=2, network={"C": 4, "N": 1},
                               archs=("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                      "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",), torch_threads=1)
        table = cp.run_campaign(spec, tmp_path / "run", progress=False).table
    finally:
        halt.set()
        thread.join()
    row = table.frame.iloc[0]
    assert table.manifest.components == ("cpu", "ram") and row["energy_method"] == "counter"
    assert "acme-pdu" in table.manifest.tool and "ESTIMATED" not in table.manifest.notes
    assert cp.campaign_metadata(table.manifest)["methods"] == {"cpu": "counter", "ram": "counter"}
    assert row["cpu_power_w"] == pytest.approx(30.0, rel=0.25)
    assert row["ram_energy_kwh"] / row["cpu_energy_kwh"] == pytest.approx(0.1, rel=0.25)


# ---------------------------------------------------------------- CUDA at window edges


def test_window_edges_synchronise_cuda(two_socket, monkeypatch):
    """torch here is a CPU build, so ``torch.cuda`` is replaced by a recorder (the missing GPU).
    The fake RAPL package counter gains 5 J inside each synchronisation, as the energy of queued
    kernels finishing: the start edge keeps it out (queued before the window), the stop edge in."""
    import torch

    z = two_socket
    calls = []
    counter = {"uj": 1_000_000}

    def synchronize(device=None):
        calls.append("sync")
        counter["uj"] += 5_000_000
        set_uj(z["pkg0"], counter["uj"])

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    meter = RaplMeter(root=z["root"], components=["cpu"], poll_s=None)
    meter.start()
    assert calls == ["sync"]
    counter["uj"] += 2_000_000  # 2 J of work inside the window
    set_uj(z["pkg0"], counter["uj"])
    r = meter.stop()
    assert calls == ["sync", "sync"]
    assert r.energy_j["cpu"] == pytest.approx(2.0 + 5.0)  # the window's work and what finished at its end

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # CUDA never used: no sync
    with meter:
        pass
    assert calls == ["sync", "sync"] and not synchronize_cuda()


def test_meters_never_import_torch():
    """A meter used without torch (or before torch initialised CUDA) neither imports nor starts it."""
    code = ("import sys, tempfile, pathlib\n"
            "from ecnas_plugin.energy.meters import RaplMeter, synchronize_cuda\n"
            "root = pathlib.Path(tempfile.mkdtemp())\n"
            "z = root / 'intel-rapl:0'; z.mkdir()\n"
            "(z / 'name').write_text('package-0'); (z / 'energy_uj').write_text('5')\n"
            "(z / 'max_energy_range_uj').write_text('100')\n"
            "with RaplMeter(root=root, poll_s=None) as m: pass\n"
            "assert not synchronize_cuda() and 'torch' not in sys.modules, sorted(sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr

