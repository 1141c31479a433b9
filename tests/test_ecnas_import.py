"""The EC-NAS importers, on the real upstream files read in place."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import ecnas_plugin as ep
from ecnas_plugin import api, datasets
from ecnas_plugin.errors import DataFormatError
from ecnas_plugin.importers.ecnas import METRICS_SCHEMA, read_ecnas_tfrecord
from ecnas_plugin.importers.protowire import WireError, decode
from ecnas_plugin.importers.tfrecord import masked_crc32c, read_records

FILES = {
    "ecnas-4v": ("ecnas/energy_4V9E_4epochs.tfrecord", 1092),
    "ecnas-4v-linscale": ("ecnas/energy_4V9E_linscale.tfrecord", 364),
    "ecnas-5v": ("ecnas/energy_5V9E_4epochs.tfrecord", 2532),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_record_is_imported(shared_data, name):
    path, count = FILES[name]
    assert sum(1 for _ in read_records(shared_data / path)) == count
    table = ep.load_table(name)
    assert len(table) == count
    # every stored hash was checked against our own fingerprint during import
    assert table.frame["arch_key"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert table.manifest.pue == 1.59 and table.manifest.components == ("gpu", "cpu")
    assert table.manifest.source_files[0]["sha256"] == datasets.sha256_file(shared_data / path)
    # every evaluation of every run is kept
    assert len(table.checkpoints) == 3 * count
    assert table.manifest.hardware == ("Quadro RTX 6000",)


def test_4v_budgets_repeats_and_values(shared_data):
    table = ep.load_table("ecnas-4v")
    f = table.frame
    assert f["arch_key"].nunique() == 91
    assert sorted(f["epochs"].unique()) == [4, 12, 36, 108]
    assert f.groupby(["arch_key", "epochs"]).size().eq(3).all()
    # the first record of the file, decoded independently of the importer's table code
    first = table.get("5529e1779433733d1145e20de5d8604e", epochs=36, repeat=0)
    assert first["train_energy_kwh"] == pytest.approx(0.113109)
    assert first["run_energy_kwh"] == pytest.approx(0.11943)
    assert first["train_time_s"] == pytest.approx(668.5900268554688)
    assert first["val_acc"] == pytest.approx(0.9174679517745972)
    assert first["params"] == 3468426
    assert first["gpu_energy_kwh"] == pytest.approx(174949.197967362 / 3.6e6)
    assert first["cpu_power_w"] == pytest.approx(54.38502672)
    assert first["source"] == "measured"
    cps = table.checkpoints
    run = cps[(cps.arch_key == first["arch_key"]) & (cps.epochs == 36) & (cps.repeat == 0)]
    assert run["epoch"].tolist() == [0.0, 1.0, 36.0]
    assert run["tracker_predicted_energy_kwh"].iloc[-1] == pytest.approx(0.125847)
    # more training costs more energy, in every repeat of every cell
    wide = f.pivot_table(index=["arch_key", "repeat"], columns="epochs", values="train_energy_kwh")
    assert (np.diff(wide.to_numpy(), axis=1) > 0).all()


def test_linscale_marks_scaled_energy(shared_data):
    f = ep.load_table("ecnas-4v-linscale").frame
    assert set(f.loc[f.epochs == 4, "source"]) == {"measured"}
    assert set(f.loc[f.epochs > 4, "source"]) == {"scaled"}
    wide = f.pivot(index="arch_key", columns="epochs", values="train_energy_kwh")
    np.testing.assert_allclose(wide[108] / wide[4], 27.0, rtol=1e-3)  # linear scaling, as documented


def test_7v_campaign_and_joined_accuracy(shared_data):
    table = ep.load_table("ecnas-7v")
    f = table.frame
    assert len(f) == 4310 and f["arch_key"].nunique() == 4310
    assert set(f["campaign"]) == {"ecnas-7v"} and table.manifest.pue is None
    joined = f.dropna(subset=["nb101_val_acc_108"])
    # NASLib's zc file samples 292 NB101 cells; two of them are among the 4,310 measured here
    assert len(joined) == 2
    assert joined["nb101_val_acc_108"].between(0.5, 1).all()
    # a different campaign: lower than the 5-vertex measurements on the cells both hold
    both = f.merge(ep.load_table("ecnas-5v").frame, on="arch_key", suffixes=("_7v", "_5v"))
    assert len(both) == 35
    ratio = both["train_energy_kwh_7v"] / both["train_energy_kwh_5v"]
    assert ratio.median() < 0.7


def _frame(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", masked_crc32c(length)) + payload
            + struct.pack("<I", masked_crc32c(payload)))


def test_truncated_file_names_offset(shared_data, tmp_path):
    data = (shared_data / FILES["ecnas-5v"][0]).read_bytes()
    offsets = [o for o, _ in read_records(shared_data / FILES["ecnas-5v"][0])]
    bad = tmp_path / "truncated.tfrecord"
    bad.write_bytes(data[:-10])
    with pytest.raises(DataFormatError, match=rf"at byte {offsets[-1]}: truncated record"):
        read_ecnas_tfrecord(bad, campaign="x")
    bad.write_bytes(data[:offsets[-1] + 5])
    with pytest.raises(DataFormatError, match=rf"at byte {offsets[-1]}: truncated record header"):
        read_ecnas_tfrecord(bad, campaign="x")


def test_corrupt_payload_and_length_are_caught(shared_data, tmp_path):
    data = bytearray((shared_data / FILES["ecnas-4v"][0]).read_bytes())
    offsets = [o for o, _ in read_records(shared_data / FILES["ecnas-4v"][0])]
    bad = tmp_path / "corrupt.tfrecord"
    flipped = bytearray(data)
    flipped[offsets[7] + 40] ^= 0x01
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DataFormatError, match=rf"at byte {offsets[7]}: record payload CRC mismatch"):
        read_ecnas_tfrecord(bad, campaign="x")
    flipped = bytearray(data)
    flipped[offsets[3] + 2] ^= 0x01
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DataFormatError, match=rf"at byte {offsets[3]}: record length CRC mismatch"):
        read_ecnas_tfrecord(bad, campaign="x")


def test_well_framed_but_wrong_content_is_refused(tmp_path):
    bad = tmp_path / "wrong.tfrecord"
    bad.write_bytes(_frame(b'["not", "a", "row"]'))
    with pytest.raises(DataFormatError, match="at byte 0: record is not an EC-NAS row"):
        read_ecnas_tfrecord(bad, campaign="x")
    # a record whose stored hash is not the fingerprint of its cell
    row = b'["0123456789abcdef0123456789abcdef", 4, "0110", "input,output", ""]'
    bad.write_bytes(_frame(row))
    with pytest.raises(DataFormatError, match="at byte 0:"):
        read_ecnas_tfrecord(bad, campaign="x")


def test_protobuf_reader_refuses_unknown_and_truncated_fields():
    with pytest.raises(WireError, match="unknown field 20"):
        decode(bytes([20 << 3 | 0, 1]), METRICS_SCHEMA)
    with pytest.raises(WireError, match="truncated double in field run_time_s"):
        decode(bytes([3 << 3 | 1, 0, 0]), METRICS_SCHEMA)


def test_failed_build_caches_nothing(shared_data, tmp_path, monkeypatch):
    data = (shared_data / FILES["ecnas-5v"][0]).read_bytes()
    bad = tmp_path / "truncated.tfrecord"
    bad.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(api.datasets, "resolve", lambda entry, **kw: bad)
    api._LOADED.clear()
    with pytest.raises(DataFormatError, match="truncated"):
        ep.load_table("ecnas-5v")
    assert not api.table_dir("ecnas-5v").exists()
    tables = tmp_path / "cache" / "tables"
    assert not tables.exists() or not any(tables.iterdir())
    api._LOADED.clear()
