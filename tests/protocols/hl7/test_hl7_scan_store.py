"""HL7 v2 over MLLP through the real `medsentry scan` into SQLite: every message of a batch is
stored, and no marker value of the traffic reaches a table, the database file or an output.

The capture is real TCP (medsentry.capture.tcpsession: handshake, MSS segmentation, ACKs,
FIN) carrying messages built by hl7apy and batch envelopes written to HL7 v2.5.1 §2.10.3.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from hl7_build import (
    MARKED,
    MARKED_ACK,
    PHI,
    adt_a01,
    mllp,
    oru_r01,
    pdq_query,
    pdq_response,
)

from medsentry.capture.writer import CLIENT, SERVER, FrameLog, Host, TcpSession
from medsentry.cli import main
from medsentry.events.hl7 import Hl7Batch, Hl7Message
from medsentry.store import iter_events, open_store

BATCH_SERVER = "10.30.0.50"
PDQ_SERVER = "10.30.0.51"
MARKED_SERVER = "10.30.0.52"
# the patient values of the messages, and the markers of free text in coded fields
MARKERS = (*PHI, "QX998877", "ZZQX", "QXALPHA")


def batch_frame() -> bytes:
    """BHS, ADT^A01, ADT^A03, ORU^R01, BTS in one MLLP frame (§2.10.3)."""
    a01 = adt_a01("B0001")
    a03 = adt_a01("B0002").replace("ADT^A01^ADT_A01", "ADT^A03^ADT_A01", 1)
    body = "\r".join((a01, a03, oru_r01())) + "\r"
    bhs = "BHS|^~\\&|BATCH_APP|BATCH_FAC|LIS|LAB|20260101123000\r"
    return mllp(bhs + body + "BTS|3\r")


def conversations() -> dict[str, list[tuple[int, bytes]]]:
    """Server address -> what is said on one MLLP connection to it."""
    return {
        BATCH_SERVER: [(CLIENT, batch_frame())],
        PDQ_SERVER: [(CLIENT, mllp(pdq_query())), (SERVER, mllp(pdq_response()))],
        MARKED_SERVER: [(CLIENT, mllp(MARKED)), (SERVER, mllp(MARKED_ACK))],
    }


def write_capture(path: Path) -> Path:
    log = FrameLog()
    client = Host("10.30.0.11", "00:1b:4f:11:22:33")
    t = 1_767_225_600 * 10**9  # 2026-01-01
    for i, (server_ip, said) in enumerate(conversations().items()):
        server = Host(server_ip, f"00:50:56:aa:bb:{i:02x}")
        tcp = TcpSession(log, client, server, 40100 + i, 2575, isn_client=1000, isn_server=9000)
        t = tcp.open(t)
        for direction, data in said:
            t = tcp.exchange(direction, data, t, think_ns=2_000_000)
        t = tcp.close(t + 1_000_000) + 10**9
    log.write(path)
    return path


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The capture scanned with every engine; the outputs of the listing commands."""
    d = tmp_path_factory.mktemp("hl7_store")
    pcap = write_capture(d / "hl7.pcap")
    db = d / "hl7.db"
    url = f"sqlite:///{db}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSENTRY_HOME", str(d / "home"))
    outputs: dict[str, str] = {}
    try:
        runner = CliRunner()
        r = runner.invoke(main, ["scan", str(pcap), "--db", url])
        assert r.exit_code == 0, r.output
        outputs["scan"] = r.output
        for cmd in (["findings", "list"], ["alerts"], ["devices"], ["flows"]):
            for fmt in ("table", "json"):
                r = runner.invoke(main, [*cmd, "--db", url, "--format", fmt])
                assert r.exit_code == 0, r.output
                outputs[f"{' '.join(cmd)} {fmt}"] = r.output
    finally:
        mp.undo()
    return db, outputs


def stored(db: Path) -> list:
    with open_store(f"sqlite:///{db}") as store:
        return list(iter_events(store))


def test_batch_is_stored_as_its_messages(scanned: tuple[Path, dict[str, str]]) -> None:
    db, _ = scanned
    events = [e for e in stored(db) if isinstance(e, (Hl7Batch, Hl7Message))]
    events = [e for e in events if e.endpoints.server == BATCH_SERVER]
    assert Counter(type(e) for e in events) == {Hl7Batch: 1, Hl7Message: 3}
    msgs = sorted((e for e in events if isinstance(e, Hl7Message)), key=lambda e: e.batch_position)
    assert [(m.message_type, m.trigger_event) for m in msgs] == [
        ("ADT", "A01"),
        ("ADT", "A03"),
        ("ORU", "R01"),
    ]
    (b,) = [e for e in events if isinstance(e, Hl7Batch)]
    assert (b.sending_application, b.sending_facility, b.messages, b.declared_messages) == (
        "BATCH_APP",
        "BATCH_FAC",
        3,
        3,
    )


def test_patient_query_is_phi_in_clear(scanned: tuple[Path, dict[str, str]]) -> None:
    """A PDQ query names the patient in QPD; its answer has a Z segment and a ROL."""
    db, outputs = scanned
    msgs = [e for e in stored(db) if isinstance(e, Hl7Message)]
    pdq = sorted((m for m in msgs if m.endpoints.server == PDQ_SERVER), key=lambda m: m.direction)
    assert [m.phi_segments for m in pdq] == [["QPD"], ["QPD", "ROL", "ZPI"]]
    findings = json.loads(outputs["findings list json"])
    phi = [f for f in findings if f["type"] == "phi-cleartext"]
    assert any(PDQ_SERVER in json.dumps(f) for f in phi), phi


def test_coded_fields_reach_the_store_only_as_codes(
    scanned: tuple[Path, dict[str, str]],
) -> None:
    """The implausible heart rate is alerted, its units only as a unit code; MSA-1 that is no
    acknowledgement code and the control ids never appear (the marker test checks them)."""
    db, outputs = scanned
    msgs = [e for e in stored(db) if isinstance(e, Hl7Message)]
    sent, ack = sorted(
        (m for m in msgs if m.endpoints.server == MARKED_SERVER), key=lambda m: m.direction
    )
    assert sent.control_id_hash == ack.ack_control_id_hash is not None
    assert ack.ack_code == "(non-standard)"
    alerts = json.loads(outputs["alerts json"])
    (vital,) = [
        a
        for a in alerts
        if a["rule_id"] == "hl7.impossible_vital" and a["detail"]["codes"] == "8867-4"
    ]
    assert vital["detail"]["units"] == "/min"  # OBX-6 "ZZQXLIVEUNIT^/min": its unit code


def _table_text(db: Path) -> str:
    """Every row of every table, as text."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [repr(row) for t in tables for row in con.execute(f'SELECT * FROM "{t}"')]
    finally:
        con.close()
    return "\n".join(rows)


def test_no_marker_in_tables_database_or_outputs(scanned: tuple[Path, dict[str, str]]) -> None:
    db, outputs = scanned
    assert json.loads(outputs["flows json"])  # the listings really listed something
    places = {"tables": _table_text(db), **outputs}
    raw = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*"))
    for marker in MARKERS:
        for where, text in places.items():
            assert marker.lower() not in text.lower(), f"{marker!r} in {where}"
        for enc in ("utf-8", "utf-16-le"):
            assert marker.encode(enc) not in raw, f"{marker!r} in the database file ({enc})"
