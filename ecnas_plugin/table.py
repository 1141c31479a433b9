"""EnergyTable: a validated long-format table with its provenance manifest.

Stored as a folder holding ``table.parquet``, optional ``checkpoints.parquet`` and
``manifest.json`` (never pickle: loading a table cannot run code). Handed to users as pandas
DataFrames; single lookups go through a prebuilt dict of read-only records.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .version import __version__
from .datasets import sha256_file
from .errors import DataFormatError, SchemaError, UnknownName
from .schema import (
    CHECKPOINT_COLUMNS,
    CHECKPOINT_SCHEMA,
    SCHEMA_VERSION,
    SOURCES,
    check_schema_version,
    validate_frame,
)

# The lookup key inside one table (a table holds one search space).
LOOKUP_KEY = ("arch_key", "dataset", "epochs", "hardware", "campaign", "repeat")

_WHAT = {"epochs": "epoch budget"}  # how key columns are named in messages

# What a slice carries per configuration unless asked for other columns.
SLICE_COLUMNS = ("val_acc", "test_acc", "train_energy_kwh", "train_time_s", "train_energy_sd_kwh", "source")

TABLE_FILE = "table.parquet"
CHECKPOINTS_FILE = "checkpoints.parquet"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    """Provenance that travels with every table."""

    name: str
    space: str
    description: str
    tool: str  # what measured the energy (e.g. carbontracker), or the model that predicted it
    pue: float | None  # power usage effectiveness already applied to the energy columns (1.0 = none, None = not recorded upstream)
    components: tuple[str, ...]  # what was measured: gpu, cpu, ram
    license: str
    citation: str
    hardware: tuple[str, ...] = ()
    source_files: tuple[Mapping[str, str], ...] = ()  # [{"name", "sha256"}] the table was built from
    notes: str = ""
    campaigns: tuple[Mapping[str, Any], ...] = ()  # settings of each measurement campaign in the table
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    rows: int = 0
    checksum: str = ""  # sha256 of table.parquet
    checkpoints_checksum: str = ""
    ecnas_plugin_version: str = __version__

    def to_json(self) -> str:
        data = asdict(self)
        data["source_files"] = [dict(s) for s in self.source_files]
        data["campaigns"] = [dict(c) for c in self.campaigns]
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(where, exc.pos, f"manifest is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise DataFormatError(where, None, "manifest must be a JSON object")
        check_schema_version(data.get("schema_version"), where)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchemaError(f"{where}: unknown manifest field(s) {unknown}", column=unknown[0])
        missing = sorted(n for n, f in cls.__dataclass_fields__.items()
                         if n not in data and f.default is MISSING and f.default_factory is MISSING)
        if missing:
            raise SchemaError(f"{where}: manifest lacks field(s) {missing}", column=missing[0])
        data["components"] = tuple(data["components"])
        data["hardware"] = tuple(data.get("hardware", ()))
        data["source_files"] = tuple(data.get("source_files", ()))
        data["campaigns"] = tuple(data.get("campaigns", ()))
        return cls(**data)


@dataclass(frozen=True)
class TableSpec:
    """A table a plugin can build: its name, space, the data files it needs and how to build it."""

    name: str
    space: str
    description: str
    data_files: tuple[str, ...]
    build: Callable[[Mapping[str, Path]], EnergyTable] = field(repr=False)


@dataclass(frozen=True)
class TableSlice:
    """The configurations of one table at one (epochs, dataset, hardware, campaign).

    ``keys`` are sorted canonical keys; ``repeats[key][column]`` the values of that key's repeats
    (by repeat index); ``means[column]`` the per-key means over repeats, aligned with ``keys``
    (NaN where no repeat has a value). ``source`` is carried per repeat, never averaged.
    """

    table: str
    space: str
    epochs: int
    dataset: str
    hardware: str
    campaign: str
    keys: tuple[str, ...]
    repeats: Mapping[str, Mapping[str, np.ndarray]] = field(repr=False)
    means: Mapping[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.repeats

    def of(self, key: str) -> Mapping[str, np.ndarray]:
        """The repeats of ``key``; UnknownName if this slice has none."""
        try:
            return self.repeats[key]
        except KeyError:
            raise UnknownName(f"{self.space} configuration", key,
                              context=f"in table {self.table!r} at {self.epochs} epochs") from None


class EnergyTable:
    """A validated energy table of one search space plus its manifest.

    ``frame`` is the long-format DataFrame; ``checkpoints`` (or None) holds per-evaluation
    values of each run. Lookups: ``get`` (one full key, O(1)), ``lookup`` (partial key, all
    matching rows), ``get_many`` (vectorised).
    """

    def __init__(self, frame: pd.DataFrame, manifest: Manifest, checkpoints: pd.DataFrame | None = None):
        self.frame = validate_frame(frame, what=f"table {manifest.name!r}")
        spaces = self.frame["space"].unique()
        if len(spaces) != 1 or spaces[0] != manifest.space:
            raise SchemaError(f"table {manifest.name!r}: rows must all be of space {manifest.space!r}, "
                              f"found {sorted(spaces)}", column="space")
        self.checkpoints = None
        if checkpoints is not None:
            self.checkpoints = validate_frame(checkpoints, CHECKPOINT_SCHEMA, CHECKPOINT_COLUMNS,
                                              what=f"checkpoints of table {manifest.name!r}")
        hardware = tuple(sorted(self.frame["hardware"].unique()))
        self.manifest = replace(manifest, rows=len(self.frame), hardware=hardware)
        self._records: dict[tuple, Mapping] = {}  # filled on the first lookup: loading stays cheap
        self._by_arch: dict[str, np.ndarray] | None = None
        self._positions: dict[tuple, int] | None = None
        self._curves: dict[tuple, pd.DataFrame] | None = None
        # Key parts a table has one value for may be left out of lookups.
        self._defaults = {c: (vals[0] if len(vals) == 1 else None)
                          for c in ("dataset", "epochs", "hardware", "campaign")
                          for vals in [self.frame[c].unique()]}
        self._dataset, self._epochs, self._hardware, self._campaign = self._defaults.values()

    # ------------------------------------------------------------------ basics
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def space(self) -> str:
        return self.manifest.space

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"EnergyTable({self.name!r}, space={self.space!r}, rows={len(self)})"

    def sources(self) -> dict[str, int]:
        """How many rows have each ``source`` (measured, estimated, scaled, predicted), for every
        place that shows a table's numbers: a table mixing them says how many of each."""
        counts = self.frame["source"].value_counts()
        return {s: int(counts[s]) for s in SOURCES if s in counts}

    def sources_text(self) -> str:
        """E.g. ``"60 estimated (a power model, not measured)"`` or ``"273 measured, 91 scaled"``;
        scaled rows whose window was itself an estimate say so (``energy_method``)."""
        method = self.frame["energy_method"] if "energy_method" in self.frame.columns else None
        parts = []
        for s, n in self.sources().items():
            note = " (a power model, not measured)" if s == "estimated" else ""
            if s == "scaled" and method is not None:
                of_estimates = int(((self.frame["source"] == "scaled") & (method == "estimated")).sum())
                if of_estimates:
                    note = (f" ({'all' if of_estimates == n else of_estimates} scaled from power-model "
                            f"estimates, not measured)")
            parts.append(f"{n} {s}{note}")
        return ", ".join(parts)

    def values(self, column: str) -> list:
        """Sorted distinct values of a column (e.g. ``values("epochs")``)."""
        return sorted(self.frame[column].unique().tolist())

    # ------------------------------------------------------------------ lookup
    def _record_index(self) -> dict[tuple, Mapping]:
        cols = list(self.frame.columns)
        keys = zip(*(self.frame[c].tolist() for c in LOOKUP_KEY))
        rows = zip(*(self.frame[c].tolist() for c in cols))
        return {k: MappingProxyType(dict(zip(cols, r))) for k, r in zip(keys, rows)}

    def _build_index(self) -> None:
        codes, uniques = pd.factorize(self.frame["arch_key"])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        self._by_arch = {u: order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniques)}

    def get(self, arch_key: str, dataset: str | None = None, epochs: int | None = None,
            hardware: str | None = None, campaign: str | None = None, repeat: int = 0) -> Mapping:
        """The one row with this key, as a read-only mapping column → value.

        ``dataset``, ``epochs``, ``hardware`` and ``campaign`` may be left out where the table
        has a single value for them. Raises UnknownName naming what does not exist.
        """
        # The hot path: one tuple, one dict lookup (see benchmarks/bench_tables.py).
        key = (arch_key, dataset or self._dataset, self._epochs if epochs is None else epochs,
               hardware or self._hardware, campaign or self._campaign, repeat)
        try:
            return self._records[key]
        except KeyError:
            if not self._records:
                self._records = self._record_index()
                if key in self._records:
                    return self._records[key]
            raise self._unknown(dict(zip(LOOKUP_KEY, key))) from None

    def lookup(self, arch_key: str, **partial: object) -> pd.DataFrame:
        """All rows of ``arch_key`` matching the given key columns (e.g. every repeat)."""
        if self._by_arch is None:
            self._build_index()
        bad = sorted(set(partial) - set(LOOKUP_KEY))
        if bad:
            raise UnknownName("key column", bad[0], LOOKUP_KEY[1:])
        positions = self._by_arch.get(arch_key)  # type: ignore[union-attr]
        if positions is None:
            raise UnknownName(f"{self.space} architecture", arch_key, self._by_arch.keys(),  # type: ignore[union-attr]
                              context=f"in table {self.name!r}")
        rows = self.frame.iloc[positions]
        for col, value in partial.items():
            if value is None:
                continue
            hit = rows[col] == value
            if not hit.any():
                raise UnknownName(_WHAT.get(col, col), value, rows[col].unique().tolist(),
                                  context=f"for architecture {arch_key} in table {self.name!r}")
            rows = rows[hit]
        return rows

    def get_many(self, arch_keys: Iterable[str], dataset: str | None = None, epochs: object = None,
                 hardware: str | None = None, campaign: str | None = None, repeat: object = 0) -> pd.DataFrame:
        """Vectorised ``get``: one row per key, in order. Scalars broadcast; arrays align with keys."""
        keys = list(arch_keys)
        n = len(keys)
        d = self._defaults

        def column(value, default):
            value = default if value is None else value
            if np.ndim(value) == 0:
                return [value] * n
            value = list(value)
            if len(value) != n:
                raise ValueError(f"get_many: got {len(value)} values for {n} architectures")
            return value

        cols = (keys, column(dataset, d["dataset"]), column(epochs, d["epochs"]),
                column(hardware, d["hardware"]), column(campaign, d["campaign"]), column(repeat, 0))
        index = self._position_index()
        try:
            positions = np.fromiter((index[k] for k in zip(*cols)), dtype=np.int64, count=n)
        except KeyError as exc:
            raise self._unknown(dict(zip(LOOKUP_KEY, exc.args[0]))) from None
        return self.frame.iloc[positions].reset_index(drop=True)

    def _position_index(self) -> dict[tuple, int]:
        if self._positions is None:
            keys = zip(*(self.frame[c].tolist() for c in LOOKUP_KEY))
            self._positions = {k: i for i, k in enumerate(keys)}
        return self._positions

    def _unknown(self, key: Mapping[str, object]) -> UnknownName:
        """Explain the first key part that does not exist, listing what does."""
        arch = key["arch_key"]
        if self._by_arch is None:
            self._build_index()
        if arch not in self._by_arch:  # type: ignore[operator]
            return UnknownName(f"{self.space} architecture", arch, self._by_arch.keys(),  # type: ignore[union-attr]
                               context=f"in table {self.name!r}")
        rows = self.frame.iloc[self._by_arch[arch]]  # type: ignore[index]
        for col in LOOKUP_KEY[1:]:
            value = key[col]
            options = rows[col].unique().tolist()
            if value is None:
                return UnknownName(_WHAT.get(col, col), None, options,
                                   context=f"(not given, and table {self.name!r} has several for {arch})")
            hit = rows[col] == value
            if not hit.any():
                return UnknownName(_WHAT.get(col, col), value, options,
                                   context=f"for architecture {arch} in table {self.name!r}")
            rows = rows[hit]
        return UnknownName("row", tuple(key.values()), context=f"in table {self.name!r}")

    def subset(self, keys: Iterable[str]) -> EnergyTable:
        """The rows (and checkpoints) of these configuration keys only, as a table of the same
        manifest (e.g. the training side of a split by configuration)."""
        keep = set(keys)
        cp = self.checkpoints
        return EnergyTable(self.frame[self.frame["arch_key"].isin(keep)].reset_index(drop=True), self.manifest,
                           None if cp is None else cp[cp["arch_key"].isin(keep)].reset_index(drop=True))

    # ------------------------------------------------------------------ slices
    def slice(self, epochs: int | None = None, dataset: str | None = None, hardware: str | None = None,
              campaign: str | None = None, columns: Iterable[str] = SLICE_COLUMNS,
              at_epoch: int | None = None) -> TableSlice:
        """Every configuration of the table at one (epoch budget, dataset, hardware, campaign):
        its repeats and their means. A part left out must have a single value in the table
        (else UnknownName lists the values to choose from); budgets, campaigns and hardware never
        mix inside a slice. Search spaces, the NASLib bridge and traces all read tables this way.

        ``at_epoch``: the runs of budget ``epochs`` as they stood after that epoch, from their
        checkpoints (accuracies, cumulative energy and time; the learning-rate schedule is the
        budget's: JAHS-Bench-201's epoch fidelity). Every run must have a checkpoint there."""
        rows = self.frame
        at: dict[str, object] = {}
        for col, value in (("epochs", epochs), ("dataset", dataset), ("hardware", hardware), ("campaign", campaign)):
            options = sorted(rows[col].unique().tolist())
            if value is None:
                if len(options) != 1:
                    raise UnknownName(_WHAT.get(col, col), None, options,
                                      context=f"(not given, and table {self.name!r} has several)")
                value = options[0]
            elif value not in options:
                raise UnknownName(_WHAT.get(col, col), value, options, context=f"in table {self.name!r}")
            rows = rows[rows[col] == value]
            at[col] = value
        if at_epoch is not None and at_epoch != at["epochs"]:
            rows = self._at_epoch(rows, int(at_epoch))
        cols = [c for c in columns if c in rows.columns]
        rows = rows.sort_values(["arch_key", "repeat"], kind="stable")
        codes, keys = pd.factorize(rows["arch_key"], sort=True)
        bounds = np.searchsorted(codes, np.arange(len(keys) + 1))
        values = {c: rows[c].to_numpy(dtype="float64") if c not in ("source",) else rows[c].to_numpy()
                  for c in cols}
        repeats = {k: {c: v[bounds[i]:bounds[i + 1]] for c, v in values.items()} for i, k in enumerate(keys)}
        means = {}
        for c, v in values.items():
            if v.dtype.kind == "f":
                sums = np.add.reduceat(np.nan_to_num(v), bounds[:-1]) if len(v) else np.zeros(0)
                counts = np.add.reduceat((~np.isnan(v)).astype(float), bounds[:-1]) if len(v) else np.zeros(0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    means[c] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return TableSlice(self.name, self.space, int(at["epochs"]), str(at["dataset"]), str(at["hardware"]),
                          str(at["campaign"]), tuple(keys.tolist()), repeats, means)

    def _at_epoch(self, rows: pd.DataFrame, epoch: int) -> pd.DataFrame:
        """``rows`` with accuracies, energy and time replaced by their checkpoint after ``epoch``."""
        cp = self.checkpoints
        if cp is None:
            raise UnknownName("epoch budget", epoch, sorted(rows["epochs"].unique().tolist()),
                              context=f"in table {self.name!r} (it has no checkpoints to read epochs from)")
        cp = cp[cp["epoch"] == float(epoch)].set_index(list(LOOKUP_KEY))
        index = pd.MultiIndex.from_frame(rows[list(LOOKUP_KEY)])
        missing = ~index.isin(cp.index)
        if missing.any():
            key = rows.loc[missing, "arch_key"].iloc[0]
            raise UnknownName("checkpoint epoch", epoch, context=f"for {key} in table {self.name!r} (its runs "
                                                                 f"record no checkpoint there)")
        found = cp.loc[index]
        out = rows.copy()
        for column, source in (("val_acc", "val_acc"), ("test_acc", "test_acc"),
                               ("train_energy_kwh", "energy_kwh"), ("train_time_s", "train_time_s")):
            if source in found.columns:
                out[column] = found[source].to_numpy()
        return out

    def curve(self, arch_key: str, epochs: int | None = None, dataset: str | None = None,
              hardware: str | None = None, campaign: str | None = None, repeat: int = 0) -> pd.DataFrame | None:
        """The recorded learning curve of one run up to its budget: checkpoint rows (epoch,
        accuracies, cumulative energy and time), by epoch; None where the table has no checkpoints."""
        row = self.get(arch_key, dataset, epochs, hardware, campaign, repeat)
        if self.checkpoints is None:
            return None
        if self._curves is None:
            self._curves = {k: g for k, g in self.checkpoints.groupby(list(LOOKUP_KEY), sort=False)}
        found = self._curves.get(tuple(row[c] for c in LOOKUP_KEY))
        return None if found is None else found.sort_values("epoch").reset_index(drop=True)

    # ------------------------------------------------------------------ merge
    def merge(self, other: EnergyTable, name: str | None = None) -> EnergyTable:
        """A new table holding the rows of both; duplicate keys are refused, not overwritten."""
        if other.space != self.space:
            raise SchemaError(f"cannot merge table {other.name!r} (space {other.space!r}) into "
                              f"{self.name!r} (space {self.space!r})", column="space")
        frame = pd.concat([self.frame, other.frame], ignore_index=True)
        checkpoints = None
        if self.checkpoints is not None or other.checkpoints is not None:
            checkpoints = pd.concat([c for c in (self.checkpoints, other.checkpoints) if c is not None],
                                    ignore_index=True)
        m = self.manifest
        merged = replace(
            m, name=name or m.name,
            components=tuple(sorted(set(m.components) | set(other.manifest.components))),
            source_files=m.source_files + other.manifest.source_files,
            campaigns=m.campaigns + other.manifest.campaigns,
            notes=(m.notes + f"\nmerged with {other.name!r} ({other.manifest.tool}, PUE {other.manifest.pue})").strip(),
        )
        if other.manifest.pue != m.pue:
            raise SchemaError(f"cannot merge table {other.name!r} with PUE {other.manifest.pue} into "
                              f"{self.name!r} with PUE {m.pue}: energies would not be comparable")
        return EnergyTable(frame, merged, checkpoints)

    # ------------------------------------------------------------------ storage
    def save(self, folder: Path) -> Path:
        """Write the table to ``folder`` atomically (a temp folder renamed into place)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted_save(folder)  # else the swap below would delete the only copy
        tmp = Path(tempfile.mkdtemp(prefix=f"{_leftover_prefix(folder)}{os.getpid()}-", dir=folder.parent))
        try:
            self.frame.to_parquet(tmp / TABLE_FILE, index=False)
            manifest = replace(self.manifest, checksum=sha256_file(tmp / TABLE_FILE),
                               created=self.manifest.created or datetime.now(timezone.utc).isoformat(timespec="seconds"))
            if self.checkpoints is not None:
                self.checkpoints.to_parquet(tmp / CHECKPOINTS_FILE, index=False)
                manifest = replace(manifest, checkpoints_checksum=sha256_file(tmp / CHECKPOINTS_FILE))
            (tmp / MANIFEST_FILE).write_text(manifest.to_json())
            if folder.exists():
                old = previous_copy(folder)
                _discard(old, folder)
                os.replace(folder, old)
                os.replace(tmp, folder)
                _discard(old, folder)
            else:
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest
        return folder

    @classmethod
    def load(cls, folder: Path) -> EnergyTable:
        """Read a table folder, verifying checksums and the schema version."""
        folder = Path(folder)
        restore_interrupted_save(folder)
        mpath = folder / MANIFEST_FILE
        if not mpath.is_file():
            raise DataFormatError(folder, None, f"not a table folder: {MANIFEST_FILE} is missing")
        manifest = Manifest.from_json(mpath.read_text(), str(mpath))
        frame = _read_verified(folder / TABLE_FILE, manifest.checksum)
        checkpoints = None
        if manifest.checkpoints_checksum:
            checkpoints = _read_verified(folder / CHECKPOINTS_FILE, manifest.checkpoints_checksum)
        return cls(frame, manifest, checkpoints)


def previous_copy(folder: Path) -> Path:
    """Where :meth:`EnergyTable.save` parks the table it replaces while swapping folders."""
    return folder.with_name(f".{folder.name}.old")


def _leftover_prefix(folder: Path) -> str:
    """Name prefix of the temp and discarded folders a save of ``folder`` makes beside it; each
    carries the saving process's pid after the prefix."""
    return f".{folder.name}.tmp-"


def _discard(path: Path, folder: Path) -> None:
    """Delete a folder so that no half-deleted copy can ever be taken for a table: it is first
    renamed (atomically) under the leftover prefix, then removed; a kill during the removal leaves
    only a leftover, which the next save or load of the table cleans up."""
    if not path.exists():
        return
    trash = folder.with_name(f"{_leftover_prefix(folder)}{os.getpid()}-discarded")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_leftovers(folder: Path) -> None:
    """Remove temp/discarded folders of earlier saves of ``folder`` whose process is gone (a
    running save in another process keeps its own)."""
    prefix = _leftover_prefix(folder)
    try:
        candidates = [p for p in folder.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in candidates:
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def restore_interrupted_save(folder: Path) -> None:
    """Undo a save interrupted between its two renames: ``folder`` is gone and the table it held
    waits at :func:`previous_copy`; move it back (it is whole: a parked copy is only ever renamed,
    and deleting one renames it away first). Leftover temp folders of dead saves are removed.
    Nothing is checked here (loading verifies and names any problem)."""
    folder = Path(folder)
    old = previous_copy(folder)
    if not folder.exists() and old.is_dir():
        os.replace(old, folder)
    _clean_leftovers(folder)


def _read_verified(path: Path, checksum: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataFormatError(path, None, "file is missing")
    actual = sha256_file(path)
    if actual != checksum:
        raise DataFormatError(path, None, f"sha256 {actual} does not match the manifest's {checksum}")
    return pd.read_parquet(path)
