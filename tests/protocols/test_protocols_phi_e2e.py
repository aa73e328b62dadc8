"""PHI never leaves the dissector, end to end through the real `medsentry` command.

Real traffic on loopback, captured with tcpdump: dcmtk's storescu sends pydicom's CT_small.dcm
with distinctive patient values to storescp; an MLLP client sends HL7 v2 ADT^A01 / ORU^R01
messages with a distinctive PID to an MLLP server that ACKs them; an HTTP client reads,
searches and creates a FHIR Patient on an HTTP server. `medsentry scan` (a subprocess, table
and JSON output) stores the three captures in SQLite; `medsentry flows` lists them. None of the
patient values, nor their usual encodings (upper/lower case, HL7 components, DICOM PN
components, other date forms), may appear in the database file, any stored event payload, any
command's stdout/stderr, the installation's files (ledger), or any log record of a scan run
in-process at DEBUG level. The scan must also have seen the PHI (presence flags), so the test
cannot pass by dissecting nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "dicom"))

from loopcap import capture_lo, dcmtk, free_port, wait_port  # noqa: E402

from medsentry.cli import main as cli  # noqa: E402
from medsentry.events import encode_json  # noqa: E402
from medsentry.store import iter_events, open_store  # noqa: E402

# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("test_protocols_phi_e2e"),
]

# DICOM (PS3.5 §6.2 PN: family^given^middle^prefix^suffix)
DICOM_FAMILY, DICOM_GIVEN, DICOM_MIDDLE = "Zorblatt", "Quintessa", "Marguerite"
DICOM_NAME = f"{DICOM_FAMILY}^{DICOM_GIVEN}^{DICOM_MIDDLE}"
DICOM_ID = "PX-90817263"
DICOM_OTHER_ID = "OPX-44119922"
DICOM_BIRTH = "19310717"
DICOM_ADDRESS = "17 Wrenfield Crescent"
# HL7 v2 PID (v2.5 §3.4.2): PID-3 CX, PID-5 XPN, PID-7 DTM, PID-11 XAD, PID-13 XTN, PID-19 SSN
HL7_FAMILY, HL7_GIVEN, HL7_MIDDLE = "Vandermolen", "Ottoline", "Prisca"
HL7_ID = "HX-55443322"
HL7_BIRTH = "19440229"
HL7_STREET = "88 Quillborough Lane"
HL7_PHONE = "5550199234"
HL7_SSN = "987-65-4329"
# FHIR R4 Patient
FHIR_ID = "pat-ZX81QW"
FHIR_FAMILY, FHIR_GIVEN = "Brightwater", "Eulalie"
FHIR_BIRTH = "1952-03-14"
FHIR_MRN = "MRN-70312288"


def needles() -> list[str]:
    """Every patient value and its common encodings; each is distinctive enough that it can
    appear in the outputs only by leaking."""
    values = [
        DICOM_NAME, DICOM_FAMILY, DICOM_GIVEN, DICOM_MIDDLE, DICOM_ID, DICOM_OTHER_ID,
        DICOM_BIRTH, DICOM_ADDRESS, "1931-07-17",
        f"{HL7_FAMILY}^{HL7_GIVEN}^{HL7_MIDDLE}", HL7_FAMILY, HL7_GIVEN, HL7_MIDDLE, HL7_ID,
        HL7_BIRTH, "1944-02-29", HL7_STREET, "Quillborough", HL7_PHONE, HL7_SSN, "987654329",
        FHIR_ID, FHIR_FAMILY, FHIR_GIVEN, FHIR_BIRTH, "19520314", FHIR_MRN,
        f"{FHIR_GIVEN} {FHIR_FAMILY}",
    ]  # fmt: skip
    out = set()
    for v in values:
        out |= {v, v.upper(), v.lower()}
    return sorted(out)


def assert_clean(blob: bytes | str, where: str) -> None:
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    found = [n for n in needles() if n.encode() in data]
    found += [n for n in needles() if n.encode("utf-16-le") in data]  # SQLite UTF-16 text
    assert not found, f"PHI in {where}: {found}"


# -- the traffic --------------------------------------------------------------------------------


def dicom_traffic(tmp: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = DICOM_NAME
    ds.PatientID = DICOM_ID
    ds.OtherPatientIDs = DICOM_OTHER_ID
    ds.PatientBirthDate = DICOM_BIRTH
    ds.PatientAddress = DICOM_ADDRESS
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242.1"
    path = tmp / "phi.dcm"
    ds.save_as(path)
    port = free_port()
    incoming = tmp / "incoming"
    incoming.mkdir()
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS", "-od", str(incoming), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        with capture_lo(tmp / "dicom.pcap", [port]) as pcap:
            subprocess.run(
                [
                    dcmtk("storescu"),
                    "-aet",
                    "CT_SCANNER",
                    "-aec",
                    "PACS",
                    "127.0.0.1",
                    str(port),
                    str(path),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
    finally:
        scp.terminate()
        scp.wait(10)
    (stored,) = incoming.iterdir()  # storescp really received the patient's image
    assert pydicom.dcmread(stored).PatientID == DICOM_ID
    return pcap


def hl7_messages() -> list[str]:
    """ADT^A01 and ORU^R01 (HL7 v2.5) about one patient, segments separated by <CR>."""
    pid = (
        f"PID|1||{HL7_ID}^^^HOSP^MR||{HL7_FAMILY}^{HL7_GIVEN}^{HL7_MIDDLE}||{HL7_BIRTH}|F|||"
        f"{HL7_STREET}^^Springfield^IL^62704||^PRN^PH^^^555^{HL7_PHONE[3:]}|||||||{HL7_SSN}"
    )
    adt = [
        "MSH|^~\\&|EHR|GENERAL|ADT_ENGINE|GENERAL|20260101120000||ADT^A01^ADT_A01|CTL-1|P|2.5",
        "EVN|A01|20260101120000",
        pid,
        f"NK1|1|{HL7_FAMILY}^Hieronymus|SPO",
        "PV1|1|I|ICU^12^A",
    ]
    oru = [
        "MSH|^~\\&|MONITOR|ICU|CENTRAL|GENERAL|20260101120500||ORU^R01^ORU_R01|CTL-2|P|2.5",
        pid,
        "OBR|1|||8867-4^Heart rate^LN",
        "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F|||||||MON-0042^PHILIPS",
    ]
    return ["\r".join(adt) + "\r", "\r".join(oru) + "\r"]


class _MllpHandler(socketserver.BaseRequestHandler):
    """MLLP (HL7 v2.5.1 Appendix C): <VT> message <FS><CR>; answers each with an ACK."""

    def handle(self) -> None:
        buf = b""
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b"\x1c\r" in buf:
                frame, buf = buf.split(b"\x1c\r", 1)
                msh = frame.lstrip(b"\x0b").split(b"\r", 1)[0].split(b"|")
                ack = (
                    f"MSH|^~\\&|CENTRAL|GENERAL|{msh[2].decode()}|{msh[3].decode()}|"
                    f"20260101120001||ACK|A-{msh[9].decode()}|P|2.5\rMSA|AA|{msh[9].decode()}\r"
                )
                self.request.sendall(b"\x0b" + ack.encode() + b"\x1c\r")


def hl7_traffic(tmp: Path) -> Path:
    port = free_port()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), _MllpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with (
            capture_lo(tmp / "hl7.pcap", [port]) as pcap,
            socket.create_connection(("127.0.0.1", port), timeout=5) as s,
        ):
            for msg in hl7_messages():
                s.sendall(b"\x0b" + msg.encode() + b"\x1c\r")
                reply = b""
                while not reply.endswith(b"\x1c\r"):
                    reply += s.recv(65536)
                assert b"MSA|AA|" in reply
    finally:
        server.shutdown()
        server.server_close()
    return pcap


PATIENT = {
    "resourceType": "Patient",
    "id": FHIR_ID,
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": FHIR_MRN}],
    "name": [{"family": FHIR_FAMILY, "given": [FHIR_GIVEN], "text": f"{FHIR_GIVEN} {FHIR_FAMILY}"}],
    "birthDate": FHIR_BIRTH,
}


class _FhirHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _reply(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/fhir+json; fhirVersion=4.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if "?" in self.path:
            bundle = {"resourceType": "Bundle", "type": "searchset"}
            self._reply(200, {**bundle, "entry": [{"resource": PATIENT}]})
        else:
            self._reply(200, PATIENT)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(201, PATIENT)


def fhir_traffic(tmp: Path) -> Path:
    import http.client

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _FhirHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    try:
        with capture_lo(tmp / "fhir.pcap", [port]) as pcap:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for method, url, body in (
                ("GET", f"/fhir/Patient/{FHIR_ID}", None),
                ("GET", f"/fhir/Patient?family={FHIR_FAMILY}&birthdate={FHIR_BIRTH}", None),
                ("GET", f"/fhir/Patient?identifier={FHIR_MRN}", None),
                ("POST", "/fhir/Patient", json.dumps(PATIENT)),
            ):
                c.request(method, url, body=body, headers=headers)
                assert FHIR_FAMILY.encode() in c.getresponse().read()
            c.close()
    finally:
        server.shutdown()
        server.server_close()
    return pcap


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("phi")
    pcaps = [dicom_traffic(tmp), hl7_traffic(tmp), fhir_traffic(tmp)]
    return pcaps


# -- the checks ---------------------------------------------------------------------------------


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEDSENTRY_HOME": str(home), "COLUMNS": "200"}
    env.pop("MEDSENTRY_DB", None)
    return subprocess.run(
        ["medsentry", *args],
        capture_output=True,
        env=env,
        timeout=300,
    )


def _files_under(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield p


def test_no_phi_in_store_outputs_files_or_logs(
    captures: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    outputs: dict[str, bytes] = {}
    dbs = []
    for fmt in ("table", "json"):
        db = tmp_path / f"scan-{fmt}.db"
        dbs.append(db)
        res = _run(["scan", *map(str, captures), "--db", f"sqlite:///{db}", "--format", fmt], home)
        assert res.returncode == 0, res.stderr.decode()
        outputs[f"scan --format {fmt} stdout"] = res.stdout
        outputs[f"scan --format {fmt} stderr"] = res.stderr
    summary = json.loads(outputs["scan --format json stdout"])
    assert {"dicom", "hl7-mllp"} <= set(summary["protocols"])
    assert {"http", "fhir"} & set(summary["protocols"])
    for fmt in ("table", "json"):
        res = _run(["flows", "--db", f"sqlite:///{dbs[1]}", "--format", fmt], home)
        assert res.returncode == 0, res.stderr.decode()
        outputs[f"flows --format {fmt} stdout"] = res.stdout
        outputs[f"flows --format {fmt} stderr"] = res.stderr
    assert len(json.loads(outputs["flows --format json stdout"])) >= 3

    # the dissectors saw the patient data: flags and counts only
    with open_store(f"sqlite:///{dbs[1]}") as store:
        events = list(iter_events(store))
    by_kind: dict[str, list] = {}
    for ev in events:
        by_kind.setdefault(type(ev).__name__, []).append(ev)
    (dset,) = by_kind["DicomDataset"]
    assert {"PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs"} <= set(
        dset.phi_attributes
    )
    hl7 = [m for m in by_kind["Hl7Message"] if m.direction == 0]
    assert len(hl7) == 2 and all("PID" in m.phi_segments for m in hl7)
    fhir = by_kind["FhirInteraction"]
    assert {f.interaction for f in fhir} >= {"read", "search", "create"}
    assert all(f.patient_level for f in fhir) and any(f.patient_data_in_clear for f in fhir)
    for ev in events:  # every stored event, decoded back and encoded again
        assert_clean(encode_json(ev), f"stored {type(ev).__name__} event")

    for name, blob in outputs.items():
        assert_clean(blob, name)
    for db in dbs:  # the database files byte by byte (and any journal left beside them)
        for f in db.parent.glob(db.name + "*"):
            assert_clean(f.read_bytes(), f"database file {f.name}")
    for f in _files_under(home):  # ledger, keys, anything the commands wrote
        if f.name != "phi.key":
            assert_clean(f.read_bytes(), f"MEDSENTRY_HOME file {f.relative_to(home)}")

    # every log record of a scan, at DEBUG level, in-process
    caplog.set_level(logging.DEBUG)
    for name in ("numba", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
    db = tmp_path / "inproc.db"
    res = CliRunner().invoke(cli, ["scan", *map(str, captures), "--db", f"sqlite:///{db}", "-q"])
    assert res.exit_code == 0, res.output
    assert caplog.records, "the in-process scan logged nothing at DEBUG"
    assert_clean(res.output, "in-process scan output")
    assert_clean(caplog.text, "log records")
    assert_clean(db.read_bytes(), "in-process database")


def test_captures_really_hold_the_values(captures: list[Path]) -> None:
    """The negative checks above only mean something if the wire carried the values."""
    dicom, hl7, fhir = (p.read_bytes() for p in captures)
    assert DICOM_FAMILY.encode() in dicom and DICOM_BIRTH.encode() in dicom
    assert HL7_FAMILY.encode() in hl7 and HL7_SSN.encode() in hl7
    assert FHIR_FAMILY.encode() in fhir and FHIR_BIRTH.encode() in fhir
