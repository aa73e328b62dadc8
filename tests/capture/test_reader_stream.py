"""Captures read as streams (standard input, a pipe, a FIFO): the same windows, batches, warnings
and SHA-256 as the same bytes read from a file, whatever sizes the writer's writes have."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
from pathlib import Path

import pytest
from capture_build import Pcapng, eth, ipv4, pcap_bytes, udp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture.reader import CaptureReader, open_capture
from medsentry.errors import CaptureError


def _packet(i: int, size: int) -> bytes:
    payload = bytes((i + k) % 251 for k in range(size))
    return eth(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        0x0800,
        ipv4("10.0.0.1", "10.0.0.2", 17, udp(4000 + i % 7, 53, payload)),
    )


def _pcap(n: int, seed: int, **kw) -> bytes:
    rng = random.Random(seed)
    t0 = 1_700_000_000_000_000_000
    return pcap_bytes(
        [(t0 + i * 1_000_003_000, _packet(i, rng.randint(0, 1400))) for i in range(n)], **kw
    )


def _pcapng(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    ng = Pcapng().shb().idb(1).idb(101, tsresol=9)
    for i in range(n):
        pkt = _packet(i, rng.randint(0, 900))
        if i % 5 == 4:
            ng.spb(pkt)
        else:
            ng.epb(i % 2, 1_000 + i, pkt if i % 2 == 0 else pkt[14:])
    return ng.bytes()


def _summary(reader: CaptureReader) -> dict:
    """Every batch's position and records, the reader's warnings and final counts."""
    batches = []
    for b in reader:
        spans = zip(b.off.tolist(), b.caplen.tolist(), strict=True)
        data = [bytes(b.buf[o : o + c]) for o, c in spans]
        batches.append(
            (
                b.buf_offset,
                b.first_frame,
                b.buf.shape[0],
                b.ts_ns.tolist(),
                b.wirelen.tolist(),
                b.linktype.tolist(),
                b.iface.tolist(),
                data,
            )
        )
    warnings = [(w.offset, w.message) for w in reader.warnings]
    return {
        "batches": batches,
        "warnings": warnings,
        "packets": reader.packets,
        "format": reader.format,
        "linktypes": reader.linktypes,
    }


def _from_file(data: bytes, chunk: int, use_mmap: bool = True) -> dict | str:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.cap"
        path.write_bytes(data)
        try:
            with open_capture(path, chunk_bytes=chunk, use_mmap=use_mmap) as reader:
                out = _summary(reader)
                out["size"] = reader.size
                return out
        except CaptureError as exc:
            return f"{exc.offset}: {str(exc).split(': ', 1)[1]}"


def _writer(fd: int, data: bytes, sizes: list[int]) -> threading.Thread:
    """Write `data` to the pipe in writes of `sizes` (cycled), then close it."""

    def run() -> None:
        with os.fdopen(fd, "wb", buffering=0) as fh:
            pos, k = 0, 0
            while pos < len(data):
                n = sizes[k % len(sizes)]
                fh.write(data[pos : pos + n])
                pos, k = pos + n, k + 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _from_pipe(data: bytes, chunk: int, sizes: list[int]) -> tuple[dict | str, str | None]:
    r, w = os.pipe()
    writer = _writer(w, data, sizes)
    try:
        with CaptureReader("<stdin>", chunk_bytes=chunk, stream=os.fdopen(r, "rb", 0)) as rd:
            out = _summary(rd)
            digest = rd.sha256()
            out["size"] = rd.size
            return out, digest
    except CaptureError as exc:
        return f"{exc.offset}: {str(exc).split(': ', 1)[1]}", None
    finally:
        writer.join(10)


CAPTURES = {
    "pcap-le-us": _pcap(300, 1),
    "pcap-be-ns": _pcap(300, 2, big=True, nano=True),
    "pcap-le-ns": _pcap(200, 3, nano=True),
    "pcap-be-us": _pcap(200, 4, big=True),
    "pcapng": _pcapng(300, 5),
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
@pytest.mark.parametrize("chunk", [4096, 1 << 20])
def test_a_pipe_reads_as_the_file(name: str, chunk: int) -> None:
    data = CAPTURES[name]
    want = _from_file(data, chunk)
    got, digest = _from_pipe(data, chunk, [65536])
    assert isinstance(want, dict) and want["packets"] > 100 and want["warnings"] == []
    assert got == want
    assert digest == hashlib.sha256(data).hexdigest()


def _damaged(data: bytes, how: str, at: int) -> bytes:
    if how == "cut":  # the stream stops (a writer killed mid-record)
        return data[:at]
    if how == "length":  # a record header claiming 4 GB
        out = bytearray(data)
        out[at : at + 4] = b"\xf0\xff\xff\xff"
        return bytes(out)
    return data[:at] + b"\0" * 64 + data[at:]  # zero-filled bytes in the middle


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(CAPTURES)),
    sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=12),
    chunk=st.sampled_from([4096, 5000, 16384, 1 << 20]),
    damage=st.sampled_from(["none", "cut", "length", "zeros"]),
    where=st.floats(0.0, 1.0),
)
def test_any_writes_any_damage_same_as_the_file(
    name: str, sizes: list[int], chunk: int, damage: str, where: float
) -> None:
    """Writes of any sizes (chunk boundaries anywhere), damaged or not: the packets, batches
    and warnings of the file reader over the same bytes, and their SHA-256."""
    data = CAPTURES[name]
    if damage != "none":
        data = _damaged(data, damage, 1 + int(where * (len(data) - 9)))  # never empty
    want = _from_file(data, chunk)
    got, digest = _from_pipe(data, chunk, sizes)
    assert got == want
    if isinstance(want, dict):
        assert want == _from_file(data, chunk, use_mmap=False)
        assert digest == hashlib.sha256(data).hexdigest()
        assert got["size"] == len(data)


def test_a_fifo_is_read_as_a_stream(tmp_path: Path) -> None:
    """A FIFO named as a file: open() waits for its writer, then it is read as a stream."""
    data = CAPTURES["pcapng"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as fh:
            for i in range(0, len(data), 3000):
                fh.write(data[i : i + 3000])

    t = threading.Thread(target=write, daemon=True)
    t.start()
    with open_capture(fifo, chunk_bytes=4096) as reader:
        assert reader.streamed and reader.source == str(fifo)
        got = _summary(reader)
        assert reader.sha256() == hashlib.sha256(data).hexdigest()
    t.join(10)
    want = _from_file(data, 4096)
    assert isinstance(want, dict)
    want.pop("size")
    assert got == want


@pytest.mark.parametrize(
    ("data", "fragment", "offset"),
    [
        (b"", "empty input", 0),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap file header truncated", 6),
        (b"this is not a capture at all\n" * 300, "not a pcap, pcapng", 0),
        (b"\x1f\x8b\x08\x00" + b"\0" * 40, "gzip", 0),
        (CAPTURES["pcapng"][:20], "pcapng section header truncated", 20),
    ],
)
def test_bad_streams_fail_at_open(data: bytes, fragment: str, offset: int) -> None:
    """What fails for a file fails the same for a stream, named `<stdin>` with the offset."""
    got, _ = _from_pipe(data, 4096, [7])
    assert isinstance(got, str) and got.startswith(f"{offset}: ") and fragment in got
    if data:  # an empty file says "too short"; an empty stream, that nothing came
        assert got == _from_file(data, 4096)


def test_a_stream_is_read_once() -> None:
    r, w = os.pipe()
    _writer(w, CAPTURES["pcap-le-us"], [100_000]).join(10)
    with CaptureReader("<stdin>", stream=os.fdopen(r, "rb", 0)) as reader:
        assert sum(len(b) for b in reader) == 300
        with pytest.raises(RuntimeError, match="read only once"):
            list(reader)


def test_stream_batches_keep_their_bytes() -> None:
    """Each window of a stream is a fresh buffer: a batch's bytes survive later reads."""
    data = CAPTURES["pcap-le-us"]
    r, w = os.pipe()
    writer = _writer(w, data, [1000])
    with CaptureReader("<stdin>", chunk_bytes=4096, stream=os.fdopen(r, "rb", 0)) as reader:
        batches = list(reader)
    writer.join(10)
    assert len(batches) > 20
    for b in batches:
        assert b.buf.tobytes() == data[b.buf_offset : b.buf_offset + b.buf.shape[0]]
