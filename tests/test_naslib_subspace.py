"""EC-NAS 4V/5V subspaces and their NAS-Bench-101-style dataset_api, on the real EC-NAS tables."""

from __future__ import annotations

import random

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin.adapters import nasbench101 as nb
from ecnas_plugin.errors import InvalidArchitecture, UnknownName
from ecnas_plugin.naslib import subspace as ss


@pytest.fixture(scope="module")
def api5(shared_data):
    return ss.build_dataset_api("ecnas-5v")


@pytest.fixture(scope="module")
def api4(shared_data):
    return ss.build_dataset_api("ecnas-4v")


def test_subspace_holds_exactly_the_table_cells(api5, api4):
    for api, name, n in ((api5, "ecnas-5v", 2532), (api4, "ecnas-4v", 91)):
        keys = set(ep.load_table(name).frame["arch_key"])
        assert set(api["nb101_data"].subspace.keys) == keys and len(keys) == n


def test_specs_are_7x7_canonical_and_hash_to_their_key(api5):
    sub = api5["nb101_data"].subspace
    for key in sub.keys[:200]:
        spec = sub.spec(key)
        assert spec["matrix"].shape == (7, 7) and len(spec["ops"]) == 7
        assert nb.module_hash(spec["matrix"].tolist(), spec["ops"]) == key
        assert nb.prune(spec["matrix"].tolist(), spec["ops"]).num_vertices <= 5


def test_sampling_mutation_and_neighbours_stay_inside(api5):
    sub = api5["nb101_data"].subspace
    random.seed(0)
    np.random.seed(0)
    keys = [sub.sample() for _ in range(50)]
    assert len(set(keys)) > 40
    for key in keys[:20]:
        assert sub.mutate(key) in sub
        nbrs = sub.neighbours(key)
        assert nbrs and key not in nbrs and len(set(nbrs)) == len(nbrs)
        assert all(n in sub for n in nbrs)


def test_neighbours_are_one_edit_away(api4):
    sub = api4["nb101_data"].subspace
    for key in sub.keys:
        m, ops = sub._frame(key)
        edits = [(m, ops[:i] + [o] + ops[i + 1:]) for i in (1, 2) for o in nb.OPS if o != ops[i]]
        for i, j in [(i, j) for i in range(4) for j in range(i + 1, 4)]:
            flipped = m.copy()
            flipped[i, j] ^= 1
            edits.append((flipped, ops))
        expected = set()
        for em, eops in edits:
            try:
                h = nb.module_hash(em.tolist(), eops)
            except InvalidArchitecture:
                continue
            if h != key and h in sub:
                expected.add(h)
        if expected:
            assert set(sub.neighbours(key)) == expected
        else:  # no valid single edit: the cells fewest edits away stand in
            assert sub.neighbours(key) and key not in sub.neighbours(key)


def test_query_answers_from_the_table(api4):
    bench, Spec = api4["nb101_data"], api4["api"].ModelSpec
    table = ep.load_table("ecnas-4v")
    key = bench.subspace.keys[7]
    spec = Spec(**bench.subspace.spec(key))
    assert bench.is_valid(spec) and bench.default_epochs == 108
    rows = table.lookup(key, epochs=108)
    random.seed(1)
    seen = {round(bench.query(spec)["validation_accuracy"], 9) for _ in range(60)}
    assert seen == {round(v, 9) for v in rows["val_acc"]}  # one of the repeats, like NAS-Bench-101
    q = bench.query(spec, epochs=4)
    assert q["test_accuracy"] in set(table.lookup(key, epochs=4)["test_acc"])
    assert bench.mean(key)["train_energy_kwh"] == pytest.approx(rows["train_energy_kwh"].mean())


def test_cells_outside_the_subspace_are_invalid(api4):
    bench, Spec = api4["nb101_data"], api4["api"].ModelSpec
    ops = ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"]
    chain = np.eye(5, k=1, dtype=int)  # 5 vertices: valid NB101, too big for 4V
    assert not bench.is_valid(Spec(chain, ops))
    assert not bench.is_valid(Spec(np.zeros((5, 5), dtype=int), ops))  # disconnected
    with pytest.raises(InvalidArchitecture):
        bench.query(Spec(chain, ops))


def test_unknown_epoch_budget_and_space_are_named(api5):
    bench = api5["nb101_data"]
    spec = api5["api"].ModelSpec(**bench.subspace.spec(bench.subspace.keys[0]))
    with pytest.raises(UnknownName, match="epoch budget 108"):
        bench.query(spec, epochs=108)
    with pytest.raises(UnknownName, match="ecnas-6v"):
        ss.build_dataset_api("ecnas-6v")


def test_hash_iterator_and_metrics_from_hash(api5):
    bench = api5["nb101_data"]
    key = next(bench.hash_iterator())
    fixed, computed = bench.get_metrics_from_hash(key)
    assert nb.module_hash(fixed["module_adjacency"].tolist(), fixed["module_operations"]) == key
    assert list(computed) == [4]


def test_every_cell_has_a_neighbourhood(shared_data):
    """One 5V cell has no valid one-edit neighbour in the 5-vertex frame (every single edit prunes
    or breaks it); its neighbourhood is then the cells two edits away, never empty: NASLib's local
    search pops from it without checking (it crashed on this cell)."""
    sub = ss.load_subspace("ecnas-5v")
    lonely = "043721b9c7fe8c5fad811d47d83132ec"
    matrix, ops = sub._frame(lonely)
    assert not {sub.key_of({"matrix": m, "ops": o}) for m, o in sub._edits(matrix, ops)} - {None, lonely}
    found = sub.neighbours(lonely)
    assert found and lonely not in found and set(found) <= set(sub.keys)
    assert all(sub.neighbours(k) for k in sub.keys)
