"""Byte-level tests: PDUs and DIMSE messages encoded by pynetdicom, data sets written by pydicom."""

from __future__ import annotations

import random
import struct

import pydicom
import pytest
from dicom_build import (
    CT_IMAGE_STORAGE,
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_MOVE,
    VERIFICATION,
    abort,
    associate_ac,
    associate_rj,
    associate_rq,
    c_echo_rq,
    c_echo_rsp,
    c_find_rq,
    c_get_rq,
    c_move_rq,
    c_move_rsp,
    c_store_rq,
    c_store_rsp,
    flow_context,
    n_action_rq,
    n_create_rq,
    n_delete_rq,
    n_event_report_rq,
    n_get_rq,
    n_set_rq,
    release_rp,
    release_rq,
)
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from medsentry.events import decode_json, encode_json
from medsentry.events.credentials import CleartextCredentials
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
from medsentry.protocols.dicom.dimse import status_class
from medsentry.protocols.dicom.dissector import DATASET_PREFIX
from medsentry.protocols.dicom.knowledge import implementation_name
from medsentry.protocols.registry import stream_dissector

CONTEXTS = [
    (CT_IMAGE_STORAGE, [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED]),
    (VERIFICATION, [IMPLICIT_LE]),
    (PATIENT_ROOT_FIND, [IMPLICIT_LE]),
    (PATIENT_ROOT_MOVE, [IMPLICIT_LE]),
]
PHI = ("Quimby^Zyxwvut", "PID-55501234", "19230405")


def feed_all(d: DicomDissector, chunks: list[tuple[int, bytes]]) -> list:
    out = []
    for i, (direction, data) in enumerate(chunks):
        out.extend(d.feed(direction, data, 1000 + i))
    return out


def associated(ts: str = EXPLICIT_LE) -> tuple[DicomDissector, list]:
    d = DicomDissector(flow_context())
    chosen = [(0, ts), (0, IMPLICIT_LE), (0, IMPLICIT_LE), (0, IMPLICIT_LE)]
    events = feed_all(d, [(0, associate_rq(CONTEXTS)), (1, associate_ac(CONTEXTS, chosen))])
    return d, events


def phi_dataset() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI
    ds.DeviceSerialNumber = "SN-4711"
    ds.InstitutionalDepartmentName = "Radiology East"
    return ds


def test_uid_not_in_ps35_syntax_is_unnamed_and_warns_nothing() -> None:
    """Found by mutation fuzzing: a component with a leading zero (PS3.5 §9.1 forbids it)
    reached pydicom's UID, which printed a UserWarning on every scan that met it."""
    import warnings

    bad = CT_IMAGE_STORAGE.replace("10008", "00008")  # same length: the PDU stays well formed
    rq = associate_rq(CONTEXTS, calling="CT_SCANNER_7", called="PACS")
    rq = rq.replace(CT_IMAGE_STORAGE.encode(), bad.encode())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (ev,) = DicomDissector(flow_context()).feed(0, rq, 1)
    assert ev.presentation_contexts[0].abstract_syntax == bad
    assert ev.presentation_contexts[0].sop_class_name is None
    assert ev.presentation_contexts[1].sop_class_name == "Verification SOP Class"


def test_registered() -> None:
    assert stream_dissector("dicom") is DicomDissector


def test_associate_request_and_accept() -> None:
    d = DicomDissector(flow_context())
    rq = associate_rq(
        CONTEXTS,
        calling="CT_SCANNER_7",
        called="PACS",
        max_length=32768,
        username=b"radtech",
        password=b"hunter2",
        roles=[(CT_IMAGE_STORAGE, True, False)],
    )
    (ev,) = d.feed(0, rq, 1)
    assert isinstance(ev, DicomAssociateRequest)
    assert (ev.calling_ae, ev.called_ae) == ("CT_SCANNER_7", "PACS")
    assert ev.application_context == "1.2.840.10008.3.1.1.1"
    assert [pc.abstract_syntax for pc in ev.presentation_contexts] == [c[0] for c in CONTEXTS]
    assert [pc.transfer_syntaxes for pc in ev.presentation_contexts] == [c[1] for c in CONTEXTS]
    assert [pc.context_id for pc in ev.presentation_contexts] == [1, 3, 5, 7]
    assert ev.presentation_contexts[0].sop_class_name == "CT Image Storage"
    assert ev.presentation_contexts[1].sop_class_name == "Verification SOP Class"
    assert ev.max_pdu_length == 32768
    assert ev.implementation_class_uid == "1.2.826.0.1.3680043.9.3811.3.0.4"
    assert ev.implementation_version_name == "PYNETDICOM_304"
    assert ev.implementation == "pynetdicom"
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in ev.role_selections] == [
        (CT_IMAGE_STORAGE, 1, 0)
    ]
    ui = ev.user_identity
    assert ui is not None and ui.identity_type == 2 and ui.identity_type_name == "username-passcode"
    assert ui.username_cleartext and ui.password_present and ui.positive_response_requested
    assert ui.username_hash == flow_context().phi_hash(b"radtech")
    text = encode_json(ev)
    assert b"hunter2" not in text and b"radtech" not in text

    ac = associate_ac(CONTEXTS, [(0, EXPLICIT_LE), (0, IMPLICIT_LE), (3, IMPLICIT_LE), (4, "")])
    acc, cred = d.feed(1, ac, 2)
    assert isinstance(acc, DicomAssociateAccept)
    # the username/passcode in clear is also a cleartext-credentials event, with the verdict
    assert isinstance(cred, CleartextCredentials)
    assert (cred.protocol, cred.mechanism) == ("dicom", "user-identity-username-passcode")
    assert cred.username_hash == ui.username_hash and cred.password_sent and cred.accepted
    assert b"hunter2" not in encode_json(cred) and b"radtech" not in encode_json(cred)
    assert [(pc.abstract_syntax, pc.result_name) for pc in acc.presentation_contexts] == [
        (CT_IMAGE_STORAGE, "acceptance"),
        (VERIFICATION, "acceptance"),
        (PATIENT_ROOT_FIND, "abstract-syntax-not-supported"),
        (PATIENT_ROOT_MOVE, "transfer-syntaxes-not-supported"),
    ]
    assert acc.presentation_contexts[0].transfer_syntaxes == [EXPLICIT_LE]
    assert (acc.accepted_contexts, acc.rejected_contexts) == (2, 2)


@pytest.mark.parametrize(
    ("result", "source", "reason", "names"),
    [
        (1, 1, 3, ("rejected-permanent", "service-user", "calling-ae-title-not-recognized")),
        (1, 1, 7, ("rejected-permanent", "service-user", "called-ae-title-not-recognized")),
        (2, 3, 1, ("rejected-transient", "service-provider-presentation", "temporary-congestion")),
        (
            1,
            2,
            2,
            ("rejected-permanent", "service-provider-acse", "protocol-version-not-supported"),
        ),
    ],
)
def test_associate_reject(result: int, source: int, reason: int, names: tuple) -> None:
    d = DicomDissector(flow_context())
    (ev,) = d.feed(1, associate_rj(result, source, reason), 1)
    assert isinstance(ev, DicomAssociateReject)
    assert (ev.result, ev.source, ev.reason) == (result, source, reason)
    assert (ev.result_name, ev.source_name, ev.reason_name) == names


def test_release_and_abort() -> None:
    d, _ = associated()
    events = feed_all(d, [(0, release_rq()), (1, release_rp()), (1, abort(2, 6))])
    assert [(type(e), getattr(e, "phase", None)) for e in events[:2]] == [
        (DicomRelease, "rq"),
        (DicomRelease, "rp"),
    ]
    ab = events[2]
    assert isinstance(ab, DicomAbort) and ab.direction == 1
    assert (ab.source_name, ab.reason_name) == ("service-provider", "invalid-pdu-parameter-value")
    (session,) = d.close(9)
    assert isinstance(session, DicomSession)
    assert session.pdus == {
        "A-ASSOCIATE-RQ": 1,
        "A-ASSOCIATE-AC": 1,
        "A-RELEASE-RQ": 1,
        "A-RELEASE-RP": 1,
        "A-ABORT": 1,
    }


@pytest.mark.parametrize(
    ("ts", "implicit", "little", "deflated"),
    [
        (IMPLICIT_LE, True, True, False),
        (EXPLICIT_LE, False, True, False),
        (EXPLICIT_BE, False, False, False),
        (DEFLATED, False, True, True),
    ],
)
def test_c_store_dataset(ts: str, implicit: bool, little: bool, deflated: bool) -> None:
    d, _ = associated(ts)
    ds = phi_dataset()
    data = c_store_rq(ds, 1, implicit=implicit, little=little, deflated=deflated, max_pdu=4096)
    events = d.feed(0, data, 5) + d.feed(1, c_store_rsp(1, 0x0000), 6)
    cmd, dset, rsp = events
    assert isinstance(cmd, DicomCommand) and cmd.command == "C-STORE-RQ"
    assert (
        cmd.affected_sop_class_uid == CT_IMAGE_STORAGE and cmd.sop_class_name == "CT Image Storage"
    )
    assert cmd.message_id == 7 and cmd.priority == 2 and cmd.data_set_present
    assert cmd.sop_instance_hash == flow_context().phi_hash("1.2.3.4.5.6.7")
    assert isinstance(dset, DicomDataset) and dset.command == "C-STORE-RQ" and dset.message_id == 7
    assert dset.transfer_syntax == ts and not dset.decode_error
    assert dset.modality == ds.Modality == "CT"
    assert dset.manufacturer == ds.Manufacturer
    assert dset.manufacturer_model_name == ds.ManufacturerModelName
    assert dset.station_name == ds.StationName
    assert dset.software_versions == [str(ds.SoftwareVersions)]
    assert dset.device_serial_number == "SN-4711"
    assert dset.institutional_department_name == "Radiology East"
    assert dset.sop_class_uid == CT_IMAGE_STORAGE
    assert {"PatientName", "PatientID", "PatientBirthDate", "PatientSex"} <= set(
        dset.phi_attributes
    )
    assert isinstance(rsp, DicomCommand) and rsp.command == "C-STORE-RSP"
    assert rsp.message_id_responded == 7 and rsp.status == 0 and rsp.status_class == "success"
    for ev in events:
        text = encode_json(ev).decode()
        assert not any(v in text for v in PHI)
        assert "Quimby" not in text


def test_every_split_gives_the_same_events() -> None:
    ds = phi_dataset()
    chosen = [(0, EXPLICIT_LE), (0, IMPLICIT_LE), (0, IMPLICIT_LE), (0, IMPLICIT_LE)]
    c2s = (
        associate_rq(CONTEXTS)
        + c_store_rq(ds, 1, implicit=False, max_pdu=1000)
        + c_echo_rq(3)
        + release_rq()
    )
    s2c = associate_ac(CONTEXTS, chosen) + c_store_rsp(1, 0xB000) + c_echo_rsp(3) + release_rp()

    def run(sizes: random.Random | None) -> list[bytes]:
        d = DicomDissector(flow_context())
        out = []
        for direction, stream in ((0, c2s[: len(c2s) - 10]), (1, s2c), (0, c2s[-10:])):
            pos = 0
            while pos < len(stream):
                n = sizes.randint(1, 300) if sizes else len(stream)
                out += [encode_json(e) for e in d.feed(direction, stream[pos : pos + n], 1)]
                pos += n
        return out

    whole = run(None)
    kinds = [e.split(b'"kind":"')[1].split(b'"')[0] for e in whole]
    assert kinds.count(b"dicom_dimse") == 4 and kinds.count(b"dicom_dataset") == 1
    for seed in range(5):
        assert run(random.Random(seed)) == whole
    # one byte at a time
    d = DicomDissector(flow_context())
    one = []
    for b in c2s[: len(c2s) - 10]:
        one += [encode_json(e) for e in d.feed(0, bytes([b]), 1)]
    for b in s2c:
        one += [encode_json(e) for e in d.feed(1, bytes([b]), 1)]
    one += [encode_json(e) for e in d.feed(0, c2s[-10:], 1)]
    assert one == whole


def test_all_dimse_commands() -> None:
    d, _ = associated()
    ident = Dataset()
    ident.QueryRetrieveLevel = "PATIENT"
    ident.PatientName = PHI[0]
    ident.PatientID = ""
    msgs = (
        c_echo_rq(3)
        + c_find_rq(5, ident)
        + c_move_rq(7, ident, "WORKSTATION9")
        + c_get_rq(7, ident)
        + n_action_rq(1)
        + n_event_report_rq(1)
        + n_create_rq(1)
        + n_set_rq(1)
        + n_get_rq(1)
        + n_delete_rq(1)
    )
    events = d.feed(0, msgs, 1)
    cmds = [e for e in events if isinstance(e, DicomCommand)]
    assert [c.command for c in cmds] == [
        "C-ECHO-RQ",
        "C-FIND-RQ",
        "C-MOVE-RQ",
        "C-GET-RQ",
        "N-ACTION-RQ",
        "N-EVENT-REPORT-RQ",
        "N-CREATE-RQ",
        "N-SET-RQ",
        "N-GET-RQ",
        "N-DELETE-RQ",
    ]
    move = cmds[2]
    assert (
        move.move_destination == "WORKSTATION9" and move.affected_sop_class_uid == PATIENT_ROOT_MOVE
    )
    assert cmds[4].action_type_id == 1 and cmds[4].requested_sop_class_uid == "1.2.840.10008.1.20.1"
    assert cmds[4].sop_class_name == "Storage Commitment Push Model SOP Class"
    assert cmds[5].event_type_id == 1
    datasets = [e for e in events if isinstance(e, DicomDataset)]
    assert [x.command for x in datasets] == ["C-FIND-RQ", "C-MOVE-RQ", "C-GET-RQ", "N-SET-RQ"]
    assert datasets[0].phi_attributes == ["PatientName"]  # PatientID is empty: a return key
    assert all(PHI[0] not in encode_json(e).decode() for e in events)
    (rsp,) = [e for e in d.feed(1, c_move_rsp(7, 0xFF00, 3, 1), 2) if isinstance(e, DicomCommand)]
    assert rsp.status_class == "pending"
    assert (rsp.remaining_suboperations, rsp.completed_suboperations) == (3, 1)
    assert (rsp.failed_suboperations, rsp.warning_suboperations) == (0, 0)


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (0x0000, "success"),
        (0xFF00, "pending"),
        (0xFF01, "pending"),
        (0xFE00, "cancel"),
        (0xB000, "warning"),
        (0x0107, "warning"),
        (0xA700, "failure"),
        (0xC000, "failure"),
        (0x0122, "failure"),
    ],
)
def test_status_class(status: int, meaning: str) -> None:
    assert status_class(status) == meaning


def test_big_dataset_is_counted_not_kept() -> None:
    d, _ = associated()
    ds = phi_dataset()
    ds.PixelData = b"\x00\x01" * (1 << 20)  # 2 MiB of pixels
    ds["PixelData"].VR = "OW"
    data = c_store_rq(ds, 1, implicit=False, max_pdu=65536)
    events = []
    for i in range(0, len(data), 8192):
        events += d.feed(0, data[i : i + 8192], 1)
        assert len(d._dirs[0].ds_prefix) <= DATASET_PREFIX
        assert len(d._dirs[0].buf) <= 8192
    (dset,) = [e for e in events if isinstance(e, DicomDataset)]
    assert dset.bytes_total > 2 * (1 << 20) and dset.bytes_parsed == DATASET_PREFIX
    assert dset.manufacturer == ds.Manufacturer and "PatientName" in dset.phi_attributes


def test_gap_inside_a_data_set_is_skipped() -> None:
    d, _ = associated()
    ds = phi_dataset()
    data = c_store_rq(ds, 1, implicit=False, max_pdu=65536)
    encoded = encode(ds, False, True)
    # cut 1000 bytes out of the middle of the data set PDV
    events = d.feed(0, data[:20000], 1)
    assert d.gap(0, 1000, 2) == []
    events += d.feed(0, data[21000:], 3)
    (dset,) = [e for e in events if isinstance(e, DicomDataset)]
    assert dset.bytes_total == len(encoded)  # the lost bytes are counted
    assert dset.manufacturer == ds.Manufacturer  # the header survived: the gap is in pixels
    # a gap in a PDU header loses the framing: the next PDU header is searched for
    assert d.gap(0, 10, 4) == []
    assert d.feed(0, b"\x00" * 7 + release_rq(), 5) == []  # no header after it yet
    release, session = d.close(6)  # the stream ends right after it: taken
    assert isinstance(release, DicomRelease) and isinstance(session, DicomSession)
    assert not session.desynchronized and not session.seen_from_middle
    assert (session.resyncs, session.resync_skipped_bytes) == (1, 7)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00" + struct.pack(">I", 0x7FFFFFFF),  # A-ASSOCIATE-RQ claiming 2 GiB
        b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00",  # unknown PDU type
        b"\x05\x00\x00\x00\x10\x00",  # A-RELEASE-RQ of 4096 bytes
        b"\x04\x00\x00\x00\x00\x0a" + struct.pack(">I", 100) + b"\x01\x03",  # PDV overruns PDU
        b"\x04\x00\x00\x00\x00\x06" + struct.pack(">I", 1) + b"\x01\x03",  # PDV item length < 2
    ],
)
def test_hostile_headers_are_refused_before_buffering(data: bytes) -> None:
    d, _ = associated()
    with pytest.raises(ParseError, match="stream byte"):
        d.feed(0, data, 1)
    # without an association they are no PDU boundary: searched past, never buffered
    d = DicomDissector(flow_context())
    assert d.feed(0, data, 1) == [] and len(d._dirs[0].buf) < 12


def test_malformed_command_set_is_a_parse_error() -> None:
    d, _ = associated()
    bad = struct.pack("<HHI", 0, 0x0100, 4) + b"\x01\x00\x00\x00"  # Command Field as 4 bytes
    pdv = struct.pack(">I", len(bad) + 2) + b"\x01\x03" + bad
    with pytest.raises(ParseError, match="US of 4 bytes"):
        d.feed(0, b"\x04\x00" + struct.pack(">I", len(pdv)) + pdv, 1)


def test_implementation_roots() -> None:
    assert implementation_name("1.2.276.0.7230010.3.0.3.6.7") == "OFFIS DCMTK"
    assert implementation_name("1.2.40.0.13.1.3") == "dcm4che"
    assert implementation_name("1.2.276.0.7230011") is None
    assert implementation_name(None) is None


def test_events_round_trip_through_json() -> None:
    d, events = associated()
    events += d.feed(0, c_store_rq(phi_dataset(), 1, implicit=False), 3)
    events += d.feed(0, release_rq(), 4) + d.feed(1, abort(0, 0), 5) + d.close(6)
    assert len({type(e) for e in events}) == 7
    for ev in events:
        assert decode_json(encode_json(ev)) == ev


def test_knowledge_files_are_validated() -> None:
    from medsentry.errors import ConfigError
    from medsentry.protocols.dicom import knowledge

    attrs = knowledge.dataset_attributes()
    assert attrs.device_identity[0x00181000] == "DeviceSerialNumber"
    # PS3.15 Table E.1-1: identifying rows; those the Retain UIDs / Device Identity /
    # Institution Identity Options keep are not patient data
    profile = knowledge.confidentiality_profile()
    assert profile.identifying[0x00100010] == "PatientName"
    assert profile.identifying[0x00102155] == "PatientTelecomInformation"
    assert profile.identifying[0x00380010] == "AdmissionID"
    assert not {0x0020000D, 0x00081010, 0x00080080} & profile.identifying.keys()
    assert {kw for *_, kw in profile.repeating} == {"CurveData", "OverlayComments", "OverlayData"}
    with pytest.raises(ConfigError, match="needs tag"):
        knowledge._tags({"x": [{"tag": "0010-0010", "keyword": "PatientName"}]}, "x", "f.yaml")
    with pytest.raises(ConfigError, match="is empty"):
        knowledge._tags({"x": []}, "x", "f.yaml")


def test_username_rejected_association() -> None:
    d = DicomDissector(flow_context())
    assert len(d.feed(0, associate_rq(CONTEXTS, username=b"guest"), 1)) == 1
    rj, cred = d.feed(1, associate_rj(1, 1, 3), 2)
    assert isinstance(rj, DicomAssociateReject) and isinstance(cred, CleartextCredentials)
    assert cred.mechanism == "user-identity-username" and not cred.password_sent
    assert cred.accepted is False
    # no identity: no credential event, even at close
    d = DicomDissector(flow_context())
    d.feed(0, associate_rq(CONTEXTS), 1)
    assert [type(e) for e in d.close(3)] == [DicomSession]
    # an identity never answered: reported at close, verdict unknown
    d = DicomDissector(flow_context())
    d.feed(0, associate_rq(CONTEXTS, username=b"guest"), 1)
    cred, session = d.close(3)
    assert cred.accepted is None and isinstance(session, DicomSession)


def test_silent_flow_has_no_session_summary() -> None:
    assert DicomDissector(flow_context()).close(1) == []
