"""Proof by a third party: the example package's own search space, installed for real, works in
every flow (measure -> contribute -> search / study -> surrogate) with no edit to the core.

The package in examples/ecnas-example-tables is pip-installed into a temporary target and found
through its ``example_convnet`` entry point, exactly as a user's site-packages would be. The space
(``example-convnet``: depth x width x kernel conv nets on Flowers-17) is then only ever named, never
imported by the core. The flow tests share one tiny real campaign (1 epoch, 1 thread).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import distributions
from pathlib import Path

import numpy as np
import pytest

from ecnas_plugin import registry as reg
from ecnas_plugin.errors import InvalidArchitecture, MissingCapability, UnknownName

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ecnas-example-tables"
SPACE = "example-convnet"
USER_TABLE = f"user-{SPACE}"
MEASURED = 14  # of the 18 architectures: enough for the surrogate's held-out split and its folds
CAMPAIGN = "example-convnet-flowers17-test"


def _forget_example_modules() -> None:
    for name in [m for m in sys.modules if m == "ecnas_example_tables" or m.startswith("ecnas_example_tables.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def installed(example_installed) -> Path:
    return example_installed


@pytest.fixture(scope="module")
def registry(installed, tmp_path_factory):
    """The registry with the installed package on ``sys.path`` (as if in site-packages), found through
    its entry points, and a user cache of its own (``user-example-convnet`` starts empty)."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(installed))
    mp.setenv("ECNAS_CACHE_DIR", str(tmp_path_factory.mktemp("example-space-cache")))
    mp.delenv("ECNAS_PLUGINS", raising=False)
    _forget_example_modules()
    reg.reset_registry()
    try:
        yield reg.get_registry()
    finally:
        from ecnas_plugin import api
        from ecnas_plugin.search import space as tabular

        mp.undo()
        _forget_example_modules()
        reg.reset_registry()
        api._LOADED.pop(USER_TABLE, None)  # the per-process caches must not outlive this cache folder
        for key in [k for k in tabular._CACHE if k[0] == USER_TABLE]:
            del tabular._CACHE[key]


@pytest.fixture(scope="module")
def space(registry):
    return registry.space(SPACE)


# ====================================================================== (a) the plugin and its codec
def test_installed_package_registers_its_space_through_its_own_entry_point(installed, registry, space):
    dists = [d for d in distributions(path=[str(installed)]) if d.metadata["Name"] == "ecnas-example-tables"]
    assert len(dists) == 1
    assert sorted(ep.name for ep in dists[0].entry_points if ep.group == reg.GROUP) == ["example_convnet",
                                                                                         "example_tables"]
    plugin = next(p for p in registry.plugins if p.entry_point == "example_convnet")
    assert plugin.loaded and not plugin.errors and not plugin.builtin
    assert plugin.provides == {"spaces": [SPACE]}
    assert registry.owner("spaces", SPACE) is plugin
    assert Path(sys.modules[type(space).__module__].__file__).is_relative_to(installed)  # the installed copy
    assert space.capabilities == ("enumerate", "sample", "neighbours", "network", "features", "strata")
    assert [d.name for d in space.dimensions] == ["arch", "epochs"] and not space.hyperparameters
    assert space.naslib is None and space.network_defaults == {}


def test_codec_round_trips_every_architecture(space):
    archs = list(space.enumerate())
    keys = [space.canonical_key(a) for a in archs]
    assert len(keys) == len(set(keys)) == 18
    assert keys[0] == "d1-w8-k3" and keys[-1] == "d3-w32-k5"
    for key, arch in zip(keys, archs):
        assert space.describe(arch) == key
        assert space.parse_arch(key) == arch == space.decode(key)
        assert space.config_key(arch) == key  # no hyperparameters: the configuration key is the arch key
    # every accepted form names the same architecture
    for form in ("d2-w16-k3", " D2-W16-K3 ", "2,16,3", "(2, 16, 3)", (2, 16, 3), [2, 16, 3],
                 {"depth": 2, "width": 16, "kernel": 3}, np.array([2, 16, 3])):
        assert space.canonical_key(form) == "d2-w16-k3", form
    assert space.fidelity(epochs=1) == {"epochs": 1}


@pytest.mark.parametrize("arch, rule", [
    ("d2-w16", "syntax"),
    ("depth2-width16-kernel3", "syntax"),
    ("2,16", "syntax"),
    ("d4-w16-k3", "bad-depth"),
    ("d0-w16-k3", "bad-depth"),
    ("d2-w12-k3", "bad-width"),
    ("d2-w16-k4", "bad-kernel"),
    ((2, 16, 7), "bad-kernel"),
    ((2.0, 16, 3), "bad-depth"),
    ((True, 16, 3), "bad-depth"),
    ((2, 16), "bad-key"),
    ({"depth": 2, "width": 16}, "bad-key"),
    ({"depth": 2, "width": 16, "kernel": 3, "stride": 1}, "bad-key"),
    (42, "bad-key"),
])
def test_codec_errors_name_the_rule(space, arch, rule):
    with pytest.raises(InvalidArchitecture) as info:
        space.canonical_key(arch)
    assert info.value.rule == rule
    assert f"({rule})" in str(info.value)


def test_out_of_range_values_list_the_choices(space):
    with pytest.raises(InvalidArchitecture, match=r"width 12 is not one of \[8, 16, 32\]"):
        space.parse_arch("d2-w12-k3")


def test_neighbours_move_one_dimension_one_step(space):
    assert sorted(space.canonical_key(a) for a in space.neighbours("d2-w16-k3")) == [
        "d1-w16-k3", "d2-w16-k5", "d2-w32-k3", "d2-w8-k3", "d3-w16-k3"]
    assert sorted(space.canonical_key(a) for a in space.neighbours("d1-w8-k3")) == [
        "d1-w16-k3", "d1-w8-k5", "d2-w8-k3"]
    subset = {"d1-w8-k5", "d3-w32-k5"}
    assert [space.canonical_key(a) for a in space.neighbours("d1-w8-k3", subset)] == ["d1-w8-k5"]
    rng = np.random.default_rng(0)
    assert space.canonical_key(space.mutate("d1-w8-k3", rng, subset)) == "d1-w8-k5"
    with pytest.raises(InvalidArchitecture) as info:
        space.mutate("d1-w8-k3", rng, {"d3-w32-k5"})
    assert info.value.rule == "no-neighbour"
    sampled = {space.canonical_key(space.sample(rng)) for _ in range(200)}
    assert len(sampled) == 18
    assert space.stratum("d2-w16-k3") == (2, 16, 3)


def test_features_are_the_networks_own_sizes(space):
    from ecnas_plugin.networks import count_flops, count_params

    archs = list(space.enumerate())
    values, names = space.features(archs)
    assert names == ["params", "flops", "depth", "width", "kernel"]
    assert values.shape == (18, 5) and values.dtype == float
    for arch, row in zip(archs, values):
        model = space.build_network(arch, num_classes=17)
        assert row[0] == count_params(model) and row[1] == count_flops(model, (3, 16, 16))
        assert tuple(row[2:]) == tuple(arch)
    import torch

    assert space.build_network("d3-w8-k5", 17)(torch.zeros(2, 3, 16, 16)).shape == (2, 17)
    with pytest.raises(UnknownName, match="example-convnet network setting 'C'"):
        space.build_network("d1-w8-k3", 17, C=16)


def test_without_a_naslib_mapping_the_bridge_is_refused_by_name(space):
    with pytest.raises(MissingCapability) as info:
        space.require("naslib", flow="the NASLib bridge")
    assert (info.value.space, info.value.capability) == (SPACE, "naslib")
    assert "'example-convnet' has no 'naslib' capability" in str(info.value)


# ====================================================================== (b)-(e) the flows
def _ecnas(*argv: object) -> int:
    from ecnas_plugin.cli import main

    return main([str(a) for a in argv])


def _measure_argv(data_root: Path, out: Path) -> list[object]:
    # Batches of 16 keep every epoch's window well above 50 ms: codecarbon 3.3.2 does not measure a
    # window shorter than that at all (stop() skips a sample under 0.05 s), and contribute's power
    # check rightly refuses the near-zero energy it then reports.
    return ["measure", SPACE, "--name", CAMPAIGN, "--sample", MEASURED, "--sample-seed", 1, "--epochs", 1,
            "--batch-size", 16, "--data-root", data_root, "--threads", 1, "--license", "MIT", "--out", out,
            "--quiet"]


@pytest.mark.parametrize("extra, message", [
    (["--cells", "d4-w8-k3"], "invalid architecture (bad-depth) in 'd4-w8-k3'"),
    (["--cells", "d1-w8-k3", "--network", "C=16"], "example-convnet network setting 'C'"),
])
def test_measure_refuses_what_the_space_refuses_before_anything_runs(registry, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert _ecnas("measure", SPACE, "--name", "refused", "--epochs", 1, "--out", out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def campaign(registry, meter_works, shared_data, tmp_path_factory):
    """(b) ``ecnas measure example-convnet``: a stratified sample of the space, 1 epoch on the real
    Flowers-17 images, with whatever meter ``auto`` finds here."""
    out = tmp_path_factory.mktemp("campaign") / CAMPAIGN
    assert _ecnas(*_measure_argv(shared_data / "flowers17", out)) == 0
    return out


def test_measure_writes_a_table_of_the_new_space(space, campaign, shared_data, capsys):
    from ecnas_plugin.energy.campaign import campaign_metadata
    from ecnas_plugin.table import EnergyTable

    table = EnergyTable.load(campaign / "table")
    frame = table.frame
    assert table.space == SPACE and len(frame) == MEASURED and frame["arch_key"].is_unique
    keys = frame["arch_key"].tolist()
    assert all(space.canonical_key(k) == k for k in keys)
    assert len({space.stratum(k)[:2] for k in keys}) == 9  # the stratified sample covers every depth x width
    assert (frame["epochs"] == 1).all()
    assert (frame["source"] == frame["energy_method"].map({"estimated": "estimated"}).fillna("measured")).all()
    assert frame["val_acc"].between(0, 1).all() and (frame["train_energy_kwh"] > 0).all()
    values, names = space.features(keys)  # the campaign counted the sizes the features compute
    assert frame["params"].tolist() == values[:, names.index("params")].astype(int).tolist()
    assert frame["flops"].tolist() == values[:, names.index("flops")].tolist()
    assert len(table.checkpoints) == MEASURED
    meta = campaign_metadata(table.manifest)
    assert meta["space"] == SPACE and meta["dataset"] == "flowers17" and meta["network"] == {}
    capsys.readouterr()
    assert _ecnas(*_measure_argv(shared_data / "flowers17", campaign)) == 0  # resumable: nothing left to do
    assert f"0 now, {MEASURED} from the journal" in capsys.readouterr().out


@pytest.fixture(scope="module")
def contributed(campaign):
    """(c) ``ecnas contribute``: the campaign merged into the user table ``user-example-convnet``."""
    assert _ecnas("contribute", campaign / "table") == 0
    reg.reset_registry()  # a new process would see the new user table; this one reloads the registry
    return USER_TABLE


def test_contribution_lands_in_a_user_table_of_the_space(contributed, campaign, space, capsys):
    from ecnas_plugin import api

    table = api.load_table(contributed)
    assert table.space == SPACE and len(table) == MEASURED
    key = table.frame["arch_key"].iloc[0]
    assert api.query(SPACE, space.describe(space.decode(key)), table=contributed)["arch_key"].tolist() == [key]
    capsys.readouterr()
    arch = space.decode(key)  # `ecnas query` reads any form the space's parse_arch reads
    assert _ecnas("query", SPACE, "--arch", f"{arch.depth},{arch.width},{arch.kernel}", "--table", contributed,
                  "--format", "json") == 0
    assert [r["arch_key"] for r in json.loads(capsys.readouterr().out)] == [key]
    assert _ecnas("contribute", campaign / "table") == 1  # the same rows again: duplicates, refused
    assert "already contributed" in capsys.readouterr().err


def test_builtin_search_runs_on_the_user_table(contributed):
    from ecnas_plugin.search import Budget, load_space, make_optimizer, run_search

    tabular = load_space(contributed)
    assert len(tabular) == MEASURED and tabular.epochs == 1
    for name in ("random", "evolution", "sms-emoa"):
        rng = np.random.default_rng(0)
        params = {"population_size": 4, "sample_size": 2} if name == "evolution" else {}
        objective = None if name == "sms-emoa" else (lambda acc, kwh: acc)
        trace = run_search(tabular, make_optimizer(name, tabular, rng, **params), Budget(evaluations=10),
                           objective, rng)
        assert len(trace) == 10 and set(trace["arch_key"]) <= set(tabular.keys)
        assert trace["config"].tolist() == trace["arch_key"].tolist()  # the space's own text form
        assert (np.diff(trace["search_energy_kwh"]) > 0).all()
    rng = np.random.default_rng(1)
    point = tabular.points[0]
    for _ in range(20):  # mutation asks the space for a neighbour, and never leaves the table
        assert tabular.mutate(point, rng).key in tabular.key_set
    assert len(tabular.query(point.key).curve) == 1


def test_study_runs_on_the_user_table(contributed, tmp_path):
    import yaml

    from ecnas_plugin.study.runner import load_runs

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "name": "example-convnet-study", "spaces": [contributed],
        "optimizers": ["random", {"name": "evolution", "params": {"population_size": 4, "sample_size": 2}},
                       "sms-emoa"],
        "objectives": ["accuracy", {"name": "soft", "exponent": -0.07}],
        "budgets": [{"evaluations": 8}], "seeds": 2, "workers": 1}))
    out = tmp_path / "study"
    assert _ecnas("study", "run", config, "--out", out, "--quiet") == 0
    _, runs, traces = load_runs(out)
    assert set(runs["space"]) == {contributed} and len(runs) == (2 * 2 + 1) * 2
    assert all(len(t) == 8 and t["config"].str.fullmatch(r"d\d-w\d+-k\d").all() for t in traces.values())
    report = (out / "report.html").read_text()
    estimated = any((t["source"] == "estimated").any() for t in traces.values())
    assert ("ESTIMATED energies</b> in " + contributed in report) == estimated  # the label reaches the report


def test_a_study_of_encoding_naslib_optimizers_on_the_space_is_refused_by_name(contributed):
    from ecnas_plugin.study import ConfigError, parse_study

    # no NASLib mapping, but sample + neighbours: the bridge serves the table to RS/RE/LS, and refuses
    # an optimizer that needs NASLib's encoders, naming it, before NASLib is even looked for
    with pytest.raises(ConfigError, match="NASLib optimizer 'bananas' cannot search") as info:
        parse_study({"name": "t", "spaces": [contributed], "optimizers": ["naslib:bananas"],
                     "objectives": ["accuracy"], "budgets": [{"evaluations": 4}], "seeds": 1})
    assert SPACE in str(info.value)


def test_the_naslib_bridge_serves_the_table_by_capabilities(contributed):
    from ecnas_plugin.errors import ConfigError
    from ecnas_plugin.naslib import spaces

    target = spaces.target(contributed)  # `search_space: user-example-convnet`
    assert target.serving == spaces.TABULAR and target.space.name == SPACE and target.naslib_space is None
    assert contributed in spaces.servable_tables()
    config = {"search_space": "nasbench201", "dataset": "cifar10", "energy": {"table": contributed}}
    with pytest.raises(ConfigError, match="'example-convnet'") as refused:  # NB201 search, this table's energy
        spaces.plan(config, spaces.target("nasbench201"))
    assert refused.value.key == "energy.table"


def test_surrogate_fits_and_predicts_the_space(contributed, space, tmp_path, capsys):
    from ecnas_plugin import api

    model_dir = tmp_path / "model"
    capsys.readouterr()
    assert _ecnas("surrogate", "fit", "--table", contributed, "--model", "additive", "--test-fraction", 0.3,
                  "--out", model_dir) == 0
    assert json.loads(capsys.readouterr().out)["saved"] == str(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["context"]["space"] == SPACE and manifest["feature_set"] == space.feature_set
    assert manifest["feature_names"] == space.features([])[1] and manifest["training"]["cells"] == 10
    assert set(manifest["metrics"]["held_out"]) >= {"kendall_tau", "spearman_rho"}
    measured = set(api.load_table(contributed).frame["arch_key"])
    unmeasured = sorted({space.canonical_key(a) for a in space.enumerate()} - measured)
    wanted = ["d2-w16-k3", *unmeasured]
    assert _ecnas("surrogate", "predict", "--model-dir", model_dir, "--format", "json",
                  *[a for k in wanted for a in ("--arch", k)]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows if isinstance(rows, list) else rows["rows"]
    assert [r["arch_key"] for r in rows] == wanted
    assert all(r["space"] == SPACE and r["source"] == "predicted" and r["train_energy_kwh"] > 0 for r in rows)
