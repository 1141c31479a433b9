"""An ecnas plugin that publishes one measured energy table.

The table ships inside the package (``data/nb201-flowers17-cpu``: ``table.parquet``,
``checkpoints.parquet``, ``manifest.json``), exactly as ``ecnas measure`` wrote it and
``ecnas contribute`` accepted it. ``ecnas_tables`` describes it; ``build`` loads it, which
verifies the manifest's checksums and the schema (loading parquet + JSON cannot run code).

The package's second entry point, ``example_convnet``, is :mod:`ecnas_example_tables.convnet`:
a search space of its own (``example-convnet``), independent of the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ecnas_plugin.hookspecs import hookimpl
from ecnas_plugin.table import EnergyTable, TableSpec

TABLE_NAME = "example-nb201-flowers17-cpu"
DATA = Path(__file__).parent / "data" / "nb201-flowers17-cpu"


def build(paths: Mapping[str, Path]) -> EnergyTable:
    """The shipped table, under this plugin's table name (no upstream files needed)."""
    table = EnergyTable.load(DATA)
    return EnergyTable(table.frame, replace(table.manifest, name=TABLE_NAME), table.checkpoints)


@hookimpl
def ecnas_tables():
    return [TableSpec(
        name=TABLE_NAME,
        space="nasbench201",
        description="60 NB201 cells (stratified sample; C=16, N=5) trained 3 epochs on Flowers-17 on a CPU; "
                    "codecarbon energy, ESTIMATED (no RAPL on the measuring machine)",
        data_files=(),
        build=build,
    )]
