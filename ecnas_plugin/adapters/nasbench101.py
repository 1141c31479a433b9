"""NAS-Bench-101 cells: validation, pruning, the module hash, and every encoding the data uses.

A cell is a DAG of at most 7 vertices (input, up to 5 operations, output) given as a strictly
upper-triangular 0/1 adjacency matrix plus one op name per vertex. Tables are keyed by the
*module hash*, NAS-Bench-101's fingerprint of the pruned cell, which is the same for every
isomorphic labelling of a cell. Encodings handled here:

- EC-NAS records: flattened n×n matrix as a ``"0110..."`` string, ops comma-separated;
- NASLib tuples (``zc_nasbench101.json`` keys): flattened matrix then op codes
  [input, output, maxpool3x3, conv1x1-bn-relu, conv3x3-bn-relu] → 0..4;
- the EC-NAS surrogate's 7-vertex arrays (``7v_data.pt``): op codes 0 padding, 1 input,
  2 conv1x1, 3 conv3x3, 4 maxpool, 5 output.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np

from ecnas_plugin.adapters.base import SearchSpaceAdapter
from ecnas_plugin.errors import InvalidArchitecture
from ecnas_plugin.hookspecs import hookimpl

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"
# The order matters: a vertex's label in the module hash is its op's index here.
OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)
MAX_VERTICES = 7
MAX_EDGES = 9

# Short names accepted wherever op names are read.
OP_ALIASES = {"conv3x3": CONV3X3, "conv1x1": CONV1X1, "maxpool": MAXPOOL3X3}
# NASLib's ``all_ops`` (naslib/search_spaces/nasbench101/conversions.py): code = index.
NASLIB_OPS = (INPUT, OUTPUT, MAXPOOL3X3, CONV1X1, CONV3X3)
# EC-NAS surrogate data (7v_data.pt): code -> op; 0 marks a padding vertex.
SEVEN_V_OPS = {1: INPUT, 2: CONV1X1, 3: CONV3X3, 4: MAXPOOL3X3, 5: OUTPUT}

_HASH_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_Matrix = tuple[tuple[int, ...], ...]
_Spec = tuple[_Matrix, tuple[str, ...]]


def _normalise_op(op: object) -> object:
    return OP_ALIASES.get(op, op) if isinstance(op, str) else op


def _as_matrix(matrix: object, arch: object) -> _Matrix:
    """Square tuple-of-tuples of 0/1 ints; raises 'shape' or 'non-binary'."""
    try:
        arr = np.asarray(matrix, dtype=object)
    except ValueError as exc:  # ragged nested lists
        raise InvalidArchitecture("shape", f"adjacency is not a rectangular matrix ({exc})", arch)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InvalidArchitecture("shape", f"adjacency must be square, got shape {arr.shape}", arch)
    rows = []
    for i, row in enumerate(arr):
        out = []
        for j, v in enumerate(row):
            if isinstance(v, (bool, np.bool_)) or (
                isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1)
            ):
                out.append(int(v))
            else:
                raise InvalidArchitecture(
                    "non-binary", f"adjacency entry [{i}][{j}] is {v!r}, expected 0 or 1", arch
                )
        rows.append(tuple(out))
    return tuple(rows)


def _has_cycle(m: _Matrix) -> bool:
    """Kahn's algorithm on the full matrix (any entry, any direction)."""
    n = len(m)
    indeg = [sum(m[i][j] for i in range(n)) for j in range(n)]
    ready = [v for v in range(n) if indeg[v] == 0]
    seen = 0
    while ready:
        v = ready.pop()
        seen += 1
        for w in range(n):
            if m[v][w]:
                indeg[w] -= 1
                if indeg[w] == 0:
                    ready.append(w)
    return seen < n


def _reachable(m: _Matrix, start: int, forward: bool) -> set[int]:
    n = len(m)
    seen, stack = {start}, [start]
    while stack:
        v = stack.pop()
        for w in range(n):
            if (m[v][w] if forward else m[w][v]) and w not in seen:
                seen.add(w)
                stack.append(w)
    return seen


def _prune(m: _Matrix, ops: tuple[str, ...], arch: object) -> _Spec:
    """Keep only vertices on some input→output path (m must be upper triangular)."""
    n = len(m)
    fwd = _reachable(m, 0, forward=True)
    if n - 1 not in fwd:
        raise InvalidArchitecture("disconnected", "no path from input to output", arch)
    keep = sorted(fwd & _reachable(m, n - 1, forward=False))
    if len(keep) == n:
        return m, ops
    return tuple(tuple(m[i][j] for j in keep) for i in keep), tuple(ops[i] for i in keep)


def _describe(matrix: object, ops: object) -> str:
    """Compact one-line form of a spec for error messages: ``ADJ:OPS`` where possible."""
    try:
        entries = np.asarray(matrix).ravel().tolist()
        flat = "".join(str(int(v)) if v in (0, 1) else f"[{v!r}]" for v in entries)
    except (TypeError, ValueError):
        flat = repr(matrix)
    ops_text = ",".join(map(str, ops)) if isinstance(ops, Sequence | np.ndarray) else repr(ops)
    return f"{flat}:{ops_text}"


def _check(matrix: object, ops: object, arch: object = None) -> tuple[_Spec, _Spec]:
    """Validate a spec; return (matrix, ops) as given (normalised) and (matrix, ops) pruned."""
    if arch is None:
        arch = _describe(matrix, ops)
    if isinstance(ops, str) or not isinstance(ops, Sequence | np.ndarray):
        raise InvalidArchitecture("shape", f"ops must be a sequence of names, got {ops!r}", arch)
    ops_t = tuple(_normalise_op(o) for o in ops)
    m = _as_matrix(matrix, arch)
    n = len(m)
    if len(ops_t) != n:
        raise InvalidArchitecture("shape", f"{n}x{n} adjacency but {len(ops_t)} ops", arch)
    if n < 2:
        raise InvalidArchitecture("shape", "a cell needs at least an input and an output vertex", arch)
    if ops_t[0] != INPUT:
        raise InvalidArchitecture("first-op", f"first op must be {INPUT!r}, got {ops_t[0]!r}", arch)
    if ops_t[-1] != OUTPUT:
        raise InvalidArchitecture("last-op", f"last op must be {OUTPUT!r}, got {ops_t[-1]!r}", arch)
    for k, op in enumerate(ops_t[1:-1], start=1):
        if op not in OPS:
            raise InvalidArchitecture(
                "unknown-op", f"op {op!r} at vertex {k} is not one of {', '.join(OPS)}", arch
            )
    back = [(i, j) for i in range(n) for j in range(i + 1) if m[i][j]]
    if back:
        if _has_cycle(m):
            raise InvalidArchitecture("cycle", f"the graph has a cycle (edges {back} point backwards)", arch)
        raise InvalidArchitecture(
            "not-upper-triangular",
            f"edges {back} point backwards; NAS-Bench-101 matrices are strictly upper triangular "
            "(number vertices in topological order)",
            arch,
        )
    pm, pops = _prune(m, ops_t, arch)
    if len(pops) > MAX_VERTICES:
        raise InvalidArchitecture(
            "too-many-vertices", f"{len(pops)} vertices after pruning, at most {MAX_VERTICES}", arch
        )
    edges = sum(map(sum, pm))
    if edges > MAX_EDGES:
        raise InvalidArchitecture("too-many-edges", f"{edges} edges after pruning, at most {MAX_EDGES}", arch)
    return (m, ops_t), (pm, pops)


@dataclass(frozen=True)
class Cell:
    """A valid NAS-Bench-101 cell (not necessarily pruned); construction validates it.

    ``matrix`` is a tuple of 0/1 int rows, ``ops`` the full op names (short aliases are
    expanded). Raises :class:`InvalidArchitecture` with the broken rule.
    """

    matrix: _Matrix
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        (m, ops), _ = _check(self.matrix, self.ops)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "ops", ops)

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def as_numpy(self) -> np.ndarray:
        """Adjacency as an int64 numpy array."""
        return np.array(self.matrix, dtype=np.int64).reshape(self.num_vertices, self.num_vertices)

    def pruned(self) -> Cell:
        """This cell without vertices off every input→output path."""
        return prune(self.matrix, self.ops)


def as_cell(arch: object) -> Cell:
    """A Cell from any spec form: a Cell, a {"matrix", "ops"} dict, a (matrix, ops) pair, or an
    object with ``.matrix``/``.ops``. Raises InvalidArchitecture naming the broken rule."""
    if isinstance(arch, Cell):
        return arch
    if isinstance(arch, dict):
        missing = {"matrix", "ops"} - arch.keys()
        if missing:
            raise InvalidArchitecture("shape", f"dict lacks {sorted(missing)}", arch)
        return Cell(arch["matrix"], arch["ops"])
    if isinstance(arch, (tuple, list)) and len(arch) == 2:
        return Cell(arch[0], arch[1])
    if hasattr(arch, "matrix") and hasattr(arch, "ops"):
        return Cell(arch.matrix, arch.ops)  # type: ignore[attr-defined]
    raise InvalidArchitecture("bad-key", "expected a Cell, (matrix, ops), {'matrix', 'ops'} or a module hash", arch)


def validate(matrix: object, ops: Sequence[str]) -> Cell:
    """Check a (matrix, ops) spec against every NAS-Bench-101 rule; return it as a Cell.

    Rules (``InvalidArchitecture.rule``): shape, non-binary, first-op, last-op, unknown-op,
    cycle / not-upper-triangular, disconnected, too-many-vertices and too-many-edges (both
    counted after pruning, as NAS-Bench-101 does).
    """
    return Cell(matrix, ops)  # type: ignore[arg-type]


def prune(matrix: object, ops: Sequence[str]) -> Cell:
    """Validate, then drop vertices that lie on no input→output path (NAS-Bench-101 pruning)."""
    _, (pm, pops) = _check(matrix, ops)
    return Cell(pm, pops)


def pad(cell: Cell, size: int = MAX_VERTICES, filler: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """``cell`` as a ``size``-vertex spec (int64 adjacency, ops): vertices without edges inserted
    before the output, with ops ``filler`` (default conv3x3). They lie on no input→output path, so
    pruning removes them and the module hash is unchanged; fixed-size frames (NASLib's 7-vertex
    specs, mutation, feature arrays) need them. Raises InvalidArchitecture if the cell is bigger."""
    n = cell.num_vertices
    if n > size:
        raise InvalidArchitecture("too-many-vertices", f"{n} vertices do not fit in {size}", cell)
    extra = [CONV3X3] * (size - n) if filler is None else list(filler)
    if len(extra) != size - n:
        raise ValueError(f"filler has {len(extra)} ops for {size - n} inserted vertices")
    position = list(range(n - 1)) + [size - 1]  # interior vertices keep their order, output goes last
    matrix = np.zeros((size, size), dtype=np.int64)
    matrix[np.ix_(position, position)] = cell.as_numpy()
    return matrix, list(cell.ops[:-1]) + extra + [OUTPUT]


def _fingerprint(m: _Matrix, ops: Sequence[str]) -> str:
    """NAS-Bench-101's graph hash of an already pruned, valid cell."""
    n = len(ops)
    labels = [-1] + [OPS.index(o) for o in ops[1:-1]] + [-2]
    preds = [[i for i in range(n) if m[i][v]] for v in range(n)]
    succs = [[j for j in range(n) if m[v][j]] for v in range(n)]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()

    # Plain Python ints: str() of numpy scalars differs under numpy >= 2.
    hashes = [md5(str((len(succs[v]), len(preds[v]), labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                "".join(sorted(hashes[w] for w in preds[v]))
                + "|"
                + "".join(sorted(hashes[w] for w in succs[v]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return md5(str(sorted(hashes)))


def module_hash(cell_or_matrix: Cell | object, ops: Sequence[str] | None = None) -> str:
    """Module hash (32 lowercase hex) of a Cell, or of ``(matrix, ops)``; hashes the pruned cell."""
    if isinstance(cell_or_matrix, Cell):
        if ops is not None:
            raise TypeError("module_hash(cell) takes no ops; pass ops only with a matrix")
        matrix, ops = cell_or_matrix.matrix, cell_or_matrix.ops
    else:
        if ops is None:
            raise TypeError("module_hash(matrix, ops): ops missing")
        matrix = cell_or_matrix
    _, (pm, pops) = _check(matrix, ops)
    return _fingerprint(pm, pops)


# ---------------------------------------------------------------- encodings in the real data


def from_flat_adjacency(adj: str, ops_csv: str) -> Cell:
    """Cell from EC-NAS's record form: ``"0110001100010000"`` and ``"input,conv1x1-bn-relu,..."``."""
    arch = f"{adj}:{ops_csv}"
    ops = [o.strip() for o in ops_csv.split(",")]
    n = len(ops)
    adj = adj.strip()
    if len(adj) != n * n:
        raise InvalidArchitecture("shape", f"{n} ops need {n * n} adjacency digits, got {len(adj)}", arch)
    bad = next((c for c in adj if c not in "01"), None)
    if bad is not None:
        raise InvalidArchitecture("non-binary", f"adjacency digit {bad!r} is not 0 or 1", arch)
    matrix = [[int(adj[i * n + j]) for j in range(n)] for i in range(n)]
    return Cell(matrix, ops)  # type: ignore[arg-type]


def to_flat_adjacency(cell: Cell) -> tuple[str, str]:
    """Inverse of :func:`from_flat_adjacency`: (adjacency digits, comma-separated ops)."""
    return "".join(str(v) for row in cell.matrix for v in row), ",".join(cell.ops)


def _int_sequence(t: object, what: str) -> list[int]:
    if isinstance(t, str):
        parts = t.strip().strip("()[]").split(",")
        try:
            return [int(p) for p in parts if p.strip()]
        except ValueError:
            raise InvalidArchitecture("syntax", f"{what} must be integers separated by commas", t) from None
    try:
        return [int(v) for v in np.asarray(t).ravel()]
    except (TypeError, ValueError):
        raise InvalidArchitecture("syntax", f"{what} must be a sequence of integers", t) from None


def from_naslib_tuple(t: Sequence[int] | str) -> Cell:
    """Cell from a NASLib NB101 tuple (n*n adjacency entries, then n op codes), or its str form.

    Op codes are NASLib's: 0 input, 1 output, 2 maxpool3x3, 3 conv1x1-bn-relu, 4 conv3x3-bn-relu.
    """
    vals = _int_sequence(t, "a NASLib tuple")
    n = next((k for k in range(1, 32) if k * k + k == len(vals)), None)
    if n is None:
        raise InvalidArchitecture("shape", f"length {len(vals)} is not n*n + n for any n", t)
    codes = vals[n * n :]
    bad = [c for c in codes if not 0 <= c < len(NASLIB_OPS)]
    if bad:
        raise InvalidArchitecture(
            "unknown-op", f"op codes {bad} not in 0..{len(NASLIB_OPS) - 1} ({', '.join(NASLIB_OPS)})", t
        )
    matrix = [vals[i * n : (i + 1) * n] for i in range(n)]
    return Cell(matrix, [NASLIB_OPS[c] for c in codes])  # type: ignore[arg-type]


def to_naslib_tuple(cell: Cell) -> tuple[int, ...]:
    """NASLib NB101 tuple of a cell (its own vertex count; NASLib's space uses 7-vertex cells)."""
    return tuple(v for row in cell.matrix for v in row) + tuple(NASLIB_OPS.index(o) for o in cell.ops)


def from_7v_arrays(adjacency: object, opcodes: object) -> Cell:
    """Cell from the EC-NAS surrogate arrays (7×7 adjacency, 7 op codes); padding vertices removed.

    Codes: 0 padding, 1 input, 2 conv1x1, 3 conv3x3, 4 maxpool, 5 output. A padding vertex with
    an edge is an error (rule "padding-edge").
    """
    codes = _int_sequence(opcodes, "op codes")
    m = _as_matrix(np.asarray(adjacency).tolist(), None)
    if len(codes) != len(m):
        raise InvalidArchitecture("shape", f"{len(m)}x{len(m)} adjacency but {len(codes)} op codes", codes)
    bad = [c for c in codes if c != 0 and c not in SEVEN_V_OPS]
    if bad:
        raise InvalidArchitecture("unknown-op", f"op codes {bad} not in 0..5", codes)
    keep = [i for i, c in enumerate(codes) if c != 0]
    for i, c in enumerate(codes):
        if c == 0 and (any(m[i]) or any(row[i] for row in m)):
            raise InvalidArchitecture("padding-edge", f"padding vertex {i} has edges", codes)
    matrix = [[m[i][j] for j in keep] for i in keep]
    return Cell(matrix, [SEVEN_V_OPS[codes[i]] for i in keep])  # type: ignore[arg-type]


# ---------------------------------------------------------------- enumeration


def _full_graphs(n: int) -> Iterator[_Matrix]:
    """Upper-triangular n-vertex matrices, ≤ MAX_EDGES edges, in which every vertex is kept by pruning."""
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for mask in range(1 << len(pairs)):
        if mask.bit_count() > MAX_EDGES:
            continue
        m = [[0] * n for _ in range(n)]
        for k, (i, j) in enumerate(pairs):
            if mask >> k & 1:
                m[i][j] = 1
        mt = tuple(tuple(r) for r in m)
        fwd = _reachable(mt, 0, True)
        if len(fwd) == n and len(_reachable(mt, n - 1, False)) == n:
            yield mt


def enumerate_cells(max_vertices: int = MAX_VERTICES) -> Iterator[Cell]:
    """Every valid pruned cell with at most ``max_vertices`` vertices, one per module hash.

    Yields 91 cells for 4 vertices and 2,532 for 5 (seconds); 7 vertices (423,624) takes long.
    """
    for _, cell in _enumerate(max_vertices):
        yield cell


@lru_cache(maxsize=None)
def cells_by_hash(max_vertices: int) -> Mapping[str, Cell]:
    """Module hash → cell for every valid cell of at most ``max_vertices`` vertices, in
    :func:`enumerate_cells` order; built once per process (read-only)."""
    return MappingProxyType(dict(_enumerate(max_vertices)))


def _enumerate(max_vertices: int) -> Iterator[tuple[str, Cell]]:
    if not 2 <= max_vertices <= MAX_VERTICES:
        raise ValueError(f"max_vertices must be in 2..{MAX_VERTICES}, got {max_vertices}")
    seen: set[str] = set()
    for n in range(2, max_vertices + 1):
        for m in _full_graphs(n):
            for inner in itertools.product(OPS, repeat=n - 2):
                ops = (INPUT, *inner, OUTPUT)
                h = _fingerprint(m, ops)
                if h not in seen:
                    seen.add(h)
                    yield h, Cell(m, ops)


# ---------------------------------------------------------------- adapter


def _is_hash(text: str) -> bool:
    return bool(_HASH_RE.match(text))


class NasBench101(SearchSpaceAdapter):
    """NAS-Bench-101 cells, keyed by module hash."""

    name = "nasbench101"
    key_description = "module hash: NAS-Bench-101 graph fingerprint of the pruned cell"

    def canonical_key(self, arch: object) -> str:
        """Module hash of a Cell, a (matrix, ops) pair, a {"matrix", "ops"} dict, or a hash string."""
        if isinstance(arch, (str, bytes)):
            text = arch.decode("ascii", "replace") if isinstance(arch, bytes) else arch
            if _is_hash(text.strip()):
                return text.strip().lower()
            raise InvalidArchitecture("bad-key", "a string key must be a 32-hex-digit module hash", arch)
        return module_hash(as_cell(arch))

    def parse_arch(self, text: str) -> Cell | str:
        """Parse a module hash, JSON ``{"matrix": ..., "ops": ...}`` or ``ADJ:OPS`` (EC-NAS form)."""
        s = text.strip()
        if _is_hash(s):
            return s.lower()
        if s.startswith("{"):
            try:
                spec = json.loads(s)
            except json.JSONDecodeError as exc:
                raise InvalidArchitecture("syntax", f"bad JSON: {exc}", text) from None
            if not isinstance(spec, dict) or {"matrix", "ops"} - spec.keys():
                raise InvalidArchitecture("syntax", 'JSON must be {"matrix": [[...]], "ops": [...]}', text)
            return Cell(spec["matrix"], spec["ops"])
        if ":" in s:
            adj, ops = s.split(":", 1)
            return from_flat_adjacency(adj, ops)
        raise InvalidArchitecture(
            "syntax", 'expected a 32-hex module hash, JSON {"matrix":..., "ops":...}, or ADJ:OPS', text
        )


@hookimpl
def ecnas_search_spaces():
    return [NasBench101()]
