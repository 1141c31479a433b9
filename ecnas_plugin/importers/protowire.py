"""A small proto2 wire-format decoder driven by a schema written here (no generated code).

A schema maps field number → (name, kind, repeated); kind is "double", "int", "string" or a
nested schema dict. Unknown fields are an error: a file we do not understand is not guessed at.
"""

from __future__ import annotations

import struct
from typing import Any

Schema = dict[int, tuple[str, Any, bool]]


class WireError(ValueError):
    """Malformed protobuf bytes; ``pos`` is the offset inside the message."""

    def __init__(self, pos: int, reason: str):
        self.pos = pos
        super().__init__(f"protobuf byte {pos}: {reason}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError(pos, "truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError(pos, "varint too long")


def decode(buf: bytes, schema: Schema, path: str = "") -> dict[str, Any]:
    """Decode ``buf`` into a dict by ``schema``; repeated fields become lists."""
    out: dict[str, Any] = {name: [] for name, _, repeated in schema.values() if repeated}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number not in schema:
            raise WireError(pos, f"unknown field {path}{number} (wire type {wire})")
        name, kind, repeated = schema[number]
        if wire == 1:
            if kind != "double":
                raise WireError(pos, f"field {path}{name}: wire type 1 but schema says {kind}")
            if pos + 8 > len(buf):
                raise WireError(pos, f"truncated double in field {path}{name}")
            (value,) = struct.unpack_from("<d", buf, pos)
            pos += 8
        elif wire == 0:
            if kind != "int":
                raise WireError(pos, f"field {path}{name}: varint but schema says {kind}")
            value, pos = _varint(buf, pos)
            if value >= 1 << 63:  # proto int32/int64 negatives are two's complement
                value -= 1 << 64
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise WireError(pos, f"truncated field {path}{name}: {length} bytes announced")
            chunk = buf[pos:pos + length]
            pos += length
            if kind == "string":
                value = chunk.decode("utf-8")
            elif isinstance(kind, dict):
                value = decode(chunk, kind, f"{path}{name}.")
            else:
                raise WireError(pos, f"field {path}{name}: length-delimited but schema says {kind}")
        else:
            raise WireError(pos, f"field {path}{name}: unsupported wire type {wire}")
        if repeated:
            out[name].append(value)
        else:
            out[name] = value
    return out
