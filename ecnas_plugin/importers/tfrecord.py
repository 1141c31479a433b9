"""TFRecord framing, read without TensorFlow, every CRC checked.

A record is: u64 length (little endian), u32 masked CRC32C of the length bytes, the payload,
u32 masked CRC32C of the payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c

from ..errors import DataFormatError

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, payload) of every record; raise DataFormatError at the first fault."""
    data = Path(path).read_bytes()
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 12:
            raise DataFormatError(path, offset, f"truncated record header ({end - offset} of 12 bytes)")
        length_bytes = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if masked_crc32c(length_bytes) != length_crc:
            raise DataFormatError(path, offset, "record length CRC mismatch (corrupt length field)")
        start = offset + 12
        if end - start < length + 4:
            raise DataFormatError(path, offset, f"truncated record: header says {length} payload bytes + 4 CRC "
                                                f"bytes, only {end - start} remain")
        payload = data[start:start + length]
        (payload_crc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if masked_crc32c(payload) != payload_crc:
            raise DataFormatError(path, offset, "record payload CRC mismatch (corrupt payload)")
        yield offset, payload
        offset = start + length + 4
