"""HL7 v2 batches in one MLLP frame (HL7 v2.5.1 §2.10.3): one event per MSH, plus the batch.

The messages are built by hl7apy; the batch envelope (FHS, BHS, BTS, FTS, §2.14.2-§2.14.7) is
written by hand, since hl7apy escapes BHS-1 and BHS-2 as if they were values.
"""

from __future__ import annotations

from hl7_build import PHI, ack, adt_a01, flow_context, mllp, oru_r01
from hl7apy.parser import parse_message

from medsentry.events import encode_json
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.hl7 import Hl7Batch, Hl7Message
from medsentry.protocols.hl7 import Hl7MllpDissector

BHS = "BHS|^~\\&|BATCH_APP|BATCH_FAC|BATCH_RCV|BATCH_RFAC|20260101123000||||||B-77"
FHS = "FHS|^~\\&|FILE_APP|FILE_FAC|FILE_RCV|FILE_RFAC|20260101123000"


def adt(control_id: str, trigger: str) -> str:
    """An hl7apy ADT message of another trigger event (A01 structure)."""
    return adt_a01(control_id).replace("ADT^A01^ADT_A01", f"ADT^{trigger}^ADT_A01", 1)


def batch(*messages: str, trailer: int | None = None, bhs: str = BHS) -> str:
    body = "".join(m if m.endswith("\r") else m + "\r" for m in messages)
    bts = f"BTS|{len(messages) if trailer is None else trailer}\r"
    return f"{bhs}\r{body}{bts}"


def feed(payload: str) -> list:
    return Hl7MllpDissector(flow_context()).feed(0, mllp(payload), 1)


def test_bhs_batch_reports_every_message() -> None:
    msgs = [adt("B0001", "A01"), adt("B0002", "A03"), oru_r01()]
    for m in msgs:
        parse_message(m)  # each is a valid message on its own
    events = feed(batch(*msgs))
    assert isinstance(events[0], Hl7Batch)
    got = [e for e in events if isinstance(e, Hl7Message)]
    assert [(m.message_type, m.trigger_event) for m in got] == [
        ("ADT", "A01"),
        ("ADT", "A03"),
        ("ORU", "R01"),
    ]
    assert [m.batch_position for m in got] == [1, 2, 3]
    # each message counts its own segments; BHS and BTS belong to the batch
    assert got[0].segment_counts == {"MSH": 1, "EVN": 1, "PID": 1, "NK1": 1, "PV1": 1}
    assert got[2].segment_counts["OBX"] >= 6 and "BTS" not in got[2].segment_counts
    assert got[2].observations and got[2].devices  # OBX and PRT read per message
    assert all("PID" in m.phi_segments for m in got)
    assert sum(m.size for m in got) < events[0].size  # each message's own bytes
    b = events[0]
    assert (b.header, b.sending_application, b.sending_facility) == (
        "BHS",
        "BATCH_APP",
        "BATCH_FAC",
    )
    assert (b.receiving_application, b.receiving_facility) == ("BATCH_RCV", "BATCH_RFAC")
    assert (b.messages, b.declared_messages, b.batches, b.declared_batches) == (3, 3, 1, None)
    text = "".join(encode_json(e).decode() for e in events)
    assert not any(v in text for v in PHI)


def test_file_of_two_batches_and_a_wrong_trailer() -> None:
    payload = (
        FHS
        + "\r"
        + batch(adt("F1", "A01"), adt("F2", "A08"))
        + batch(ack("F1"), trailer=5)  # BTS-1 says 5, one was sent
        + "FTS|2\r"
    )
    events = feed(payload)
    b, *msgs = events
    assert isinstance(b, Hl7Batch) and all(isinstance(m, Hl7Message) for m in msgs)
    assert [m.trigger_event for m in msgs] == ["A01", "A08", "A01"]
    assert msgs[2].message_type == "ACK" and msgs[2].ack_code == "AA"
    # the first BHS is the batch context; the file header only when there is no BHS
    assert b.header == "BHS" and b.sending_application == "BATCH_APP"
    assert (b.messages, b.declared_messages, b.batches, b.declared_batches) == (3, 7, 2, 2)


def test_file_header_without_batch_header() -> None:
    (b, m) = feed(FHS + "\r" + adt_a01("ONLY") + "\rFTS|1\r")
    assert b.header == "FHS" and b.sending_application == "FILE_APP"
    assert b.receiving_facility == "FILE_RFAC" and b.batches == 0
    assert m.batch_position == 1 and m.trigger_event == "A01"


def test_several_messages_without_header() -> None:
    events = feed("\r".join((adt("N1", "A01"), adt("N2", "A02"), ack("N1", "AE"))))
    b, *msgs = events
    assert isinstance(b, Hl7Batch) and b.header is None and b.sending_application is None
    assert (b.messages, b.declared_messages, b.batches) == (3, None, 0)
    assert [(m.trigger_event, m.batch_position) for m in msgs] == [
        ("A01", 1),
        ("A02", 2),
        ("A01", 3),
    ]
    assert msgs[2].ack_code == "AE" and msgs[0].ack_code is None


def test_one_message_is_not_a_batch() -> None:
    (m,) = feed(adt_a01("ALONE"))
    assert isinstance(m, Hl7Message) and m.batch_position == 0


def test_batch_header_security_is_a_credential() -> None:
    secured = BHS.replace("20260101123000||", "20260101123000|b4tch-s3cret|", 1)
    events = feed(batch(adt_a01("S1"), bhs=secured))
    assert isinstance(events[0], Hl7Batch) and events[0].security_present
    (cred,) = [e for e in events if isinstance(e, CleartextCredentials)]
    assert cred.mechanism == "msh-8-security"
    assert "b4tch" not in "".join(encode_json(e).decode() for e in events)
