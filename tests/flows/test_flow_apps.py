"""Reassembled bytes through identification to a dissector: captures written as real pcap files
(medsentry.capture.writer's TCP sessions), read by the capture reader and decode kernel."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from flow_apps_common import (
    HTTP_REQ,
    HTTP_RESP_HEAD,
    T0,
    C,
    Recorder,
    S,
    identify,
    needs_identify,
    scan_file,
)

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture
from medsentry.capture.writer import (
    CLIENT,
    SERVER,
    FrameLog,
    TcpSession,
    udp,
    write_pcap,
)
from medsentry.events.flow import DecodeWarning, FlowRecord, ProtocolDetected
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.protocols.base import ParseError


class FirstBytes(Recorder):
    whole_stream = False


class Exploding(Recorder):
    def feed(self, direction, data, ts_ns):
        super().feed(direction, data, ts_ns)
        if len(self.data[direction]) > 5000:
            raise ParseError("bad PDU length at stream byte 5000")
        return ()


@pytest.fixture(autouse=True)
def _reset():
    Recorder.made.clear()


def scan_log(tmp_path: Path, log: FrameLog, cls=Recorder, chunk=1 << 20, **cfg):
    path = tmp_path / "t.pcap"
    log.write(path)
    return scan_file(path, cls, chunk, **cfg)


def http_session(log, isn_c=1000, isn_s=90000, body=200_000, sport=41000, dport=8080, mss=1460):
    sess = TcpSession(log, C, S, sport, dport, isn_client=isn_c, isn_server=isn_s, mss=mss)
    t = sess.open(T0)
    t = sess.send(CLIENT, HTTP_REQ, t)
    t = sess.send(SERVER, HTTP_RESP_HEAD + os.urandom(body), t)
    sess.close(t)
    return sess


def one(events, cls):
    got = [e for e in events if isinstance(e, cls)]
    assert len(got) == 1, got
    return got[0]


@needs_identify
@pytest.mark.parametrize("isn_s", [90000, (1 << 32) - 3000])  # second: server seq wraps at 2^32
def test_whole_stream_bytes_reach_the_dissector_exactly(tmp_path, isn_s):
    log = FrameLog()
    sess = http_session(log, isn_s=isn_s)
    events, _ = scan_log(tmp_path, log)
    (rec,) = Recorder.made
    assert bytes(rec.data[0]) == bytes(sess.sent[CLIENT])
    assert bytes(rec.data[1]) == bytes(sess.sent[SERVER])
    assert rec.closed and not [i for i in rec.items if isinstance(i[1], tuple)]
    f = one(events, FlowRecord)
    p = one(events, ProtocolDetected)
    assert p.protocol == "http" and p.method == "signature" and p.flow_id == f.flow_id
    assert rec.ctx.flow_id == f.flow_id and rec.ctx.endpoints.client == "10.1.0.5"
    assert rec.ctx.endpoints.server_port == 8080 and rec.ctx.phi_key == b"test-key"
    assert f.app_protocol == "http" and f.app_method == "signature"
    assert f.stream_c2s.bytes_in_order == len(sess.sent[CLIENT])
    assert f.stream_s2c.bytes_in_order == len(sess.sent[SERVER]) and f.stream_s2c.gaps == 0


@needs_identify
def test_small_reader_windows_split_the_stream_over_many_batches(tmp_path):
    log = FrameLog()
    sess = http_session(log, body=50_000, mss=536)
    events, _ = scan_log(tmp_path, log, chunk=4096)
    (rec,) = Recorder.made
    assert bytes(rec.data[1]) == bytes(sess.sent[SERVER])
    assert one(events, FlowRecord).stream_s2c.bytes_in_order == len(sess.sent[SERVER])


@needs_identify
def test_retransmissions_and_reordering_in_the_capture(tmp_path):
    log = FrameLog()
    sess = http_session(log, body=100_000)
    frames = log.frames
    data_idx = [i for i, (_, fr) in enumerate(frames) if len(fr) > 600]
    rng = random.Random(5)
    # swap some neighbouring data segments, duplicate others (with the same timestamps)
    for i in rng.sample(data_idx[5:-5], 10):  # swap the frames, keep the time order
        (ta, fa), (tb, fb) = frames[i], frames[i + 1]
        frames[i], frames[i + 1] = (ta, fb), (tb, fa)
    dups = rng.sample(data_idx[5:-5], 8)
    for i in sorted(dups, reverse=True):
        frames.insert(i + 1, frames[i])
    path = tmp_path / "x.pcap"
    write_pcap(path, frames)
    eng = FlowEngine(
        EngineConfig(phi_key=b"k"), identify=identify, dissector_lookup=lambda p: Recorder
    )
    events = []
    with open_capture(path) as reader:
        for raw in reader:
            events += eng.process(decode(raw))
    events += eng.finish()
    (rec,) = Recorder.made
    assert bytes(rec.data[1]) == bytes(sess.sent[SERVER])
    f = one(events, FlowRecord)
    assert f.stream_s2c.retransmitted_segments >= 8 - 1  # a dup of a swapped one may be ooo
    assert f.stream_s2c.out_of_order_segments >= 1 and f.stream_s2c.gaps == 0


@needs_identify
def test_missing_segment_is_a_gap_of_its_length(tmp_path):
    log = FrameLog()
    sess = http_session(log, body=30_000)
    frames = log.frames
    big = [i for i, (_, fr) in enumerate(frames) if len(fr) > 600]
    lost = big[8]
    lost_len = len(frames[lost][1]) - 54  # Ethernet + IPv4 + TCP headers (no options)
    del frames[lost]
    path = tmp_path / "gap.pcap"
    write_pcap(path, frames)
    eng = FlowEngine(
        EngineConfig(phi_key=b"k"), identify=identify, dissector_lookup=lambda p: Recorder
    )
    events = []
    with open_capture(path) as reader:
        for raw in reader:
            events += eng.process(decode(raw))
    events += eng.finish()
    (rec,) = Recorder.made
    gaps = [i for i in rec.items if isinstance(i[1], tuple)]
    assert gaps == [(1, ("gap", lost_len))]
    sent = bytes(sess.sent[SERVER])
    assert len(rec.data[1]) == len(sent) - lost_len
    f = one(events, FlowRecord)
    assert (f.stream_s2c.gaps, f.stream_s2c.gap_bytes) == (1, lost_len)


@needs_identify
def test_first_bytes_dissector_gets_only_the_first_bytes(tmp_path):
    log = FrameLog()
    sess = http_session(log, body=100_000)
    events, emitted = scan_log(tmp_path, log, cls=FirstBytes, first_bytes=4096)
    (rec,) = Recorder.made
    assert bytes(rec.data[1]) == bytes(sess.sent[SERVER][:4096])
    assert bytes(rec.data[0]) == bytes(sess.sent[CLIENT])
    assert one(events, FlowRecord).stream_s2c is None
    assert emitted <= 8  # the kernel stops selecting after the first 4096 bytes


@needs_identify
def test_unidentified_bulk_flow_costs_python_only_its_first_bytes(tmp_path):
    log = FrameLog()
    sess = TcpSession(log, C, S, 40000, 45000, isn_client=7, isn_server=9)
    t = sess.open(T0)
    t = sess.send(CLIENT, os.urandom(2_000_000), t)
    sess.close(t)
    events, emitted = scan_log(tmp_path, log, first_bytes=4096)
    f = one(events, FlowRecord)
    assert f.payload_c2s == 2_000_000 and f.app_protocol is None
    assert emitted <= 4  # 4096 bytes = 3 segments of 1460
    assert Recorder.made == []


@needs_identify
def test_dissector_error_is_a_warning_and_the_scan_goes_on(tmp_path):
    log = FrameLog()
    http_session(log, body=20_000)
    http_session(log, body=1000, sport=41001)
    events, _ = scan_log(tmp_path, log, cls=Exploding)
    w = [e for e in events if isinstance(e, DecodeWarning)]
    assert len(w) == 1 and "bad PDU length" in w[0].message and "recorder dissector" in w[0].source
    assert len([e for e in events if isinstance(e, FlowRecord)]) == 2
    assert len(Recorder.made) == 2 and Recorder.made[1].closed


@needs_identify
def test_udp_datagrams_reach_a_whole_stream_dissector_in_order(tmp_path):
    log = FrameLog()
    # DNS on port 53: identified, then every datagram goes to the dissector
    msgs = []
    for k in range(20):
        q = (
            bytes.fromhex("1234")
            + k.to_bytes(2, "big")
            + bytes.fromhex("0001000000000000")
            + b"\x03ehr\x04test\x00\x00\x01\x00\x01"
        )
        msgs.append(q)
        log.add(T0 + k * 1000, C.frame(S, 17, udp(C.ip, S.ip, 53000, 53, q)))
    log.write(tmp_path / "u.pcap")
    events, _ = scan_log(tmp_path, log)
    f = one(events, FlowRecord)
    assert f.transport == "udp" and f.app_protocol == "dns"
    (rec,) = Recorder.made
    assert bytes(rec.data[0]) == b"".join(msgs)
    assert [n for _, n in rec.items] == [len(m) for m in msgs]


@needs_identify
@pytest.mark.parametrize("chunk", [1 << 20, 300])
def test_a_flow_ended_by_its_own_key_coming_back_is_dissected(tmp_path, chunk):
    """DHCP and mDNS repeat one address/port pair: the same key after the idle timeout (120 s)
    is a new flow, and ends the old one in the same kernel range. The old flow's datagrams
    still reach its dissector (they were dropped unidentified: the old flow was not live)."""
    log = FrameLog()
    sent = []
    for k in range(6):
        q = (
            k.to_bytes(2, "big")
            + bytes.fromhex("0100000100000000 0000")
            + b"\x03ehr\x04test\x00\x00\x01\x00\x01"
        )
        sent.append(q)
        gap = 200 * 10**9 if k >= 3 else 0  # a 200 s silence before the fourth query
        log.add(T0 + k * 1000 + gap, C.frame(S, 17, udp(C.ip, S.ip, 53000, 53, q)))
    log.write(tmp_path / "u.pcap")
    events, _ = scan_file(tmp_path / "u.pcap", Recorder, chunk=chunk)
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert [f.packets_c2s for f in flows] == [3, 3] and all(f.app_protocol == "dns" for f in flows)
    assert [bytes(r.data[0]) for r in Recorder.made] == [b"".join(sent[:3]), b"".join(sent[3:])]
