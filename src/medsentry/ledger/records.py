"""Framing of the ledger's append-only files: a magic header, then length-prefixed records.

    file   = magic(8) record*
    record = length(u32, big-endian) crc(u32, big-endian) payload(length bytes)

`crc` is CRC-32 (ISO-HDLC, zlib) over the four length bytes and the payload, so a record whose
length field or payload was only partly written (a torn write) or altered is caught on read.
CRC-32 detects accidents; deliberate changes are caught by the Merkle tree and signed checkpoints.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

ENTRIES_MAGIC = b"MSLEDG\x00\x01"
CHECKPOINTS_MAGIC = b"MSCKPT\x00\x01"
MAGIC_SIZE = 8
HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 16 * 1024 * 1024

_crc32 = zlib.crc32
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


@dataclass(frozen=True)
class BadRecord:
    """Why the record at `offset` cannot be read."""

    offset: int
    reason: str
    torn: bool  # True when the file simply ends inside the record


def encode(payload: bytes) -> bytes:
    """One framed record."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    length = len(payload).to_bytes(4, "big")
    return length + _crc32(payload, _crc32(length)).to_bytes(4, "big") + payload


def read_at(buf: bytes | memoryview, offset: int) -> tuple[bytes, int] | BadRecord:
    """The payload of the record at `offset` and the offset after it, or why it is bad."""
    end = len(buf)
    if offset + HEADER_SIZE > end:
        return BadRecord(offset, "file ends inside a record header", torn=True)
    length, crc = _unpack_from(buf, offset)
    if length > MAX_PAYLOAD:
        return BadRecord(offset, f"record length {length} is impossible", torn=False)
    stop = offset + HEADER_SIZE + length
    if stop > end:
        return BadRecord(offset, f"file ends inside a {length}-byte record", torn=True)
    payload = bytes(buf[offset + HEADER_SIZE : stop])
    if _crc32(payload, _crc32(buf[offset : offset + 4])) != crc:
        return BadRecord(offset, "record checksum (CRC-32) mismatch", torn=False)
    return payload, stop


def scan(buf: bytes | memoryview, offset: int) -> Iterator[tuple[int, bytes] | BadRecord]:
    """Every record from `offset` to the end as (offset, payload); stops after the first bad one."""
    end = len(buf)
    while offset < end:
        got = read_at(buf, offset)
        if isinstance(got, BadRecord):
            yield got
            return
        payload, nxt = got
        yield offset, payload
        offset = nxt


def check_magic(buf: bytes | memoryview, magic: bytes) -> bool:
    return bytes(buf[:MAGIC_SIZE]) == magic
