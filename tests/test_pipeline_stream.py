"""The pipeline over a stream (a pipe): the same events, capture id and stats as the file, and a
stream's events past `max_buffered_events` held on disk until its end gives the capture id."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from medsentry.capture.reader import CaptureReader
from medsentry.events import encode_json
from medsentry.events.flow import FlowRecord
from medsentry.pipeline import Pipeline, ScanConfig

# real captures with many event kinds: HL7, MQTT, Modbus, HTTP, TLS, DNS, QUIC, a pcapng
CAPTURES = ["hl7.pcap", "mqtt.pcap", "modbus.pcap", "1kxun.pcap", "quic.pcap", "sites.pcapng"]


def _pipe(data: bytes) -> tuple[CaptureReader, threading.Thread]:
    """A reader on a pipe that a thread fills with `data` in uneven writes, then closes."""
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb", buffering=0) as fh:
            pos, k = 0, 0
            while pos < len(data):
                n = 1 + (k * 7919) % 90_000
                fh.write(data[pos : pos + n])
                pos, k = pos + n, k + 1

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return CaptureReader("<stdin>", chunk_bytes=1 << 16, stream=os.fdopen(r, "rb", 0)), t


def _config(**kw) -> ScanConfig:
    return ScanConfig(phi_key=b"k", chunk_bytes=1 << 16, event_batch=7, **kw)


@pytest.mark.parametrize("limit", [1, 200_000])
@pytest.mark.parametrize("name", CAPTURES)
def test_stream_events_are_the_files(ndpi_pcaps: Path, name: str, limit: int) -> None:
    """Piped or read from the file: the same events in the same order (JSON byte for byte),
    with the file's SHA-256 as capture id; with limit 1 nearly all of them went through the
    spool, and none reached the sink before the stream had ended."""
    path = ndpi_pcaps / name
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    want: list = []
    file_stats = Pipeline(_config(max_buffered_events=limit)).scan_files([path], want.extend)

    got: list = []
    reader, writer = _pipe(data)
    ended_first: list[bool] = []

    def sink(events: list) -> None:
        ended_first.append(not writer.is_alive())
        got.extend(events)

    with reader:
        stats = Pipeline(_config(max_buffered_events=limit)).scan_reader(reader, sink)
        assert reader.size == len(data)
    writer.join(10)
    assert len(want) > limit or limit > 1
    assert [encode_json(e) for e in got] == [encode_json(e) for e in want]
    assert {e.capture_id for e in got if isinstance(e, FlowRecord)} == {digest}
    assert stats.capture_ids == file_stats.capture_ids == [digest]
    assert (stats.packets, stats.flows, stats.bytes) == (
        file_stats.packets,
        file_stats.flows,
        file_stats.bytes,
    )
    assert ended_first and all(ended_first)


def test_scan_files_reads_dash_as_standard_input(ndpi_pcaps: Path, tmp_path: Path) -> None:
    """`-` among the files: standard input (here a file descriptor 0 that is a pipe)."""
    data = (ndpi_pcaps / "hl7.pcap").read_bytes()
    r, w = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(r, 0)
        os.close(r)
        with os.fdopen(w, "wb") as fh:
            fh.write(data[:60_000])  # fits the pipe: written before it is read
        events: list = []
        stats = Pipeline(_config()).scan_files(["-"], events.extend)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert stats.capture_ids == [hashlib.sha256(data[:60_000]).hexdigest()]
    assert any(isinstance(e, FlowRecord) for e in events)
