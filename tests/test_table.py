"""EnergyTable: validation, storage, lookups, merge."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecnas_plugin as ep
from ecnas_plugin.errors import DataFormatError, SchemaError, UnknownName
from ecnas_plugin.table import EnergyTable, Manifest


def _manifest(name="t") -> Manifest:
    return Manifest(name=name, space="nasbench101", description="test rows", tool="test", pue=1.0,
                    components=("gpu",), license="MIT", citation="none")


def _rows(n=4, **overrides) -> pd.DataFrame:
    frame = pd.DataFrame({
        "space": "nasbench101", "arch_key": [f"{i:032x}" for i in range(n)], "dataset": "cifar10",
        "epochs": 4, "hardware": "gpu-x", "campaign": "c", "repeat": 0, "source": "measured",
        "train_energy_kwh": np.linspace(0.01, 0.02, n), "val_acc": np.linspace(0.5, 0.9, n),
    })
    for col, value in overrides.items():
        frame[col] = value
    return frame


@pytest.mark.parametrize("column, value, message", [
    ("train_energy_kwh", np.nan, r"column 'train_energy_kwh' has NaN/empty values at row\(s\) 2"),
    ("train_energy_kwh", -0.5, r"column 'train_energy_kwh' has values below 0 at row\(s\) 2"),
    ("val_acc", 93.1, r"column 'val_acc' has values above 1 at row\(s\) 2"),
    ("source", "guessed", r"column 'source' must be one of \['measured', 'estimated', 'scaled', 'predicted'\]"),
    ("train_energy_kwh", "0.5", r"column 'train_energy_kwh' holds text where numbers belong at row\(s\) 2"),
    ("epochs", "4", r"column 'epochs' holds text where numbers belong at row\(s\) 2"),
    ("val_acc", "n/a", r"column 'val_acc' holds text where numbers belong at row\(s\) 2"),
    ("train_energy_kwh", np.inf, r"column 'train_energy_kwh' has infinite values"),
    ("epochs", 4.5, r"column 'epochs' must hold integers"),
])
def test_validation_names_column_and_row(column, value, message):
    frame = _rows()
    frame[column] = frame[column].astype(object)
    frame.loc[2, column] = value
    with pytest.raises(SchemaError, match=message) as info:
        EnergyTable(frame, _manifest())
    assert info.value.column == column and info.value.rows == [2]


def test_duplicates_unknown_and_missing_columns_are_refused():
    frame = _rows()
    frame.loc[3, "arch_key"] = frame.loc[1, "arch_key"]
    with pytest.raises(SchemaError, match=r"duplicate key .* at row\(s\) 1, 3"):
        EnergyTable(frame, _manifest())
    with pytest.raises(SchemaError, match=r"unknown column\(s\) \['energy'\]"):
        EnergyTable(_rows(energy=1.0), _manifest())
    with pytest.raises(SchemaError, match=r"missing required column\(s\) \['train_energy_kwh'\]"):
        EnergyTable(_rows().drop(columns="train_energy_kwh"), _manifest())


def test_accuracy_may_be_empty_energy_may_not():
    frame = _rows()
    frame.loc[1, "val_acc"] = np.nan  # an energy-only row: accuracy not measured
    assert np.isnan(EnergyTable(frame, _manifest()).get(frame.arch_key[1])["val_acc"])


def test_save_load_round_trip_and_checksums(tmp_path, shared_data):
    table = ep.load_table("ecnas-4v")
    folder = table.save(tmp_path / "copy")
    loaded = EnergyTable.load(folder)
    pd.testing.assert_frame_equal(loaded.frame, table.frame)
    pd.testing.assert_frame_equal(loaded.checkpoints, table.checkpoints)
    assert loaded.manifest == table.manifest
    assert loaded.manifest.checksum and loaded.manifest.rows == 1092

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match="schema version 99 is not known"):
        EnergyTable.load(folder)

    folder = table.save(tmp_path / "copy2")
    raw = bytearray((folder / "table.parquet").read_bytes())
    raw[100] ^= 0xFF
    (folder / "table.parquet").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="table.parquet: sha256 .* does not match the manifest"):
        EnergyTable.load(folder)


def test_save_interrupted_between_its_renames_loses_nothing(tmp_path, monkeypatch):
    """A crash after the live folder was parked but before the new one moved in: the next load,
    or the next save, puts the parked table back instead of treating it as absent (which once let
    a later save delete the only copy of a user table)."""
    import ecnas_plugin.table as table_module

    folder = tmp_path / "user-nasbench101"
    first = EnergyTable(_rows(), _manifest())
    first.save(folder)
    real_replace, calls = os.replace, []

    def crash_on_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")
        real_replace(src, dst)

    second = EnergyTable(_rows().iloc[:1].reset_index(drop=True), _manifest())
    monkeypatch.setattr(table_module.os, "replace", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        second.save(folder)
    monkeypatch.setattr(table_module.os, "replace", real_replace)
    assert not folder.exists() and (tmp_path / ".user-nasbench101.old").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == [".user-nasbench101.old"]  # the temp folder is gone
    pd.testing.assert_frame_equal(EnergyTable.load(folder).frame, first.frame)  # restored on load
    assert folder.is_dir() and not (tmp_path / ".user-nasbench101.old").exists()

    monkeypatch.setattr(table_module.os, "replace", crash_on_second_rename)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        second.save(folder)
    monkeypatch.setattr(table_module.os, "replace", real_replace)
    second.save(folder)  # restores the parked table first, then swaps it out as usual
    pd.testing.assert_frame_equal(EnergyTable.load(folder).frame, second.frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user-nasbench101"]

    parked = tmp_path / ".other.old"  # whatever is parked comes back as it is; loading judges it
    parked.mkdir()
    (parked / "table.parquet").write_bytes(b"half deleted")
    with pytest.raises(DataFormatError, match="manifest.json is missing"):
        EnergyTable.load(tmp_path / "other")
    assert not parked.exists() and (tmp_path / "other" / "table.parquet").read_bytes() == b"half deleted"


def test_a_kill_while_deleting_the_parked_copy_never_brings_it_back(tmp_path, monkeypatch):
    """Deleting the parked copy renames it away first: a half-deleted copy is a leftover, never a
    table; leftovers and temp folders of dead saves are cleaned by the next load or save."""
    import ecnas_plugin.table as table_module

    folder = tmp_path / "user-nasbench101"
    EnergyTable(_rows(), _manifest()).save(folder)
    second = EnergyTable(_rows().iloc[:1].reset_index(drop=True), _manifest())
    real_rmtree = table_module.shutil.rmtree

    def killed_half_way(path, ignore_errors=False):
        path = Path(path)
        if path.name.endswith("-discarded") and path.exists():
            (path / "table.parquet").unlink()  # part of it is gone when the kill comes
            raise KeyboardInterrupt("killed while deleting")
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(table_module.shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        second.save(folder)
    monkeypatch.setattr(table_module.shutil, "rmtree", real_rmtree)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != folder.name]
    assert leftovers == [f".user-nasbench101.tmp-{os.getpid()}-discarded"]  # not `.old`
    real_rmtree(folder)  # the user deletes the table to force a rebuild...
    with pytest.raises(DataFormatError, match="manifest.json is missing"):
        EnergyTable.load(folder)  # ...and the half-deleted copy does not come back as the table
    assert list(tmp_path.iterdir()) == []

    second.save(folder)
    dead = tmp_path / ".user-nasbench101.tmp-999999999-abcd"  # a save killed long ago (no such pid)
    alive = tmp_path / f".user-nasbench101.tmp-{os.getppid()}-efgh"  # a save running in another process
    dead.mkdir()
    alive.mkdir()
    pd.testing.assert_frame_equal(EnergyTable.load(folder).frame, second.frame)
    assert not dead.exists() and alive.exists()


def test_get_lookup_and_get_many_agree_with_the_frame(shared_data):
    table = ep.load_table("ecnas-4v")
    f = table.frame
    sample = f.sample(50, random_state=0)
    for _, row in sample.iterrows():
        rec = table.get(row["arch_key"], epochs=int(row["epochs"]), repeat=int(row["repeat"]))
        assert rec["train_energy_kwh"] == row["train_energy_kwh"] and rec["val_acc"] == row["val_acc"]
    many = table.get_many(sample["arch_key"], epochs=sample["epochs"], repeat=sample["repeat"])
    np.testing.assert_array_equal(many["train_energy_kwh"], sample["train_energy_kwh"])
    rows = table.lookup(sample.arch_key.iloc[0], epochs=108)
    assert sorted(rows["repeat"]) == [0, 1, 2]
    with pytest.raises(TypeError):
        table.get(sample.arch_key.iloc[0], epochs=4)["train_energy_kwh"] = 0  # records are read-only


def test_unknown_keys_say_what_exists(shared_data):
    table = ep.load_table("ecnas-4v")
    key = table.frame.arch_key.iloc[0]
    with pytest.raises(UnknownName, match=r"unknown epoch budget 50 .*; available: 4, 12, 36, 108"):
        table.get(key, epochs=50)
    with pytest.raises(UnknownName, match=r"unknown epoch budget None \(not given"):
        table.get(key)
    with pytest.raises(UnknownName, match=r"unknown dataset 'cifar100' .*available: cifar10"):
        table.lookup(key, dataset="cifar100")
    with pytest.raises(UnknownName, match=r"unknown nasbench101 architecture 'f{32}' in table 'ecnas-4v'"):
        table.get("f" * 32, epochs=4)
    with pytest.raises(UnknownName, match=r"unknown repeat 7"):
        table.get_many([key, key], epochs=4, repeat=[0, 7])


def test_merge_refuses_duplicates_and_mixed_pue():
    a = EnergyTable(_rows(4), _manifest("a"))
    b = EnergyTable(_rows(4).assign(campaign="d"), _manifest("b"))
    merged = a.merge(b, name="ab")
    assert len(merged) == 8 and merged.name == "ab"
    with pytest.raises(SchemaError, match="duplicate key"):
        a.merge(a)
    c = EnergyTable(_rows(4).assign(campaign="e"), replace(_manifest("c"), pue=1.59))
    with pytest.raises(SchemaError, match="PUE 1.59"):
        a.merge(c)


def test_query_api_accepts_any_arch_form(shared_data):
    by_hash = ep.query("nasbench101", "5529e1779433733d1145e20de5d8604e", table="ecnas-4v", epochs=108)
    by_spec = ep.query("nasbench101", "0110001100010000:input,conv1x1-bn-relu,conv3x3-bn-relu,output",
                       table="ecnas-4v", epochs=108)
    pd.testing.assert_frame_equal(by_hash, by_spec)
    assert len(by_hash) == 3
    with pytest.raises(UnknownName, match="unknown table 'nope'"):
        ep.query("nasbench101", "5529e1779433733d1145e20de5d8604e", table="nope")
    with pytest.raises(SchemaError, match="holds space 'nasbench101', not 'nasbench201'"):
        ep.query("nasbench201", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", table="ecnas-4v")
