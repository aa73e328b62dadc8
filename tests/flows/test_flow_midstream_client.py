"""A TCP connection seen from its middle between two ports of one class gets its client from its
payload: captures written as real pcap files (medsentry.capture.writer's TCP sessions) with
real HTTP and HL7 bytes, scanned with the real identifier and the registry's dissectors.

No SYN and no port class says which side serves, so the flow table takes the first sender as
client for now; identification turns the flow round when its bytes show the sides the other way
(an HTTP request line in the guessed server's stream, RFC 9112 §3; an HL7 acknowledgment,
HL7 v2.5.1 §2.14.8 MSA, from the guessed client). A flow oriented by its SYN or by its ports
keeps that orientation whatever its payload shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_apps_common import T0, C, S, needs_identify

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture
from medsentry.capture.writer import CLIENT, SERVER, FrameLog, TcpSession
from medsentry.events.base import Event
from medsentry.events.flow import FlowRecord, ProtocolDetected
from medsentry.events.hl7 import Hl7Message
from medsentry.events.http import HttpRequest, HttpResponse
from medsentry.flows.apps import load_identifier
from medsentry.flows.engine import EngineConfig, FlowEngine

GET_1 = b"GET /first HTTP/1.1\r\nHost: ehr\r\n\r\n"
GET_2 = b"GET /second/page HTTP/1.1\r\nHost: ehr\r\nUser-Agent: monitor/2\r\n\r\n"
OK_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
# HL7 v2.5 ADT^A01 and its acknowledgment (MSH-9 ACK, MSA-1 AA, MSA-2 the control id)
ADT = (
    b"\x0bMSH|^~\\&|ADT_SENDER|GENERAL_HOSPITAL|RIS|RADIOLOGY|20240101120000||ADT^A01^ADT_A01"
    b"|CTRL0001|P|2.5\rEVN|A01|20240101120000\rPV1|1|I\r\x1c\r"
)
ACK = (
    b"\x0bMSH|^~\\&|RIS|RADIOLOGY|ADT_SENDER|GENERAL_HOSPITAL|20240101120001||ACK^A01^ACK"
    b"|ACKCTRL0001|P|2.5\rMSA|AA|CTRL0001\r\x1c\r"
)


def scan(tmp_path: Path, frames: list[tuple[int, bytes]], chunk: int = 1 << 20) -> list[Event]:
    path = tmp_path / "mid.pcap"
    log = FrameLog(frames)
    log.write(path)
    eng = FlowEngine(EngineConfig(phi_key=b"test-key"), identify=load_identifier())
    events: list[Event] = []
    with open_capture(path, chunk_bytes=chunk) as reader:
        for raw in reader:
            events += eng.process(decode(raw))
    return events + eng.finish()


def one(events: list[Event], cls: type) -> object:
    got = [e for e in events if isinstance(e, cls)]
    assert len(got) == 1, got
    return got[0]


def payload_len(frame: bytes) -> int:
    """TCP payload bytes of an Ethernet/IPv4/TCP frame (RFC 791 IHL, RFC 9293 data offset)."""
    ihl = (frame[14] & 15) * 4
    return int.from_bytes(frame[16:18], "big") - ihl - (frame[14 + ihl + 12] >> 4) * 4


def ip_of(host: str) -> bytes:
    return bytes(int(x) for x in host.split("."))


def from_first(
    log: FrameLog, sess: TcpSession, direction: int, skip: int = 0
) -> list[tuple[int, bytes]]:
    """The frames from the (skip + 1)th one `direction` sent with payload on (the capture's
    start)."""
    ip = ip_of(sess.hosts[direction].ip)
    sent = [i for i, (_, f) in enumerate(log.frames) if f[26:30] == ip and payload_len(f) > 0]
    return log.frames[sent[skip] :]


def counts(frames: list[tuple[int, bytes]], src: str) -> tuple[int, int, int]:
    """(packets, IP bytes, TCP payload bytes) sent by `src` among `frames`."""
    sent = [f for _, f in frames if f[26:30] == ip_of(src)]
    return (
        len(sent),
        sum(int.from_bytes(f[16:18], "big") for f in sent),
        sum(map(payload_len, sent)),
    )


@needs_identify
@pytest.mark.parametrize("cut", ["at the response", "inside its body"])
def test_http_from_its_middle_starting_with_a_response_is_turned_round(tmp_path, cut):
    # both ports ephemeral (RFC 6335 §6): no port class says which side serves. Inside the
    # body, read in 4 KiB windows: the first window holds only body bytes, so identification
    # waits (the payload is held) until the request comes, then the held bytes turn round too
    body = bytes(range(32, 127)) * 200  # 19 000 bytes
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    log = FrameLog()
    sess = TcpSession(log, C, S, 41000, 50080, isn_client=7000, isn_server=3_000_000)
    t = sess.open(T0)
    t = sess.send(CLIENT, GET_1, t)
    t = sess.send(SERVER, ok, t)
    t = sess.send(CLIENT, GET_2, t)
    t = sess.send(SERVER, MISSING, t)
    sess.close(t)
    frames = from_first(log, sess, SERVER, skip=0 if cut == "at the response" else 3)
    events = scan(tmp_path, frames, 1 << 20 if cut == "at the response" else 4096)

    proto = one(events, ProtocolDetected)
    assert (proto.protocol, proto.method) == ("http", "signature")
    flow = one(events, FlowRecord)
    assert (flow.client, flow.client_port, flow.server, flow.server_port) == (
        C.ip,
        41000,
        S.ip,
        50080,
    )
    assert (flow.client_mac, flow.server_mac) == (C.mac, S.mac)
    assert (flow.packets_c2s, flow.bytes_c2s, flow.payload_c2s) == counts(frames, C.ip)
    assert (flow.packets_s2c, flow.bytes_s2c, flow.payload_s2c) == counts(frames, S.ip)
    assert flow.payload_c2s == len(GET_2)
    request = one(events, HttpRequest)
    assert request.method == "GET" and request.user_agent == "monitor/2"
    assert (request.endpoints.client, request.endpoints.server_port) == (C.ip, 50080)
    responses = [e for e in events if isinstance(e, HttpResponse)]
    if cut == "at the response":  # inside a body, no status line tells where the next is
        assert [r.status for r in responses] == [200, 404]
    assert all(r.endpoints.server == S.ip for r in responses)


@needs_identify
def test_hl7_from_its_middle_starting_with_an_ack_is_turned_round(tmp_path):
    log = FrameLog()
    sess = TcpSession(log, C, S, 45123, 52575, isn_client=1, isn_server=(1 << 32) - 10)
    t = sess.open(T0)
    for _ in range(2):
        t = sess.send(CLIENT, ADT, t)
        t = sess.send(SERVER, ACK, t)
    sess.close(t)
    frames = from_first(log, sess, SERVER)  # starts with the first message's ACK
    events = scan(tmp_path, frames)

    assert one(events, ProtocolDetected).protocol == "hl7-mllp"
    flow = one(events, FlowRecord)
    assert (flow.client, flow.client_port, flow.server_port) == (C.ip, 45123, 52575)
    assert (flow.payload_c2s, flow.payload_s2c) == (len(ADT), 2 * len(ACK))
    assert (flow.packets_c2s, flow.bytes_c2s, flow.payload_c2s) == counts(frames, C.ip)
    msgs = [e for e in events if isinstance(e, Hl7Message)]
    assert [(m.message_type, m.direction) for m in msgs] == [("ACK", 1), ("ADT", 0), ("ACK", 1)]
    assert all(m.endpoints.client == C.ip and m.endpoints.server_port == 52575 for m in msgs)


@needs_identify
def test_a_syn_oriented_flow_keeps_its_client_whatever_its_payload_shows(tmp_path):
    # the side that connected receives HL7 messages and acknowledges them (a device pushing
    # results to the system that connected to it): the SYN says who the client is, not the MSA
    log = FrameLog()
    sess = TcpSession(log, C, S, 45123, 52575, isn_client=1, isn_server=5000)
    t = sess.open(T0)
    t = sess.send(SERVER, ADT, t)
    t = sess.send(CLIENT, ACK, t)
    sess.close(t)
    events = scan(tmp_path, log.frames)

    flow = one(events, FlowRecord)
    assert (flow.client, flow.client_port, flow.server_port) == (C.ip, 45123, 52575)
    assert (flow.payload_c2s, flow.payload_s2c) == (len(ACK), len(ADT))
    msgs = [e for e in events if isinstance(e, Hl7Message)]
    assert [(m.message_type, m.direction) for m in msgs] == [("ADT", 1), ("ACK", 0)]


@needs_identify
def test_a_flow_oriented_by_its_port_classes_keeps_its_client(tmp_path):
    # from its middle, the side on the user port (3000) sends a request to an ephemeral port:
    # the port classes say 3000 serves, and that evidence is kept over the payload's
    log = FrameLog()
    sess = TcpSession(log, S, C, 3000, 50080, isn_client=7000, isn_server=90000)
    t = sess.open(T0)
    t = sess.send(CLIENT, GET_1, t)
    t = sess.send(SERVER, OK_BODY, t)
    t = sess.send(CLIENT, GET_2, t)
    t = sess.send(SERVER, MISSING, t)
    sess.close(t)
    frames = from_first(log, sess, SERVER)
    events = scan(tmp_path, frames)

    flow = one(events, FlowRecord)
    assert (flow.client, flow.client_port, flow.server, flow.server_port) == (
        C.ip,
        50080,
        S.ip,
        3000,
    )
    assert (flow.payload_c2s, flow.payload_s2c) == (len(OK_BODY) + len(MISSING), len(GET_2))
