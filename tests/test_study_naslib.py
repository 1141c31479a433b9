"""NASLib's own optimizers (``naslib:rs``, ``naslib:re``, ...) as study optimizers, through the bridge.

Config validation, the objective/budget mapping and the trace conversion need no NASLib. The
end-to-end study needs real NASLib (not on PyPI) and is skipped, with the reason, where it is
missing; the refusal test runs only where NASLib *is* missing (the main interpreter).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from ecnas_plugin.errors import DataFormatError, UnknownName
from ecnas_plugin.naslib.compat import NaslibUnavailable
from ecnas_plugin.naslib.config import parse_energy
from ecnas_plugin.objectives import make_objective
from ecnas_plugin.search import TRACE_COLUMNS, load_space
from ecnas_plugin.study import ConfigError, parse_study, run_study, write_report
from ecnas_plugin.study import naslib_runs
from conftest import NASLIB_MISSING as MISSING, needs_naslib



def tiny(**over) -> dict:
    cfg = {"name": "nl", "spaces": [{"name": "ecnas-4v", "epochs": 108}],
           "optimizers": ["random", "naslib:rs", {"name": "naslib:re", "params": {"population_size": 5, "sample_size": 3}}],
           "objectives": ["accuracy"], "budgets": [{"evaluations": 10}], "seeds": 2}
    cfg.update(over)
    return cfg


# ---------------------------------------------------------------- validation (no NASLib needed)
@pytest.mark.parametrize("over, what, name", [
    ({"optimizers": ["naslib:darts"]}, "optimizer", "naslib:darts"),
    ({"optimizers": [{"name": "naslib:re", "params": {"popsize": 5}}]}, "parameter of optimizer 'naslib:re'", "popsize"),
])
def test_bad_naslib_names_are_refused_before_the_naslib_check(over, what, name):
    with pytest.raises(UnknownName) as info:
        parse_study(tiny(**over))
    assert info.value.what == what and info.value.name == name and info.value.available


def test_any_nb101_table_is_accepted_for_naslib_optimizers():
    """No list of space names: every registered NB101 table with accuracies is a NASLib search space."""
    study = parse_study(tiny(spaces=["ecnas-4v-linscale"], optimizers=["random"]))
    naslib_runs.check_tables([s.space for s in study.runs])


def test_a_table_the_bridge_cannot_serve_is_refused_by_name(monkeypatch, unmovable_space):
    """A table of a space that neither maps onto NASLib's NB101 graphs nor can sample and move (the
    bridge's own class needs both) is refused before anything runs, naming the table and what it
    lacks; an NB201 table is served (by the bridge's own class, on its own accuracies)."""
    from ecnas_plugin.registry import get_registry
    from ecnas_plugin.table import TableSpec

    reg = get_registry()
    for table, space in (("flat-somewhere", unmovable_space), ("nb201-somewhere", "nasbench201")):
        monkeypatch.setitem(reg.items["tables"], table, TableSpec(table, space, "test", (), build=lambda files: None))
    naslib_runs.check_tables(["ecnas-4v", "nb201-somewhere"])
    with pytest.raises(ConfigError) as info:
        naslib_runs.check_tables(["ecnas-4v", "flat-somewhere"])
    assert info.value.key == "spaces[flat-somewhere]"
    assert "'flat-test' has no 'sample' capability" in str(info.value)


def test_unknown_optimizer_lists_the_naslib_ones_too():
    with pytest.raises(UnknownName, match=r"naslib:bananas, .*naslib:re, naslib:rs, parego, random"):
        parse_study(tiny(optimizers=["nsga2"]))


def test_naslib_optimizers_are_single_objective():
    with pytest.raises(ConfigError, match="single-objective"):
        parse_study(tiny(optimizers=[{"name": "naslib:re", "objectives": ["pareto"]}]))


@pytest.mark.skipif(not MISSING, reason="NASLib is installed here: the refusal is what a machine without it sees")
def test_without_naslib_a_naslib_study_is_refused_before_anything_runs(tmp_path, study_cli):
    cfg = tmp_path / "nl.yaml"
    cfg.write_text("name: nl\nspaces: [ecnas-4v]\noptimizers: [random, 'naslib:re']\nbudgets: [{evaluations: 5}]\n")
    args = study_cli(cfg, tmp_path / "out")
    with pytest.raises(NaslibUnavailable) as info:
        args.func(args)
    msg = str(info.value)
    assert "naslib:re" in msg and "NASLib is not installed" in msg
    assert "git clone -b Develop https://github.com/automl/NASLib" in msg  # how to install it
    assert "random, evolution, sms-emoa" in msg  # what works without it
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- mapping (no NASLib needed)
@pytest.mark.parametrize("name, params", [
    ("accuracy", {}), ("penalty", {"weight": 0.3}), ("soft", {}), ("soft", {"exponent": -0.2, "reference_kwh": 0.1}),
    ("constraint", {"limit_kwh": 0.3}),
])
def test_energy_section_is_the_built_in_objective(name, params):
    """The bridge, given the section, scores exactly as the built-in run's objective does."""
    section = naslib_runs.energy_section(name, params, epochs=108, search_kwh=None)
    cfg = parse_energy(section)  # the bridge's own parser accepts it
    assert cfg.epochs == 108 and cfg.search_budget_kwh is None
    bridge_params = cfg.objective_params()
    if cfg.objective in ("penalty", "soft"):
        bridge_params["reference_kwh"] = cfg.reference_kwh  # the RunState would fall back to the table median
    bridge = make_objective(cfg.objective, **bridge_params)
    built_in = (lambda acc, e: acc) if name == "accuracy" else make_objective(name, **params)
    for acc, energy in [(0.9, 0.05), (0.7, 0.4), (0.93, 0.9)]:
        assert bridge(acc, energy) == pytest.approx(built_in(acc, energy), abs=1e-12)


def test_kwh_budget_maps_to_the_bridge_budget_and_a_cap_on_epochs(shared_data):
    study = parse_study(tiny(budgets=[{"search_kwh": 1.5}], seeds=1, optimizers=["random"]))
    spec = study.runs[0]
    space = load_space("ecnas-4v", 108)
    cfg = naslib_runs.config_dict(dataclasses.replace(spec, optimizer="naslib:re"), space, "/x")
    assert cfg["energy"]["search_budget_kwh"] == 1.5 and cfg["search"]["epochs"] == len(space)
    assert cfg["optimizer"] == "re" and cfg["search_space"] == "ecnas-4v" and cfg["energy"]["epochs"] == 108


def test_convert_trace_recovers_repeats_and_true_values(shared_data):
    space = load_space("ecnas-4v", 108)
    keys, reps = [space.keys[3], space.keys[10], space.keys[3]], [2, 0, 1]
    vals = [float(space.repeats(k)["val_acc"][r]) for k, r in zip(keys, reps)]
    energy = [float(space.true_energy_kwh[space.keys.index(k)]) for k in keys]
    bridge = pd.DataFrame({"arch_key": keys, "val_acc": vals, "train_energy_kwh": energy,
                           "objective": vals, "search_energy_kwh": np.cumsum(energy)})
    trace = naslib_runs.convert_trace(bridge, space)
    assert list(trace.columns) == list(TRACE_COLUMNS) and list(trace["evaluation"]) == [1, 2, 3]
    for row, key, rep in zip(trace.itertuples(), keys, reps):
        rec, i = space.repeats(key), space.keys.index(key)
        assert row.val_acc == rec["val_acc"][rep] and row.test_acc == rec["test_acc"][rep]
        assert row.true_test_acc == space.true_test_acc[i] and row.true_energy_kwh == space.true_energy_kwh[i]
    best = int(np.argmax(vals[:2]))
    assert trace["best_true_test_acc"].iloc[1] == space.true_test_acc[space.keys.index(keys[best])]
    bad = bridge.assign(val_acc=bridge["val_acc"] + 0.123)
    with pytest.raises(DataFormatError, match="matches no repeat"):
        naslib_runs.convert_trace(bad, space)


# ---------------------------------------------------------------- end to end (real NASLib)
@needs_naslib
def test_naslib_study_runs_end_to_end_to_a_report(tmp_path, shared_data, monkeypatch):
    study = parse_study(tiny(objectives=["accuracy", {"name": "soft", "label": "soft"}],
                             optimizers=["random", "naslib:rs",
                                         {"name": "naslib:re", "params": {"population_size": 5, "sample_size": 3}}]))
    out = run_study(study, out_dir=tmp_path / "s", workers=1, progress=False)
    space = load_space("ecnas-4v", 108)
    idx = {k: i for i, k in enumerate(space.keys)}
    naslib_specs = [s for s in study.runs if s.optimizer.startswith("naslib:")]
    assert len(naslib_specs) == 2 * 2 * 2
    traces = {}
    for spec in naslib_specs:
        folder = out / "runs" / spec.run_id
        trace = pd.read_parquet(folder / "trace.parquet")
        traces[spec.run_id] = trace
        assert list(trace.columns) == list(TRACE_COLUMNS) and len(trace) == 10
        i = trace["arch_key"].map(idx)
        assert np.allclose(trace["true_test_acc"], space.true_test_acc[i])
        assert np.allclose(trace["true_energy_kwh"], space.true_energy_kwh[i])
        assert np.allclose(trace["search_energy_kwh"], np.cumsum(trace["true_energy_kwh"]))
        front = json.loads((folder / "naslib" / "pareto_front.json").read_text())
        assert front["search_energy_kwh"] == pytest.approx(trace["search_energy_kwh"].iloc[-1])
        assert (folder / "naslib" / "errors.json").is_file() and not list(folder.rglob("*.pth"))
        if spec.objective == "soft":
            soft = make_objective("soft")
            assert np.allclose(trace["objective"], [soft(a, e) for a, e in zip(trace["val_acc"], trace["train_energy_kwh"])])
        else:
            assert np.allclose(trace["objective"], trace["val_acc"])
    # NASLib's RE really is another search than NASLib's RS on the same seed
    rs, re_ = ([traces[s.run_id] for s in naslib_specs if s.optimizer == o and s.seed == 0 and s.objective == "accuracy"][0]
               for o in ("naslib:rs", "naslib:re"))
    assert list(rs["arch_key"]) != list(re_["arch_key"])

    report = write_report(out)
    summary = pd.read_csv(out / "summary.csv")
    assert {"naslib:rs", "naslib:re", "random"} <= set(summary["optimizer"])
    assert summary["hv_mean"].notna().all() and (summary["evaluations"] == 10).all()
    assert "naslib:re" in report.read_text()

    # seeded: the same cell run again gives the same trace; and finished runs are not rerun
    re_entry = {"name": "naslib:re", "params": {"population_size": 5, "sample_size": 3}}
    again = run_study(parse_study(tiny(seeds=[0], optimizers=[re_entry])), out_dir=tmp_path / "t",
                      workers=1, progress=False)
    spec = next(s for s in naslib_specs if s.optimizer == "naslib:re" and s.seed == 0 and s.objective == "accuracy")
    pd.testing.assert_frame_equal(pd.read_parquet(again / "runs" / spec.run_id / "trace.parquet"), traces[spec.run_id])

    def boom(*a, **k):
        raise AssertionError("a finished NASLib run was run again")

    monkeypatch.setattr(naslib_runs, "run_naslib", boom)
    run_study(study, out_dir=out, workers=1, progress=False)


@needs_naslib
def test_naslib_run_stops_at_the_search_energy_budget(tmp_path, shared_data):
    study = parse_study(tiny(optimizers=[{"name": "naslib:re", "params": {"population_size": 5, "sample_size": 3}}],
                             budgets=[{"search_kwh": 2.0}], seeds=[0]))
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    trace = pd.read_parquet(out / "runs" / study.runs[0].run_id / "trace.parquet")
    spent = trace["search_energy_kwh"].to_numpy()
    assert spent[-1] > 2.0 and spent[-2] <= 2.0  # the crossing evaluation is the last, as in a built-in run
    assert math.isclose(spent[-1], trace["train_energy_kwh"].sum())
