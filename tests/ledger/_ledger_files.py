"""Raw access to a ledger's files for tamper and crash tests (bypassing the library on purpose)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgspec

from medsentry.ledger import records
from medsentry.ledger.log import CHECKPOINTS, ENTRIES, HASHES, INDEX


def split_records(path: Path) -> tuple[bytes, list[bytes]]:
    """(magic, [framed record bytes...]) of an entries or checkpoints file."""
    data = path.read_bytes()
    out = []
    off = records.MAGIC_SIZE
    while off < len(data):
        (length,) = struct.unpack_from(">I", data, off)
        out.append(data[off : off + 8 + length])
        off += 8 + length
    return data[: records.MAGIC_SIZE], out


def join_records(path: Path, magic: bytes, recs: list[bytes]) -> None:
    path.write_bytes(magic + b"".join(recs))


def frame(payload: bytes) -> bytes:
    """A record with a correct CRC (what an attacker who knows the format would write)."""
    length = len(payload).to_bytes(4, "big")
    return length + zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "big") + payload


def payload(rec: bytes) -> bytes:
    return rec[8:]


def entry(rec: bytes) -> dict:
    return msgspec.json.decode(payload(rec))


def files(directory: Path) -> dict[str, Path]:
    return {n: directory / n for n in (ENTRIES, INDEX, HASHES, CHECKPOINTS)}
