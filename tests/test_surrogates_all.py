"""The whole NAS-Bench-101 space as arrays (energy/surrogates/nb101_all.py): vectorised module hashes
against the codec, the enumeration against the codec's and NAS-Bench-101's count, the predicted
table of all 423,624 cells, and `ecnas surrogate predict` (--all and its bad arguments)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin import cli
from ecnas_plugin.adapters import nasbench101 as nb101
from ecnas_plugin.energy import surrogates as S
from ecnas_plugin.energy.surrogates import _wlhash
from ecnas_plugin.energy.surrogates import features as F
from ecnas_plugin.energy.surrogates import nb101_all as A
from ecnas_plugin.table import EnergyTable


def _relabelled(cell: nb101.Cell, rng) -> nb101.Cell:
    """An isomorphic copy: interior vertices renumbered by a permutation that keeps edges forward."""
    n = cell.num_vertices
    m = cell.as_numpy()
    for perm in rng.permutation(list(itertools.permutations(range(1, n - 1))))[:50]:
        order = [0, *perm, n - 1]  # new vertex i is old vertex order[i]
        new = m[np.ix_(order, order)]
        if not np.tril(new).any():
            return nb101.Cell(new.tolist(), [cell.ops[i] for i in order])
    return cell


def test_module_hashes_equal_the_codecs_including_isomorphic_duplicates():
    rng = np.random.default_rng(0)
    batch = F.random_cell_batch(4000, seed=21)  # random graphs and ops: repeats and isomorphic pairs
    cells = batch.cells()
    copies = [_relabelled(c, rng) for c in cells[:1500]]
    changed = sum(c.matrix != d.matrix or c.ops != d.ops for c, d in zip(cells, copies))
    small = list(nb101.enumerate_cells(4))  # 2..4 vertices: every vertex count the batch lacks
    everything = cells + copies + small
    got = A.module_hashes(F.CellBatch.from_cells(everything), workers=1).astype(str)
    want = [nb101.module_hash(c) for c in everything]
    assert got.tolist() == want
    assert changed > 500  # most copies really are other labellings...
    assert (got[:1500] == got[4000:5500]).all()  # ...of the same cells
    assert len(set(want)) < len(want)
    # the CellBatch path used by predict_energy is the same function
    assert batch.keys() == want[:4000]


def test_worker_processes_give_the_same_hashes():
    big, small = F.random_cell_batch(42_000, seed=4), F.CellBatch.from_cells(nb101.enumerate_cells(5))
    batch = F.CellBatch(np.concatenate([big.adjacency, small.adjacency]), np.concatenate([big.ops, small.ops]))
    job = A.HashJob(batch, workers=2)  # over PARALLEL_MIN_CELLS, jobs of 7 and <= 5 vertices: two parts
    assert len(job.procs) == 1 and job.procs[0][1] is not None
    parallel = job.result()
    assert (parallel == A.module_hashes(batch, workers=1)).all()
    sample = np.random.default_rng(1).choice(len(batch), 300, replace=False)
    cells = batch.cells()
    assert [nb101.module_hash(cells[i]) for i in sample] == parallel[sample].astype(str).tolist()


def test_ambiguous_sort_keys_are_hashed_exactly(monkeypatch):
    """Cells whose neighbours the kernel cannot order by 61 bits are flagged and redone by the codec."""
    batch = F.random_cell_batch(500, seed=8)
    real = _wlhash.fingerprints

    def flag_all(adj, labels):
        digests, suspect = real(adj, labels)
        return np.zeros_like(digests), np.ones_like(suspect)

    monkeypatch.setattr(_wlhash, "fingerprints", flag_all)
    got = A.module_hashes(batch, workers=1).astype(str).tolist()
    assert got == [nb101.module_hash(c) for c in batch.cells()]


def test_enumeration_is_the_codecs_up_to_5_vertices():
    for vertices in (2, 3, 4, 5):
        cells = A.space_cells(vertices)
        codec = nb101.cells_by_hash(vertices)
        assert cells.keys.astype(str).tolist() == list(codec)  # same cells, same order
        assert cells.batch.cells() == list(codec.values())
    with pytest.raises(ValueError, match="max_vertices"):
        A.space_cells(8)


def test_describe_is_the_spaces_adj_ops():
    space = ep.get_space("nasbench101")
    batch = F.random_cell_batch(300, seed=3)
    cells = batch.cells() + list(nb101.enumerate_cells(3))
    texts = A.describe(F.CellBatch.from_cells(cells))
    assert texts.tolist() == [space.describe(c) for c in cells]


@pytest.fixture(scope="module")
def whole(shared_data):
    """The predicted table of every NB101 cell (the shipped model)."""
    return A.predicted_table()


def test_whole_space_has_every_cell_once(whole):
    frame = whole.frame
    assert len(frame) == A.ALL_NB101_CELLS == 423_624
    assert frame["arch_key"].is_unique and frame["arch_text"].is_unique
    assert whole.sources() == {"predicted": 423_624}
    counts = frame["arch_text"].str.split(":").str[1].str.count(",") + 1  # vertices per cell
    assert counts.value_counts().sort_index().tolist() == [1, 6, 84, 2441, 62010, 359082]
    # the hashes are the codec's, on a sample spread over the whole enumeration
    space = ep.get_space("nasbench101")
    sample = frame.iloc[np.random.default_rng(0).choice(len(frame), 2000, replace=False)]
    assert [nb101.module_hash(space.parse_arch(t)) for t in sample["arch_text"]] == sample["arch_key"].tolist()


def test_whole_space_holds_every_cell_ecnas_measured(whole, shared_data):
    """External check of the hashes: EC-NAS's 7-vertex campaign (hashes checked against the cells
    by the importer) and its 5-vertex one are all among the enumerated cells."""
    keys = set(whole.frame["arch_key"])
    for name in ("ecnas-7v", "ecnas-5v"):
        measured = set(ep.load_table(name).frame["arch_key"])
        assert measured <= keys, f"{len(measured - keys)} cells of {name} missing"


def test_whole_space_predictions_are_the_per_cell_paths(whole, shared_data):
    frame = whole.frame
    sample = frame.iloc[np.random.default_rng(5).choice(len(frame), 500, replace=False)]
    space = ep.get_space("nasbench101")
    one_by_one = S.predict_energy([space.parse_arch(t) for t in sample["arch_text"]])
    assert one_by_one["arch_key"].tolist() == sample["arch_key"].tolist()
    np.testing.assert_allclose(one_by_one["train_energy_kwh"], sample["train_energy_kwh"], rtol=1e-12)
    np.testing.assert_allclose(one_by_one["train_energy_sd_kwh"], sample["train_energy_sd_kwh"], rtol=1e-12)
    counts = F.size_counts(F.CellBatch.from_cells(space.parse_arch(t) for t in sample["arch_text"]))
    assert (counts["params"] == sample["params"].to_numpy()).all()
    m = whole.manifest
    assert "PREDICTED" in m.description and m.pue == 1.59 and m.space == "nasbench101"
    assert (frame["campaign"] == "ecnas-5v").all() and (frame["epochs"] == 4).all()
    assert (frame["train_energy_sd_kwh"] > 0).all()


def test_cli_all_writes_a_loadable_table(whole, tmp_path, capsys):
    out = tmp_path / "all"
    assert cli.main(["surrogate", "predict", "--all", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 423_624 and summary["sources"] == {"predicted": 423_624}
    loaded = EnergyTable.load(out)
    assert loaded.frame["arch_key"].tolist() == whole.frame["arch_key"].tolist()
    np.testing.assert_array_equal(loaded.frame["train_energy_sd_kwh"], whole.frame["train_energy_sd_kwh"])
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "table.parquet"]  # no pickle
    # an existing table folder is replaced; a folder that is not a table is refused
    assert cli.main(["surrogate", "predict", "--all", "--out", str(out), "--name", "again"]) == 0
    assert EnergyTable.load(out).name == "again"


@pytest.mark.parametrize("argv, option", [
    ([], "--arch"),
    (["--arch", "garbage"], "--arch 'garbage'"),
    (["--arch", "0100:input,output", "--arch", "01:input"], "--arch '01:input'"),
    (["--arch", "0" * 32], "--arch '" + "0" * 32 + "'"),
    (["--input", "/nonexistent/cells.txt"], "--input"),
    (["--arch", "0100:input,output", "--out", "x"], "--out"),
    (["--arch", "0100:input,output", "--workers", "2"], "--workers"),
    (["--all"], "--out"),
    (["--all", "--arch", "0100:input,output", "--out", "x"], "--all"),
    (["--model-dir", "/nonexistent/model", "--arch", "0100:input,output"], "--model-dir"),
])
def test_predict_bad_argument_is_one_line_naming_it(argv, option, capsys, tmp_path, shared_data):
    assert cli.main(["surrogate", "predict", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith(f"ecnas: error: surrogate predict {option}: ")


def test_predict_refuses_a_folder_that_is_not_a_table(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["surrogate", "predict", "--all", "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"


def test_predict_input_file_names_the_bad_line(tmp_path, capsys):
    path = tmp_path / "cells.txt"
    path.write_text("0100:input,output\n\n0110:input,output\n")
    assert cli.main(["surrogate", "predict", "--input", str(path)]) == 2
    assert f"surrogate predict --input {path} line 3: invalid architecture" in capsys.readouterr().err
