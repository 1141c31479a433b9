"""The bridge against real NASLib (upstream Develop) on the real EC-NAS 5-vertex table.

Skipped where NASLib is not installed (CI): see the docs for installing it next to the plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ecnas_plugin.naslib import compat

if compat.missing_requirements():
    pytest.skip(f"NASLib not installed: see docs (missing {', '.join(compat.missing_requirements())})",
                allow_module_level=True)

import ecnas_plugin as ep  # noqa: E402
from ecnas_plugin import naslib as bridge  # noqa: E402
from ecnas_plugin.naslib import runner  # noqa: E402
from ecnas_plugin.naslib.config import ConfigError  # noqa: E402

BASE = {
    "seed": 1, "optimizer": "rs", "search_space": "ecnas-5v", "dataset": "cifar10",
    "search": {"checkpoint_freq": 1000, "fidelity": 108, "epochs": 30, "predictor_type": "bananas",
               "num_init": 10, "k": 5, "num_ensemble": 2, "acq_fn_type": "its", "acq_fn_optimization": "mutation",
               "encoding_type": "path", "num_arches_to_mutate": 2, "max_mutations": 1, "num_candidates": 20,
               "sample_size": 10, "population_size": 20, "batch_size": 256, "data_size": 25000, "cutout": False,
               "cutout_length": 16, "cutout_prob": 1.0, "train_portion": 0.7, "debug_predictor": False},
    "evaluation": {"checkpoint_freq": 5000},
}


@pytest.fixture(scope="module")
def energy_of(shared_data):
    frame = ep.load_table("ecnas-5v").frame
    return frame.groupby("arch_key")["train_energy_kwh"].mean().to_dict()


@pytest.fixture(autouse=True)
def _installed(shared_data):
    bridge.install()
    yield
    bridge.install()


def _run(tmp_path: Path, name: str, **changes) -> tuple[dict, Path]:
    config = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key == "search":
            config["search"].update(value)
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    config["out_dir"] = str(tmp_path / name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = runner.load_config(str(path), [])
    runner.search(cfg)
    _, trajectory = json.loads((Path(cfg.save) / "errors.json").read_text())
    trajectory.pop("runtime")
    return trajectory, Path(cfg.save)


@pytest.mark.parametrize("optimizer", ["rs", "re", "ls"])
def test_off_means_off(tmp_path, optimizer):
    """Plain NASLib (bridge uninstalled), no energy key, and energy: False give identical errors.json."""
    bridge.uninstall()
    plain, _ = _run(tmp_path, "plain", optimizer=optimizer)
    bridge.install()
    absent, save = _run(tmp_path, "absent", optimizer=optimizer)
    false, _ = _run(tmp_path, "false", optimizer=optimizer, energy=False)
    assert plain == absent == false
    assert "train_energy_kwh" not in absent and not (save / "energy_trace.parquet").exists()
    on, _ = _run(tmp_path, "on", optimizer=optimizer, energy={"objective": "penalty", "weight": 2.0})
    assert on["valid_acc"] != plain["valid_acc"]  # the switch does something


def test_energy_on_keeps_true_accuracies_and_adds_energy_columns(tmp_path, energy_of):
    import pandas as pd

    traj, save = _run(tmp_path, "pen", optimizer="re", energy={"objective": "penalty", "weight": 1.0})
    trace = pd.read_parquet(save / "energy_trace.parquet")
    assert len(trace) == 30 and len(traj["train_energy_kwh"]) == 30
    for epoch, (val, energy, spent) in enumerate(zip(traj["valid_acc"], traj["train_energy_kwh"],
                                                     traj["search_energy_kwh"])):
        seen = trace[trace["epoch"] <= epoch]
        # the incumbent is a traced cell; errors.json shows its TRUE accuracy (not the objective)
        hit = seen[(seen["val_acc"] * 100 - val).abs() < 1e-9]
        assert not hit.empty and energy == pytest.approx(energy_of[hit["arch_key"].iloc[-1]])
        assert spent == pytest.approx(seen["train_energy_kwh"].sum())
    assert (trace["objective"] < trace["val_acc"]).all()
    front = json.loads((save / "pareto_front.json").read_text())
    assert front["hypervolume_val"] > 0 and front["reference_point"]["error"] == 1.0


def test_constraint_holds_for_the_incumbent(tmp_path, energy_of):
    import pandas as pd

    traj, save = _run(tmp_path, "con", optimizer="re", energy={"objective": "constraint", "limit_kwh": 0.012})
    trace = pd.read_parquet(save / "energy_trace.parquet")
    assert trace["feasible"].any()
    for epoch, energy in enumerate(traj["train_energy_kwh"]):
        if trace.loc[trace["epoch"] <= epoch, "feasible"].any():  # once a feasible cell is known ...
            assert energy <= 0.012  # ... the incumbent is feasible
    assert traj["train_energy_kwh"][-1] <= 0.012


def test_search_energy_budget_stops_the_search(tmp_path):
    traj, save = _run(tmp_path, "bud", optimizer="rs", energy={"search_budget_kwh": 0.2})
    front = json.loads((save / "pareto_front.json").read_text())
    assert front["stopped_by_budget"] and len(traj["valid_acc"]) < 30
    spent = traj["search_energy_kwh"]
    assert spent[-1] > 0.2 and spent[-2] <= 0.2 and front["search_energy_kwh"] == pytest.approx(spent[-1])


def test_bananas_runs_energy_aware(tmp_path):
    traj, save = _run(tmp_path, "ban", optimizer="bananas", energy={"objective": "chebyshev"},
                      search={"epochs": 12, "k": 2, "num_ensemble": 1, "num_candidates": 10})
    import pandas as pd

    trace = pd.read_parquet(save / "energy_trace.parquet")
    assert len(trace) == 12 and trace["weight_acc"].nunique() == 12


def test_use_zc_api_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="search.use_zc_api"):
        _run(tmp_path, "zc", optimizer="bananas", search={"use_zc_api": True}, energy=True)


def test_uninstall_restores_naslib(tmp_path):
    from naslib.defaults.trainer import Trainer
    from naslib.optimizers import RandomSearch
    from naslib.search_spaces import NasBench101SearchSpace

    wrapped = NasBench101SearchSpace.query
    assert hasattr(wrapped, "__ecnas_original__") and bridge.installed()
    bridge.uninstall()
    assert NasBench101SearchSpace.query is wrapped.__ecnas_original__
    assert not hasattr(Trainer.search, "__ecnas_original__") and "__init__" in RandomSearch.__dict__
    assert not any(hasattr(v, "__ecnas_original__") for v in vars(RandomSearch).values())
    bridge.install()
    assert hasattr(NasBench101SearchSpace.query, "__ecnas_original__")


def test_runner_cli_entry(tmp_path, capsys):
    config = dict(BASE, out_dir=str(tmp_path / "cli"), energy={"objective": "penalty"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert runner.run(str(path), ["search.epochs", "5"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.rindex("\n{\n") + 1:])  # the summary follows NASLib's log lines
    assert summary["evaluations"] == 5 and summary["hypervolume_val"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(dict(config, energy={"objectiv": "x"})))
    assert runner.run(str(bad), []) == 2
    assert "energy.objectiv" in capsys.readouterr().err


def test_runs_record_the_naslib_they_ran_on(tmp_path):
    """errors.json and pareto_front.json say which ecnas-plugin and NASLib produced them (NASLib's
    version and source path; its commit, or 'unknown' with the reason where it cannot be known)."""
    from ecnas_plugin.naslib import compat
    from ecnas_plugin.version import __version__

    traj, save = _run(tmp_path, "prov", optimizer="rs", energy=True, search={"epochs": 3})
    front = json.loads((save / "pareto_front.json").read_text())
    for record in (traj["ecnas_provenance"], front["provenance"]):
        assert record["ecnas_plugin"]["version"] == __version__
        naslib = record["naslib"]
        assert naslib == json.loads(json.dumps(compat.naslib_provenance()))
        assert naslib["version"] != "unknown" and naslib["path"].endswith("naslib")
        assert naslib["commit"] != "unknown" or naslib["commit_from"].startswith("no .git in")
    plain, _ = _run(tmp_path, "plain", optimizer="rs", search={"epochs": 3})
    assert "ecnas_provenance" not in plain  # energy off: errors.json is NASLib's own


def test_a_table_that_does_not_cover_the_space_is_refused_before_the_search_begins(tmp_path, capsys, monkeypatch):
    """ecnas-4v energy on the 5-vertex space: a named energy.table error, and NASLib's Trainer never
    starts ("Beginning search" is never logged); the same from a script that drives NASLib itself."""
    from naslib.defaults.trainer import Trainer
    from naslib.optimizers import RegularizedEvolution

    from ecnas_plugin.naslib import spaces, subspace

    started = []
    monkeypatch.setattr(Trainer, "__init__", lambda self, *a, **k: started.append(a))
    config = dict(BASE, out_dir=str(tmp_path / "run"), energy={"table": "ecnas-4v"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert runner.run(str(path), []) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecnas naslib run: config key 'energy.table'") and "lacks 2441 of the 2532 cells" in err
    assert started == [] and not any("Beginning search" in p.read_text() for p in tmp_path.rglob("log.log"))
    # a script: the optimizer's adapt_search_space refuses before anything is evaluated
    cfg = runner.load_config(str(path), [])
    optimizer = RegularizedEvolution(cfg)
    with pytest.raises(ConfigError) as info:
        optimizer.adapt_search_space(spaces.search_space("ecnas-5v"), dataset_api=subspace.build_dataset_api("ecnas-5v"))
    assert info.value.key == "energy.table"
