"""The small public API: find tables, load them (build + cache on first use), query them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import datasets
from .adapters.base import SearchSpace
from .errors import DataFormatError, SchemaError
from .registry import get_registry
from .table import EnergyTable, TableSpec, restore_interrupted_save

_LOADED: dict[str, EnergyTable] = {}


def list_tables() -> list[TableSpec]:
    """Every table the loaded plugins provide."""
    return list(get_registry().items["tables"].values())


def get_space(name: str) -> SearchSpace:
    """The search-space adapter called ``name`` (e.g. ``"nasbench101"``)."""
    return get_registry().space(name)


def table_dir(name: str) -> Path:
    """Where the cached table ``name`` lives in the user cache (a plain name: never a path outside it)."""
    return datasets.folder_for(datasets.cache_dir() / "tables", name, "table name")


def load_table(name: str, *, mirror: Path | None = None, download: bool = True,
               rebuild: bool = False) -> EnergyTable:
    """The table ``name``: from this process, the user cache, or built from its upstream files
    (a table with no upstream files, shipped by its plugin, is loaded from there every time).

    Building resolves the upstream files through the offline mirror (``mirror`` or
    ``ECNAS_DATA_MIRROR``), the cache, or a verified download, then writes the table to the
    cache atomically: a failed build leaves nothing behind.
    """
    registry = get_registry()
    spec = registry.table_spec(name)
    if not rebuild and name in _LOADED:
        return _LOADED[name]
    if not spec.data_files:
        # A table that needs no upstream file ships its own data (a plugin's parquet + manifest):
        # building it is loading it, and a cached copy would outlive an upgrade of that data.
        _LOADED[name] = spec.build({})
        return _LOADED[name]
    folder = table_dir(name)
    restore_interrupted_save(folder)
    if folder.exists() and not rebuild:
        try:
            table = EnergyTable.load(folder)
        except (DataFormatError, SchemaError) as exc:
            raise DataFormatError(
                folder, None, f"cached table is unusable ({exc}); rebuild it with "
                              f"`ecnas tables --rebuild {name}` or load_table({name!r}, rebuild=True)") from None
    else:
        paths = {f: datasets.resolve(registry.data_file(f), mirror=mirror, download=download, full_check=True)
                 for f in spec.data_files}
        table = spec.build(paths)
        table.save(folder)
    _LOADED[name] = table
    return table


def query(space: str, arch: object, table: str, dataset: str | None = None, epochs: int | None = None,
          hardware: str | None = None, campaign: str | None = None) -> pd.DataFrame:
    """Every row (all repeats) of ``arch`` in ``table``, arch given in any form the space accepts."""
    adapter = get_space(space)
    key = adapter.canonical_key(adapter.parse_arch(arch) if isinstance(arch, str) else arch)
    t = load_table(table)
    if t.space != space:
        raise SchemaError(f"table {table!r} holds space {t.space!r}, not {space!r}", column="space")
    return t.lookup(key, dataset=dataset, epochs=epochs, hardware=hardware, campaign=campaign)
