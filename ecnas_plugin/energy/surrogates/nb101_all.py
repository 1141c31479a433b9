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
* **Module hash** (:func:`module_hashes`, kernel in ``_wlhash.py``). NB101's fingerprint is n
  rounds of per-vertex MD5s over the sorted hashes of a vertex's predecessors and successors, then
  an MD5 of the sorted vertex hashes: about 40 MD5s per 7-vertex cell, 16M for the space, which
  no array trick avoids (each is of the previous round's). So the kernel keeps everything else in
  arrays: hex strings as uint8 rows, messages built per (in degree, out degree) group, the first
  two rounds (few distinct keys) hashing each distinct key once. Isomorphic duplicates in a batch
  cost nothing extra there. The MD5s are spread over worker processes (``python -m`` subprocesses
  exchanging .npy arrays; no pickle, no re-import of the caller's ``__main__``). The result is the
  codec's ``module_hash`` byte for byte (tests/test_surrogates_all.py).
* **Predicted table** (:func:`predicted_table`, ``ecnas surrogate predict --all --out DIR``):
  every cell with ``source="predicted"``, the σ, its module hash and ``ADJ:OPS`` (6-7-vertex
  hashes cannot be decoded), params and FLOPs; the hashes are computed in workers while this
  process featurises and predicts. About 20 s and 20 MB, against EC-NAS's 614 MB precomputed file
  (benchmarks/bench_surrogate.py).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

from ecnas_plugin.adapters import nasbench101 as nb101

from . import _wlhash
from . import features as F

V = nb101.MAX_VERTICES
ALL_NB101_CELLS = 423_624  # NAS-Bench-101's count of unique cells (module hashes)
# The codec's hash labels: input -1, output -2, interior ops their index in nasbench101.OPS.
_LABEL_OF_CODE = np.full(max(nb101.SEVEN_V_OPS) + 1, -9, np.int64)
for _code, _op in nb101.SEVEN_V_OPS.items():
    _LABEL_OF_CODE[_code] = -1 if _op == nb101.INPUT else -2 if _op == nb101.OUTPUT else nb101.OPS.index(_op)
# CellBatch op code of each interior op index of nasbench101.OPS (the product order of the enumeration)
_CODE_OF_OP = np.array([F.OP_CODES[op] for op in nb101.OPS], np.int8)


# ----------------------------------------------------------------------------- hashing


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _exact(adj: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """(R, 16) digests by the codec itself (for the rare cells the kernel cannot order exactly)."""
    cells = [nb101.Cell(a.tolist(), [F.OP_NAMES[int(c)] for c in o]) for a, o in zip(adj, ops)]
    return np.frombuffer(b"".join(bytes.fromhex(nb101.module_hash(c)) for c in cells), np.uint8).reshape(-1, 16)


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


PARALLEL_MIN_CELLS = 40_000  # below this, worker processes cost more than they save
CHUNK_CELLS = 50_000


class HashJob:
    """The module hashes of a CellBatch, being computed: :meth:`result` waits for them.

    Cells are cut into jobs (one vertex count, at most 50,000 cells each) for
    ``_wlhash.fingerprints``. With ``workers`` > 1 (and a batch of at least 40,000 cells) the jobs
    are split into parts of about equal size, each run by a ``python -m ...._wlhash`` subprocess
    that starts at once, so the caller can work while they hash; with ``in_caller`` the caller
    takes one part itself in :meth:`result`. A worker that fails is redone in this process.
    """

    def __init__(self, batch: F.CellBatch, workers: int | None = None, in_caller: bool = True):
        self.size = len(batch)
        self.jobs = []
        for n, (rows, adj, ops) in compact(batch).items():
            labels = _LABEL_OF_CODE[ops]
            for start in range(0, len(rows), CHUNK_CELLS):
                part = slice(start, start + CHUNK_CELLS)
                self.jobs.append((rows[part], adj[part], labels[part], ops[part]))
        workers = min(_cpu_count(), 4) if workers is None else max(1, int(workers))
        if workers == 1 or self.size < PARALLEL_MIN_CELLS or len(self.jobs) < 2:
            self.local, self.procs = list(range(len(self.jobs))), []
            return
        parts: list[list[int]] = [[] for _ in range(min(workers, len(self.jobs)))]
        sizes = [0] * len(parts)
        for i in sorted(range(len(self.jobs)), key=lambda i: -len(self.jobs[i][0])):  # largest first
            k = sizes.index(min(sizes))
            parts[k].append(i)
            sizes[k] += len(self.jobs[i][0])
        self.local = parts.pop(0) if in_caller else []
        self.procs = [(part, self._spawn(part)) for part in parts]

    def _spawn(self, part: list[int]):
        import subprocess
        import sys
        from pathlib import Path

        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])  # the folder holding ecnas_plugin
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        try:
            proc = subprocess.Popen([sys.executable, "-m", "ecnas_plugin.energy.surrogates._wlhash"], env=env,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            _wlhash.write_arrays(proc.stdin, [np.array([len(part)]),
                                              *(a for i in part for a in self.jobs[i][1:3])])
            proc.stdin.close()
        except OSError:
            return None  # redone in this process
        return proc

    def result(self) -> np.ndarray:
        """(N,) ``S32`` module hashes, in the batch's order."""
        done = {i: _wlhash.fingerprints(*self.jobs[i][1:3]) for i in self.local}
        for part, proc in self.procs:
            got = None
            if proc is not None:
                try:
                    got = _wlhash.read_arrays(proc.stdout, 2 * len(part))
                except (ValueError, EOFError, OSError):
                    got = None
                proc.stdout.close()
                if proc.wait() != 0:
                    got = None
            if got is None:
                got = [a for i in part for a in _wlhash.fingerprints(*self.jobs[i][1:3])]
            done.update({i: (got[2 * k], got[2 * k + 1]) for k, i in enumerate(part)})
        digests = np.empty((self.size, 16), np.uint8)
        for i, (rows, adj, _, ops) in enumerate(self.jobs):
            d, suspect = done[i]
            if suspect.any():
                d = d.copy()
                d[suspect] = _exact(adj[suspect], ops[suspect])
            digests[rows] = d
        return _wlhash.hex_of(digests).view("S32").ravel()


def module_hashes(batch: F.CellBatch, workers: int | None = None) -> np.ndarray:
    """Module hash of every cell of a CellBatch as a (N,) array of 32-character ASCII bytes (``S32``),
    equal to ``nasbench101.module_hash`` of each cell (``.astype(str)`` gives Python strings).

    ``workers``: processes that share the MD5s, this one included (default: the CPUs this process
    may use, at most 4; 1 = all in this process). Batches under 40,000 cells are hashed here.
    """
    return HashJob(batch, workers).result()


# ----------------------------------------------------------------------------- enumeration


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint32 (np.bitwise_count where numpy has it, >= 2.0)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = x - ((x >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    return (((x + (x >> 4)) & 0x0F0F0F0F) * 0x01010101 & 0xFFFFFFFF) >> 24


def _graphs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks, (G, n, n) uint8 adjacency) of every n-vertex graph of the codec's enumeration, in
    its order: upper-triangular, ≤ 9 edges, every vertex on an input→output path; bit k of a mask
    is the k-th pair of ``np.triu_indices(n, 1)``."""
    iu = np.triu_indices(n, 1)
    masks = np.arange(1 << len(iu[0]), dtype=np.uint32)
    masks = masks[_popcount(masks) <= nb101.MAX_EDGES]
    bits = ((masks[:, None] >> np.arange(len(iu[0]), dtype=np.uint32)) & 1).astype(np.uint8)
    masks = masks.astype(np.int64)
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
    rows: np.ndarray  # positions in the enumeration of one cell per isomorphism class

    def __len__(self) -> int:
        return len(self.keys)


_SPACE: dict[int, SpaceCells] = {}


def space_cells(max_vertices: int = V, workers: int | None = None) -> SpaceCells:
    """Every valid NB101 cell of at most ``max_vertices`` vertices, one per module hash, in the order
    and form the codec's ``enumerate_cells`` yields them (423,624 cells for 7). Read-only, kept for
    the process; ``workers`` as :func:`module_hashes`."""
    if max_vertices not in _SPACE:
        _SPACE[max_vertices] = _space_cells(max_vertices, workers)
    return _SPACE[max_vertices]


def _space_cells(max_vertices: int, workers: int | None) -> SpaceCells:
    batch = _all_batch(max_vertices)
    return _unique_by_hash(batch, module_hashes(batch, workers))


def _all_batch(max_vertices: int) -> F.CellBatch:
    """One cell per isomorphism class, every vertex count up to ``max_vertices``, codec order."""
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
    return F.CellBatch(np.concatenate(adjs), np.concatenate(opss))


def _unique_by_hash(batch: F.CellBatch, keys: np.ndarray) -> SpaceCells:
    """Different classes with one hash (the fingerprint is not a proof of isomorphism) count once,
    as in the codec: the first in enumeration order stays."""
    _, first = np.unique(keys, return_index=True)
    rows = np.sort(first)
    if len(rows) < len(keys):
        batch, keys = F.CellBatch(batch.adjacency[rows], batch.ops[rows]), keys[rows]
    for a in (batch.adjacency, batch.ops, keys, rows):
        a.setflags(write=False)
    return SpaceCells(batch, keys, rows)


def describe(batch: F.CellBatch) -> np.ndarray:
    """``ADJ:OPS`` of every cell (what ``NasBench101.describe`` gives and ``parse_arch`` reads back),
    as a (N,) object array of str, vectorised: the adjacency digits per vertex count, the op list
    per (vertex count, interior ops) combination."""
    out = np.empty(len(batch), object)
    for n, (rows, adj, ops) in compact(batch).items():
        digits = (adj.reshape(len(rows), n * n) + ord("0")).astype(np.uint8).view(f"S{n * n}").ravel()
        inner = ops[:, 1:n - 1]
        codes = np.zeros(len(rows), np.int64)
        names = [F.OP_NAMES[int(c)] for c in (F.C3, F.C1, F.MP)]
        digit = {int(F.C3): 0, int(F.C1): 1, int(F.MP): 2}
        lookup = np.zeros(max(digit) + 1, np.int64)
        for code, d in digit.items():
            lookup[code] = d
        for j in range(n - 2):
            codes = codes * 3 + lookup[inner[:, j]]
        suffix = np.array([":" + ",".join([nb101.INPUT, *combo, nb101.OUTPUT])
                           for combo in itertools.product(names, repeat=n - 2)], dtype=object)
        out[rows] = np.char.decode(digits, "ascii").astype(object) + suffix[codes]
    return out


def predicted_table(predictor=None, name: str = "", workers: int | None = None):
    """Every NAS-Bench-101 cell (423,624) with its predicted training energy and σ, as an EnergyTable.

    Rows: ``arch_key`` (module hash), ``arch_text`` (ADJ:OPS: most keys are of 6-7-vertex cells,
    which a hash cannot be decoded back into), ``source="predicted"``, ``train_energy_kwh`` and
    ``train_energy_sd_kwh``, ``params`` and ``flops`` (multiply-accumulates, counted analytically),
    labelled with the predictor's campaign, budget, hardware and dataset. ``predictor``: an NB101
    Predictor (default: the shipped model). ``workers``: processes for the module hashes
    (:func:`module_hashes`).
    """
    import pandas as pd

    from ecnas_plugin.table import EnergyTable, Manifest

    from .predictor import default_predictor

    predictor = predictor or default_predictor()
    if not isinstance(predictor.features, F.Nb101Features):
        from ecnas_plugin.errors import SchemaError

        raise SchemaError(f"the whole-NB101 table needs an NB101 model; this one predicts space "
                          f"{predictor.context.space!r}", column="space")
    if V in _SPACE:
        cells = _SPACE[V]
        batch, pending = cells.batch, None
    else:  # hash in worker processes while this one predicts
        batch = _all_batch(V)
        pending = HashJob(batch, workers, in_caller=False)
    mean, sd = predictor.predict_batch(batch)
    counts = F.size_counts(batch)
    text = describe(batch)
    if pending is not None:
        cells = _unique_by_hash(batch, pending.result())
        _SPACE[V] = cells
        if len(cells) != len(batch):  # the fingerprint merged two cell classes: drop as space_cells does
            keep = np.isin(np.arange(len(batch)), cells.rows)
            mean, sd, text = mean[keep], sd[keep], text[keep]
            counts = {k: v[keep] for k, v in counts.items()}
    c = predictor.context
    frame = pd.DataFrame({
        "space": c.space, "arch_key": cells.keys.astype(str).astype(object), "arch_text": text,
        "dataset": c.dataset, "epochs": c.epochs, "hardware": c.hardware, "campaign": c.campaign, "repeat": 0,
        "source": "predicted", "train_energy_kwh": mean, "train_energy_sd_kwh": sd,
        "params": counts["params"], "flops": counts["flops"],
    })
    if predictor.training.get("energy_source") == "estimated":  # as Predictor.predict_energy says it
        frame["energy_method"] = "estimated"
    model = predictor.model.name
    trained = predictor.training.get("table") or c.campaign
    learnt = ("ESTIMATED (a power model, not measured)" if predictor.training.get("energy_source") == "estimated"
              else "measured")
    manifest = Manifest(
        name=name or f"nb101-predicted-{c.campaign}",
        space=c.space,
        description=(f"every NAS-Bench-101 cell ({len(frame):,}): training energy PREDICTED (not measured) by "
                     f"the {model} surrogate trained on {predictor.training.get('cells', '?')} {learnt} cells of "
                     f"{trained} ({c.campaign}, {c.epochs} epochs, {c.hardware}, {c.dataset}); "
                     "train_energy_sd_kwh is its σ"),
        tool=f"ecnas-plugin {model} surrogate (predicted)",
        pue=predictor.training.get("pue"),
        components=tuple(predictor.training.get("components", ())),
        license="as the training table's",
        citation="",
        notes=(f"source=predicted on every row; sigma method {predictor.model.calibration.get('method', 'constant')}; "
               f"training data sha256 {predictor.training.get('sha256', '')}; feature set {predictor.feature_set}; "
               "flops are multiply-accumulates (networks.count_flops); PUE as the training table's"),
    )
    return EnergyTable(frame, manifest)


__all__ = ["ALL_NB101_CELLS", "SpaceCells", "compact", "describe", "module_hashes", "predicted_table",
           "space_cells"]
