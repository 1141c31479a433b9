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
NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # an absent neighbour (sorts last; a real key has low bits <= 6)
BIG = np.iinfo(np.int64).max
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


def _groups(in_deg: np.ndarray, out_deg: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(in degree, out degree, flat vertex rows) for every degree pair present."""
    code = (in_deg * 8 + out_deg).ravel()
    order = np.argsort(code, kind="stable")
    bounds = np.flatnonzero(np.diff(code[order])) + 1
    return [(int(code[g[0]] // 8), int(code[g[0]] % 8), g) for g in np.split(order, bounds) if len(g)]


def _message_buffer(rows: int, kp: int, ks: int) -> np.ndarray:
    buf = np.empty((rows, 32 * (kp + ks + 1) + 2), np.uint8)
    buf[:, 32 * kp] = _BAR
    buf[:, 32 * (kp + ks) + 1] = _BAR
    return buf


def _round_distinct(adj_pred: np.ndarray, adj_succ: np.ndarray, table: np.ndarray, vid: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One round hashing distinct keys only: (new digest table, new vertex ids into it)."""
    n_cells, n = vid.shape
    hi, lo = _words(table)
    order = np.lexsort((lo, hi))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    hexes = hex_of(table[order])
    r = rank[vid]
    preds = np.sort(np.where(adj_pred, r[:, None, :], BIG), axis=2)
    succs = np.sort(np.where(adj_succ, r[:, None, :], BIG), axis=2)
    keys = np.concatenate([preds, succs, r[:, :, None]], axis=2).reshape(n_cells * n, 2 * n + 1)
    first, inverse = unique_rows(keys)
    uniq = keys[first]
    k_pred = (uniq[:, :n] != BIG).sum(axis=1)
    k_succ = (uniq[:, n:2 * n] != BIG).sum(axis=1)
    new = np.empty((len(uniq), 16), np.uint8)
    for kp, ks, rows in _groups(k_pred, k_succ):
        u = uniq[rows]
        buf = _message_buffer(len(rows), kp, ks)
        for j in range(kp):
            buf[:, 32 * j:32 * j + 32] = hexes[u[:, j]]
        base = 32 * kp + 1
        for j in range(ks):
            buf[:, base + 32 * j:base + 32 * j + 32] = hexes[u[:, n + j]]
        buf[:, -32:] = hexes[u[:, 2 * n]]
        new[rows] = md5_rows(buf)
    return new, inverse.reshape(n_cells, n)


def _sort_keys(digests: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, n) uint64: each vertex's digest's first 61 bits, its index in the low 3 bits."""
    hi, _ = _words(digests)
    n = shape[1]
    return (hi.reshape(shape) & ~np.uint64(7)) | np.arange(n, dtype=np.uint64)


def _ties(sorted_keys: np.ndarray, digests: np.ndarray, n: int) -> np.ndarray:
    """(N,) bool: cells where two neighbours share the 61 sorting bits but not the digest."""
    top = sorted_keys >> np.uint64(3)
    same = (top[..., 1:] == top[..., :-1]) & (sorted_keys[..., 1:] != NONE)
    if not same.any():
        return np.zeros(len(sorted_keys), bool)
    pos = np.nonzero(same)
    cells = pos[0]
    a = cells * n + (sorted_keys[..., :-1][pos] & np.uint64(7)).astype(np.int64)
    b = cells * n + (sorted_keys[..., 1:][pos] & np.uint64(7)).astype(np.int64)
    differ = (digests[a] != digests[b]).any(axis=1)
    out = np.zeros(len(sorted_keys), bool)
    out[cells[differ]] = True
    return out


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
    adj_succ = adj  # [c, v, u]: v -> u
    adj_pred = adj.transpose(0, 2, 1)  # [c, v, u]: u -> v
    out_deg, in_deg = adj_succ.sum(axis=2), adj_pred.sum(axis=2)

    triples = np.stack([out_deg, in_deg, labels], axis=2).reshape(-1, 3).astype(np.int64)
    first, inverse = unique_rows(triples)
    text = [str(tuple(int(x) for x in t)).encode() for t in triples[first]]
    table = np.frombuffer(b"".join(hashlib.md5(t).digest() for t in text), np.uint8).reshape(-1, 16)
    vid = inverse.reshape(n_cells, n)
    done = 0
    while done < min(DEDUP_ROUNDS, n):
        table, vid = _round_distinct(adj_pred, adj_succ, table, vid)
        done += 1
    digests = table[vid.ravel()]  # (N * n, 16), row c * n + v
    groups = _groups(in_deg, out_deg) if done < n else []
    cell_of = np.arange(n_cells * n) // n
    for _ in range(done, n):
        keys = _sort_keys(digests, (n_cells, n))
        preds = np.sort(np.where(adj_pred, keys[:, None, :], NONE), axis=2)
        succs = np.sort(np.where(adj_succ, keys[:, None, :], NONE), axis=2)
        suspect |= _ties(preds, digests, n) | _ties(succs, digests, n)
        hexes = hex_of(digests)
        preds, succs = preds.reshape(n_cells * n, n), succs.reshape(n_cells * n, n)
        new = np.empty_like(digests)
        for kp, ks, rows in groups:
            base_index = cell_of[rows] * n
            buf = _message_buffer(len(rows), kp, ks)
            p = (preds[rows, :kp] & np.uint64(7)).astype(np.int64) + base_index[:, None]
            for j in range(kp):
                buf[:, 32 * j:32 * j + 32] = hexes[p[:, j]]
            s = (succs[rows, :ks] & np.uint64(7)).astype(np.int64) + base_index[:, None]
            off = 32 * kp + 1
            for j in range(ks):
                buf[:, off + 32 * j:off + 32 * j + 32] = hexes[s[:, j]]
            buf[:, -32:] = hexes[rows]
            new[rows] = md5_rows(buf)
        digests = new
    # the cell: md5(str(sorted(hashes))) = md5("['h0', 'h1', ...]")
    keys = np.sort(_sort_keys(digests, (n_cells, n)), axis=1)
    suspect |= _ties(keys[:, None, :], digests, n)
    hexes = hex_of(digests)
    order = (keys & np.uint64(7)).astype(np.int64) + (np.arange(n_cells) * n)[:, None]
    buf = np.empty((n_cells, 36 * n), np.uint8)
    for v in range(n):
        start = 36 * v
        buf[:, start:start + 2] = np.frombuffer(b"['" if v == 0 else b" '", np.uint8)
        buf[:, start + 2:start + 34] = hexes[order[:, v]]
        buf[:, start + 34:start + 36] = np.frombuffer(b"']" if v == n - 1 else b"',", np.uint8)
    return md5_rows(buf), suspect


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
