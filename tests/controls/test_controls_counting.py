"""Many HL7 messages: each is counted, evidence stops at MAX_EVIDENCE (rules.Collector)."""

from __future__ import annotations

from medsentry.controls.model import MAX_EVIDENCE
from medsentry.controls.rules import Collector
from medsentry.events.base import Endpoints
from medsentry.events.hl7 import Hl7Message


def _msg(i: int, client: str, phi: bool) -> Hl7Message:
    ep = Endpoints(
        client=client,
        server="10.10.0.5",
        client_port=40000 + i,
        server_port=2575,
        server_mac="00:0c:29:00:00:05",
    )
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


def test_dicom_any_ae_detail_counts_every_calling_ae_title() -> None:
    """The detail said the count at the threshold (5) however many more AE titles followed."""
    from medsentry.events.dicom import DicomAssociateAccept

    col = Collector(b"k" * 32)
    ep = Endpoints(client="10.20.0.9", server="10.10.0.7", client_port=40000, server_port=104)
    col.feed(
        [
            DicomAssociateAccept(
                ts_ns=1_000 + i,
                flow_id=f"d{i}",
                endpoints=ep,
                calling_ae=f"MODALITY{i}",
                called_ae="ARCHIVE",
            )
            for i in range(8)
        ]
    )
    c = col.candidates[("dicom-any-ae", "10.10.0.7", "dicom tcp/104")]
    assert c.detail == "DICOM SCP 'ARCHIVE' accepted 8 distinct calling AE titles"
    assert c.count == 4  # the associations from the fifth title on


def test_one_http_basic_request_is_one_occurrence() -> None:
    """The HttpRequest and the CleartextCredentials of one request counted it twice."""
    from medsentry.events.credentials import CleartextCredentials
    from medsentry.events.http import HttpRequest

    col = Collector(b"k" * 32)
    ep = Endpoints(client="10.20.0.9", server="10.10.0.8", client_port=40000, server_port=80)
    col.feed(
        [
            HttpRequest(
                ts_ns=1, flow_id="h", endpoints=ep, method="GET", path="/", auth_scheme="Basic"
            ),
            CleartextCredentials(
                ts_ns=1,
                flow_id="h",
                endpoints=ep,
                protocol="http",
                mechanism="basic",
                username_hash="u",
                password_sent=True,
            ),
        ]
    )
    assert col.candidates[("http-basic-cleartext", "10.10.0.8", "tcp/80")].count == 1
    assert any(k[0] == "cleartext-credentials" for k in col.candidates)  # still its own
