"""Measurement campaigns: stratified samples, real training on Flowers-17, the journal's kill safety.

Energy comes from whatever meter works on the machine (``auto``); without one the tests that
train are skipped. Networks are tiny NB201 cells (C=4, N=1) so each measurement takes well under
a second on a CPU.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecnas_plugin.adapters.nasbench201 import OPS, parse_arch_str
from ecnas_plugin.energy import campaign as cp
from ecnas_plugin.errors import DataFormatError
from ecnas_plugin.networks import nb201_param_count
from ecnas_plugin.table import EnergyTable

REPO = Path(__file__).resolve().parents[1]
TINY = {"C": 4, "N": 1}
CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"]


def _spec(shared_data: Path, archs, **kw) -> cp.CampaignSpec:
    base = dict(name="test-campaign", space="nasbench201", archs=tuple(archs), epochs=2, network=TINY,
                data_root=str(shared_data / "flowers17"), torch_threads=1)
    return cp.CampaignSpec(**{**base, **kw})


def test_stratified_sample_spans_the_op_counts():
    sample = cp.sample_cells("nasbench201", 300, seed=3)
    assert len(set(sample)) == 300
    assert sample == cp.sample_cells("nasbench201", 300, seed=3)
    assert sample != cp.sample_cells("nasbench201", 300, seed=4)
    # proportional allocation: each op-count stratum gets its share of the space within one cell
    population = collections.Counter(s for s, _ in cp._strata("nasbench201", 5))
    drawn = collections.Counter(tuple(parse_arch_str(a).count(o) for o in OPS) for a in sample)
    for stratum, size in population.items():
        assert abs(drawn[stratum] - size * 300 / 15625) <= 1, stratum


def test_nb101_sample_is_buildable_and_keyed_by_module_hash():
    sample = cp.sample_cells("nasbench101", 20, seed=0, max_vertices=5)
    keys = {cp.arch_key("nasbench101", a) for a in sample}
    assert len(keys) == 20 and all(len(k) == 32 for k in keys)
    vertices = {len(a.split(":")[1].split(",")) for a in sample}
    assert vertices <= {2, 3, 4, 5} and 5 in vertices  # 5-vertex cells are most of the space
    assert all(cp.canonical_arch("nasbench101", a) == a for a in sample)


def test_campaign_on_flowers17_gives_a_valid_table(tmp_path, shared_data, meter_works):
    spec = _spec(shared_data, CELLS)
    result = cp.run_campaign(spec, tmp_path, progress=False)
    table = EnergyTable.load(tmp_path / "table")  # checksums and schema verified on load
    frame, checkpoints = table.frame, table.checkpoints
    assert len(frame) == 2 and set(frame["arch_key"]) == set(CELLS)
    assert result.measured_now == 2 and result.resumed == 0
    assert (frame["dataset"] == "flowers17").all() and (frame["source"] == "measured").all()
    assert frame["val_acc"].between(0, 1).all() and frame["test_acc"].between(0, 1).all()
    for arch in CELLS:
        row = frame[frame["arch_key"] == arch].iloc[0]
        assert row["params"] == nb201_param_count(arch, num_classes=17, **TINY)
        steps = checkpoints[checkpoints["arch_key"] == arch].sort_values("checkpoint")
        assert steps["checkpoint"].tolist() == [1, 2]
        assert np.all(np.diff(steps["energy_kwh"]) > 0) and np.all(np.diff(steps["train_time_s"]) > 0)
        assert steps["energy_kwh"].iloc[-1] == pytest.approx(row["train_energy_kwh"])
        assert steps["val_acc"].iloc[-1] == row["val_acc"]
        raw = sum(row[f"{c}_energy_kwh"] for c in table.manifest.components)
        assert row["train_energy_kwh"] == pytest.approx(raw * spec.pue)
    meta = cp.campaign_metadata(table.manifest)
    assert meta["epochs"] == 2 and meta["dataset"] == "flowers17" and meta["network"] == TINY
    if "estimated" in meta["methods"].values():  # e.g. codecarbon's TDP model without RAPL
        assert "ESTIMATED" in table.manifest.notes and "estimated" in table.manifest.tool


def test_energy_only_campaign_has_no_accuracy(tmp_path, shared_data, meter_works):
    spec = _spec(shared_data, CELLS[:1], dataset="cifar10-synthetic", epochs=1, synthetic_samples=128, pue=1.5)
    table = cp.run_campaign(spec, tmp_path, progress=False).table
    row = table.frame.iloc[0]
    assert row["dataset"] == "cifar10-synthetic"
    assert all(np.isnan(row[c]) for c in ("train_acc", "val_acc", "test_acc"))
    assert table.manifest.pue == 1.5 and "accuracy columns are empty" in table.manifest.notes
    raw = sum(row[f"{c}_energy_kwh"] for c in table.manifest.components)
    assert row["train_energy_kwh"] == pytest.approx(raw * 1.5)
    assert row["params"] == nb201_param_count(CELLS[0], num_classes=10, **TINY)


def _journal_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_killed_campaign_resumes_without_loss_or_duplicates(tmp_path, shared_data, meter_works):
    """Really SIGKILL a campaign process mid-run, then run it again to the end."""
    archs = cp.sample_cells("nasbench201", 6, seed=11)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ecnas_plugin.cli", "measure", "nasbench201", "--name", "killed",
            "--epochs", "1", "--network", "C=4", "N=1", "--data-root", str(shared_data / "flowers17"),
            "--threads", "1", "--out", str(out), "--quiet", "--cells", *archs]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = out / cp.JOURNAL_FILE
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(_journal_lines(journal)) >= 3:  # header + 2 finished measurements
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"campaign ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = journal.read_bytes()
    finished_before = [json.loads(x) for x in before.splitlines(keepends=True)[1:] if x.endswith(b"\n")]
    assert 2 <= len(finished_before) < 6

    result = cp.run_campaign(_spec(shared_data, archs, name="killed", epochs=1), out, progress=False)
    after = journal.read_bytes()
    intact = before[:before.rfind(b"\n") + 1]
    assert after.startswith(intact)  # every finished measurement kept, byte for byte
    records = [json.loads(x) for x in after.splitlines()[1:]]
    keys = [(r["arch_key"], r["repeat"]) for r in records]
    assert sorted(keys) == sorted((a, 0) for a in archs)  # all six, each once
    assert result.resumed == len(finished_before) and result.measured_now == 6 - len(finished_before)
    assert sorted(result.table.frame["arch_key"]) == sorted(archs)


def test_torn_last_line_is_ignored_and_cut(tmp_path, shared_data, meter_works):
    spec = _spec(shared_data, CELLS, epochs=1)
    cp.run_campaign(spec, tmp_path, progress=False)
    journal = tmp_path / cp.JOURNAL_FILE
    lines = _journal_lines(journal)
    # what a kill in the middle of writing the last record leaves: a prefix without its newline
    journal.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    with pytest.warns(UserWarning, match="torn last line"):
        _, records = cp.load_journal(journal)
    assert [r["arch_key"] for r in records] == [json.loads(lines[1])["arch_key"]]
    with pytest.warns(UserWarning, match="torn last line"):
        result = cp.run_campaign(spec, tmp_path, progress=False)
    assert result.resumed == 1 and result.measured_now == 1
    final = _journal_lines(journal)
    assert final[:2] == lines[:2] and len(final) == 3 and final[2].endswith(b"\n")
    assert sorted(result.table.frame["arch_key"]) == sorted(CELLS)


def test_damaged_complete_line_is_an_error_not_a_guess(tmp_path, shared_data, meter_works):
    spec = _spec(shared_data, CELLS[:1], epochs=1)
    cp.run_campaign(spec, tmp_path, progress=False)
    journal = tmp_path / cp.JOURNAL_FILE
    text = journal.read_text()
    journal.write_text(text.replace('"repeat":0', '"repeat":1', 1))  # checksum no longer matches
    with pytest.raises(DataFormatError, match="corrupt"):
        cp.run_campaign(spec, tmp_path, progress=False)
    # a record written twice (two writers) is refused too
    lines = text.splitlines(keepends=True)
    journal.write_text("".join(lines + lines[1:]))
    with pytest.raises(DataFormatError, match="recorded twice"):
        cp.load_journal(journal)


def test_resume_refuses_other_settings_and_second_writer(tmp_path, shared_data):
    spec = _spec(shared_data, CELLS[:1], epochs=1)
    journal = cp.Journal(tmp_path / cp.JOURNAL_FILE)
    journal.open({"spec": spec.to_dict()})
    try:
        with pytest.raises(cp.JournalBusy):
            cp.run_campaign(spec, tmp_path, progress=False)
    finally:
        journal.close()
    with pytest.raises(cp.CampaignError, match="epochs"):
        cp.run_campaign(_spec(shared_data, CELLS[:1], epochs=3), tmp_path, progress=False)


def test_failed_measurements_are_reported_not_journaled(tmp_path, shared_data):
    bad = _spec(shared_data, CELLS, epochs=1, data_root=str(tmp_path / "no-such-folder"))
    with pytest.raises(cp.CampaignError, match="2 measurement") as err:
        cp.run_campaign(bad, tmp_path / "run", progress=False)
    assert all(c in str(err.value) for c in CELLS) and "no-such-folder" in str(err.value)
    _, records = cp.load_journal(tmp_path / "run" / cp.JOURNAL_FILE)
    assert records == [] and not (tmp_path / "run" / cp.TABLE_DIR).exists()
