"""`ecnas contribute`: validation with a row-level report, atomic merge, rejections change nothing.

The measurement file is real: a tiny NB201 campaign trained on Flowers-17 (through the data
registry) with the meter that works here. Bad files are that file with one thing broken each.
The space must be a registered one and every key goes through its codec; the target must be a
plain user table name under the cache's tables folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from ecnas_plugin.energy import campaign as cp
from ecnas_plugin.cli import main as cli_main
from ecnas_plugin.energy.contribute import (
    _power_problems,
    all_campaign_metadata,
    contribute,
    device_power_range,
    user_table_specs,
)
from ecnas_plugin.energy.meters import MeterError, default_meter
from ecnas_plugin.table import EnergyTable, Manifest

CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory, shared_data) -> Path:
    """A real campaign output folder (journal + table)."""
    try:
        default_meter()
    except MeterError as exc:
        pytest.skip(f"no energy meter works here: {exc}")
    out = tmp_path_factory.mktemp("campaign")
    spec = cp.CampaignSpec(name="contrib-a", space="nasbench201", archs=tuple(CELLS), epochs=1,
                           network={"C": 4, "N": 1}, torch_threads=1)
    cp.run_campaign(spec, out, progress=False)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def variant(measured: Path, tmp_path: Path, name: str, edit_frame=None, edit_manifest=None) -> Path:
    """The measured table as ``name.parquet`` + ``name.manifest.json``, with one thing changed."""
    table = EnergyTable.load(measured / "table")
    frame = table.frame.copy()
    if edit_frame is not None:
        frame = edit_frame(frame)
    manifest = replace(table.manifest, checksum="", checkpoints_checksum="")
    if edit_manifest is not None:
        manifest = edit_manifest(manifest)
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    path.with_name(f"{name}.manifest.json").write_text(manifest.to_json())
    return path


def test_accepted_then_duplicate_is_rejected_without_change(measured, cache):
    report = contribute(measured)  # the `ecnas measure` output folder itself
    assert report.accepted, report.text()
    assert report.target == "user-nasbench201" and report.total_rows == 2
    folder = cache / "tables" / "user-nasbench201"
    table = EnergyTable.load(folder)
    assert sorted(table.frame["arch_key"]) == sorted(CELLS) and len(table.checkpoints) == 2
    assert all_campaign_metadata(table.manifest)[0]["name"] == "contrib-a"
    specs = {s.name: s for s in user_table_specs()}  # offered to the registry as a table
    assert len(specs["user-nasbench201"].build({})) == 2

    before = snapshot(cache)
    again = contribute(measured / "table")
    assert not again.accepted
    assert [p.row for p in again.problems] == [0, 1]
    assert all("already contributed" in p.message for p in again.problems)
    assert snapshot(cache) == before


def test_row_level_report_and_nothing_written(measured, cache, tmp_path):
    assert contribute(measured).accepted
    before = snapshot(cache)

    def break_rows(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["campaign"] = "contrib-a"
        extra = frame.iloc[[1]].copy()
        extra["repeat"] = 1  # a new key ...
        frame = pd.concat([frame, extra, extra], ignore_index=True)  # ... given twice (rows 2, 3)
        frame.loc[0, "train_energy_kwh"] = float("nan")
        frame.loc[2, "train_energy_kwh"] *= 3.6e6  # joules written into a kWh column
        frame.loc[3, "val_acc"] = 1.7
        return frame

    bad = variant(measured, tmp_path, "bad", break_rows)
    report = contribute(bad)
    assert not report.accepted
    found = {(p.row, p.column) for p in report.problems}
    assert (0, "train_energy_kwh") in found  # NaN
    assert (2, "train_energy_kwh") in found  # implausible power: wrong unit
    assert (3, "arch_key") in found  # duplicate inside the file
    assert (3, "val_acc") in found  # accuracy above 1
    assert (1, "arch_key") in found  # row 1 was contributed before
    assert any("implied average power" in p.message for p in report.problems if p.row == 2)
    assert snapshot(cache) == before
    assert "nothing was changed" in report.text()


def test_missing_campaign_metadata_and_unlabelled_estimate_are_rejected(measured, cache, tmp_path):
    table = EnergyTable.load(measured / "table")
    no_meta = variant(measured, tmp_path, "nometa", edit_manifest=lambda m: replace(m, campaigns=()))
    report = contribute(no_meta)
    assert not report.accepted and any("campaign metadata missing" in p.message for p in report.problems)
    if "estimated" in cp.campaign_metadata(table.manifest)["methods"].values():
        hidden = variant(measured, tmp_path, "hidden", edit_manifest=lambda m: replace(
            m, notes=m.notes.replace("ESTIMATED, NOT MEASURED", "note")))
        report = contribute(hidden)
        assert any("must be labelled" in p.message for p in report.problems)
    assert not (cache / "tables" / "user-nasbench201").exists()


def test_an_estimate_is_labelled_in_every_row_and_every_place_it_shows(measured, cache, tmp_path, capsys):
    """Rows from a power model say `estimated` in `source` (not only in the manifest); a file that
    calls them measured is refused by row; the report, `ecnas tables` and `ecnas query` say how many."""
    table = EnergyTable.load(measured / "table")
    if not (table.frame["energy_method"] == "estimated").any():
        pytest.skip("the meter here reads a counter: no estimated rows to check (the rule is tested on "
                    "estimated rows)")
    assert (table.frame["source"] == "estimated").all()
    relabelled = variant(measured, tmp_path, "relabelled", lambda f: f.assign(source="measured"))
    report = contribute(relabelled)
    assert not report.accepted
    assert {(p.row, p.column) for p in report.problems} >= {(0, "source"), (1, "source")}
    assert all("must say 'estimated'" in p.message for p in report.problems if p.column == "source")

    ok = contribute(measured)
    assert ok.accepted and "2 estimated (a power model, not measured)" in ok.text()
    assert cli_main(["tables"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("user-nasbench201")]
    assert listed and "2 estimated (a power model, not measured)" in listed[0]
    assert cli_main(["query", "nasbench201", "--table", "user-nasbench201", "--arch", CELLS[0]]) == 0
    out = capsys.readouterr()
    assert "ESTIMATED: 1 of these 1 energies come from a power model" in out.err and "estimated" in out.out


def test_numeric_text_is_refused_by_column_not_converted(measured, cache, tmp_path):
    texted = variant(measured, tmp_path, "texted",
                     lambda f: f.assign(train_energy_kwh=f["train_energy_kwh"].map(repr).astype(object)))
    report = contribute(texted)
    assert not report.accepted
    assert {(p.row, p.column) for p in report.problems if "holds text" in p.message} == {
        (0, "train_energy_kwh"), (1, "train_energy_kwh")}
    assert not (cache / "tables" / "user-nasbench201").exists()


def test_pue_mismatch_is_refused_atomically(measured, cache, tmp_path):
    assert contribute(measured).accepted
    before = snapshot(cache)

    def other_campaign(frame):
        frame = frame.copy()
        frame["campaign"] = "contrib-b"
        frame["train_energy_kwh"] *= 1.5
        return frame

    def pue_15(m: Manifest) -> Manifest:
        meta = {**cp.campaign_metadata(m), "name": "contrib-b", "pue": 1.5}
        return replace(m, pue=1.5, campaigns=(meta,))

    path = variant(measured, tmp_path, "pue", other_campaign, pue_15)
    report = contribute(path)
    assert not report.accepted and "PUE" in report.problems[0].message
    assert snapshot(cache) == before
    # into a table of its own it is fine, and found beside its manifest by name
    ok = contribute(path, into="user-nasbench201-pue15")
    assert ok.accepted, ok.text()
    assert EnergyTable.load(cache / "tables" / "user-nasbench201-pue15").manifest.pue == 1.5


def test_cli_exit_codes(measured, cache, capsys):
    assert cli_main(["contribute", str(measured), "--dry-run"]) == 0
    assert not (cache / "tables" / "user-nasbench201").exists()  # dry run wrote nothing
    assert cli_main(["contribute", str(measured)]) == 0
    assert cli_main(["contribute", str(measured)]) == 1
    assert "already contributed" in capsys.readouterr().err
    assert cli_main(["contribute", str(measured / "journal.jsonl")]) == 1
    assert "not a measurement file" in capsys.readouterr().err
    assert cli_main(["contribute", str(measured / "no-such-run")]) == 1
    assert "no-such-run: does not exist" in capsys.readouterr().err
    capsys.readouterr()
    for bad in ("../escape", "ecnas-7v", "user-a/b"):  # bad input: one line naming the argument, exit 2
        with pytest.raises(SystemExit) as exit_:
            cli_main(["contribute", str(measured), "--into", bad])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and err.count("\n") == 0 and "argument --into:" in err and bad in err
    assert not (cache / "escape").exists()


def test_every_key_goes_through_the_space_codec(measured, cache, tmp_path):
    """A key the space refuses is reported by row; another text of a known key is that key."""
    def garbage(frame):
        frame = frame.copy()
        frame.loc[1, "arch_key"] = "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
        return frame

    report = contribute(variant(measured, tmp_path, "garbage", garbage))
    assert not report.accepted
    bad = [p for p in report.problems if p.column == "arch_key"]
    assert [p.row for p in bad] == [1] and "not a nasbench201 key" in bad[0].message
    assert "unknown-op" in bad[0].message and str(bad[0]).startswith("row 1 [arch_key]")
    assert not (cache / "tables" / "user-nasbench201").exists()

    assert contribute(measured).accepted
    padded = variant(measured, tmp_path, "padded", lambda f: f.assign(arch_key=[f" {k}  " for k in f["arch_key"]]))
    again = contribute(padded)  # the same cells, written with spaces around: canonical keys are duplicates
    assert not again.accepted and [p.row for p in again.problems] == [0, 1]
    assert all("already contributed" in p.message for p in again.problems)

    def new_campaign(frame):
        return frame.assign(arch_key=[f" {k}  " for k in frame["arch_key"]], campaign="contrib-c")

    def meta_c(m):
        return replace(m, campaigns=({**cp.campaign_metadata(m), "name": "contrib-c"},))

    ok = contribute(variant(measured, tmp_path, "c", new_campaign, meta_c))
    assert ok.accepted, ok.text()
    stored = EnergyTable.load(cache / "tables" / "user-nasbench201").frame
    assert sorted(set(stored["arch_key"])) == sorted(CELLS)  # stored in canonical form


def test_checkpoint_rows_of_no_contributed_run_are_refused_by_row(measured, cache, tmp_path):
    table = EnergyTable.load(measured / "table")
    extra = table.checkpoints.iloc[[0]].assign(repeat=99)  # a curve of a run the file does not hold
    checkpoints = pd.concat([table.checkpoints, extra], ignore_index=True)
    orphaned = EnergyTable(table.frame, replace(table.manifest, checksum="", checkpoints_checksum=""), checkpoints)
    orphaned.save(tmp_path / "orphaned")
    report = contribute(tmp_path / "orphaned")
    assert not report.accepted
    problem = next(p for p in report.problems if "is no row of the table" in p.message)
    assert f"checkpoints row {len(checkpoints) - 1}" in problem.message and "'repeat': 99" in problem.message
    assert not (cache / "tables" / "user-nasbench201").exists()


def test_space_must_be_registered_and_target_a_plain_user_table(measured, cache, tmp_path):
    before = snapshot(tmp_path)
    for space in ("../../outside", "nasbench999"):
        path = variant(measured, tmp_path, f"space{len(space)}", lambda f, s=space: f.assign(space=s),
                       lambda m, s=space: replace(m, space=s))
        before = snapshot(tmp_path)
        report = contribute(path)
        assert not report.accepted and len(report.problems) == 1
        problem = report.problems[0]
        assert problem.row is None and problem.column == "space" and "not a registered search space" in problem.message
        assert "nasbench201" in problem.message  # the registered ones are named
        assert snapshot(tmp_path) == before and not (cache / "tables").exists()
    for into in ("../escape", "/tmp/abs", "user-a/../../b", "ecnas-7v", "user-", ".user-x", "user-x.old", "user-x/"):
        report = contribute(measured, into=into)
        assert not report.accepted and report.problems[0].column == "into", into
        assert "plain name starting with 'user-'" in report.problems[0].message
    assert snapshot(tmp_path) == before and not (cache / "tables").exists()
    ok = contribute(measured, into="user-nasbench201.v2_cpu")
    assert ok.accepted and ok.table_dir == cache / "tables" / "user-nasbench201.v2_cpu"


def test_plausibility_passes_real_ecnas_data_and_catches_wrong_units(shared_data):
    """EC-NAS measured NB101 cells on a Quadro RTX 6000 (GPU + CPU, PUE 1.59): all plausible."""
    from ecnas_plugin.api import load_table

    table = load_table("ecnas-4v")
    meta = table.manifest
    low, high = device_power_range(meta, "Quadro RTX 6000")
    assert low < 100 < 390 < high  # the card's TDP-based bound plus a CPU
    assert _power_problems(table.frame, meta, None) == []
    in_joules = table.frame.assign(train_energy_kwh=table.frame["train_energy_kwh"] * 3.6e6)
    assert len(_power_problems(in_joules, meta, None)) == len(table.frame)
    in_ms = table.frame.assign(train_time_s=table.frame["train_time_s"] * 1000)
    assert len(_power_problems(in_ms, meta, None)) == len(table.frame)
