"""The whole NAS-Bench-101 space as arrays: every one of its 423,624 cells and their module hashes,
vectorised, and a predicted EnergyTable of all of them.

The codec (``adapters.nasbench101``) enumerates and hashes one cell at a time in Python, which is
right for a few thousand cells and minutes for the whole space. Here both are array operations:

* **Enumeration** (:func:`space_cells`). Two labelled cells are the same NB101 cell when a
  permutation of their interior vertices maps one onto the other. For every vertex count n, the
  graphs whose vertices all lie on an input→output path (≤ 9 edges) are listed in the codec's
  order; each graph's images under the (n-2)! interior permutations find its class (the first
  graph of the class in that order is its representative) and the representative's automorphisms.
  A cell of the representative graph is kept when its op string is the smallest in its orbit under
  those automorphisms. So each cell is the one the codec's enumeration keeps (the first it meets),
  and nothing is generated only to be thrown away as an isomorphic duplicate.
* **Module hash** (:func:`module_hashes`). NB101's fingerprint is n rounds of per-vertex MD5s
  over the sorted hashes of a vertex's predecessors and successors, then an MD5 of the sorted vertex
  hashes. Vertex hashes are held as ranks in a sorted table of the round's distinct digests (rank
  order is hex order, so sorting ranks sorts the hex strings, as the codec does); each round hashes
  only the distinct (own, predecessors, successors) keys, built as byte arrays, with hashlib.
  Isomorphic duplicates (any batch) share every key and cost nothing extra. The result is the
  codec's ``module_hash`` byte for byte (checked in tests/test_surrogates_all.py).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ecnas_plugin.adapters import nasbench101 as nb101

from . import features as F

V = nb101.MAX_VERTICES
ALL_NB101_CELLS = 423_624  # NAS-Bench-101's count of unique cells (module hashes)
# The codec's hash labels: input -1, output -2, interior ops their index in nasbench101.OPS.
_LABEL_OF_CODE = np.full(max(nb101.SEVEN_V_OPS) + 1, -9, np.int64)
for _code, _op in nb101.SEVEN_V_OPS.items():
    _LABEL_OF_CODE[_code] = {nb101.INPUT: -1, nb101.OUTPUT: -2}.get(_op, nb101.OPS.index(_op) if _op in nb101.OPS else -9)
# CellBatch op code of each interior op index of nasbench101.OPS (the product order of the enumeration)
_CODE_OF_OP = np.array([F.OP_CODES[op] for op in nb101.OPS], np.int8)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_BIG = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------- hashing


def _md5_rows(buf: np.ndarray) -> np.ndarray:
    """(U, 16) uint8 MD5 digests of the rows of a (U, L) uint8 array."""
    rows, width = buf.shape
    data = memoryview(np.ascontiguousarray(buf).tobytes())
    md5 = hashlib.md5
    digests = b"".join([md5(data[i:i + width]).digest() for i in range(0, rows * width, width)])
    return np.frombuffer(digests, np.uint8).reshape(rows, 16)


def _hex(digests: np.ndarray) -> np.ndarray:
    """(U, 32) uint8 lowercase hex of (U, 16) digests."""
    out = np.empty((len(digests), 32), np.uint8)
    out[:, 0::2] = _HEX[digests >> 4]
    out[:, 1::2] = _HEX[digests & 15]
    return out


def _ranked(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank of every digest in hex order, (U, 32) hex table in that order)."""
    words = digests.reshape(-1, 2, 8)[:, :, ::-1].copy().view(np.uint64).reshape(-1, 2)  # big-endian halves
    order = np.lexsort((words[:, 1], words[:, 0]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank, _hex(digests[order])


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct row, inverse) of a 2-d int64 array; exact.

    Rows are first told apart by a 64-bit mix of their values (one sort of integers, much faster
    than sorting rows); every row is then compared with its group's representative, and only if
    two different rows shared a mix does it fall back to sorting the rows themselves.
    """
    mix = np.zeros(len(keys), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            mix = (mix ^ keys[:, j].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15 + 2 * j)
            mix ^= mix >> np.uint64(29)
    _, first, inverse = np.unique(mix, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not (keys[first][inverse] == keys).all():  # a collision of the mix: sort the rows exactly
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return first, inverse


def _sorted_neighbours(adj: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """(N, n, n) ranks of each vertex's neighbours along the last axis of ``adj`` (adj[c, v, u]:
    u is a neighbour of v), sorted, absent ones as _BIG at the end."""
    return np.sort(np.where(adj.astype(bool), rank[:, None, :], _BIG), axis=2)


def _messages(parts: list[np.ndarray], seps: list[bytes]) -> np.ndarray:
    """(U, L) uint8: the hex/literal pieces of each row concatenated (all rows the same shape)."""
    pieces = []
    for part, sep in zip(parts, seps):
        if sep:
            pieces.append(np.broadcast_to(np.frombuffer(sep, np.uint8), (len(parts[0]), len(sep))))
        pieces.append(part)
    return np.concatenate(pieces, axis=1)


def _wl_hashes(adj: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 32) uint8 hex module hashes of pruned cells of one vertex count n: ``adj`` (N, n, n)
    upper-triangular, ``labels`` (N, n) the codec's hash labels."""
    n_cells, n = labels.shape
    adj = adj.astype(bool)
    succ_t = adj  # succ_t[c, v, u]: v -> u
    pred_t = adj.transpose(0, 2, 1)  # pred_t[c, v, u]: u -> v
    out_deg, in_deg = succ_t.sum(axis=2), pred_t.sum(axis=2)
    # round 0: md5(str((out degree, in degree, label))), over the few distinct triples
    triples = np.stack([out_deg, in_deg, labels], axis=2).reshape(-1, 3).astype(np.int64)
    first, inverse = _unique_rows(triples)
    text = [str(tuple(int(x) for x in t)).encode() for t in triples[first]]
    digests = np.frombuffer(b"".join(hashlib.md5(t).digest() for t in text), np.uint8).reshape(-1, 16)
    rank_u, table = _ranked(digests)
    rank = rank_u[inverse].reshape(n_cells, n)
    for _ in range(n):
        preds = _sorted_neighbours(pred_t, rank)
        succs = _sorted_neighbours(succ_t, rank)
        keys = np.concatenate([preds, succs, rank[:, :, None]], axis=2).reshape(n_cells * n, 2 * n + 1)
        first, inverse = _unique_rows(keys)
        uniq = keys[first]
        k_pred = (uniq[:, :n] != _BIG).sum(axis=1)
        k_succ = (uniq[:, n:2 * n] != _BIG).sum(axis=1)
        digests = np.empty((len(uniq), 16), np.uint8)
        for kp, ks in set(zip(k_pred.tolist(), k_succ.tolist())):
            rows = np.flatnonzero((k_pred == kp) & (k_succ == ks))
            u = uniq[rows]
            ids = np.concatenate([u[:, :kp], u[:, n:n + ks], u[:, 2 * n:]], axis=1)
            hexes = table[ids]  # (R, kp + ks + 1, 32)
            parts = [hexes[:, :kp].reshape(len(rows), -1), hexes[:, kp:kp + ks].reshape(len(rows), -1),
                     hexes[:, -1]]
            digests[rows] = _md5_rows(_messages(parts, [b"", b"|", b"|"]))
        rank_u, table = _ranked(digests)
        rank = rank_u[inverse].reshape(n_cells, n)
    # md5(str(sorted(hashes))): "['h0', 'h1', ...]"
    cell_keys = np.sort(rank, axis=1)
    first, inverse = _unique_rows(cell_keys)
    hexes = table[cell_keys[first]]  # (U, n, 32)
    quote = np.frombuffer(b"'", np.uint8)
    parts, seps = [], []
    for v in range(n):
        parts += [hexes[:, v], np.broadcast_to(quote, (len(first), 1))]
        seps += [b"['" if v == 0 else b", '", b""]
    buf = np.concatenate([_messages(parts, seps), np.broadcast_to(np.frombuffer(b"]", np.uint8), (len(first), 1))],
                         axis=1)
    return _hex(_md5_rows(buf))[inverse]


def compact(batch: F.CellBatch) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A CellBatch's cells grouped by vertex count n: {n: (rows, (R, n, n) adjacency, (R, n) op codes)}
    with the padding vertices removed (the output vertex last)."""
    real = batch.ops != F.PAD
    counts = real.sum(axis=1)
    out = {}
    for n in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == n)
        keep = np.array([*range(n - 1), V - 1])
        out[n] = (rows, batch.adjacency[rows][:, keep][:, :, keep], batch.ops[rows][:, keep])
    return out


def module_hashes(batch: F.CellBatch) -> np.ndarray:
    """Module hash of every cell of a CellBatch as a (N,) array of 32-character ASCII bytes (``S32``),
    equal to ``nasbench101.module_hash`` of each cell. ``.astype(str)`` gives Python strings."""
    out = np.empty((len(batch), 32), np.uint8)
    for n, (rows, adj, ops) in compact(batch).items():
        out[rows] = _wl_hashes(adj, _LABEL_OF_CODE[ops])
    return out.view("S32").ravel()


# ----------------------------------------------------------------------------- enumeration


def _graphs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks, (G, n, n) uint8 adjacency) of every n-vertex graph of the codec's enumeration, in
    its order: upper-triangular, ≤ 9 edges, every vertex on an input→output path; bit k of a mask
    is the k-th pair of ``np.triu_indices(n, 1)``."""
    iu = np.triu_indices(n, 1)
    masks = np.arange(1 << len(iu[0]), dtype=np.int64)
    bits = ((masks[:, None] >> np.arange(len(iu[0]))) & 1).astype(np.uint8)
    keep = bits.sum(axis=1) <= nb101.MAX_EDGES
    masks, bits = masks[keep], bits[keep]
    adj = np.zeros((len(bits), n, n), np.uint8)
    adj[:, iu[0], iu[1]] = bits
    fwd = np.zeros((len(adj), n), bool)
    fwd[:, 0] = True
    for v in range(1, n):
        fwd[:, v] = (fwd[:, :v] & adj[:, :v, v].astype(bool)).any(axis=1)
    back = np.zeros((len(adj), n), bool)
    back[:, n - 1] = True
    for v in range(n - 2, -1, -1):
        back[:, v] = (back[:, v + 1:] & adj[:, v, v + 1:].astype(bool)).any(axis=1)
    on_path = (fwd & back).all(axis=1)
    return masks[on_path], adj[on_path]


def _representatives(n: int) -> tuple[np.ndarray, np.ndarray]:
    """One labelled cell per isomorphism class of n-vertex cells, in the codec's enumeration order
    (the first of its class the codec meets): ((C, n, n) adjacency, (C, n-2) interior op indices
    into ``nasbench101.OPS``)."""
    masks, adj = _graphs(n)
    inner = n - 2
    if inner == 0:
        return adj, np.zeros((len(adj), 0), np.int64)
    perms = np.array(list(itertools.permutations(range(1, n - 1))), np.int64)  # new position of vertex 1..n-2
    full = np.concatenate([np.zeros((len(perms), 1), np.int64), perms, np.full((len(perms), 1), n - 1)], axis=1)
    inv = np.argsort(full, axis=1)  # inv[p, new] = old
    iu = np.triu_indices(n, 1)
    weights = np.int64(1) << np.arange(len(iu[0]), dtype=np.int64)
    # image of every graph under every permutation: A'[new_i, new_j] = A[inv[new_i], inv[new_j]]
    images = adj[:, inv[:, :, None], inv[:, None, :]]  # (G, P, n, n)
    upper = ~np.tril(images, -1).any(axis=(2, 3)) & ~images[:, :, np.arange(n), np.arange(n)].any(axis=2)
    image_mask = (images[:, :, iu[0], iu[1]].astype(np.int64) * weights).sum(axis=2)
    image_mask = np.where(upper, image_mask, np.iinfo(np.int64).max)
    representative = image_mask.min(axis=1) == masks  # the first graph of its class
    reps = np.flatnonzero(representative)
    base = 3 ** np.arange(inner - 1, -1, -1, dtype=np.int64)  # the first interior op is most significant
    codes = np.arange(3 ** inner, dtype=np.int64)
    ops = (codes[:, None] // base) % 3  # (3^inner, inner), product order
    out_adj, out_ops = [], []
    for g in reps.tolist():
        autos = inv[image_mask[g] == masks[g]][:, 1:-1] - 1  # old interior index at each new position
        # the op string of each automorphic image, as a code; keep the codes smallest in their orbit
        image_codes = (ops[:, autos] * base).sum(axis=2)  # (3^inner, |Aut|)
        keep = image_codes.min(axis=1) == codes
        out_ops.append(ops[keep])
        out_adj.append(np.broadcast_to(adj[g], (int(keep.sum()), n, n)))
    return np.concatenate(out_adj), np.concatenate(out_ops)


@dataclass(frozen=True)
class SpaceCells:
    """Every NAS-Bench-101 cell: ``batch`` (a CellBatch, codec enumeration order) and ``keys``
    (module hashes, ``S32``)."""

    batch: F.CellBatch
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@lru_cache(maxsize=None)
def space_cells(max_vertices: int = V) -> SpaceCells:
    """Every valid NB101 cell of at most ``max_vertices`` vertices, one per module hash, in the order
    and form the codec's ``enumerate_cells`` yields them (423,624 cells for 7). Read-only, cached."""
    if not 2 <= max_vertices <= V:
        raise ValueError(f"max_vertices must be in 2..{V}, got {max_vertices}")
    adjs, opss = [], []
    for n in range(2, max_vertices + 1):
        adj, inner = _representatives(n)
        padded = np.zeros((len(adj), V, V), np.uint8)
        keep = np.array([*range(n - 1), V - 1])
        padded[:, keep[:, None], keep[None, :]] = adj
        ops = np.zeros((len(adj), V), np.int8)
        ops[:, 0], ops[:, -1] = F.IN, F.OUT
        ops[:, 1:n - 1] = _CODE_OF_OP[inner]
        adjs.append(padded)
        opss.append(ops)
    batch = F.CellBatch(np.concatenate(adjs), np.concatenate(opss))
    keys = module_hashes(batch)
    # Different classes with one hash (the fingerprint is not a proof of isomorphism) count once,
    # as in the codec: the first in enumeration order stays.
    _, first = np.unique(keys, return_index=True)
    if len(first) < len(keys):
        first = np.sort(first)
        batch, keys = F.CellBatch(batch.adjacency[first], batch.ops[first]), keys[first]
    for a in (batch.adjacency, batch.ops, keys):
        a.setflags(write=False)
    return SpaceCells(batch, keys)


def _check_count(cells: SpaceCells) -> None:
    if len(cells) != ALL_NB101_CELLS:
        raise AssertionError(f"enumerated {len(cells)} NB101 cells, NAS-Bench-101 has {ALL_NB101_CELLS}")


__all__ = ["ALL_NB101_CELLS", "SpaceCells", "compact", "module_hashes", "space_cells"]
