"""NASLib's own RS, RE and LS on a table of a space without a NASLib mapping: the shipped joint
table (``nb201-joint-flowers17-cpu``: NB201 cells x hyperparameters, codecarbon-estimated energy),
served through the bridge's own search-space class (ecnas_plugin/naslib/tabular.py).

The refusals and the served table's moves need no NASLib; the searches need real NASLib and are
skipped, with the reason, where it is missing. No count of the table's configurations is assumed
(a partial table is shipped while its campaign runs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ecnas_plugin as ep
from ecnas_plugin.errors import MissingCapability
from ecnas_plugin.naslib import spaces, tabular
from ecnas_plugin.naslib.config import ConfigError
from ecnas_plugin.registry import get_registry
from ecnas_plugin.table import TableSpec
from conftest import needs_naslib

TABLE = "nb201-joint-flowers17-cpu"


@pytest.fixture(scope="module")
def table():
    return ep.load_table(TABLE)


@pytest.fixture(scope="module")
def energy_of(table):
    """The table's energy per configuration at its budget (mean over repeats), as the bridge charges it."""
    rows = table.frame[table.frame["epochs"] == max(table.values("epochs"))]
    return rows.groupby("arch_key")["train_energy_kwh"].mean().to_dict()


# ---------------------------------------------------------------- no NASLib needed
def test_the_table_is_served_by_capabilities():
    space = get_registry().space("nb201-joint")
    assert not space.supports("naslib") and space.supports("sample") and space.supports("neighbours")
    tgt = spaces.target(TABLE)
    assert tgt.table == TABLE and tgt.serving == spaces.TABULAR and tgt.naslib_space is None
    assert TABLE in spaces.servable_tables()
    assert spaces.target("ecnas-4v").serving == spaces.SUBSPACE  # NB101 tables keep their serving


@pytest.mark.parametrize("optimizer", ["bananas", "npenas", "bp"])
def test_encoding_optimizers_are_refused_by_name(optimizer):
    with pytest.raises(ConfigError) as info:
        spaces.check_search(TABLE, [optimizer])
    msg = str(info.value)
    assert info.value.key == "optimizer" and "\n" not in msg
    assert f"{optimizer!r}" in msg and TABLE in msg and "'nb201-joint'" in msg and "NASLib's encoders" in msg
    for ok in ("rs", "re", "ls"):
        spaces.check_search(TABLE, [ok])
    spaces.check_search("ecnas-4v", [optimizer])  # NASLib's own NB101 graphs: its encoders know them


def test_the_refusal_imports_no_naslib():
    code = ("import sys\nfrom ecnas_plugin.naslib import spaces\ntry:\n"
            f"    spaces.check_search({TABLE!r}, ['bananas'])\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "print(sorted(m for m in ('naslib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ConfigError", "[]"]


def test_a_space_without_neighbours_is_refused_by_name(monkeypatch, unmovable_space):
    monkeypatch.setitem(get_registry().items["tables"], "flat-table", TableSpec("flat-table", unmovable_space, "test",
                                                                                (), build=lambda files: None))
    with pytest.raises(MissingCapability, match="'flat-test' has no 'sample' capability.*search_space 'flat-table'"):
        spaces.target("flat-table")
    assert "flat-table" not in spaces.servable_tables()


def test_the_served_table_moves_inside_itself_and_answers_from_its_rows(table):
    bench = tabular.build_dataset_api(TABLE)[tabular.SERVED_KEY]
    assert bench.default_epochs == max(table.values("epochs")) and set(bench.keys) == set(table.frame["arch_key"])
    np.random.seed(0)
    keys = [bench.sample() for _ in range(20)]
    assert len(set(keys)) > 10 and all(k in bench for k in keys)
    for key in keys[:5]:
        child = bench.mutate(key)
        assert child in bench and child != key
        nbhd = bench.neighbours(key)
        assert nbhd and key not in nbhd and all(n in bench for n in nbhd)  # a sparse table: the nearest ones
    rows = table.frame[(table.frame["arch_key"] == keys[0]) & (table.frame["epochs"] == bench.default_epochs)]
    run = bench.draw(keys[0])  # one of its repeats, every metric from the same row
    match = rows[np.isclose(rows["val_acc"], run["validation_accuracy"])].iloc[0]
    assert (run["training_time"], run["train_accuracy"], run["test_accuracy"], run["train_energy_kwh"]) == \
        (match["train_time_s"], match["train_acc"], match["test_acc"], match["train_energy_kwh"])


# ---------------------------------------------------------------- with NASLib
def _config(tmp_path: Path, optimizer: str, epochs: int, **energy) -> Path:
    config = {
        "seed": 3, "optimizer": optimizer, "search_space": TABLE, "dataset": "cifar10", "out_dir": str(tmp_path / optimizer),
        "search": {"checkpoint_freq": 1000, "fidelity": 108, "epochs": epochs, "num_init": 3, "sample_size": 3,
                   "population_size": 4, "predictor_type": "bananas", "k": 5, "num_ensemble": 2, "acq_fn_type": "its",
                   "acq_fn_optimization": "mutation", "encoding_type": "path", "num_arches_to_mutate": 2,
                   "max_mutations": 1, "num_candidates": 20, "batch_size": 256, "data_size": 25000, "cutout": False,
                   "cutout_length": 16, "cutout_prob": 1.0, "train_portion": 0.7, "debug_predictor": False},
        "evaluation": {"checkpoint_freq": 5000}, "energy": {"objective": "penalty", **energy}}
    path = tmp_path / f"{optimizer}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@needs_naslib
@pytest.mark.parametrize("optimizer", ["rs", "re", "ls"])
def test_naslib_optimizers_search_the_joint_table_with_its_estimated_energy(tmp_path, capsys, monkeypatch, bridge,
                                                                            energy_of, optimizer):
    from ecnas_plugin.naslib import runner

    assert hasattr(tabular.graph_class().query, "__ecnas_original__")  # wrapped like NASLib's own spaces
    epochs = 10
    moves = {"sample": 0, "mutate": 0, "neighbours": 0}
    for move in moves:  # count the served table's moves NASLib's optimizer makes
        def counted(self, *a, _move=move, _original=getattr(tabular.TabularBench, move)):
            moves[_move] += 1
            return _original(self, *a)

        monkeypatch.setattr(tabular.TabularBench, move, counted)

    assert runner.run(str(_config(tmp_path, optimizer, epochs)), []) == 0  # what `ecnas naslib run` does
    out = capsys.readouterr().out
    summary = json.loads(out[out.rindex("\n{\n") + 1:])
    assert summary["evaluations"] == epochs and set(summary["energy_sources"]) == {"estimated"}
    save = Path(summary["save"])
    trace = pd.read_parquet(save / "energy_trace.parquet")
    assert len(trace) == epochs and set(trace["arch_key"]) <= set(energy_of)  # only the table's configurations
    assert np.allclose(trace["train_energy_kwh"], trace["arch_key"].map(energy_of))
    assert (trace["energy_source"] == "estimated").all()
    assert np.allclose(trace["search_energy_kwh"], np.cumsum(trace["train_energy_kwh"]))
    _, errors = json.loads((save / "errors.json").read_text())
    assert set(errors["energy_source"]) == {"estimated"} and len(errors["train_energy_kwh"]) == epochs
    front = json.loads((save / "pareto_front.json").read_text())
    assert front["table"] == TABLE and front["front"] and {p["energy_source"] for p in front["front"]} == {"estimated"}
    # RS samples; RE mutates once its population (4) is full; LS walks neighbourhoods after num_init (3)
    assert moves["sample"] >= (epochs if optimizer == "rs" else 3)
    assert (moves["mutate"] == epochs - 4) if optimizer == "re" else moves["mutate"] == 0
    assert (moves["neighbours"] > 0) == (optimizer == "ls")


@needs_naslib
@pytest.mark.parametrize("optimizer", ["bananas", "npenas"])
def test_ecnas_naslib_run_refuses_encoding_optimizers_before_anything_runs(tmp_path, capsys, monkeypatch, bridge,
                                                                           optimizer):
    from naslib.defaults.trainer import Trainer

    from ecnas_plugin.naslib import runner

    started = []
    monkeypatch.setattr(Trainer, "__init__", lambda self, *a, **k: started.append(a))
    assert runner.run(str(_config(tmp_path, optimizer, 5)), []) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecnas naslib run: config key 'optimizer': NASLib optimizer") and TABLE in err
    assert started == [] and not list(tmp_path.rglob("errors.json"))


@needs_naslib
def test_a_study_run_with_a_naslib_optimizer_converts_to_the_study_trace(tmp_path, bridge, energy_of):
    """The study worker's path (study/naslib_runs.run_naslib): the joint table's configurations,
    energies and their `estimated` label in the study's trace format."""
    from ecnas_plugin.search import TRACE_COLUMNS, load_space
    from ecnas_plugin.study import naslib_runs
    from ecnas_plugin.study.config import RunSpec

    space = load_space(TABLE)
    spec = RunSpec(TABLE, space.epochs, "naslib:re", {"population_size": 4, "sample_size": 2}, "accuracy",
                   "accuracy", {}, 8, None, 0)
    trace = naslib_runs.run_naslib(spec, space, tmp_path / "run")
    assert list(trace.columns) == list(TRACE_COLUMNS) and len(trace) == 8
    assert (trace["source"] == "estimated").all() and set(trace["arch_key"]) <= set(space.keys)
    assert np.allclose(trace["true_energy_kwh"], trace["arch_key"].map(energy_of))
    assert (tmp_path / "run" / "naslib" / "pareto_front.json").is_file()


def test_a_study_config_refuses_encoding_optimizers_on_the_joint_table_before_anything_runs():
    from ecnas_plugin.study import ConfigError as StudyConfigError
    from ecnas_plugin.study import parse_study

    # with or without NASLib: the bridge's capability check comes before NASLib is looked for
    with pytest.raises(StudyConfigError, match="NASLib optimizer 'bananas' cannot search"):
        parse_study({"name": "j", "spaces": [TABLE], "optimizers": ["naslib:bananas"],
                     "budgets": [{"evaluations": 5}]})


@needs_naslib
def test_a_study_runs_naslib_rs_re_ls_on_the_joint_table(tmp_path):
    from ecnas_plugin.study import parse_study, run_study

    study = parse_study({"name": "j", "spaces": [TABLE], "optimizers": ["naslib:rs", "naslib:re", "naslib:ls"],
                         "budgets": [{"evaluations": 8}], "seeds": 1})
    out = run_study(study, out_dir=tmp_path, workers=1, progress=False)
    keys = set(ep.load_table(TABLE).frame["arch_key"])
    for folder in sorted((out / "runs").iterdir()):
        trace = pd.read_parquet(folder / "trace.parquet")
        assert len(trace) == 8 and set(trace["source"]) == {"estimated"} and set(trace["arch_key"]) <= keys
