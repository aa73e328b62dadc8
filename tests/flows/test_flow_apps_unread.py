"""Bytes no dissector reads: a dissector that says it is done (`done`, e.g. TLS once both
sides are encrypted) is fed nothing more, and one that can take bytes by length (`skippable`,
`skip`: e.g. DICOM bulk data) gets their length only; either way the flow's stream statistics
stay exactly what full delivery gives, and every byte fed is the right one."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import ClassVar

import pytest
from flow_apps_common import HTTP_REQ, HTTP_RESP_HEAD, T0, C, Recorder, S, needs_identify, scan_file

from medsentry.capture.writer import CLIENT, SERVER, FrameLog, TcpSession, write_pcap
from medsentry.events.flow import FlowRecord
from medsentry.protocols.base import FlowContext


class Keeper(Recorder):
    """Keeps what it is fed; never done."""

    protocol = "keeper"
    made: ClassVar[list[Keeper]] = []

    @property
    def gaps(self) -> list[tuple[int, int]]:
        return [(d, x[1]) for d, x in self.items if isinstance(x, tuple)]


class Done(Keeper):
    """Done once it holds the request and 3,000 bytes of the response."""

    @property
    def done(self) -> bool:
        return len(self.data[0]) >= len(HTTP_REQ) and len(self.data[1]) >= 3000


@pytest.fixture(autouse=True)
def _reset():
    Keeper.made.clear()


def _session(log: FrameLog, body: int, sport: int = 41000):
    sess = TcpSession(log, C, S, sport, 8080, isn_client=1000, isn_server=90000, mss=1460)
    t = sess.open(T0)
    t = sess.send(CLIENT, HTTP_REQ, t)
    t = sess.send(SERVER, HTTP_RESP_HEAD + os.urandom(body), t)
    sess.close(t)
    return sess


def _scan(path: Path, cls, chunk: int = 1 << 20):
    events, emitted = scan_file(path, cls, chunk)
    return [e for e in events if isinstance(e, FlowRecord)], emitted


def _mangled(tmp_path: Path) -> tuple[Path, bytes]:
    """A response with swapped, duplicated and one lost segment, all after the first 3,000
    bytes, in a capture read in small windows (many kernel ranges)."""
    log = FrameLog()
    sess = _session(log, body=120_000)
    frames = log.frames
    data_idx = [i for i, (_, fr) in enumerate(frames) if len(fr) > 600]
    rng = random.Random(11)
    for i in rng.sample(data_idx[6:-6], 8):
        (ta, fa), (tb, fb) = frames[i], frames[i + 1]
        frames[i], frames[i + 1] = (ta, fb), (tb, fa)
    for i in sorted(rng.sample(data_idx[6:-6], 6), reverse=True):
        frames.insert(i + 1, frames[i])
    lost = [i for i, (_, fr) in enumerate(frames) if len(fr) > 600][40]
    del frames[lost]
    path = tmp_path / "m.pcap"
    write_pcap(path, frames)
    return path, bytes(sess.sent[SERVER])


@needs_identify
@pytest.mark.parametrize("chunk", [1 << 20, 8192])
def test_done_dissector_is_fed_no_more_and_stream_stats_are_unchanged(tmp_path, chunk):
    path, sent = _mangled(tmp_path)
    full, _ = _scan(path, Keeper, chunk)
    (keeper,) = Keeper.made
    Keeper.made.clear()
    done, _ = _scan(path, Done, chunk)
    (d,) = Keeper.made
    assert full == done  # FlowRecords, stream statistics included, are the same
    f = full[0]
    assert f.stream_s2c.gaps == 1 and f.stream_s2c.retransmitted_segments >= 3
    assert f.stream_s2c.out_of_order_segments >= 1
    assert keeper.gaps and not d.gaps  # the hole came after `done`: not fed
    assert 3000 <= len(d.data[1]) < 3000 + 64 * 1460 and bytes(d.data[1]) == sent[: len(d.data[1])]
    assert len(d.data[1]) < len(keeper.data[1]) and d.closed


@needs_identify
def test_done_dissector_flows_are_counted_among_other_flows(tmp_path):
    log = FrameLog()
    for k in range(4):
        _session(log, body=20_000 + 5000 * k, sport=41000 + k)
    log.frames.sort(key=lambda f: f[0])  # sessions interleaved in time
    path = tmp_path / "many.pcap"
    write_pcap(path, log.frames)
    full, _ = _scan(path, Keeper, 4096)
    done, _ = _scan(path, Done, 4096)
    assert full == done and len(full) == 4


class Skipper(Keeper):
    """Takes server bytes by length once the response has begun, until the client sends its
    second request; records where each fed byte sits in its stream."""

    def __init__(self, ctx: FlowContext):
        super().__init__(ctx)
        self.pos = [0, 0]
        self.fed: list[tuple[int, int, bytes]] = []  # (direction, stream offset, bytes)
        self.skipped = 0

    def feed(self, direction, data, ts_ns):
        self.fed.append((direction, self.pos[direction], bytes(data)))
        self.pos[direction] += len(data)
        return super().feed(direction, data, ts_ns)

    def gap(self, direction, length, ts_ns):
        self.pos[direction] += length
        return super().gap(direction, length, ts_ns)

    def skippable(self, direction):
        if direction == 1 and self.pos[1] > 0 and self.pos[0] <= len(HTTP_REQ) + 3:
            return 1 << 40
        return 0

    def skip(self, direction, length):
        self.pos[direction] += length
        self.skipped += length


def _interleaved(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """Response head, a 3-byte client message, 60 KB (skippable), the client's second
    request, 60 KB more (fed: no longer skippable once the client's bytes are fed)."""
    log = FrameLog()
    sess = TcpSession(log, C, S, 41000, 8080, isn_client=1000, isn_server=90000, mss=1460)
    t = sess.open(T0)
    t = sess.send(CLIENT, HTTP_REQ, t)
    t = sess.send(SERVER, HTTP_RESP_HEAD + os.urandom(1000), t)
    t = sess.send(CLIENT, b"abc", t)
    t = sess.send(SERVER, os.urandom(60_000), t)
    t = sess.send(CLIENT, HTTP_REQ, t)
    t = sess.send(SERVER, os.urandom(60_000), t)
    sess.close(t)
    path = tmp_path / "i.pcap"
    log.write(path)
    return path, bytes(sess.sent[CLIENT]), bytes(sess.sent[SERVER])


@needs_identify
@pytest.mark.parametrize("chunk", [1 << 20, 65536, 16384, 4096])
def test_bytes_taken_by_length_are_skipped_and_the_rest_fed_exactly(tmp_path, chunk):
    path, c2s, s2c = _interleaved(tmp_path)
    full, _ = _scan(path, Keeper, chunk)
    Keeper.made.clear()
    skipping, _ = _scan(path, Skipper, chunk)
    (d,) = Keeper.made
    assert full == skipping  # stream statistics unchanged
    assert d.pos == [len(c2s), len(s2c)] and not d.gaps
    for direction, offset, data in d.fed:  # every fed byte is the right one
        sent = c2s if direction == 0 else s2c
        assert data == sent[offset : offset + len(data)]
    fed_s2c = sum(len(x) for di, _, x in d.fed if di == 1)
    assert fed_s2c + d.skipped == len(s2c)
    assert d.skipped >= 50_000 and fed_s2c >= 60_000  # the second 60 KB were fed
