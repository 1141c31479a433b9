"""Learning-curve surrogates (energy/surrogates/curves.py) on the project's own joint-space table:
Bézier fitting, curves refused by name, held-out quality against a mean-curve baseline, σ,
persistence without pickle, the CLI, and search beyond the table (predicted configurations)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecnas_plugin.api import load_table
from ecnas_plugin.energy.surrogates import curves as C
from ecnas_plugin.errors import DataFormatError, InvalidConfiguration, SchemaError
from ecnas_plugin.search.space import TabularSpace

TABLE = "nb201-joint-flowers17-cpu"
FAST = {"rounds": 120, "degrees": (2, 3, 4)}  # smaller ensembles: the same code, a test-sized budget


@pytest.fixture(scope="module")
def table():
    return load_table(TABLE)


@pytest.fixture(scope="module")
def split(table):
    curves = C.curves_of(table)
    train, test = C.split_curves(curves, 0.3, seed=0)
    return curves, train, test


@pytest.fixture(scope="module")
def bezier(table, split):
    curves, train, _ = split
    return C.CurvePredictor.fit(table, "bezier", only=[curves.keys[i] for i in train], **FAST)


def test_bernstein_and_least_squares_bezier():
    t = np.linspace(0, 1, 11)
    assert np.allclose(C.bernstein(t, 4).sum(axis=1), 1.0)
    x = np.arange(1, 11) / 10
    line = 0.2 + 0.5 * x
    assert np.allclose(C.eval_bezier(C.fit_bezier(x, line, 3), x), line, atol=1e-9)  # a line is a Bézier curve
    saturating = 0.7 - 0.6 * np.exp(-4 * x)
    fitted = C.eval_bezier(C.fit_bezier(x, saturating, 4), x)
    assert np.sqrt(np.mean((fitted - saturating) ** 2)) < 0.005
    with pytest.raises(ValueError, match="at least 6 points"):
        C.fit_bezier(x[:3], saturating[:3], 5)


def test_the_shipped_table_has_full_curves_labelled_estimated(table):
    curves = C.curves_of(table)
    assert len(curves.keys) == len(table.frame) and curves.acc.shape == (len(curves.keys), 10)
    assert (np.diff(curves.energy, axis=1) > 0).all()  # cumulative energy grows every epoch
    assert set(table.frame["source"]) == {"estimated"}  # a power model on this CPU: never "measured"
    assert "ESTIMATED" in table.manifest.description or "ESTIMATED" in table.manifest.notes


def test_curves_need_one_budget_and_accuracy_at_every_epoch(table):
    from ecnas_plugin.table import EnergyTable

    cp = table.checkpoints.copy()
    cp.loc[cp.index[0], "val_acc"] = np.nan
    with pytest.raises(DataFormatError, match="'val_acc' is empty for"):
        C.curves_of(EnergyTable(table.frame, table.manifest, cp))
    gap = table.checkpoints[~((table.checkpoints["arch_key"] == table.frame["arch_key"].iloc[0])
                              & (table.checkpoints["epoch"] == 4))]
    with pytest.raises(DataFormatError, match=r"misses epoch\(s\) \[4\]"):
        C.curves_of(EnergyTable(table.frame, table.manifest, gap))


def test_bezier_beats_the_mean_curve_on_held_out_configurations(bezier, split):
    curves, train, test = split
    held_out = curves.subset(test)
    m = C.evaluate_curves(bezier, held_out)
    mean_curve = curves.acc[train].mean(axis=0)
    baseline_rmse = float(np.sqrt(np.mean((held_out.acc - mean_curve) ** 2)))
    assert m["curve_rmse"] < 0.8 * baseline_rmse  # learns the configuration, not just the average curve
    assert m["final_acc_kendall_tau"] > 0.3 and m["energy_kendall_tau"] > 0.6
    assert 0.8 <= m["acc_coverage_2sd"] <= 1.0 and 0.8 <= m["energy_coverage_2sd"] <= 1.0
    assert bezier.model.degree in FAST["degrees"]


def test_sigma_widens_away_from_the_training_configurations(bezier, split, table):
    curves, train, _ = split
    space = bezier.space
    near = space.decode(curves.keys[train[0]])
    X = np.asarray(space.features([near])[0], float)
    far = X.copy()
    far[0, -12:] += 5.0  # hyperparameter features far outside anything trained on
    model = bezier.model
    sd_near = model.predict(X, np.array([10]))["acc_sd"][0, 0]
    sd_far = model.predict(far, np.array([10]))["acc_sd"][0, 0]
    assert sd_far > sd_near


def test_saved_as_json_and_refused_when_the_features_change(bezier, split, tmp_path, monkeypatch):
    curves, _, test = split
    folder = bezier.save(tmp_path / "model")
    doc = json.loads((folder / C.MODEL_FILE).read_text())  # plain JSON: no pickle anywhere
    assert doc["format"] == C.CURVE_FORMAT and doc["context"]["energy_source"] == "estimated"
    loaded = C.CurvePredictor.load(folder)
    configs = [loaded.space.decode(curves.keys[i]) for i in test[:5]]
    a, b = bezier.predict(configs, [1, 5, 10]), loaded.predict(configs, [1, 5, 10])
    assert np.allclose(a["acc"], b["acc"]) and np.allclose(a["energy_kwh"], b["energy_kwh"])
    frame = loaded.predict_frame(configs, [10])
    assert (frame["source"] == "predicted").all() and (frame["energy_method"] == "estimated").all()
    with pytest.raises(InvalidConfiguration, match=r"'epochs'.*must be an integer in 1..10"):
        loaded.predict(configs, [11])
    monkeypatch.setattr(type(loaded.space), "feature_set", "nb201-joint-v999")
    with pytest.raises(SchemaError, match="refit the model"):
        C.CurvePredictor.load(folder)


@pytest.mark.parametrize("model", ["gbm-epoch", "pow3"])
def test_baselines_fit_and_predict_whole_curves(table, split, model):
    curves, train, test = split
    predictor = C.CurvePredictor.fit(table, model, only=[curves.keys[i] for i in train],
                                     **({"rounds": 120} if model == "gbm-epoch" else {}))
    m = C.evaluate_curves(predictor, curves.subset(test))
    assert 0 < m["curve_rmse"] < 0.2 and m["configurations"] == len(test)
    assert (m["acc_coverage_2sd"] is None) == (model == "pow3")  # pow3 has no σ, and says so


def test_search_beyond_the_table_labels_predictions(table, bezier):
    from ecnas_plugin.search.optimizers import make_optimizer
    from ecnas_plugin.search.run import Budget, run_search

    space = TabularSpace(table, epochs=[3, 10], predictor=bezier)
    trace = run_search(space, make_optimizer("evolution", space, np.random.default_rng(0)), Budget(30),
                       lambda acc, kwh: acc, np.random.default_rng(1))
    inside = trace["arch_key"].isin(space.key_set)
    assert (trace.loc[~inside, "source"] == "predicted").all() and (~inside).any()
    assert (trace.loc[inside, "source"] == "estimated").all()
    assert set(trace["epochs"]) <= {3, 10}
    # a configuration at a budget read from checkpoints: the value of its curve there
    key = space.keys[0]
    q = space.query(key, 3)
    curve = table.curve(key)
    assert q.val_acc == pytest.approx(curve.loc[curve["epoch"] == 3, "val_acc"].iloc[0])
    assert len(q.curve) == 3


def test_cli_fits_evaluates_and_predicts_the_joint_space(tmp_path, capsys):
    from ecnas_plugin.cli import main

    out = tmp_path / "gbm"
    assert main(["surrogate", "fit", "--table", TABLE, "--model", "gbm-epoch", "--out", str(out)]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["space"] == "nb201-joint" and "curve_rmse" in fitted["held_out"]
    assert main(["surrogate", "eval", "--model-dir", str(out), "--table", TABLE]) == 0
    assert "final_acc_kendall_tau" in json.loads(capsys.readouterr().out)["metrics"]
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|;lr=0.05"
    assert main(["surrogate", "predict", "--model-dir", str(out), "--arch", cell, "--epochs", "2", "10"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "predicted" in lines[1]
    assert main(["surrogate", "predict", "--model-dir", str(out), "--arch", cell, "--epochs", "12"]) == 2
    assert "--epochs" in capsys.readouterr().err



def test_a_study_searches_beyond_the_table_with_a_saved_curve_model(bezier, tmp_path):
    import pandas as pd

    from ecnas_plugin.errors import UnknownName
    from ecnas_plugin.study import ConfigError, parse_study, run_study, write_report

    folder = str(bezier.save(tmp_path / "bezier"))
    config = {"name": "joint", "spaces": [{"name": TABLE, "epochs": [3, 10], "surrogate": folder}],
              "optimizers": ["random", "sms-emoa"], "budgets": [{"evaluations": 12}], "seeds": 1}
    study = parse_study(config)
    assert {r.surrogate for r in study.runs} == {folder}
    out = run_study(study, out_dir=tmp_path / "study", workers=1, progress=False)
    traces = [pd.read_parquet(f / "trace.parquet") for f in sorted((out / "runs").iterdir())]
    assert all(len(t) == 12 for t in traces)
    sources = set().union(*(set(t["source"]) for t in traces))
    assert "predicted" in sources and sources <= {"predicted", "estimated"}
    write_report(out)
    assert (out / "report.html").is_file()
    bad = {**config, "spaces": [{"name": TABLE, "surrogate": "splines"}]}
    with pytest.raises(UnknownName, match="unknown curve surrogate 'splines'"):
        parse_study(bad)
    with pytest.raises(ConfigError, match="surrogate"):
        parse_study({**config, "spaces": [{"name": TABLE, "surrogate": 3}]})
