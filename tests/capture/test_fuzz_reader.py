"""Fuzzing the reader: any bytes give RawBatches (plus warnings) or CaptureError, nothing else."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
from capture_build import Pcapng, eth, ipv4, pcap_bytes, udp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError

PKT = eth(
    "02:00:00:00:00:02",
    "02:00:00:00:00:01",
    0x0800,
    ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"hello")),
)
SMALL_PCAP = pcap_bytes([(1_000_000_000 * i, PKT[: 20 + 7 * i]) for i in range(6)])
SMALL_PCAPNG = (
    Pcapng()
    .shb()
    .idb(1)
    .epb(0, 5, PKT)
    .spb(PKT[:30])
    .idb(101, tsresol=9)
    .epb(1, 7, PKT[14:])
    .shb(big=True)
    .idb(113)
    .epb(0, 9, PKT)
    .bytes()
)
PREFIXES = [
    b"",
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
    SMALL_PCAP[:24],
    SMALL_PCAPNG[:28],
]


def _check(data: bytes, chunk_bytes: int = 4096, use_mmap: bool = True) -> int:
    """Read `data` as a capture; assert every batch is well-formed; return packets read."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.cap"
        p.write_bytes(data)
        try:
            reader = open_capture(p, chunk_bytes=chunk_bytes, use_mmap=use_mmap)
        except CaptureError as exc:
            assert exc.source == str(p) and exc.offset is not None
            return -1
        n = 0
        with reader:
            for b in reader:
                assert len(b) > 0
                end = b.off.astype(np.int64) + b.caplen
                assert (b.off >= 0).all() and (end <= b.buf.shape[0]).all()
                assert b.buf_offset + int(end.max()) <= len(data)
                pb = decode(b)
                has = pb.pl_len > 0
                assert (pb.pl_off[has] >= b.off[has]).all()
                assert (pb.pl_off[has] + pb.pl_len[has] <= end[has]).all()
                n += len(b)
            assert reader.packets == n
            for w in reader.warnings:
                assert w.source == str(p)
                assert w.offset is None or 0 <= w.offset <= len(data)
        return n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES), rest=st.binary(max_size=600))
def test_random_bytes(prefix: bytes, rest: bytes) -> None:
    _check(prefix + rest)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from([SMALL_PCAP, SMALL_PCAPNG]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=8),
    chunk=st.sampled_from([4096, 1 << 16]),
    use_mmap=st.booleans(),
)
def test_bit_flips(base: bytes, flips: list[tuple[int, int]], chunk: int, use_mmap: bool) -> None:
    data = bytearray(base)
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    _check(bytes(data), chunk, use_mmap)


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from([SMALL_PCAP, SMALL_PCAPNG]),
    at=st.integers(0, 10_000),
    junk=st.binary(min_size=1, max_size=64),
)
def test_spliced_junk(base: bytes, at: int, junk: bytes) -> None:
    at %= len(base)
    _check(base[:at] + junk + base[at:])


def test_truncation_at_every_offset() -> None:
    """Every prefix of a valid file: an error for the header, else the whole packets before."""
    for base, full in ((SMALL_PCAP, 6), (SMALL_PCAPNG, 4)):
        counts = [_check(base[:k]) for k in range(len(base) + 1)]
        assert counts[-1] == full
        assert counts[0] == -1
        assert all(a <= b for a, b in itertools.pairwise(counts) if a >= 0)
