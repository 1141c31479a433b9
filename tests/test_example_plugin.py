"""The example third-party plugin in examples/ is installed for real and its table loads through the registry."""

from __future__ import annotations

from importlib.metadata import distributions, entry_points
from pathlib import Path

import pytest

from ecnas_plugin import registry as reg
from ecnas_plugin.energy.campaign import campaign_metadata
from ecnas_plugin.energy.contribute import contribute

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ecnas-example-tables"
TABLE = "example-nb201-flowers17-cpu"


@pytest.fixture(scope="module")
def installed(example_installed) -> Path:
    return example_installed


def test_installed_plugin_provides_its_table(installed, monkeypatch):
    dists = [d for d in distributions(path=[str(installed)]) if d.metadata["Name"] == "ecnas-example-tables"]
    assert len(dists) == 1
    eps = [ep for ep in dists[0].entry_points if ep.group == reg.GROUP]
    assert sorted(ep.name for ep in eps) == ["example_convnet", "example_tables"]  # its table, its own space
    monkeypatch.syspath_prepend(str(installed))  # as if installed into site-packages
    found = [ep for ep in entry_points(group=reg.GROUP) if ep.name == "example_tables"]
    assert len(found) == 1 and found[0].value == "ecnas_example_tables"
    registry = reg.Registry(allowed=None)  # ordinary discovery through the entry-point group
    plugin = next(p for p in registry.plugins if p.entry_point == "example_tables")
    assert plugin.loaded and not plugin.errors and plugin.provides == {"tables": [TABLE]}
    assert not plugin.builtin

    monkeypatch.setattr(reg, "_REGISTRY", registry)
    from ecnas_plugin import api

    table = api.load_table(TABLE, download=False)
    assert table.name == TABLE and table.space == "nasbench201" and len(table) == 60
    assert not api.table_dir(TABLE).exists()  # no upstream files: read in place from the package, never cached
    assert table.frame["val_acc"].between(0, 1).all() and (table.frame["epochs"] == 3).all()
    assert len(table.checkpoints) == 180  # one checkpoint per epoch
    meta = campaign_metadata(table.manifest)
    assert meta["dataset"] == "flowers17" and meta["network"] == {"C": 16, "N": 5}
    if "estimated" in meta["methods"].values():
        assert "ESTIMATED" in table.manifest.notes
    if "nasbench201" in registry.items["spaces"]:  # the built-in space, when ecnas-plugin is installed
        arch = table.frame["arch_key"].iloc[0]
        assert api.query("nasbench201", arch, table=TABLE)["arch_key"].tolist() == [arch]


def test_shipped_measurement_is_a_valid_contribution(tmp_path, monkeypatch):
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path))
    data = EXAMPLE / "src" / "ecnas_example_tables" / "data" / "nb201-flowers17-cpu"
    report = contribute(data, dry_run=True)
    assert report.accepted, report.text()
    assert not any(tmp_path.rglob("*.parquet"))  # dry run


def test_studies_run_on_the_plugins_nb201_table_and_on_a_contributed_one(installed, tmp_path, monkeypatch):
    """NAS-Bench-201 in built-in search and studies: the plugin's own table, and the same data
    contributed into the user's `user-nasbench201`."""
    from ecnas_plugin.registry import reset_registry
    from ecnas_plugin.study import parse_study, run_study, write_report
    from ecnas_plugin.study.runner import load_runs

    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setattr(reg, "_REGISTRY", reg.Registry(allowed="example_tables"))
    data = EXAMPLE / "src" / "ecnas_example_tables" / "data" / "nb201-flowers17-cpu"
    assert contribute(data).accepted  # joins the running registry as user-nasbench201
    try:
        study = parse_study({"name": "nb201", "spaces": [TABLE, "user-nasbench201"],
                             "optimizers": ["random", "evolution", "sms-emoa"], "objectives": ["accuracy"],
                             "budgets": [{"evaluations": 20}], "seeds": 2})
        out = run_study(study, out_dir=tmp_path / "study", workers=1, progress=False)
        _, runs, traces = load_runs(out)
        assert set(runs["space"]) == {TABLE, "user-nasbench201"} and len(runs) == 12
        for trace in traces.values():
            assert len(trace) == 20 and trace["arch_key"].is_unique
            assert trace["config"].str.startswith("|").all()  # NB201's own encoding, the arch string
            assert (trace["source"] == "estimated").all()  # the label travels into every trace row
        assert "ESTIMATED energies" in write_report(out).read_text()
    finally:
        reset_registry()
