"""``energy.missing: predict``: cells the table lacks get the shipped surrogate's labelled prediction.

Real tables (ecnas-5v, ecnas-4v) and the real shipped surrogate; a "partial" table is the real
ecnas-5v table with some cells left out, so those cells must be predicted. The last test runs real
NASLib and is skipped (with the reason) where NASLib is not installed.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import ecnas_plugin as ep
from ecnas_plugin.energy import surrogates as S
from ecnas_plugin.errors import UnknownName
from ecnas_plugin.naslib import compat
from ecnas_plugin.naslib.config import ConfigError, parse_energy
from ecnas_plugin.naslib.trace import FRONT_FILE, TRACE_FILE, EnergySource, RunState
from ecnas_plugin.table import EnergyTable


@pytest.fixture(scope="module")
def full(shared_data):
    return ep.load_table("ecnas-5v")


@pytest.fixture(scope="module")
def partial(full):
    """ecnas-5v without every third cell (sorted by key), as a real EnergyTable; ``dropped``: those cells."""
    keys = sorted(full.frame["arch_key"].unique())
    dropped = set(keys[::3])
    frame = full.frame[~full.frame["arch_key"].isin(dropped)].reset_index(drop=True)
    table = EnergyTable(frame, replace(full.manifest, name="ecnas-5v-partial"))
    table.dropped = sorted(dropped)
    return table


def _predicted(keys: list[str]) -> pd.DataFrame:
    return S.predict_energy(keys).set_index("arch_key")


def test_missing_cells_are_predicted_and_labelled(partial, full, tmp_path):
    cfg = parse_energy({"objective": "penalty", "missing": "predict"})
    state = RunState(cfg, EnergySource(partial, cfg, "cifar10"))
    measured = sorted(set(partial.frame["arch_key"]))[:20]
    missing = partial.dropped[:20]
    state.begin_epoch(0)
    for m, p in zip(measured, missing):
        state.evaluate(m, 0.7)
        state.evaluate(p, 0.6)
    trace = state.trace()
    assert set(trace.loc[trace["arch_key"].isin(measured), "energy_source"]) == {"measured"}
    pred_rows = trace[trace["arch_key"].isin(missing)]
    assert set(pred_rows["energy_source"]) == {"predicted"}
    expected = _predicted(missing)
    assert np.allclose(pred_rows["train_energy_kwh"], expected.loc[pred_rows["arch_key"], "train_energy_kwh"])
    assert np.allclose(pred_rows["energy_sd_kwh"], expected.loc[pred_rows["arch_key"], "train_energy_sd_kwh"])
    assert (pred_rows["energy_sd_kwh"] > 0).all() and trace.loc[trace["energy_source"] == "measured",
                                                                "energy_sd_kwh"].isna().all()
    # the measured values are the table's, not the surrogate's
    means = full.frame.groupby("arch_key")["train_energy_kwh"].mean()
    meas_rows = trace[trace["energy_source"] == "measured"]
    assert np.allclose(meas_rows["train_energy_kwh"], means.loc[meas_rows["arch_key"]])
    # a predicted cell has no table accuracies: the trace shows what the benchmark answered
    assert (pred_rows["val_acc_mean"] == 0.6).all() and pred_rows["test_acc"].isna().all()
    state.end_epoch(missing[0], None)
    assert state.columns["energy_source"] == ["predicted"]
    state.write(tmp_path)
    assert list(pd.read_parquet(tmp_path / TRACE_FILE)["energy_source"]) == list(trace["energy_source"])
    front = json.loads((tmp_path / FRONT_FILE).read_text())
    assert front["energy_sources"] == {"measured": 20, "predicted": 20}
    assert front["prediction"]["source"] == "predicted" and front["prediction"]["epoch_scaling"] is None
    assert front["prediction"]["context"]["campaign"] == "ecnas-5v" and front["hypervolume_test_cells"] == 20
    assert all(p["energy_source"] in ("measured", "predicted") for p in front["front"])


def test_error_policy_still_refuses(partial):
    cfg = parse_energy({"objective": "penalty"})
    state = RunState(cfg, EnergySource(partial, cfg, "cifar10"))
    with pytest.raises(UnknownName, match=partial.dropped[0]):
        state.evaluate(partial.dropped[0], 0.5)


def test_truth_supplies_accuracies_of_a_predicted_cell(partial):
    cfg = parse_energy({"objective": "constraint", "limit_kwh": 0.015, "missing": "predict"})
    state = RunState(cfg, EnergySource(partial, cfg, "cifar10"))
    key = partial.dropped[5]
    state.evaluate(key, 0.61, truth=lambda: (0.8, 0.59))
    state.evaluate(key, 0.62, truth=lambda: pytest.fail("asked twice"))
    row = state.trace().iloc[-1]
    assert (row["train_acc"], row["test_acc"], row["energy_source"]) == (0.8, 0.59, "predicted")
    assert row["feasible"] == (row["train_energy_kwh"] <= 0.015)


def test_another_campaign_needs_calibration_and_another_budget_needs_scaling(shared_data):
    four = ep.load_table("ecnas-4v")  # campaign ecnas-4v, budgets 4/12/36/108; the model: ecnas-5v, 4 epochs
    outside = sorted(set(ep.load_table("ecnas-5v").frame["arch_key"]) - set(four.frame["arch_key"]))[0]
    with pytest.raises(ConfigError, match="energy.calibrate.*campaign 'ecnas-5v'.*'ecnas-4v'"):
        EnergySource(four, parse_energy({"epochs": 4, "missing": "predict"}), "cifar10")
    with pytest.raises(ConfigError, match="energy.epoch_scaling.*4-epoch energy.*108 epochs"):
        EnergySource(four, parse_energy({"epochs": 108, "missing": "predict", "calibrate": True}), "cifar10")

    at4 = EnergySource(four, parse_energy({"epochs": 4, "missing": "predict", "calibrate": True}), "cifar10")
    base = at4.get(outside)
    assert base.source == "predicted" and at4.predict.describe()["calibration"]["from_campaign"] == "ecnas-5v"
    assert at4.predict.describe()["context"]["campaign"] == "ecnas-4v"

    linear = EnergySource(four, parse_energy({"epochs": 108, "missing": "predict", "calibrate": True,
                                              "epoch_scaling": "linear"}), "cifar10")
    assert linear.get(outside).energy == pytest.approx(27 * base.energy)
    assert linear.get(outside).source == "predicted"
    assert linear.predict.describe()["epoch_scaling"]["target_epochs"] == 108

    fitted = EnergySource(four, parse_energy({"epochs": 108, "missing": "predict", "calibrate": True,
                                              "epoch_scaling": "fit"}), "cifar10")
    scaling = S.EpochScaling.fit(four.frame, 4)
    assert fitted.get(outside).energy == pytest.approx(float(scaling.scale(base.energy, 108)))
    assert fitted.get(outside).energy_sd / fitted.get(outside).energy == pytest.approx(base.energy_sd / base.energy)


def test_scaling_never_goes_down_and_other_columns_are_refused(shared_data, monkeypatch):
    four = ep.load_table("ecnas-4v")
    model = replace(S.default_predictor(), context=S.Context(campaign="ecnas-4v", epochs=12,
                                                             hardware="Quadro RTX 6000", dataset="cifar10"))
    monkeypatch.setattr(S.predictor, "_DEFAULT", model)  # as if the shipped model were a 12-epoch one
    with pytest.raises(ConfigError, match="energy.epochs.*cannot fill a 4-epoch table"):
        EnergySource(four, parse_energy({"epochs": 4, "missing": "predict"}), "cifar10")
    with pytest.raises(ConfigError, match="energy.missing.*train_energy_kwh only"):
        EnergySource(ep.load_table("ecnas-5v"), parse_energy({"missing": "predict", "column": "gpu_energy_kwh"}),
                     "cifar10")


def test_scaled_table_values_keep_their_label(shared_data):
    """ecnas-4v-linscale: measured at 4 epochs, linearly scaled above; the trace says which."""
    table = ep.load_table("ecnas-4v-linscale")
    key = sorted(table.frame["arch_key"].unique())[0]
    for epochs, label in ((4, "measured"), (108, "scaled")):
        cfg = parse_energy({"epochs": epochs})
        state = RunState(cfg, EnergySource(table, cfg, "cifar10"))
        state.evaluate(key, 0.5)
        assert state.trace()["energy_source"].tolist() == [label]


@pytest.mark.parametrize(("energy", "key"), [
    ({"calibrate": True}, "energy.calibrate"),
    ({"epoch_scaling": "linear"}, "energy.epoch_scaling"),
    ({"predictor": "/tmp/x"}, "energy.predictor"),
    ({"missing": "predict", "epoch_scaling": "cubic"}, "energy.epoch_scaling"),
    ({"missing": "predict", "calibrate": "yes"}, "energy.calibrate"),
])
def test_prediction_keys_are_validated(energy, key):
    with pytest.raises(ConfigError, match=key):
        parse_energy(energy)


def test_a_bad_predictor_folder_is_named(full, tmp_path):
    cfg = parse_energy({"missing": "predict", "predictor": str(tmp_path)})
    with pytest.raises(ConfigError, match="energy.predictor.*manifest.json"):
        EnergySource(full, cfg, "cifar10")


@pytest.mark.skipif(bool(compat.missing_requirements()),
                    reason=f"NASLib not installed: see docs (missing {', '.join(compat.missing_requirements())})")
def test_naslib_run_fills_missing_cells_with_labelled_predictions(partial, full, tmp_path, monkeypatch):
    import yaml

    from ecnas_plugin import naslib as bridge
    from ecnas_plugin.naslib import runner

    load = ep.load_table
    monkeypatch.setattr(ep, "load_table", lambda name, *a, **k: partial if name == partial.name else load(name, *a, **k))
    bridge.install()
    config = {"seed": 0, "optimizer": "re", "search_space": "ecnas-5v", "dataset": "cifar10",
              "out_dir": str(tmp_path / "run"),
              "search": {"checkpoint_freq": 1000, "fidelity": 108, "epochs": 25, "sample_size": 10,
                         "population_size": 20, "batch_size": 256, "data_size": 25000, "cutout": False,
                         "cutout_length": 16, "cutout_prob": 1.0, "train_portion": 0.7, "num_init": 10,
                         "k": 5, "num_ensemble": 1, "predictor_type": "bananas", "debug_predictor": False},
              "evaluation": {"checkpoint_freq": 5000},
              "energy": {"objective": "penalty", "weight": 0.5, "table": partial.name, "missing": "predict",
                         "epochs": 4}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = runner.load_config(str(path), [])
    runner.search(cfg)
    from pathlib import Path

    save = Path(cfg.save)
    trace = pd.read_parquet(save / TRACE_FILE)
    dropped = set(partial.dropped)
    is_missing = trace["arch_key"].isin(dropped)
    assert is_missing.any() and (~is_missing).any()
    assert (trace.loc[is_missing, "energy_source"] == "predicted").all()
    assert (trace.loc[~is_missing, "energy_source"] == "measured").all()
    pred = trace[is_missing]
    expected = _predicted(sorted(set(pred["arch_key"])))
    assert np.allclose(pred["train_energy_kwh"], expected.loc[pred["arch_key"], "train_energy_kwh"])
    # true accuracies of predicted cells come from the benchmark (ecnas-5v has one repeat)
    truth = full.frame.groupby("arch_key")[["test_acc", "train_acc"]].mean()
    assert np.allclose(pred["test_acc"], truth.loc[pred["arch_key"], "test_acc"])
    _, traj = json.loads((save / "errors.json").read_text())
    assert set(traj["energy_source"]) <= {"measured", "predicted"} and len(traj["energy_source"]) == 25
    for src, energy in zip(traj["energy_source"], traj["train_energy_kwh"]):
        assert not math.isnan(energy) and src in ("measured", "predicted")
    front = json.loads((save / FRONT_FILE).read_text())
    assert front["prediction"]["cells_predicted"] == pred["arch_key"].nunique()
    assert sum(front["energy_sources"].values()) == trace["arch_key"].nunique()
