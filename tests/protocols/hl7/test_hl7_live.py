"""Real HL7 v2 over MLLP on loopback (python sockets, hl7apy messages and ACKs), captured with
tcpdump, scanned with the real pipeline; checked against hl7apy and tshark. Also nDPI's real
ADT^A01 capture."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hl7_build import FS, PHI, VT, adt_a01, adt_custom_delimiters, flow_context, mllp, oru_r01
from hl7apy.core import Message
from hl7apy.parser import parse_message
from loopcap import all_json, capture_lo, free_port, scan, tshark_fields

from medsentry.events.flow import ProtocolDetected
from medsentry.events.hl7 import Hl7Message, Hl7MllpSession

pytestmark = pytest.mark.slow


def phi_hash(value: str) -> str:
    """MSH-10 / MSA-2 as reported: keyed with the scan's key (loopcap.KEY)."""
    return flow_context().phi_hash(value)


class MllpServer(threading.Thread):
    """A small HL7 receiver: reads MLLP frames, parses each with hl7apy, answers an ACK."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", port))
        self.received = bytearray()
        self.control_ids: list[str] = []

    def run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                self.received += data
                buf += data
                while FS + b"\r" in buf:
                    frame, buf = buf.split(FS + b"\r", 1)
                    msg = parse_message(frame[frame.index(VT) + 1 :].decode())
                    control_id = msg.msh.msh_10.value
                    self.control_ids.append(control_id)
                    reply = Message("ACK", version="2.5")
                    reply.msh.msh_3 = "RIS"
                    reply.msh.msh_9 = "ACK^A01^ACK"
                    reply.msh.msh_10 = "ACK-" + control_id
                    reply.msh.msh_11 = "P"
                    reply.msa.msa_1 = "AA"
                    reply.msa.msa_2 = control_id
                    conn.sendall(mllp(reply.to_er7()))
        self.sock.close()


def test_mllp_client_server_on_loopback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = MllpServer(port)
    server.start()
    messages = [adt_a01("LIVE-1"), oru_r01(), adt_custom_delimiters(), adt_a01("LIVE-4")]
    wire = [mllp(m) for m in messages]
    sent = b""
    with capture_lo(tmp_path / "hl7.pcap", [port]) as pcap:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # first message split over three segments, then two messages in one segment
            for part in (wire[0][:7], wire[0][7:100], wire[0][100:], wire[1] + wire[2], wire[3]):
                client.sendall(part)
                sent += part
                time.sleep(0.05)
            client.shutdown(socket.SHUT_WR)
            while client.recv(65536):
                pass
        server.join(10)
    assert bytes(server.received) == sent  # the server got exactly the bytes sent
    # hl7apy keeps escapes as sent: "C!T!1" is "C%1" with '!' as escape, '%' as subcomponent
    assert server.control_ids == ["LIVE-1", "VITALS-77", "C!T!1", "LIVE-4"]

    caplog.set_level(logging.DEBUG)
    events = scan(pcap)
    (proto,) = [e for e in events if isinstance(e, ProtocolDetected)]
    assert proto.protocol == "hl7-mllp"
    msgs = [e for e in events if isinstance(e, Hl7Message)]
    requests = [m for m in msgs if m.direction == 0]
    acks = [m for m in msgs if m.direction == 1]
    sent_ids = ["LIVE-1", "VITALS-77", "C%1", "LIVE-4"]
    assert [m.control_id_hash for m in requests] == [phi_hash(c) for c in sent_ids]
    for got, raw in zip(requests, messages, strict=True):
        ref = parse_message(raw)
        assert got.message_type == ref.msh.msh_9.msh_9_1.value
        assert got.trigger_event == ref.msh.msh_9.msh_9_2.value
        assert got.version == ref.msh.msh_12.value
        assert got.field_separator == raw[3]
    assert requests[2].field_separator == "#" and requests[2].encoding_characters == "$*!%"
    assert requests[1].observations and requests[1].devices
    assert [(a.ack_code, a.ack_control_id_hash) for a in acks] == [
        ("AA", phi_hash(c)) for c in server.control_ids
    ]
    (session,) = [e for e in events if isinstance(e, Hl7MllpSession)]
    assert (session.frames_c2s, session.frames_s2c, session.junk_bytes) == (4, 4, 0)
    text = all_json(events) + caplog.text  # events and every log line of the scan
    assert not any(v in text for v in PHI)

    # tshark's HL7 dissector on the same capture sees the same message types and events
    rows = tshark_fields(
        pcap, f"tcp.port=={port},hl7", ["hl7.message.type", "hl7.event.type"], "hl7"
    )
    theirs = [(t, e) for r in rows for t, e in zip(r[0].split("|"), r[1].split("|"), strict=True)]
    ours = [(m.message_type, m.trigger_event) for m in sorted(msgs, key=lambda m: m.ts_ns)]
    assert sorted(theirs) == sorted(ours)


def _payloads(pcap: Path) -> dict[int, bytes]:
    """Each direction's TCP payload, in capture order, keyed by source port (via tshark)."""
    rows = subprocess.run(
        [
            *("tshark", "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields"),
            *("-e", "tcp.srcport", "-e", "tcp.payload"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    out: dict[int, bytes] = {}
    for row in filter(None, rows):
        port, payload = row.split("\t")
        out[int(port)] = out.get(int(port), b"") + bytes.fromhex(payload)
    return out


def test_ndpi_adt_a01_capture_matches_hl7apy(ndpi_pcaps: Path) -> None:
    pcap = ndpi_pcaps / "hl7.pcap"
    if not pcap.exists():
        pytest.skip(f"{pcap} is absent")
    events = scan(pcap)
    msgs = [e for e in events if isinstance(e, Hl7Message)]
    assert len(msgs) == 2
    raw_by_port = _payloads(pcap)
    for m in msgs:
        port = m.endpoints.client_port if m.direction == 0 else m.endpoints.server_port
        raw = raw_by_port[port]
        text = raw[raw.index(VT) + 1 : raw.index(FS)].decode()
        ref = parse_message(text, find_groups=False)
        msh = ref.msh
        assert m.sending_application == msh.msh_3.to_er7()
        assert m.sending_facility == msh.msh_4.to_er7()
        assert m.receiving_application == msh.msh_5.to_er7()
        assert m.receiving_facility == msh.msh_6.to_er7()
        assert m.message_type == msh.msh_9.msh_9_1.value
        assert m.trigger_event == (msh.msh_9.msh_9_2.value or None)
        assert m.control_id_hash == phi_hash(msh.msh_10.value)
        assert m.processing_id == msh.msh_11.to_er7()
        assert m.version == msh.msh_12.to_er7()
        counts: dict[str, int] = {}
        for seg in ref.children:
            counts[seg.name] = counts.get(seg.name, 0) + 1
        assert m.segment_counts == counts
        if m.message_type == "ACK":
            assert m.ack_code == ref.msa.msa_1.value == "AA"
            assert m.ack_control_id_hash == phi_hash(ref.msa.msa_2.value)
    # tshark's HL7 dissector on the same capture: message type, trigger event, segments
    port = msgs[0].endpoints.server_port
    rows = tshark_fields(
        pcap, f"tcp.port=={port},hl7", ["hl7.message.type", "hl7.event.type", "hl7.segment"], "hl7"
    )
    theirs = []
    for mtype, event, segments in rows:
        counts: dict[str, int] = {}
        # the aggregator "|" is also HL7's field separator: tshark ends each segment with "\r"
        for seg in segments.removesuffix("\\r").split("\\r|"):
            counts[seg[:3]] = counts.get(seg[:3], 0) + 1
        theirs.append((mtype, event or None, counts))
    ours = [(m.message_type, m.trigger_event, m.segment_counts) for m in msgs]
    assert sorted(ours, key=repr) == sorted(theirs, key=repr)
    adt = next(m for m in msgs if m.message_type == "ADT")
    assert adt.trigger_event == "A01" and {"PID", "NK1", "PV1"} <= set(adt.phi_segments)
    # the capture's patient values never reach an event
    adt_raw = raw_by_port[adt.endpoints.client_port].decode("latin-1")
    pid = next(s for s in adt_raw.split("\r") if s.startswith("PID"))
    name = pid.split("|")[5].split("^")[0]
    assert name and name not in all_json(events)
