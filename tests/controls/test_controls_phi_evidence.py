"""phi-cleartext evidence from real stacks on loopback (pynetdicom, hl7apy over MLLP), scanned
with the real pipeline: a DICOM note names some attributes and counts them all; two HL7 messages
alike in one segment are one evidence entry, counted twice."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest
from hl7_build import adt_a01, mllp
from loopcap import capture_lo, free_port, scan
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from medsentry.controls.rules import Collector
from medsentry.events.dicom import DicomDataset

pytestmark = pytest.mark.slow


def _dicom_store(port: int) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    scp = AE(ae_title="PACS")
    scp.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = scp.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)]
    )
    try:
        scu = AE(ae_title="CT01")
        scu.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="PACS")
        ds = dcmread(get_testdata_file("CT_small.dcm"))  # GE CT: many identifying attributes
        assert assoc.send_c_store(ds).Status == 0
        assoc.release()
    finally:
        server.shutdown()


def test_dicom_note_counts_every_attribute(tmp_path: Path) -> None:
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    port = free_port()
    with capture_lo(tmp_path / "dicom.pcap", [port]) as pcap:
        _dicom_store(port)
    events = scan(pcap)
    (dset,) = [e for e in events if isinstance(e, DicomDataset)]
    names = sorted(dset.phi_attributes, key=lambda n: ("Patient" not in n, n))
    assert len(names) > 6 and names[:2] == ["OtherPatientIDsSequence", "PatientAge"]
    col = Collector(b"k" * 32)
    col.feed(events)
    (phi,) = [c for k, c in col.candidates.items() if k[0] == "phi-cleartext"]
    (evidence,) = phi.evidence
    assert evidence.note == (
        f"C-STORE-RQ with {len(names)} patient attributes: "
        f"{','.join(names[:6])} +{len(names) - 6} more"
    )


def test_hl7_messages_alike_are_one_evidence_entry(tmp_path: Path) -> None:
    port = free_port()
    message = mllp(adt_a01("CTRL0001"))
    with socket.create_server(("127.0.0.1", port)) as server:

        def receive() -> None:
            conn, _ = server.accept()
            with conn:
                got = b""
                while got.count(b"\x1c\r") < 2:
                    got += conn.recv(65536)

        with capture_lo(tmp_path / "hl7.pcap", [port]) as pcap:
            t = threading.Thread(target=receive)
            t.start()
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(message + message)  # one segment, two messages alike
            t.join(10)
    col = Collector(b"k" * 32)
    col.feed(scan(pcap))
    (phi,) = [c for k, c in col.candidates.items() if k[0] == "phi-cleartext"]
    assert phi.count == 2
    assert [e.note for e in phi.evidence] == ["HL7 ADT^A01 with NK1,PID,PV1"]
