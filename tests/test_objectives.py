"""Scalarisations, search-energy budget, Pareto front and hypervolume (ecnas_plugin.objectives)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ecnas_plugin import objectives as ob
from ecnas_plugin.errors import UnknownName


def test_penalty_subtracts_weighted_normalised_energy():
    f = ob.make_objective("penalty", weight=0.2, reference_kwh=0.5)
    assert f(0.9, 0.25) == pytest.approx(0.9 - 0.2 * 0.5)
    assert f(0.9, 0.0) == 0.9
    assert f(0.9, 0.1) > f(0.9, 0.2)


def test_constraint_ranks_every_infeasible_model_below_every_feasible_one():
    f = ob.Constraint(limit_kwh=0.02)
    assert f(0.7, 0.02) == 0.7 and f.feasible(0.02)
    assert not f.feasible(0.021)
    infeasible = [f(0.99, e) for e in (0.021, 0.03, 0.1)]
    assert max(infeasible) < f(0.0, 0.019)
    assert infeasible == sorted(infeasible, reverse=True)  # closer to the limit is better


def test_soft_matches_mnasnet_form():
    f = ob.Soft(exponent=-0.07, reference_kwh=0.5)
    assert f(0.8, 1.0) == pytest.approx(0.8 * 2.0 ** -0.07)
    assert f(0.8, 0.25) > 0.8 > f(0.8, 1.0)
    with pytest.raises(ValueError, match="energy > 0"):
        f(0.8, 0.0)


def test_chebyshev_redraws_weights_from_its_own_seeded_stream():
    a, b = ob.Chebyshev(reference_kwh=1.0, seed=3), ob.Chebyshev(reference_kwh=1.0, seed=3)
    state = np.random.get_state()
    draws = [a.redraw() for _ in range(5)]
    assert draws == [b.redraw() for _ in range(5)]
    assert len(set(draws)) == 5 and all(w + v == pytest.approx(1) for w, v in draws)
    assert np.all(np.random.get_state()[1] == state[1])  # global numpy stream untouched
    a.weights = (0.25, 0.75)
    assert a(0.6, 0.2) == pytest.approx(-max(0.25 * 0.4, 0.75 * 0.2))


@pytest.mark.parametrize("name,params,bad", [
    ("penalty", {"weight": -1}, "weight"), ("penalty", {"reference_kwh": 0}, "reference_kwh"),
    ("constraint", {"limit_kwh": -0.1}, "limit_kwh"), ("soft", {"exponent": float("nan")}, "exponent"),
])
def test_bad_parameters_are_named(name, params, bad):
    with pytest.raises(ValueError, match=bad):
        ob.make_objective(name, **params)


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(UnknownName, match="chebyshev"):
        ob.make_objective("pareto")


def test_non_finite_inputs_are_refused():
    with pytest.raises(ValueError, match="finite"):
        ob.Penalty()(float("nan"), 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        ob.Penalty()(0.5, -1.0)


def test_budget_stops_only_after_it_is_exceeded():
    b = ob.SearchBudget(1.0)
    b.charge(0.6)
    b.charge(0.4)
    assert not b.exhausted  # exactly at the budget
    b.check()
    assert b.charge(0.01) == pytest.approx(1.01) and b.exhausted and b.evaluations == 3
    with pytest.raises(ob.BudgetExhausted, match="1 kWh exhausted"):
        b.check()
    assert not ob.SearchBudget(None).exhausted
    with pytest.raises(ValueError):
        b.charge(float("inf"))


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    acc, energy = rng.uniform(size=60), rng.uniform(size=60)
    acc[5], energy[5] = acc[4], energy[4]  # duplicates are kept together
    brute = [not any((acc[j] >= acc[i] and energy[j] <= energy[i]) and (acc[j] > acc[i] or energy[j] < energy[i])
                     for j in range(60)) for i in range(60)]
    assert ob.pareto_mask(acc, energy).tolist() == brute


def test_hypervolume_of_two_points_is_the_union_of_their_boxes():
    # points in (error, energy): (0.2, 0.3) and (0.4, 0.1); reference (1, 1)
    hv = ob.hypervolume([0.8, 0.6], [0.3, 0.1], reference=(1.0, 1.0))
    boxes = 0.8 * 0.7 + 0.6 * 0.9 - 0.6 * 0.7
    assert hv == pytest.approx(boxes)
    # dominated points and points beyond the reference add nothing
    assert ob.hypervolume([0.8, 0.6, 0.5, 0.9], [0.3, 0.1, 0.5, 2.0], (1.0, 1.0)) == pytest.approx(boxes)
    assert ob.hypervolume([], [], (1.0, 1.0)) == 0.0


def test_hypervolume_grows_monotonically_with_the_set():
    rng = np.random.default_rng(1)
    acc, energy = rng.uniform(size=30), rng.uniform(size=30)
    values = [ob.hypervolume(acc[:k], energy[:k], (1.0, 1.0)) for k in range(1, 31)]
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_hypervolume_rejects_bad_input():
    with pytest.raises(ValueError, match="reference"):
        ob.hypervolume([0.5], [0.1], (1.0,))
    with pytest.raises(ValueError, match="accuracies"):
        ob.hypervolume([0.5, 0.6], [0.1], (1.0, 1.0))


@pytest.mark.parametrize("objective", [ob.Penalty(weight=0.3, reference_kwh=0.02), ob.Constraint(limit_kwh=0.015),
                                       ob.Soft(exponent=-0.07, reference_kwh=0.02)])
def test_affine_form_is_the_objective_bit_for_bit(objective):
    rng = np.random.default_rng(0)
    form = ob.affine_form(objective)
    for acc, energy in zip(rng.uniform(0, 1, 500), rng.uniform(0.001, 0.04, 500)):
        a, b = form(float(energy))
        assert a * float(acc) + b == objective(float(acc), float(energy))
    with pytest.raises(ValueError, match="energy"):
        form(float("nan"))


def test_chebyshev_has_no_affine_form():
    assert ob.affine_form(ob.Chebyshev(reference_kwh=0.02)) is None
