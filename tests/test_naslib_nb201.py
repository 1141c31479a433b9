"""The bridge on NASLib's own NB201 space: spaces and tables come from the registry, and the
``energy:`` section is checked before NASLib loads its data file.

The NB201 energy table is the example package's real measured one (``example-nb201-flowers17-cpu``,
registered where the package is installed; elsewhere loaded from ``examples/`` and registered for
the test). NASLib's own NB201 data file (``nb201_cifar10_full_training.pickle``) is not available
here; where a test needs a ``dataset_api``, it is the smallest honest one: the table's own
Flowers-17 accuracies, under the dataset key NASLib's NB201 query reads. It tests the plumbing
(keys, objective, truth mode), not NB201's CIFAR-10 numbers.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import ecnas_plugin as ep
from ecnas_plugin.adapters import nasbench201 as n201
from ecnas_plugin.naslib import spaces
from ecnas_plugin.naslib.config import ConfigError, parse_energy
from ecnas_plugin.naslib.trace import STATE_KEY, EnergySource, RunState
from ecnas_plugin.registry import get_registry
from ecnas_plugin.table import EnergyTable, TableSpec
from conftest import needs_naslib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ecnas-example-tables" / "src" / "ecnas_example_tables"
NB201_TABLE = "example-nb201-flowers17-cpu"


@pytest.fixture
def nb201(monkeypatch) -> EnergyTable:
    """The example package's NB201 table, registered (as installed, or for this test only)."""
    tables = get_registry().items["tables"]
    if NB201_TABLE not in tables:
        table = EnergyTable.load(EXAMPLE / "data" / "nb201-flowers17-cpu")
        monkeypatch.setitem(tables, NB201_TABLE, TableSpec(NB201_TABLE, "nasbench201", "example", (),
                                                           build=lambda files: table))
        load = ep.load_table
        monkeypatch.setattr(ep, "load_table", lambda name, *a, **k: table if name == NB201_TABLE else load(name, *a, **k))
        return table
    return ep.load_table(NB201_TABLE)


def _config(search_space: str, energy, dataset: str = "cifar10") -> dict:
    return {"search_space": search_space, "dataset": dataset, "seed": 0, "search": {}, "energy": energy}


# ---------------------------------------------------------------- from the registry (no NASLib)
class _Graph:
    """What the bridge reads of a NASLib NB201 graph: get_type() and get_hash()."""

    def __init__(self, arch_str: str):
        self.op_indices = list(n201.to_op_indices(arch_str))

    def get_type(self) -> str:
        return "nasbench201"

    def get_hash(self) -> tuple:
        return tuple(self.op_indices)


def test_graph_types_and_targets_come_from_the_registered_spaces(nb201):
    assert spaces.for_graph_type("nasbench201") is get_registry().space("nasbench201")
    key = nb201.frame["arch_key"].iloc[0]
    assert spaces.key_of(_Graph(key)) == key
    with pytest.raises(ConfigError) as info:
        spaces.for_graph_type("nasbench301")
    assert info.value.key == "search_space"
    t = spaces.target("nasbench201")
    assert t.space.name == "nasbench201" and t.table is None and t.naslib_space == "nasbench201"
    served = spaces.target("ecnas-4v")
    assert served.table == "ecnas-4v" and served.space.name == "nasbench101"
    assert spaces.target("darts") is None  # NASLib's, no energy: the bridge leaves it alone
    # An NB201 table named as the search space is searched on its own accuracies, through the
    # bridge's own class (NASLib's NB201 graphs would answer from NASLib's data, not the table's)
    own = spaces.target(NB201_TABLE)
    assert own.table == NB201_TABLE and own.serving == spaces.TABULAR and NB201_TABLE in spaces.servable_tables()
    assert spaces.target("ecnas-4v").serving == spaces.SUBSPACE  # NB101 tables keep NASLib's graphs
    assert spaces.default_table(t.space) == NB201_TABLE  # the only NB201 table registered


@pytest.mark.parametrize("energy, says", [
    ({"table": "no-such-table"}, "no-such-table"),
    ({"table": "ecnas-4v"}, "holds space 'nasbench101'"),
    ({"table": NB201_TABLE, "dataset": "flowers17"}, "not all 15,625 of NASLib's 'nasbench201' space"),
    # the default table is the only NB201 one: Flowers-17 energy, never paired silently with CIFAR-10
    (True, "holds energy of flowers17, not of the run's dataset 'cifar10'; set energy.dataset"),
    ({"table": NB201_TABLE, "dataset": "cifar100"}, "has no dataset 'cifar100'"),
    ({"table": NB201_TABLE, "dataset": "flowers17", "epochs": 200}, "200"),
])
def test_a_bad_nb201_energy_table_is_a_named_config_error(nb201, shared_data, energy, says):
    cfg = _config("nasbench201", energy)
    key = ("energy.epochs" if isinstance(energy, dict) and "epochs" in energy
           else "energy.dataset" if energy is True or "cifar100" in str(energy) else "energy.table")
    with pytest.raises(ConfigError) as info:
        spaces.plan(cfg, spaces.target("nasbench201"))
    assert info.value.key == key and says in str(info.value)


def test_no_nb201_table_at_all_is_named(monkeypatch):
    tables = {k: v for k, v in get_registry().items["tables"].items() if v.space != "nasbench201"}
    monkeypatch.setitem(get_registry().items, "tables", tables)
    with pytest.raises(ConfigError, match="no energy table is registered for space 'nasbench201'") as info:
        spaces.plan(_config("nasbench201", True), spaces.target("nasbench201"))
    assert info.value.key == "energy.table"


def test_a_served_table_not_covered_by_the_energy_table_is_refused_before_the_search(shared_data):
    """Issue 15 item 14's case: ecnas-4v energy on the 5-vertex space is refused up front."""
    from ecnas_plugin.naslib import subspace

    api = subspace.build_dataset_api("ecnas-5v")
    with pytest.raises(ConfigError, match=r"lacks 2441 of the 2532 cells") as info:
        spaces.plan(_config("ecnas-5v", {"table": "ecnas-4v"}), spaces.target("ecnas-5v"), served=api["nb101_data"])
    assert info.value.key == "energy.table"
    ok = spaces.plan(_config("ecnas-5v", True), spaces.target("ecnas-5v"), served=api["nb101_data"])
    assert ok.energy.epochs == 4 and len(ok.source.energy) == 2532


def test_any_nb101_table_is_served_by_name(shared_data):
    """No list of spaces: ecnas-4v-linscale (scaled energies, 4 budgets) is served like ecnas-4v."""
    from ecnas_plugin.naslib import subspace

    api = subspace.build_dataset_api("ecnas-4v-linscale", epochs=36)
    bench = api["nb101_data"]
    assert api["ecnas_space"] == "ecnas-4v-linscale" and len(bench.subspace.keys) == 91
    assert bench.subspace.max_vertices == 4 and bench.default_epochs == 36
    key = bench.subspace.keys[5]
    s = ep.load_table("ecnas-4v-linscale").slice(epochs=36)
    assert bench.mean(key)["train_energy_kwh"] == pytest.approx(float(s.of(key)["train_energy_kwh"].mean()))
    checked = spaces.plan(_config("ecnas-4v-linscale", {"epochs": 36}), spaces.target("ecnas-4v-linscale"), served=bench)
    assert checked.source.values[key].source == "scaled"  # the table's own label travels


def test_an_energy_only_table_cannot_be_served(shared_data):
    from ecnas_plugin.errors import SchemaError
    from ecnas_plugin.naslib import subspace

    with pytest.raises(SchemaError, match="energy-only table"):
        subspace.build_dataset_api("ecnas-7v")


# ---------------------------------------------------------------- with NASLib
def _nb201_api(table: EnergyTable) -> dict:
    """``nb201_data`` from the table's own accuracies (percent, one 'epoch'), under NASLib's
    ``cifar10-valid`` key (NASLib's NB201 query reads no other name for cifar10)."""
    s = table.slice()
    data = {}
    for i, key in enumerate(s.keys):
        acc = {"train_acc1es": [100 * float(s.means.get("train_acc", s.means["val_acc"])[i])],
               "eval_acc1es": [100 * float(s.means["val_acc"][i])]}
        data[key] = {"cifar10-valid": acc}
    return {"nb201_data": data}


@needs_naslib
def test_energy_is_checked_before_naslib_loads_its_nb201_data(nb201, tmp_path, monkeypatch, capsys):
    """``search_space: nasbench201`` with a non-covering table: the named error comes first, and
    NASLib's data loader is never called; with energy off NASLib loads (and here lacks) its file."""
    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import runner

    bridge.install()
    import naslib.utils

    calls = []
    real = naslib.utils.get_dataset_api
    monkeypatch.setattr(naslib.utils, "get_dataset_api", lambda *a, **k: calls.append(a) or real(*a, **k))
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/naslib/ecnas-5v_rs_penalty.yaml").read_text())
    for energy, key in (({"table": NB201_TABLE, "dataset": "flowers17"}, "energy.table"),
                        ({"table": "nope"}, "energy.table"),
                        ({"table": NB201_TABLE, "dataset": "flowers17", "hardware": "gpu: nope"}, "energy.hardware")):
        config = dict(base, search_space="nasbench201", out_dir=str(tmp_path / "o"), energy=energy)
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        assert runner.run(str(path), []) == 2
        err = capsys.readouterr().err
        # the run ends on the named error (NASLib's own log lines may come before it)
        assert err.strip().splitlines()[-1].startswith(f"ecnas naslib run: config key {key!r}")
    assert calls == []
    # energy off: NASLib's own loader runs (and, without its NB201 file here, fails inside NASLib)
    config = dict(base, search_space="nasbench201", out_dir=str(tmp_path / "o"))
    config.pop("energy")
    path.write_text(yaml.safe_dump(config))
    cfg = runner.load_config(str(path), [])
    try:
        runner.search(cfg)
    except Exception:  # noqa: BLE001  (FileNotFoundError from NASLib where its data file is absent)
        pass
    assert calls == [("nasbench201", "cifar10")]


@needs_naslib
def test_an_nb201_table_attached_to_naslibs_own_nb201_graphs(nb201):
    """NASLib's NasBench201SearchSpace graphs, keyed through the registered NB201 mapping: the
    optimizer's VAL_ACCURACY is the energy-aware objective, truth mode and other metrics are not."""
    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import hooks

    bridge.install()
    from naslib.search_spaces import NasBench201SearchSpace
    from naslib.search_spaces.core.query_metrics import Metric

    api = _nb201_api(nb201)
    cfg = parse_energy({"objective": "penalty", "weight": 0.5})
    source = EnergySource(nb201, cfg)
    assert source.dataset == "flowers17"  # the energy's own dataset, recorded in the front
    state = RunState(cfg, source, accuracy_scale=hooks.ACCURACY_SCALE)
    api[STATE_KEY] = state
    ref = source.median_energy
    keys = list(source.energy)
    for key in keys:
        g = NasBench201SearchSpace()
        g.instantiate_model = False
        g.set_spec(list(n201.to_op_indices(key)))
        val = api["nb201_data"][key]["cifar10-valid"]["eval_acc1es"][-1]
        got = g.query(Metric.VAL_ACCURACY, "cifar10", dataset_api=api)
        assert got == pytest.approx(val - 100 * 0.5 * source.energy[key] / ref)
        assert g.query(Metric.TRAIN_ACCURACY, "cifar10", dataset_api=api) == api["nb201_data"][key]["cifar10-valid"]["train_acc1es"][-1]
        with hooks.truth_mode():
            assert g.query(Metric.VAL_ACCURACY, "cifar10", dataset_api=api) == val
    trace = state.trace()
    label = nb201.frame["source"].iloc[0]  # the table's own label (measured, or estimated on a CPU without RAPL)
    assert trace["arch_key"].tolist() == keys and (trace["energy_source"] == label).all()
    assert all(math.isclose(a, b) for a, b in zip(trace["train_energy_kwh"], [source.energy[k] for k in keys]))
    front = state.front()
    assert front["table"] == NB201_TABLE and front["energy_dataset"] == "flowers17"
    json.dumps(front)


# ---------------------------------------------------------------- every refusal names its key (issue 15, item 14)
class _Cfg(dict):
    """A NASLib-like config (attribute access) without NASLib."""

    __getattr__ = dict.__getitem__


def _unavailable(monkeypatch, name: str) -> None:
    """Register NB101 table ``name`` whose data cannot be had here."""
    from ecnas_plugin.errors import DataUnavailable

    def build(files):
        raise DataUnavailable(f"the files of {name} are not in the mirror")

    monkeypatch.setitem(get_registry().items["tables"], name, TableSpec(name, "nasbench101", "test", (), build=build))


@pytest.mark.parametrize("search_space, energy, key, says", [
    ("nasbench101", {"table": "nope"}, "energy.table", "unknown table 'nope'"),
    ("nasbench101", {"table": "ecnas-4v"}, "energy.table", "not all 423,624 of NASLib's 'nasbench101'"),
    ("nasbench201", {"table": "ecnas-5v"}, "energy.table", "holds space 'nasbench101'"),
    ("nasbench101", {"table": "gone-nb101"}, "energy.table", "not in the mirror"),
    ("ecnas-5v", {"table": "ecnas-4v"}, "energy.table", "lacks 2441 of the 2532 cells"),
    ("ecnas-5v", {"table": "nope"}, "energy.table", "unknown table 'nope'"),
    ("ecnas-5v", {"table": "gone-nb101"}, "energy.table", "not in the mirror"),
    ("ecnas-4v", {"column": "gpu_power_kwh"}, "energy.column", "unknown energy column 'gpu_power_kwh'"),
    ("nasbench101", {"table": "ecnas-4v", "column": "nope_kwh"}, "energy.column", "unknown energy column"),
    ("nasbench101", {"table": "ecnas-4v", "epochs": 5}, "energy.epochs", "5 not in table 'ecnas-4v'"),
    ("ecnas-4v", {"epochs": 5}, "energy.epochs", "epoch budget 5"),
    ("gone-nb101", True, "search_space", "not in the mirror"),
])
def test_every_energy_table_refusal_names_its_key(shared_data, monkeypatch, search_space, energy, key, says):
    """Whatever is wrong with the table (unknown, another space, not covering the space, its data not
    here, a column or budget it lacks), ``ecnas naslib run`` refuses naming the config key, before
    NASLib is imported or loads any data."""
    from ecnas_plugin.naslib import runner

    _unavailable(monkeypatch, "gone-nb101")
    before = set(sys.modules)
    with pytest.raises(ConfigError) as info:
        runner._search_space(_Cfg(search_space=search_space, dataset="cifar10", seed=0, search={}, energy=energy))
    assert info.value.key == key and says in str(info.value)
    assert not any(m == "naslib" or m.startswith("naslib.") for m in set(sys.modules) - before)


# ---------------------------------------------------------------- missing: predict on NASLib's NB201
@pytest.fixture
def nb201_predictor(nb201, tmp_path):
    """A LightGBM surrogate fitted on the NB201 table (as ``ecnas surrogate fit --table ... --model
    lightgbm --out DIR`` does), saved to a folder."""
    from ecnas_plugin.energy import surrogates as S

    model = S.fit(nb201.frame, "lightgbm", source_table=NB201_TABLE, folds=3, rounds=100)
    return model.save(tmp_path / "nb201-lightgbm")


def _outside(table: EnergyTable) -> str:
    """A cell of the NB201 space the table lacks."""
    have = set(table.frame["arch_key"])
    return next(k for k in get_registry().space("nasbench201").enumerate() if k not in have)


def test_predicted_nb201_energy_from_a_fitted_surrogate_is_planned(nb201, nb201_predictor):
    """The energy section names the NB201 table and a surrogate fitted on it: the plan accepts the
    table although it covers 60 of 15,625 cells, and a cell outside it is predicted, labelled, with σ."""
    from ecnas_plugin.energy import surrogates as S

    energy = {"table": NB201_TABLE, "dataset": "flowers17", "missing": "predict", "predictor": str(nb201_predictor)}
    checked = spaces.plan(_config("nasbench201", energy), spaces.target("nasbench201"))
    outside = _outside(nb201)
    cell = checked.source.get(outside)
    expected = S.Predictor.load(nb201_predictor).predict_energy([outside]).iloc[0]
    assert cell.source == "predicted" and cell.energy == pytest.approx(expected["train_energy_kwh"])
    assert cell.energy_sd == pytest.approx(expected["train_energy_sd_kwh"]) and cell.energy_sd > 0


@needs_naslib
def test_naslib_nb201_query_outside_the_table_gets_a_labelled_prediction(nb201, nb201_predictor, tmp_path):
    """NASLib's own ``nasbench201`` space, ``energy: {table: <NB201 table>, missing: predict,
    predictor: <its LightGBM surrogate>}``, through the optimizer's adapt_search_space: a table
    cell keeps the table's energy and label, a cell outside the table gets the surrogate's energy labelled
    ``predicted`` with its σ, in the trace, the front and errors.json's columns."""
    from fvcore.common.config import CfgNode

    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.energy import surrogates as S

    bridge.install()
    from naslib.optimizers import RandomSearch
    from naslib.search_spaces import NasBench201SearchSpace
    from naslib.search_spaces.core.query_metrics import Metric

    api = _nb201_api(nb201)
    outside = _outside(nb201)
    # NASLib's NB201 file is not here: the outside cell's accuracies are a stand-in (this test is
    # about its energy, which no table has)
    api["nb201_data"][outside] = {"cifar10-valid": {"train_acc1es": [61.0], "eval_acc1es": [55.0]}}
    config = CfgNode({"dataset": "cifar10", "seed": 0, "search": CfgNode({"fidelity": -1}),
                      "energy": CfgNode({"objective": "penalty", "weight": 0.5, "table": NB201_TABLE, "dataset": "flowers17",
                                         "missing": "predict", "predictor": str(nb201_predictor)})})
    optimizer = RandomSearch(config)
    optimizer.adapt_search_space(NasBench201SearchSpace(), dataset_api=api)
    state = api[STATE_KEY]
    measured = nb201.frame["arch_key"].iloc[0]
    for key in (measured, outside, outside):
        g = NasBench201SearchSpace()
        g.instantiate_model = False
        g.set_spec(list(n201.to_op_indices(key)))
        got = g.query(Metric.VAL_ACCURACY, "cifar10", dataset_api=api)
        truth = api["nb201_data"][key]["cifar10-valid"]["eval_acc1es"][-1]
        assert got == pytest.approx(truth - 100 * 0.5 * state.source.energy[key] / state.source.median_energy)
    trace = state.trace()
    expected = S.Predictor.load(nb201_predictor).predict_energy([outside]).iloc[0]
    rows = trace[trace["arch_key"] == outside]
    assert len(rows) == 2 and (rows["energy_source"] == "predicted").all()
    assert rows["train_energy_kwh"].tolist() == pytest.approx([expected["train_energy_kwh"]] * 2)
    assert rows["energy_sd_kwh"].tolist() == pytest.approx([expected["train_energy_sd_kwh"]] * 2)
    assert (rows["energy_sd_kwh"] > 0).all() and (rows["train_acc"] == 0.61).all()  # truth asked once, from NASLib
    row = trace[trace["arch_key"] == measured].iloc[0]
    label = nb201.frame["source"].iloc[0]  # the table's own label travels (measured, or estimated)
    assert row["energy_source"] == label != "predicted" and math.isnan(row["energy_sd_kwh"])
    assert row["train_energy_kwh"] == pytest.approx(nb201.frame.set_index("arch_key").loc[measured, "train_energy_kwh"])
    state.end_epoch(outside, None)
    assert state.columns["energy_source"] == ["predicted"]  # errors.json's column for that incumbent
    front = state.front()
    assert front["energy_sources"] == {label: 1, "predicted": 1}
    assert front["prediction"]["model"] == "lightgbm" and front["prediction"]["training_table"] == NB201_TABLE
    assert front["prediction"]["cells_predicted"] == 1 and front["provenance"]["naslib"]["version"]


@needs_naslib
def test_naslib_re_searches_an_nb201_table_on_its_own_accuracies(nb201, tmp_path, bridge):
    """The study worker's path on the example NB201 table: NASLib's RE moves inside the table, and
    every evaluation carries the table's accuracy, energy and its `estimated` label."""
    from ecnas_plugin.search import TRACE_COLUMNS, load_space
    from ecnas_plugin.study import naslib_runs
    from ecnas_plugin.study.config import RunSpec

    space = load_space(NB201_TABLE)
    spec = RunSpec(NB201_TABLE, space.epochs, "naslib:re", {"population_size": 4, "sample_size": 2}, "accuracy",
                   "accuracy", {}, 12, None, 0)
    trace = naslib_runs.run_naslib(spec, space, tmp_path / "run")
    assert list(trace.columns) == list(TRACE_COLUMNS) and len(trace) == 12
    assert set(trace["arch_key"]) <= set(space.keys) and (trace["source"] == "estimated").all()
    means = nb201.frame.groupby("arch_key")[["val_acc", "train_energy_kwh"]].mean()
    assert np.allclose(trace["true_energy_kwh"], trace["arch_key"].map(means["train_energy_kwh"]))
    assert np.allclose(trace["true_val_acc"], trace["arch_key"].map(means["val_acc"]))
