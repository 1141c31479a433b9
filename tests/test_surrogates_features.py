"""Surrogate features: analytic params/FLOPs against the torch builders, EC-NAS and NASLib files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.energy.surrogates import features as F
from ecnas_plugin.errors import InvalidArchitecture
from ecnas_plugin.networks import build_nb101, build_nb201, count_flops, count_params


@pytest.fixture(scope="module")
def cells5():
    return list(nb101.enumerate_cells(5))


def test_counts_match_builders_on_small_and_7_vertex_cells(cells5):
    rng = np.random.default_rng(3)
    picked = [cells5[i] for i in rng.choice(len(cells5), 4, replace=False)]
    picked += F.random_cell_batch(4, seed=5).cells()
    counts = F.size_counts(F.CellBatch.from_cells(picked))
    for i, cell in enumerate(picked):
        net = build_nb101(cell, device="meta")
        assert counts["params"][i] == count_params(net)
        assert counts["flops"][i] == count_flops(net, (3, 32, 32))


def test_per_stack_flops_match_each_stack_of_the_builder(cells5):
    """The additive surrogate's cost terms: each stack's FLOPs, against that stack's torch cells."""
    import torch.nn as nn

    picked = [cells5[11], cells5[1200]] + F.random_cell_batch(3, seed=8).cells()
    counts = F.size_counts(F.CellBatch.from_cells(picked))
    for i, cell in enumerate(picked):
        layers = list(build_nb101(cell, device="meta").features)
        c_in, side = F.STEM_CHANNELS, 32
        for s, (c_out, hw) in enumerate(F.STACKS):
            start = 1 + 4 * s  # stem, then per stack three cells and (but after the last) a max-pool
            cells = nn.Sequential(*layers[start:start + 3])
            side = int(hw ** 0.5)
            want = count_flops(cells, (c_in, side, side))
            got = sum(counts[f"{k}_stack{s}"][i] for k in F.STACK_KINDS if k.startswith("flops_"))
            assert got == want, f"cell {i}, stack {s}: {got} != {want}"
            c_in = c_out
    X = F.nb101_features(F.CellBatch.from_cells(picked))
    linear, logged = F.cost_terms()
    assert set(logged) <= set(linear) and len(linear) == 20
    names = F.nb101_feature_names()
    total = sum(np.expm1(X[:, names.index(f"log_flops_conv3x3_stack{s}")].astype(np.float64)) for s in range(3))
    np.testing.assert_allclose(total, counts["flops_conv3x3"], rtol=1e-5)


def test_params_match_ecnas_tables(shared_data):
    import ecnas_plugin as ep

    index = F.default_cell_index()
    for name in ("ecnas-5v", "ecnas-7v"):
        frame = ep.load_table(name).frame.drop_duplicates("arch_key")
        counts = F.size_counts(index.batch(list(frame["arch_key"])))
        mismatch = int((counts["params"] != frame["params"].to_numpy()).sum())
        assert mismatch == 0, f"{mismatch} cells of {name} differ from EC-NAS's stored params"


def test_params_match_naslib_and_flops_follow_its_counter_closely(shared_data):
    entries = json.loads((shared_data / "naslib" / "zc_nasbench101.json").read_text())["nasbench101"]["cifar10"]
    cells = [nb101.from_naslib_tuple(key) for key in entries]
    counts = F.size_counts(F.CellBatch.from_cells(cells))
    params_m = np.array([e["params"] for e in entries.values()])
    flops_m = np.array([e["flops"] for e in entries.values()])
    np.testing.assert_allclose(counts["params"] / 1e6, params_m, atol=5e-7)
    # NASLib's counter also counts a few element-wise ops (MACs of conv/linear/pool agree to <2%)
    rel = np.abs(counts["flops"] / 1e6 - flops_m) / flops_m
    assert rel.max() < 0.03 and (counts["flops"] / 1e6 <= flops_m + 1e-6).all()


def test_nb201_counts_match_builder_and_naslib_params(shared_data):
    entries = json.loads((shared_data / "naslib" / "zc_nasbench201.json").read_text())["cifar10"]
    naslib_order = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
    ops = [[naslib_order[int(c)] for c in key.strip("()").split(",")] for key in entries]
    idx = np.array([[F.NB201_OPS.index(o) for o in row] for row in ops])
    counts = F.nb201_counts(idx)
    np.testing.assert_allclose(counts["params"] / 1e6, [e["params"]["score"] for e in entries.values()], atol=5e-7)
    for i in (0, 7, 100):
        net = build_nb201(ops[i], device="meta")
        assert counts["params"][i] == count_params(net)
        assert counts["flops"][i] == count_flops(net, (3, 32, 32))
    assert F.nb201_features(ops[:5]).shape == (5, 32)


def test_features_do_not_depend_on_vertex_numbering(cells5):
    """Relabel interior vertices of 7-vertex cells (same module hash): identical graph and op features.

    Params/FLOPs may move by a few channels: NB101 gives the odd output channels to the first
    vertices in index order, so its real network depends slightly on the numbering.
    """
    rng = np.random.default_rng(0)
    checked = 0
    for cell in F.random_cell_batch(300, seed=2).cells():
        m = np.array(cell.matrix)
        perm = np.concatenate([[0], 1 + rng.permutation(5), [6]])
        pm = m[np.ix_(perm, perm)]
        if np.tril(pm).any():
            continue
        other = nb101.Cell(pm.tolist(), [cell.ops[p] for p in perm])
        if other.matrix == cell.matrix:
            continue
        assert nb101.module_hash(other) == nb101.module_hash(cell)
        a, b = F.nb101_features(F.CellBatch.from_cells([cell, other]))
        np.testing.assert_array_equal(a[:10], b[:10])
        np.testing.assert_allclose(a[10:18], b[10:18], rtol=1e-3)
        # per stack, a few channels moved between small op groups: compare the amounts themselves
        np.testing.assert_allclose(np.expm1(a[18:].astype(float)), np.expm1(b[18:].astype(float)), rtol=0.05)
        checked += 1
    assert checked >= 5


def test_batch_validation_names_the_rule():
    batch = F.random_cell_batch(10, seed=1)
    adj = batch.adjacency.copy()
    adj[3, 1, 2] = 1 - adj[3, 1, 2]
    adj[3, 0, :] = 0  # nothing leaves the input: vertices off every path
    with pytest.raises(InvalidArchitecture) as exc:
        F.CellBatch.from_arrays(adj, batch.ops)
    assert exc.value.rule == "disconnected" and "row 3" in str(exc.value)
    ops = batch.ops.copy()
    ops[2, 3] = 9
    with pytest.raises(InvalidArchitecture, match="unknown-op"):
        F.CellBatch.from_arrays(batch.adjacency, ops)
    ok = F.CellBatch.from_arrays(batch.adjacency, batch.ops)
    assert [nb101.module_hash(c) for c in ok.cells()] == batch.keys()


def test_invalid_cell_raises_codec_error():
    with pytest.raises(InvalidArchitecture) as exc:
        F.CellBatch.from_cells([([[0, 1], [1, 0]], ["input", "output"])])
    assert exc.value.rule in ("cycle", "not-upper-triangular")


def test_op_codes_are_the_codecs_own_tables(shared_data):
    """One op-code table per space: a CellBatch holds NB101 ops in 7v_data.pt's codes (the codec's
    SEVEN_V_OPS), and NB201 one-hot columns follow the codec's OPS (NASLib's op indices)."""
    import torch

    from ecnas_plugin.adapters import nasbench201 as nb201

    assert F.OP_CODES == {op: code for code, op in nb101.SEVEN_V_OPS.items()} and F.PAD not in nb101.SEVEN_V_OPS
    adjacency, opcodes, _, _ = (t.numpy() for t in torch.load(shared_data / "ecnas-7v" / "7v_data.pt",
                                                               weights_only=True, map_location="cpu"))
    full = [i for i in range(len(opcodes)) if (opcodes[i] != 0).all()
            and nb101.from_7v_arrays(adjacency[i], opcodes[i]).pruned().num_vertices == 7][:500]
    assert len(full) == 500
    batch = F.CellBatch.from_cells(nb101.from_7v_arrays(adjacency[i], opcodes[i]) for i in full)
    np.testing.assert_array_equal(batch.ops, opcodes[full])  # the file's codes, unchanged
    np.testing.assert_array_equal(batch.adjacency, adjacency[full])
    assert (batch.ops == F.C3).sum() == (opcodes[full] == 3).sum() > 0  # 3 is conv3x3 in both

    assert F.NB201_OPS == nb201.OPS and F.NB201_EDGES == nb201.STRING_EDGES
    arch = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    onehot = F.nb201_features([arch])[0, :30].reshape(6, 5)
    ops = nb201.parse_arch_str(arch)
    assert [nb201.OPS[k] for k in onehot.argmax(axis=1)] == list(ops)
    assert F.nb201_feature_names()[:5] == [f"edge0_{op}" for op in nb201.OPS]
    assert F.nb201_features([]).shape == (0, 32)  # names come without featurising anything
