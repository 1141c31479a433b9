"""``energy.surrogate``: NASLib's RS, RE and LS through the bridge search the joint space beyond its
table (``nb201-joint-flowers17-cpu``): a configuration the table holds answers from the table, any
other from a curve surrogate (the TabularSpace-with-predictor of ``search.load_space``), its
accuracy and energy labelled ``predicted`` in the trace, ``errors.json`` and the front.

The config checks, the refusals and the served space's moves and answers need no NASLib; the
searches need real NASLib and are skipped, with the reason, where it is missing. One Bézier model
(one degree, to keep the fit to seconds) is fitted per module and saved; configs point at its folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ecnas_plugin as ep
from ecnas_plugin.energy.surrogates.curves import MODEL_FILE, CurvePredictor
from ecnas_plugin.naslib import spaces, tabular
from ecnas_plugin.naslib.config import ConfigError, parse_energy
from conftest import NASLIB_MISSING as MISSING, needs_naslib

TABLE = "nb201-joint-flowers17-cpu"


@pytest.fixture(scope="module")
def table():
    return ep.load_table(TABLE)


@pytest.fixture(scope="module")
def model_dir(table, tmp_path_factory):
    """A Bézier curve model fitted on the table (seed 0; one degree: a fit of seconds), saved."""
    predictor = CurvePredictor.fit(table, "bezier", degrees=(3,))
    return str(predictor.save(tmp_path_factory.mktemp("bezier")))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return CurvePredictor.load(model_dir)


@pytest.fixture(scope="module")
def energy_of(table):
    rows = table.frame[table.frame["epochs"] == max(table.values("epochs"))]
    return rows.groupby("arch_key")["train_energy_kwh"].mean().to_dict()


def _plan(surrogate: str, **energy):
    """The served table and its checked plan for an energy section with this surrogate."""
    bench = tabular.build_dataset_api(TABLE)[tabular.SERVED_KEY]
    config = {"dataset": "cifar10", "energy": {"objective": "penalty", "surrogate": surrogate, **energy}}
    return bench, spaces.plan(config, spaces.target(TABLE), served=bench)


def _edited(model_dir: str, tmp_path: Path, **context) -> str:
    """A copy of the saved model with its context changed."""
    doc = json.loads((Path(model_dir) / MODEL_FILE).read_text())
    doc["context"].update(context)
    for key in ("feature_names",):
        if key in context:
            doc[key] = doc["context"].pop(key)
    out = tmp_path / "edited"
    out.mkdir(parents=True)
    (out / MODEL_FILE).write_text(json.dumps(doc))
    return str(out)


# ---------------------------------------------------------------- no NASLib needed
def test_the_energy_section_takes_a_surrogate_and_refuses_bad_ones_by_key(model_dir):
    assert parse_energy({"surrogate": "bezier"}).surrogate == "bezier"
    assert parse_energy({"surrogate": model_dir}).surrogate == model_dir
    assert parse_energy(True).surrogate is None
    for bad, key, text in [({"surrogate": "splines"}, "energy.surrogate", "unknown curve surrogate 'splines'"),
                           ({"surrogate": 3}, "energy.surrogate", "a curve surrogate's name"),
                           ({"surrogate": "bezier", "missing": "predict"}, "energy.surrogate", "energy.missing"),
                           ({"surrogate": "bezier", "column": "gpu_energy_kwh"}, "energy.column", "train_energy_kwh")]:
        with pytest.raises(ConfigError) as info:
            parse_energy(bad)
        assert info.value.key == key and text in str(info.value)


@pytest.mark.parametrize("search_space", ["nasbench201", "nasbench101", "ecnas-4v"])
def test_a_surrogate_for_a_naslib_mapped_target_is_refused_by_key(search_space):
    tgt = spaces.target(search_space)
    with pytest.raises(ConfigError) as info:
        spaces.check_surrogate(tgt)
    assert info.value.key == "energy.surrogate" and repr(search_space) in str(info.value) and TABLE in str(info.value)
    if tgt.table is None:  # NASLib's own space: refused by the plan before NASLib loads any data
        with pytest.raises(ConfigError, match="energy.surrogate"):
            spaces.plan({"dataset": "cifar10", "energy": {"surrogate": "bezier"}}, tgt)
    spaces.check_surrogate(spaces.target(TABLE))  # the joint table: served by the bridge's own class


def test_the_served_table_leaves_itself_through_the_surrogate(table, model_dir, predictor, energy_of):
    bench, plan = _plan(model_dir)
    assert bench.predictor is not None and bench.surrogate == model_dir and plan.energy.epochs == 10
    np.random.seed(0)
    keys = [bench.sample() for _ in range(30)]
    outside = [k for k in keys if bench.predicted(k)]
    assert len(outside) > 25 and all(k not in energy_of for k in outside)  # the whole space, not the table
    key = outside[0]
    child, nbhd = bench.mutate(key), bench.neighbours(key)
    assert child != key and key not in nbhd and len(nbhd) > 20 and any(bench.predicted(n) for n in nbhd)
    # a predicted configuration: the predictor's values at the run's budget (fractions here)
    want = predictor.predict([key], [10])
    run = bench.draw(key)
    assert run["validation_accuracy"] == pytest.approx(want["acc"][0, 0], abs=1e-12)
    assert run["test_accuracy"] == pytest.approx(want["test_acc"][0, 0], abs=1e-12)
    assert run["train_energy_kwh"] == pytest.approx(want["energy_kwh"][0, 0], rel=1e-12)
    assert math.isnan(run["training_time"]) and math.isnan(run["train_accuracy"])
    cell = plan.source.get(key)  # the run's energy of it: the predictor's, labelled predicted
    assert cell.source == "predicted" and cell.energy == pytest.approx(want["energy_kwh"][0, 0], rel=1e-12)
    assert cell.energy_sd == pytest.approx(want["energy_sd_kwh"][0, 0], rel=1e-12)
    curve = predictor.predict([key], list(range(1, 11)))["acc"][0]
    assert np.allclose(bench.curve(key, "val_acc"), curve) and len(bench.curve(key, "val_acc", 4)) == 4
    # a table configuration: the table, as without a surrogate
    inside = sorted(energy_of)[0]
    assert not bench.predicted(inside) and plan.source.get(inside).source == "estimated"
    assert plan.source.get(inside).energy == pytest.approx(energy_of[inside])
    rows = table.frame[(table.frame["arch_key"] == inside)]
    assert bench.draw(inside)["validation_accuracy"] in set(rows["val_acc"])
    described = plan.source.predict.describe()
    assert described["source"] == "predicted" and described["model"] == "bezier" and described["cells_predicted"] == 1


def test_a_surrogate_name_is_fitted_on_the_table_when_the_run_starts():
    bench, plan = _plan("gbm-epoch")
    ctx = bench.predictor.context
    assert (ctx["model"], ctx["table"], ctx["budget"]) == ("gbm-epoch", TABLE, 10)
    assert plan.source.predict.describe()["surrogate"] == "gbm-epoch"


def test_a_surrogate_that_cannot_speak_for_the_table_is_refused_by_key(model_dir, tmp_path):
    from ecnas_plugin.registry import get_registry

    nb201 = get_registry().space("nasbench201")
    cases = [
        (dict(space="nasbench201", feature_set="", feature_names=list(nb201.features([])[1])), "energy.surrogate",
         "predicts space 'nasbench201'"),
        (dict(budget=5), "energy.epochs", "beyond what curve surrogate"),
        (dict(dataset="cifar10"), "energy.surrogate", "learnt dataset 'cifar10'"),
    ]
    for i, (context, key, text) in enumerate(cases):
        folder = _edited(model_dir, tmp_path / str(i), **context)
        with pytest.raises(ConfigError) as info:
            _plan(folder)
        assert info.value.key == key and text in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match="pow3.*cannot predict one never trained"):
        _plan("pow3")
    with pytest.raises(ConfigError, match="energy.table"):
        _plan(model_dir, table="ecnas-4v")


def test_a_study_config_takes_a_surrogate_for_naslib_on_the_joint_table_only(model_dir):
    from ecnas_plugin.naslib.compat import NaslibUnavailable
    from ecnas_plugin.study import ConfigError as StudyConfigError
    from ecnas_plugin.study import parse_study

    config = {"name": "j", "optimizers": ["naslib:re", "random"], "budgets": [{"evaluations": 5}]}
    with pytest.raises(StudyConfigError) as info:  # with or without NASLib: before NASLib is looked for
        parse_study({**config, "spaces": [{"name": "ecnas-4v", "surrogate": model_dir}]})
    assert info.value.key == "spaces[ecnas-4v].surrogate" and "NASLib's own 'nasbench101' graphs" in str(info.value)
    joint = {**config, "spaces": [{"name": TABLE, "surrogate": model_dir}]}
    if MISSING:
        with pytest.raises(NaslibUnavailable):
            parse_study(joint)
    else:
        study = parse_study(joint)
        assert {(r.optimizer, r.surrogate) for r in study.runs} == {("naslib:re", model_dir), ("random", model_dir)}


# ---------------------------------------------------------------- with NASLib
def _config(tmp_path: Path, optimizer: str, epochs: int, **energy) -> Path:
    config = {
        "seed": 1, "optimizer": optimizer, "search_space": TABLE, "dataset": "cifar10", "out_dir": str(tmp_path / optimizer),
        "search": {"checkpoint_freq": 1000, "fidelity": 108, "epochs": epochs, "num_init": 3, "sample_size": 3,
                   "population_size": 4, "batch_size": 256, "data_size": 25000, "cutout": False, "cutout_length": 16,
                   "cutout_prob": 1.0, "train_portion": 0.7, "debug_predictor": False},
        "evaluation": {"checkpoint_freq": 5000}, "energy": {"objective": "penalty", **energy}}
    path = tmp_path / f"{optimizer}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@needs_naslib
@pytest.mark.parametrize("optimizer", ["rs", "re", "ls"])
def test_naslib_optimizers_search_beyond_the_joint_table(tmp_path, capsys, monkeypatch, bridge, model_dir,
                                                         predictor, energy_of, optimizer):
    from ecnas_plugin.naslib import runner

    # every other sample a table configuration, so both kinds of answer meet NASLib's optimizer
    original, calls = tabular.TabularBench.sample, [0]

    def sample(self):
        calls[0] += 1
        return self.keys[(7 * calls[0]) % len(self.keys)] if calls[0] % 2 else original(self)

    monkeypatch.setattr(tabular.TabularBench, "sample", sample)
    epochs = 10
    assert runner.run(str(_config(tmp_path, optimizer, epochs, surrogate=model_dir)), []) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.rindex("\n{\n") + 1:])
    assert summary["evaluations"] == epochs
    save = Path(summary["save"])
    trace = pd.read_parquet(save / "energy_trace.parquet")
    inside = trace["arch_key"].isin(set(energy_of))
    assert inside.any() and (~inside).any(), trace["arch_key"].tolist()
    # in the table: the table's energy and label
    assert (trace.loc[inside, "energy_source"] == "estimated").all()
    assert np.allclose(trace.loc[inside, "train_energy_kwh"], trace.loc[inside, "arch_key"].map(energy_of))
    # outside: the predictor's accuracy and energy, labelled predicted, never measured or estimated
    out_rows = trace[~inside]
    assert (out_rows["energy_source"] == "predicted").all() and out_rows["energy_sd_kwh"].notna().all()
    want = predictor.predict(list(out_rows["arch_key"]), [10])
    assert np.allclose(out_rows["val_acc"], want["acc"][:, 0], atol=1e-9)
    assert np.allclose(out_rows["test_acc"], want["test_acc"][:, 0], atol=1e-9)
    assert np.allclose(out_rows["train_energy_kwh"], want["energy_kwh"][:, 0], rtol=1e-9)
    assert np.allclose(trace["search_energy_kwh"], np.cumsum(trace["train_energy_kwh"]))
    _, errors = json.loads((save / "errors.json").read_text())
    assert set(errors["energy_source"]) <= {"estimated", "predicted"} and len(errors["train_energy_kwh"]) == epochs
    front = json.loads((save / "pareto_front.json").read_text())
    assert front["energy_sources"] == {k: int(v) for k, v in
                                       trace.drop_duplicates("arch_key")["energy_source"].value_counts().items()}
    assert {p["energy_source"] for p in front["front"]} <= {"estimated", "predicted"}
    assert front["prediction"]["source"] == "predicted" and front["prediction"]["surrogate"] == model_dir


@needs_naslib
def test_the_served_class_answers_a_predicted_configuration_in_naslib_units(bridge, model_dir, predictor):
    from naslib.search_spaces.core.query_metrics import Metric

    bench, _ = _plan(model_dir)
    graph = spaces.search_space(TABLE, served=bench)
    np.random.seed(2)
    graph.sample_random_architecture()
    key = graph.get_hash()
    assert bench.predicted(key)
    want = predictor.predict([key], list(range(1, 11)))
    assert graph.query(Metric.VAL_ACCURACY) == pytest.approx(100 * want["acc"][0, -1])
    assert graph.query(Metric.TEST_ACCURACY) == pytest.approx(100 * want["test_acc"][0, -1])
    assert np.allclose(graph.query(Metric.VAL_ACCURACY, full_lc=True, epoch=-1), 100 * want["acc"][0])
    assert math.isnan(graph.query(Metric.TRAIN_TIME))
    nbhd = graph.get_nbhd()
    assert nbhd and all(m.arch.get_hash() != key for m in nbhd)


@needs_naslib
def test_a_study_runs_naslib_re_beyond_the_joint_table_fitting_once(tmp_path, monkeypatch, energy_of):
    """A study space with ``surrogate: gbm-epoch`` (a name: fitted when the run starts) and
    ``naslib:re``: the bridge is handed the run's own fitted space (one fit), and the study trace
    labels the predicted rows ``predicted`` with the space's prediction."""
    from ecnas_plugin.search import space as search_space
    from ecnas_plugin.study import parse_study, run_study

    monkeypatch.setattr(search_space, "_CACHE", {})
    fits = []
    original = CurvePredictor.fit.__func__
    monkeypatch.setattr(CurvePredictor, "fit", classmethod(lambda cls, *a, **k: fits.append(a[1:]) or original(cls, *a, **k)))
    study = parse_study({"name": "j", "spaces": [{"name": TABLE, "surrogate": "gbm-epoch"}],
                         "optimizers": [{"name": "naslib:re", "params": {"population_size": 4, "sample_size": 2}}],
                         "budgets": [{"evaluations": 12}], "seeds": 1})
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    assert len(fits) == 1
    space = search_space.load_space(TABLE, None, "gbm-epoch")
    (folder,) = sorted((out / "runs").iterdir())
    trace = pd.read_parquet(folder / "trace.parquet")
    assert len(trace) == 12
    inside = trace["arch_key"].isin(set(energy_of))
    assert (~inside).any() and (trace.loc[~inside, "source"] == "predicted").all()
    assert (trace.loc[inside, "source"] == "estimated").all()
    assert np.allclose(trace.loc[inside, "true_energy_kwh"], trace.loc[inside, "arch_key"].map(energy_of))
    want = space.predictor.predict(list(trace.loc[~inside, "arch_key"]), [10])
    assert np.allclose(trace.loc[~inside, "true_energy_kwh"], want["energy_kwh"][:, 0], rtol=1e-9)
    assert np.allclose(trace.loc[~inside, "val_acc"], want["acc"][:, 0], atol=1e-9)
    assert trace.loc[~inside, "train_time_s"].isna().all()
    front = json.loads((folder / "naslib" / "pareto_front.json").read_text())
    assert front["prediction"]["model"] == "gbm-epoch" and front["energy_sources"].get("predicted")
