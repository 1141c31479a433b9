"""Study configs, the resumable grid runner, metrics and the report, on the real EC-NAS tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecnas_plugin.errors import EcnasError, UnknownName
from ecnas_plugin.objectives import hypervolume, pareto_mask
from ecnas_plugin.search import load_space
from ecnas_plugin.study import ConfigError, load_study, parse_study, run_study, write_report
from ecnas_plugin.study import metrics, runner

REPO = Path(__file__).resolve().parents[1]


def small(**over) -> dict:
    cfg = {"name": "t", "spaces": [{"name": "ecnas-4v", "epochs": 108}], "optimizers": ["random", "sms-emoa"],
           "objectives": ["accuracy"], "budgets": [{"evaluations": 8}], "seeds": 2}
    cfg.update(over)
    return cfg


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize("over, what, name", [
    ({"spaces": ["ecnas-4v", "nb301"]}, "energy table", "nb301"),
    ({"optimizers": ["random", "nsga2"]}, "optimizer", "nsga2"),
    ({"objectives": ["accuracy", "latency"]}, "objective", "latency"),
    ({"budget": [{"evaluations": 3}]}, "key in the study config", "budget"),
])
def test_unknown_names_are_refused_with_what_exists(over, what, name):
    with pytest.raises(UnknownName) as info:
        parse_study(small(**over))
    assert info.value.what == what and info.value.name == name
    assert info.value.available  # lists what exists
    assert f"unknown {what} {name!r}" in str(info.value) and "available:" in str(info.value)


@pytest.mark.parametrize("over, match", [
    ({"objectives": [{"name": "soft", "exponant": -0.1}]}, "exponant"),
    ({"objectives": [{"name": "constraint", "limit_kwh": -1}]}, "limit_kwh"),
    ({"optimizers": [{"name": "random", "objectives": ["pareto"]}]}, "multi-objective"),
    ({"budgets": [{"evaluations": 0}]}, "positive integer"),
    ({"seeds": -1}, "seeds"),
    ({"name": ""}, "name"),
    ({"spaces": [{"name": "ecnas-4v", "epochs": [4, "twelve"]}]}, "spaces.ecnas-4v..epochs"),
    ({"spaces": [{"name": "ecnas-4v", "epochs": [4, 4]}]}, "twice"),
    ({"spaces": ["ecnas-4v", {"name": "ecnas-4v", "epochs": 4}]}, "listed twice"),
])
def test_bad_values_are_refused_naming_the_key(over, match):
    with pytest.raises((ConfigError, UnknownName), match=match):
        parse_study(small(**over))


def test_grid_expands_and_multi_objective_runs_on_pareto():
    study = parse_study(small(objectives=["accuracy", {"name": "soft", "label": "soft"}], seeds=[3, 4]))
    combos = {(r.optimizer, r.objective) for r in study.runs}
    assert combos == {("random", "accuracy"), ("random", "soft"), ("sms-emoa", "pareto")}
    assert len(study.runs) == 3 * 2 and {r.seed for r in study.runs} == {3, 4}
    assert len({r.run_id for r in study.runs}) == len(study.runs)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_study_configs_load(path, shared_data, request, monkeypatch):
    import yaml

    from ecnas_plugin import registry as reg
    from ecnas_plugin.naslib.compat import NaslibUnavailable, missing_requirements

    if "example-nb201-flowers17-cpu" in path.read_text():  # the example plugin's table: install it, as its comment says
        monkeypatch.syspath_prepend(str(request.getfixturevalue("example_installed")))
        monkeypatch.setattr(reg, "_REGISTRY", reg.Registry())
    names = [o if isinstance(o, str) else o["name"] for o in yaml.safe_load(path.read_text())["optimizers"]]
    if any(n.startswith("naslib:") for n in names) and missing_requirements():
        with pytest.raises(NaslibUnavailable, match="NASLib is not installed"):  # refused, not half-run
            load_study(path)
        return
    study = load_study(path)
    assert study.runs


def test_cli_refuses_a_bad_config_before_anything_runs(tmp_path, study_cli):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: bad\nspaces: [ecnas-4v]\noptimizers: [random, nsga3]\nbudgets: [{evaluations: 5}]\n")
    args = study_cli(cfg, tmp_path / "out")
    with pytest.raises(UnknownName, match="optimizer 'nsga3'.*evolution, hyperband, mo-hyperband, naslib:bananas, .*naslib:re, .*parego, random, sms-emoa"):
        args.func(args)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- running, resuming
def test_run_is_resumable_and_stores_parquet_and_json(tmp_path, shared_data, monkeypatch):
    study = parse_study(small())
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    folders = sorted((out / "runs").iterdir())
    assert len(folders) == 4
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["run.json", "trace.parquet"]
        summary = json.loads((folder / "run.json").read_text())
        trace = pd.read_parquet(folder / "trace.parquet")
        assert len(trace) == summary["evaluations"] == 8
        assert summary["search_energy_kwh"] == pytest.approx(trace["train_energy_kwh"].sum())
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))

    def boom(*a, **k):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "execute_run", boom)
    run_study(study, out_dir=tmp_path, workers=1, progress=False)  # nothing left to do
    # A changed setting is a different run: it runs; the old ones stay.
    monkeypatch.undo()
    bigger = parse_study(small(budgets=[{"evaluations": 9}]))
    run_study(bigger, out_dir=tmp_path, workers=1, progress=False)
    assert len(list((out / "runs").iterdir())) == 8


def test_an_unfinished_run_is_redone(tmp_path, shared_data):
    study = parse_study(small(seeds=1, optimizers=["random"]))
    run_study(study, out_dir=tmp_path, workers=1, progress=False)
    folder = next((tmp_path / "runs").iterdir())
    (folder / "run.json").unlink()  # as if killed before finishing
    run_study(study, out_dir=tmp_path, workers=1, progress=False)
    assert (folder / "run.json").is_file()


def test_process_pool_gives_the_same_traces_as_inline(tmp_path, shared_data):
    study = parse_study(small(spaces=["ecnas-5v"], optimizers=["evolution"], seeds=2))
    run_study(study, out_dir=tmp_path / "a", workers=2, progress=False)
    run_study(study, out_dir=tmp_path / "b", workers=1, progress=False)
    for r in study.runs:
        a = pd.read_parquet(tmp_path / "a" / "runs" / r.run_id / "trace.parquet")
        b = pd.read_parquet(tmp_path / "b" / "runs" / r.run_id / "trace.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_ray_executor_says_what_is_missing(tmp_path, shared_data):
    try:
        import ray  # noqa: F401
        pytest.skip("Ray is installed; this checks the message when it is not")
    except ImportError:
        pass
    with pytest.raises(EcnasError, match="pip install 'ray"):
        run_study(parse_study(small(seeds=1)), out_dir=tmp_path, executor="ray", progress=False)


# ---------------------------------------------------------------- metrics
@pytest.fixture(scope="module")
def space5(shared_data):
    return load_space("ecnas-5v")


def test_normalised_reference_point_makes_energy_count(space5):
    """Two fronts with the same best accuracy: the cheaper one wins in normalised HV, not in EC-NAS's raw one."""
    norm = metrics.Normalisation.of_space(space5)
    i_best = int(np.argmax(space5.true_test_acc))
    acc_best, e_best = space5.true_test_acc[i_best], space5.true_energy_kwh[i_best]
    cheap = np.argsort(space5.true_energy_kwh)[:1]
    front_a = (np.array([acc_best]), np.array([e_best]))
    front_b = (np.array([acc_best, space5.true_test_acc[cheap[0]]]), np.array([e_best, space5.true_energy_kwh[cheap[0]]]))
    raw = [hypervolume(a, e, reference=(0.5, 1e6)) for a, e in (front_a, front_b)]
    assert raw[1] / raw[0] - 1 < 1e-6  # energy hardly matters with the raw reference point
    normed = [metrics.normalised_hv(a, e, norm) for a, e in (front_a, front_b)]
    assert normed[1] / normed[0] - 1 > 0.05
    assert metrics.space_hv(space5, norm) >= max(normed)


def test_hv_curve_is_monotone_and_ends_at_the_runs_hv(space5):
    from ecnas_plugin.search import Budget, make_optimizer, run_search

    rng = np.random.default_rng(0)
    trace = run_search(space5, make_optimizer("sms-emoa", space5, rng), Budget(evaluations=30), None, rng)
    norm = metrics.Normalisation.of_space(space5)
    curve = metrics.hv_curve(trace, norm)
    assert np.all(np.diff(curve) >= -1e-12)
    assert curve[-1] == pytest.approx(metrics.normalised_hv(trace["true_test_acc"], trace["true_energy_kwh"], norm))
    f = metrics.front(trace)
    assert pareto_mask(f["true_test_acc"], f["true_energy_kwh"]).all()
    hit = metrics.energy_to_reach(trace, trace["best_true_test_acc"].iloc[10])
    assert hit <= trace["search_energy_kwh"].iloc[10]
    assert metrics.energy_to_reach(trace, 2.0) == float("inf")


def test_attainment_surfaces_are_ordered(space5):
    from ecnas_plugin.search import Budget, make_optimizer, run_search

    norm = metrics.Normalisation.of_space(space5)
    fronts = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        fronts.append(metrics.front(run_search(space5, make_optimizer("random", space5, rng),
                                               Budget(evaluations=20), lambda a, e: a, rng)))
    surf = metrics.attainment(fronts, norm, percentiles=(25, 100))
    # what every run attains (100%) is dominated by what one run in four attains (25%)
    best25 = hypervolume(surf[25][:, 0], surf[25][:, 1], reference=(1.0, 1.0))
    best100 = hypervolume(surf[100][:, 0], surf[100][:, 1], reference=(1.0, 1.0))
    assert best25 > best100 > 0


# ---------------------------------------------------------------- report
def test_report_is_self_contained_with_figures(tmp_path, shared_data):
    study = parse_study(small(optimizers=["random", "evolution", "sms-emoa"], seeds=3))
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    report = write_report(out)
    text = report.read_text()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"space_ecnas-4v.png", "fronts_ecnas-4v_8evals.png", "hv_ecnas-4v_8evals.png"} <= set(pngs)
    assert text.count("data:image/png;base64,") == len(pngs)
    assert not re.search(r"src=['\"](?!data:)", text)  # nothing loaded from elsewhere
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["optimizer"]) == {"random", "evolution", "sms-emoa"}
    assert summary["hv_ratio_median"].between(0, 1).all()
    assert (summary["hv_ratio_ci_low"] <= summary["hv_ratio_median"]).all()
    assert (summary["hv_ratio_median"] <= summary["hv_ratio_ci_high"]).all()
    assert "reference point (1.1, 1.1)" in text
    # It says who won first, ranks with the best highlighted, never prints inf, captions every figure.
    best = summary.sort_values("rank").iloc[0]
    assert text.index("Who won") < text.index("Ranked results")
    assert f"<b>{best['optimizer']}</b> has the highest median hypervolume" in text
    assert text.count("<tr class='best'>") == 1 and "inf" not in text.replace("information", "")
    assert text.count("<figcaption>") == len(pngs) and "median over 3 seeds" in text


def test_budgets_as_a_dimension_run_and_report(tmp_path, shared_data):
    """A space entry with a list of epochs: each evaluation is a (cell, budget) pair, also in the report."""
    study = parse_study(small(spaces=[{"name": "ecnas-4v-linscale", "epochs": [108, 4, 12, 36]}],
                              budgets=[{"evaluations": 40}], seeds=2))
    assert {r.epochs for r in study.runs} == {(4, 12, 36, 108)}
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    _, runs, traces = runner.load_runs(out)
    assert set(runs["epochs"]) == {"4/12/36/108"}
    for trace in traces.values():
        assert len(trace) == 40 and trace["epochs"].nunique() > 1
        assert not trace.duplicated(["arch_key", "epochs"]).any()
    write_report(out)
    assert (out / "figures" / "space_ecnas-4v-linscale.png").is_file()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["hv_ratio_median"].between(0, 1).all()


def test_report_on_a_folder_that_is_not_a_study(tmp_path):
    with pytest.raises(EcnasError, match="study.json is missing"):
        write_report(tmp_path)
