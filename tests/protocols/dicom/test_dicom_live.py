"""Real DICOM traffic on loopback: dcmtk and pynetdicom, captured with tcpdump, scanned with the
real pipeline, checked against what was sent and against tshark's DICOM dissector."""

from __future__ import annotations

import logging
import re
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
    tshark_fields,
    wait_port,
)
from pydicom.data import get_testdata_file

from medsentry.events.credentials import CleartextCredentials
from medsentry.events.dicom import (
    DicomAssociateAccept,
    DicomAssociateReject,
    DicomAssociateRequest,
    DicomCommand,
    DicomDataset,
    DicomRelease,
)
from medsentry.events.flow import ProtocolDetected

pytestmark = pytest.mark.slow

DEFLATED = "1.2.840.10008.1.2.1.99"
PHI = ("Quimby^Zyxwvut", "MRN-55501234", "19230405")
FILES = ["CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm", "JPEG2000.dcm"]


def uids(field: str) -> list[str]:
    """tshark shows a known UID as "Name (1.2.3)": keep the UID."""
    return [re.sub(r"^.*\(([0-9.]+)\)$", r"\1", v) for v in field.split("|")]


def of(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


def write_phi_file(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI
    ds.OtherPatientIDs = "OTHER-99887766"
    ds.DeviceSerialNumber = "SN-CT-0042"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77.1"
    ds.save_as(path)
    return ds


def test_dcmtk_storescu_echoscu_against_storescp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    phi_file = tmp_path / "phi.dcm"
    phi_ds = write_phi_file(phi_file)
    files = [Path(get_testdata_file(f)) for f in FILES] + [phi_file]
    sent = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS_SCP", "+xa", "-od", str(incoming), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with capture_lo(tmp_path / "dicom.pcap", [port]) as pcap:
            wait_port(port)
            subprocess.run(
                [dcmtk("echoscu"), "-aet", "ECHO_SCU", "-aec", "PACS_SCP", "127.0.0.1", str(port)],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [dcmtk("storescu"), "-aet", "MODALITY_7", "-aec", "PACS_SCP", "-xw"]
                + ["127.0.0.1", str(port)]
                + [str(f) for f in files],
                check=True,
                capture_output=True,
            )
    finally:
        scp.terminate()
        scp.wait(10)
    assert len(list(incoming.iterdir())) == len(files)  # storescp really received them

    caplog.set_level(logging.DEBUG)
    events = scan(pcap)
    protocols = {e.flow_id: e.protocol for e in of(events, ProtocolDetected)}
    rqs = of(events, DicomAssociateRequest)
    assert len(rqs) == 2 and all(protocols[r.flow_id] == "dicom" for r in rqs)
    echo_rq, store_rq = sorted(rqs, key=lambda r: r.ts_ns)
    assert (echo_rq.calling_ae, echo_rq.called_ae) == ("ECHO_SCU", "PACS_SCP")
    assert (store_rq.calling_ae, store_rq.called_ae) == ("MODALITY_7", "PACS_SCP")
    for rq in rqs:
        assert rq.implementation == "OFFIS DCMTK"
        assert rq.implementation_version_name.startswith("OFFIS_DCMTK_")
        assert rq.application_context == "1.2.840.10008.3.1.1.1"
    abstract = {pc.abstract_syntax for pc in store_rq.presentation_contexts}
    assert {ds.SOPClassUID for ds in sent} <= abstract
    assert "CT Image Storage" in {pc.sop_class_name for pc in store_rq.presentation_contexts}

    acs = of(events, DicomAssociateAccept)
    assert len(acs) == 2 and all(ac.accepted_contexts >= 1 for ac in acs)

    cmds = of(events, DicomCommand)
    names = [c.command for c in cmds]
    assert names.count("C-ECHO-RQ") == 1 and names.count("C-ECHO-RSP") == 1
    assert names.count("C-STORE-RQ") == len(files) == names.count("C-STORE-RSP")
    assert all(c.status_class == "success" for c in cmds if c.command.endswith("RSP"))
    store_cmds = [c for c in cmds if c.command == "C-STORE-RQ"]
    assert [c.affected_sop_class_uid for c in store_cmds] == [ds.SOPClassUID for ds in sent]

    datasets = of(events, DicomDataset)
    assert len(datasets) == len(files)
    for got, ds in zip(datasets, sent, strict=True):
        assert got.command == "C-STORE-RQ" and not got.decode_error
        assert got.modality == ds.get("Modality")
        assert got.manufacturer == (ds.get("Manufacturer") or None)
        assert got.manufacturer_model_name == (ds.get("ManufacturerModelName") or None)
        assert got.station_name == (ds.get("StationName") or None)
        assert got.sop_class_uid == ds.SOPClassUID
        assert ("PatientName" in got.phi_attributes) == bool(ds.get("PatientName"))
    phi_event = datasets[-1]
    assert phi_event.device_serial_number == "SN-CT-0042"
    assert {"PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs"} <= set(
        phi_event.phi_attributes
    )
    assert len(of(events, DicomRelease)) == 4  # RQ and RP on both associations

    text = all_json(events) + caplog.text  # events and every log line of the scan
    for value in (*PHI, "OTHER-99887766", phi_ds.SOPInstanceUID, "Quimby"):
        assert value not in text

    # tshark's DICOM dissector on the same capture agrees on the association
    rows = tshark_fields(
        pcap,
        f"tcp.port=={port},dicom",
        [
            "dicom.assoc.ae.calling",
            "dicom.assoc.ae.called",
            "dicom.pctx.abss.syntax",
            "dicom.pctx.xfer.syntax",
            "dicom.userinfo.uid",
            "dicom.userinfo.version",
            "dicom.max_pdu_len",
        ],
        "dicom.pdu.type == 1",
    )
    assert len(rows) == 2
    by_calling = {r[0].strip(): r for r in rows}
    for rq in rqs:
        row = by_calling[rq.calling_ae]
        assert row[1].strip() == rq.called_ae
        assert uids(row[2]) == [pc.abstract_syntax for pc in rq.presentation_contexts]
        ts = [t for pc in rq.presentation_contexts for t in pc.transfer_syntaxes]
        assert uids(row[3]) == ts
        assert row[4] == rq.implementation_class_uid
        assert row[5] == rq.implementation_version_name
        assert int(row[6]) == rq.max_pdu_length
    ac_rows = tshark_fields(
        pcap,
        f"tcp.port=={port},dicom",
        ["dicom.pctx.id", "dicom.pctx.result"],
        "dicom.pdu.type == 2",
    )
    got_ac = sorted(
        (
            [pc.context_id for pc in ac.presentation_contexts],
            [pc.result for pc in ac.presentation_contexts],
        )
        for ac in acs
    )
    want_ac = sorted(
        ([int(x, 0) for x in r[0].split("|")], [int(x, 0) for x in r[1].split("|")])
        for r in ac_rows
    )
    assert got_ac == want_ac
    # and on every DIMSE command: command field, message IDs, affected SOP class, priority,
    # data set type, status, and the (hashed) SOP instance
    assert_commands_match_tshark(cmds, pcap, port)


def test_pynetdicom_user_identity_and_rejection(tmp_path: Path) -> None:
    """pynetdicom SCU with username + passcode against a pynetdicom SCP; then a rejected one."""
    from pynetdicom import AE, evt
    from pynetdicom.pdu_primitives import UserIdentityNegotiation
    from pynetdicom.sop_class import CTImageStorage, Verification

    port = free_port()
    scp_ae = AE(ae_title="SECURE_PACS")
    scp_ae.require_called_aet = True
    scp_ae.add_supported_context(Verification)
    scp_ae.add_supported_context(CTImageStorage, DEFLATED)
    stored: list[str] = []

    def on_store(event):  # the SCP really receives the data set
        stored.append(event.dataset.SOPInstanceUID)
        return 0x0000

    server = scp_ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI
    try:
        with capture_lo(tmp_path / "pnd.pcap", [port]) as pcap:
            scu = AE(ae_title="WORKSTATION")
            scu.add_requested_context(Verification)
            scu.add_requested_context(CTImageStorage, DEFLATED)  # the data set travels deflated
            ident = UserIdentityNegotiation()
            ident.user_identity_type = 2
            ident.primary_field = b"dr.house"
            ident.secondary_field = b"vicodin-42"
            assoc = scu.associate("127.0.0.1", port, ae_title="SECURE_PACS", ext_neg=[ident])
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assert assoc.send_c_store(ds).Status == 0
            assoc.release()
            bad = scu.associate("127.0.0.1", port, ae_title="WRONG_AET")
            assert bad.is_rejected
    finally:
        server.shutdown()
    assert stored == [ds.SOPInstanceUID]

    events = scan(pcap)
    rq = next(e for e in of(events, DicomAssociateRequest) if e.called_ae == "SECURE_PACS")
    assert rq.calling_ae == "WORKSTATION" and rq.implementation == "pynetdicom"
    ui = rq.user_identity
    assert ui is not None and ui.identity_type_name == "username-passcode"
    assert ui.username_cleartext and ui.password_present
    assert ui.username_hash and len(ui.username_hash) == 16
    (cred,) = of(events, CleartextCredentials)
    assert cred.protocol == "dicom" and cred.accepted and cred.password_sent
    assert cred.username_hash == ui.username_hash
    (rj,) = of(events, DicomAssociateReject)
    assert (rj.result_name, rj.source_name, rj.reason_name) == (
        "rejected-permanent",
        "service-user",
        "called-ae-title-not-recognized",
    )
    (dset,) = of(events, DicomDataset)
    assert dset.transfer_syntax == DEFLATED and not dset.decode_error
    assert dset.modality == "CT" and dset.station_name == ds.StationName
    assert dset.manufacturer == ds.Manufacturer and "PatientName" in dset.phi_attributes
    # tshark's DICOM dissector reads the same rejection
    (row,) = tshark_fields(
        pcap,
        f"tcp.port=={port},dicom",
        ["dicom.assoc.reject.result", "dicom.assoc.reject.source", "dicom.assoc.reject.reason"],
        "dicom.pdu.type == 3",
    )
    assert [int(x, 0) for x in row] == [rj.result, rj.source, rj.reason]
    assert_commands_match_tshark(of(events, DicomCommand), pcap, port)
    text = all_json(events)
    for value in (*PHI, "dr.house", "vicodin-42", ds.SOPInstanceUID):
        assert value not in text
