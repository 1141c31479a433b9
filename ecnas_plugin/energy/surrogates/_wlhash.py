"""NAS-Bench-101's module hash of many cells at once: numpy for the bookkeeping, hashlib for the MD5s.

This module imports only numpy and hashlib, so the worker processes of
:func:`ecnas_plugin.energy.surrogates.nb101_all.module_hashes` start quickly.

The fingerprint (``nasbench101._fingerprint``, NAS-Bench-101's ``hash_module``): every vertex starts
as ``md5(str((out degree, in degree, label)))``; then, n times, each vertex becomes
``md5("".join(sorted(predecessor hashes)) + "|" + "".join(sorted(successor hashes)) + "|" + own)``;
the cell is ``md5(str(sorted(vertex hashes)))``. All strings are 32-character lowercase hex.

Here the hex strings live in uint8 arrays and each round builds its messages as one array per
(in degree, out degree) group. The first rounds see few distinct (own, predecessors, successors)
keys, so they hash each distinct key once (vertex hashes are then ranks in the round's sorted table
of digests: sorting ranks sorts the hex strings). Later rounds hash every vertex: neighbours are
ordered by the first 61 bits of their digests with the neighbour's index in the low 3 bits; a cell
where two different digests share those 61 bits (odds about 2^-61 per pair) is returned as
``suspect`` for the caller to hash exactly. The MD5 calls themselves are the floor (~16M for the
whole space).
"""

from __future__ import annotations

import hashlib

import numpy as np

try:  # CPython's own MD5 is faster than OpenSSL's for short messages (and is there in FIPS builds)
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - interpreters built without it
    _md5 = hashlib.md5

HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
DEDUP_ROUNDS = 2  # rounds that hash distinct keys only (later rounds have almost no repeats)
_BAR, _QUOTE = ord("|"), ord("'")


def md5_rows(buf: np.ndarray) -> np.ndarray:
    """(U, 16) uint8 MD5 digests of the rows of a (U, L) uint8 array."""
    rows, width = buf.shape
    if rows == 0:
        return np.zeros((0, 16), np.uint8)
    data = memoryview(np.ascontiguousarray(buf).data.cast("B"))
    md5 = _md5
    digests = b"".join([md5(data[i:i + width]).digest() for i in range(0, rows * width, width)])
    return np.frombuffer(digests, np.uint8).reshape(rows, 16)


def hex_of(digests: np.ndarray) -> np.ndarray:
    """(U, 32) uint8 lowercase hex of (U, 16) digests."""
    out = np.empty((len(digests), 32), np.uint8)
    out[:, 0::2] = HEX[digests >> 4]
    out[:, 1::2] = HEX[digests & 15]
    return out


def _words(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) big-endian uint64 halves of (U, 16) digests: their order is the hex order."""
    w = np.ascontiguousarray(digests).view(">u8").astype(np.uint64)
    return w[:, 0], w[:, 1]


def unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct row, inverse) of a 2-d int64 array; exact.

    Rows are told apart by a 64-bit mix of their values (one integer sort instead of a row sort);
    each row is then compared with its group's representative, and only if two different rows
    shared a mix are the rows themselves sorted.
    """
    mix = np.zeros(len(keys), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            mix = (mix ^ keys[:, j].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15 + 2 * j)
            mix ^= mix >> np.uint64(29)
    _, first, inverse = np.unique(mix, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not (keys[first][inverse] == keys).all():
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    return first, inverse


class _Group:
    """The vertices of one (in degree, out degree): flat rows (cell * n + vertex) and the flat rows
    of their predecessors and successors (fixed for every round; only their order changes)."""

    def __init__(self, kp: int, ks: int, rows: np.ndarray, preds: np.ndarray, succs: np.ndarray,
                 base: np.ndarray):
        self.kp, self.ks, self.rows, self.preds, self.succs = kp, ks, rows, preds, succs
        self.base = base  # (R, 1): flat row of each vertex's cell's first vertex

    def buffer(self, rows: int | None = None) -> np.ndarray:
        """(rows, L) uint8 message rows (default: one per vertex) with the two '|' in place."""
        kp, ks = self.kp, self.ks
        buf = np.empty((len(self.rows) if rows is None else rows, 32 * (kp + ks + 1) + 2), np.uint8)
        buf[:, 32 * kp] = _BAR
        buf[:, 32 * (kp + ks) + 1] = _BAR
        return buf


def _groups(adj: np.ndarray) -> list[_Group]:
    """Vertices grouped by (in degree, out degree), with their neighbours' flat rows."""
    n_cells, n = adj.shape[:2]
    in_deg, out_deg = adj.sum(axis=1), adj.sum(axis=2)
    code = (in_deg * 8 + out_deg).ravel()
    order = np.argsort(code, kind="stable")
    bounds = np.flatnonzero(np.diff(code[order])) + 1
    flat_pred = adj.transpose(0, 2, 1).reshape(n_cells * n, n)  # [c * n + v, u]: u -> v
    flat_succ = adj.reshape(n_cells * n, n)  # [c * n + v, u]: v -> u
    groups = []
    for rows in np.split(order, bounds):
        if not len(rows):
            continue
        kp, ks = int(code[rows[0]] // 8), int(code[rows[0]] % 8)
        base = (rows // n * n)[:, None]
        # neighbour vertex numbers in increasing order (nonzero walks rows in order, columns ascending)
        preds = np.nonzero(flat_pred[rows])[1].reshape(len(rows), kp) + base
        succs = np.nonzero(flat_succ[rows])[1].reshape(len(rows), ks) + base
        groups.append(_Group(kp, ks, rows, preds, succs, base))
    return groups


def _fill(buf: np.ndarray, g: _Group, hexes: np.ndarray, preds: np.ndarray, succs: np.ndarray,
          own: np.ndarray) -> np.ndarray:
    """Write the hex of predecessors, successors and own hash into ``buf`` (rows of indices into ``hexes``)."""
    rows, kp, ks = len(buf), g.kp, g.ks
    if kp:
        buf[:, :32 * kp].reshape(rows, kp, 32)[...] = hexes[preds]
    if ks:
        buf[:, 32 * kp + 1:32 * (kp + ks) + 1].reshape(rows, ks, 32)[...] = hexes[succs]
    buf[:, -32:] = hexes[own]
    return buf


def _ordered(keys: np.ndarray, neighbours: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of neighbours by their packed keys: (sorted packed keys, flat rows in that order)."""
    k = np.sort(keys[neighbours], axis=1)
    return k, base + (k & np.uint64(7)).astype(np.int64)


def _ties(sorted_keys: np.ndarray, flat: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Row positions where two neighbours share the 61 sorting bits but not the digest."""
    if sorted_keys.shape[1] < 2:
        return np.zeros(0, np.int64)
    top = sorted_keys >> np.uint64(3)
    same = top[:, 1:] == top[:, :-1]
    if not same.any():
        return np.zeros(0, np.int64)
    r, j = np.nonzero(same)
    differ = (digests[flat[r, j]] != digests[flat[r, j + 1]]).any(axis=1)
    return r[differ]


def _packed(digests: np.ndarray, n: int) -> np.ndarray:
    """(N * n,) uint64 sort keys: each vertex digest's first 61 bits, its vertex number in the low 3."""
    hi, _ = _words(digests)
    return (hi & ~np.uint64(7)) | (np.arange(len(hi), dtype=np.uint64) % np.uint64(n))


def fingerprints(adj: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MD5 digests (N, 16) uint8 of the module hashes of N pruned cells of n vertices, and a (N,)
    bool ``suspect`` mask of cells to hash exactly elsewhere (see the module docstring).

    ``adj`` (N, n, n): upper-triangular 0/1 adjacency; ``labels`` (N, n): -1 input, -2 output,
    interior vertices their op's index in ``nasbench101.OPS``.
    """
    adj = np.asarray(adj).astype(bool)
    labels = np.asarray(labels, np.int64)
    n_cells, n = labels.shape
    suspect = np.zeros(n_cells, bool)
    if n_cells == 0:
        return np.zeros((0, 16), np.uint8), suspect
    groups = _groups(adj)

    # round 0 over the few distinct (out degree, in degree, label) triples
    triples = np.stack([adj.sum(axis=2), adj.sum(axis=1), labels], axis=2).reshape(-1, 3).astype(np.int64)
    first, inverse = unique_rows(triples)
    text = [str(tuple(int(x) for x in t)).encode() for t in triples[first]]
    table = np.frombuffer(b"".join(hashlib.md5(t).digest() for t in text), np.uint8).reshape(-1, 16)
    vid = inverse
    rounds = 0
    # the first rounds: hash each distinct (sorted predecessors, sorted successors, own) key once
    while rounds < min(DEDUP_ROUNDS, n):
        hi, lo = _words(table)
        order = np.lexsort((lo, hi))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        hexes = hex_of(table[order])
        r = rank[vid]
        tables, new_vid, offset = [], np.empty(n_cells * n, np.int64), 0
        for g in groups:
            keys = np.concatenate([np.sort(r[g.preds], axis=1), np.sort(r[g.succs], axis=1), r[g.rows][:, None]],
                                  axis=1)
            first, inverse = unique_rows(keys)
            u = keys[first]
            tables.append(md5_rows(_fill(g.buffer(len(u)), g, hexes, u[:, :g.kp], u[:, g.kp:g.kp + g.ks],
                                         u[:, -1])))
            new_vid[g.rows] = offset + inverse
            offset += len(u)
        table, vid = np.concatenate(tables), new_vid
        rounds += 1
    # later rounds: every vertex (repeats are rare), neighbours ordered by packed digest keys
    digests = table[vid]  # (N * n, 16), row c * n + v
    for _ in range(rounds, n):
        keys = _packed(digests, n)
        hexes = hex_of(digests)
        new = np.empty_like(digests)
        for g in groups:
            kp_sorted, p = _ordered(keys, g.preds, g.base)
            ks_sorted, q = _ordered(keys, g.succs, g.base)
            for bad in (_ties(kp_sorted, p, digests), _ties(ks_sorted, q, digests)):
                suspect[g.rows[bad] // n] = True
            new[g.rows] = md5_rows(_fill(g.buffer(), g, hexes, p, q, g.rows))
        digests = new
    # the cell: md5(str(sorted(hashes))) = md5("['h0', 'h1', ...]")
    keys = np.sort(_packed(digests, n).reshape(n_cells, n), axis=1)
    base = (np.arange(n_cells) * n)[:, None]
    flat = base + (keys & np.uint64(7)).astype(np.int64)
    suspect[_ties(keys, flat, digests)] = True
    hexes = hex_of(digests)
    buf = np.empty((n_cells, n, 36), np.uint8)
    buf[:, :, :2] = np.frombuffer(b" '", np.uint8)
    buf[:, 0, :2] = np.frombuffer(b"['", np.uint8)
    buf[:, :, 2:34] = hexes[flat]
    buf[:, :, 34:] = np.frombuffer(b"',", np.uint8)
    buf[:, -1, 34:] = np.frombuffer(b"']", np.uint8)
    return md5_rows(buf.reshape(n_cells, 36 * n)), suspect


# ----------------------------------------------------------------------------- worker process
# ``python -m ecnas_plugin.energy.surrogates._wlhash`` reads jobs from stdin and writes results to
# stdout as .npy arrays (numpy's own format, read with allow_pickle=False): a job count, then
# (adjacency, labels) per job; back, (digests, suspect) per job. A plain subprocess, not
# multiprocessing: spawning re-imports the caller's __main__ (a script without a __main__ guard,
# or a notebook), and forking a process that holds LightGBM/BLAS threads is not safe.


class _Pipe:
    """A pipe as numpy's .npy reader/writer should see it: read/write only (no file position)."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def write(self, data) -> int:
        return self.stream.write(data)


def write_arrays(stream, arrays) -> None:
    from numpy.lib import format as npy

    pipe = _Pipe(stream)
    for a in arrays:
        npy.write_array(pipe, np.ascontiguousarray(a), allow_pickle=False)
    stream.flush()


def read_arrays(stream, count: int) -> list[np.ndarray]:
    from numpy.lib import format as npy

    pipe = _Pipe(stream)
    return [npy.read_array(pipe, allow_pickle=False) for _ in range(count)]


def main() -> int:
    import sys

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    (count,) = read_arrays(stdin, 1)
    jobs = [read_arrays(stdin, 2) for _ in range(int(count[0]))]
    for adj, labels in jobs:
        write_arrays(stdout, fingerprints(adj, labels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
