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
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np

from ecnas_plugin.adapters.base import NaslibMapping, SearchSpace
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


# ---------------------------------------------------------------- the search space


def _is_hash(text: str) -> bool:
    return bool(_HASH_RE.match(text))


def _naslib_key(graph: object) -> str:
    from ecnas_plugin.naslib.subspace import spec_hash  # memoised: NASLib re-queries cells often

    spec = graph.get_spec()  # type: ignore[attr-defined]
    return spec_hash(spec["matrix"], spec["ops"])


def _naslib_spec(graph: object) -> object:
    return graph.get_spec()  # type: ignore[attr-defined]


class NasBench101(SearchSpace):
    """NAS-Bench-101 cells, keyed by module hash; buildable and described as ``ADJ:OPS``."""

    name = "nasbench101"
    key_description = "module hash: NAS-Bench-101 graph fingerprint of the pruned cell"
    network_defaults = {"stem_channels": 128, "num_stacks": 3, "cells_per_stack": 3}
    size = 423_624  # valid pruned cells of at most 7 vertices, one per module hash
    default_limits = {"max_vertices": 5}  # all 423,624 7-vertex cells take minutes to list; 2,532 take seconds
    naslib = NaslibMapping("nasbench101", "nasbench101", _naslib_key, _naslib_spec, preferred_table="ecnas-7v")

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

    def arch(self, value: object) -> Cell:
        """A buildable Cell (pruned) from any spec form, ``ADJ:OPS``/JSON text, or a module hash of
        a cell with at most 5 vertices (decoded through the enumeration)."""
        cell = self.parse_arch(value) if isinstance(value, str) else value
        if isinstance(cell, str):
            return self.decode(cell)
        return as_cell(cell).pruned()

    def describe(self, arch: object) -> str:
        """``ADJ:OPS`` of the pruned cell (what ``parse_arch`` reads back and the builder takes)."""
        return ":".join(to_flat_adjacency(self.arch(arch)))

    def decode(self, key: str) -> Cell:
        """The pruned cell of a module hash; every cell of at most 5 vertices is known (the
        fingerprint cannot be inverted, so larger cells need their ``ADJ:OPS``)."""
        cell = cells_by_hash(DECODABLE_VERTICES).get(self.canonical_key(key))
        if cell is None:
            raise InvalidArchitecture("not-decodable", f"not a cell of at most {DECODABLE_VERTICES} vertices; "
                                      "a module hash cannot be turned back into its cell: give it as ADJ:OPS "
                                      "or JSON {matrix, ops}", key)
        return cell

    # ------------------------------------------------------------------ moves
    def enumerate(self, max_vertices: int = MAX_VERTICES) -> Iterator[Cell]:
        """Every valid pruned cell (423,624 for 7 vertices: slow; 2,532 for 5 in seconds)."""
        return enumerate_cells(max_vertices)

    def sample(self, rng, subset: Collection[str] | None = None) -> Cell:
        """A random valid cell of up to 7 vertices (NASLib's rule: random 7-vertex spec, rejected
        until it is valid, then pruned); uniform over ``subset`` when given."""
        if subset is not None:
            return super().sample(rng, subset)
        pairs = [(i, j) for i in range(MAX_VERTICES) for j in range(i + 1, MAX_VERTICES)]
        while True:
            m = [[0] * MAX_VERTICES for _ in range(MAX_VERTICES)]
            for (i, j), bit in zip(pairs, rng.integers(0, 2, size=len(pairs))):
                m[i][j] = int(bit)
            ops = [INPUT, *(OPS[int(k)] for k in rng.integers(len(OPS), size=MAX_VERTICES - 2)), OUTPUT]
            try:
                return prune(m, ops)
            except InvalidArchitecture:
                continue

    def _frame_size(self, cell: Cell, subset: Collection[str] | None) -> int:
        """Vertices to pad to while mutating: the largest cell of ``subset`` (7 without one), so
        children can grow and shrink without leaving it."""
        if subset is None:
            return MAX_VERTICES
        sizes = _SUBSET_SIZES.get(id(subset))
        if sizes is None or sizes[0] is not subset:
            known = cells_by_hash(DECODABLE_VERTICES)
            largest = max((known[k].num_vertices if k in known else MAX_VERTICES for k in subset), default=2)
            sizes = _SUBSET_SIZES[id(subset)] = (subset, largest)
            while len(_SUBSET_SIZES) > 16:  # a few tables at a time: keep the cache (and its refs) bounded
                del _SUBSET_SIZES[next(iter(_SUBSET_SIZES))]
        return max(sizes[1], cell.num_vertices)

    def mutate(self, arch: object, rng, subset: Collection[str] | None = None, tries: int = 500) -> Cell:
        """A different valid cell near ``arch`` (inside ``subset`` when given).

        The cell is padded with dangling vertices (which pruning removes), so mutation can both
        grow and shrink it. One try either changes the op of one vertex on the cell's path, or
        flips 1 + Poisson(0.5) edges (two flips are needed to wire in a dangling vertex).
        """
        cell = self.arch(arch)
        n = self._frame_size(cell, subset)
        parent = module_hash(cell)
        extra = [OPS[int(rng.integers(len(OPS)))] for _ in range(n - cell.num_vertices)]
        padded, ops = pad(cell, n, filler=extra)  # dangling vertices with random ops
        matrix = padded.tolist()
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        live = list(range(1, cell.num_vertices - 1))  # inner vertices on an input->output path
        for _ in range(tries):
            m = [list(r) for r in matrix]
            new_ops = list(ops)
            if live and rng.random() < 0.5:
                v = live[int(rng.integers(len(live)))]
                new_ops[v] = OPS[int(rng.integers(len(OPS)))]
            else:
                flips = min(len(pairs), 1 + int(rng.poisson(0.5)))
                for k in rng.choice(len(pairs), size=flips, replace=False):
                    i, j = pairs[int(k)]
                    m[i][j] = 1 - m[i][j]
            try:
                child = prune(m, new_ops)
            except InvalidArchitecture:
                continue
            key = module_hash(child)
            if key != parent and (subset is None or key in subset):
                return child
        raise InvalidArchitecture("no-neighbour", f"no valid mutation found in {tries} tries", parent)

    def neighbours(self, arch: object, subset: Collection[str] | None = None) -> list[Cell]:
        """Cells one edit away: one vertex's op changed, or one edge flipped in the padded frame
        (so a dangling vertex needs two edits), pruned; one per module hash."""
        cell = self.arch(arch)
        n = self._frame_size(cell, subset)
        parent = module_hash(cell)
        padded, ops = pad(cell, n)
        matrix = padded.tolist()
        candidates = []
        for v in range(1, cell.num_vertices - 1):
            for op in OPS:
                if op != ops[v]:
                    candidates.append((matrix, ops[:v] + [op] + ops[v + 1:]))
        for i in range(n):
            for j in range(i + 1, n):
                m = [list(r) for r in matrix]
                m[i][j] = 1 - m[i][j]
                candidates.append((m, ops))
        out: dict[str, Cell] = {}
        for m, o in candidates:
            try:
                child = prune(m, o)
            except InvalidArchitecture:
                continue
            key = module_hash(child)
            if key != parent and key not in out and (subset is None or key in subset):
                out[key] = child
        return list(out.values())

    def stratum(self, arch: object) -> tuple:
        """(vertices, edges, conv3x3 count, conv1x1 count, maxpool count)."""
        cell = self.arch(arch)
        inner = tuple(cell.ops)[1:-1]
        return (cell.num_vertices, cell.num_edges, *(inner.count(o) for o in OPS))

    # ------------------------------------------------------------------ optional parts
    def build_network(self, arch: object, num_classes: int, **settings: int):
        from ecnas_plugin.networks import build_nb101

        # BN momentum 0.1: runs of a few hundred steps need settled eval-mode statistics.
        return build_nb101(self.arch(arch), num_classes=num_classes, bn_momentum=0.1,
                           **{**self.network_defaults, **settings})

    def features(self, archs: Sequence[object]) -> tuple[np.ndarray, list[str]]:
        from ecnas_plugin.energy.surrogates.features import CellBatch, nb101_feature_names, nb101_features

        return nb101_features(CellBatch.from_cells([self.arch(a) for a in archs])), nb101_feature_names()

    def encoding(self, archs: Sequence[object]) -> np.ndarray:
        """The features, then the path encoding (``features.nb101_path_encoding``): graph statistics
        and op counts alone leave the optimizers' GP nearly blind to accuracy on NB101 cells."""
        from ecnas_plugin.energy.surrogates.features import CellBatch, nb101_features, nb101_path_encoding

        batch = CellBatch.from_cells([self.arch(a) for a in archs])
        return np.concatenate([nb101_features(batch), nb101_path_encoding(batch)], axis=1).astype(float)


DECODABLE_VERTICES = 5
_SUBSET_SIZES: dict[int, tuple[object, int]] = {}


@hookimpl
def ecnas_search_spaces():
    return [NasBench101()]
