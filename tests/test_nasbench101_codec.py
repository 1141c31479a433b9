"""NAS-Bench-101 codec: module hash, validation rules and every encoding, checked on the real data."""

from __future__ import annotations

import json
import struct
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from ecnas_plugin.adapters import nasbench101 as nb
from ecnas_plugin.errors import InvalidArchitecture

ECNAS_FILES = {
    "energy_4V9E_4epochs.tfrecord": 1092,
    "energy_4V9E_linscale.tfrecord": 364,
    "energy_5V9E_4epochs.tfrecord": 2532,
}


def read_ecnas_records(path: Path) -> list[list]:
    """Minimal TFRecord framing (u64 length, u32 crc, payload, u32 crc); CRCs are the importer's job."""
    data = path.read_bytes()
    records, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        assert start + length + 4 <= len(data), f"truncated record at byte {pos}"
        records.append(json.loads(data[start : start + length]))
        pos = start + length + 4
    return records


@pytest.fixture(scope="module")
def ecnas_records(shared_data) -> dict[str, list[list]]:
    return {name: read_ecnas_records(shared_data / "ecnas" / name) for name in ECNAS_FILES}


@pytest.fixture(scope="module")
def zc101(shared_data) -> dict[str, dict]:
    return json.loads((shared_data / "naslib" / "zc_nasbench101.json").read_text())["nasbench101"]["cifar10"]


def test_every_ecnas_record_hashes_to_its_stored_module_hash(ecnas_records):
    for name, records in ecnas_records.items():
        assert len(records) == ECNAS_FILES[name]
        mismatches = [
            r[0] for r in records if nb.module_hash(nb.from_flat_adjacency(r[2], r[3])) != r[0]
        ]
        assert mismatches == [], f"{name}: {len(mismatches)} records hash differently"


def test_flat_adjacency_round_trip(ecnas_records):
    for r in ecnas_records["energy_5V9E_4epochs.tfrecord"]:
        assert nb.to_flat_adjacency(nb.from_flat_adjacency(r[2], r[3])) == (r[2], r[3])


def test_enumeration_matches_ecnas_tables(ecnas_records):
    hashes4 = {r[0] for r in ecnas_records["energy_4V9E_4epochs.tfrecord"]}
    hashes5 = {r[0] for r in ecnas_records["energy_5V9E_4epochs.tfrecord"]}
    cells4 = list(nb.enumerate_cells(4))
    cells5 = list(nb.enumerate_cells(5))
    enum4 = [nb.module_hash(c) for c in cells4]
    enum5 = [nb.module_hash(c) for c in cells5]
    assert len(enum4) == len(set(enum4)) == 91
    assert len(enum5) == len(set(enum5)) == 2532
    assert set(enum4) == hashes4
    assert set(enum5) == hashes5
    assert all(c.pruned() == c for c in cells5)


def test_naslib_tuples_all_valid_and_overlap_with_5v_table(zc101, ecnas_records):
    hashes5 = {r[0] for r in ecnas_records["energy_5V9E_4epochs.tfrecord"]}
    assert len(zc101) == 500
    hashes = set()
    for key in zc101:
        cell = nb.from_naslib_tuple(key)  # raises if any cell were invalid
        assert len(nb.to_naslib_tuple(cell)) == 56
        assert str(nb.to_naslib_tuple(cell)) == key
        assert nb.from_naslib_tuple(nb.to_naslib_tuple(cell)) == cell
        hashes.add(nb.module_hash(cell))
    assert len(hashes) == 292
    assert len(hashes & hashes5) == 231


def test_naslib_op_codes_agree_with_parameter_counts(zc101):
    """NASLib's codes 2/3/4 = maxpool/conv1x1/conv3x3: one-op cells' params must order that way."""
    params = defaultdict(list)
    for key, rec in zc101.items():
        pruned = nb.from_naslib_tuple(key).pruned()
        if pruned.num_vertices == 3:
            params[pruned.ops[1]].append(rec["params"])
    assert set(params) == set(nb.OPS)
    assert max(params[nb.MAXPOOL3X3]) < min(params[nb.CONV1X1])
    assert max(params[nb.CONV1X1]) < min(params[nb.CONV3X3])


def test_7v_surrogate_cells_are_valid_and_distinct(shared_data):
    torch = pytest.importorskip("torch")
    adjacency, opcodes, _energy, _params = torch.load(
        shared_data / "ecnas-7v" / "7v_data.pt", weights_only=True
    )
    assert len(adjacency) == len(opcodes) == 4310
    cells = [nb.from_7v_arrays(a, o) for a, o in zip(adjacency, opcodes)]
    real_vertices = (opcodes != 0).sum(dim=1).tolist()
    assert [c.num_vertices for c in cells] == real_vertices  # only padding was removed
    assert Counter(c.num_vertices for c in cells)[7] > 0
    hashes = {nb.module_hash(c) for c in cells}
    assert len(hashes) == 4310


def test_module_hash_ignores_dangling_vertices_and_vertex_order():
    chain = nb.Cell(((0, 1, 0), (0, 0, 1), (0, 0, 0)), ("input", "conv3x3-bn-relu", "output"))
    # vertex 2 (maxpool) has no outgoing edge: pruned away.
    dangling = nb.Cell(
        ((0, 1, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0), (0, 0, 0, 0)),
        ("input", "conv3x3-bn-relu", "maxpool3x3", "output"),
    )
    assert dangling.pruned() == chain
    assert nb.module_hash(dangling) == nb.module_hash(chain)
    branches = ((0, 1, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))
    a = nb.module_hash(branches, ["input", "conv1x1-bn-relu", "maxpool3x3", "output"])
    b = nb.module_hash(branches, ["input", "maxpool3x3", "conv1x1-bn-relu", "output"])
    c = nb.module_hash(branches, ["input", "maxpool3x3", "conv3x3-bn-relu", "output"])
    assert a == b != c


def _chain(n: int) -> tuple[list[list[int]], list[str]]:
    m = [[1 if j == i + 1 else 0 for j in range(n)] for i in range(n)]
    return m, ["input"] + ["conv3x3-bn-relu"] * (n - 2) + ["output"]


INVALID = {
    "shape": ([[0, 1], [0, 0]], ["input", "conv3x3-bn-relu", "output"]),
    "non-binary": ([[0, 2], [0, 0]], ["input", "output"]),
    "first-op": ([[0, 1], [0, 0]], ["conv3x3-bn-relu", "output"]),
    "last-op": ([[0, 1], [0, 0]], ["input", "conv3x3-bn-relu"]),
    "unknown-op": ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"]),
    "cycle": ([[0, 1, 0], [0, 0, 1], [0, 1, 0]], ["input", "maxpool3x3", "output"]),
    # a DAG, but vertex 2 feeds vertex 1: not numbered in topological order
    "not-upper-triangular": (
        [[0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]],
        ["input", "maxpool3x3", "conv3x3-bn-relu", "output"],
    ),
    "disconnected": ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", "maxpool3x3", "output"]),
    "too-many-vertices": _chain(8),
    "too-many-edges": (
        [[0 if j <= i else 1 for j in range(5)] for i in range(5)],
        ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"],
    ),
}


def test_pad_keeps_the_cell_and_its_hash():
    """Every <=5-vertex cell padded to 7 vertices (default conv3x3 or given filler ops) prunes back
    to itself; a cell bigger than the frame, or a filler of the wrong length, is refused."""
    for key, cell in nb.cells_by_hash(5).items():
        matrix, ops = nb.pad(cell)
        assert matrix.shape == (7, 7) and len(ops) == 7 and ops[-1] == nb.OUTPUT
        assert nb.module_hash(matrix.tolist(), ops) == key
        assert nb.prune(matrix.tolist(), ops) == cell
    cell = nb.Cell([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [nb.INPUT, nb.MAXPOOL3X3, nb.OUTPUT])
    matrix, ops = nb.pad(cell, 5, filler=[nb.CONV1X1, nb.MAXPOOL3X3])
    assert ops == [nb.INPUT, nb.MAXPOOL3X3, nb.CONV1X1, nb.MAXPOOL3X3, nb.OUTPUT]
    assert matrix[:, 2:4].sum() == 0 and matrix[2:4].sum() == 0 and matrix[0, 4] == matrix[1, 4] == 1
    with pytest.raises(InvalidArchitecture, match="do not fit in 2"):
        nb.pad(cell, 2)
    with pytest.raises(ValueError, match="filler has 1 ops for 2"):
        nb.pad(cell, 5, filler=[nb.CONV1X1])


@pytest.mark.parametrize("rule", sorted(INVALID))
def test_each_rule_is_named(rule):
    matrix, ops = INVALID[rule]
    with pytest.raises(InvalidArchitecture) as info:
        nb.validate(matrix, ops)
    assert info.value.rule == rule


def test_self_loop_is_a_cycle_and_unknown_op_lists_valid_ops():
    with pytest.raises(InvalidArchitecture) as info:
        nb.validate([[0, 1, 0], [0, 1, 1], [0, 0, 0]], ["input", "maxpool3x3", "output"])
    assert info.value.rule == "cycle"
    with pytest.raises(InvalidArchitecture) as info:
        nb.validate(*INVALID["unknown-op"])
    assert "conv5x5" in str(info.value) and all(op in str(info.value) for op in nb.OPS)


def test_edges_and_vertices_are_counted_after_pruning():
    # 8 vertices, but vertex 6 (maxpool) is isolated: 7 remain after pruning, which is allowed.
    m = [[0] * 8 for _ in range(8)]
    for i in range(5):
        m[i][i + 1] = 1
    m[5][7] = 1
    ops = ["input"] + ["conv3x3-bn-relu"] * 5 + ["maxpool3x3", "output"]
    cell = nb.validate(m, ops)
    assert cell.num_vertices == 8 and cell.pruned().num_vertices == 7
    m[5][6] = 1  # now vertex 6 is on no path to the output either: still pruned
    assert nb.validate(m, ops).pruned().num_vertices == 7
    m[6][7] = 1  # now it is on a path: 8 vertices remain
    with pytest.raises(InvalidArchitecture) as info:
        nb.validate(m, ops)
    assert info.value.rule == "too-many-vertices"


def test_7v_padding_with_edges_is_rejected():
    adj = np.zeros((7, 7), dtype=int)
    adj[0, 1] = adj[1, 2] = adj[2, 6] = 1
    with pytest.raises(InvalidArchitecture) as info:
        nb.from_7v_arrays(adj, [1, 3, 0, 0, 0, 0, 5])
    assert info.value.rule == "padding-edge"


def test_naslib_tuple_errors():
    with pytest.raises(InvalidArchitecture) as info:
        nb.from_naslib_tuple((0, 1, 0, 0, 0))
    assert info.value.rule == "shape"
    with pytest.raises(InvalidArchitecture) as info:
        nb.from_naslib_tuple((0, 1, 0, 0, 0, 7))
    assert info.value.rule == "unknown-op"


def test_adapter_keys_and_parsing():
    adapter = nb.NasBench101()
    adj, ops = "0110001100010000", "input,conv1x1-bn-relu,conv3x3-bn-relu,output"
    cell = nb.from_flat_adjacency(adj, ops)
    key = nb.module_hash(cell)
    matrix = [list(r) for r in cell.matrix]
    assert adapter.canonical_key(cell) == key
    assert adapter.canonical_key((matrix, list(cell.ops))) == key
    assert adapter.canonical_key({"matrix": cell.as_numpy(), "ops": cell.ops}) == key
    assert adapter.canonical_key(key.upper()) == key
    assert adapter.parse_arch(f"{adj}:{ops}") == cell
    assert adapter.parse_arch(f"{adj}:input,conv1x1,conv3x3,output") == cell
    assert adapter.parse_arch(json.dumps({"matrix": matrix, "ops": list(cell.ops)})) == cell
    assert adapter.parse_arch(key.upper()) == key
    for bad in ("not-a-hash", key[:-1]):
        with pytest.raises(InvalidArchitecture) as info:
            adapter.canonical_key(bad)
        assert info.value.rule == "bad-key"
    with pytest.raises(InvalidArchitecture) as info:
        adapter.parse_arch("conv3x3 please")
    assert info.value.rule == "syntax"
    with pytest.raises(InvalidArchitecture) as info:
        adapter.parse_arch("0120:input,output")
    assert info.value.rule == "non-binary"


def test_plugin_hook_returns_the_adapter():
    (adapter,) = nb.ecnas_search_spaces()
    assert adapter.name == "nasbench101" and "module hash" in adapter.key_description


def test_cells_by_hash_is_the_enumeration_keyed_by_module_hash():
    table = nb.cells_by_hash(4)
    assert list(table.values()) == list(nb.enumerate_cells(4))
    assert all(nb.module_hash(cell) == key for key, cell in table.items())
    assert nb.cells_by_hash(4) is table  # built once per process
    with pytest.raises(TypeError):
        table["x"] = None  # read-only
