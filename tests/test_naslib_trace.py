"""Per-run energy state on the real ecnas-5v table: objective, budget, trace, Pareto front."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import ecnas_plugin as ep
from ecnas_plugin import objectives as ob
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.naslib.config import ConfigError, parse_energy
from ecnas_plugin.naslib.trace import FRONT_FILE, TRACE_FILE, EnergySource, RunState


@pytest.fixture(scope="module")
def table(shared_data):
    return ep.load_table("ecnas-5v")


@pytest.fixture(scope="module")
def means(table):
    return table.frame.groupby("arch_key")[["train_energy_kwh", "val_acc", "test_acc"]].mean()


def _state(table, **energy):
    cfg = parse_energy(energy or True)
    return RunState(cfg, EnergySource(table, cfg, "cifar10"), seed=0)


def test_evaluate_returns_the_objective_and_traces_the_truth(table, means, tmp_path):
    state = _state(table, objective="penalty", weight=0.5)
    ref = float(np.median(means["train_energy_kwh"]))
    keys = list(means.index[:30])
    state.begin_epoch(0)
    for k in keys:
        val = float(means.loc[k, "val_acc"])
        assert state.evaluate(k, val) == pytest.approx(val - 0.5 * means.loc[k, "train_energy_kwh"] / ref)
    trace = state.trace()
    assert trace["arch_key"].tolist() == keys
    assert np.allclose(trace["test_acc"], means.loc[keys, "test_acc"])
    assert np.allclose(trace["search_energy_kwh"], np.cumsum(means.loc[keys, "train_energy_kwh"]))
    state.write(tmp_path)
    written = pd.read_parquet(tmp_path / TRACE_FILE)
    assert list(written.columns) == list(trace.columns) and len(written) == 30
    front = json.loads((tmp_path / FRONT_FILE).read_text())
    acc, energy = means.loc[keys, "val_acc"], means.loc[keys, "train_energy_kwh"]
    ref_point = (1.0, float(means["train_energy_kwh"].max()))
    assert front["reference_point"] == {"error": 1.0, "train_energy_kwh": ref_point[1]}
    assert front["hypervolume_val"] == pytest.approx(ob.hypervolume(acc, energy, ref_point))
    assert {p["arch_key"] for p in front["front"]} == set(np.array(keys)[ob.pareto_mask(acc, energy)])


def test_budget_stops_at_the_next_epoch(table, means):
    state = _state(table, search_budget_kwh=0.05)
    keys = iter(means.index)
    with pytest.raises(ob.BudgetExhausted):
        for epoch in range(100):
            state.begin_epoch(epoch)
            state.evaluate(next(keys), 0.5)
    assert state.budget.spent_kwh > 0.05
    assert state.budget.spent_kwh - state.trace()["train_energy_kwh"].iloc[-1] <= 0.05


def test_constraint_rows_say_whether_they_are_feasible(table, means):
    state = _state(table, objective="constraint", limit_kwh=0.015)
    for k in means.index[:50]:
        state.evaluate(k, 0.6)
    t = state.trace()
    assert (t["feasible"] == (t["train_energy_kwh"] <= 0.015)).all()
    assert (t.loc[~t["feasible"], "objective"] < 0).all() and (t.loc[t["feasible"], "objective"] == 0.6).all()


def test_chebyshev_weights_change_per_epoch(table, means):
    state = _state(table, objective="chebyshev")
    for epoch in range(4):
        state.begin_epoch(epoch)
        state.evaluate(means.index[epoch], 0.6)
    assert state.trace()["weight_acc"].nunique() == 4


def test_peeking_is_not_charged(table, means):
    state = _state(table)
    with state.peeking():
        state.evaluate(means.index[0], 0.5)
    assert state.budget.evaluations == 0 and state.trace().empty


def test_missing_cell_and_bad_slice_are_named(table):
    state = _state(table)
    with pytest.raises(UnknownName, match="0" * 32):
        state.evaluate("0" * 32, 0.5)
    cfg = parse_energy({"epochs": 108})
    with pytest.raises(ConfigError, match="energy.epochs"):
        EnergySource(table, cfg)
    with pytest.raises(ConfigError, match="energy.column.*unknown energy column 'infer_energy_mj'") as info:
        EnergySource(table, replace(cfg, column="infer_energy_mj", epochs=None))
    assert info.value.key == "energy.column"  # the key to change, like every other refusal


def test_epoch_columns_for_errors_json(table, means):
    state = _state(table)
    k = means.index[3]
    state.evaluate(k, 0.5)
    state.end_epoch(k, 0.4)
    assert state.columns == {"train_energy_kwh": [pytest.approx(means.loc[k, "train_energy_kwh"])],
                             "energy_source": ["measured"], "objective": [0.4], "search_energy_kwh": [pytest.approx(means.loc[k, "train_energy_kwh"])],
                             "evaluations": [1]}


def test_a_non_finite_accuracy_is_refused(table, means):
    state = _state(table)
    k = means.index[0]
    state.evaluate(k, 0.5)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite accuracy"):
            state.evaluate(k, bad)
    assert state.budget.evaluations == 1 and len(state.trace()) == 1


def test_percent_scale_epochs_and_budget_agree_with_the_trace(table, means):
    """NASLib's accuracies are percent: the state answers in percent, records fractions."""
    cfg = parse_energy({"objective": "penalty", "weight": 0.5})
    in_percent = RunState(cfg, EnergySource(table, cfg, "cifar10"), accuracy_scale=100.0)
    in_fractions = _state(table, objective="penalty", weight=0.5)
    keys = list(means.index[:6])
    for epoch, k in enumerate(keys):
        for state in (in_percent, in_fractions):
            state.begin_epoch(epoch)
        val = float(means.loc[k, "val_acc"])
        assert in_percent.evaluate(k, 100 * val) == pytest.approx(100 * in_fractions.evaluate(k, val))
        assert in_percent.evaluate(k, 100 * val) == pytest.approx(100 * in_fractions.evaluate(k, val))
    a, b = in_percent.trace(), in_fractions.trace()
    assert a["epoch"].tolist() == [e for e in range(6) for _ in (0, 1)]
    assert np.allclose(a["val_acc"], b["val_acc"]) and np.allclose(a["objective"], b["objective"])
    energies = means.loc[[k for k in keys for _ in (0, 1)], "train_energy_kwh"].to_numpy()
    assert np.allclose(a["search_energy_kwh"], np.cumsum(energies))
    assert in_percent.budget.spent_kwh == a["search_energy_kwh"].iloc[-1]
    assert in_percent.budget.evaluations == 12
    assert in_percent.last_evaluation() == (keys[-1], pytest.approx(b["objective"].iloc[-1]))


def test_recording_resumes_after_nested_peeking(table, means):
    state = _state(table)
    k = means.index[0]
    state.evaluate(k, 0.5)
    with state.peeking():
        with state.peeking():
            state.evaluate(k, 0.5)
        state.evaluate(k, 0.5)
    state.evaluate(k, 0.6)
    assert state.trace()["val_acc"].tolist() == [0.5, 0.6]
