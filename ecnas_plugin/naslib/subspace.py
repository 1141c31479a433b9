"""EC-NAS's 4- and 5-vertex NAS-Bench-101 subspaces, and a NAS-Bench-101-style ``dataset_api`` for them.

No NASLib import here: NASLib's NB101 ``query`` only needs ``dataset_api["api"].ModelSpec`` and
``dataset_api["nb101_data"]`` with ``is_valid``/``query``/``get_metrics_from_hash``/
``hash_iterator``. :class:`EcnasBench` answers those from an EC-NAS :class:`EnergyTable`, so
accuracy and energy both come from EC-NAS and no NASLib NB101 data file is needed.

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

NASLIB_VERTICES = 7
# EC-NAS space name → (table, max vertices)
SPACES = {"ecnas-4v": ("ecnas-4v", 4), "ecnas-5v": ("ecnas-5v", 5)}


@lru_cache(maxsize=65536)
def _hash_cached(matrix_bytes: bytes, n: int, ops: tuple[str, ...]) -> str:
    matrix = np.frombuffer(matrix_bytes, dtype=np.int64).reshape(n, n)
    return nb.module_hash(matrix.tolist(), list(ops))


def spec_hash(matrix: object, ops: object) -> str:
    """Module hash of a (matrix, ops) spec, memoised (NASLib re-queries the same cells often)."""
    m = np.asarray(matrix, dtype=np.int64)
    return _hash_cached(m.tobytes(), m.shape[0], tuple(ops))  # type: ignore[arg-type]


class Subspace:
    """All valid cells with at most ``max_vertices`` vertices that ``table`` holds, one per hash.

    Sampling, mutation and neighbours never leave the subspace. Random draws use the ``random``
    and ``numpy.random`` global streams, as NASLib's own NB101 space does, so seeds behave alike.
    """

    def __init__(self, name: str, max_vertices: int, keys: set[str]):
        self.name = name
        self.max_vertices = max_vertices
        cells = {}
        for h, cell in nb.cells_by_hash(max_vertices).items():
            if h in keys:
                m, ops = nb.pad(cell, NASLIB_VERTICES)
                m.setflags(write=False)
                cells[h] = (m, tuple(ops))
        if not cells:
            raise UnknownName(f"cells of {name} in the table", None, sorted(keys)[:5])
        self.cells: dict[str, tuple[np.ndarray, tuple[str, ...]]] = cells
        self.keys: list[str] = sorted(cells)

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
        """Distinct cells one op change or one edge flip away (in the V-vertex frame), unshuffled."""
        v = self.max_vertices
        matrix, ops = self._frame(key)
        found: dict[str, None] = {}
        for i in range(1, v - 1):
            for op in nb.OPS:
                if op != ops[i]:
                    new_ops = list(ops)
                    new_ops[i] = op
                    found[self.key_of({"matrix": matrix, "ops": new_ops}) or ""] = None
        for src in range(v - 1):
            for dst in range(src + 1, v):
                m = matrix.copy()
                m[src, dst] = 1 - m[src, dst]
                found[self.key_of({"matrix": m, "ops": ops}) or ""] = None
        found.pop("", None)
        found.pop(key, None)
        return list(found)


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


class EcnasBench:
    """``nb101_data`` for NASLib, answered from an EC-NAS table.

    ``query(spec, epochs=None)`` returns NAS-Bench-101's keys (``train_accuracy``,
    ``validation_accuracy``, ``test_accuracy`` as fractions, ``training_time`` s,
    ``trainable_parameters``) plus ``train_energy_kwh``; like NAS-Bench-101 it picks one of the
    table's repeats with ``random.randint``. ``epochs`` defaults to ``default_epochs``.
    """

    def __init__(self, table: object, subspace: Subspace, default_epochs: int | None = None):
        frame = table.frame  # type: ignore[attr-defined]
        epochs = sorted(frame["epochs"].unique().tolist())
        if default_epochs is None:
            default_epochs = epochs[-1]
        if default_epochs not in epochs:
            raise UnknownName("epoch budget", default_epochs, epochs, context=f"in table {table.name!r}")  # type: ignore[attr-defined]
        if frame[["dataset", "hardware", "campaign"]].nunique().max() > 1:
            raise SchemaError(f"table {table.name!r} mixes datasets, hardware or campaigns; the EC-NAS "  # type: ignore[attr-defined]
                              "spaces need a single one", column="campaign")
        self.table = table
        self.subspace = subspace
        self.default_epochs = int(default_epochs)
        # key -> epochs -> list of metric dicts (one per repeat), built once: queries are O(1).
        self._rows: dict[str, dict[int, list[dict]]] = {}
        cols = ["arch_key", "epochs", "repeat", "train_acc", "val_acc", "test_acc", "train_time_s",
                "params", "train_energy_kwh"]
        for k, e, _r, tr, va, te, t, p, en in sorted(zip(*(frame[c].tolist() for c in cols))):
            self._rows.setdefault(k, {}).setdefault(int(e), []).append({
                "train_accuracy": tr, "validation_accuracy": va, "test_accuracy": te,
                "training_time": t, "trainable_parameters": p, "train_energy_kwh": en,
            })

    def __deepcopy__(self, memo: dict) -> EcnasBench:
        return self

    def is_valid(self, spec: ModelSpec) -> bool:
        """True for a cell of the subspace (NAS-Bench-101 validity plus the vertex limit)."""
        h = spec.hash_spec()
        return h is not None and h in self.subspace

    def _runs(self, key: str, epochs: int) -> list[dict]:
        try:
            return self._rows[key][epochs]
        except KeyError:
            if key not in self._rows:
                raise UnknownName(f"{self.subspace.name} cell", key, self.subspace.keys) from None
            raise UnknownName("epoch budget", epochs, sorted(self._rows[key]),
                              context=f"for cell {key}") from None

    def query(self, spec: ModelSpec, epochs: int | None = None, stop_halfway: bool = False) -> dict:
        if stop_halfway:
            raise UnknownName("query option", "stop_halfway", [], context="(EC-NAS tables have no halfway values)")
        h = spec.hash_spec()
        if h is None or h not in self.subspace:
            raise InvalidArchitecture("not-in-space", f"not a cell of {self.subspace.name}", spec.ops)
        runs = self._runs(h, self.default_epochs if epochs is None else int(epochs))
        return dict(runs[random.randint(0, len(runs) - 1)])

    def mean(self, key: str, epochs: int | None = None) -> dict:
        """Metrics of ``key`` averaged over repeats (deterministic; used for energy accounting)."""
        runs = self._runs(key, self.default_epochs if epochs is None else int(epochs))
        return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}

    def get_metrics_from_hash(self, key: str) -> tuple[dict, dict]:
        spec = self.subspace.spec(key)
        fixed = {"module_adjacency": spec["matrix"], "module_operations": spec["ops"],
                 "trainable_parameters": self.mean(key)["trainable_parameters"]}
        computed = {e: [{"final_" + k: v for k, v in r.items()} for r in runs]
                    for e, runs in self._rows[key].items()}
        return fixed, computed

    def hash_iterator(self) -> Iterator[str]:
        return iter(self.subspace.keys)


def load_subspace(name: str, table: object | None = None) -> Subspace:
    """The EC-NAS subspace ``name`` ("ecnas-4v" or "ecnas-5v"), cells restricted to its table."""
    if name not in SPACES:
        raise UnknownName("EC-NAS search space", name, SPACES)
    table_name, vertices = SPACES[name]
    if table is None:
        import ecnas_plugin as ep

        table = ep.load_table(table_name)
    return _cached_subspace(name, vertices, frozenset(table.frame["arch_key"].unique().tolist()))  # type: ignore[attr-defined]


@lru_cache(maxsize=8)
def _cached_subspace(name: str, vertices: int, keys: frozenset[str]) -> Subspace:
    return Subspace(name, vertices, set(keys))


def build_dataset_api(name: str, table: object | None = None, epochs: int | None = None) -> dict:
    """NASLib ``dataset_api`` for EC-NAS space ``name``: ``{"api", "nb101_data", "ecnas_space"}``."""
    if name not in SPACES:
        raise UnknownName("EC-NAS search space", name, SPACES)
    if table is None:
        import ecnas_plugin as ep

        table = ep.load_table(SPACES[name][0])
    subspace = load_subspace(name, table)
    return {"api": _ApiModule, "nb101_data": EcnasBench(table, subspace, epochs), "ecnas_space": name}
