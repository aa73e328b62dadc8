"""The scan pipeline over real pcap files: capture ids, sink batches, progress, stats, live path."""

from __future__ import annotations

import gzip
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from medsentry.capture.reader import open_capture
from medsentry.capture.writer import CLIENT, SERVER, FrameLog, Host, TcpSession, udp
from medsentry.errors import CaptureError
from medsentry.events.flow import DecodeWarning, FlowRecord
from medsentry.pipeline import Pipeline, ScanConfig

T0 = 1_700_000_000 * 10**9


def build(path: Path, n_sessions: int = 30, seed: int = 1) -> int:
    """A capture of TCP sessions and DNS datagrams between a few hosts; returns frames."""
    log = FrameLog()
    hosts = [Host(ip=f"10.2.0.{k + 1}", mac=f"02:00:00:00:02:{k + 1:02x}") for k in range(6)]
    for k in range(n_sessions):
        c, s = hosts[k % 3], hosts[3 + k % 3]
        sess = TcpSession(log, c, s, 40000 + k, 8080, isn_client=seed + k, isn_server=7 * k)
        t = sess.open(T0 + k * 10**7)
        t = sess.send(CLIENT, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", t)
        t = sess.send(SERVER, b"HTTP/1.1 200 OK\r\n\r\n" + os.urandom(5000), t)
        sess.close(t)
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"
        log.add(T0 + k * 10**7 + 5, c.frame(s, 17, udp(c.ip, s.ip, 50000 + k, 53, q)))
    log.write(path)
    return len(log)


def scan(path, config=None, **kw):
    events, calls, prog = [], [], []

    def sink(evs):
        calls.append(len(evs))
        events.extend(evs)

    stats = Pipeline(config or ScanConfig(phi_key=b"k")).scan_files(
        [path], sink, lambda done, total: prog.append((done, total)), **kw
    )
    return stats, events, calls, prog


def test_scan_file_capture_id_stats_and_progress(tmp_path):
    path = tmp_path / "a.pcap"
    frames = build(path)
    stats, events, calls, prog = scan(path, ScanConfig(phi_key=b"k", event_batch=7))
    flows = [e for e in events if isinstance(e, FlowRecord)]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(flows) == 60 and {f.capture_id for f in flows} == {digest}
    assert stats.capture_ids == [digest]
    assert stats.files == 1 and stats.packets == frames and stats.flows == 60
    assert stats.hosts == 6 and stats.protocols.get("http") == 30
    assert stats.protocols.get("dns") == 30
    assert stats.bytes == path.stat().st_size - 24 - 16 * frames  # captured bytes
    assert stats.elapsed_s > 0 and stats.packets_per_s > 0 and stats.decode_errors == {}
    assert max(calls) <= 7 and sum(calls) == len(events)
    size = path.stat().st_size
    assert prog[-1] == (size, size) and all(d <= t for d, t in prog)


def test_same_capture_twice_gives_identical_ids(tmp_path):
    path = tmp_path / "a.pcap"
    build(path)
    ids1 = sorted(e.flow_id for e in scan(path)[1] if isinstance(e, FlowRecord))
    ids2 = sorted(e.flow_id for e in scan(path)[1] if isinstance(e, FlowRecord))
    assert ids1 == ids2 and len(set(ids1)) == 60


def test_small_windows_and_streaming_past_the_buffer_limit(tmp_path):
    path = tmp_path / "a.pcap"
    build(path, n_sessions=40)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    base = scan(path)[1]
    cfg = ScanConfig(phi_key=b"k", chunk_bytes=4096, max_buffered_events=10, event_batch=3)
    _stats, events, calls, _ = scan(path, cfg)
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert {f.capture_id for f in flows} == {digest}
    key = lambda f: f.flow_id  # noqa: E731
    assert sorted(flows, key=key) == sorted((e for e in base if isinstance(e, FlowRecord)), key=key)
    assert len(calls) > 5 and max(calls) <= 3


def test_truncated_capture_keeps_packets_and_warns(tmp_path):
    path = tmp_path / "a.pcap"
    build(path, n_sessions=5)
    data = path.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])
    stats, events, _, _ = scan(cut)
    warnings = [e for e in events if isinstance(e, DecodeWarning)]
    assert warnings and str(cut) in warnings[0].source and stats.warnings >= 1
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert len(flows) == 10
    assert {f.capture_id for f in flows} == {hashlib.sha256(cut.read_bytes()).hexdigest()}


def test_not_a_capture_is_a_capture_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"hello world, not a pcap")
    with pytest.raises(CaptureError, match="not a pcap"):
        Pipeline(ScanConfig(phi_key=b"k")).scan_files([bad], lambda evs: None)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(gzip.compress(b"\xd4\xc3\xb2\xa1" + bytes(20))), "gzip"),
        (lambda p: zipfile.ZipFile(p, "w").close(), None),  # an empty archive: no local header
        (lambda p: _zip_with(p, "FS/data/misc/bluetooth/logs/btsnoop_hci.log"), "zip archive"),
    ],
    ids=["gzip", "empty-zip", "bugreport-zip"],
)
def test_archives_name_what_to_do(tmp_path, make, message) -> None:
    """A compressed or archived capture is one clear message, exit code 2, no traceback."""
    from click.testing import CliRunner

    from medsentry.cli import main as cli

    path = tmp_path / "capture.bin"
    make(path)
    res = CliRunner().invoke(cli, ["scan", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert res.exit_code == 2 and "Traceback" not in res.output and str(path) in res.output
    assert (message or "not a pcap") in res.output


def _zip_with(path, name: str) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, b"btsnoop\0" + bytes(8))


def test_several_files_each_with_its_own_capture_id(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    build(a, n_sessions=3, seed=1)
    build(b, n_sessions=4, seed=2)
    events: list = []
    stats = Pipeline(ScanConfig(phi_key=b"k")).scan_files([a, b], events.extend)
    ids = {}
    for e in events:
        if isinstance(e, FlowRecord):
            ids[e.capture_id] = ids.get(e.capture_id, 0) + 1
    assert ids == {
        hashlib.sha256(a.read_bytes()).hexdigest(): 6,
        hashlib.sha256(b.read_bytes()).hexdigest(): 8,
    }
    assert stats.files == 2 and stats.flows == 14


def test_run_source_live_path_streams_and_flushes_at_stop(tmp_path):
    path = tmp_path / "a.pcap"
    build(path, n_sessions=10)
    calls: list[list] = []
    with open_capture(path, chunk_bytes=4096) as reader:
        stats = Pipeline(ScanConfig(phi_key=b"k")).run_source(iter(reader), calls.append)
    events = [e for c in calls for e in c]
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert len(flows) == 20 and all(f.capture_id is None for f in flows)
    assert stats.flows == 20 and stats.packets > 0
    ref = sorted(e.flow_id for e in scan(path)[1] if isinstance(e, FlowRecord))
    assert sorted(f.flow_id for f in flows) == ref


def test_identification_off_gives_unidentified_flows(tmp_path):
    path = tmp_path / "a.pcap"
    build(path, n_sessions=3)
    stats, events, _, _ = scan(path, ScanConfig(phi_key=b"k", identify=False, dissectors=False))
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert len(flows) == 6 and all(f.app_protocol is None for f in flows)
    assert stats.protocols == {"unknown": 6}


def test_empty_batches_from_a_live_source_expire_idle_flows_on_the_clock(tmp_path):
    import time

    import numpy as np

    from medsentry.capture.batch import RawBatch

    path = tmp_path / "a.pcap"
    build(path, n_sessions=1)
    seen: list[list] = []

    def source():
        with open_capture(path) as reader:
            yield from reader
        # nothing more on the wire; the capture is still running
        empty = RawBatch(
            "lo",
            np.zeros(0, np.uint8),
            0,
            1,
            *(
                np.zeros(0, t)
                for t in (np.int64, np.int64, np.uint32, np.uint32, np.uint16, np.uint16)
            ),
        )
        assert time.time_ns() > T0 + 200 * 10**9  # the recorded flows are long idle by now
        yield empty
        # the flows ended at the empty batch, before the source stopped
        assert len([e for c in seen for e in c if isinstance(e, FlowRecord)]) == 2

    cfg = ScanConfig(phi_key=b"k", idle_timeout_s=120)
    stats = Pipeline(cfg).run_source(source(), seen.append)
    flows = [e for c in seen for e in c if isinstance(e, FlowRecord)]
    assert stats.flows == 2 and len(flows) == 2
    assert {f.end_reason for f in flows} == {"fin", "idle"}
