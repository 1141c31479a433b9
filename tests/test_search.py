"""Built-in search on the real EC-NAS 4V/5V tables: spaces, mutation, optimizers, budgets, traces."""

from __future__ import annotations

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.objectives import make_objective
from ecnas_plugin.search import Budget, OPTIMIZERS, load_space, make_optimizer, run_search
from ecnas_plugin.study import metrics


def plain(acc: float, energy_kwh: float) -> float:
    return acc


@pytest.fixture(scope="module")
def space4(shared_data):
    return load_space("ecnas-4v", 108)


@pytest.fixture(scope="module")
def space5(shared_data):
    return load_space("ecnas-5v")


def test_spaces_hold_exactly_the_tables_cells(space4, space5):
    assert len(space4) == 91 and len(space5) == 2532
    assert set(space5.keys) == set(ep.load_table("ecnas-5v").frame["arch_key"])
    assert max(c.num_vertices for c in space5.cells) == 5


def test_unknown_space_and_epochs_are_named(shared_data):
    with pytest.raises(UnknownName, match="ecnas-9v.*available: ecnas-4v"):
        load_space("ecnas-9v")
    with pytest.raises(UnknownName, match="epoch budget 7.*4"):
        load_space("ecnas-5v", 7)


def test_mutation_stays_valid_inside_the_space_and_moves(space4, space5):
    rng = np.random.default_rng(0)
    cells = space4.cells + [space5.cells[i] for i in rng.choice(len(space5), 150, replace=False)]
    for cell in cells:
        space = space4 if cell in space4.cells else space5
        child = space.mutate(cell, rng)
        nb101.validate(child.matrix, child.ops)  # raises if invalid
        assert child.num_vertices <= space.max_vertices
        assert space.key(child) != space.key(cell)
        assert space.key(child) in space._index


def test_mutation_reaches_every_cell_of_the_4v_space(space4):
    rng = np.random.default_rng(1)
    reached = {space4.key(space4.mutate(cell, rng)) for cell in space4.cells for _ in range(100)}
    assert reached == set(space4.keys)


def test_evaluation_reads_the_table(space4):
    table = ep.load_table("ecnas-4v")
    rng = np.random.default_rng(3)
    ev = space4.evaluate(space4.cells[10], rng)
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
    with pytest.raises(UnknownName, match="'bananas'.*evolution, random, sms-emoa"):
        make_optimizer("bananas", space4, rng)
    with pytest.raises(UnknownName, match="'pop'.*population_size"):
        make_optimizer("evolution", space4, rng, pop=3)


@pytest.mark.parametrize("bad", [dict(), dict(evaluations=3, search_kwh=1.0), dict(evaluations=0),
                                 dict(search_kwh=-1.0)])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="budget"):
        Budget(**bad)
