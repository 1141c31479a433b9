"""Surrogate features from each search space's codec, computed in bulk with numpy.

NAS-Bench-101 cells are held as a :class:`CellBatch`: pruned cells padded to 7 vertices (interior
vertices first, padding vertices next, the output vertex always at index 6), so every feature is a
vectorised array operation and 423k cells featurise in about a second. Parameters and FLOPs are
counted analytically for NB101's CIFAR-10 network (stem 128 channels, 3 stacks of 3 cells) and
agree exactly with ``ecnas_plugin.networks`` builders and the ``params`` EC-NAS stored.
FLOPs are multiply-accumulates, the convention of ``ecnas_plugin.networks.count_flops``.
NAS-Bench-201 features are per-edge op one-hots plus analytic params/FLOPs of its CIFAR network.
Op codes and op orders are the codecs' own tables (``nasbench101.SEVEN_V_OPS``, ``nasbench201.OPS``).

:func:`space_features` is how the predictor featurises any space: through its ``features``
capability (:class:`SpaceFeatures`), or NB101's vectorised path (:class:`Nb101Features`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.adapters import nasbench201 as nb201
from ecnas_plugin.errors import InvalidArchitecture, UnknownName

FEATURE_SET = "nb101-invariant-v2"  # bump whenever the feature vector changes meaning
NB201_FEATURE_SET = "nb201-v2"  # v2: one-hot columns in the codec's op order (nasbench201.OPS)

V = nb101.MAX_VERTICES  # 7
# Op codes of a CellBatch: the codec's 7v_data.pt table (nasbench101.SEVEN_V_OPS), 0 = padding.
# Features test ops by name (C3, C1, MP), never by code value, so they do not depend on this table.
PAD = 0
OP_NAMES = {PAD: "pad", **nb101.SEVEN_V_OPS}
OP_CODES = {op: code for code, op in nb101.SEVEN_V_OPS.items()}
IN, C1, C3, MP, OUT = (OP_CODES[op] for op in (nb101.INPUT, nb101.CONV1X1, nb101.CONV3X3, nb101.MAXPOOL3X3,
                                               nb101.OUTPUT))

# NB101 CIFAR-10 network: stacks of (output channels, spatial positions).
STEM_CHANNELS = 128
STACKS = ((128, 32 * 32), (256, 16 * 16), (512, 8 * 8))
CELLS_PER_STACK = 3
NUM_CLASSES = 10
_IU = np.triu_indices(V, 1)
# work that size_counts splits by op kind, in total and per stack
STACK_KINDS = ("flops_conv3x3", "flops_conv1x1", "flops_proj", "flops_pool", "activations")
STACK_COLUMNS = [f"log_{k}_stack{s}" for s in range(len(STACKS)) for k in STACK_KINDS]


@dataclass(frozen=True)
class CellBatch:
    """Pruned NB101 cells as padded arrays: ``adjacency`` (N, 7, 7) uint8, ``ops`` (N, 7) int8."""

    adjacency: np.ndarray
    ops: np.ndarray

    def __len__(self) -> int:
        return len(self.ops)

    @classmethod
    def from_cells(cls, cells: Iterable[object]) -> CellBatch:
        """From Cells, ``(matrix, ops)`` pairs or ``{"matrix", "ops"}`` dicts; validates and prunes each.

        Raises the codec's InvalidArchitecture for an invalid cell.
        """
        mats, opss = [], []
        for cell in cells:
            pruned = nb101.as_cell(cell).pruned()
            m, o = _pad(pruned)
            mats.append(m)
            opss.append(o)
        if not mats:
            return cls(np.zeros((0, V, V), np.uint8), np.zeros((0, V), np.int8))
        return cls(np.stack(mats), np.stack(opss))

    @classmethod
    def from_arrays(cls, adjacency: np.ndarray, ops: np.ndarray) -> CellBatch:
        """From padded arrays (as this class holds them); checks every rule, vectorised.

        Raises InvalidArchitecture naming the rule and the first offending row.
        """
        adjacency = np.asarray(adjacency)
        ops = np.asarray(ops)
        if adjacency.ndim != 3 or adjacency.shape[1:] != (V, V) or ops.shape != (len(adjacency), V):
            raise InvalidArchitecture("shape", f"expected (N, 7, 7) adjacency and (N, 7) ops, got "
                                               f"{adjacency.shape} and {ops.shape}")
        checks = [
            ("non-binary", ~np.isin(adjacency, (0, 1)).all(axis=(1, 2)), "adjacency entries must be 0 or 1"),
            ("not-upper-triangular", np.tril(adjacency).any(axis=(1, 2)), "edges must point forwards"),
            ("first-op", ops[:, 0] != IN, "vertex 0 must be the input"),
            ("last-op", ops[:, -1] != OUT, "vertex 6 must be the output (padding goes before it)"),
            ("unknown-op", ~np.isin(ops[:, 1:-1], (PAD, C3, C1, MP)).all(axis=1),
             f"interior op codes must be {PAD} (padding), {C1} (conv1x1), {C3} (conv3x3) or {MP} (maxpool)"),
            ("too-many-edges", adjacency.sum(axis=(1, 2)) > nb101.MAX_EDGES, f"at most {nb101.MAX_EDGES} edges"),
        ]
        adjacency = adjacency.astype(np.uint8)
        ops = ops.astype(np.int8)
        on_path = _on_path(adjacency)
        real = ops != PAD
        checks += [
            ("padding-edge", ((adjacency.any(axis=2) | adjacency.any(axis=1)) & ~real).any(axis=1),
             "a padding vertex has edges"),
            ("disconnected", (real & ~on_path).any(axis=1), "a vertex lies on no input-output path (prune first)"),
            ("padding-order", (np.diff(real[:, 1:-1].astype(np.int8), axis=1) > 0).any(axis=1),
             "padding vertices must follow the interior vertices"),
        ]
        for rule, bad, detail in checks:
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise InvalidArchitecture(rule, f"{detail} (row {row} of the batch)",
                                          _describe(adjacency[row], ops[row]))
        return cls(adjacency, ops)

    def cells(self) -> list[nb101.Cell]:
        """The codec Cells of this batch (padding removed)."""
        out = []
        for m, o in zip(self.adjacency, self.ops):
            keep = np.flatnonzero(o != PAD)
            out.append(nb101.Cell(m[np.ix_(keep, keep)].tolist(), [OP_NAMES[int(c)] for c in o[keep]]))
        return out

    def keys(self) -> list[str]:
        """Module hash of every cell, vectorised (``nb101_all.module_hashes``; the codec's
        ``module_hash`` for a handful of cells)."""
        if len(self) < 64:
            return [nb101.module_hash(c) for c in self.cells()]
        from .nb101_all import module_hashes  # imports this module

        return module_hashes(self).astype(str).tolist()


def _pad(cell: nb101.Cell) -> tuple[np.ndarray, np.ndarray]:
    m, ops = nb101.pad(cell, V)
    o = np.array([OP_CODES[op] for op in ops], np.int8)
    o[cell.num_vertices - 1 : V - 1] = PAD  # the inserted vertices are padding here, not conv3x3
    return m.astype(np.uint8), o


def _describe(m: np.ndarray, o: np.ndarray) -> str:
    return "".join(map(str, m.ravel().tolist())) + ":" + ",".join(OP_NAMES.get(int(c), f"code{int(c)}") for c in o)


def _on_path(adj: np.ndarray) -> np.ndarray:
    """(N, 7) bool: vertex lies on some input→output path."""
    n = len(adj)
    fwd = np.zeros((n, V), bool)
    fwd[:, 0] = True
    for v in range(1, V):
        fwd[:, v] = (fwd[:, :v] & adj[:, :v, v].astype(bool)).any(axis=1)
    back = np.zeros((n, V), bool)
    back[:, V - 1] = True
    for v in range(V - 2, -1, -1):
        back[:, v] = (back[:, v + 1:] & adj[:, v, v + 1:].astype(bool)).any(axis=1)
    return fwd & back


# ----------------------------------------------------------------------------- channels and counts


def vertex_channels(adj: np.ndarray, out_channels: int) -> np.ndarray:
    """(N, 7) channels of every interior vertex, as NAS-Bench-101's ``compute_vertex_channels``.

    Vertex 0 and 6 are left 0 (they carry the cell's input/output channels); padding vertices 0.
    """
    adj = adj.astype(np.int64)
    feeds_out = adj[:, 1:V - 1, V - 1]  # (N, 5)
    fan_in = feeds_out.sum(axis=1)
    safe = np.maximum(fan_in, 1)
    base, extra = out_channels // safe, out_channels % safe
    rank = np.cumsum(feeds_out, axis=1) - 1
    ch = np.zeros(adj.shape[:2], np.int64)
    ch[:, 1:V - 1] = feeds_out * (base[:, None] + (rank < extra[:, None]))
    for v in range(V - 3, 0, -1):
        succ = (adj[:, v, v + 1:V - 1] * ch[:, v + 1:V - 1]).max(axis=1)
        ch[:, v] = np.where(feeds_out[:, v - 1] == 1, ch[:, v], succ)
    return ch


def _graph_codes(adj: np.ndarray) -> np.ndarray:
    """One int per adjacency (its 21 upper-triangular bits)."""
    bits = adj[:, _IU[0], _IU[1]].astype(np.uint32)
    return bits @ (np.uint32(1) << np.arange(len(_IU[0]), dtype=np.uint32))


def _per_graph(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique graphs of a batch: (their adjacencies, channels (U, stacks, 7), inverse index).

    A batch of 423k cells has only a few thousand distinct graphs; everything that depends on the
    graph alone is computed once per graph and gathered.
    """
    _, first, inverse = np.unique(_graph_codes(adj), return_index=True, return_inverse=True)
    graphs = adj[first].astype(np.int64)
    ch = np.stack([vertex_channels(graphs, c_out) for c_out, _ in STACKS], axis=1)
    ch[:, :, V - 1] = [c for c, _ in STACKS]
    return graphs, ch, inverse.ravel()


def size_counts(batch: CellBatch) -> dict[str, np.ndarray]:
    """Params and FLOPs (MACs) of the NB101 CIFAR-10 network of every cell, split by op kind.

    Keys: params, flops, flops_conv3x3, flops_conv1x1, flops_proj (1x1 projections of the cell
    input), flops_pool (cell max-pools), activations (interior vertex outputs, elements per image),
    and ``<kind>_stack<s>`` for each of the last five per stack (the three stacks differ in spatial
    size, so GPU time is not the same function of each stack's work).
    """
    graphs, ch_u, inverse = _per_graph(batch.adjacency)
    ops = batch.ops
    n = len(batch)
    is3, is1, ispool = (ops == C3), (ops == C1), (ops == MP)
    conv_ops = is3 | is1
    params = np.full(n, 9 * 3 * STEM_CHANNELS + 2 * STEM_CHANNELS, np.int64)
    per_stack: dict[str, np.ndarray] = {}
    fixed_flops = 32 * 32 * 9 * 3 * STEM_CHANNELS  # stem
    c_in = STEM_CHANNELS
    # the cell input is 1x1-projected to each vertex it feeds: per graph, total channels projected
    proj_u = (graphs[:, None, 0, 1:] * ch_u[:, :, 1:]).sum(axis=2)  # (U, stacks)
    for s, (c_out, hw) in enumerate(STACKS):
        if c_out != STEM_CHANNELS:
            fixed_flops += hw * c_in * 4  # 2x2 max-pool before the stack, on c_in channels
        ch = ch_u[inverse, s]
        sq = ch * ch
        # every cell of a stack is the same but the first, whose input has c_in channels
        cin_sum = c_in + (CELLS_PER_STACK - 1) * c_out
        proj_ch = proj_u[inverse, s]
        sq3, sq1 = (sq * is3).sum(axis=1), (sq * is1).sum(axis=1)
        params += (cin_sum + 2 * CELLS_PER_STACK) * proj_ch
        params += CELLS_PER_STACK * (9 * sq3 + sq1 + 2 * (ch * conv_ops).sum(axis=1))
        per_stack[f"flops_conv3x3_stack{s}"] = (CELLS_PER_STACK * hw * 9 * sq3).astype(np.float64)
        per_stack[f"flops_conv1x1_stack{s}"] = (CELLS_PER_STACK * hw * sq1).astype(np.float64)
        per_stack[f"flops_proj_stack{s}"] = (hw * cin_sum * proj_ch).astype(np.float64)
        per_stack[f"flops_pool_stack{s}"] = (CELLS_PER_STACK * hw * 9 * (ch * ispool).sum(axis=1)).astype(np.float64)
        per_stack[f"activations_stack{s}"] = (CELLS_PER_STACK * hw * (ch_u[inverse, s, 1:V - 1].sum(axis=1)
                                                                      + proj_ch)).astype(np.float64)
        c_in = c_out
    params += c_in * NUM_CLASSES + NUM_CLASSES
    fixed_flops += c_in * NUM_CLASSES
    totals = {k: sum(per_stack[f"{k}_stack{s}"] for s in range(len(STACKS))) for k in STACK_KINDS}
    flops = fixed_flops + sum(v for k, v in totals.items() if k.startswith("flops_"))
    return {"params": params, "flops": flops, **totals, **per_stack}


def _longest_paths(adj: np.ndarray) -> np.ndarray:
    """(N, 7) longest-path depth of every vertex from the input (−1 for unreachable/padding)."""
    n = len(adj)
    depth = np.full((n, V), -1, np.int64)
    depth[:, 0] = 0
    for v in range(1, V):
        cand = np.where(adj[:, :v, v].astype(bool) & (depth[:, :v] >= 0), depth[:, :v] + 1, -1)
        depth[:, v] = cand.max(axis=1)
    return depth


def nb101_feature_names() -> list[str]:
    """Column names of :func:`nb101_features`."""
    return ["vertices", "edges", "input_out_degree", "output_in_degree", "input_to_output", "depth", "max_width",
            "n_conv3x3", "n_conv1x1", "n_maxpool", "log_params", "log_flops", "log_flops_conv3x3",
            "log_flops_conv1x1", "log_flops_proj", "log_flops_pool", "log_activations", "conv_layers",
            *STACK_COLUMNS]


def cost_terms(names: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """Columns of a feature array (named ``names``; default :func:`nb101_feature_names`) that add up
    to a network's training cost, and which of them hold logs (``log1p`` or ``log``; they are
    ``expm1``-ed back to amounts, the constant offset being absorbed by the intercept).

    NB101's columns: every stack's work per op kind, the op counts (kernel launches) and the edges
    (concatenations and additions). Any other feature set: every column, ``log_*`` ones as logs
    (NB201: the per-edge op one-hots, which add up exactly like the network's cells, and params
    and FLOPs).
    """
    names = nb101_feature_names() if names is None else list(names)
    if names == nb101_feature_names():
        linear = ["n_conv3x3", "n_conv1x1", "n_maxpool", "input_out_degree", "edges", *STACK_COLUMNS]
        return [names.index(n) for n in linear], [names.index(n) for n in STACK_COLUMNS]
    return list(range(len(names))), [i for i, n in enumerate(names) if n.startswith("log_")]


def _graph_features(graphs: np.ndarray) -> np.ndarray:
    """(U, 7) shape statistics of each graph alone."""
    depth = _longest_paths(graphs)
    real = graphs.any(axis=1) | graphs.any(axis=2)  # padding vertices have no edges
    level_counts = np.stack([((depth == d) & real).sum(axis=1) for d in range(1, V - 1)], axis=1)
    return np.stack([
        real.sum(axis=1), graphs.sum(axis=(1, 2)), graphs[:, 0, :].sum(axis=1), graphs[:, :, V - 1].sum(axis=1),
        graphs[:, 0, V - 1], depth[:, V - 1], level_counts.max(axis=1)], axis=1).astype(np.float32)


def nb101_features(batch: CellBatch) -> np.ndarray:
    """(N, 33) float32 features; names from :func:`nb101_feature_names`.

    No feature uses vertex positions (graph statistics, op counts, analytic params/FLOPs per op
    kind), so two numberings of one cell (one module hash) get the same features up to the few
    channels NB101 itself assigns by vertex index. Many cells share a feature row (a 423k batch
    has ~20k distinct rows), which the predictor exploits.
    """
    ops = batch.ops
    n = len(batch)
    graphs, _, inverse = _per_graph(batch.adjacency)
    counts = size_counts(batch)
    n3, n1, npool = (ops == C3).sum(axis=1), (ops == C1).sum(axis=1), (ops == MP).sum(axis=1)
    out = np.empty((n, len(nb101_feature_names())), np.float32)
    out[:, :7] = _graph_features(graphs)[inverse]
    out[:, 7], out[:, 8], out[:, 9] = n3, n1, npool
    out[:, 10] = np.log(counts["params"])
    out[:, 11] = np.log(counts["flops"])
    for j, name in enumerate(STACK_KINDS):
        out[:, 12 + j] = np.log1p(counts[name])
    out[:, 17] = (n3 + n1 + graphs[inverse, 0, 1:].sum(axis=1)) * CELLS_PER_STACK * len(STACKS)
    for j, name in enumerate(STACK_COLUMNS):
        out[:, 18 + j] = np.log1p(counts[name[len("log_"):]])
    return out


# Path encoding: every input->output path of a cell named by the ops it passes through, in order
# (0 to 5 interior ops, each one of _PATH_OPS): 1 + 3 + ... + 3^5 = 364 possible paths.
_PATH_OPS = (C3, C1, MP)
_PATH_LENGTHS = V - 1
_PATH_OFFSETS = np.cumsum([0] + [len(_PATH_OPS) ** n for n in range(_PATH_LENGTHS)])  # first index per length


def _path_extensions() -> np.ndarray:
    """(364, 3): the index of sequence s with op k appended (-1: s is of the longest length)."""
    longer = np.full((int(_PATH_OFFSETS[-1]), len(_PATH_OPS)), -1)
    for length in range(_PATH_LENGTHS - 1):
        for i in range(len(_PATH_OPS) ** length):
            for k in range(len(_PATH_OPS)):
                longer[_PATH_OFFSETS[length] + i, k] = _PATH_OFFSETS[length + 1] + i + k * len(_PATH_OPS) ** length
    return longer


_PATH_EXTENSIONS = _path_extensions()


def nb101_path_names() -> list[str]:
    """Column names of :func:`nb101_path_encoding`: ``path:`` and the interior ops in order
    (``path:`` alone: input wired straight to output)."""
    names = []
    for n in range(_PATH_LENGTHS):
        for i in range(len(_PATH_OPS) ** n):
            digits = [(i // len(_PATH_OPS) ** j) % len(_PATH_OPS) for j in range(n)]
            names.append("path:" + ",".join(OP_NAMES[int(_PATH_OPS[d])] for d in digits))
    return names


def nb101_path_encoding(batch: CellBatch) -> np.ndarray:
    """(N, 364) float32: 1 where the cell has an input->output path through that op sequence
    (BANANAS' path encoding, White et al. 2021). Unlike the shape statistics of
    :func:`nb101_features`, it says which ops the data flows through in which order, so two
    cells that share paths are close under a distance (a GP kernel): on EC-NAS 5V it lifts the
    optimizers' GP's accuracy ranking (tests/test_search_multifidelity.py)."""
    n = len(batch)
    # paths[:, v, s]: whether some path from the input reaches vertex v through sequence s (the
    # ops of the vertices after the input, up to and including v's own op); vertices in order
    paths = np.zeros((n, V, int(_PATH_OFFSETS[-1])), bool)
    paths[:, 0, 0] = True
    longer = _PATH_EXTENSIONS
    adjacency = batch.adjacency.astype(bool)
    for v in range(1, V):
        arriving = (adjacency[:, :v, v, None] & paths[:, :v]).any(axis=1)  # (N, sequences)
        if v == V - 1:  # the output vertex adds no op
            paths[:, v] = arriving
            continue
        for k, op in enumerate(_PATH_OPS):
            rows = batch.ops[:, v] == op
            if rows.any():
                source = np.flatnonzero(longer[:, k] >= 0)
                paths[np.ix_(rows, [v], longer[source, k])] = arriving[rows][:, None, source]
    return paths[:, V - 1].astype(np.float32)


def full_graphs_7v() -> np.ndarray:
    """(4793, 7, 7) uint8: every 7-vertex upper-triangular graph with at most 9 edges whose vertices
    all lie on an input→output path (the graphs of NB101's 7-vertex cells), found vectorised."""
    masks = np.arange(1 << len(_IU[0]), dtype=np.uint32)
    bits = (masks[:, None] >> np.arange(len(_IU[0]), dtype=np.uint32)) & 1
    bits = bits[bits.sum(axis=1) <= nb101.MAX_EDGES].astype(np.uint8)
    adj = np.zeros((len(bits), V, V), np.uint8)
    adj[:, _IU[0], _IU[1]] = bits
    return adj[_on_path(adj).all(axis=1)]


def random_cell_batch(size: int, seed: int = 0) -> CellBatch:
    """``size`` random valid pruned 7-vertex NB101 cells (repeats possible): a random graph of
    :func:`full_graphs_7v` with random ops. The same shape of work as predicting every NB101 cell."""
    rng = np.random.default_rng(seed)
    graphs = full_graphs_7v()
    adj = graphs[rng.integers(0, len(graphs), size)]
    ops = np.empty((size, V), np.int8)
    ops[:, 0], ops[:, -1] = IN, OUT
    ops[:, 1:-1] = rng.choice(np.array([C3, C1, MP], np.int8), size=(size, V - 2))
    return CellBatch(adj, ops)


# ----------------------------------------------------------------------------- hash -> cell


class CellIndex:
    """Module hash → Cell for the cells this project can name without the full NB101 enumeration:
    every cell with at most 5 vertices (all of ecnas-4v/5v) plus any cells added (e.g. 7v_data.pt's)."""

    def __init__(self, cells: Iterable[nb101.Cell] = (), missing: str = ""):
        self._cells: dict[str, nb101.Cell] = {}
        self.missing = missing  # why some cells it would normally know are not here (said on a miss)
        self.add(cells)

    def add(self, cells: Iterable[nb101.Cell]) -> None:
        for cell in cells:
            self._cells[nb101.module_hash(cell)] = cell.pruned()

    def __contains__(self, key: str) -> bool:
        return key in self._cells

    def __len__(self) -> int:
        return len(self._cells)

    def cell(self, key: str) -> nb101.Cell:
        try:
            return self._cells[key.lower()]
        except KeyError:
            raise UnknownName("NAS-Bench-101 module hash", key, (),
                              context=f"among the {len(self)} cells this index knows (every cell of <=5 "
                                      "vertices and the 7-vertex cells of 7v_data.pt); pass the cell itself "
                                      "(matrix, ops) instead (every cell's hash with its ADJ:OPS: `ecnas "
                                      f"surrogate predict --all --out DIR`){self.missing}") from None

    def batch(self, keys: Sequence[str]) -> CellBatch:
        return CellBatch.from_cells(self.cell(k) for k in keys)


_DEFAULT_INDEX: CellIndex | None = None


def cells_7v(path: object) -> list[nb101.Cell]:
    """The 4,310 cells of EC-NAS's ``7v_data.pt``, read and checked by the importer."""
    from ecnas_plugin.importers.ecnas import read_7v_arrays

    return read_7v_arrays(path)[0]


def default_cell_index() -> CellIndex:
    """Every ≤5-vertex cell, plus 7v_data.pt's cells where that file is in the mirror or cache."""
    global _DEFAULT_INDEX
    if _DEFAULT_INDEX is None:
        from ecnas_plugin import datasets
        from ecnas_plugin.errors import EcnasError
        from ecnas_plugin.registry import get_registry

        index = CellIndex(nb101.cells_by_hash(5).values())
        try:
            index.add(cells_7v(datasets.resolve(get_registry().data_file("7v_data.pt"), download=False)))
        except EcnasError as exc:
            # not available offline (a cached ecnas-7v table does not hold its cells): hashes of
            # 7v cells then need the cell itself, and a miss says why
            index.missing = f"; the 7-vertex cells are not known here: {exc}"
        _DEFAULT_INDEX = index
    return _DEFAULT_INDEX


# ----------------------------------------------------------------------------- NAS-Bench-201

# The codec's tables: op indices below index nasbench201.OPS, edges are in arch-string order.
NB201_OPS = nb201.OPS
NB201_EDGES = nb201.STRING_EDGES
_NB201_CONV3, _NB201_CONV1, _NB201_POOL = (NB201_OPS.index(op) for op in ("nor_conv_3x3", "nor_conv_1x1",
                                                                             "avg_pool_3x3"))


def nb201_counts(op_index: np.ndarray, C: int = 16, N: int = 5, num_classes: int = 10) -> dict[str, np.ndarray]:
    """Params and FLOPs (MACs, pooling counted) of NB201's CIFAR network for (M, 6) op indices
    into ``NB201_OPS`` (the codec's ``nasbench201.OPS``); the layout of ``networks.build_nb201``."""
    op_index = np.asarray(op_index)
    n3 = (op_index == _NB201_CONV3).sum(axis=1)
    n1 = (op_index == _NB201_CONV1).sum(axis=1)
    npool = (op_index == _NB201_POOL).sum(axis=1)
    params = np.full(len(op_index), 9 * 3 * C + 2 * C, np.int64)
    flops = np.full(len(op_index), 32 * 32 * 9 * 3 * C, np.float64)
    ch, hw = C, 32 * 32
    for stage in range(3):
        if stage > 0:
            out, hw_out = ch * 2, hw // 4
            params += 9 * ch * out + 2 * out + 9 * out * out + 2 * out + ch * out
            flops += hw_out * (9 * ch * out + 9 * out * out + ch * out + 4 * ch)
            ch, hw = out, hw_out
        params += N * (n3 * (9 * ch * ch + 2 * ch) + n1 * (ch * ch + 2 * ch))
        flops += N * hw * (n3 * 9 * ch * ch + n1 * ch * ch + npool * 9 * ch)
    params += 2 * ch + ch * num_classes + num_classes
    flops += ch * num_classes
    return {"params": params, "flops": flops}


def _nb201_ops(arch: str | Sequence[str]) -> tuple[str, ...]:
    """The 6 edge ops (string order) of an arch string or a sequence of op names, validated."""
    return nb201.parse_arch_str(arch if isinstance(arch, str) else nb201.to_arch_str(arch))


def nb201_features(archs: Iterable[str | Sequence[str]]) -> np.ndarray:
    """(M, 6*5 + 2) float32: one-hot of each edge's op (``NB201_OPS`` order), then log params and
    log FLOPs. Raises the codec's InvalidArchitecture for a bad arch."""
    idx = np.array([[NB201_OPS.index(op) for op in _nb201_ops(a)] for a in archs], dtype=np.int64).reshape(-1, 6)
    onehot = (idx[:, :, None] == np.arange(len(NB201_OPS))).reshape(len(idx), len(NB201_EDGES) * len(NB201_OPS))
    counts = nb201_counts(idx)
    return np.concatenate([onehot, np.log(counts["params"])[:, None], np.log(counts["flops"])[:, None]],
                          axis=1).astype(np.float32)


def nb201_feature_names() -> list[str]:
    """Column names of :func:`nb201_features`."""
    return [f"edge{e}_{op}" for e in range(len(NB201_EDGES)) for op in NB201_OPS] + ["log_params", "log_flops"]


# ----------------------------------------------------------------------------- any space


class SpaceFeatures:
    """A search space's surrogate features, as the predictor uses them.

    The generic path works for every space with the ``features`` capability: table keys are
    decoded with ``space.decode``, architectures validated with ``space.arch`` and keyed with
    ``space.canonical_key``, and ``space.features(archs)`` gives the array and its column names.
    """

    def __init__(self, space):
        self.space = space

    def names(self) -> list[str] | None:
        """The column names, where the space gives them without an architecture (``features([])``);
        None when it cannot (they are then checked on the first featurisation)."""
        try:
            return list(self.space.features([])[1])
        except Exception:  # a third-party space need not accept an empty list
            return None

    def label(self, names: Sequence[str]) -> str:
        """The feature set's version label: the space's own ``feature_set`` where it declares one,
        this module's label for a feature set it defines, else a digest of the column names."""
        declared = getattr(self.space, "feature_set", None)
        if declared:
            return str(declared)
        known = _DEFINED_SETS.get(tuple(names))
        if known:
            return known
        import hashlib

        return f"{self.space.name}-" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]

    def _features(self, archs: list[object]) -> tuple[np.ndarray, list[str]]:
        X, names = self.space.features(archs)
        X, names = np.asarray(X, np.float32), list(names)
        if X.shape != (len(archs), len(names)):
            raise ValueError(f"space {self.space.name!r}: features() gave an array of shape {X.shape} for "
                             f"{len(archs)} architectures and {len(names)} names")
        return X, names

    def of_keys(self, keys: Sequence[str], index: CellIndex | None = None) -> tuple[np.ndarray, list[str]]:
        """Features of the architectures a table's keys name."""
        return self._features([self.space.decode(k) for k in keys])

    def of_archs(self, archs: Iterable[object], index: CellIndex | None = None
                 ) -> tuple[list[str], np.ndarray, list[str]]:
        """(canonical keys, features, names) of architectures in any form the space accepts."""
        items = [self.space.arch(a) for a in archs]
        X, names = self._features(items)
        return [self.space.canonical_key(a) for a in items], X, names

    def whole_space_table(self, predictor, name: str = "", workers: int | None = None):
        """Every configuration of the space, predicted, as an EnergyTable (``source = predicted``,
        σ, ``arch_text``): through the space's enumeration (its ``default_limits`` do not apply:
        the whole space is asked for)."""
        from ecnas_plugin.table import EnergyTable, Manifest

        self.space.require("enumerate", flow="ecnas surrogate predict --all")
        archs = list(self.space.enumerate())
        frame = predictor.predict_energy(archs)
        frame["arch_text"] = [self.space.describe(a) for a in archs]
        c = predictor.context
        learnt = predictor.training.get("energy_source", "measured")
        manifest = Manifest(
            name=name or f"{c.space}-predicted-{c.campaign}", space=c.space,
            description=(f"every {c.space} configuration ({len(frame):,}): training energy PREDICTED (not measured) "
                         f"by the {predictor.model.name} surrogate trained on {learnt} cells of {c.campaign}"),
            tool=f"ecnas-plugin {predictor.model.name} surrogate (predicted)", pue=predictor.training.get("pue"),
            components=tuple(predictor.training.get("components", ())), license="CC-BY-4.0", citation="",
            notes="source = predicted in every row; train_energy_sd_kwh is the surrogate's σ")
        return EnergyTable(frame, manifest)


class Nb101Features(SpaceFeatures):
    """NB101's fast path: cells as a :class:`CellBatch` (vectorised features for 423k cells), and
    module hashes resolved through a :class:`CellIndex`, which also knows 7v_data.pt's 7-vertex
    cells (the codec's ``decode`` knows cells of at most 5 vertices)."""

    def names(self) -> list[str]:
        return nb101_feature_names()

    def label(self, names: Sequence[str]) -> str:
        return getattr(self.space, "feature_set", None) or FEATURE_SET

    def batch(self, archs: Iterable[object] | CellBatch, index: CellIndex | None = None) -> CellBatch:
        """A CellBatch of cells in any form (hashes through ``index``, default every known cell)."""
        if isinstance(archs, CellBatch):
            return archs
        cells = []
        for a in archs:
            if isinstance(a, str):
                key = self.space.canonical_key(a)  # validates the hash form
                cells.append((index or default_cell_index()).cell(key))
            else:
                cells.append(a)
        return CellBatch.from_cells(cells)

    def of_keys(self, keys: Sequence[str], index: CellIndex | None = None) -> tuple[np.ndarray, list[str]]:
        return nb101_features((index or default_cell_index()).batch(list(keys))), nb101_feature_names()

    def of_archs(self, archs: Iterable[object] | CellBatch, index: CellIndex | None = None
                 ) -> tuple[list[str], np.ndarray, list[str]]:
        batch = self.batch(archs, index)
        return batch.keys(), nb101_features(batch), nb101_feature_names()

    def whole_space_table(self, predictor, name: str = "", workers: int | None = None):
        """All 423,624 cells, by array operations (nb101_all): seconds, not the enumeration's minutes."""
        from .nb101_all import predicted_table

        return predicted_table(predictor, name=name, workers=workers)


def space_features(space) -> SpaceFeatures:
    """How the surrogates featurise ``space`` (a SearchSpace with the ``features`` capability)."""
    return Nb101Features(space) if isinstance(space, nb101.NasBench101) else SpaceFeatures(space)


_DEFINED_SETS = {tuple(nb101_feature_names()): FEATURE_SET, tuple(nb201_feature_names()): NB201_FEATURE_SET}
