"""Data registry: real mirror files, checksum refusal, real downloads from a local HTTP server."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from ecnas_plugin import datasets
from ecnas_plugin.datasets import DataFile, DataUnavailable
from ecnas_plugin.errors import ChecksumError, SchemaError, UnknownName

IN_MIRROR = [
    "energy_4V9E_4epochs.tfrecord", "energy_4V9E_linscale.tfrecord", "energy_5V9E_4epochs.tfrecord",
    "7v_data.pt", "zc_nasbench201.json", "zc_nasbench101.json", "nb201_index_to_arch_str.csv",
    "example_values.csv",
] + [f"flowers17_{k}_{split}.npy" for k in ("x", "y") for split in ("train", "val", "test")]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty user cache for this test alone."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(root))
    return root


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving a temp folder; yields (folder, base_url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(datasets, "DOWNLOAD_TIMEOUT_S", 10)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    server.timeout = 10
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _entry(name: str, payload: bytes, url: str, **kw) -> DataFile:
    fields = dict(
        name=name, url=url, size_bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
        license="MIT", citation="test", upstream_repo="local/test", upstream_path=name,
        mirror_path=f"test/{name}", description="test file",
    )
    fields.update(kw)
    return DataFile(**fields)


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_builtin_registry_covers_the_mirror(shared_data):
    entries = datasets.builtin_data_files()
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) == 21
    upstream = (shared_data / "UPSTREAM.tsv").read_text().splitlines()[1:]
    for line in upstream:
        name, size, sha = line.split("\t")[:3]
        entry = datasets.find(entries, name)
        assert (entry.size_bytes, entry.sha256) == (int(size), sha)
        assert not entry.mirror_only and entry.url.startswith("https://")
    for e in entries:
        assert e.license in ("MIT", "Apache-2.0") and e.citation and e.description
    assert {e.name for e in entries if e.mirror_only} == {"nb201_index_to_arch_str.csv", "example_values.csv"}
    for f in sorted((shared_data / "flowers17").iterdir()):  # not in UPSTREAM.tsv: checked against the files
        entry = datasets.find(entries, f"flowers17_{f.name}")
        assert (entry.size_bytes, entry.sha256) == (f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest())
        assert entry.mirror_path == f"flowers17/{f.name}" and not entry.mirror_only
    ecnas = datasets.find(entries, "energy_5V9E_4epochs.tfrecord")
    assert "Bakhtiarifard" in ecnas.citation and "ICASSP 2024" in ecnas.citation
    assert ecnas.mirror_path == "ecnas/energy_5V9E_4epochs.tfrecord"
    assert datasets.find(entries, "energy_4V9E_rtx3090.tfrecord").mirror_path == "ecnas/energy_4V9E_rtx3090.tfrecord"
    assert "NAS-Bench-Suite" in datasets.find(entries, "zc_nasbench201.json").citation


def test_find_unknown_name_lists_available():
    with pytest.raises(UnknownName) as info:
        datasets.find(datasets.builtin_data_files(), "energy_9V9E.tfrecord")
    assert "energy_9V9E.tfrecord" in str(info.value) and "7v_data.pt" in str(info.value)


def test_bad_entries_are_refused():
    with pytest.raises(SchemaError, match="sha256"):
        _entry("x.bin", b"x", "http://127.0.0.1/x", sha256="abc")
    with pytest.raises(SchemaError, match="mirror_path"):
        _entry("x.bin", b"x", "http://127.0.0.1/x", mirror_path="../x.bin")
    with pytest.raises(SchemaError, match="plain file name"):
        _entry("a/x.bin", b"x", "http://127.0.0.1/x")
    with pytest.raises(SchemaError, match="availability"):
        datasets.parse_data_files_tsv("\t".join(datasets.TSV_COLUMNS) + "\n" + "\t".join(["x"] * 11) + "\n")


def test_mirror_files_resolve_in_place(shared_data, cache):
    entries = datasets.builtin_data_files()
    for name in IN_MIRROR:
        entry = datasets.find(entries, name)
        path = datasets.resolve(entry, download=False)
        assert path == shared_data / entry.mirror_path
        assert datasets.sha256_file(path) == entry.sha256
    assert _files(cache) == []  # nothing copied into the cache; small files need no stamp


def _rot(path: Path, offset: int = 1000) -> None:
    """Flip one byte in place and put size and mtime back: bit rot no stat call can see."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("name", ["7v_data.pt", "flowers17_x_train.npy", "zc_nasbench201.json"])
def test_bit_rot_that_keeps_size_and_mtime_is_caught_in_small_files(shared_data, cache, tmp_path, name):
    entry = datasets.find(datasets.builtin_data_files(), name)
    mirror = tmp_path / "mirror"
    copy = mirror / entry.mirror_path
    copy.parent.mkdir(parents=True)
    shutil.copyfile(shared_data / entry.mirror_path, copy)
    assert datasets.resolve(entry, mirror=mirror, download=False) == copy
    _rot(copy)
    with pytest.raises(ChecksumError, match=name):
        datasets.resolve(entry, mirror=mirror, download=False)


def test_large_files_are_stamped_and_rehashed_on_every_build(shared_data, cache, tmp_path, monkeypatch):
    """Above REHASH_BYTES a stamp spares the re-hash between builds; a build re-hashes anyway."""
    monkeypatch.setattr(datasets, "REHASH_BYTES", 1000)  # make the real 4V file count as large
    entry = datasets.find(datasets.builtin_data_files(), "energy_4V9E_linscale.tfrecord")
    mirror = tmp_path / "mirror"
    copy = mirror / entry.mirror_path
    copy.parent.mkdir(parents=True)
    shutil.copyfile(shared_data / entry.mirror_path, copy)
    datasets.resolve(entry, mirror=mirror, download=False)
    assert _files(cache) == ["verified.json"]
    _rot(copy)
    real_hash = datasets.sha256_file
    monkeypatch.setattr(datasets, "sha256_file", lambda p: pytest.fail(f"re-hashed {p}"))
    assert datasets.resolve(entry, mirror=mirror, download=False) == copy  # the stamp vouches
    monkeypatch.setattr(datasets, "sha256_file", real_hash)
    with pytest.raises(ChecksumError, match=entry.name):
        datasets.resolve(entry, mirror=mirror, download=False, full_check=True)


def test_relative_mirror_is_resolved_once_and_a_missing_one_is_named(shared_data, cache, tmp_path, monkeypatch):
    entry = datasets.find(datasets.builtin_data_files(), "zc_nasbench201.json")
    monkeypatch.chdir(shared_data.parent)
    monkeypatch.setenv(datasets.MIRROR_ENV, "./data")
    monkeypatch.setattr(datasets, "_RESOLVED_MIRRORS", {})
    first = datasets.resolve(entry, download=False)
    monkeypatch.chdir(tmp_path)  # elsewhere, the same setting still finds the same folder
    assert datasets.resolve(entry, download=False) == first == shared_data / entry.mirror_path
    monkeypatch.setenv(datasets.MIRROR_ENV, "../no-such-mirror")
    with pytest.raises(DataUnavailable, match=r"no-such-mirror \(resolved to .*\) is not a folder"):
        datasets.resolve(entry, download=False)


def test_corrupted_mirror_copy_is_refused(shared_data, cache, tmp_path):
    entry = datasets.find(datasets.builtin_data_files(), "energy_4V9E_linscale.tfrecord")
    mirror = tmp_path / "mirror"
    copy = mirror / entry.mirror_path
    copy.parent.mkdir(parents=True)
    shutil.copyfile(shared_data / entry.mirror_path, copy)
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        datasets.resolve(entry, mirror=mirror, download=False)
    msg = str(info.value)
    assert entry.name in msg and entry.sha256 in msg and hashlib.sha256(data).hexdigest() in msg
    assert _files(cache) == []  # neither the file nor a stamp was written


def test_mirror_without_the_file_falls_through_to_cache(cache, tmp_path, served):
    folder, base = served
    payload = b"falls through\n" * 100
    (folder / "f.bin").write_bytes(payload)
    entry = _entry("f.bin", payload, f"{base}/f.bin")
    empty_mirror = tmp_path / "empty-mirror"
    empty_mirror.mkdir()
    path = datasets.resolve(entry, mirror=empty_mirror)
    assert path == cache / "data" / "f.bin"


def test_real_download_verifies_and_caches(cache, served):
    folder, base = served
    payload = bytes(range(256)) * 4096  # 1 MiB
    (folder / "real.bin").write_bytes(payload)
    entry = _entry("real.bin", payload, f"{base}/real.bin")
    path = datasets.resolve(entry, mirror=None, download=True)
    assert path == cache / "data" / "real.bin" and path.read_bytes() == payload
    (folder / "real.bin").unlink()  # a second resolve must come from the cache, not the server
    assert datasets.resolve(entry, download=False) == path
    assert datasets.status([entry])[0] | {"path": None} == {
        "name": "real.bin", "size": len(payload), "license": "MIT", "where": "cache",
        "path": None, "verified": True, "mirror_only": False,
    }


def test_wrong_checksum_download_leaves_nothing(cache, served):
    folder, base = served
    (folder / "bad.bin").write_bytes(b"what the server really has")
    entry = _entry("bad.bin", b"what the registry expects", f"{base}/bad.bin")
    with pytest.raises(ChecksumError) as info:
        datasets.resolve(entry)
    msg = str(info.value)
    assert "bad.bin" in msg and entry.sha256 in msg
    assert hashlib.sha256(b"what the server really has").hexdigest() in msg
    assert _files(cache) == []


def test_corrupted_cache_file_is_replaced_by_download(cache, served):
    folder, base = served
    payload = b"good bytes" * 50
    (folder / "c.bin").write_bytes(payload)
    entry = _entry("c.bin", payload, f"{base}/c.bin")
    (cache / "data").mkdir(parents=True)
    (cache / "data" / "c.bin").write_bytes(b"rotten")
    with pytest.raises(ChecksumError, match="cache"):
        datasets.resolve(entry, download=False)
    assert datasets.resolve(entry).read_bytes() == payload


def test_unreachable_server_is_a_clear_error(cache, served):
    _, base = served
    entry = _entry("gone.bin", b"never served", f"{base}/gone.bin")  # server answers 404
    with pytest.raises(DataUnavailable, match="gone.bin") as info:
        datasets.resolve(entry)
    assert base in str(info.value)
    assert _files(cache) == []


def test_no_mirror_no_cache_no_download_names_places(cache, monkeypatch):
    monkeypatch.delenv("ECNAS_DATA_MIRROR", raising=False)
    entry = datasets.find(datasets.builtin_data_files(), "energy_5V9E_4epochs.tfrecord")
    with pytest.raises(DataUnavailable) as info:
        datasets.resolve(entry, download=False)
    msg = str(info.value)
    assert entry.name in msg and str(cache / "data" / entry.name) in msg
    assert "ECNAS_DATA_MIRROR" in msg and f"ecnas data pull {entry.name}" in msg


def test_missing_in_given_mirror_names_mirror_path(cache, tmp_path):
    entry = datasets.find(datasets.builtin_data_files(), "zc_nasbench101.json")
    with pytest.raises(DataUnavailable) as info:
        datasets.resolve(entry, mirror=tmp_path, download=False)
    assert str(tmp_path / entry.mirror_path) in str(info.value)


def test_mirror_only_without_mirror(cache, monkeypatch):
    monkeypatch.delenv("ECNAS_DATA_MIRROR", raising=False)
    with pytest.raises(DataUnavailable, match="only from an offline mirror") as info:
        datasets.pull("nb201_index_to_arch_str.csv", progress=False)
    assert "nb201_index_to_arch_str.csv" in str(info.value)
    assert _files(cache) == []


def test_pull_and_status_with_real_mirror(shared_data, cache):
    entries = datasets.builtin_data_files()
    path = datasets.pull("nb201_index_to_arch_str.csv", progress=False)
    assert path == shared_data / "nb201" / "nb201_index_to_arch_str.csv"
    rows = {r["name"]: r for r in datasets.status(entries)}
    assert rows["nb201_index_to_arch_str.csv"]["where"] == "mirror"
    assert rows["nb201_index_to_arch_str.csv"]["verified"] is True
    assert rows["energy_7V9E_surrogate.tfrecord"] == {
        "name": "energy_7V9E_surrogate.tfrecord", "size": 613992864, "license": "MIT",
        "where": "missing", "path": None, "verified": None, "mirror_only": False,
    }
    assert {n for n, r in rows.items() if r["where"] == "mirror"} == set(IN_MIRROR)


def test_cache_and_mirror_dirs_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ECNAS_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("ECNAS_DATA_MIRROR", str(tmp_path / "m"))
    assert datasets.cache_dir() == tmp_path / "c"
    assert datasets.mirror_dir() == tmp_path / "m"
    assert datasets.mirror_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("ECNAS_DATA_MIRROR")
    monkeypatch.delenv("ECNAS_CACHE_DIR")
    assert datasets.mirror_dir() is None
    assert datasets.cache_dir().name == "ecnas-plugin"


def test_frozen():
    entry = datasets.builtin_data_files()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.sha256 = "0" * 64
