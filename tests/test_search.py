"""Built-in search on real tables (EC-NAS 4V/5V, 4V with the budget as a dimension, a measured NB201
table): spaces, mutation, fidelity queries, optimizers, budgets, traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.objectives import make_objective
from ecnas_plugin.registry import get_registry
from ecnas_plugin.search import Budget, OPTIMIZERS, TabularSpace, load_space, make_optimizer, run_search
from ecnas_plugin.study import metrics
from ecnas_plugin.table import EnergyTable

# A real NB201 table measured with `ecnas measure` (Flowers-17, CPU), shipped by the example plugin.
NB201_TABLE = (Path(__file__).resolve().parents[1] / "examples" / "ecnas-example-tables" / "src"
               / "ecnas_example_tables" / "data" / "nb201-flowers17-cpu")


def plain(acc: float, energy_kwh: float) -> float:
    return acc


@pytest.fixture(scope="module")
def space4(shared_data):
    return load_space("ecnas-4v", 108)


@pytest.fixture(scope="module")
def space5(shared_data):
    return load_space("ecnas-5v")


@pytest.fixture(scope="module")
def space4_budgets(shared_data):
    return load_space("ecnas-4v-linscale", [4, 12, 36, 108])


def test_spaces_hold_exactly_the_tables_cells(space4, space5):
    assert len(space4) == 91 and len(space5) == 2532
    assert set(space5.keys) == set(ep.load_table("ecnas-5v").frame["arch_key"])
    assert max(c.num_vertices for c in space5.archs.values()) == 5
    assert space5.adapter is get_registry().space("nasbench101")  # the space comes from the registry


def test_unknown_space_and_epochs_are_named(shared_data):
    with pytest.raises(UnknownName, match="ecnas-9v.*available: .*ecnas-4v"):
        load_space("ecnas-9v")
    with pytest.raises(UnknownName, match="epoch budget 7.*4"):
        load_space("ecnas-5v", 7)
    with pytest.raises(UnknownName, match="epoch budget 5.*4, 12, 36, 108"):
        load_space("ecnas-4v-linscale", [4, 5])


def test_mutation_stays_valid_inside_the_space_and_moves(space4, space5):
    rng = np.random.default_rng(0)
    points = list(space4.points) + [space5.points[i] for i in rng.choice(len(space5), 150, replace=False)]
    for point in points:
        space = space4 if point in space4._index else space5
        child = space.mutate(point, rng)
        cell = space.archs[child.key]
        nb101.validate(cell.matrix, cell.ops)  # raises if invalid
        assert nb101.module_hash(cell) == child.key != point.key
        assert child.epochs == point.epochs and child in space._index


def test_mutation_reaches_every_cell_of_the_4v_space(space4):
    rng = np.random.default_rng(1)
    reached = {space4.mutate(p, rng).key for p in space4.points for _ in range(100)}
    assert reached == set(space4.keys)


def test_budget_as_a_dimension_spans_every_cell_and_budget(space4_budgets):
    space = space4_budgets
    assert len(space) == 364 and space.budgets == (4, 12, 36, 108) and space.epochs is None
    rng = np.random.default_rng(2)
    moves = [space.mutate(p, rng) for p in space.points for _ in range(5)]
    assert {m.epochs for m in moves} == {4, 12, 36, 108}
    assert all(m in space._index for m in moves)
    # a move changes either the budget (to an adjacent one) or the cell, never both
    for p, m in zip(np.repeat(space.points, 5), moves):
        assert (m.key == p.key) != (m.epochs == p.epochs)
        if m.key == p.key:
            assert abs(space.budgets.index(m.epochs) - space.budgets.index(p.epochs)) == 1


def test_query_at_a_fidelity_returns_value_cost_and_curve(space4_budgets):
    table = ep.load_table("ecnas-4v-linscale")
    key = space4_budgets.keys[7]
    small, large = space4_budgets.query(key, 4), space4_budgets.query(key, 108)
    assert small.train_energy_kwh == table.get(key, epochs=4)["train_energy_kwh"]
    assert large.train_energy_kwh == table.get(key, epochs=108)["train_energy_kwh"] > small.train_energy_kwh
    assert small.sources == ("measured",) and large.sources == ("scaled",)  # linscale says what it did
    # the curve ends at the budget: its last checkpoint is the row's energy and accuracy
    assert large.curve["epoch"].iloc[-1] == 108 and large.curve["epoch"].is_monotonic_increasing
    assert large.curve["val_acc"].iloc[-1] == pytest.approx(large.val_acc)
    with pytest.raises(UnknownName, match="not given; the space has several"):
        space4_budgets.query(key)


def test_search_over_budgets_is_charged_each_budgets_energy(space4_budgets):
    rng = np.random.default_rng(4)
    opt = make_optimizer("sms-emoa", space4_budgets, rng)
    trace = run_search(space4_budgets, opt, Budget(evaluations=100), None, rng)
    table = ep.load_table("ecnas-4v-linscale")
    charged = [table.get(k, epochs=int(e))["train_energy_kwh"] for k, e in zip(trace["arch_key"], trace["epochs"])]
    np.testing.assert_allclose(trace["train_energy_kwh"], charged)
    assert set(trace["epochs"]) == {4, 12, 36, 108}
    assert not trace.duplicated(["arch_key", "epochs"]).any()
    assert set(trace["source"]) == {"measured", "scaled"}


def test_search_on_a_measured_nb201_table():
    table = EnergyTable.load(NB201_TABLE)
    space = TabularSpace(table)
    assert space.adapter.name == "nasbench201" and len(space.keys) == table.frame["arch_key"].nunique()
    rng = np.random.default_rng(0)
    trace = run_search(space, make_optimizer("evolution", space, rng, population_size=3, sample_size=2),
                       Budget(evaluations=len(space)), plain, rng)
    assert set(trace["arch_key"]) == set(space.keys)
    # the trace carries NB201's own encoding, which the codec reads back
    adapter = get_registry().space("nasbench201")
    assert all(adapter.canonical_key(adapter.parse_arch(c)) == k for c, k in zip(trace["config"], trace["arch_key"]))


def test_evaluation_reads_the_table(space4):
    table = ep.load_table("ecnas-4v")
    rng = np.random.default_rng(3)
    ev = space4.evaluate(space4.points[10], rng)
    row = table.get(ev.key, epochs=108, repeat=ev.repeat)
    assert ev.val_acc == row["val_acc"] and ev.train_energy_kwh == row["train_energy_kwh"]
    rows = table.lookup(ev.key, epochs=108)
    assert ev.true_test_acc == pytest.approx(rows["test_acc"].mean())
    assert ev.true_energy_kwh == pytest.approx(rows["train_energy_kwh"].mean())


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_runs_to_an_evaluation_budget(space5, name):
    rng = np.random.default_rng(0)
    opt = make_optimizer(name, space5, rng)
    objective = None if opt.multi_objective else plain
    trace = run_search(space5, opt, Budget(evaluations=40), objective, np.random.default_rng(1))
    assert len(trace) == 40
    assert trace["arch_key"].is_unique  # no architecture is paid for twice
    np.testing.assert_allclose(trace["search_energy_kwh"], trace["train_energy_kwh"].cumsum())
    assert trace["best_val_acc"].is_monotonic_increasing
    assert trace["objective"].isna().all() == opt.multi_objective


def test_energy_budget_stops_once_exceeded(space5):
    rng = np.random.default_rng(5)
    trace = run_search(space5, make_optimizer("random", space5, rng), Budget(search_kwh=0.3), plain, rng)
    spent = trace["search_energy_kwh"].to_numpy()
    assert spent[-1] > 0.3 >= spent[-2]


def test_budget_larger_than_the_space_ends_when_every_cell_is_tried(space4):
    rng = np.random.default_rng(0)
    trace = run_search(space4, make_optimizer("evolution", space4, rng), Budget(evaluations=500), plain, rng)
    assert len(trace) == 91 and trace["arch_key"].nunique() == 91


def test_energy_aware_objective_spends_less_per_evaluation(space5):
    """Regularized evolution on the soft objective drifts to cheaper cells than on plain accuracy."""
    def mean_energy(objective):
        out = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            t = run_search(space5, make_optimizer("evolution", space5, rng), Budget(evaluations=80), objective, rng)
            out.append(t["train_energy_kwh"].iloc[40:].mean())
        return np.mean(out)

    assert mean_energy(make_objective("soft", exponent=-0.5)) < mean_energy(plain)


def test_sms_emoa_beats_random_search_in_hypervolume(space5):
    norm = metrics.Normalisation.of_space(space5)

    def hv(name):
        vals = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            opt = make_optimizer(name, space5, rng)
            t = run_search(space5, opt, Budget(evaluations=80), None if opt.multi_objective else plain, rng)
            vals.append(metrics.normalised_hv(t["true_test_acc"], t["true_energy_kwh"], norm))
        return np.mean(vals)

    assert hv("sms-emoa") > hv("random")


def test_objective_kind_must_match_the_optimizer(space4):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="takes no scalar objective"):
        run_search(space4, make_optimizer("sms-emoa", space4, rng), Budget(evaluations=3), plain, rng)
    with pytest.raises(ValueError, match="needs a scalar objective"):
        run_search(space4, make_optimizer("evolution", space4, rng), Budget(evaluations=3), None, rng)


def test_unknown_optimizer_and_parameter_are_named(space4):
    rng = np.random.default_rng(0)
    with pytest.raises(UnknownName, match="'bananas'.*bo, ea-bo, ea-evolution, ea-hyperband, evolution, hyperband, mo-hyperband, parego, random, sms-emoa"):
        make_optimizer("bananas", space4, rng)
    with pytest.raises(UnknownName, match="'pop'.*population_size"):
        make_optimizer("evolution", space4, rng, pop=3)


@pytest.mark.parametrize("bad", [dict(), dict(evaluations=3, search_kwh=1.0), dict(evaluations=0),
                                 dict(search_kwh=-1.0)])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="budget"):
        Budget(**bad)
