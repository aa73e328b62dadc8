"""Damaged DICOM on a real TCP connection: PDUs made by pynetdicom's encoders, one field broken,
sent over loopback, captured with tcpdump and scanned with the real pipeline. What was decoded
whole is reported, what was not is flagged, nothing truncated is passed off as a value."""

from __future__ import annotations

import socket
import struct
from io import BytesIO
from pathlib import Path

import pytest
from dicom_build import (
    CT_IMAGE_STORAGE,
    DEFLATED,
    EXPLICIT_LE,
    VERIFICATION,
    associate_ac,
    associate_rq,
    dimse,
    release_rp,
    release_rq,
)
from loopcap import all_json, capture_lo, free_port, scan
from pydicom.dataset import Dataset
from pynetdicom import dimse_primitives
from pynetdicom.dsutils import encode

from medsentry.events.dicom import DicomAssociateAccept, DicomAssociateRequest, DicomDataset

pytestmark = pytest.mark.slow

USER_IDENTITY_SUB_ITEM_RQ = 0x58  # PS3.7 §D.3.3.7.1


def _exchange(tmp_path: Path, steps: list[tuple[int, bytes]]) -> list:
    """Send each (direction, bytes) over one TCP connection on loopback, the peer reading all of
    it before the next step; return the events of the captured flow."""
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    with (
        socket.create_server(("127.0.0.1", port)) as server,
        capture_lo(tmp_path / "dicom.pcap", [port]) as pcap,
    ):
        client = socket.create_connection(("127.0.0.1", port))
        peer, _ = server.accept()
        with client, peer:
            for direction, data in steps:
                tx, rx = (client, peer) if direction == 0 else (peer, client)
                tx.sendall(data)
                got = b""
                while len(got) < len(data):
                    got += rx.recv(len(data) - len(got))
    return scan(pcap)


def _c_store_rq(data_set: bytes, context_id: int = 1) -> bytes:
    """A C-STORE-RQ (PS3.7 §9.3.1.1) carrying `data_set` as is."""
    prim = dimse_primitives.C_STORE()
    prim.MessageID = 1
    prim.AffectedSOPClassUID = CT_IMAGE_STORAGE
    prim.AffectedSOPInstanceUID = "1.2.3.4.5.6.7"
    prim.Priority = 2
    prim.DataSet = BytesIO(data_set)
    return dimse("C_STORE_RQ", prim, context_id)


def _store(tmp_path: Path, syntax: str, data_set: bytes) -> DicomDataset:
    contexts = [(CT_IMAGE_STORAGE, [syntax])]
    events = _exchange(
        tmp_path,
        [
            (0, associate_rq(contexts)),
            (1, associate_ac(contexts, [(0, syntax)])),
            (0, _c_store_rq(data_set)),
            (0, release_rq()),
            (1, release_rp()),
        ],
    )
    (dset,) = [e for e in events if isinstance(e, DicomDataset)]
    assert dset.transfer_syntax == syntax
    return dset


def test_invalid_deflate_stream_is_a_decode_error(tmp_path: Path) -> None:
    """Deflated Explicit VR Little Endian (PS3.5 §A.5) whose bytes are no deflate stream (a
    reserved block type, RFC 1951 §3.2.3): nothing is read, and it says so."""
    dset = _store(tmp_path, DEFLATED, b"\xff" * 64)
    assert dset.decode_error
    assert dset.sop_class_uid is None and dset.phi_attributes == []


def test_element_running_past_the_data_set_is_not_stored(tmp_path: Path) -> None:
    """SOP Class UID's 16-bit length set to 0xFFFF in a 100-byte data set (PS3.5 §7.1.2): the
    value would run past the data set, so it is not taken, and the data set is flagged."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.PatientName = "Quimby^Zyxwvut"
    data = bytearray(encode(ds, False, True))
    at = data.index(b"\x08\x00\x16\x00UI")  # (0008,0016) UI, explicit VR little endian
    data[at + 6 : at + 8] = struct.pack("<H", 0xFFFF)
    dset = _store(tmp_path, EXPLICIT_LE, bytes(data))
    assert dset.decode_error
    assert dset.sop_class_uid is None and dset.modality is None
    # the same data set undamaged: the values are read
    dset = _store(tmp_path / "ok", EXPLICIT_LE, encode(ds, False, True))
    assert not dset.decode_error and dset.sop_class_uid == CT_IMAGE_STORAGE
    assert dset.phi_attributes == ["PatientName"]


def test_user_identity_overrunning_user_information_keeps_the_request(tmp_path: Path) -> None:
    """A User Identity sub-item (PS3.7 §D.3.3.7.1) whose length runs past its User Information
    item (PS3.8 §9.3.2.3): the AE titles, presentation contexts and the sub-items before it are
    still reported, and the bad sub-item is named; its username is neither kept nor hashed."""
    contexts = [(CT_IMAGE_STORAGE, [EXPLICIT_LE]), (VERIFICATION, [EXPLICIT_LE])]
    rq = bytearray(associate_rq(contexts, username=b"zzqxuser", password=b"zzqxpass"))
    at = rq.index(bytes([USER_IDENTITY_SUB_ITEM_RQ, 0]))
    (length,) = struct.unpack_from(">H", rq, at + 2)
    struct.pack_into(">H", rq, at + 2, length + 100)
    events = _exchange(
        tmp_path / "dmg",
        [(0, bytes(rq)), (1, associate_ac(contexts, [(0, EXPLICIT_LE), (0, EXPLICIT_LE)]))],
    )
    (req,) = [e for e in events if isinstance(e, DicomAssociateRequest)]
    assert (req.calling_ae, req.called_ae) == ("MODALITY1", "PACS_SCP")
    assert [pc.abstract_syntax for pc in req.presentation_contexts] == [
        CT_IMAGE_STORAGE,
        VERIFICATION,
    ]
    assert req.max_pdu_length == 16384 and req.implementation_version_name == "PYNETDICOM_304"
    assert req.user_identity is None
    assert req.malformed_item is not None and "0x58" in req.malformed_item
    (ac,) = [e for e in events if isinstance(e, DicomAssociateAccept)]
    assert ac.accepted_contexts == 2 and ac.malformed_item is None
    text = all_json(events)
    assert "zzqxuser" not in text and "zzqxpass" not in text
