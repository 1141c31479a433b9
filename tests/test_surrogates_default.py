"""The shipped NB101 energy surrogate: loads offline, reproduces its recorded held-out metrics,
predicts any valid cell (flagged predicted, with σ)."""

from __future__ import annotations

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin.energy import surrogates as S
from ecnas_plugin.energy.surrogates import features as F
from ecnas_plugin.energy.surrogates.evaluation import split
from ecnas_plugin.energy.surrogates.train_default import GOALS, SEED, TEST_FRACTION


@pytest.fixture(scope="module")
def default():
    return S.default_predictor()


def test_manifest_names_training_data_and_context(default):
    assert default.context.campaign == "ecnas-5v" and default.context.epochs == 4
    assert default.training["table"] == "ecnas-5v" and default.training["cells"] <= 1000
    assert len(default.training["sha256"]) == 64 and default.feature_set == S.FEATURE_SET


def test_recorded_held_out_metrics_reproduce(default, shared_data):
    frame = ep.load_table("ecnas-5v").frame
    keys = default.training["arch_keys"]
    assert S.predictor.training_checksum(
        keys, frame.set_index("arch_key").loc[keys, "train_energy_kwh"].to_numpy()) == default.training["sha256"]
    _, test = split(frame, TEST_FRACTION, SEED)
    assert not set(test["arch_key"]) & set(keys)
    metrics = S.evaluate(default, test)
    recorded = default.metrics["held_out_ecnas_5v"]
    for name in ("kendall_tau", "mae_wh", "r2", "within_1sd", "within_2sd"):
        assert metrics[name] == pytest.approx(recorded[name], abs=1e-9)
    assert metrics["kendall_tau"] > 0.85 and metrics["mae_wh"] < 1.0
    split_ = default.metrics["held_out_split"]
    assert (split_["test_fraction"], split_["seed"], split_["train_cells"]) == (TEST_FRACTION, SEED, len(keys))
    goals = default.metrics["goals"]
    assert goals["kendall_tau_met"] == (metrics["kendall_tau"] >= GOALS["kendall_tau"])
    assert goals["mae_wh_met"] == (metrics["mae_wh"] <= GOALS["mae_wh"])


def test_predicts_seven_vertex_cells_as_predicted(default):
    batch = F.random_cell_batch(20_000, seed=11)
    mean, sd = default.predict_batch(batch)
    assert np.isfinite(mean).all() and (mean > 0).all() and (sd > 0).all()
    rows = default.predict_energy(batch.cells()[:5])
    assert set(rows["source"]) == {"predicted"} and rows["train_energy_kwh"].to_numpy() == pytest.approx(mean[:5])
