"""PDU resynchronisation: streams that start inside an association or lose bytes to a gap.

Streams are pynetdicom's own PDU and DIMSE encodings (`dicom_build`) of real data sets.
"""

from __future__ import annotations

import random
import struct

import pydicom
import pytest
from dicom_build import (
    CT_IMAGE_STORAGE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    VERIFICATION,
    abort,
    associate_ac,
    associate_rj,
    associate_rq,
    c_echo_rq,
    c_echo_rsp,
    c_store_rq,
    c_store_rsp,
    flow_context,
    release_rp,
    release_rq,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medsentry.events import encode_json
from medsentry.events.dicom import (
    DicomAbort,
    DicomAssociateAccept,
    DicomAssociateReject,
    DicomAssociateRequest,
    DicomCommand,
    DicomDataset,
    DicomRelease,
    DicomSession,
)
from medsentry.protocols.base import ParseError
from medsentry.protocols.dicom import DicomDissector
from medsentry.protocols.dicom.resync import MAX_RESYNC_PDU_LENGTH, RESYNC_WINDOW, find_pdu
from medsentry.protocols.dicom.stamps import MAX_CHUNKS

PHI = ("Quimby^Zyxwvut", "PID-55501234", "19230405")
UIDS = ("1.2.826.0.1.3680043.8.498.101", "1.2.826.0.1.3680043.8.498.102")
CONTEXTS = [(CT_IMAGE_STORAGE, [EXPLICIT_LE]), (VERIFICATION, [IMPLICIT_LE])]


def _dataset() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI
    return ds


DS = _dataset()
FIRST = c_store_rq(DS, 1, implicit=False, max_pdu=4096, message_id=1, instance_uid=UIDS[0])
REST = (
    c_store_rq(DS, 1, implicit=False, max_pdu=4096, message_id=2, instance_uid=UIDS[1])
    + c_echo_rq(3, message_id=3)
    + c_store_rq(DS, 1, implicit=True, max_pdu=16384, message_id=4, instance_uid=UIDS[1])
    + release_rq()
)
C2S = FIRST + REST
S2C = (
    c_store_rsp(1, 0, 1)
    + c_store_rsp(1, 0, 2)
    + c_echo_rsp(3, 0, 3)
    + c_store_rsp(1, 0, 4)
    + release_rp()
)


def pdu_offsets(stream: bytes) -> list[int]:
    """Where each PDU of a well-formed stream begins (PS3.8 §9.3.1)."""
    out, pos = [], 0
    while pos < len(stream):
        out.append(pos)
        pos += 6 + struct.unpack_from(">I", stream, pos + 2)[0]
    return out


def feed(d: DicomDissector, steps: list[tuple[int, bytes | int]], chunk: int = 1460) -> list:
    events = []
    for i, (direction, item) in enumerate(steps):
        if isinstance(item, int):
            events += d.gap(direction, item, i)
            continue
        for pos in range(0, len(item), chunk):
            events += d.feed(direction, item[pos : pos + chunk], i)
    return events + d.close(99)


def of(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def check_rest(events: list, *, seen_from_middle: bool = True) -> None:
    """The second C-STORE, the C-ECHO and the release, reported whole."""
    key = flow_context().phi_hash
    cmds = {
        (c.command, c.message_id or c.message_id_responded): c for c in of(events, DicomCommand)
    }
    rq = cmds["C-STORE-RQ", 2]
    assert rq.affected_sop_class_uid == CT_IMAGE_STORAGE and rq.sop_class_name == "CT Image Storage"
    assert rq.sop_instance_hash == key(UIDS[1]) and rq.data_set_present
    assert rq.abstract_syntax == CT_IMAGE_STORAGE and rq.seen_from_middle is seen_from_middle
    assert cmds["C-STORE-RSP", 2].status_class == "success"
    assert cmds["C-ECHO-RQ", 3].abstract_syntax == VERIFICATION
    assert cmds["C-ECHO-RSP", 3].status == 0
    (ds2,) = [s for s in of(events, DicomDataset) if s.message_id == 2]
    assert ds2.command == "C-STORE-RQ" and ds2.sop_class_uid == DS.SOPClassUID
    assert ds2.modality == "CT" and ds2.manufacturer == DS.Manufacturer and not ds2.decode_error
    assert "PatientName" in ds2.phi_attributes and ds2.seen_from_middle is seen_from_middle
    (ds4,) = [s for s in of(events, DicomDataset) if s.message_id == 4]  # in implicit VR
    syntaxes = [
        (s.transfer_syntax, s.transfer_syntax_inferred, s.encoding_inferred) for s in (ds2, ds4)
    ]
    if seen_from_middle:  # no A-ASSOCIATE-AC: inferred from the data set's bytes (PS3.5 §7.1.2)
        assert syntaxes == [
            (None, EXPLICIT_LE, "explicit VR little endian"),
            (None, IMPLICIT_LE, "implicit VR little endian"),
        ]
    else:  # negotiated (context 1: explicit VR), nothing inferred
        assert syntaxes == [(EXPLICIT_LE, None, None)] * 2
    assert sorted(r.phase for r in of(events, DicomRelease)) == ["rp", "rq"]
    text = b"".join(encode_json(e) for e in events).decode()
    assert not any(v in text for v in (*PHI, *UIDS))


CUTS = sorted({*range(1, len(FIRST), 211), *pdu_offsets(FIRST)[1:], len(FIRST) - 1})


@pytest.mark.parametrize("cut", CUTS)
def test_capture_starting_inside_a_c_store(cut: int) -> None:
    """Cut inside the first C-STORE (header, command set or data set, at a PDU boundary or
    not): the next C-STORE, its response, the C-ECHO and the release come out whole."""
    events = feed(DicomDissector(flow_context()), [(0, C2S[cut:]), (1, S2C)])
    check_rest(events)
    # the first C-STORE's data set is never decoded from its middle; its response is reported
    assert [s.message_id for s in of(events, DicomDataset)] == [2, 4]
    assert not [c for c in of(events, DicomCommand) if c.message_id == 1]
    (session,) = of(events, DicomSession)
    following = min(p for p in pdu_offsets(C2S) if p >= cut)  # the PDU the search must find
    assert session.resync_skipped_bytes == following - cut < 4096  # 4 KiB PDUs
    assert session.seen_from_middle and not session.desynchronized
    assert session.resyncs == 2  # one per direction
    # the rest of the first data set, unless the cut is in its last PDU
    assert session.partial_messages == (following < len(FIRST))


def test_capture_starting_at_a_message_boundary_reports_everything() -> None:
    events = feed(DicomDissector(flow_context()), [(0, C2S), (1, S2C)])
    check_rest(events)
    assert [s.message_id for s in of(events, DicomDataset)] == [1, 2, 4]
    (session,) = of(events, DicomSession)
    assert session.seen_from_middle and session.resync_skipped_bytes == 0
    assert session.partial_messages == 0


def test_gap_in_a_data_set_resynchronises_after_it() -> None:
    """A gap spanning PDU headers of an association seen from its start."""
    rq, ac = associate_rq(CONTEXTS), associate_ac(CONTEXTS, [(0, EXPLICIT_LE), (0, IMPLICIT_LE)])
    lo, hi = 5000, 13000  # inside the first data set, across two 4 KiB PDU headers
    steps = [(0, rq), (1, ac), (0, C2S[:lo]), (0, hi - lo), (0, C2S[hi:]), (1, S2C)]
    events = feed(DicomDissector(flow_context()), steps)
    check_rest(events, seen_from_middle=False)
    stores = [c.message_id for c in of(events, DicomCommand) if c.command == "C-STORE-RQ"]
    assert stores == [1, 2, 4] and [s.message_id for s in of(events, DicomDataset)] == [2, 4]
    (session,) = of(events, DicomSession)
    assert not session.seen_from_middle and session.gaps == 1 and session.partial_messages == 1
    assert session.resyncs == 1 and 0 < session.resync_skipped_bytes < 4096


def _without_pixel_data() -> pydicom.Dataset:
    ds = _dataset()
    del ds.PixelData
    return ds


ENCODED = {  # a C-STORE data set's encoding -> what a capture without the association infers
    "implicit VR": ((DS, True, True, False), (IMPLICIT_LE, "implicit VR little endian")),
    "explicit VR": ((DS, False, True, False), (EXPLICIT_LE, "explicit VR little endian")),
    # PS3.5 §A.4: Explicit VR Little Endian, or a compressed syntax with no pixel data?
    "explicit VR, no pixel data": (
        (_without_pixel_data(), False, True, False),
        (None, "explicit VR little endian"),
    ),
    "encapsulated": (
        (pydicom.dcmread(get_testdata_file("JPEG2000.dcm")), False, True, False),
        (None, "explicit VR little endian, encapsulated pixel data"),
    ),
    # not recognised without a negotiated syntax: nothing inferred
    "big endian": ((DS, False, False, False), (None, None)),
    "deflated": ((DS, False, True, True), (None, None)),
}


@pytest.mark.parametrize("encoding", ENCODED)
def test_transfer_syntax_inferred_without_the_association(encoding: str) -> None:
    """A C-STORE seen from its first PDU, no A-ASSOCIATE: the transfer syntax its data set was
    decoded in is reported as inferred, the negotiated one as unknown."""
    (ds, implicit, little, deflated), want = ENCODED[encoding]
    stream = c_store_rq(ds, 1, implicit=implicit, little=little, deflated=deflated, message_id=9)
    (data,) = of(feed(DicomDissector(flow_context()), [(0, stream)]), DicomDataset)
    assert data.seen_from_middle and data.transfer_syntax is None
    assert (data.transfer_syntax_inferred, data.encoding_inferred) == want
    assert (data.modality == ds.Modality) is (want[1] is not None)  # decoded when inferred


@pytest.mark.parametrize("size", [200, 1000, 4000])
def test_a_big_endian_prefix_is_not_taken_for_little_endian(size: int) -> None:
    """A data set longer than the dissector keeps: its first value, read little endian, may run
    past the prefix without error; one element read is no evidence for the guess."""
    from pynetdicom.dsutils import encode

    from medsentry.protocols.dicom.dataset import summarize

    little, big = encode(DS, False, True), encode(DS, False, False)
    assert summarize(little[:size], None, complete=False).transfer_syntax_inferred is None
    assert summarize(little[:size], None, complete=False).encoding_inferred
    got = summarize(big[:size], None, complete=False)
    assert (got.transfer_syntax_inferred, got.encoding_inferred, got.modality) == (None,) * 3


def test_abort_found_after_a_cut() -> None:
    events = feed(DicomDissector(flow_context()), [(0, FIRST[5000:] + abort(0, 0))])
    (ab,) = of(events, DicomAbort)
    assert (ab.source_name, ab.direction) == ("service-user", 0)


def test_command_and_data_in_one_pdu() -> None:
    """PDV items of a command set and of a data set packed in one P-DATA-TF (PS3.8 §9.3.5:
    one or more PDV items), the PDU a capture starts at."""
    offsets = pdu_offsets(REST)
    cmd, data = REST[offsets[0] : offsets[1]], REST[offsets[1] : offsets[2]]
    items = cmd[6:] + data[6:]
    packed = b"\x04\x00" + struct.pack(">I", len(items)) + items
    events = feed(DicomDissector(flow_context()), [(0, packed + REST[offsets[2] :]), (1, S2C)])
    check_rest(events)


def test_false_header_is_searched_past() -> None:
    """A plausible P-DATA-TF in the bytes before the real ones waits for the header after it,
    which is wrong: the search goes on from there, past it."""
    fake = b"\x04\x00\x00\x00\x00\x0c" + struct.pack(">I", 8) + b"\x01\x02" + b"\xee" * 6
    d = DicomDissector(flow_context())
    assert d.feed(0, FIRST[7000:7300] + fake, 0) == []
    assert d._dirs[0].hunting and bytes(d._dirs[0].buf) == fake  # waiting for the next header
    events = feed(d, [(0, b"\xee" * 40 + REST), (1, S2C)])
    check_rest(events)


def test_bytes_shaped_like_a_rejection_at_a_cut_are_searched_past() -> None:
    """A cut at a message control header: 03H 00H 00H 00H 00H 04H reads as an A-ASSOCIATE-RJ
    header, but its Result (00H) is no value of PS3.8 Table 9-21: the capture is one seen from
    its middle, and the search finds the PDUs after it (it was a parse error)."""
    at = C2S.index(b"\x03\x00\x00\x00\x00\x04")
    assert C2S[at + 7] not in (1, 2)
    d = DicomDissector(flow_context())
    events = feed(d, [(0, C2S[at:])])
    assert d._dirs[0].lossy and not d._associated
    assert of(events, DicomCommand)


@pytest.mark.parametrize("first", [b"\x01", b"\x02"], ids=["rq", "ac"])
def test_bytes_shaped_like_an_association_header_at_a_cut_are_searched_past(first: bytes) -> None:
    """A data set's bytes that read as an A-ASSOCIATE-RQ/-AC header (type, 00H, a length of
    256, protocol version 1) but whose first variable item is no item of PS3.8 Table 9-11 /
    9-17: the search finds the PDUs after them. It was a bogus association, then a parse error."""
    shaped = first + b"\x00\x00\x00\x01\x00\x00\x01" + b"\x00" * 250
    d = DicomDissector(flow_context())
    events = feed(d, [(0, shaped + REST), (1, S2C)])
    assert d._dirs[0].lossy and not d._associated
    assert not of(events, DicomAssociateRequest) and not of(events, DicomAssociateAccept)
    check_rest(events)


@pytest.mark.parametrize("source", [1, 2, 3])
def test_a_rejection_that_opens_a_stream_is_read(source: int) -> None:
    """An A-ASSOCIATE-RJ as a direction's first bytes (its A-ASSOCIATE-RQ not captured) is the
    start of an association, fed whole or byte by byte (PS3.8 §9.3.4)."""
    rj = associate_rj(1, source, 1)
    for chunk in (len(rj), 1):
        d = DicomDissector(flow_context())
        events = feed(d, [(1, rj)], chunk) + d.close(1)
        (rej,) = of(events, DicomAssociateReject)
        assert (rej.result, rej.source, rej.reason) == (1, source, 1) and d._associated


def test_whole_pdu_at_the_end_of_the_stream() -> None:
    """A C-STORE-RSP alone after the cut: no header follows to confirm it; the stream's end
    does, a PDU cut short by it does not."""
    rsp = c_store_rsp(1, 0xA700, 9)
    d = DicomDissector(flow_context())
    assert d.feed(1, b"\x13" * 5 + rsp, 0) == []
    (cmd,) = of(d.close(1), DicomCommand)
    assert (cmd.command, cmd.status_class, cmd.message_id_responded) == (
        "C-STORE-RSP",
        "failure",
        9,
    )
    assert cmd.ts_ns == 0  # the time of the segment it came in, not of the stream's end
    d = DicomDissector(flow_context())
    assert d.feed(1, b"\x13" * 5 + rsp[:-1], 0) == [] and not of(d.close(1), DicomCommand)


def test_search_window() -> None:
    """No PDU header in RESYNC_WINDOW bytes: not DICOM (a parse error) when nothing was ever
    decoded on the flow, else the direction is given up; memory stays bounded either way."""
    noise = random.Random(7).randbytes(RESYNC_WINDOW + 65536)
    d = DicomDissector(flow_context())
    with pytest.raises(ParseError, match="no PDU header"):
        for pos in range(0, len(noise), 65536):
            d.feed(0, noise[pos : pos + 65536], 1)
            assert len(d._dirs[0].buf) <= MAX_RESYNC_PDU_LENGTH + 65536 + 12
    d = DicomDissector(flow_context())
    steps = [(0, associate_rq(CONTEXTS)), (0, FIRST[:100]), (0, 1000), (0, noise), (0, REST)]
    events = feed(d, steps, chunk=65536)
    (session,) = of(events, DicomSession)
    assert session.desynchronized and not of(events, DicomRelease)


def test_framing_error_after_association_is_still_a_parse_error() -> None:
    d = DicomDissector(flow_context())
    d.feed(0, associate_rq(CONTEXTS), 0)
    with pytest.raises(ParseError, match="unknown PDU type"):
        d.feed(0, b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00", 1)


# -- the time of a message found by the search ------------------------------------------------


def timed_feed(stream: bytes, sizes: list[int], cut: int | None) -> tuple[list, DicomDissector]:
    """`stream` in segments of `sizes` (cycled), segment i fed at time i; the segments (or
    their part) from stream byte `cut` on only, as a capture that starts there sees them.
    Cut at None: the whole stream after its association request, followed in step."""
    d = DicomDissector(flow_context())
    if cut is None:
        d.feed(0, associate_rq(CONTEXTS), -1)
        cut = 0
    events, pos, i = [], 0, 0
    while pos < len(stream):
        end = pos + sizes[i % len(sizes)]
        if end > cut:
            events += d.feed(0, stream[max(pos, cut) : end], i)
            stamps = d._dirs[0].stamps
            assert stamps is None or len(stamps) <= MAX_CHUNKS
        pos, i = end, i + 1
    return events + d.close(i), d


def message_times(events: list) -> dict[tuple, int]:
    return {
        (type(e).__name__, getattr(e, "command", None), e.message_id): e.ts_ns
        for e in events
        if isinstance(e, DicomCommand | DicomDataset)
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(C2S) - 1), st.lists(st.integers(8, 3000), min_size=1, max_size=12))
@example(11, [8])  # a cut at bytes shaped like an A-ASSOCIATE-RJ header (a parse error once)
def test_a_message_found_by_the_search_has_the_time_it_has_in_step(
    cut: int, sizes: list[int]
) -> None:
    """Cut anywhere, split anywhere: each message reported after the cut has the time of the
    segment that carried its last byte, as when the stream is followed from its start, not that
    of the later segment whose PDU header confirmed the PDU boundary (PS3.8 §9.3.1)."""
    whole = message_times(timed_feed(C2S, sizes, None)[0])
    events, d = timed_feed(C2S, sizes, cut)
    got = message_times(events)
    assert {k: whole[k] for k in got} == got
    assert got or cut > C2S.index(c_echo_rq(3, message_id=3))  # the last C-STORE's middle
    assert d._dirs[0].stamps is None


def test_segment_times_are_bounded() -> None:
    """One-byte segments: no more than MAX_CHUNKS times are kept; a message that ends past
    that many segments into the PDU the search holds is timed late, never early."""
    echo = c_echo_rq(3, message_id=7)[6:]  # PS3.8 §9.3.5: its PDV item
    tail = struct.pack(">I", 2 + 2000) + b"\x01\x00" + b"\xee" * 2000  # a data set's middle
    packed = b"\x04\x00" + struct.pack(">I", len(tail) + len(echo)) + tail + echo
    stream = b"\x13" * 5 + packed + REST
    got = message_times(timed_feed(stream, [1], 0)[0])  # timed_feed checks the bound
    carried = 5 + len(packed) - 1  # the segment with the C-ECHO-RQ's last byte
    assert carried > MAX_CHUNKS and got["DicomCommand", "C-ECHO-RQ", 7] >= carried
    # the messages after the PDU found come in step: timed by their own segments
    echo3 = c_echo_rq(3, message_id=3)
    assert got["DicomCommand", "C-ECHO-RQ", 3] == stream.index(echo3) + len(echo3) - 1


# -- the search itself, fuzzed ----------------------------------------------------------------

TRAPS = [  # bytes that begin like a PDU header, or are a whole PDU of their own
    b"\x04\x00\x00",
    b"\x04\x00\x00\x00\x00\x0c\x00\x00\x00\x08\x01\x02",
    b"\x04\x00\x00\x00\x00\x0c\x00\x00\x00\x08\x01\x03\x00\x00\x00\x00\x04\x00",
    b"\x04\x00\x00\x10\x00\x00\x00\x0f\xff\xfc\x01\x02",
    b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00",
    b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06",
    b"\x00\x00\x00\x00\x04",
    REST[:40],
]
prefixes = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(TRAPS)), max_size=30).map(b"".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefixes)
def test_search_never_passes_a_real_header(prefix: bytes) -> None:
    """Whatever comes before it, the search stops at the first real PDU or earlier."""
    for final in (False, True):
        at, found = find_pdu(prefix + REST, 0, final)
        assert at <= len(prefix) and (found or not final)
        if at == len(prefix):
            assert found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefixes, st.lists(st.integers(1, 5000), min_size=1, max_size=20))
# an A-RELEASE-RQ whose next "header" is a P-DATA-TF prefix: fed byte by byte, it was taken
# before the PDV item header that rules it out had arrived
@example(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00\x04\x00\x00", [1])
def test_random_bytes_before_a_real_stream(prefix: bytes, sizes: list[int]) -> None:
    """Random bytes, then real messages, split anywhere: no exception, bounded memory, typed
    events; when the search lands on the real stream (always, unless the noise holds a PDU
    of its own) every message after it comes out whole."""
    stream = prefix + REST
    d = DicomDissector(flow_context())
    events, pos, i = [], 0, 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        events += d.feed(0, stream[pos : pos + n], i)
        pos, i = pos + n, i + 1
        assert len(d._dirs[0].buf) <= MAX_RESYNC_PDU_LENGTH + 5012
    events += feed(d, [(1, S2C)])
    for e in events:
        encode_json(e)
    if find_pdu(prefix + REST, 0, True)[0] == len(prefix):
        check_rest(events)
