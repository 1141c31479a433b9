"""Every built-in optimizer through NASLib's optimizer interface (ecnas_plugin/search/naslib_optimizer.py),
on real tables served as NASLib search spaces: ``ecnas-4v`` (NB101 subspace, 3 repeats, 108 epochs) and
the joint table ``nb201-joint-flowers17-cpu`` (the bridge's own class, 1 repeat, 10 epochs).

The refusals of bad names need no NASLib; everything else runs real NASLib and is skipped, with the
reason, where it is not installed.

Same seed, same sequence: with ``moves="table"`` the wrapper moves as the built-in search does and
reproduces ``run_search`` key for key on the one-repeat joint table. It cannot on ``ecnas-4v``: there
``run_search`` draws each evaluation's repeat from the optimizer's own Generator (so the optimizer's
later draws shift), while NASLib's query draws it with ``random.randint``; and with NASLib's own
moves (the default) sampling and mutation draw from NASLib's ``random``/``numpy.random`` streams,
not from the optimizer's Generator, so those sequences differ on every table.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import ecnas_plugin as ep
from ecnas_plugin.errors import ConfigError, MissingCapability, UnknownName
from ecnas_plugin.search import OPTIMIZERS
from ecnas_plugin.search.naslib_optimizer import naslib_optimizer, naslib_sms_emoa
from conftest import NASLIB_MISSING as MISSING, needs_naslib

NB101, JOINT = "ecnas-4v", "nb201-joint-flowers17-cpu"
BUDGET = {NB101: 108, JOINT: 10}
STEPS = 16
MODEL_BASED = ("bo", "ea-bo", "parego")


def _params(name: str) -> dict:
    """Small settings for 16 steps on a 91-configuration table (``candidates`` at most the unevaluated ones)."""
    return {"initial": 5, "candidates": 40} if name in MODEL_BASED else {}


def _config(seed: int = 0, **search):
    from fvcore.common.config import CfgNode

    return CfgNode({"dataset": "cifar10", "seed": seed, "search": CfgNode(search)})


# ---------------------------------------------------------------- no NASLib needed
def test_unknown_optimizer_and_parameter_are_refused_by_name():
    with pytest.raises(UnknownName, match=r"unknown optimizer 'bananas'; available: .*sms-emoa"):
        naslib_optimizer("bananas")
    with pytest.raises(UnknownName, match=r"unknown parameter of optimizer 'evolution' 'popsize'; available: "
                                          r"eta, population_size, sample_size"):
        naslib_optimizer("evolution", popsize=4)
    with pytest.raises(UnknownName, match=r"unknown moves 'graph' for optimizer 'bo'; available: naslib, table"):
        naslib_optimizer("bo", moves="graph")


def test_the_refusals_import_no_naslib():
    code = ("import sys\nfrom ecnas_plugin.search.naslib_optimizer import naslib_optimizer\n"
            "for args in (('nope',), ('bo', 'x')):\n"
            "    try:\n        naslib_optimizer(args[0], **({args[1]: 1} if len(args) > 1 else {}))\n"
            "    except Exception as e:\n        print(type(e).__name__)\n"
            "print(sorted(m for m in ('naslib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["UnknownName", "UnknownName", "[]"]


# ---------------------------------------------------------------- with NASLib
@pytest.fixture(scope="module")
def served(shared_data):
    """(search space, dataset_api, table, energy per key at the budget) of each served table."""
    if MISSING:
        pytest.skip(f"NASLib is not installed here (missing: {', '.join(MISSING)})")
    from ecnas_plugin.naslib import compat, spaces, subspace, tabular

    compat.apply()
    out = {}
    for name, build in ((NB101, subspace.build_dataset_api), (JOINT, tabular.build_dataset_api)):
        api = build(name)
        table = ep.load_table(name)
        rows = table.frame[table.frame["epochs"] == BUDGET[name]]
        energy = rows.groupby("arch_key")["train_energy_kwh"].mean().to_dict()
        out[name] = (spaces.search_space(name, served=api[tabular.SERVED_KEY]), api, table, energy)
    return out


def _run(served, table: str, name: str, steps: int = STEPS, moves: str = "naslib", seed: int = 0, **search):
    space, api, _, _ = served[table]
    random.seed(seed)  # NASLib's moves and repeat draws use the global streams (NASLib seeds them)
    np.random.seed(seed)
    opt = naslib_optimizer(name, moves=moves, **_params(name))(_config(seed, **search))
    opt.adapt_search_space(space, dataset_api=api)
    for epoch in range(steps):
        opt.new_epoch(epoch)
    return opt


@needs_naslib
@pytest.mark.parametrize("table", [NB101, JOINT])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_builtin_optimizer_searches_a_served_table_under_naslib(served, table, name):
    from naslib.optimizers.core.metaclasses import MetaOptimizer

    opt = _run(served, table, name)
    _, api, tab, energy = served[table]
    assert isinstance(opt, MetaOptimizer) and type(opt).__name__ == f"{OPTIMIZERS[name].__name__}Naslib"
    evs = opt.evaluations
    keys = [ev.key for ev in evs]
    assert len(keys) == STEPS == len(set(keys)), "an optimizer evaluated a configuration twice"
    assert set(keys) <= set(tab.frame["arch_key"]) and all(ev.point.epochs == BUDGET[table] for ev in evs)
    assert np.allclose([ev.train_energy_kwh for ev in evs], [energy[k] for k in keys], rtol=1e-12)
    assert {ev.source for ev in evs} == ({"measured"} if table == NB101 else {"estimated"})
    assert all(0 < ev.val_acc <= 1 and np.isclose(m.accuracy, 100 * ev.val_acc) for m, ev in zip(opt.history, evs))
    # what the optimizer was told is what NASLib answered
    assert opt.optimizer.seen == {ev.point for ev in evs}
    # NASLib's side: the incumbent, statistics in percent, the checkpointables
    assert opt.get_final_architecture() is max(opt.history, key=lambda m: m.accuracy).arch
    train_acc, val_acc, test_acc, _ = opt.train_statistics()
    assert 0 < val_acc <= 100 and 0 < test_acc <= 100
    assert opt.get_checkpointables()["model"] is opt.history
    front = opt.pareto_front()
    assert front and min(m.energy_kwh for m in front) == min(ev.train_energy_kwh for ev in evs)
    with pytest.raises(NotImplementedError):
        opt.get_op_optimizer()


@needs_naslib
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_table_moves_reproduce_the_builtin_run_with_the_same_seed(served, name):
    """One repeat per configuration: nothing but the optimizer's Generator decides, on both sides."""
    from ecnas_plugin.search import Budget, load_space, make_optimizer, run_search

    space = load_space(JOINT)
    rng = np.random.default_rng(7)
    builtin = make_optimizer(name, space, rng, **_params(name))
    trace = run_search(space, builtin, Budget(evaluations=STEPS), None if builtin.multi_objective else (lambda a, e: a),
                       rng)
    opt = _run(served, JOINT, name, moves="table", seed=7)
    assert [ev.key for ev in opt.evaluations] == list(trace["arch_key"])
    assert np.allclose([ev.val_acc for ev in opt.evaluations], trace["val_acc"])
    assert np.allclose([ev.train_energy_kwh for ev in opt.evaluations], trace["train_energy_kwh"])
    assert [ev.config for ev in opt.evaluations] == list(trace["config"])


@needs_naslib
def test_parameters_come_from_the_factory_then_the_config(served):
    space, api, _, _ = served[NB101]
    from_config = naslib_optimizer("evolution")(_config(population_size=5, sample_size=2, epochs=30))
    fixed = naslib_optimizer("evolution", population_size=4)(_config(population_size=5))
    for opt in (from_config, fixed):
        opt.adapt_search_space(space, dataset_api=api)
    assert (from_config.optimizer.population_size, from_config.optimizer.sample_size) == (5, 2)
    assert (fixed.optimizer.population_size, fixed.optimizer.sample_size) == (4, 3)
    assert naslib_optimizer("evolution", population_size=4) is type(fixed)  # one class per arguments
    with pytest.raises(ValueError, match="optimizer 'hyperband': eta must be an integer >= 2, got 1"):
        naslib_optimizer("hyperband", eta=1)(_config()).adapt_search_space(space, dataset_api=api)


@needs_naslib
def test_the_sms_emoa_alias_and_its_population(served):
    assert naslib_sms_emoa() is naslib_optimizer("sms-emoa")
    opt = _run(served, NB101, "sms-emoa", steps=12, population_size=6)
    assert len(opt.population) == 6 and all(m in list(opt.history) for m in opt.population)


@needs_naslib
@pytest.mark.parametrize("name", MODEL_BASED)
def test_model_based_optimizers_refuse_a_space_without_features(served, monkeypatch, name):
    from ecnas_plugin.adapters.base import SearchSpace
    from ecnas_plugin.registry import get_registry

    space, api, _, _ = served[JOINT]
    monkeypatch.setattr(type(get_registry().space("nb201-joint")), "features", SearchSpace.features)
    opt = naslib_optimizer(name)(_config())
    with pytest.raises(MissingCapability, match=f"search space 'nb201-joint' has no 'features' capability, which "
                                                f"optimizer '{name}' needs"):
        opt.adapt_search_space(space, dataset_api=api)
    naslib_optimizer("evolution")(_config()).adapt_search_space(space, dataset_api=api)  # needs no features


@needs_naslib
def test_one_budget_only(served):
    space, api, _, _ = served[NB101]
    ok = naslib_optimizer("hyperband")(_config(budgets=[108]))
    ok.adapt_search_space(space, dataset_api=api)
    assert ok.view.budgets == (108,) and ok.optimizer.budgets == (108,)
    with pytest.raises(ConfigError, match=r"config key 'search.budgets': \[4, 108\]: the built-in optimizers under "
                                          r"NASLib search one budget.*charged only its extra epochs"):
        naslib_optimizer("hyperband")(_config(budgets=[4, 108])).adapt_search_space(space, dataset_api=api)
    with pytest.raises(UnknownName, match=r"unknown epoch budget 12 \(config key 'search.budgets'\) for ecnas-4v.*"
                                          r"available: 108"):
        naslib_optimizer("random")(_config(budgets=12)).adapt_search_space(space, dataset_api=api)


@needs_naslib
def test_energy_on_without_the_bridge_is_refused(served, monkeypatch):
    from ecnas_plugin.naslib import hooks

    space, api, _, _ = served[JOINT]
    monkeypatch.setattr(hooks, "is_patched", lambda: False)
    config = _config()
    config["energy"] = {"objective": "penalty"}
    with pytest.raises(ConfigError, match="config key 'energy': is on, but the bridge is not installed"):
        naslib_optimizer("random")(config).adapt_search_space(space, dataset_api=dict(api))


# ---------------------------------------------------------------- NASLib's Trainer, bridge energy on
def _naslib_config(tmp_path: Path, name: str, epochs: int, **energy):
    from ecnas_plugin.naslib import runner

    config = {"seed": 2, "optimizer": name, "search_space": JOINT, "dataset": "cifar10",
              "out_dir": str(tmp_path / name),
              "search": {"checkpoint_freq": 1000, "epochs": epochs, "population_size": 4, "initial": 4,
                         "candidates": 30},
              "evaluation": {"checkpoint_freq": 5000}, "energy": {"objective": "penalty", **energy}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return runner.load_config(str(path), [])


@pytest.fixture(scope="module")
def bridge(served):
    from ecnas_plugin import naslib as bridge

    bridge.install()  # left installed, as the other NASLib test modules leave it
    return bridge


@needs_naslib
@pytest.mark.parametrize("name,budget_kwh", [("ea-bo", None), ("sms-emoa", None), ("ea-hyperband", 0.0002)])
def test_naslib_trainer_runs_them_with_the_bridge_energy_on(tmp_path, served, bridge, name, budget_kwh):
    """What ``ecnas naslib run`` does with NASLib's own optimizers (runner.search), with a built-in one."""
    from naslib.defaults.trainer import Trainer
    from naslib.utils import set_seed

    from ecnas_plugin.naslib import spaces, tabular

    _, _, _, energy = served[JOINT]
    config = _naslib_config(tmp_path, name, 12, **({"search_budget_kwh": budget_kwh} if budget_kwh else {}))
    api = tabular.build_dataset_api(JOINT, epochs=10)
    set_seed(config.seed)
    opt = naslib_optimizer(name)(config)
    opt.adapt_search_space(spaces.search_space(JOINT, served=api[tabular.SERVED_KEY]), dataset_api=api)
    trainer = Trainer(opt, config, lightweight_output=True)
    trainer.search(resume_from="")
    assert 0 < trainer.evaluate(resume_from="", dataset_api=api) <= 100  # the incumbent's true test accuracy
    save = Path(config.save)
    trace = pd.read_parquet(save / "energy_trace.parquet")
    evs = opt.evaluations
    assert list(trace["arch_key"]) == [ev.key for ev in evs] and trace["arch_key"].is_unique
    assert np.allclose(trace["train_energy_kwh"], trace["arch_key"].map(energy))
    assert np.allclose(trace["train_energy_kwh"], [ev.train_energy_kwh for ev in evs])
    assert np.allclose(trace["val_acc"], [ev.val_acc for ev in evs])  # the true accuracy, for the MO optimizers
    assert np.allclose(trace["objective"], [m.accuracy / 100 for m in opt.history])  # what the SO ones maximised
    assert not np.allclose(trace["objective"], trace["val_acc"])  # the penalty is on
    front = json.loads((save / "pareto_front.json").read_text())
    _, errors = json.loads((save / "errors.json").read_text())
    if budget_kwh is None:
        assert len(trace) == 12 and not front["stopped_by_budget"]
    else:  # the search-energy budget stopped it at an epoch boundary, as NASLib's own optimizers
        assert front["stopped_by_budget"] and len(trace) < 12
        assert trace["search_energy_kwh"].iloc[-1] > budget_kwh >= trace["search_energy_kwh"].iloc[-2]
    assert len(errors["train_energy_kwh"]) == len(trace) and set(errors["energy_source"]) == {"estimated"}
    assert max(errors["valid_acc"]) <= 100 * trace["val_acc"].max() + 1e-9  # statistics report true accuracy
