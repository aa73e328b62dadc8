"""HL7 v2 over MLLP, byte level: messages built by hl7apy, checked against hl7apy's parser."""

from __future__ import annotations

import random

import pytest
from hl7_build import (
    CR,
    FS,
    PHI,
    VITALS,
    VT,
    ack,
    adt_a01,
    adt_custom_delimiters,
    flow_context,
    mllp,
    oru_r01,
)
from hl7apy.parser import parse_message

from medsentry.events import decode_json, encode_json
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.hl7 import Hl7Message, Hl7MllpSession
from medsentry.protocols.base import ParseError
from medsentry.protocols.hl7 import Hl7MllpDissector
from medsentry.protocols.hl7.message import Delimiters, unescape
from medsentry.protocols.hl7.mllp import MAX_FRAME, MllpFramer
from medsentry.protocols.registry import stream_dissector


def messages(events: list) -> list[Hl7Message]:
    return [e for e in events if isinstance(e, Hl7Message)]


def test_registered() -> None:
    assert stream_dissector("hl7-mllp") is Hl7MllpDissector


def test_adt_and_ack_match_hl7apy() -> None:
    d = Hl7MllpDissector(flow_context())
    adt, reply = adt_a01("CTRL0001", security="s3cr3t-token"), ack("CTRL0001", "AE")
    m, cred = d.feed(0, mllp(adt), 1)
    (a,) = d.feed(1, mllp(reply), 2)
    assert isinstance(cred, CleartextCredentials)
    assert (cred.protocol, cred.mechanism, cred.password_sent) == (
        "hl7-mllp",
        "msh-8-security",
        True,
    )
    assert "s3cr3t" not in encode_json(cred).decode()
    assert len(d.feed(0, mllp(adt), 3)) == 1  # reported once per flow
    ref = parse_message(adt)
    assert m.field_separator == "|" and m.encoding_characters == "^~\\&"
    assert m.sending_application == ref.msh.msh_3.to_er7() == "ADT_SENDER^1.2.3.4^ISO"
    assert m.sending_facility == ref.msh.msh_4.to_er7()
    assert m.receiving_application == ref.msh.msh_5.to_er7()
    assert m.receiving_facility == ref.msh.msh_6.to_er7()
    assert (m.message_type, m.trigger_event, m.message_structure) == (
        ref.msh.msh_9.msh_9_1.value,
        ref.msh.msh_9.msh_9_2.value,
        ref.msh.msh_9.msh_9_3.value,
    )
    assert m.control_id == ref.msh.msh_10.value == "CTRL0001"
    assert m.processing_id == "P" and m.version == ref.msh.msh_12.value == "2.5"
    assert m.security_present
    assert m.segment_counts == {"MSH": 1, "EVN": 1, "PID": 1, "NK1": 1, "PV1": 1}
    assert m.phi_segments == ["NK1", "PID", "PV1"]
    assert m.direction == 0 and m.size == len(adt.encode())
    assert a.ack_code == "AE" and a.ack_control_id == "CTRL0001" and a.direction == 1
    assert a.message_type == "ACK" and a.phi_segments == []
    for ev in (m, a):
        text = encode_json(ev).decode()
        assert not any(v in text for v in PHI) and "s3cr3t" not in text


def test_devices_observations_and_plausibility() -> None:
    d = Hl7MllpDissector(flow_context())
    (m,) = d.feed(0, mllp(oru_r01()), 1)
    assert m.version == "2.8.2" and m.processing_id == "T" and m.trigger_event == "R01"
    devices = [(x.field, x.entity_identifier, x.namespace_id, x.universal_id) for x in m.devices]
    assert len(devices) == len(set(devices)) == 4  # repeated identifiers are reported once
    assert set(devices) == {
        ("OBX-18", "MON-0042", "ACME", "1.2.840.99999.1"),
        ("PRT-10", "DEV-9", "ACME", None),
        ("PRT-16", "(01)00812345678901", None, "2.16.840.1.113883.3.3719"),
        ("PRT-20", "SN-998877", None, None),
    }
    obs = [(o.code, o.coding_system, o.units, o.plausible) for o in m.observations]
    expected = [
        (c.split("^")[0], c.split("^")[2], u.split("^")[0] if u else None, p)
        for c, _, u, p in VITALS
    ]
    assert obs[: len(VITALS)] == expected
    assert obs[-1] == ("149530", "MDC", None, None)
    assert all(o.value_type == "NM" for o in m.observations[: len(VITALS)])
    text = encode_json(m).decode()
    assert "612" not in text and '"97"' not in text and "36.8" not in text  # no values
    assert not any(v in text for v in PHI)


def test_declared_delimiters_and_escapes() -> None:
    d = Hl7MllpDissector(flow_context())
    raw = adt_custom_delimiters()
    (m,) = d.feed(0, mllp(raw), 1)
    ref = parse_message(raw)
    assert m.field_separator == "#" and m.encoding_characters == "$*!%"
    assert m.sending_application == "PAS^1.2.3^ISO"  # components re-joined with '^'
    assert ref.msh.msh_3.msh_3_1.value == "PAS" and ref.msh.msh_3.msh_3_2.value == "1.2.3"
    assert m.sending_facility == "WARD#7"
    assert m.receiving_application == "LAB$X"
    assert m.receiving_facility == "CORE!LAB"
    assert m.control_id == "C%1"
    assert (m.message_type, m.trigger_event) == ("ADT", "A04") and m.processing_id == "D"
    assert "Quimby" not in encode_json(m).decode()


def test_unescape_hex_and_formatting() -> None:
    d = Delimiters("|", "^", "~", "\\", "&")
    assert unescape(r"A\X41\B\.br\C\H\D\N\E", d) == "AAB" + "C" + "D" + "E"
    assert unescape(r"\F\\S\\T\\R\\E\\Q\ ", d) == "|^&~\\\\Q\\ "


def test_stream_splits_several_messages_and_junk() -> None:
    stream = (
        b"\r\n"  # junk before the first frame
        + mllp(adt_a01("A"))
        + mllp(adt_a01("B"))
        + b"garbage"
        + mllp(adt_a01("C"))
    )
    whole = [e.control_id for e in messages(Hl7MllpDissector(flow_context()).feed(0, stream, 1))]
    assert whole == ["A", "B", "C"]
    for seed in range(10):
        rng = random.Random(seed)
        d = Hl7MllpDissector(flow_context())
        got, pos = [], 0
        while pos < len(stream):
            n = rng.randint(1, 40)
            got += [e.control_id for e in messages(d.feed(0, stream[pos : pos + n], pos))]
            pos += n
        assert got == whole
        (summary,) = d.close(9)
        assert isinstance(summary, Hl7MllpSession)
        assert summary.frames_c2s == 3 and summary.junk_bytes == 2 + len(b"garbage")


def test_cut_frame_and_fs_split_from_cr() -> None:
    # a frame cut by a new start block is counted; <FS> and <CR> in different segments
    d = Hl7MllpDissector(flow_context())
    first = VT + adt_a01("LOST").encode()[:50]
    ev = d.feed(0, first + mllp(adt_a01("KEPT"))[:-1], 1) + d.feed(0, CR + mllp(ack("X")), 2)
    assert [m.control_id for m in messages(ev)] == ["KEPT", "ACKX"]
    (summary,) = d.close(3)
    assert summary.unterminated_frames == 1 and summary.junk_bytes == 0


def test_frame_size_is_bounded() -> None:
    framer = MllpFramer(max_frame=1024)
    big = VT + b"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5\rOBX|1|ED|" + b"x" * 100_000 + FS + CR
    frames = []
    for i in range(0, len(big), 4096):
        frames += framer.feed(big[i : i + 4096])
        assert len(framer._buf) <= 1024
    (frame,) = frames
    assert frame.truncated and frame.size == len(big) - 3 and len(frame.payload) == 1024
    assert MAX_FRAME >= 64 * 1024


def test_truncated_message_still_reports_header() -> None:
    d = Hl7MllpDissector(flow_context())
    payload = adt_a01("BIG") + "\rOBX|1|ED|PDF^Report^L||" + "A" * (MAX_FRAME + 10)
    (m,) = messages(d.feed(0, mllp(payload), 1))
    assert m.truncated and m.control_id == "BIG" and m.size == len(payload)


def test_invalid_frames_are_counted_not_reported() -> None:
    d = Hl7MllpDissector(flow_context())
    assert d.feed(0, mllp(b"not hl7 at all") + mllp(b"MSHx") + mllp(b""), 1) == []
    assert d.close(2)[0].invalid_frames == 3


def test_not_mllp_is_a_parse_error() -> None:
    d = Hl7MllpDissector(flow_context())
    with pytest.raises(ParseError, match="no start block"):
        d.feed(0, b"GET / HTTP/1.1\r\n" * 400, 1)


def test_gap_drops_the_frame_in_progress() -> None:
    d = Hl7MllpDissector(flow_context())
    data = mllp(adt_a01("A"))
    assert d.feed(0, data[:100], 1) == []
    d.gap(0, 50, 2)
    ev = d.feed(0, data[150:] + mllp(adt_a01("B")), 3)
    assert [m.control_id for m in messages(ev)] == ["B"]


def test_events_round_trip_through_json() -> None:
    d = Hl7MllpDissector(flow_context())
    events = d.feed(0, mllp(oru_r01()) + mllp(adt_a01()), 1) + d.close(2)
    assert len(events) == 3
    for ev in events:
        assert decode_json(encode_json(ev)) == ev


def test_knowledge_files_are_loaded() -> None:
    from medsentry.protocols.hl7.knowledge import phi_segments, vital_limits

    assert {"PID", "NK1", "PV1", "IN1", "GT1"} <= phi_segments()
    limit = vital_limits().find("150456", "MDC", None)
    assert limit is not None and limit.high == 100
    assert vital_limits().find("x", "L", "MDC_PULS_OXIM_SAT_O2") is limit


def test_silent_flow_has_no_session_summary() -> None:
    assert Hl7MllpDissector(flow_context()).close(1) == []
