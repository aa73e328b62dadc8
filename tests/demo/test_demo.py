"""The demo capture: valid for tshark, real DICOM and HL7 inside, scanned by `medsentry demo`."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import struct
import subprocess
from collections import Counter
from io import BytesIO
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pynetdicom.dsutils import decode

from medsentry.demo.hospital import PATIENTS, build

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
# Wireshark 4.0 does not follow RDP's switch to TLS after the X.224 negotiation
# (MS-RDPBCGR §1.3.1.1); tell it so that the TLS records are not taken for TPKT.
RDP_AS_TLS = ("-d", "tcp.port==3389,tls")


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    build(path, seed=0)
    return path


def _tshark(*args: str) -> str:
    assert TSHARK is not None
    res = subprocess.run([TSHARK, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_same_seed_same_capture(demo_pcap: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again.pcap", tmp_path / "other.pcap"
    build(again, seed=0)
    build(other, seed=1)
    assert again.read_bytes() == demo_pcap.read_bytes()
    assert other.read_bytes() != demo_pcap.read_bytes()


@needs_tshark
def test_tshark_reads_it_without_errors(demo_pcap: Path) -> None:
    bad = _tshark(
        "-r", str(demo_pcap), *RDP_AS_TLS,
        "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
        "-o", "ip.check_checksum:TRUE",
        "-Y", "tcp.checksum.status==0 or ip.checksum.status==0 or udp.checksum.status==0"
              " or _ws.malformed or _ws.expert.severity>=warning",
    )  # fmt: skip
    assert bad.strip() == ""
    phs = _tshark("-r", str(demo_pcap), *RDP_AS_TLS, "-q", "-z", "io,phs")
    for proto in ("vlan", "dhcp", "dns", "ntp", "snmp", "syslog", "hl7", "http", "tls", "ssh"):
        assert f" {proto} " in phs, proto


@needs_tshark
def test_tshark_sees_the_dicom_messages(demo_pcap: Path) -> None:
    out = _tshark(
        "-r", str(demo_pcap), "-d", "tcp.port==104,dicom", "-Y", "dicom",
        "-T", "fields", "-e", "_ws.col.Info",
    )  # fmt: skip
    info = out.splitlines()
    count = Counter()
    for line in info:
        for what in (
            "A-ASSOCIATE request", "A-ASSOCIATE accept", "C-ECHO-RQ", "C-ECHO-RSP",
            "C-FIND-RQ", "C-FIND-RSP", "C-STORE-RQ", "C-STORE-RSP", "CT Image Storage",
            "A-RELEASE request", "A-RELEASE response",
        ):  # fmt: skip
            count[what] += what in line
    assert count["A-ASSOCIATE request"] == count["A-ASSOCIATE accept"] == 3
    assert count["C-ECHO-RQ"] == count["C-ECHO-RSP"] == 1
    assert count["C-FIND-RQ"] == 1 and count["C-FIND-RSP"] == 3  # two matches, then success
    assert count["C-STORE-RQ"] == count["C-STORE-RSP"] == count["CT Image Storage"] == 3
    assert count["A-RELEASE request"] == count["A-RELEASE response"] == 3


def _pdv_data(stream: bytes) -> list[bytes]:
    """Dataset fragments of the P-DATA-TF PDUs in one direction (PS3.8 §9.3.5, Annex E.2)."""
    datasets, current, pos = [], bytearray(), 0
    while pos + 6 <= len(stream):
        pdu_type, length = stream[pos], struct.unpack_from("!I", stream, pos + 2)[0]
        body = stream[pos + 6 : pos + 6 + length]
        pos += 6 + length
        if pdu_type != 0x04:
            continue
        item = 0
        while item + 6 <= len(body):
            item_len = struct.unpack_from("!I", body, item)[0]
            header, value = body[item + 5], body[item + 6 : item + 4 + item_len]
            item += 4 + item_len
            if header & 0x01:  # command fragment
                continue
            current += value
            if header & 0x02:  # last fragment
                datasets.append(bytes(current))
                current = bytearray()
    return datasets


@needs_tshark
def test_stored_images_are_ct_small_with_synthetic_patient(demo_pcap: Path) -> None:
    convs = _tshark(
        "-r",
        str(demo_pcap),
        "-Y",
        "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==104",
        "-T",
        "fields",
        "-e",
        "tcp.stream",
    ).split()
    store_stream = convs[-1]  # the third association is the storage one
    out = _tshark("-r", str(demo_pcap), "-q", "-z", f"follow,tcp,raw,{store_stream}")
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1]
    c2s = b"".join(
        bytes.fromhex(x) for x in body.splitlines() if x.strip() and not x.startswith(("\t", "="))
    )
    sets = _pdv_data(c2s)
    assert len(sets) == 3
    original = dcmread(get_testdata_file("CT_small.dcm"))
    for i, raw in enumerate(sets, 1):
        ds = decode(BytesIO(raw), False, True)  # Explicit VR Little Endian
        assert str(ds.PatientName) == f"{PATIENTS[0].family}^{PATIENTS[0].given}"
        assert ds.PatientID == PATIENTS[0].mrn
        assert ds.InstanceNumber == i
        assert ds.PixelData == original.PixelData
        assert str(original.PatientName) != str(ds.PatientName)


@needs_tshark
def test_tshark_sees_the_hl7_messages(demo_pcap: Path) -> None:
    out = _tshark(
        "-r", str(demo_pcap), "-Y", "hl7", "-T", "fields",
        "-e", "hl7.message.type", "-e", "hl7.event.type",
    )  # fmt: skip
    kinds = Counter(tuple(line.split("\t")) for line in out.splitlines())
    assert kinds[("ADT", "A01")] == 4
    assert kinds[("ORU", "R01")] == 2 + 4 * 11  # lab results + 4 monitors x 11 vitals
    assert kinds[("ACK", "A01")] == 4 and kinds[("ACK", "R01")] == 46


def test_bad_out_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from medsentry.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = CliRunner().invoke(
        main, ["demo", "--out", str(blocker / "sub"), "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert res.exit_code == 2
    assert "error" in res.output and "Traceback" not in res.output


@pytest.mark.skipif(
    importlib.util.find_spec("medsentry.pipeline") is None, reason="no scan pipeline yet"
)
def test_demo_command_scans_and_finds_the_protocols(tmp_path: Path) -> None:
    from medsentry.cli import main

    db = tmp_path / "demo.db"
    args = ["demo", "--out", str(tmp_path), "--db", f"sqlite:///{db}", "--seed", "0"]
    res = CliRunner().invoke(main, [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = msgspec.json.decode(res.stdout)
    protocols = summary["protocols"]
    for proto in ("dicom", "hl7-mllp", "tls", "http", "dns", "ntp", "dhcp", "snmp", "ssh"):
        assert protocols.get(proto, 0) > 0, (proto, protocols)
    assert protocols["dicom"] == 3
    rows = {(r["protocol"], r["transport"]): r for r in summary["flows_per_protocol"]}
    assert rows[("dicom", "tcp")]["server_ports"] == "104"
    assert rows[("hl7-mllp", "tcp")]["flows"] == 6
    assert summary["packets"] == summary["demo"]["written_packets"]
    # no synthetic patient value reached the database (PHI stays in the dissector)
    con = sqlite3.connect(db)
    dump = "\n".join(con.iterdump())
    for p in PATIENTS:
        assert p.mrn not in dump and p.given not in dump
    # a second run stores nothing twice; the table output prints the per-protocol table
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "flows per protocol" in res.stdout
    n = con.execute("select count(*) from flows").fetchone()[0]
    assert n == summary["flows"]
