"""Modality Worklist (PS3.4 K.6): the dissector reads the first Scheduled Procedure Step's
Modality and Scheduled Station AE Title from C-FIND identifiers, and nothing else in it.

Live: dcmtk's findscu queries dcmtk's wlmscpfs on lo; checked against tshark's DICOM tag tree."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from loopcap import all_json, capture_lo, dcmtk, free_port, scan, wait_port
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from worklist import PERFORMING_PHYSICIAN, STEPS, findscu_worklist, write_worklist

from medsentry.events.dicom import DicomDataset
from medsentry.protocols.dicom.dataset import summarize

IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
SPS, MODALITY, STATION_AE = 0x00400100, 0x00080060, 0x00400001


def _identifier(implicit: bool, undefined: bool) -> bytes:
    ds = Dataset()
    ds.PatientName = "Quimby^Zyxwvut"
    first, second = Dataset(), Dataset()
    first.Modality, first.ScheduledStationAETitle = "MR", "MR01"
    first.ScheduledPerformingPhysicianName = PERFORMING_PHYSICIAN
    second.Modality = "CT"
    ds.ScheduledProcedureStepSequence = [first, second]
    ds["ScheduledProcedureStepSequence"].is_undefined_length = undefined
    for item in ds.ScheduledProcedureStepSequence:
        item.is_undefined_length_sequence_item = undefined
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize("undefined", [True, False], ids=["undefined-length", "defined-length"])
def test_first_scheduled_step(implicit: bool, undefined: bool) -> None:
    data = _identifier(implicit, undefined)
    assert (b"\xff\xff\xff\xff" in data) == undefined  # PS3.5 §7.5.1 both encodings
    ts = IMPLICIT_LE if implicit else EXPLICIT_LE
    # the performing physician in the step is a person's name (PS3.15 Table E.1-1): flagged
    phi = ["PatientName", "ScheduledPerformingPhysicianName"]
    s = summarize(data, ts, worklist=True)
    assert (s.scheduled_modality, s.scheduled_station_ae_title) == ("MR", "MR01")
    assert s.modality is None and s.phi_attributes == phi and not s.decode_error
    # outside a worklist identifier no value of the sequence is kept
    s = summarize(data, ts)
    assert s.scheduled_modality is None and s.phi_attributes == phi
    # cut inside the second item: what was read whole is kept; when the bytes were the whole
    # data set that is a decode error, when they are a prefix of it (the dissector's bound) not
    for complete in (True, False):
        s = summarize(data[: len(data) - 6], ts, worklist=True, complete=complete)
        assert s.phi_attributes == phi and s.decode_error is complete
        assert (s.scheduled_modality, s.scheduled_station_ae_title) == ("MR", "MR01")


def _tshark_steps(pcap: Path, port: int) -> list[tuple[str | None, str | None]]:
    """(Modality, Scheduled Station AE Title) of the first item of every Scheduled Procedure
    Step Sequence tshark's DICOM dissector shows on `port`, in order."""
    import shutil

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    cmd = [tshark, "-r", str(pcap), "-n", "-o", "dicom.tag_tree:TRUE", "-d"]
    cmd += [f"tcp.port=={port},dicom", "-Y", "dicom", "-T", "pdml"]
    root = ET.fromstring(subprocess.run(cmd, capture_output=True, check=True).stdout)

    def tag_of(node: ET.Element) -> int | None:
        for c in node:
            if c.get("name") == "dicom.tag":
                return int(c.get("show", "0"), 16)
        return None

    def value_of(node: ET.Element) -> str | None:
        for c in node:
            if c.get("name") == "dicom.tag.value.str":
                return c.get("show", "").strip() or None
        return None

    steps = []
    for node in root.iter("field"):
        if tag_of(node) != SPS:
            continue
        item = next((c for c in node if tag_of(c) == 0xFFFEE000), None)
        found = {tag_of(c): value_of(c) for c in (item if item is not None else [])}
        steps.append((found.get(MODALITY), found.get(STATION_AE)))
    return steps


@pytest.mark.slow
def test_findscu_against_wlmscpfs(tmp_path: Path) -> None:
    root = write_worklist(tmp_path / "worklists", "WLM")
    port, findscu = free_port(), dcmtk("findscu")
    scp = subprocess.Popen(
        [dcmtk("wlmscpfs"), "-dfp", str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        with capture_lo(tmp_path / "mwl.pcap", [port]) as pcap:
            for calling, modality in (("MR01", "MR"), ("US02", "")):
                args = findscu_worklist(findscu, calling, "WLM", "127.0.0.1", port, modality)
                subprocess.run(args, check=True, capture_output=True, timeout=60)
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    events = scan(pcap)
    sets = [e for e in events if isinstance(e, DicomDataset)]
    got = [(e.command, e.scheduled_modality, e.scheduled_station_ae_title) for e in sets]
    mr = [(s[2], s[3]) for s in STEPS if s[2] == "MR"]
    assert got == [
        ("C-FIND-RQ", "MR", None),  # the MR's query names its own modality
        *[("C-FIND-RSP", m, ae) for m, ae in mr],
        ("C-FIND-RQ", None, None),  # an open query names none
        *[("C-FIND-RSP", s[2], s[3]) for s in STEPS],  # ... and is answered for every station
    ]
    assert [(e.scheduled_modality, e.scheduled_station_ae_title) for e in sets] == _tshark_steps(
        pcap, port
    )
    # the answers carry the patient: flagged by keyword, never by value
    assert all(e.phi_attributes == ["PatientName"] for e in sets if e.command == "C-FIND-RSP")
    text = all_json(events)
    for value in (*(s[0] for s in STEPS), *(s[1] for s in STEPS), PERFORMING_PHYSICIAN):
        assert value.split("^")[0] not in text
