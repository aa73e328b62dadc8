"""C-FIND and C-MOVE with dcmtk: storescu -> dcmqrscp, findscu and movescu against it, the move's
sub-operations stored into storescp; captured on lo and scanned with the real pipeline."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pydicom
import pytest
from loopcap import (
    all_json,
    assert_commands_match_tshark,
    capture_lo,
    dcmtk,
    free_port,
    scan,
    wait_port,
)
from pydicom.data import get_testdata_file

from medsentry.events.dicom import DicomAssociateRequest, DicomCommand, DicomDataset

pytestmark = pytest.mark.slow

PHI = ("Quimby^Zyxwvut", "MRN-55501234", "19230405")
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=60)


def test_find_and_move_through_dcmqrscp(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    qr_port, store_port = free_port(), free_port()
    db = tmp_path / "db"
    db.mkdir()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {qr_port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\n"
        f"storescp = (STORESCP, 127.0.0.1, {store_port})\n"
        "HostTable END\nVendorTable BEGIN\nVendorTable END\n"
        "AETable BEGIN\n"
        f"COMMON {db} RW (200, 1024mb) ANY\n"
        "AETable END\n"
    )
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI
    study = tmp_path / "study.dcm"
    ds.save_as(study)

    qr = subprocess.Popen(
        [dcmtk("dcmqrscp"), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "STORESCP", "-od", str(incoming), str(store_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(qr_port)
        wait_port(store_port)
        with capture_lo(tmp_path / "qr.pcap", [qr_port, store_port]) as pcap:
            run(
                dcmtk("storescu"),
                "-aet",
                "MODALITY",
                "-aec",
                "COMMON",
                "127.0.0.1",
                str(qr_port),
                str(study),
            )
            run(
                dcmtk("findscu"), "-P", "-aet", "FINDSCU", "-aec", "COMMON",
                "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientName={PHI[0][:6]}*",
                "-k", "PatientID", "-k", "PatientBirthDate", "127.0.0.1", str(qr_port),
            )  # fmt: skip
            run(
                dcmtk("movescu"), "-P", "-aet", "MOVESCU", "-aec", "COMMON", "-aem", "STORESCP",
                "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={PHI[1]}",
                "127.0.0.1", str(qr_port),
            )  # fmt: skip
    finally:
        for proc in (qr, scp):
            proc.terminate()
            proc.wait(10)
    assert len(list(incoming.iterdir())) == 1  # the move really delivered the image

    caplog.set_level(logging.DEBUG)
    events = scan(pcap)
    cmds = [e for e in events if isinstance(e, DicomCommand)]
    find_rq = next(c for c in cmds if c.command == "C-FIND-RQ")
    assert find_rq.affected_sop_class_uid == PATIENT_ROOT_FIND
    find_rsp = [c for c in cmds if c.command == "C-FIND-RSP"]
    assert [c.status_class for c in find_rsp] == ["pending", "success"]
    move_rq = next(c for c in cmds if c.command == "C-MOVE-RQ")
    assert move_rq.move_destination == "STORESCP"
    assert move_rq.affected_sop_class_uid == PATIENT_ROOT_MOVE
    final = [c for c in cmds if c.command == "C-MOVE-RSP"][-1]
    assert final.status_class == "success" and final.completed_suboperations == 1
    assert final.failed_suboperations == 0
    # the sub-operation: dcmqrscp (COMMON) stores into STORESCP on behalf of MOVESCU
    sub = next(
        c for c in cmds if c.command == "C-STORE-RQ" and c.endpoints.server_port == store_port
    )
    assert sub.move_originator_ae == "MOVESCU"
    assert sub.move_originator_message_id == move_rq.message_id
    sub_rq = next(
        e
        for e in events
        if isinstance(e, DicomAssociateRequest) and e.endpoints.server_port == store_port
    )
    assert (sub_rq.calling_ae, sub_rq.called_ae) == ("COMMON", "STORESCP")
    assert sub_rq.implementation == "OFFIS DCMTK"

    # tshark's DICOM dissector decodes the same command sets, port by port (move destination,
    # sub-operation counts and move originator included)
    for port in (qr_port, store_port):
        on_port = [c for c in cmds if c.endpoints.server_port == port]
        assert_commands_match_tshark(on_port, pcap, port)

    datasets = [e for e in events if isinstance(e, DicomDataset)]
    query = next(d for d in datasets if d.command == "C-FIND-RQ")
    assert query.phi_attributes == ["PatientName"]  # the only key with a value
    answer = next(d for d in datasets if d.direction == 1 and d.command == "C-FIND-RSP")
    assert {"PatientName", "PatientID", "PatientBirthDate"} <= set(answer.phi_attributes)
    moved = [d for d in datasets if d.command == "C-STORE-RQ"]
    assert len(moved) == 2 and all(d.manufacturer == ds.Manufacturer for d in moved)
    # the modality's own store is no sub-operation; the archive's is (PS3.7 §9.1.1.1)
    own, forwarded = sorted(moved, key=lambda d: d.endpoints.server_port == store_port)
    assert (own.move_originator_ae, own.move_originator_message_id) == (None, None)
    assert forwarded.move_originator_ae == "MOVESCU"
    assert forwarded.move_originator_message_id == move_rq.message_id

    text = all_json(events) + caplog.text  # events and every log line of the scan
    for value in (*PHI, PHI[0][:6], "Zyxwvut"):
        assert value not in text
