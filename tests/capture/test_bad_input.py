"""Damaged captures: header damage raises CaptureError; later damage keeps what came before."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from capture_build import Pcapng, pcap_bytes

from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError, MedsentryError

RECS = [(1_600_000_000_000_000_000 + i * 1000, bytes([i]) * (20 + i)) for i in range(10)]


def _offsets(recs: list) -> list[int]:
    """File offset of each pcap record header."""
    out, pos = [], 24
    for _, d in recs:
        out.append(pos)
        pos += 16 + len(d)
    return out


def _read(path: Path, **kw):
    r = open_capture(path, **kw)
    n = sum(len(b) for b in r)
    return r, n


def test_wrong_magic_names_file_and_offset(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_bytes(b"this is not a capture file at all")
    with pytest.raises(CaptureError) as ei:
        open_capture(p)
    assert str(p) in str(ei.value) and "at byte 0" in str(ei.value)
    assert ei.value.offset == 0 and isinstance(ei.value, MedsentryError) and ei.value.exit_code == 2


def test_compressed_and_missing_files(tmp_path: Path) -> None:
    p = tmp_path / "c.pcap.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(30))
    with pytest.raises(CaptureError, match="decompress"):
        open_capture(p)
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "absent.pcap")


@pytest.mark.parametrize("n", [0, 3, 4, 10, 23])
def test_truncated_pcap_file_header(tmp_path: Path, n: int) -> None:
    p = tmp_path / "t.pcap"
    p.write_bytes(pcap_bytes(RECS)[:n])
    with pytest.raises(CaptureError) as ei:
        open_capture(p)
    assert ei.value.offset == n and str(p) in str(ei.value)


@pytest.mark.parametrize("n", [4, 11, 20, 27])
def test_truncated_pcapng_section_header(tmp_path: Path, n: int) -> None:
    p = tmp_path / "t.pcapng"
    p.write_bytes(Pcapng().shb().idb(1).bytes()[:n])
    with pytest.raises(CaptureError):
        open_capture(p)


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    data = bytearray(Pcapng().shb().idb(1).bytes())
    data[8:12] = b"\x01\x02\x03\x04"
    p = tmp_path / "b.pcapng"
    p.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="byte-order") as ei:
        open_capture(p)
    assert ei.value.offset == 8


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_of_another_major_version_is_refused(tmp_path: Path, big: bool) -> None:
    """pcapng §4.1: a major version other than 1 is a format this reader does not know."""
    e = ">" if big else "<"
    data = bytearray(Pcapng().shb(big=big).idb(1).epb(0, 1, b"x" * 60).bytes())
    struct.pack_into(e + "H", data, 12, 2)
    p = tmp_path / "v2.pcapng"
    p.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match=r"pcapng version 2\.0") as ei:
        open_capture(p)
    assert ei.value.offset == 12


def test_a_later_pcapng_section_of_another_major_version_ends_the_read(tmp_path: Path) -> None:
    first = Pcapng().shb().idb(1).epb(0, 1, b"x" * 60).epb(0, 2, b"y" * 60).bytes()
    later = bytearray(Pcapng().shb().idb(1).epb(0, 3, b"z" * 60).bytes())
    struct.pack_into("<H", later, 12, 2)
    p = tmp_path / "two.pcapng"
    p.write_bytes(first + bytes(later))
    r, n = _read(p)
    assert n == 2 and len(r.warnings) == 1 and "major version" in r.warnings[0].message
    assert r.warnings[0].offset == len(first)


@pytest.mark.parametrize("cut", [1, 5, 16, 17, 30])
@pytest.mark.parametrize("use_mmap", [True, False])
def test_truncated_last_record_keeps_the_rest(tmp_path: Path, cut: int, use_mmap: bool) -> None:
    data = pcap_bytes(RECS)
    p = tmp_path / "t.pcap"
    p.write_bytes(data[:-cut])
    r, n = _read(p, chunk_bytes=4096, use_mmap=use_mmap)
    last = _offsets(RECS)[-1]
    assert n == 9 and len(r.warnings) == 1
    w = r.warnings[0]
    assert w.offset == last and w.source == str(p) and "truncated" in w.message
    assert w.ts_ns == RECS[8][0]


def _patch_caplen(k: int, value: int, wire: int | None = None) -> bytes:
    data = bytearray(pcap_bytes(RECS))
    at = _offsets(RECS)[k]
    struct.pack_into("<I", data, at + 8, value)
    if wire is not None:
        struct.pack_into("<I", data, at + 12, wire)
    return bytes(data)


@pytest.mark.parametrize(
    ("value", "wire", "word"),
    [(5000, None, "truncated"), (0xFFFFFFF0, None, "impossible"), (0, 0, "zero-length")],
)
def test_corrupt_record_length_mid_file(
    tmp_path: Path, value: int, wire: int | None, word: str
) -> None:
    p = tmp_path / "c.pcap"
    p.write_bytes(_patch_caplen(4, value, wire))
    r, n = _read(p)
    assert n == 4
    assert [w.offset for w in r.warnings] == [_offsets(RECS)[4]] and word in r.warnings[0].message


def test_caplen_above_snaplen_is_kept_with_one_warning(tmp_path: Path) -> None:
    p = tmp_path / "s.pcap"
    p.write_bytes(pcap_bytes(RECS, snaplen=22))
    r, n = _read(p)
    assert n == 10 and len(r.warnings) == 1 and "snaplen" in r.warnings[0].message


def test_pcapng_record_above_its_interface_snaplen_is_kept_with_one_warning(
    tmp_path: Path,
) -> None:
    f = Pcapng().shb().idb(1, snaplen=0).idb(1, snaplen=24)  # §4.2: SnapLen 0 = no limit
    for i, (_, d) in enumerate(RECS):
        f.epb(i % 2, i, d)
    p = tmp_path / "s.pcapng"
    p.write_bytes(f.bytes())
    r, n = _read(p, chunk_bytes=64)
    assert n == 10 and len(r.warnings) == 1  # interface 1 has records of 25, 27 and 29 bytes
    assert "longer than their interface's snaplen 24" in r.warnings[0].message
    f = Pcapng().shb().idb(1, snaplen=0)
    for i, (_, d) in enumerate(RECS):
        f.epb(0, i, d)
    p.write_bytes(f.bytes())
    assert _read(p)[0].warnings == []


def _png_offsets(f: Pcapng) -> list[int]:
    out, pos = [], 0
    for b in f.blocks:
        out.append(pos)
        pos += len(b)
    return out


def _png() -> Pcapng:
    f = Pcapng().shb().idb(1)
    for ts, d in RECS:
        f.epb(0, ts // 1000, d)
    return f


@pytest.mark.parametrize(
    ("patch", "word"),
    [
        (lambda b: struct.pack_into("<I", b, len(b) - 4, 999), "trailing"),  # trailer
        (lambda b: struct.pack_into("<I", b, 4, 13), "impossible"),  # not a multiple of 4
        (lambda b: struct.pack_into("<I", b, 4, 8), "impossible"),  # < 12
        (lambda b: struct.pack_into("<I", b, 4, 1 << 20), "truncated"),  # beyond the file
        (lambda b: struct.pack_into("<I", b, 20, 10_000), "inconsistent"),  # EPB caplen > block
        (lambda b: struct.pack_into("<I", b, 8, 5), "inconsistent"),  # unknown interface id
    ],
)
def test_pcapng_block_damage(tmp_path: Path, patch, word: str) -> None:
    f = _png()
    offs = _png_offsets(f)
    k = 6  # damage the 5th EPB (blocks: SHB, IDB, EPB0..)
    blk = bytearray(f.blocks[k])
    patch(blk)
    f.blocks[k] = bytes(blk)
    p = f.write(tmp_path / "d.pcapng")
    r, n = _read(p, chunk_bytes=4096)
    assert n == 4
    assert len(r.warnings) == 1 and r.warnings[0].offset == offs[k], r.warnings
    assert word in r.warnings[0].message


def test_pcapng_truncated_at_end(tmp_path: Path) -> None:
    data = _png().bytes()
    p = tmp_path / "e.pcapng"
    p.write_bytes(data[:-7])
    r, n = _read(p)
    assert n == 9 and "truncated" in r.warnings[0].message


def test_unknown_link_type_warned_once_per_interface(tmp_path: Path) -> None:
    f = Pcapng().shb().idb(1).idb(147).idb(148)
    for i in range(50):
        f.epb(1 + i % 2, i, b"\x01\x02\x03")
        f.epb(0, i, b"\x00" * 14)
    p = f.write(tmp_path / "u.pcapng")
    r, n = _read(p, chunk_bytes=4096)
    assert n == 100
    msgs = [w.message for w in r.warnings]
    assert len(msgs) == 2 and "147" in msgs[0] and "148" in msgs[1]
    pc = tmp_path / "u.pcap"
    pc.write_bytes(pcap_bytes(RECS, linktype=147))
    r2, _ = _read(pc)
    assert len(r2.warnings) == 1 and "interface 0: unknown link type 147" in r2.warnings[0].message


@pytest.mark.parametrize(
    ("data", "where"),
    [(b"hello world, not a capture", "at byte 0"), (pcap_bytes([])[:8], "at byte 8")],
)
def test_cli_reports_one_line_and_exit_2(tmp_path: Path, data: bytes, where: str) -> None:
    """`medsentry scan` on a broken capture: one line naming file and offset, exit code 2."""
    import subprocess
    import sys

    p = tmp_path / "broken.pcap"
    p.write_bytes(data)
    res = subprocess.run(
        [sys.executable, "-c", "from medsentry.cli import main; main()", "scan", str(p)],
        capture_output=True,
        text=True,
        check=False,
    )
    if "No such command" in res.stderr:
        pytest.skip("the scan command is not registered in this checkout")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(p) in lines[0] and where in lines[0]
    assert "Traceback" not in res.stderr
