"""Energy surrogates on the real EC-NAS data: fit, evaluate, persistence, bad input, campaigns, scaling.

Models here are small (few trees, few steps) to stay fast; the shipped model is checked in
test_surrogates_default.py.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import ecnas_plugin as ep
from ecnas_plugin.energy import surrogates as S
from ecnas_plugin.energy.surrogates import evaluation as E
from ecnas_plugin.energy.surrogates import features as F
from ecnas_plugin.errors import DataFormatError, InvalidArchitecture, SchemaError, UnknownName

SMALL = {"lightgbm": {"folds": 3, "rounds": 60}, "mlp": {"folds": 2, "steps": 60},
         "ensemble": {"folds": 2, "lightgbm": {"rounds": 60}, "mlp": {"steps": 60}},
         "additive": {"folds": 3, "rounds": 100}}


@pytest.fixture(scope="module")
def five(shared_data):
    return ep.load_table("ecnas-5v").frame


@pytest.fixture(scope="module")
def split5(five):
    train, test = E.split(five, 0.4, seed=0)
    keys = np.random.default_rng(0).permutation(sorted(train["arch_key"].unique()))[:400]
    return train[train["arch_key"].isin(keys)], test


@pytest.fixture(scope="module")
def small_lgb(split5):
    return S.fit(split5[0], "lightgbm", source_table="ecnas-5v", **SMALL["lightgbm"])


def test_lightgbm_ranks_unseen_cells(small_lgb, split5):
    m = S.evaluate(small_lgb, split5[1])
    assert m["cells"] == split5[1]["arch_key"].nunique() and m["excluded_training_cells"] == 0
    assert m["kendall_tau"] > 0.8 and m["mae_wh"] < 1.5 and m["r2"] > 0.9
    assert 0.4 < m["within_1sd"] < m["within_2sd"] <= 1.0


def test_additive_model_ranks_unseen_cells_better_than_trees_alone(small_lgb, split5):
    additive = S.fit(split5[0], "additive", source_table="ecnas-5v", folds=3)
    trees = S.fit(split5[0], "lightgbm", source_table="ecnas-5v", folds=3)
    a, t = S.evaluate(additive, split5[1]), S.evaluate(trees, split5[1])
    assert a["kendall_tau"] > t["kendall_tau"] and a["mae_wh"] < t["mae_wh"]
    assert 0.4 < a["within_1sd"] < a["within_2sd"] <= 1.0


@pytest.fixture(scope="module")
def extrapolating(five):
    """An additive model trained on 1,000 cells of the 80% with the fewest parameters, the other
    20% held out (bigger networks than any it saw), plus in-range cells it did not see."""
    params = five.groupby("arch_key")["params"].first()
    big = set(params.index[params >= params.quantile(0.8)])
    rest = five[~five["arch_key"].isin(big)]
    train, test = E.split(rest, 0.3, seed=0)
    keys = np.random.default_rng(0).permutation(sorted(train["arch_key"].unique()))[:1000]
    model = S.fit(train[train["arch_key"].isin(keys)], "additive", folds=3, seed=0)
    return model, five[five["arch_key"].isin(big)], test


def test_sigma_widens_for_cells_outside_the_training_range(extrapolating):
    model, outside, inside = extrapolating
    index = F.default_cell_index()
    out = model.predict_energy(sorted(outside["arch_key"].unique()))
    ins = model.predict_energy(sorted(inside["arch_key"].unique()))
    relative = lambda rows: np.median(rows["train_energy_sd_kwh"] / rows["train_energy_kwh"])  # noqa: E731
    assert relative(out) > relative(ins)  # wider per Wh too, not only because the cells are bigger
    assert np.median(out["train_energy_sd_kwh"]) > 1.5 * np.median(ins["train_energy_sd_kwh"])
    far = model.model.distance(F.nb101_features(index.batch(list(out["arch_key"]))))
    near = model.model.distance(F.nb101_features(index.batch(list(ins["arch_key"]))))
    assert np.median(far) > 2 * np.median(near)
    m_out, m_in = S.evaluate(model, outside), S.evaluate(model, inside)
    assert m_out["mae_wh"] > 1.5 * m_in["mae_wh"]  # the model is worse there, and its σ says so:
    assert m_out["within_2sd"] >= 0.9 and m_in["within_2sd"] >= 0.9
    assert m_out["within_1sd"] >= 0.6 and m_in["within_1sd"] >= 0.68


def test_sigma_grows_with_distance_for_one_cell(extrapolating):
    """The same prediction with its training cells moved away: σ grows monotonically with D."""
    model, outside, _ = extrapolating
    X = F.nb101_features(F.default_cell_index().batch(sorted(outside["arch_key"].unique())[:50]))
    surrogate = model.model
    mean, sd = surrogate.predict(X)
    ref = dict(surrogate.reference)
    sds = []
    for shift in (0.0, 2.0, 5.0, 10.0):
        surrogate.reference = {**ref, "points": ref["points"] + shift}
        moved_mean, moved_sd = surrogate.predict(X)
        np.testing.assert_array_equal(moved_mean, mean)  # the mean never depends on the σ's reference
        sds.append(moved_sd)
    surrogate.reference = ref
    np.testing.assert_array_equal(sds[0], sd)
    assert all((b > a).all() for a, b in zip(sds, sds[1:]))
    assert (sds[-1] > 2 * sd).all()


def test_models_saved_with_a_constant_sigma_still_load(small_lgb, tmp_path):
    """A model saved before the σ grew with distance (calibration noise_var_wh2/sd_scale, no
    sd_reference.json) loads and predicts as it did: its constant noise term in Wh."""
    folder = small_lgb.save(tmp_path / "old")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model"]["calibration"] = {"noise_var_wh2": 1.5, "sd_scale": 0.8, "oof_mae_wh": 0.9}
    del manifest["files"]["sd_reference.json"]
    (folder / "sd_reference.json").unlink()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = S.Predictor.load(folder)
    batch = F.random_cell_batch(200, seed=1)
    mean, sd = old.predict_batch(batch)
    np.testing.assert_array_equal(mean, small_lgb.predict_batch(batch)[0])
    spread = old.model._ensemble(F.nb101_features(batch))[1]
    np.testing.assert_allclose(sd * 1000, 0.8 * np.sqrt(spread**2 + 1.5), rtol=1e-12)
    # a distance-calibrated model without its reference file is refused, not silently constant
    folder = small_lgb.save(tmp_path / "new")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["sd_reference.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="sd_reference.json"):
        S.Predictor.load(folder)


@pytest.mark.parametrize("name", ["lightgbm", "mlp", "ensemble", "additive"])
def test_save_load_round_trips_exactly(name, split5, tmp_path):
    train = split5[0].iloc[:120]
    p = small_lgb_or_fit(name, train)
    p.save(tmp_path / name)
    q = S.Predictor.load(tmp_path / name)
    batch = F.random_cell_batch(500, seed=4)
    a, b = p.predict_batch(batch), q.predict_batch(batch)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert q.context == p.context and q.training["sha256"] == p.training["sha256"]
    # no pickle: model files are text, JSON or torch state_dicts (loaded weights_only), all checksummed
    files = sorted(f.name for f in (tmp_path / name).iterdir())
    assert "sd_reference.json" in files and all(f.endswith((".txt", ".json", ".pt")) for f in files)
    assert set(json.loads((tmp_path / name / "manifest.json").read_text())["files"]) == set(files) - {"manifest.json"}


def small_lgb_or_fit(name, train):
    return S.fit(train, name, **SMALL[name])


def _tamper(folder, **changes):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_load_refuses_other_feature_set_schema_or_changed_file(small_lgb, tmp_path):
    for field, value, reason in (("feature_set", "nb101-v0", "feature set"),
                                 ("schema_version", 99, "schema version"),
                                 ("format", "something-else", "format")):
        folder = small_lgb.save(tmp_path / field)
        _tamper(folder, **{field: value})
        with pytest.raises(SchemaError, match=reason):
            S.Predictor.load(folder)
    folder = small_lgb.save(tmp_path / "bytes")
    (folder / "lightgbm_0.txt").write_text((folder / "lightgbm_0.txt").read_text().replace("Tree=0", "Tree=00"))
    with pytest.raises(DataFormatError, match="sha256"):
        S.Predictor.load(folder)
    folder = small_lgb.save(tmp_path / "reference")
    (folder / "sd_reference.json").write_text((folder / "sd_reference.json").read_text().replace("1", "2", 1))
    with pytest.raises(DataFormatError, match="sha256"):
        S.Predictor.load(folder)


def test_predict_energy_is_flagged_predicted_and_rejects_bad_cells(small_lgb, five):
    keys = list(five["arch_key"].iloc[:3])
    cell7 = F.random_cell_batch(1, seed=9).cells()[0]
    out = S.predict_energy(keys + [cell7, (cell7.matrix, cell7.ops)], predictor=small_lgb)
    assert list(out["source"].unique()) == ["predicted"]
    assert (out["train_energy_sd_kwh"] > 0).all() and (out["train_energy_kwh"] > 0).all()
    assert out["arch_key"].tolist()[:3] == keys and out["arch_key"].iloc[3] == out["arch_key"].iloc[4]
    assert set(out["campaign"]) == {"ecnas-5v"} and set(out["epochs"]) == {4}
    with pytest.raises(InvalidArchitecture):
        small_lgb.predict_energy([([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])])
    with pytest.raises(UnknownName, match="pass the cell"):
        small_lgb.predict_energy(["0" * 32])
    with pytest.raises(InvalidArchitecture):
        small_lgb.predict_energy(["not-a-hash"])


def test_cell_index_without_7v_data_says_why_a_hash_is_unknown(tmp_path, monkeypatch):
    """A cached ecnas-7v table does not hold its cells: with 7v_data.pt in neither mirror nor cache,
    a 7-vertex hash cannot be resolved, and the error says that file is why."""
    monkeypatch.setenv("ECNAS_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(F, "_DEFAULT_INDEX", None)
    index = F.default_cell_index()
    assert len(index) == 2532  # every cell of <= 5 vertices is still known
    with pytest.raises(UnknownName, match="7-vertex cells are not known here: .*7v_data.pt"):
        index.cell("0" * 32)


def test_fit_refuses_mixed_campaigns_and_non_measured_rows(shared_data, five):
    four = ep.load_table("ecnas-4v").frame
    mixed = pd.concat([five.iloc[:50], four[four["epochs"] == 4].iloc[:50]])
    with pytest.raises(SchemaError, match="campaign"):
        S.fit(mixed, "lightgbm", **SMALL["lightgbm"])
    lin = ep.load_table("ecnas-4v-linscale").frame
    with pytest.raises(SchemaError, match="measured"):
        S.fit(lin[lin["epochs"] == 12], "lightgbm", **SMALL["lightgbm"])
    with pytest.raises(UnknownName, match="surrogate model"):
        S.fit(five.iloc[:50], "xgboost-gpu")


def test_other_campaign_needs_rank_only_or_calibration(small_lgb, shared_data):
    seven = ep.load_table("ecnas-7v").frame
    with pytest.raises(SchemaError, match="campaign"):
        S.evaluate(small_lgb, seven)
    ranks = S.evaluate(small_lgb, seven, rank_only=True)
    assert set(ranks) == {"cells", "kendall_tau", "spearman_rho", "excluded_training_cells"}
    assert ranks["kendall_tau"] > 0.7
    calib_rows = seven.sample(200, random_state=0)
    calibrated = small_lgb.calibrate(calib_rows)
    assert calibrated.context.campaign == "ecnas-7v" and calibrated.calibration["from_campaign"] == "ecnas-5v"
    rest = seven[~seven["arch_key"].isin(calib_rows["arch_key"])]
    m = S.evaluate(calibrated, rest)
    raw = S.metrics(rest["train_energy_kwh"], small_lgb.predict_batch(F.default_cell_index().batch(list(rest["arch_key"])))[0])
    assert m["mae_wh"] < raw["mae_wh"]  # the calibration maps 5v energies onto the 7v campaign
    assert abs(m["kendall_tau"] - ranks["kendall_tau"]) < 0.02


def test_metrics_and_learning_curve_png(split5, tmp_path):
    t = np.array([1.0, 2.0, 3.0, 4.0]) / 1000
    m = S.metrics(t, t, np.full(4, 1e-4))
    assert m["kendall_tau"] == 1.0 and m["mae_wh"] == 0.0 and m["within_1sd"] == 1.0
    m = S.metrics(t, t[::-1] + 0.0, np.full(4, 0.5e-3))
    assert m["kendall_tau"] == -1.0 and m["mae_wh"] == pytest.approx(2.0) and m["within_1sd"] == 0.0
    curve = S.learning_curve(pd.concat(split5), sizes=(40, 200), **SMALL["lightgbm"])
    assert list(curve["train_cells"]) == [40, 200]
    assert curve["kendall_tau"].iloc[1] > curve["kendall_tau"].iloc[0]
    png = S.plot_learning_curve(curve, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_epoch_scaling_beats_linear_on_measured_budgets(shared_data):
    four = ep.load_table("ecnas-4v").frame
    errors = S.scaling_errors(four)
    assert list(errors["epochs"]) == [12, 36, 108]
    assert (errors["fitted_mape"] < errors["linear_mape"]).all()
    assert (errors["measured_over_linear"] < 1).all()  # linear scaling overestimates
    linear = S.EpochScaling.linear()
    assert linear.scale(0.02, 108) == pytest.approx(0.02 * 27)
    fitted = S.EpochScaling.fit(four)
    assert fitted.scale(0.02, 4) == pytest.approx(0.02)
    with pytest.raises(SchemaError, match="campaign"):
        S.EpochScaling.fit(pd.concat([four, ep.load_table("ecnas-5v").frame]))


def test_surrogate_hook_and_cli(small_lgb, tmp_path, capsys, five):
    classes = S.ecnas_surrogates()
    assert {c.name for c in classes} == {"lightgbm", "mlp", "ensemble", "additive"}
    assert all(issubclass(c, S.Surrogate) for c in classes)
    from ecnas_plugin.energy.surrogates import cli

    parser = argparse.ArgumentParser()
    cli.add_subparser(parser.add_subparsers(dest="command"))
    folder = small_lgb.save(tmp_path / "m")
    key = five["arch_key"].iloc[0]
    args = parser.parse_args(["surrogate", "predict", "--model-dir", str(folder), "--arch", key, "--format", "json"])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["arch_key"] == key and rows[0]["source"] == "predicted"
    args = parser.parse_args(["surrogate", "eval", "--model-dir", str(folder), "--table", "ecnas-5v"])
    assert args.func(args) == 0
    result = json.loads(capsys.readouterr().out)["metrics"]
    assert result["excluded_training_cells"] == small_lgb.training["cells"]


def test_registry_imports_no_surrogate_implementation():
    """registry.py checks plugins against the light base class: loading every plugin imports
    neither LightGBM nor the predictor, features or evaluation modules; public names still work."""
    import subprocess
    import sys

    code = ("import sys, ecnas_plugin.registry as r; reg = r.get_registry(); "
            "assert sorted(reg.items['surrogates']) == ['additive', 'ensemble', 'lightgbm', 'mlp'], reg.items; "
            "print(sorted(m for m in sys.modules if m.startswith(('lightgbm', 'ecnas_plugin.energy.surrogates'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["ecnas_plugin.energy.surrogates", "ecnas_plugin.energy.surrogates.base",
                         "ecnas_plugin.energy.surrogates.curves", "ecnas_plugin.energy.surrogates.models"]
    # (the curve models' module imports numpy only; LightGBM is imported when one fits)
    from ecnas_plugin.energy.surrogates import base, models, predictor

    assert S.Surrogate is base.Surrogate is models.Surrogate
    assert S.predict is S.predict_energy is predictor.predict_energy and S.Predictor is predictor.Predictor
    assert all(getattr(S, name) is not None for name in S.__all__)  # every exported name resolves
    with pytest.raises(AttributeError):
        S.no_such_name  # noqa: B018
