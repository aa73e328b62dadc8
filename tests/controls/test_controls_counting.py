"""Many HL7 messages: each is counted, evidence stops at MAX_EVIDENCE (rules.Collector)."""

from __future__ import annotations

from medsentry.controls.model import MAX_EVIDENCE
from medsentry.controls.rules import Collector
from medsentry.events.base import Endpoints
from medsentry.events.hl7 import Hl7Message


def _msg(i: int, client: str, phi: bool) -> Hl7Message:
    ep = Endpoints(
        client=client, server="10.10.0.5", client_port=40000 + i, server_port=2575,
        server_mac="00:0c:29:00:00:05",
    )  # fmt: skip
    return Hl7Message(
        ts_ns=1_000 + (37 * i) % 50,  # times out of order
        flow_id=f"f{i % 3}",
        endpoints=ep,
        direction=0,
        field_separator="|",
        encoding_characters="^~\\&",
        message_type="ORU",
        trigger_event="R01",
        phi_segments=["PID"] if phi else [],
    )


def test_every_message_counts_and_evidence_stops_at_the_limit() -> None:
    col = Collector(b"k" * 32)
    events = [_msg(i, f"10.20.0.{1 + i % 70}", phi=i % 2 == 0) for i in range(100)]
    col.feed(events)
    clear = col.candidates[("cleartext-medical-protocol", "10.10.0.5", "hl7-mllp tcp/2575")]
    phi = col.candidates[("phi-cleartext", "10.10.0.5", "hl7-mllp tcp/2575")]
    assert clear.count == 100 and phi.count == 50
    assert len(clear.evidence) == MAX_EVIDENCE and len(phi.evidence) == MAX_EVIDENCE
    assert clear.first_ns == min(e.ts_ns for e in events)
    assert clear.last_ns == max(e.ts_ns for e in events)
    assert phi.first_ns == min(e.ts_ns for e in events if e.phi_segments)
    assert len(clear.peers) == 64 and len(phi.peers) == 35  # peers capped at 64
    assert clear.mac == "00:0c:29:00:00:05"
