"""Captures that start in the middle of a real association, or lose a segment of it.

dcmtk's storescu sends pydicom's bundled files to storescp in one association while tcpdump
captures loopback; the mid-association captures are that capture without its first N records
(the records themselves are untouched), the gap capture is it without one segment of a data
set. Each is scanned by the CLI (`python -m medsentry scan`) into SQLite, the events read back
and checked against what was sent and against tshark's DICOM dissector on the same capture.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from loopcap import (
    KEY,
    capture_lo,
    command_as_tags,
    dcmtk,
    free_port,
    instance_hash,
    tshark_command_sets,
    wait_port,
)
from pydicom.data import get_testdata_file

import medsentry
from medsentry.protocols.base import FlowContext

pytestmark = pytest.mark.slow

# CT, MR, ECG waveform, RT plan, US, SR: 2.6 KiB to 314 KiB, in 16 KiB PDUs
FILES = [
    "CT_small.dcm",
    "examples_overlay.dcm",
    "MR_small.dcm",
    "waveform_ecg.dcm",
    "rtplan.dcm",
    "examples_rgb_color.dcm",
    "test-SR.dcm",
]
SRC = str(Path(medsentry.__file__).resolve().parents[1])


@dataclass
class Segment:
    record: int  # index of its record in the capture
    c2s: bool
    offset: int  # stream offset of its first byte
    length: int


@dataclass
class Capture:
    path: Path
    port: int
    records: list[bytes]  # pcap record headers and data, as written by tcpdump
    header: bytes  # pcap global header
    segments: list[Segment]
    c2s: bytes  # the client's stream, reassembled
    sent: list[pydicom.Dataset]
    pdus: list[tuple[int, int, list[tuple[int, int]]]] = field(default_factory=list)

    def write(self, path: Path, keep: list[int]) -> Path:
        path.write_bytes(self.header + b"".join(self.records[i] for i in keep))
        return path


def read_pcap(path: Path) -> tuple[bytes, list[bytes], int]:
    raw = path.read_bytes()
    magic, linktype = struct.unpack_from("<I", raw, 0)[0], struct.unpack_from("<I", raw, 20)[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    records, pos = [], 24
    while pos < len(raw):
        incl = struct.unpack_from("<I", raw, pos + 8)[0]
        records.append(raw[pos : pos + 16 + incl])
        pos += 16 + incl
    return raw[:24], records, linktype


def tcp_payload(record: bytes, linktype: int) -> tuple[int, int, int, bytes]:
    """(source port, destination port, sequence number, payload) of an IPv4 TCP record."""
    frame = record[16:]
    ip = frame[{1: 14, 113: 16, 0: 4}[linktype] :]  # Ethernet, Linux cooked, BSD loopback
    ip_end = struct.unpack_from(">H", ip, 2)[0]
    tcp = ip[(ip[0] & 15) * 4 : ip_end]
    sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
    return sport, dport, seq, tcp[(tcp[12] >> 4) * 4 :]


def walk_pdus(stream: bytes) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """(offset, type, [(offset of the PDV value, message control header)]) of each PDU of a
    whole stream (PS3.8 §9.3.1, §9.3.5.1)."""
    out, pos = [], 0
    while pos + 6 <= len(stream):
        pdu_type, length = stream[pos], struct.unpack_from(">I", stream, pos + 2)[0]
        items, item = [], pos + 6
        while pdu_type == 4 and item < pos + 6 + length:
            items.append((item + 6, stream[item + 5]))
            item += 4 + struct.unpack_from(">I", stream, item)[0]
        out.append((pos, pdu_type, items))
        pos += 6 + length
    assert pos == len(stream)
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    tmp = tmp_path_factory.mktemp("resync")
    port = free_port()
    incoming = tmp / "incoming"
    incoming.mkdir()
    paths = [get_testdata_file(f) for f in FILES]
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "PACS_SCP", "-od", str(incoming), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with capture_lo(tmp / "full.pcap", [port]) as pcap:
            wait_port(port)
            storescu = [dcmtk("storescu"), "-aet", "MODALITY_7", "-aec", "PACS_SCP"]
            subprocess.run(
                [*storescu, "127.0.0.1", str(port), *paths], check=True, capture_output=True
            )
    finally:
        scp.terminate()
        scp.wait(10)
    assert len(list(incoming.iterdir())) == len(FILES)
    header, records, linktype = read_pcap(pcap)
    segments, streams, isn = [], {True: b"", False: b""}, {}
    for i, rec in enumerate(records):
        sport, dport, seq, payload = tcp_payload(rec, linktype)
        if not payload or port not in (sport, dport):
            continue
        c2s = dport == port
        isn.setdefault((c2s, sport), seq)
        offset = (seq - isn[c2s, sport]) & 0xFFFFFFFF
        if offset < len(streams[c2s]):
            continue  # the wait_port probe's connection carries nothing; loopback retransmits none
        assert offset == len(streams[c2s])
        streams[c2s] += payload
        segments.append(Segment(i, c2s, offset, len(payload)))
    cap = Capture(
        pcap,
        port,
        records,
        header,
        segments,
        streams[True],
        [pydicom.dcmread(p, stop_before_pixels=True) for p in paths],
    )
    cap.pdus = walk_pdus(cap.c2s)
    return cap


def scan_events(pcap: Path, tmp: Path) -> list[dict]:
    """`medsentry scan` of the capture into SQLite; its DICOM events, read back."""
    db = tmp / f"{pcap.stem}.db"
    home = tmp / "home"
    keys = home / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys / "phi-hmac.key"
    if not key.exists():  # the installation's PHI key: the one tshark's UIDs are hashed with
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, KEY)
        os.close(fd)
    env = {**os.environ, "MEDSENTRY_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    scan = [sys.executable, "-m", "medsentry", "scan", str(pcap), "--db", f"sqlite:///{db}"]
    subprocess.run(
        [*scan, "-q", "--engines", "none"], check=True, capture_output=True, env=env, timeout=300
    )
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT payload FROM events ORDER BY ts_ns, id").fetchall()
    return [e for e in (json.loads(r[0]) for r in rows) if e["kind"].startswith("dicom")]


def kinds(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind]


def command_starts(cap: Capture) -> list[int]:
    """Offset of the PDU that carries the first fragment of each C-STORE-RQ command set, in
    message ID order (storescu numbers its messages 1, 2, ...)."""
    starts, in_command = [], False
    for offset, _, items in cap.pdus:
        for _, control in items:
            if control & 1 and not in_command:
                starts.append(offset)
            in_command = bool(control & 1) and not control & 2
    assert len(starts) == len(FILES)
    return starts


def check_stores(events: list[dict], cap: Capture, expected: list[int], middle: bool) -> None:
    """Each C-STORE in `expected` (message IDs) reported whole: the request with its SOP class
    and instance, the data set's SOP class and modality, a success response; no data set of
    any other C-STORE (its start was not seen)."""
    key = FlowContext("x", None, KEY).phi_hash  # type: ignore[arg-type]
    cmds = kinds(events, "dicom_dimse")
    rqs = {c["message_id"]: c for c in cmds if c["command"] == "C-STORE-RQ"}
    rsps = {c["message_id_responded"]: c for c in cmds if c["command"] == "C-STORE-RSP"}
    datasets = {d["message_id"]: d for d in kinds(events, "dicom_dataset")}
    assert sorted(rqs) == expected and sorted(datasets) == expected
    for n in expected:
        ds = cap.sent[n - 1]
        rq, data, rsp = rqs[n], datasets[n], rsps[n]
        assert rq["affected_sop_class_uid"] == ds.SOPClassUID == data["sop_class_uid"]
        assert rq["sop_instance_hash"] == key(ds.SOPInstanceUID) == rsp["sop_instance_hash"]
        assert rq["abstract_syntax"] == ds.SOPClassUID
        assert data["modality"] == ds.Modality and not data["decode_error"]
        assert rsp["status"] == 0 and rsp["status_class"] == "success"
        assert rq["seen_from_middle"] is rsp["seen_from_middle"] is data["seen_from_middle"]
        assert rq["seen_from_middle"] is middle
    assert sorted(rsps)[-len(expected) :] == expected  # and the responses to earlier ones
    assert [r["phase"] for r in kinds(events, "dicom_release")] == ["rq", "rp"]


def check_tshark(events: list[dict], pcap: Path, port: int) -> int:
    """Every command set tshark's DICOM dissector decodes on the capture is one we report,
    element by element; returns how many tshark decoded."""
    ours = [(command_as_tags(SimpleNamespace(**c)), c) for c in kinds(events, "dicom_dimse")]
    theirs = tshark_command_sets(pcap, port)
    for tags in theirs:
        key = (tags.get(0x100), tags.get(0x110), tags.get(0x120))
        same = [(m, c) for m, c in ours if (m.get(0x100), m.get(0x110), m.get(0x120)) == key]
        assert len(same) == 1, tags
        mine, cmd = same[0]
        assert mine == {k: v for k, v in tags.items() if k in mine}
        assert cmd["sop_instance_hash"] == instance_hash(tags)
    return len(theirs)


def cuts(cap: Capture) -> dict[str, Segment]:
    """A client segment to start the capture at, for each kind of place it can start at."""
    pdu_at = {offset: items for offset, _, items in cap.pdus}
    first_store = command_starts(cap)[0]
    last_store = command_starts(cap)[-1]
    found: dict[str, Segment] = {}
    for seg in cap.segments:
        if not seg.c2s or not first_store <= seg.offset < last_store:
            continue
        where = max(o for o in pdu_at if o <= seg.offset)
        items = pdu_at[where]
        control = items[0][1] if items else 0
        if seg.offset == where:
            kind = "at a command PDU" if control & 1 else "at a PDU inside a data set"
        elif control & 1:
            kind = "inside a command PDU"
        else:
            kind = "inside a data set PDV"
        found.setdefault(kind, seg)
    return found


def test_capture_starting_mid_association(capture: Capture, tmp_path: Path) -> None:
    """The capture without its first records, starting at each kind of place: every C-STORE
    that starts after the cut is reported with its SOP class, instance and response status,
    and so is every command tshark decodes from the same records."""
    starts = command_starts(capture)
    places = cuts(capture)
    assert set(places) == {
        "at a command PDU",
        "at a PDU inside a data set",
        "inside a command PDU",
        "inside a data set PDV",
    }
    for kind, seg in places.items():
        keep = list(range(seg.record, len(capture.records)))
        pcap = capture.write(tmp_path / f"cut{seg.record}.pcap", keep)
        events = scan_events(pcap, tmp_path)
        expected = [n + 1 for n, s in enumerate(starts) if s >= seg.offset]
        assert len(expected) >= 1, kind
        check_stores(events, capture, expected, middle=True)
        (session,) = kinds(events, "dicom_session")
        following = min(o for o, _, _ in capture.pdus if o >= seg.offset)
        assert session["seen_from_middle"] and not session["desynchronized"], kind
        assert session["resync_skipped_bytes"] == following - seg.offset, kind
        assert not kinds(events, "dicom_associate_rq")  # the AE titles were not seen
        assert check_tshark(events, pcap, capture.port) >= 2 * len(expected), kind


def test_lost_segment_inside_a_data_set(capture: Capture, tmp_path: Path) -> None:
    """The capture without one segment of a data set that spans PDU headers: the stream is
    picked up at the next PDU header after the gap; only that data set goes unreported."""
    starts = command_starts(capture)
    pdus = {o: items for o, _, items in capture.pdus}
    for seg in capture.segments:
        n = sum(s <= seg.offset for s in starts)  # the C-STORE it belongs to
        end = starts[n] if n < len(starts) else len(capture.c2s)
        where = max(o for o in pdus if o <= seg.offset)
        in_data = bool(pdus[where]) and not pdus[where][0][1] & 1
        spans = any(seg.offset < o < seg.offset + seg.length for o in pdus)
        following = min((o for o in pdus if o >= seg.offset + seg.length), default=end)
        if seg.c2s and 1 < n < len(starts) and in_data and spans and following < end:
            break
    else:
        pytest.fail("no segment inside a data set spanning a PDU header")
    keep = [i for i in range(len(capture.records)) if i != seg.record]
    pcap = capture.write(tmp_path / "gap.pcap", keep)
    events = scan_events(pcap, tmp_path)
    everyone = list(range(1, len(FILES) + 1))
    rqs = sorted(c["message_id"] for c in kinds(events, "dicom_dimse") if c["command"] ==
                 "C-STORE-RQ")  # fmt: skip
    assert rqs == everyone
    check_stores(
        [e for e in events if e.get("message_id") != n and e.get("message_id_responded") != n],
        capture,
        [m for m in everyone if m != n],
        middle=False,
    )
    assert n not in {d["message_id"] for d in kinds(events, "dicom_dataset")}
    (session,) = kinds(events, "dicom_session")
    assert session["gaps"] >= 1 and session["resyncs"] == 1 and not session["desynchronized"]
    assert session["partial_messages"] == 1 and not session["seen_from_middle"]
    assert session["resync_skipped_bytes"] == following - seg.offset - seg.length
    assert kinds(events, "dicom_associate_rq")[0]["calling_ae"] == "MODALITY_7"
    check_tshark(events, pcap, capture.port)
