"""HL7 v2 over MLLP, byte level: messages built by hl7apy, checked against hl7apy's parser."""

from __future__ import annotations

import random

import pytest
from hl7_build import (
    CR,
    FS,
    MARKED,
    MARKED_ACK,
    PHI,
    VITALS,
    VT,
    ack,
    adt_a01,
    adt_custom_delimiters,
    flow_context,
    mllp,
    oru_r01,
    pdq_query,
    pdq_response,
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


def cid(control_id: str) -> str:
    """MSH-10 / MSA-2 as reported: the flow's keyed hash."""
    return flow_context().phi_hash(control_id)


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
    assert m.control_id_hash == cid(ref.msh.msh_10.value) == cid("CTRL0001")
    assert m.processing_id == "P" and m.version == ref.msh.msh_12.value == "2.5"
    assert m.security_present
    assert m.segment_counts == {"MSH": 1, "EVN": 1, "PID": 1, "NK1": 1, "PV1": 1}
    assert m.phi_segments == ["NK1", "PID", "PV1"]
    assert m.direction == 0 and m.size == len(adt.encode())
    assert a.ack_code == "AE" and a.ack_control_id_hash == m.control_id_hash and a.direction == 1
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
    expected[-1] = ("#" + cid("X-LOCAL"), "L", None, None)  # a local code: keyed, like an id
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
    assert m.control_id_hash == cid("C%1")  # MSH-10 unescaped, then hashed
    assert (m.message_type, m.trigger_event) == ("ADT", "A04") and m.processing_id == "D"
    assert "Quimby" not in encode_json(m).decode()


def test_coded_fields_are_reported_only_as_codes() -> None:
    """Free text in coded fields (units, coding systems, control ids, MSA-1, namespaces) never
    leaves the dissector; codes of their tables do."""
    d = Hl7MllpDissector(flow_context())
    (m,) = d.feed(0, mllp(MARKED), 1)
    (a,) = d.feed(1, mllp(MARKED_ACK), 2)
    assert m.sending_application == "SENDAPP^(non-standard)"  # HD-2 is no OID
    assert m.character_set == "(non-standard)" and m.version == "2.5.1"
    assert m.control_id_hash == cid("QX998877-CTRL") == a.ack_control_id_hash
    assert a.ack_code == "(non-standard)" and a.message_type == "ACK"
    hr, text, spo2 = m.observations
    # OBX-6.1 is no unit code; the implausible value is still flagged (units by OBX-6.2)
    assert (hr.code, hr.coding_system, hr.units, hr.plausible) == ("8867-4", "LN", "/min", False)
    assert text.code == "#" + cid("ZZQXOBXCODE QX998877")
    assert (text.coding_system, text.units) == ("(non-standard)", "(non-standard unit)")
    assert (spo2.code, spo2.units, spo2.plausible) == ("150456", "262688", True)
    devices = {(x.field, x.namespace_id, x.universal_id, x.universal_id_type) for x in m.devices}
    assert devices == {
        ("OBX-18", "(non-standard)", "1.2.3", "ISO"),
        ("OBX-18", "PHILIPS", "mon.example.org", "DNS"),
        ("PRT-10", "ACME", "(non-standard)", "ISO"),
    }
    text = encode_json(m).decode() + encode_json(a).decode()
    assert "QX99" not in text and "ZZQX" not in text


def test_unit_codes() -> None:
    from medsentry.protocols.hl7.values import is_ucum, unit

    for code in ("/min", "mm[Hg]", "Cel", "%", "kPa", "mL/h", "ug/kg/min", "10*9/L", "[degF]"):
        assert is_ucum(code), code
    for text in ("ZZQXLIVEUNIT", "Quimby", "{Quimby}/min", "mg per dl", "12345", ""):
        assert not is_ucum(text), text
    assert unit("264864", "MDC_DIM_BEAT_PER_MIN", "MDC") == "264864"
    assert unit("300000", "", "") == "(non-standard unit)"  # a number not named an MDC unit
    assert unit("{beats}/min", "", "") == "{beats}/min"  # a unit of the vital-sign limits
    assert unit("", "", "") is None


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
    whole = [
        e.control_id_hash for e in messages(Hl7MllpDissector(flow_context()).feed(0, stream, 1))
    ]
    assert whole == [cid("A"), cid("B"), cid("C")]
    for seed in range(10):
        rng = random.Random(seed)
        d = Hl7MllpDissector(flow_context())
        got, pos = [], 0
        while pos < len(stream):
            n = rng.randint(1, 40)
            got += [e.control_id_hash for e in messages(d.feed(0, stream[pos : pos + n], pos))]
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
    assert [m.control_id_hash for m in messages(ev)] == [cid("KEPT"), cid("ACKX")]
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
    assert m.truncated and m.control_id_hash == cid("BIG") and m.size == len(payload)


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
    assert [m.control_id_hash for m in messages(ev)] == [cid("B")]


def test_events_round_trip_through_json() -> None:
    d = Hl7MllpDissector(flow_context())
    events = d.feed(0, mllp(oru_r01()) + mllp(adt_a01()), 1) + d.close(2)
    assert len(events) == 3
    for ev in events:
        assert decode_json(encode_json(ev)) == ev


def test_a_long_flow_reports_each_message_with_its_own_header() -> None:
    # the dissector keeps per-flow templates of header fields and a memo of keyed hashes:
    # messages of mixed kinds, versions and delimiters, in both directions, each keep theirs
    stream = [
        (0, adt_a01("C1"), ("|", "ADT", "A01", "2.5", None, cid("C1"), None)),
        (1, ack("C1"), ("|", "ACK", "A01", "2.5", "AA", cid("ACKC1"), cid("C1"))),
        (0, adt_a01("C2", version="2.3"), ("|", "ADT", "A01", "2.3", None, cid("C2"), None)),
        (1, ack("C2", "AE", "2.3"), ("|", "ACK", "A01", "2.3", "AE", cid("ACKC2"), cid("C2"))),
        (0, adt_custom_delimiters(), ("#", "ADT", "A04", "2.5", None, cid("C%1"), None)),
        (0, adt_a01("C1"), ("|", "ADT", "A01", "2.5", None, cid("C1"), None)),
        (1, ack("C9", "CR"), ("|", "ACK", "A01", "2.5", "CR", cid("ACKC9"), cid("C9"))),
    ]
    d = Hl7MllpDissector(flow_context())
    for i, (direction, text, expected) in enumerate(stream):
        (m,) = messages(d.feed(direction, mllp(text), i))
        assert m == messages(Hl7MllpDissector(flow_context()).feed(direction, mllp(text), i))[0]
        assert (m.direction, m.field_separator, m.message_type, m.trigger_event, m.version) == (
            direction,
            *expected[:4],
        )
        assert (m.ack_code, m.control_id_hash, m.ack_control_id_hash) == expected[4:]


def test_knowledge_files_are_loaded() -> None:
    from medsentry.protocols.hl7.knowledge import phi_segments, vital_limits

    assert {"PID", "NK1", "PV1", "IN1", "GT1"} <= phi_segments()
    limit = vital_limits().find("150456", "MDC", None)
    assert limit is not None and limit.high == 100
    assert vital_limits().find("x", "L", "MDC_PULS_OXIM_SAT_O2") is limit


def test_query_and_local_segments_are_phi() -> None:
    """IHE PDQ: the query's QPD names the patient; the answer adds a Z segment and a ROL."""
    d = Hl7MllpDissector(flow_context())
    (q,) = d.feed(0, mllp(pdq_query()), 1)
    (r,) = d.feed(1, mllp(pdq_response()), 2)
    assert (q.message_type, q.trigger_event) == ("QBP", "Q22") and q.phi_segments == ["QPD"]
    assert r.ack_code == "AA" and r.phi_segments == ["QPD", "ROL", "ZPI"]
    assert not any(v in encode_json(q).decode() + encode_json(r).decode() for v in PHI)
    v23 = "MSH|^~\\&|A|B|C|D|20260101||QRY^A19|Q9|P|2.3\rQRD|20260101|R|I|Q9|||1^RD|X^Y|DEM\r"
    (old,) = d.feed(0, mllp(v23), 3)
    assert old.phi_segments == ["QRD"]


def test_phi_segment_knowledge() -> None:
    from medsentry.protocols.hl7.knowledge import is_phi_segment

    for seg in ("PID", "PD1", "NK1", "MRG", "IN1", "IN2", "GT1", "ACC", "DG1", "QPD", "QRD"):
        assert is_phi_segment(seg), seg
    assert is_phi_segment("ROL") and is_phi_segment("ZPI") and is_phi_segment("Z01")
    for seg in ("MSH", "MSA", "EVN", "QAK", "RCP", "ERR", "BHS"):
        assert not is_phi_segment(seg), seg


def test_silent_flow_has_no_session_summary() -> None:
    assert Hl7MllpDissector(flow_context()).close(1) == []


def test_a_unit_of_non_ascii_digits_is_not_a_unit_code() -> None:
    """'²' is a digit to str.isdigit() but not to int(): OBX-6 '264864²' with system MDC
    raised ValueError (found by test_protocols_fuzz_seeded)."""
    from medsentry.protocols.hl7 import values

    assert values.unit("264864²", "MDC_DIM_BEAT_PER_MIN", "MDC") == "MDC_DIM_BEAT_PER_MIN"
    assert values.unit("264864²", "", "MDC") == values.NON_STANDARD_UNIT
    assert values.unit("264864", "", "MDC") == "264864"
