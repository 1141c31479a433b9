"""The append-only measurement journal of a campaign: kill-safe, single-writer, self-checking.

Journal protocol (one writer, the campaign driver, holding an exclusive ``flock`` on
``<journal>.lock``): line 1 is the campaign header, every later line one finished measurement,
written as ONE ``write`` of ``json + "\\n"`` to a file opened ``O_APPEND`` and ``fsync``-ed before
the measurement counts as finished; every line carries the sha256 of its own content. A kill can
leave at most one torn line, at the end and without its newline: on open it is reported and cut
off (it never was a finished measurement). A newline-terminated line that fails its checksum, or
a key recorded twice, means outside damage and raises :class:`DataFormatError`: nothing is
silently merged or dropped.

Records are keyed by ``(arch_key, repeat)`` (:func:`record_key`); the campaign driver
(``campaign.run_campaign``) is the only writer and compares the stored header with its own
settings before it appends anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ecnas_plugin.errors import DataFormatError, EcnasError

FORMAT = 1


class JournalBusy(EcnasError, RuntimeError):
    """Another process is writing this journal."""


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def encode(record: Mapping[str, Any]) -> bytes:
    """One journal line (with its checksum and trailing newline)."""
    sealed = {**record, "sha256": _digest(record)}
    return (json.dumps(sealed, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def record_key(record: Mapping[str, Any]) -> tuple[str, int]:
    return (record["arch_key"], int(record["repeat"]))


def read(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """Header, measurement records and the byte length of the intact part of ``path``.

    Bytes after the last newline are a torn write (reported with a warning, not returned).
    """
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    if end < len(data):
        warnings.warn(f"{path}: ignoring a torn last line of {len(data) - end} bytes at byte {end} "
                      f"(a write interrupted by a kill; that measurement was not finished)", stacklevel=2)
    header = None
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], int] = {}
    offset = 0
    for line in data[:end].splitlines(keepends=True):
        try:
            record = json.loads(line)
            ok = isinstance(record, dict) and record.get("sha256") == _digest(record)
        except (json.JSONDecodeError, UnicodeDecodeError):
            ok = False
        if not ok:
            raise DataFormatError(path, offset, "journal line is corrupt (bad JSON or checksum) but complete: "
                                                "the file was damaged after it was written; refusing to guess")
        if offset == 0:
            if record.get("kind") != "campaign" or record.get("format") != FORMAT:
                raise DataFormatError(path, 0, f"first line is not a format-{FORMAT} campaign header")
            header = record
        elif record.get("kind") != "measurement":
            raise DataFormatError(path, offset, f"unexpected record kind {record.get('kind')!r}")
        else:
            key = record_key(record)
            if key in seen:
                raise DataFormatError(path, offset, f"measurement {key} recorded twice (first at byte "
                                                    f"{seen[key]}): two writers? refusing to merge")
            seen[key] = offset
            records.append(record)
        offset += len(line)
    return header, records, end


class Journal:
    """The writer side: lock, recover a torn tail, check the header, append records durably."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.keys: set[tuple[str, int]] = set()

    def open(self, header: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Lock the journal and return (header as stored, finished records).

        A new journal gets ``header``; an existing one must have been started with it (compared
        by the caller through the returned header).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            stored, records, intact = read(self.path)
            if self.path.exists() and intact < self.path.stat().st_size:
                os.truncate(self.path, intact)  # drop the torn tail so the next line starts clean
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if stored is None:
                stored = {"kind": "campaign", "format": FORMAT, **header}
                self._write(encode(stored))
                _fsync_dir(self.path.parent)
                stored = read(self.path)[0]
        except BaseException:
            self.close()
            raise
        self.keys = {record_key(r) for r in records}
        return stored, records  # type: ignore[return-value]

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one finished measurement durably; a key already recorded is refused."""
        if self._fd is None:
            raise EcnasError(f"journal {self.path} is not open")
        key = record_key(record)
        if key in self.keys:
            raise EcnasError(f"measurement {key} is already in {self.path}; not writing it twice")
        self._write(encode({"kind": "measurement", **record}))
        self.keys.add(key)

    def _write(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        os.fsync(self._fd)  # type: ignore[arg-type]

    def _lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # no flock (Windows): single-writer is the user's responsibility
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalBusy(f"{self.path} is being written by another process "
                              f"(lock {lock_path} is held); wait for it or use another output folder") from None

    def close(self) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)  # closing the lock fd releases the flock
                setattr(self, attr, None)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
