"""The streaming reader: classic pcap and pcapng variants, windows, record boundaries."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from capture_build import Pcapng, concat, pcap_bytes, pcap_file

from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError


def _records(n: int, seed: int = 1) -> list[tuple[int, bytes, int]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000_123_456_000
    out = []
    for i in range(n):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        out.append((t0 + i * 1_000_017_000, data, len(data) + rng.choice((0, 0, 40))))
    return out


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_precisions(tmp_path: Path, big: bool, nano: bool) -> None:
    recs = _records(50)
    path = pcap_file(tmp_path / "x.pcap", recs, linktype=101, big=big, nano=nano)
    got = concat(path)
    reader = got["reader"]
    assert reader.format == "pcap" and reader.linktypes == [101]
    assert reader.packets == 50 and reader.bytes_read == reader.size == path.stat().st_size
    assert reader.warnings == []
    assert got["data"] == [r[1] for r in recs]
    assert got["wirelen"].tolist() == [r[2] for r in recs]
    assert got["caplen"].tolist() == [len(r[1]) for r in recs]
    assert (got["linktype"] == 101).all() and (got["iface"] == 0).all()
    want_ts = [r[0] if nano else r[0] // 1000 * 1000 for r in recs]
    assert got["ts_ns"].tolist() == want_ts


def test_pcap_written_by_dpkt(tmp_path: Path) -> None:
    """An independent writer (dpkt) produces a file we read back packet for packet."""
    recs = _records(20, seed=7)
    path = tmp_path / "dpkt.pcap"
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=65535, linktype=1, nano=True)
        for ts, data, _ in recs:
            w.writepkt(data, ts=ts / 1e9)
    got = concat(path)
    assert got["data"] == [r[1] for r in recs]
    # dpkt goes through a float: within a microsecond
    assert np.abs(got["ts_ns"] - np.array([r[0] for r in recs])).max() < 1000


@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("chunk", [4096, 5000, 1 << 20])
def test_windows_split_records_anywhere(tmp_path: Path, use_mmap: bool, chunk: int) -> None:
    """Small windows cut records at every kind of boundary; the packets are the same."""
    recs = _records(400, seed=3)
    recs.append((recs[-1][0] + 1, bytes(range(256)) * 40, 10240))  # larger than a window
    recs += _records(30, seed=4)
    path = pcap_file(tmp_path / "w.pcap", recs, snaplen=65535)
    got = concat(path, chunk_bytes=chunk, use_mmap=use_mmap)
    assert got["data"] == [r[1] for r in recs]
    assert got["reader"].warnings == []
    batches = list(open_capture(path, chunk_bytes=chunk, use_mmap=use_mmap))
    if chunk < 10000:
        assert len(batches) > 5
    frames = [b.first_frame for b in batches]
    assert frames[0] == 1
    assert all(f2 - f1 == len(b) for f1, f2, b in zip(frames, frames[1:], batches, strict=False))
    for b in batches:  # buf_offset + off is the file offset of the packet bytes
        raw = path.read_bytes()
        j = len(b) // 2
        start = b.buf_offset + int(b.off[j])
        assert raw[start : start + int(b.caplen[j])] == bytes(
            b.buf[b.off[j] : b.off[j] + b.caplen[j]]
        )


def test_batches_keep_their_bytes_after_later_reads(tmp_path: Path) -> None:
    """Each batch owns (or maps) its bytes: reading on does not overwrite earlier batches."""
    recs = _records(300, seed=5)
    path = pcap_file(tmp_path / "k.pcap", recs)
    batches = list(open_capture(path, chunk_bytes=4096, use_mmap=False))
    data = [bytes(b.buf[o : o + c]) for b in batches for o, c in zip(b.off, b.caplen, strict=True)]
    assert data == [r[1] for r in recs]


def _ts_units(ns: int, resol: int) -> int:
    if resol & 0x80:
        return ns * (1 << (resol & 0x7F)) // 1_000_000_000
    return ns // 10 ** (9 - resol)


def test_pcapng_sections_interfaces_and_blocks(tmp_path: Path) -> None:
    t = 1_700_000_000_000_000_000
    eth = bytes(range(60))
    ip = bytes([0x45]) + bytes(39)
    f = Pcapng()
    f.shb()
    f.idb(1, snaplen=50)  # µs default; SPB captured length = min(wire, snaplen) §4.4
    f.idb(101, tsresol=9)  # ns
    f.block(0x00000BAD, b"custom block, skipped")
    f.idb(113, tsresol=0x80 | 20, tsoffset=100)  # 2**-20 s, +100 s
    f.epb(0, t // 1000, eth)
    f.epb(1, t + 7, ip, wirelen=1500)
    f.epb(2, _ts_units(t + 5_000_000, 0x80 | 20), eth)
    f.block(5, struct.pack("<IIIH", 0, 0, 0, 0))  # Interface Statistics Block, skipped
    f.pb(1, t + 9, ip)  # obsolete Packet Block
    f.spb(eth[:50], wirelen=60)  # Simple Packet Block: interface 0, no timestamp
    f.shb(big=True)  # second section, other byte order: interfaces restart
    f.idb(228, tsresol=3)
    f.epb(0, (t + 2_000_000_000) // 1_000_000, ip)
    f.spb(ip)
    path = f.write(tmp_path / "multi.pcapng")
    got = concat(path)
    r = got["reader"]
    assert r.format == "pcapng"  # the 60-byte EPB on interface 0 is over its SnapLen (kept)
    assert [w.message for w in r.warnings] == [
        "records longer than their interface's snaplen 50 (kept)"
    ]
    assert r.linktypes == [1, 101, 113, 228]
    assert got["iface"].tolist() == [0, 1, 2, 1, 0, 3, 3]
    assert got["linktype"].tolist() == [1, 101, 113, 101, 1, 228, 228]
    assert got["data"] == [eth, ip, eth, ip, eth[:50], ip, ip]
    assert got["wirelen"].tolist() == [60, 1500, 60, len(ip), 60, len(ip), len(ip)]
    ts = got["ts_ns"].tolist()
    assert ts[0] == t and ts[1] == t + 7 and ts[3] == t + 9
    assert abs(ts[2] - (t + 5_000_000 + 100_000_000_000)) < 1000  # 2**-20 s ≈ 954 ns
    assert ts[4] == ts[3]  # SPB carries no time: the last one seen
    assert ts[5] == t + 2_000_000_000 and ts[6] == ts[5]


def test_pcapng_by_dpkt_and_chunking(tmp_path: Path) -> None:
    recs = _records(200, seed=11)
    path = tmp_path / "d.pcapng"
    with path.open("wb") as fh:
        w = dpkt.pcapng.Writer(fh, snaplen=65535, linktype=1)
        for ts, data, _ in recs:
            w.writepkt(data, ts=ts / 1e9)
    for chunk, use_mmap in ((4096, True), (4096, False), (1 << 20, True)):
        got = concat(path, chunk_bytes=chunk, use_mmap=use_mmap)
        assert got["data"] == [r[1] for r in recs]
        assert np.abs(got["ts_ns"] - np.array([r[0] for r in recs])).max() < 1000


def test_reader_reiterates_and_closes(tmp_path: Path) -> None:
    path = pcap_file(tmp_path / "r.pcap", _records(10))
    with open_capture(path) as r:
        assert sum(len(b) for b in r) == 10
        assert sum(len(b) for b in r) == 10
        assert r.packets == 10


def test_empty_capture_has_no_batches(tmp_path: Path) -> None:
    path = tmp_path / "e.pcap"
    path.write_bytes(pcap_bytes([]))
    r = open_capture(path)
    assert list(r) == [] and r.warnings == [] and r.packets == 0
    path2 = Pcapng().shb().idb(1).write(tmp_path / "e.pcapng")
    r2 = open_capture(path2)
    assert list(r2) == [] and r2.linktypes == [1]


def test_not_a_file_object(tmp_path: Path) -> None:
    """The reader takes paths only (it maps or reads the file itself)."""
    with pytest.raises(TypeError):
        open_capture(io.BytesIO(b""))  # type: ignore[arg-type]


@pytest.mark.parametrize("use_mmap", [True, False])
def test_windows_stay_bounded(tmp_path: Path, use_mmap: bool) -> None:
    """Memory per batch is bounded by the window size, not by the file size."""
    recs = _records(3000, seed=9)
    path = pcap_file(tmp_path / "big.pcap", recs)
    chunk = 16384
    batches = list(open_capture(path, chunk_bytes=chunk, use_mmap=use_mmap))
    assert path.stat().st_size > 20 * chunk
    assert max(b.buf.shape[0] for b in batches) <= chunk
    assert sum(len(b) for b in batches) == 3000


def test_not_a_regular_file_or_a_pipe() -> None:
    """A device is refused by name (a FIFO is read as a stream: test_reader_stream.py)."""
    with pytest.raises(CaptureError, match="not a regular file or a pipe"):
        open_capture("/dev/null")


def test_mapped_pages_behind_the_read_position_are_released(tmp_path: Path) -> None:
    """The mmap reader gives back the pages of windows it has passed (RSS stays a few windows
    whatever the file size), and an early batch still reads its own bytes afterwards."""
    recs = _records(3000, seed=11)
    path = pcap_file(tmp_path / "rel.pcap", recs)
    chunk = 16384
    with open_capture(path, chunk_bytes=chunk) as reader:
        batches = list(reader)
        win = reader._windows
        assert win is not None and win.mapped
        assert win._released >= path.stat().st_size - 8 * chunk
        data = [
            bytes(b.buf[o : o + c]) for b in batches for o, c in zip(b.off, b.caplen, strict=True)
        ]
    assert data == [r[1] for r in recs]
