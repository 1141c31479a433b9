"""`ecnas contribute FILE`: check a measurement file, then merge it atomically into a user table.

A measurement file is a table folder (``manifest.json`` + ``table.parquet`` [+
``checkpoints.parquet``], as ``ecnas measure`` writes to ``<out>/table``), a campaign folder
holding such a ``table/``, or a ``.parquet`` file with its manifest beside it (``manifest.json``
or ``<stem>.manifest.json``) or given explicitly.

The table's space must be a registered search space, and every ``arch_key`` (of the rows and of
the checkpoints) goes through that space's ``canonical_key``: a key the space refuses is reported
with its row, and accepted keys are stored in canonical form (so an upper-case module hash cannot
slip past the duplicate check). The target is a user table: a plain name starting with ``user-``
(default ``user-<space>``), a folder directly under the cache's ``tables/``.

Every check runs and every problem is reported with its row before anything is written: schema
(columns, NaN, ranges, choices), units and plausibility (implied average IT power within the range
of the device and components measured: a kWh column holding joules or a time in milliseconds
lands far outside), duplicate keys in the file and against rows already contributed (a duplicate
is refused, never an overwrite), and campaign metadata (tool, PUE, components, hardware and the
campaign settings ``ecnas measure`` records). Accepted rows are merged under a lock and written
with :meth:`EnergyTable.save` (temp folder, then rename); a rejection changes no file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ecnas_plugin.errors import DataFormatError, EcnasError, InvalidArchitecture, SchemaError, UnknownName
from ecnas_plugin.hookspecs import hookimpl
from ecnas_plugin.schema import COLUMNS, DATA_SOURCES, J_PER_KWH, KEY_COLUMNS, row_problems
from ecnas_plugin.table import (CHECKPOINTS_FILE, MANIFEST_FILE, TABLE_FILE, EnergyTable, Manifest, TableSpec,
                                 restore_interrupted_save)

from .campaign import campaign_metadata

USER_PREFIX = "user-"
# A user table's name: one plain path component under the cache's tables folder.
# Average power one device of each component can draw (W): generous bounds for unknown devices.
# The CPU and RAM floors are low because a meter that attributes power per process (codecarbon)
# gives a one-thread run on a many-core machine shared with other work a fraction of a watt
# (0.2 W seen here under load); the mix-ups the check is for are 1000x (ms vs s) or more off.
COMPONENT_POWER_W = {"gpu": (5.0, 1000.0), "cpu": (0.05, 600.0), "ram": (0.01, 200.0)}
# Known GPUs (substring of the hardware label): upper bound = 1.5 x board power (TDP).
GPU_MAX_W = {"H200": 700, "H100": 700, "A100": 400, "V100": 300, "A6000": 300, "RTX 6000": 260,
             "RTX 3090": 350, "RTX 3060": 170, "TITAN Xp": 250, "L4": 72, "T4": 70}
METADATA_KEYS = ("name", "space", "dataset", "epochs", "meter", "methods", "pue")


@dataclass(frozen=True)
class Problem:
    """One reason to reject: a row of the contributed table (0-based; None = the whole file)."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        return f"{where}" + (f" [{self.column}]" if self.column else "") + f": {self.message}"


@dataclass
class ContributionReport:
    """The outcome: accepted (and where the rows went) or rejected with every problem found."""

    source: Path
    target: str
    rows: int
    problems: list[Problem] = field(default_factory=list)
    table_dir: Path | None = None
    total_rows: int | None = None
    dry_run: bool = False
    sources: str = ""  # the merged table's rows by source, e.g. "14 estimated (a power model, not measured)"

    @property
    def accepted(self) -> bool:
        return not self.problems

    def text(self, limit: int = 50) -> str:
        if self.accepted and self.dry_run:
            return (f"dry run: {self.rows} row(s) from {self.source} pass every check; "
                    f"{self.target!r} would hold {self.total_rows} rows (nothing was written)")
        if self.accepted:
            return (f"accepted {self.rows} row(s) from {self.source} into {self.target!r} "
                    f"({self.total_rows} rows now: {self.sources}; {self.table_dir})")
        lines = [f"rejected {self.source}: {len(self.problems)} problem(s); nothing was changed"]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


class ContributionRejected(EcnasError, ValueError):
    """Raised by ``contribute(..., raise_on_reject=True)``; carries the report."""

    def __init__(self, report: ContributionReport):
        self.report = report
        super().__init__(report.text())


# ---------------------------------------------------------------------- reading
def read_measurement(path: Path | str, manifest: Path | str | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame | None, Manifest]:
    """The raw (not yet validated) table, checkpoints and manifest of a measurement file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, "does not exist (give an `ecnas measure` output folder, a table "
                                          "folder or a .parquet file)")
    if path.is_dir():
        if (path / "table" / MANIFEST_FILE).is_file() and not (path / MANIFEST_FILE).is_file():
            path = path / "table"  # an `ecnas measure` output folder
        table_file, manifest_path = path / TABLE_FILE, Path(manifest) if manifest else path / MANIFEST_FILE
        checkpoints_file = path / CHECKPOINTS_FILE
    elif path.suffix == ".parquet":
        table_file, checkpoints_file = path, None
        candidates = [Path(manifest)] if manifest else [path.with_name(f"{path.stem}.manifest.json"),
                                                         path.with_name(MANIFEST_FILE)]
        manifest_path = next((c for c in candidates if c.is_file()), candidates[0])
    else:
        raise DataFormatError(path, None, "not a measurement file: expected a table folder or a .parquet file")
    if not manifest_path.is_file():
        raise DataFormatError(manifest_path, None, "manifest missing: every contribution needs its provenance")
    if not table_file.is_file():
        raise DataFormatError(table_file, None, "table file missing")
    meta = Manifest.from_json(manifest_path.read_text(), str(manifest_path))
    _verify(table_file, meta.checksum)
    frame = _read_parquet(table_file)
    checkpoints = None
    if checkpoints_file is not None and checkpoints_file.is_file():
        _verify(checkpoints_file, meta.checkpoints_checksum)
        checkpoints = _read_parquet(checkpoints_file)
    return frame, checkpoints, meta


def _verify(path: Path, checksum: str) -> None:
    from ecnas_plugin.datasets import sha256_file

    if checksum and sha256_file(path) != checksum:
        raise DataFormatError(path, None, "sha256 does not match the manifest's checksum: the file changed "
                                          "after its manifest was written")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataFormatError(path, None, f"not a readable parquet file: {exc}") from None


# ---------------------------------------------------------------------- checks
def check_rows(frame: pd.DataFrame, meta: Manifest, existing: EnergyTable | None = None,
               power_range_w: tuple[float, float] | None = None) -> list[Problem]:
    """Every row-level and file-level problem of a contributed table (empty list: acceptable)."""
    problems: list[Problem] = []
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        problems.append(Problem(None, unknown[0], f"unknown column(s) {unknown}"))
    needed = [c.name for c in COLUMNS.values() if c.required] + ["train_time_s"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        problems.append(Problem(None, missing[0], f"missing column(s) {missing} (train_time_s is needed "
                                                  f"to check the energy's plausibility)"))
        return problems
    if frame.empty:
        return [Problem(None, None, "the table has no rows")]
    problems += _column_problems(frame)
    problems += _flag(frame["space"] != meta.space, "space", f"space differs from the manifest's {meta.space!r}")
    # a steady-state window scaled to its epoch is data when the row records its window
    windowed = (frame["source"] == "scaled") & frame.get("window_steps", pd.Series(index=frame.index, dtype=float)).notna() \
        & frame.get("epoch_steps", pd.Series(index=frame.index, dtype=float)).notna()
    problems += _flag(~frame["source"].isin(DATA_SOURCES) & ~windowed, "source",
                      f"only {' or '.join(DATA_SOURCES)} rows, or scaled rows that record their metered window "
                      "(window_steps, epoch_steps), can be contributed (other scaled and predicted values are "
                      "derived, not data)")
    if "energy_method" in frame:  # an estimate is never a measurement, in either column
        estimated = frame["energy_method"] == "estimated"
        problems += _flag(estimated & (frame["source"] == "measured"), "source",
                          "energy_method is 'estimated' (a power model): the source must say 'estimated', not 'measured'")
        problems += _flag(~estimated & frame["energy_method"].notna() & (frame["source"] == "estimated"), "source",
                          "source 'estimated' but energy_method says it was read from a counter or sampled")
    if "dataset" in frame:
        synthetic = frame["dataset"].astype(str).str.contains("synthetic")
        for col in ("train_acc", "val_acc", "test_acc"):
            if col in frame:
                problems += _flag(synthetic & frame[col].notna(), col,
                                  "accuracy on synthetic inputs is meaningless; energy-only rows leave it empty")
    dup = frame.duplicated(list(KEY_COLUMNS), keep="first")
    problems += _flag(dup, "arch_key", "duplicate key: the same (arch, dataset, epochs, hardware, campaign, "
                                       "repeat) appears earlier in this file")
    if existing is not None:
        known = set(zip(*(existing.frame[c].tolist() for c in KEY_COLUMNS)))
        already = [tuple(k) in known for k in zip(*(frame[c].tolist() for c in KEY_COLUMNS))]
        problems += _flag(pd.Series(already, index=frame.index), "arch_key",
                          f"already contributed to {existing.name!r}: a duplicate, not an overwrite")
    problems += _power_problems(frame, meta, power_range_w)
    problems += _metadata_problems(frame, meta)
    return sorted(problems, key=lambda p: (-1 if p.row is None else p.row, p.column or ""))


def _flag(mask: pd.Series | np.ndarray, column: str | None, message: str) -> list[Problem]:
    mask = np.asarray(mask, dtype=bool)
    return [Problem(int(i), column, message) for i in np.flatnonzero(mask)]


def _column_problems(frame: pd.DataFrame) -> list[Problem]:
    """The schema's rules, every offending row (validate_frame stops at the first bad column)."""
    return [Problem(row, column, message) for row, column, message in row_problems(frame)]


def device_power_range(meta: Manifest, hardware: str, devices: int = 1) -> tuple[float, float]:
    """Plausible average IT power (W) of the manifest's components on ``hardware``."""
    low = high = 0.0
    for comp in meta.components:
        lo, hi = COMPONENT_POWER_W.get(comp, (0.0, 1000.0))
        if comp == "gpu":
            hi = next((1.5 * w for name, w in GPU_MAX_W.items() if name.lower() in hardware.lower()), hi)
            lo, hi = lo * devices, hi * devices
        low, high = low + lo, high + hi
    return low, high


def _power_problems(frame: pd.DataFrame, meta: Manifest, fixed: tuple[float, float] | None) -> list[Problem]:
    """Implied average power = energy / PUE / time must fit the device: catches unit mix-ups."""
    if not meta.components or meta.pue is None:
        return []  # reported by the metadata check
    energy = pd.to_numeric(frame["train_energy_kwh"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    seconds = pd.to_numeric(frame["train_time_s"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    gpus = (frame["gpu_devices"].astype(str).str.count(";") + 1).to_numpy() if "gpu_devices" in frame else None
    problems = []
    for i in range(len(frame)):
        if not (np.isfinite(energy[i]) and np.isfinite(seconds[i])) or energy[i] < 0:
            continue  # already reported
        if seconds[i] <= 0:
            problems.append(Problem(i, "train_time_s", "training time must be > 0 for measured energy"))
            continue
        watts = energy[i] * J_PER_KWH / meta.pue / seconds[i]
        low, high = fixed or device_power_range(meta, str(frame["hardware"].iloc[i]),
                                                 int(gpus[i]) if gpus is not None else 1)
        if not low <= watts <= high:
            problems.append(Problem(i, "train_energy_kwh", f"implied average power {watts:.4g} W (energy / PUE / "
                                    f"time) is outside {low:g}..{high:g} W for {'+'.join(meta.components)} on "
                                    f"{frame['hardware'].iloc[i]!r}: wrong units (J vs kWh, ms vs s)?"))
    return problems


def _metadata_problems(frame: pd.DataFrame, meta: Manifest) -> list[Problem]:
    problems = []
    if not meta.tool.strip():
        problems.append(Problem(None, None, "manifest.tool is empty: say what measured the energy"))
    if meta.pue is None:
        problems.append(Problem(None, None, "manifest.pue is missing: record the PUE applied (1.0 = none)"))
    if not meta.components:
        problems.append(Problem(None, None, "manifest.components is empty: say which of gpu/cpu/ram were measured"))
    data = campaign_metadata(meta)
    if data is None:
        problems.append(Problem(None, None, "campaign metadata missing: the manifest's 'campaigns' is empty "
                                            "(ecnas measure records the campaign's settings there)"))
        return problems
    lacking = [k for k in METADATA_KEYS if k not in data]
    if lacking:
        problems.append(Problem(None, None, f"campaign metadata lacks {lacking}"))
        return problems
    if data["pue"] != meta.pue:
        problems.append(Problem(None, None, f"campaign PUE {data['pue']} differs from manifest PUE {meta.pue}"))
    methods = data["methods"] if isinstance(data["methods"], dict) else {}
    if sorted(methods) != sorted(meta.components):
        problems.append(Problem(None, None, f"campaign methods {methods} do not cover the components "
                                            f"{list(meta.components)}"))
    if "estimated" in methods.values() and "ESTIMATED" not in meta.notes:
        problems.append(Problem(None, None, "estimated energy must be labelled: the notes lack 'ESTIMATED'"))
    if "energy_method" in frame and methods:  # per-row provenance must agree with the campaign's meter
        from ecnas_plugin.energy.meters.base import weakest_method

        expected = weakest_method(methods.values())
        problems += _flag(frame["energy_method"] != expected, "energy_method",
                          f"differs from the campaign's meter methods (weakest: {expected!r})")
    for col, key in (("campaign", "name"), ("dataset", "dataset"), ("epochs", "epochs")):
        problems += _flag(frame[col] != data[key], col, f"differs from the campaign metadata ({data[key]!r})")
    return problems


# ---------------------------------------------------------------------- space, keys, target
def registered_space(name: object):
    """The registered search space a contributed table names, or a file-level Problem."""
    from ecnas_plugin.registry import get_registry

    try:
        return get_registry().space(name)  # type: ignore[arg-type]
    except (UnknownName, TypeError) as exc:
        return Problem(None, "space", f"the manifest's space {name!r} is not a registered search space ({exc}); "
                                      f"install the plugin that provides it")


def canonical_keys(frame: pd.DataFrame, space, what: str = "") -> tuple[pd.DataFrame, list[Problem]]:
    """``frame`` with every ``arch_key`` replaced by ``space.canonical_key`` of it, and a Problem
    (naming the row and the space's rule) for each key the space refuses."""
    if "arch_key" not in frame:
        return frame, []
    problems, keys, cache = [], [], {}
    for i, key in enumerate(frame["arch_key"].tolist()):
        if key not in cache:
            try:
                cache[key] = space.canonical_key(key) if isinstance(key, str) else InvalidArchitecture(
                    "bad-key", f"a key must be text, got {type(key).__name__}", key)
            except InvalidArchitecture as exc:
                cache[key] = exc
        found = cache[key]
        if isinstance(found, InvalidArchitecture):
            message = f"not a {space.name} key: {found}"
            problems.append(Problem(None, "arch_key", f"{what}row {i}: {message}") if what
                            else Problem(i, "arch_key", message))
            keys.append(key)
        else:
            keys.append(found)
    return frame.assign(arch_key=keys), problems


def orphan_checkpoints(checkpoints: pd.DataFrame, frame: pd.DataFrame) -> list[Problem]:
    """A Problem for every checkpoint row whose run (its table key) is not a row of ``frame``: a
    learning curve of nothing the file contributes."""
    from ecnas_plugin.table import LOOKUP_KEY

    if not set(LOOKUP_KEY) <= set(checkpoints.columns) or not set(LOOKUP_KEY) <= set(frame.columns):
        return []  # missing key columns are reported by the schema checks
    runs = set(zip(*(frame[c].tolist() for c in LOOKUP_KEY)))
    return [Problem(None, "arch_key", f"checkpoints row {i}: its run {dict(zip(LOOKUP_KEY, key))} is no row of "
                                      "the table (a checkpoint belongs to a contributed run)")
            for i, key in enumerate(zip(*(checkpoints[c].tolist() for c in LOOKUP_KEY))) if key not in runs]


def user_table_dir(name: str) -> Path:
    """The folder of user table ``name``; refuses (EcnasError) anything but a plain ``user-...``
    name that lands directly in the cache's tables folder."""
    from ecnas_plugin.api import table_dir
    from ecnas_plugin.datasets import PLAIN_NAME

    rule = (f"user table name {name!r}: must be a plain name starting with {USER_PREFIX!r} "
            f"(letters, digits, '.', '_', '-'; no path), e.g. 'user-nasbench201-pue15'")
    # the part after the prefix is a plain name too; table_dir applies the rule every table name obeys
    if not (isinstance(name, str) and name.startswith(USER_PREFIX) and PLAIN_NAME.fullmatch(name[len(USER_PREFIX):])):
        raise EcnasError(rule)
    try:
        return table_dir(name)
    except SchemaError as exc:  # e.g. a name ending '.old' (the parked copy's)
        raise EcnasError(f"{rule}; {exc}") from None


# ---------------------------------------------------------------------- merging
def contribute(path: Path | str, *, into: str | None = None, manifest: Path | str | None = None,
               power_range_w: tuple[float, float] | None = None, dry_run: bool = False) -> ContributionReport:
    """Validate a measurement file and merge it into the user table ``into`` (default ``user-<space>``).

    Returns a report; when it lists problems, no file was changed. A second contribution of the
    same rows is rejected as duplicates. ``dry_run`` checks without writing.
    """
    path = Path(path)
    if into is not None:
        try:
            user_table_dir(into)
        except EcnasError as exc:
            return ContributionReport(path, str(into), 0, [Problem(None, "into", str(exc))])
    try:
        frame, checkpoints, meta = read_measurement(path, manifest)
    except (DataFormatError, SchemaError) as exc:
        return ContributionReport(path, into or "?", 0, [Problem(None, None, str(exc))])
    space = registered_space(meta.space)
    if isinstance(space, Problem):
        return ContributionReport(path, into or "?", len(frame), [space])
    target = into or f"{USER_PREFIX}{space.name}"
    report = ContributionReport(path, target, len(frame), dry_run=dry_run)
    try:
        folder = user_table_dir(target)
    except EcnasError as exc:
        report.problems.append(Problem(None, "into", str(exc)))
        return report
    frame, key_problems = canonical_keys(frame, space)
    if checkpoints is not None:
        checkpoints, more = canonical_keys(checkpoints, space, what="checkpoints ")
        key_problems += more + orphan_checkpoints(checkpoints, frame)
    with _locked(folder):
        restore_interrupted_save(folder)  # a crashed earlier merge must not look like "no table yet"
        try:
            existing = EnergyTable.load(folder) if folder.exists() else None
        except (DataFormatError, SchemaError) as exc:
            report.problems.append(Problem(None, None, f"the user table {target!r} is unusable, fix it first: {exc}"))
            return report
        if existing is not None and existing.space != meta.space:
            report.problems.append(Problem(None, "space", f"table {target!r} holds {existing.space!r}, "
                                                          f"the file {meta.space!r}"))
        report.problems += key_problems
        report.problems += check_rows(frame, meta, existing, power_range_w)
        report.problems.sort(key=lambda p: (-1 if p.row is None else p.row, p.column or ""))
        if report.problems:
            return report
        try:
            incoming = EnergyTable(frame, meta, checkpoints)
            merged = _merge(existing, incoming, target)
        except (SchemaError, DataFormatError) as exc:
            report.problems.append(Problem(None, getattr(exc, "column", None), str(exc)))
            return report
        if not dry_run:
            merged.save(folder)
            _refresh_tables(target)
        report.table_dir, report.total_rows, report.sources = folder, len(merged), merged.sources_text()
    return report


def _refresh_tables(name: str) -> None:
    """Make this process see the merged table: a new user table joins the registry (its tables
    were collected when it loaded), and a loaded copy of an old one is dropped."""
    from ecnas_plugin import api
    from ecnas_plugin.registry import get_registry, reset_registry

    api._LOADED.pop(name, None)
    if name not in get_registry().items["tables"]:
        reset_registry()


def _merge(existing: EnergyTable | None, incoming: EnergyTable, target: str) -> EnergyTable:
    if existing is None:
        merged = EnergyTable(incoming.frame, replace(incoming.manifest, name=target, checksum="",
                                                     checkpoints_checksum="", created=""), incoming.checkpoints)
    else:
        merged = existing.merge(incoming, name=target)  # keeps every campaign's settings
        merged.manifest = replace(merged.manifest, tool=_join(existing.manifest.tool, incoming.manifest.tool),
                                  checksum="", checkpoints_checksum="", created="")
    # The description is what `ecnas tables` shows: it says how many energies are estimates.
    merged.manifest = replace(merged.manifest, description=f"user-contributed {incoming.space} energies: "
                                                           f"{merged.sources_text()}")
    return merged


def _join(a: str, b: str) -> str:
    return a if b in a.split(" | ") else f"{a} | {b}"


def all_campaign_metadata(meta: Manifest) -> list[dict]:
    """Every campaign's settings recorded in a (possibly merged) manifest."""
    return [dict(c) for c in meta.campaigns]


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One contributor at a time per table (flock on a file beside the table folder)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.parent / f".{folder.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:
            pass
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- user tables as plugin tables
def user_table_specs() -> list[TableSpec]:
    """A TableSpec for every user table in the cache, so ``load_table("user-<space>")`` works."""
    from ecnas_plugin.api import table_dir

    root = table_dir("x").parent
    for parked in sorted(root.glob(f".{USER_PREFIX}*.old")) if root.is_dir() else []:
        restore_interrupted_save(parked.with_name(parked.name[1:-len(".old")]))
    specs = []
    for folder in sorted(root.glob(f"{USER_PREFIX}*")) if root.is_dir() else []:
        try:
            meta = Manifest.from_json((folder / MANIFEST_FILE).read_text(), str(folder))
        except (OSError, DataFormatError, SchemaError):
            continue  # half-written or foreign folder: not offered
        specs.append(TableSpec(folder.name, meta.space, meta.description, (),
                               build=lambda paths, f=folder: EnergyTable.load(f)))
    return specs


@hookimpl
def ecnas_tables() -> Sequence[TableSpec]:
    return user_table_specs()
