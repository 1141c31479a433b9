"""CPU package and DRAM energy from RAPL counters in the Linux powercap sysfs tree.

Layout (``/sys/class/powercap``)::

    intel-rapl:0/          name = package-0   -> "cpu"
    intel-rapl:0/intel-rapl:0:0   core        (inside the package: skipped, no double count)
    intel-rapl:0/intel-rapl:0:1   uncore      (inside the package: skipped)
    intel-rapl:0/intel-rapl:0:2   dram        -> "ram"
    intel-rapl:1/          name = package-1 or psys (psys covers the whole SoC: skipped)

The sysfs tree also links every sub-zone at the top level (``intel-rapl:0:2``); zones are found
by their ``intel-rapl:N[:M]`` name wherever they are, each counted once. ``intel-rapl-mmio:*``
zones repeat the package counter through MMIO and are skipped. AMD CPUs expose the same
``intel-rapl`` layout on recent kernels.

Each ``energy_uj`` counter wraps to 0 after ``max_energy_range_uj`` (about 262 kJ: ~20 minutes at
200 W). A value that went down is taken to have wrapped exactly once, which holds only if no two
reads are a full wrap period apart; a background thread therefore re-reads the counters every
``poll_s`` seconds (30 s by default) so long windows stay correct. ``poll_s=None`` turns it off.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecnas_plugin.errors import DataFormatError

from .base import Meter, MeterConfigError, MeterError, Reading

DEFAULT_ROOT = Path("/sys/class/powercap")  # read at call time: where no root is given, this one
_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_PERMISSION_HINT = (
    "energy_uj is readable by root only on Linux >= 5.10 (CVE-2020-8694); run as root or "
    "grant read access, e.g. `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
)


def read_counter(path: Path) -> int:
    """Read one integer sysfs file; errors name the file and what is wrong with it."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise MeterError(f"RAPL file missing: {path}") from None
    except PermissionError:
        raise MeterError(f"permission denied reading {path}: {_PERMISSION_HINT}") from None
    except OSError as e:  # a directory in the way, an I/O error from the driver
        raise MeterError(f"cannot read RAPL file {path}: {e.strerror or e}") from None
    try:
        return int(text.strip())
    except ValueError:
        raise DataFormatError(path, 0, f"expected an integer counter, got {text.strip()[:40]!r}") from None


@dataclass(frozen=True)
class RaplDomain:
    """One counted RAPL zone: its sysfs directory, its ``name`` file and the component it feeds."""

    zone: str  # "intel-rapl:0" or "intel-rapl:0:2"
    path: Path
    label: str  # contents of the name file: "package-0", "dram"
    component: str  # "cpu" or "ram"
    max_range_uj: int


def find_domains(root: Path | None = None) -> tuple[list[RaplDomain], list[str]]:
    """Counted domains under ``root``, and the zones skipped with why (for ``raw``).

    Raises :class:`MeterError` when the root or its zones are missing or unreadable.
    """
    root = Path(DEFAULT_ROOT if root is None else root)
    if not root.is_dir():
        raise MeterError(
            f"{root} does not exist: no powercap driver (containers and VMs often lack RAPL)"
        )
    zones: dict[str, Path] = {}
    for top in sorted(root.iterdir()):
        candidates = [top, *sorted(top.iterdir())] if top.is_dir() else [top]
        for p in candidates:
            if _ZONE.match(p.name) and p.name not in zones:
                zones[p.name] = p
    if not zones:
        raise MeterError(f"no RAPL zones (intel-rapl:N) under {root}")
    domains: list[RaplDomain] = []
    skipped: list[str] = []
    for zone, path in sorted(zones.items(), key=lambda kv: _zone_order(kv[0])):
        label = _read_name(path / "name")
        is_sub = _ZONE.match(zone).group(2) is not None  # type: ignore[union-attr]
        if label == "dram":
            component = "ram"
        elif label.startswith("package") and not is_sub:
            component = "cpu"
        else:
            why = "inside its package" if is_sub else "not a package or dram domain"
            skipped.append(f"{zone} ({label}: {why})")
            continue
        max_range = read_counter(path / "max_energy_range_uj")
        if max_range <= 0:
            raise DataFormatError(path / "max_energy_range_uj", 0, f"range {max_range} <= 0")
        domains.append(RaplDomain(zone, path, label, component, max_range))
    if not domains:
        raise MeterError(f"no package or dram RAPL domain under {root} (found: {', '.join(skipped)})")
    return domains, skipped


def _zone_order(zone: str) -> tuple[int, int]:
    m = _ZONE.match(zone)
    return int(m.group(1)), int(m.group(2) or -1)  # type: ignore[union-attr]


def _read_name(path: Path) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise MeterError(f"cannot read RAPL zone name {path}: {e.strerror or e}") from None


class RaplMeter(Meter):
    """CPU package ("cpu") and DRAM ("ram") energy from RAPL counters; method ``"counter"``."""

    name = "rapl"
    components = ("cpu", "ram")
    methods = {"cpu": "counter", "ram": "counter"}

    def __init__(
        self,
        root: str | Path | None = None,
        components: Sequence[str] | None = None,
        poll_s: float | None = 30.0,
    ):
        super().__init__(components)
        if poll_s is not None and not poll_s > 0:
            raise MeterConfigError(f"poll_s must be > 0 seconds or None, got {poll_s!r}")
        self.root = Path(DEFAULT_ROOT if root is None else root)
        self.poll_s = poll_s
        self._domains: list[RaplDomain] = []
        self._skipped: list[str] = []
        self._last: list[int] = []
        self._acc_uj: list[int] = []
        self._wraps = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._poller: threading.Thread | None = None

    @classmethod
    def probe(cls, root: str | Path | None = None) -> tuple[bool, str]:
        root = Path(DEFAULT_ROOT if root is None else root)
        try:
            domains, _ = find_domains(root)
            for d in domains:
                read_counter(d.path / "energy_uj")
        except (MeterError, DataFormatError) as e:
            return False, str(e)
        names = ", ".join(f"{d.label}->{d.component}" for d in domains)
        return True, f"{len(domains)} RAPL domain(s) readable under {root}: {names}"

    @classmethod
    def expected_methods(cls, root: str | Path | None = None) -> dict[str, str]:
        """``counter`` for each component a readable domain covers (no DRAM zone: no "ram")."""
        domains, _ = find_domains(root)
        return {c: "counter" for c in cls.components if any(d.component == c for d in domains)}

    def _begin(self) -> None:
        if not self._domains:  # discover once; later windows reuse the domain list
            found, self._skipped = find_domains(self.root)
            self._domains = [d for d in found if d.component in self.selected]
        if not self._domains:
            raise MeterError(f"no RAPL domain under {self.root} for components {self.selected}")
        self._last = [read_counter(d.path / "energy_uj") for d in self._domains]
        self._acc_uj = [0] * len(self._domains)
        self._wraps = 0
        if self.poll_s is not None:
            self._halt.clear()
            self._poller = threading.Thread(target=self._poll, name="rapl-poll", daemon=True)
            self._poller.start()

    def _update(self) -> None:
        """Add every counter's increase since the last read, counting a decrease as one wrap."""
        now = [read_counter(d.path / "energy_uj") for d in self._domains]
        with self._lock:
            for i, (d, cur) in enumerate(zip(self._domains, now)):
                delta = cur - self._last[i]
                if delta < 0:
                    delta += d.max_range_uj
                    self._wraps += 1
                self._acc_uj[i] += delta
                self._last[i] = cur

    def _poll(self) -> None:
        while not self._halt.wait(self.poll_s):
            try:
                self._update()
            except MeterError:
                return  # stop() re-reads and reports the error

    def _stop_poller(self) -> None:
        if self._poller is not None:
            self._halt.set()
            self._poller.join()
            self._poller = None

    def _abort(self) -> None:
        self._stop_poller()

    def _end(self, duration_s: float) -> Reading:
        self._stop_poller()
        self._update()
        energy: dict[str, float] = {}
        per_domain = {}
        for d, uj in zip(self._domains, self._acc_uj):
            energy[d.component] = energy.get(d.component, 0.0) + uj / 1e6
            per_domain[d.zone] = {"name": d.label, "component": d.component, "energy_j": uj / 1e6}
        return Reading(
            meter=self.name,
            energy_j=energy,
            method={c: "counter" for c in energy},
            duration_s=duration_s,
            devices=tuple(f"{d.label} ({d.zone})" for d in self._domains),
            raw={
                "root": str(self.root),
                "domains": per_domain,
                "skipped": list(self._skipped),
                "wraps": self._wraps,
            },
        )
