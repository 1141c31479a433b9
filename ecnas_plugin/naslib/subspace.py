"""Any registered NAS-Bench-101 table as an EC-NAS-style NASLib subspace, with a NAS-Bench-101-style
``dataset_api`` answered from the table (no NASLib import here).

EC-NAS searched the cells its tables hold (``ecnas-4v``: every cell of at most 4 vertices,
``ecnas-5v``: of at most 5); :func:`build_dataset_api` serves *any* registered table of the
``nasbench101`` space that way, by table name. NASLib's NB101 ``query`` only needs
``dataset_api["api"].ModelSpec`` and ``dataset_api["nb101_data"]`` with ``is_valid``/``query``/
``get_metrics_from_hash``/``hash_iterator``; :class:`EcnasBench` answers those from the table's
slices (:meth:`ecnas_plugin.table.EnergyTable.slice`), so accuracy and energy both come from the
table and no NASLib NB101 data file is needed. The table must hold accuracies (an energy-only
table such as ``ecnas-7v`` cannot be searched) and cells the codec can decode (at most 5 vertices).

Cells are handed to NASLib padded to 7×7 (isolated vertices before the output, which pruning
removes), so NASLib's 7-vertex encodings and hashes keep working; every cell is canonical
(one spec per module hash), so NASLib's de-duplication by ``get_hash()`` is exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from functools import lru_cache

import numpy as np

from ecnas_plugin.adapters import nasbench101 as nb
from ecnas_plugin.errors import InvalidArchitecture, SchemaError, UnknownName
from ecnas_plugin.naslib.tabular import NAME_KEY, SERVED_KEY, TableRuns

NASLIB_VERTICES = 7
# NASLib's NB101 graph type: the registered space whose NaslibMapping has it is served here.
GRAPH_TYPE = "nasbench101"


@lru_cache(maxsize=65536)
def _hash_cached(matrix_bytes: bytes, n: int, ops: tuple[str, ...]) -> str:
    matrix = np.frombuffer(matrix_bytes, dtype=np.int64).reshape(n, n)
    return nb.module_hash(matrix.tolist(), list(ops))


def spec_hash(matrix: object, ops: object) -> str:
    """Module hash of a (matrix, ops) spec, memoised (NASLib re-queries the same cells often)."""
    m = np.asarray(matrix, dtype=np.int64)
    return _hash_cached(m.tobytes(), m.shape[0], tuple(ops))  # type: ignore[arg-type]


class Subspace:
    """The valid cells a table holds, one per module hash; ``max_vertices`` is its largest cell's.

    Sampling, mutation and neighbours never leave the subspace. Random draws use the ``random``
    and ``numpy.random`` global streams, as NASLib's own NB101 space does, so seeds behave alike.
    """

    def __init__(self, name: str, cells: Mapping[str, nb.Cell]):
        if not cells:
            raise UnknownName(f"cells of {name} in the table", None)
        self.name = name
        self.max_vertices = max(c.num_vertices for c in cells.values())
        padded = {}
        for h, cell in cells.items():
            m, ops = nb.pad(cell, NASLIB_VERTICES)
            m.setflags(write=False)
            padded[h] = (m, tuple(ops))
        self.cells: dict[str, tuple[np.ndarray, tuple[str, ...]]] = padded
        self.keys: list[str] = sorted(padded)

    def __deepcopy__(self, memo: dict) -> Subspace:  # shared by every clone of a NASLib graph
        return self

    def __contains__(self, key: str) -> bool:
        return key in self.cells

    def spec(self, key: str) -> dict:
        """NASLib spec ``{"matrix": 7×7 array, "ops": [...]}`` (fresh copies) of cell ``key``."""
        try:
            m, ops = self.cells[key]
        except KeyError:
            raise UnknownName(f"{self.name} cell", key, self.keys) from None
        return {"matrix": m.copy(), "ops": list(ops)}

    def key_of(self, spec: Mapping) -> str | None:
        """Module hash of a spec if it is a valid cell of this subspace, else None."""
        try:
            h = spec_hash(spec["matrix"], spec["ops"])
        except InvalidArchitecture:
            return None
        return h if h in self.cells else None

    def sample(self) -> str:
        """A uniformly drawn cell key (``random.choice``)."""
        return random.choice(self.keys)

    def _frame(self, key: str) -> tuple[np.ndarray, list[str]]:
        """Cell ``key`` in the V-vertex frame mutations work in (pruned, padded to V)."""
        m, ops = self.cells[key]
        cell = nb.prune(m.tolist(), list(ops))
        return nb.pad(cell, self.max_vertices)

    def mutate(self, key: str, max_tries: int = 1000) -> str:
        """NAS-Bench-101's mutation (flip each edge w.p. 1/V, change each op w.p. 1/3) in the
        V-vertex frame, repeated until it yields a cell of the subspace (possibly the same one)."""
        v = self.max_vertices
        matrix, ops = self._frame(key)
        for _ in range(max_tries):
            m = matrix.copy()
            new_ops = list(ops)
            for src in range(v - 1):
                for dst in range(src + 1, v):
                    if np.random.random() < 1 / v:
                        m[src, dst] = 1 - m[src, dst]
            for i in range(1, v - 1):
                if np.random.random() < 1 / len(nb.OPS):
                    new_ops[i] = str(np.random.choice([o for o in nb.OPS if o != new_ops[i]]))
            h = self.key_of({"matrix": m, "ops": new_ops})
            if h is not None:
                return h
        raise InvalidArchitecture("mutation", f"no valid mutant in {max_tries} tries", key)

    def neighbours(self, key: str) -> list[str]:
        """Distinct cells of the subspace one op change or one edge flip away (in the V-vertex
        frame), unshuffled; where every single edit leaves the subspace (a pruned cell whose edits
        all break it), the cells the fewest edits away (up to 3), so a local search always has a
        next step (NASLib's LS pops from the neighbourhood without checking it is empty)."""
        frontier = [self._frame(key)]
        for _ in range(3):
            found: dict[str, None] = {}
            edited = [e for matrix, ops in frontier for e in self._edits(matrix, ops)]
            for m, ops in edited:
                found[self.key_of({"matrix": m, "ops": ops}) or ""] = None
            found.pop("", None)
            found.pop(key, None)
            if found:
                return list(found)
            frontier = edited
        return []

    def _edits(self, matrix: np.ndarray, ops: list[str]) -> list[tuple[np.ndarray, list[str]]]:
        """Every one op change and one edge flip of a frame, valid or not."""
        v = self.max_vertices
        out = []
        for i in range(1, v - 1):
            for op in nb.OPS:
                if op != ops[i]:
                    new_ops = list(ops)
                    new_ops[i] = op
                    out.append((matrix, new_ops))
        for src in range(v - 1):
            for dst in range(src + 1, v):
                m = matrix.copy()
                m[src, dst] = 1 - m[src, dst]
                out.append((m, list(ops)))
        return out


class ModelSpec:
    """Stand-in for ``nasbench.api.ModelSpec``: keeps matrix and ops, knows its module hash."""

    def __init__(self, matrix: object, ops: object, data_format: str = "channels_last"):
        self.matrix = np.asarray(matrix)
        self.ops = list(ops)  # type: ignore[call-overload]
        self.data_format = data_format

    def hash_spec(self, canonical_ops: object = None) -> str | None:
        try:
            return spec_hash(self.matrix, self.ops)
        except InvalidArchitecture:
            return None


class _ApiModule:
    """What NASLib reads as ``dataset_api["api"]`` (the ``nasbench.api`` module)."""

    ModelSpec = ModelSpec


class EcnasBench(TableRuns):
    """``nb101_data`` for NASLib, answered from an NB101 energy table's slices (the runs are
    :class:`~ecnas_plugin.naslib.tabular.TableRuns`, shared with tables served without a mapping).

    ``query(spec, epochs=None)`` returns NAS-Bench-101's keys (``train_accuracy``,
    ``validation_accuracy``, ``test_accuracy`` as fractions, ``training_time`` s,
    ``trainable_parameters``) plus ``train_energy_kwh``; like NAS-Bench-101 it picks one of the
    table's repeats with ``random.randint``. ``epochs`` defaults to ``default_epochs`` (the
    table's largest budget unless given).
    """

    def __init__(self, table: object, subspace: Subspace, default_epochs: int | None = None):
        super().__init__(table, subspace.keys, subspace.name, f"{subspace.name} cell", default_epochs)
        self.subspace = subspace

    def is_valid(self, spec: ModelSpec) -> bool:
        """True for a cell of the subspace (NAS-Bench-101 validity plus the table's cells)."""
        h = spec.hash_spec()
        return h is not None and h in self.subspace

    def query(self, spec: ModelSpec, epochs: int | None = None, stop_halfway: bool = False) -> dict:
        if stop_halfway:
            raise UnknownName("query option", "stop_halfway", [], context="(EC-NAS tables have no halfway values)")
        h = spec.hash_spec()
        if h is None or h not in self.subspace:
            raise InvalidArchitecture("not-in-space", f"not a cell of {self.subspace.name}", spec.ops)
        return self.draw(h, epochs)

    def get_metrics_from_hash(self, key: str) -> tuple[dict, dict]:
        spec = self.subspace.spec(key)
        fixed = {"module_adjacency": spec["matrix"], "module_operations": spec["ops"],
                 "trainable_parameters": self.mean(key)["trainable_parameters"]}
        computed = {}
        for e in self.table.values("epochs"):  # type: ignore[attr-defined]
            runs = self._runs_at(e).get(key)
            if runs is not None:
                computed[e] = [{"final_" + k: v for k, v in r.items()} for r in runs]
        return fixed, computed

    def hash_iterator(self) -> Iterator[str]:
        return iter(self.subspace.keys)


def _table(name: str, table: object | None) -> object:
    """The registered table ``name`` (UnknownName lists the tables), checked to be NB101-type."""
    from ecnas_plugin.registry import get_registry

    if table is None:
        import ecnas_plugin as ep

        table = ep.load_table(name)
    space = get_registry().space(table.space)  # type: ignore[attr-defined]
    space.require("naslib", flow=f"serving table {name!r} as a NASLib search space")
    if space.naslib.graph_type != GRAPH_TYPE:  # type: ignore[union-attr]
        raise SchemaError(f"table {name!r} is space {space.name!r} (NASLib {space.naslib.graph_type!r}); only "  # type: ignore[union-attr]
                          f"tables of NASLib's {GRAPH_TYPE!r} graphs can be served as EC-NAS-style subspaces "
                          "(their accuracies answer NASLib's NB101 queries)", column="space")
    frame = table.frame  # type: ignore[attr-defined]
    for col in ("val_acc", "test_acc"):
        if col not in frame.columns or frame[col].isna().all():
            raise SchemaError(f"table {name!r} has no {col}: an energy-only table cannot be served as a NASLib "
                              "search space (use it as energy.table on NASLib's own space instead)", column=col)
    return table


def load_subspace(name: str, table: object | None = None) -> Subspace:
    """The cells of NB101 table ``name`` (any registered one, e.g. ``ecnas-4v``, ``ecnas-5v``) as a subspace."""
    table = _table(name, table)
    return _cached_subspace(name, table)  # type: ignore[arg-type]


_SUBSPACES: dict[tuple[str, str], Subspace] = {}


def _cached_subspace(name: str, table) -> Subspace:
    """The table's cells as a Subspace, built once per (table name, table checksum)."""
    from ecnas_plugin.registry import get_registry

    cache_key = (name, table.manifest.checksum or str(id(table)))
    if cache_key not in _SUBSPACES:
        space = get_registry().space(table.space)
        try:
            cells = space.archs_of(table.frame)
        except InvalidArchitecture as exc:
            raise SchemaError(f"table {name!r} cannot be served as a NASLib search space: {exc}",
                              column="arch_key") from None
        _SUBSPACES[cache_key] = Subspace(name, cells)
    return _SUBSPACES[cache_key]


def build_dataset_api(name: str, table: object | None = None, epochs: int | None = None) -> dict:
    """NASLib ``dataset_api`` for NB101 table ``name`` served as a search space:
    ``{"api", "nb101_data", "ecnas_space", "ecnas_served"}`` (``ecnas_space``: the table's name;
    ``ecnas_served``: the same EcnasBench as ``nb101_data``, under the key every served table uses)."""
    table = _table(name, table)
    subspace = load_subspace(name, table)
    bench = EcnasBench(table, subspace, epochs)
    return {"api": _ApiModule, "nb101_data": bench, NAME_KEY: name, SERVED_KEY: bench}
