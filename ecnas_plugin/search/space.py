"""Tabular search spaces for the built-in optimizers: NB101 cells of an EC-NAS table.

A :class:`TabularSpace` is every valid NB101 cell with at most ``max_vertices`` vertices (the
EC-NAS 4V/5V spaces), each looked up in an energy table at one epoch budget. Sampling and
mutation never leave the space: a mutated cell is re-validated and pruned, and pruning can only
remove vertices. Evaluating a cell draws one of its measured repeats (as NAS-Bench-101 does), so
the optimizer sees a noisy accuracy, while the trace also keeps the repeat means ("true" values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.errors import InvalidArchitecture, SchemaError, UnknownName
from ecnas_plugin.table import EnergyTable


@dataclass(frozen=True)
class SpaceSpec:
    """A named search space: which table, which cells, which epoch budget by default."""

    name: str
    table: str
    max_vertices: int
    default_epochs: int
    description: str


SPACES: dict[str, SpaceSpec] = {
    s.name: s
    for s in (
        SpaceSpec("ecnas-4v", "ecnas-4v", 4, 108,
                  "EC-NAS NB101 cells with <=4 vertices (91), measured energy, 4/12/36/108 epochs, 3 repeats"),
        SpaceSpec("ecnas-4v-linscale", "ecnas-4v-linscale", 4, 108,
                  "EC-NAS 4-vertex cells, NB101 accuracies, energy linearly scaled from 4 epochs"),
        SpaceSpec("ecnas-5v", "ecnas-5v", 5, 4,
                  "EC-NAS NB101 cells with <=5 vertices (2,532), measured energy, 4 epochs"),
    )
}
# NAS-Bench-201 joins SPACES once an NB201 energy table is registered; none exists yet.


@dataclass(frozen=True)
class Evaluation:
    """One architecture trained (looked up): what the optimizer sees and what really happened."""

    key: str
    cell: nb101.Cell
    repeat: int
    val_acc: float  # observed: this repeat (what the optimizer sees)
    test_acc: float
    train_energy_kwh: float  # energy this training cost: counted in the search energy
    train_time_s: float
    true_val_acc: float  # mean over the table's repeats
    true_test_acc: float
    true_energy_kwh: float


def _cell_records(frame, epochs: int) -> dict[str, dict[str, np.ndarray]]:
    rows = frame[frame["epochs"] == epochs].sort_values(["arch_key", "repeat"])
    cols = ("val_acc", "test_acc", "train_energy_kwh", "train_time_s")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, group in rows.groupby("arch_key", sort=False):
        out[key] = {c: group[c].to_numpy(dtype="float64") for c in cols}
    return out


class TabularSpace:
    """The cells of an NB101 subspace with their table values at one epoch budget."""

    def __init__(self, table: EnergyTable, max_vertices: int, epochs: int | None = None, name: str | None = None):
        self.name = name or table.name
        self.max_vertices = max_vertices
        budgets = table.values("epochs")
        if epochs is None:
            epochs = max(budgets)
        if epochs not in budgets:
            raise UnknownName("epoch budget", epochs, budgets, context=f"in table {table.name!r}")
        self.epochs = int(epochs)
        self._records = _cell_records(table.frame, self.epochs)
        for rec in self._records.values():
            if np.isnan(rec["val_acc"]).any() or np.isnan(rec["test_acc"]).any():
                raise SchemaError(f"table {table.name!r} lacks accuracies at {epochs} epochs; "
                                  "a search needs them", column="val_acc")
        self.cells: list[nb101.Cell] = []
        self.keys: list[str] = []
        for key, cell in nb101.cells_by_hash(max_vertices).items():
            if key not in self._records:
                raise SchemaError(f"table {table.name!r} has no row for cell {key} "
                                  f"({max_vertices}-vertex space, {epochs} epochs)", column="arch_key")
            self.cells.append(cell)
            self.keys.append(key)
        self._index = {k: i for i, k in enumerate(self.keys)}
        self.true_val_acc = np.array([self._records[k]["val_acc"].mean() for k in self.keys])
        self.true_test_acc = np.array([self._records[k]["test_acc"].mean() for k in self.keys])
        self.true_energy_kwh = np.array([self._records[k]["train_energy_kwh"].mean() for k in self.keys])

    def __len__(self) -> int:
        return len(self.cells)

    def __repr__(self) -> str:
        return f"TabularSpace({self.name!r}, cells={len(self)}, epochs={self.epochs})"

    # ------------------------------------------------------------------ moves
    def key(self, cell: nb101.Cell) -> str:
        return nb101.module_hash(cell)

    def sample(self, rng: np.random.Generator, exclude: set[str] | frozenset[str] = frozenset()) -> nb101.Cell:
        """A uniformly random cell of the space whose key is not in ``exclude``."""
        if len(exclude) >= len(self.keys):
            raise ValueError(f"every one of the {len(self)} cells of {self.name} is excluded")
        while True:  # rejection: fast while most cells are still free
            i = int(rng.integers(len(self.cells)))
            if self.keys[i] not in exclude:
                return self.cells[i]

    def mutate(self, cell: nb101.Cell, rng: np.random.Generator, tries: int = 500) -> nb101.Cell:
        """A different valid cell of the space near ``cell``.

        The cell is padded to ``max_vertices`` with dangling vertices (which pruning removes), so
        mutation can both grow and shrink it; the child is always inside the vertex limit. One
        try either changes the op of one vertex on the cell's path, or flips 1 + Poisson(0.5)
        edges (two flips are needed to wire in a dangling vertex).
        """
        n = self.max_vertices
        parent = self.key(cell)
        extra = [nb101.OPS[int(rng.integers(len(nb101.OPS)))] for _ in range(n - cell.num_vertices)]
        padded, ops = nb101.pad(cell, n, filler=extra)  # dangling vertices with random ops
        matrix = padded.tolist()
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        live = list(range(1, cell.num_vertices - 1))  # inner vertices on an input->output path
        for _ in range(tries):
            m = [list(r) for r in matrix]
            new_ops = list(ops)
            if live and rng.random() < 0.5:
                v = live[int(rng.integers(len(live)))]
                new_ops[v] = nb101.OPS[int(rng.integers(len(nb101.OPS)))]
            else:
                flips = min(len(pairs), 1 + int(rng.poisson(0.5)))
                for k in rng.choice(len(pairs), size=flips, replace=False):
                    i, j = pairs[int(k)]
                    m[i][j] = 1 - m[i][j]
            try:
                child = nb101.prune(m, new_ops)
            except InvalidArchitecture:
                continue
            key = self.key(child)
            if key != parent and key in self._index:
                return self.cells[self._index[key]]
        raise RuntimeError(f"no valid mutation of {parent} found in {tries} tries")

    # ------------------------------------------------------------------ evaluation
    def repeats(self, key: str) -> Mapping[str, np.ndarray]:
        """The table's repeats of cell ``key``: val_acc, test_acc, train_energy_kwh, train_time_s arrays."""
        rec = self._records.get(key)
        if rec is None or key not in self._index:
            raise UnknownName(f"{self.name} cell", key, context=f"(at most {self.max_vertices} vertices)")
        return rec

    def evaluate(self, cell: nb101.Cell, rng: np.random.Generator) -> Evaluation:
        """Look the cell up at this space's epoch budget, drawing one measured repeat."""
        key = self.key(cell)
        rec: Mapping[str, np.ndarray] | None = self._records.get(key)
        if rec is None or key not in self._index:
            raise UnknownName(f"{self.name} cell", key, context=f"(at most {self.max_vertices} vertices)")
        r = int(rng.integers(len(rec["val_acc"])))
        i = self._index[key]
        return Evaluation(
            key=key, cell=self.cells[i], repeat=r,
            val_acc=float(rec["val_acc"][r]), test_acc=float(rec["test_acc"][r]),
            train_energy_kwh=float(rec["train_energy_kwh"][r]), train_time_s=float(rec["train_time_s"][r]),
            true_val_acc=float(self.true_val_acc[i]), true_test_acc=float(self.true_test_acc[i]),
            true_energy_kwh=float(self.true_energy_kwh[i]),
        )


_CACHE: dict[tuple[str, int | None], TabularSpace] = {}


def load_space(name: str, epochs: int | None = None) -> TabularSpace:
    """The named space (see ``SPACES``), built from its table once per process."""
    from ecnas_plugin.api import load_table

    spec = SPACES.get(name)
    if spec is None:
        raise UnknownName("search space", name, SPACES)
    epochs = spec.default_epochs if epochs is None else epochs
    if (name, epochs) not in _CACHE:
        _CACHE[(name, epochs)] = TabularSpace(load_table(spec.table), spec.max_vertices, epochs, name=name)
    return _CACHE[(name, epochs)]
