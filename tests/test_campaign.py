"""Measurement campaigns: generic over the registered space, stratified samples, real training on
Flowers-17, the journal's kill safety, and command-line errors.

Energy comes from whatever meter works on the machine (``auto``); without one the tests that
train are skipped. Networks are tiny (NB201 C=4, N=1; NB101 one stack of one cell; a third-party
space's 2..8-channel conv nets) so each measurement takes well under a second on a CPU. Flowers-17
comes through the data registry (the offline mirror the session's conftest points at), except
where a test names a folder on purpose.

The third-party space ("tinyconv", with its own codec, enumeration limit, strata and network
builder) is a real distribution installed on a temporary path with an ``ecnas_plugin`` entry
point, as tests/test_registry.py does; nothing in the core knows its name.
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

from conftest import load_plugin
from ecnas_plugin import registry as reg
from ecnas_plugin.adapters.nasbench201 import OPS, parse_arch_str
from ecnas_plugin.cli import main as cli_main
from ecnas_plugin.energy import campaign as cp
from ecnas_plugin.energy import journal as jr
from ecnas_plugin.errors import (ConfigError, DataFormatError, InvalidArchitecture, MeterError, MissingCapability,
                                 UnknownName)
from ecnas_plugin.networks import count_params, nb101_param_count, nb201_param_count
from ecnas_plugin.table import EnergyTable

REPO = Path(__file__).resolve().parents[1]
TINY = {"C": 4, "N": 1}
TINY_NB101 = {"stem_channels": 8, "num_stacks": 1, "cells_per_stack": 1}
CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"]

TOY_SPACES = '''
import re

from ecnas_plugin.adapters.base import SearchSpace
from ecnas_plugin.errors import InvalidArchitecture
from ecnas_plugin.hookspecs import hookimpl

WIDTHS = (2, 4, 8)


class TinyConv(SearchSpace):
    """Plain conv nets: <depth> 3x3 convolutions of <width> channels after a strided stem."""

    name = "tinyconv"
    key_description = "w<width>-d<depth>"
    network_defaults = {"stem": 4}

    def canonical_key(self, arch):
        if isinstance(arch, tuple) and len(arch) == 2:
            width, depth = arch
        else:
            m = re.fullmatch(r"w(\\d+)-d(\\d+)", str(arch).strip())
            if m is None:
                raise InvalidArchitecture("syntax", "expected w<width>-d<depth>", arch)
            width, depth = int(m[1]), int(m[2])
        if width not in WIDTHS:
            raise InvalidArchitecture("width", f"width must be one of {WIDTHS}", arch)
        if not 1 <= depth <= 3:
            raise InvalidArchitecture("depth", "depth must be in 1..3", arch)
        return f"w{width}-d{depth}"

    def parse_arch(self, text):
        width, depth = self.canonical_key(text)[1:].split("-d")
        return (int(width), int(depth))

    def enumerate(self, max_depth=3):
        if not 1 <= max_depth <= 3:
            raise ValueError(f"max_depth must be in 1..3, got {max_depth}")
        return ((w, d) for d in range(1, max_depth + 1) for w in WIDTHS)

    def stratum(self, arch):
        return (self.arch(arch)[1],)

    def build_network(self, arch, num_classes, stem=4):
        import torch.nn as nn

        width, depth = self.arch(arch)
        layers = [nn.Conv2d(3, stem, 3, stride=2, padding=1), nn.ReLU()]
        channels = stem
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
        return nn.Sequential(*layers)


class NoNetwork(SearchSpace):
    """A tabular-only space: keys, nothing to build."""

    name = "nonet"
    key_description = "any text"

    def canonical_key(self, arch):
        return str(arch)

    def parse_arch(self, text):
        return text


@hookimpl
def ecnas_search_spaces():
    return [TinyConv(), NoNetwork()]
'''


@pytest.fixture
def toy_registry(tmp_path, monkeypatch):
    """The process registry with the third-party ``toy_spaces`` distribution loaded."""
    registry, _ = load_plugin(monkeypatch, tmp_path / "site", "toy_spaces", TOY_SPACES)
    return registry


def _spec(archs, **kw) -> cp.CampaignSpec:
    base = dict(name="test-campaign", space="nasbench201", archs=tuple(archs), epochs=2, network=TINY,
                torch_threads=1)
    return cp.CampaignSpec(**{**base, **kw})


# ---------------------------------------------------------------------- samples
def test_stratified_sample_spans_the_op_counts():
    space = reg.get_registry().space("nasbench201")
    sample = cp.sample_cells("nasbench201", 300, seed=3)
    assert len(set(sample)) == 300
    assert sample == cp.sample_cells(space, 300, seed=3)  # a name or the space itself
    assert sample != cp.sample_cells("nasbench201", 300, seed=4)
    population = cp.strata(space)
    assert len(population) == 15625 and len({a for _, a in population}) == 15625
    # the stratum is the space's own: how many edges carry each op
    assert all(s == tuple(parse_arch_str(a).count(o) for o in OPS) for s, a in population[::97])
    # proportional allocation: each op-count stratum gets its share of the space within one cell
    sizes = collections.Counter(s for s, _ in population)
    drawn = collections.Counter(space.stratum(a) for a in sample)
    for stratum, size in sizes.items():
        assert abs(drawn[stratum] - size * 300 / 15625) <= 1, stratum


def test_nb101_sample_passes_its_enumeration_limit_through():
    space = reg.get_registry().space("nasbench101")
    sample = cp.sample_cells("nasbench101", 20, seed=0, limits={"max_vertices": 5})
    keys = {cp.arch_key("nasbench101", a) for a in sample}
    assert len(keys) == 20 and all(len(k) == 32 for k in keys)
    vertices = {len(a.split(":")[1].split(",")) for a in sample}
    assert vertices <= {2, 3, 4, 5} and 5 in vertices  # 5-vertex cells are most of the space
    assert all(cp.canonical_arch("nasbench101", a) == a for a in sample)  # already the buildable text
    small = cp.strata(space, {"max_vertices": 4})
    assert len(small) == sum(1 for _ in space.enumerate(max_vertices=4))
    assert {s[0] for s, _ in small} == {2, 3, 4}  # the stratum starts with the vertex count
    four = cp.sample_cells(space, 10, seed=0, limits={"max_vertices": 4})
    assert max(len(a.split(":")[1].split(",")) for a in four) == 4
    with pytest.raises(UnknownName, match=r"enumeration limit of nasbench101 'vertices'.*max_vertices"):
        cp.sample_cells(space, 3, limits={"vertices": 5})
    with pytest.raises(UnknownName, match="enumeration takes no limits"):
        cp.sample_cells("nasbench201", 3, limits={"max_vertices": 5})
    with pytest.raises(cp.CampaignError, match="max_vertices must be in 2..7"):
        cp.sample_cells(space, 3, limits={"max_vertices": 9})
    with pytest.raises(cp.CampaignError, match=r"sample size must be in 1..\d+ for nasbench101"):
        cp.sample_cells(space, 10**6, limits={"max_vertices": 3})


def test_spec_takes_every_form_the_space_parses_and_stores_its_buildable_text():
    nb101 = reg.get_registry().space("nasbench101")
    cell = nb101.decode(cp.arch_key("nasbench101", cp.sample_cells(nb101, 1, seed=2, limits={"max_vertices": 4})[0]))
    text = nb101.describe(cell)
    as_json = json.dumps({"matrix": np.asarray(cell.matrix).tolist(), "ops": list(cell.ops)})
    spec = cp.CampaignSpec(name="forms", space="nasbench101", archs=(as_json,), epochs=1, network=TINY_NB101)
    assert spec.archs == (text,) and spec.key(text) == nb101.canonical_key(cell)
    assert spec.network == TINY_NB101  # every builder setting recorded, defaults filled in
    assert cp.CampaignSpec(name="x", space="nasbench101", archs=(text,), epochs=1).network == \
        dict(nb101.network_defaults)
    # a small cell's module hash decodes through the space; a second form of the same cell is a duplicate
    assert cp.CampaignSpec(name="x", space="nasbench101", archs=(nb101.canonical_key(cell),), epochs=1).archs == (text,)
    with pytest.raises(ConfigError, match="names .* twice"):
        cp.CampaignSpec(name="x", space="nasbench101", archs=(text, as_json), epochs=1)
    with pytest.raises(InvalidArchitecture, match="not-decodable"):
        cp.CampaignSpec(name="x", space="nasbench101", archs=("f" * 32,), epochs=1)
    with pytest.raises(UnknownName, match=r"nasbench101 network setting 'C'; available: cells_per_stack"):
        cp.CampaignSpec(name="x", space="nasbench101", archs=(text,), epochs=1, network={"C": 4})
    with pytest.raises(UnknownName, match=r"unknown space 'nasbench999'; available: (.*, )?nasbench101, nasbench201"):
        cp.CampaignSpec(name="x", space="nasbench999", archs=(text,), epochs=1)
    with pytest.raises(UnknownName, match="unknown meter 'nvml2'"):
        cp.CampaignSpec(name="x", space="nasbench101", archs=(text,), epochs=1, meter="rapl+nvml2")
    for bad in ({"epochs": 0}, {"repeats": 1.5}, {"pue": 0.9}, {"name": ""}, {"torch_threads": 0}):
        with pytest.raises(ConfigError, match=f"campaign key '{next(iter(bad))}'"):
            cp.CampaignSpec(**{"name": "x", "space": "nasbench101", "archs": (text,), "epochs": 1, **bad})


def test_space_without_network_is_refused_by_name_before_anything_runs(toy_registry, tmp_path, capsys):
    with pytest.raises(MissingCapability, match="'nonet' has no 'network' capability, which ecnas measure needs"):
        cp.CampaignSpec(name="x", space="nonet", archs=("a",), epochs=1)
    out = tmp_path / "run"
    rc = cli_main(["measure", "nonet", "--name", "x", "--epochs", "1", "--cells", "a", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "argument space:" in err and "'network' capability" in err
    assert not out.exists()  # refused before the journal was opened
    # a space with a builder but no enumeration/strata can still measure a list, not --sample
    space = toy_registry.space("nonet")
    with pytest.raises(MissingCapability):
        cp.sample_cells(space, 1)


# ---------------------------------------------------------------------- real campaigns
def test_campaign_on_flowers17_gives_a_valid_table(tmp_path, shared_data, meter_works):
    spec = _spec(CELLS, data_root=str(shared_data / "flowers17"))  # a folder, read as it is
    result = cp.run_campaign(spec, tmp_path, progress=False)
    table = EnergyTable.load(tmp_path / "table")  # checksums and schema verified on load
    frame, checkpoints = table.frame, table.checkpoints
    assert len(frame) == 2 and set(frame["arch_key"]) == set(CELLS)
    assert result.measured_now == 2 and result.resumed == 0
    assert (frame["dataset"] == "flowers17").all()
    # a power model's energy is labelled an estimate in every row, not only in the manifest
    expected = np.where(frame["energy_method"] == "estimated", "estimated", "measured")
    assert (frame["source"] == expected).all()
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


def test_nb101_campaign_builds_through_the_space(tmp_path, shared_data, meter_works):
    """NB101 goes the same generic way: the registry's space decodes, keys and builds the cells."""
    space = reg.get_registry().space("nasbench101")
    archs = cp.sample_cells(space, 2, seed=7, limits={"max_vertices": 4})
    spec = cp.CampaignSpec(name="nb101-tiny", space="nasbench101", archs=tuple(archs), epochs=1,
                           network=TINY_NB101, torch_threads=1)
    table = cp.run_campaign(spec, tmp_path, progress=False).table
    assert sorted(table.frame["arch_key"]) == sorted(space.canonical_key(space.arch(a)) for a in archs)
    for arch in archs:
        row = table.frame[table.frame["arch_key"] == cp.arch_key(space, arch)].iloc[0]
        assert row["params"] == nb101_param_count(space.arch(arch), num_classes=17, **TINY_NB101)
        assert row["space"] == "nasbench101" and 0 <= row["val_acc"] <= 1
    records = cp.load_journal(tmp_path / cp.JOURNAL_FILE)[1]
    assert sorted(r["arch"] for r in records) == sorted(archs)  # the journal keeps the buildable text


def test_energy_only_campaign_has_no_accuracy(tmp_path, shared_data, meter_works):
    spec = _spec(CELLS[:1], dataset="cifar10-synthetic", epochs=1, synthetic_samples=128, pue=1.5)
    table = cp.run_campaign(spec, tmp_path, progress=False).table
    row = table.frame.iloc[0]
    assert row["dataset"] == "cifar10-synthetic"
    assert all(np.isnan(row[c]) for c in ("train_acc", "val_acc", "test_acc"))
    assert table.manifest.pue == 1.5 and "accuracy columns are empty" in table.manifest.notes
    raw = sum(row[f"{c}_energy_kwh"] for c in table.manifest.components)
    assert row["train_energy_kwh"] == pytest.approx(raw * 1.5)  # PUE applied once, components raw
    assert table.checkpoints["energy_kwh"].iloc[-1] == pytest.approx(raw * 1.5)
    record = cp.load_journal(tmp_path / cp.JOURNAL_FILE)[1][0]
    joules = sum(record["epochs"][0]["energy_j"].values())
    assert row["train_energy_kwh"] == pytest.approx(joules / 3.6e6 * 1.5)
    if "co2eq_g" in table.frame:
        assert row["co2eq_g"] == pytest.approx(record["epochs"][0]["co2eq_g"] * 1.5)
    assert row["params"] == nb201_param_count(CELLS[0], num_classes=10, **TINY)


def test_third_party_space_measures_and_contributes_with_no_core_change(toy_registry, tmp_path, shared_data,
                                                                        meter_works, monkeypatch, capsys):
    """tinyconv: sampled with its own limit, built by its own builder, keyed by its own codec."""
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    space = toy_registry.space("tinyconv")
    sample = cp.sample_cells("tinyconv", 3, seed=0, limits={"max_depth": 1})
    assert sorted(sample) == ["w2-d1", "w4-d1", "w8-d1"]  # all of the depth-1 stratum
    out = tmp_path / "run"
    rc = cli_main(["measure", "tinyconv", "--name", "toy", "--epochs", "1", "--sample", "2", "--limit",
                   "max_depth=2", "--cells", "w8-d2", "--network", "stem=2", "--threads", "1", "--out", str(out),
                   "--quiet"])
    assert rc == 0, capsys.readouterr().err
    table = EnergyTable.load(out / "table")
    keys = sorted(table.frame["arch_key"])
    assert len(keys) == 3 and "w8-d2" in keys and all(space.canonical_key(k) == k for k in keys)
    assert table.manifest.space == "tinyconv" and (table.frame["space"] == "tinyconv").all()
    assert cp.campaign_metadata(table.manifest)["network"] == {"stem": 2}
    for key in keys:
        row = table.frame[table.frame["arch_key"] == key].iloc[0]
        assert row["params"] == count_params(space.build_network(key, 17, stem=2))
        assert 0 <= row["val_acc"] <= 1 and row["train_energy_kwh"] > 0
    capsys.readouterr()
    # these nets are so small that a TDP x load estimate (codecarbon without RAPL) can fall below the
    # built-in plausible CPU power; the range is the contributor's to state
    assert cli_main(["contribute", str(out), "--power-range", "0.01", "1000"]) == 0, capsys.readouterr().err
    assert sorted(EnergyTable.load(tmp_path / "cache" / "tables" / "user-tinyconv").frame["arch_key"]) == keys


# ---------------------------------------------------------------------- the journal
def _journal_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_killed_campaign_resumes_without_loss_or_duplicates(tmp_path, shared_data, meter_works):
    """Really SIGKILL a campaign process mid-run, then run it again to the end."""
    archs = cp.sample_cells("nasbench201", 6, seed=11)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ecnas_plugin.cli", "measure", "nasbench201", "--name", "killed",
            "--epochs", "1", "--network", "C=4", "N=1", "--threads", "1", "--out", str(out), "--quiet",
            "--cells", *archs]
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

    result = cp.run_campaign(_spec(archs, name="killed", epochs=1), out, progress=False)
    after = journal.read_bytes()
    intact = before[:before.rfind(b"\n") + 1]
    assert after.startswith(intact)  # every finished measurement kept, byte for byte
    records = [json.loads(x) for x in after.splitlines()[1:]]
    keys = [(r["arch_key"], r["repeat"]) for r in records]
    assert sorted(keys) == sorted((a, 0) for a in archs)  # all six, each once
    assert result.resumed == len(finished_before) and result.measured_now == 6 - len(finished_before)
    assert sorted(result.table.frame["arch_key"]) == sorted(archs)


def test_torn_last_line_is_ignored_and_cut(tmp_path, shared_data, meter_works):
    spec = _spec(CELLS, epochs=1)
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
    spec = _spec(CELLS[:1], epochs=1)
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


def test_journal_module_alone(tmp_path):
    """The journal protocol without a campaign: header once, durable appends, no key twice."""
    path = tmp_path / "j.jsonl"
    with jr.Journal(path) as journal:
        header, records = journal.open({"spec": {"a": 1}})
        assert header["kind"] == "campaign" and header["format"] == jr.FORMAT and records == []
        journal.append({"arch_key": "k", "repeat": 0, "x": 1.5})
        with pytest.raises(Exception, match="already in"):
            journal.append({"arch_key": "k", "repeat": 0, "x": 2.0})
    with jr.Journal(path) as journal:
        header, records = journal.open({"spec": {"a": 2}})  # the stored header wins; the caller compares
        assert header["spec"] == {"a": 1} and [r["x"] for r in records] == [1.5]
    stored, records, intact = jr.read(path)
    assert intact == path.stat().st_size and len(records) == 1
    assert path.read_bytes().splitlines()[1] == jr.encode({"kind": "measurement", "arch_key": "k", "repeat": 0,
                                                           "x": 1.5}).rstrip(b"\n")


def test_resume_refuses_other_settings_and_second_writer(tmp_path):
    spec = _spec(CELLS[:1], epochs=1)
    journal = jr.Journal(tmp_path / cp.JOURNAL_FILE)
    journal.open({"spec": spec.to_dict()})
    try:
        with pytest.raises(jr.JournalBusy):
            cp.run_campaign(spec, tmp_path, progress=False)
    finally:
        journal.close()
    with pytest.raises(cp.CampaignError, match="epochs"):
        cp.run_campaign(_spec(CELLS[:1], epochs=3), tmp_path, progress=False)
    with pytest.raises(cp.CampaignError, match="network"):
        cp.run_campaign(_spec(CELLS[:1], epochs=1, network={"C": 8}), tmp_path, progress=False)


def test_failed_measurements_are_reported_not_journaled(tmp_path, shared_data):
    bad = _spec(CELLS, epochs=1, data_root=str(tmp_path / "no-such-folder"))
    with pytest.raises(cp.CampaignError, match="2 measurement") as err:
        cp.run_campaign(bad, tmp_path / "run", progress=False)
    assert all(c in str(err.value) for c in CELLS) and "no-such-folder" in str(err.value)
    _, records = cp.load_journal(tmp_path / "run" / cp.JOURNAL_FILE)
    assert records == [] and not (tmp_path / "run" / cp.TABLE_DIR).exists()


# ---------------------------------------------------------------------- command-line errors
@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_campaign_name_is_a_plain_name_never_a_path(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    rc = cli_main(["measure", "nasbench201", "--name", name, "--epochs", "1", "--cells", CELLS[0]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "argument --name: must be a plain name" in err and err.count("\n") == 0, err
    assert list(tmp_path.iterdir()) == []  # nothing written, inside the cache or beside it


def test_a_meter_that_cannot_work_here_is_refused_before_the_campaign_starts(tmp_path, capsys):
    from ecnas_plugin.energy.meters import NvmlMeter

    works, _ = NvmlMeter.probe()
    if works:
        pytest.skip("NVML works on this machine: the refusal is checked where it does not")
    out = tmp_path / "run"
    rc = cli_main(["measure", "nasbench201", "--name", "bad", "--epochs", "1", "--out", str(out),
                   "--meter", "nvml", "--cells", CELLS[0]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "argument --meter: meter 'nvml' does not work" in err, err
    assert not out.exists()  # nothing started, no folder left behind
    spec = cp.CampaignSpec(name="bad", space="nasbench201", archs=(CELLS[0],), epochs=1, meter="nvml")
    with pytest.raises(MeterError, match="'nvml' does not work"):
        cp.run_campaign(spec, out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("argv, names", [
    (["nasbench999", "--cells", "x"], ["argument space:", "unknown space 'nasbench999'", "nasbench201"]),
    (["nasbench201", "--epochs", "0", "--cells", CELLS[0]], ["argument --epochs:", ">= 1"]),
    (["nasbench201", "--cells", "|bogus~0|"], ["argument --cells", "invalid architecture"]),
    (["nasbench201", "--sample", "3", "--limit", "max_vertices=5"], ["argument --limit:", "takes no limits"]),
    (["nasbench201", "--sample", "3", "--limit", "depth"], ["argument --limit:", "NAME=INT"]),
    (["nasbench101", "--sample", "3", "--limit", "max_vertices=9"], ["argument --sample/--limit:", "2..7"]),
    (["nasbench101", "--sample", "3", "--limit", "max_vertices=4", "--limit", "max_vertices=5"],
     ["argument --limit:", "given twice"]),
    (["nasbench201", "--limit", "x=1", "--cells", CELLS[0]], ["argument --limit", "only apply to --sample"]),
    (["nasbench201", "--network", "Q=3", "--cells", CELLS[0]], ["argument --network:", "'Q'", "C, N"]),
    (["nasbench201", "--network", "N=-1", "--cells", CELLS[0]], ["argument --network:", "N must be an integer >= 1"]),
    (["nasbench201", "--network", "C=0", "--cells", CELLS[0]], ["argument --network:", "C must be an integer >= 1"]),
    (["nasbench201", "--meter", "nvml+nope", "--cells", CELLS[0]], ["argument --meter:", "'nope'"]),
    (["nasbench201", "--pue", "0.5", "--cells", CELLS[0]], ["argument --pue:"]),
    (["nasbench201", "--cells-file", "/no/such/file"], ["argument --cells-file:", "/no/such/file"]),
    (["nasbench201"], ["--cells/--cells-file/--sample"]),
    (["nasbench201", "--sample", "99999"], ["argument --sample", "1..15625"]),
])
def test_bad_measure_arguments_are_one_line_errors(argv, names, tmp_path, capsys):
    out = tmp_path / "run"
    full = ["measure", argv[0], "--name", "bad", *(["--epochs", "1"] if "--epochs" not in argv else []),
            "--out", str(out), *argv[1:]]
    try:
        rc = cli_main(full)
    except SystemExit as exc:  # argparse's own checks (types) exit from inside parse_args
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 0, err
    assert all(n in err for n in names), err
    assert not out.exists()
