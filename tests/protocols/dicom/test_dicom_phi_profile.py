"""Identifying attributes in DICOM data sets (PS3.15 Table E.1-1), live: a pynetdicom SCU stores
data sets whose patient data sits only in attributes outside the patient module's core (telecom,
admission, requesting physician, nested sequences, private elements, groups after 0010) to a
pynetdicom SCP on loopback, in explicit and implicit VR; captured with tcpdump, scanned with the
real pipeline. Only keywords come out, never a value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from loopcap import all_json, capture_lo, free_port, scan
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from medsentry.events.dicom import DicomDataset

pytestmark = pytest.mark.slow

CT, SC = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"
VALUES = (
    "zzqx.patient@example.org",
    "ZZQXREQPHYS",
    "QX998877",
    "ZZQXREFPHYS",
    "QXOTHERID55",
    "ZZQXPATIENT",
    "ZZQXDESC",
    "ZZQXSPSDESC",
)


def _equipment(sop_class: str) -> Dataset:
    """UIDs, Modality and the General Equipment Module: no attribute about a person."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ACME", "Scanner 9"
    ds.StationName, ds.InstitutionName, ds.DeviceSerialNumber = "CT01", "General", "SN-1"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\0\0\0\0"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if sop_class == SC else (ExplicitVRLittleEndian)
    )
    return ds


def _identifying(sop_class: str) -> Dataset:
    ds = _equipment(sop_class)
    ds.add_new(0x00102155, "LT", VALUES[0])  # Patient's Telecom Information
    ds.add_new(0x00321032, "PN", VALUES[1])  # Requesting Physician
    ds.add_new(0x00380010, "LO", VALUES[2])  # Admission ID (group 0038: after 0010)
    ds.ReferringPhysicianName = VALUES[3]
    other = Dataset()
    other.PatientID, other.TypeOfPatientID = VALUES[4], "TEXT"
    ds.OtherPatientIDsSequence = [other]  # the patient ID is only inside the item
    ds.add_new(0x00091010, "LO", "ACME_PRIVATE")  # Private Creator: names no one
    ds.add_new(0x00091011, "LO", f"{VALUES[5]} 19010203")  # private data element
    ds.add_new(0x00191001, "OB", b"\x01" * 20000)  # a large private value, stepped over
    ds.StudyDescription = f"CT HEAD {VALUES[6]}"
    request = Dataset()
    request.ScheduledProcedureStepDescription = VALUES[7]
    ds.RequestAttributesSequence = [request]  # group 0040: far past 0010
    ds.PatientName = ""  # a zero-length value is no patient data
    return ds


def _store(port: int, stored: list[Dataset]) -> None:
    from pynetdicom import AE, evt

    def on_store(event) -> int:
        stored.append(event.dataset)
        return 0

    scp = AE(ae_title="PACS")
    scp.add_supported_context(CT, ExplicitVRLittleEndian)
    scp.add_supported_context(SC, ImplicitVRLittleEndian)
    server = scp.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(CT, ExplicitVRLittleEndian)
        scu.add_requested_context(SC, ImplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", port, ae_title="PACS")
        assert assoc.is_established
        for ds in (_identifying(CT), _equipment(CT), _identifying(SC)):
            assert assoc.send_c_store(ds).Status == 0
        assoc.release()
    finally:
        server.shutdown()


def test_identifying_attributes_anywhere_in_the_data_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    port, stored = free_port(), []
    with capture_lo(tmp_path / "phi.pcap", [port]) as pcap:
        _store(port, stored)
    assert len(stored) == 3  # the SCP really received them
    caplog.set_level(logging.DEBUG)
    events = scan(pcap)
    explicit, clean, implicit = [e for e in events if isinstance(e, DicomDataset)]
    want = [
        "AdmissionID",
        "OtherPatientIDsSequence",
        "PatientID",  # nested in Other Patient IDs Sequence
        "PatientTelecomInformation",
        "PrivateAttributes",
        "ReferringPhysicianName",
        "RequestAttributesSequence",
        "RequestingPhysician",
        "ScheduledProcedureStepDescription",  # nested in Request Attributes Sequence
        "StudyDescription",
    ]
    for dset, ts in ((explicit, ExplicitVRLittleEndian), (implicit, ImplicitVRLittleEndian)):
        assert dset.transfer_syntax == ts and not dset.decode_error
        assert dset.phi_attributes == want
        # the device identity of the top level is still read past the large private value
        assert (dset.manufacturer, dset.station_name, dset.device_serial_number) == (
            "ACME",
            "CT01",
            "SN-1",
        )
    # UIDs, station, institution and serial number are not a person's data (Retain UIDs /
    # Device Identity / Institution Identity Options of PS3.15 Annex E)
    assert clean.phi_attributes == [] and not clean.decode_error
    text = all_json(events) + caplog.text
    for value in VALUES:
        assert value not in text
