"""Identifiers in request paths, query names, User-Agents and MQTT topics never reach the store.

Real traffic on loopback, captured with tcpdump: an http.client sends FHIR and plain web
requests whose paths, query tokens and User-Agent carry a record number and a name (before the
resource type, in a FHIR path without one, "%2F"-encoded, as a matrix parameter, after a
lower-case or an STU3 resource type, as an operation name, as a valueless query token, below
"/patients/"), to an http.server answering in FHIR JSON; a paho-mqtt client connects to
Mosquitto with such a client id and will topic, subscribes to a wildcard filter and publishes
under "patient/<name>". `medsentry scan` stores the captures in SQLite; every row of every
table, every file of the installation, `findings list`, `alerts` and the alert outputs of
`medsentry detect` (JSON lines, syslog, CEF, webhook) are searched for the values. The
structure must remain: resource types, interactions, patient-level flags, topic shapes,
wildcards, the handset model named by a User-Agent.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from netcap import free_port, tcpdump

from medsentry.cli import main as cli

# xdist_group: the modules that build or share live captures on loopback (same addresses, the
# shared Mosquitto broker) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

RECORD = "QJ7731904"  # a medical record number
NAME = "Thistlewood"  # a patient's family name
OTHER = "Quillfeather"  # a word that is no generic path word (a name, a ward's own label)
CLIENT_ADDR = "127.0.0.79"  # own source address: the capture holds only this test's flows
BROKER = ("127.0.0.1", 1883)
FHIR_JSON = "application/fhir+json"
AGENT = f"WardApp/2.3 (patient {RECORD})"
ANDROID = "Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36"

# (path, FHIR Accept header, path as stored, interaction, resource type, patient level)
REQUESTS = [
    (f"/api/{OTHER}/{RECORD}/Patient", True, "/api/{id}/{id}/Patient", "search", "Patient", 1),
    (f"/records/{OTHER}/{RECORD}", True, "/records/{id}/{id}", "search", None, 1),
    (f"/fhir/Patient%2F{RECORD}", True, "/fhir/Patient/{id}", "read", "Patient", 1),
    (f"/fhir/Patient;{OTHER}={RECORD}", True, "/fhir/Patient", "search", "Patient", 1),
    (f"/fhir/patient/{RECORD}", True, "/fhir/Patient/{id}", "read", "Patient", 1),
    (f"/fhir/ProcedureRequest/{RECORD}", True, "/fhir/ProcedureRequest/{id}", "read",
     "ProcedureRequest", 1),
    (f"/fhir/DiagnosticOrder/{RECORD}", True, "/fhir/DiagnosticOrder/{id}", "read",
     "DiagnosticOrder", 1),
    (f"/fhir/${OTHER}", True, "/fhir/${op}", "operation", None, 0),
    (f"/fhir/Patient/{RECORD}/$everything", True, "/fhir/Patient/{id}/$everything", "operation",
     "Patient", 1),
    (f"/fhir/Patient?{NAME}=1&{RECORD}&family={NAME}", True, "/fhir/Patient", "search",
     "Patient", 1),
    (f"/emr/patients/{NAME}-{OTHER}/chart/{RECORD}?mrn={RECORD}", False,
     "/emr/patients/{id}/chart/{id}", None, None, None),
    (f"/lookup?{RECORD}&{NAME}&wsdl", False, "/lookup", None, None, None),
    (f"/export/{NAME}_{RECORD}.pdf", False, "/export/{id}.pdf", None, None, None),
]  # fmt: skip
# what MQTT carries (MQTT 3.1.1 §3.1.3.1 client id, §3.1.3.2 will topic, §4.7 topics)
CLIENT_ID = f"bedside-{RECORD}"
WILL = f"ward3/patient/{NAME}/{RECORD}/status"
FILTER = f"ward3/patient/{RECORD}/{OTHER}/#"
TOPIC = f"ward3/bed12/patient/{NAME}-{RECORD}/spo2"


def needles() -> list[str]:
    out: set[str] = set()
    for v in (RECORD, NAME, OTHER):
        out |= {v, v.upper(), v.lower()}
    return sorted(out)


def leaks(blob: bytes | str) -> list[str]:
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    found = [n for n in needles() if n.encode() in data]
    return found + [n for n in needles() if n.encode("utf-16-le") in data]


class _Server(BaseHTTPRequestHandler):
    """Answers a FHIR request (FHIR Accept) with an empty searchset Bundle (R4 §3.1.0.8),
    any other with a small HTML page."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        fhir = FHIR_JSON in self.headers.get("Accept", "")
        body = b'{"resourceType":"Bundle","type":"searchset","total":0}' if fhir else b"<p>ok</p>"
        self.send_response(200)
        self.send_header("Content-Type", FHIR_JSON if fhir else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _http_traffic(pcap: Path) -> None:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tcpdump(pcap, f"tcp port {port} and host {CLIENT_ADDR}"):
            for fhir in (True, False):  # one connection for the FHIR API, one for the web
                c = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=5, source_address=(CLIENT_ADDR, 0)
                )
                for i, (path, _, *_) in enumerate(r for r in REQUESTS if r[1] == fhir):
                    headers = {"User-Agent": ANDROID if i == 0 and fhir else AGENT}
                    if fhir:
                        headers["Accept"] = FHIR_JSON
                    c.request("GET", path, headers=headers)
                    c.getresponse().read()
                c.close()
    finally:
        server.shutdown()
        server.server_close()


def _mqtt_traffic(pcap: Path) -> bool:
    """False when no broker listens (Mosquitto): the MQTT part is then left out."""
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError:
        return False
    paho = pytest.importorskip("paho.mqtt.client")
    with tcpdump(pcap, f"tcp port 1883 and host {CLIENT_ADDR}"):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=CLIENT_ID)
        c.will_set(WILL, b"offline")
        c.connect(*BROKER, keepalive=30, bind_address=CLIENT_ADDR)
        c.loop_start()
        c.subscribe([(FILTER, 0)])
        time.sleep(0.2)
        c.publish(TOPIC, b'{"spo2": 97}', qos=1).wait_for_publish(5)
        time.sleep(0.3)
        c.disconnect()
        c.loop_stop()
    return True


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], bool]:
    """(installation directory, captures, whether MQTT was captured), scanned once."""
    tmp = tmp_path_factory.mktemp("idtemplates")
    pcaps = [tmp / "http.pcap"]
    _http_traffic(pcaps[0])
    mqtt = _mqtt_traffic(tmp / "mqtt.pcap")
    if mqtt:
        pcaps.append(tmp / "mqtt.pcap")
    home = tmp / "home"
    home.mkdir()
    r = CliRunner().invoke(
        cli, ["scan", *map(str, pcaps)], env={"MEDSENTRY_HOME": str(home)}, catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert not leaks(r.output)
    return home, pcaps, mqtt


def _cli(home: Path, *args: str) -> str:
    r = CliRunner().invoke(cli, list(args), env={"MEDSENTRY_HOME": str(home)})
    assert r.exit_code == 0, r.output
    return r.output


def _rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type='table'")]
        return {t: con.execute(f'select * from "{t}"').fetchall() for t in tables}
    finally:
        con.close()


def _events(db: Path, kind: str) -> list[dict]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select payload from events where kind = ?", (kind,)).fetchall()
    finally:
        con.close()
    return [json.loads(p) for (p,) in rows]


def test_no_identifier_in_any_row_or_file(scanned: tuple[Path, list[Path], bool]) -> None:
    home, pcaps, _ = scanned
    for pcap in pcaps:  # the traffic did carry them
        assert RECORD.encode() in pcap.read_bytes()
    db = home / "medsentry.db"
    rows = _rows(db)
    assert rows["events"], "nothing was stored"
    for table, content in rows.items():
        for row in content:
            assert not leaks(repr(row)), f"identifier in {table}: {row!r}"
    for f in home.rglob("*"):
        if f.is_file():
            assert not leaks(f.read_bytes()), f"identifier in {f.name}"


def test_fhir_structure_remains(scanned: tuple[Path, list[Path], bool]) -> None:
    home, _, _ = scanned
    db = home / "medsentry.db"
    reqs = sorted(_events(db, "http_request"), key=lambda e: e["ts_ns"])
    assert [r["path"] for r in reqs] == [p for _, _, p, *_ in REQUESTS]
    assert reqs[0]["user_agent"] == ANDROID
    assert {r["user_agent"] for r in reqs[1:]} == {"WardApp/2.3 (patient {id})"}
    params = [r["query_params"] for r in reqs]
    assert params[9] == ["{param}", "{value}", "family"]  # FHIR R4 §3.1.1.4 codes only
    assert params[10] == ["mrn"] and params[11] == ["{value}", "wsdl"]
    fhir = sorted(_events(db, "fhir"), key=lambda e: e["ts_ns"])
    got = [(f["interaction"], f["resource_type"], f["patient_level"]) for f in fhir]
    assert got == [(i, t, bool(lv)) for _, fh, _, i, t, lv in REQUESTS if fh]
    assert [f["path_template"] for f in fhir] == [p for _, fh, p, *_ in REQUESTS if fh]
    assert fhir[8]["operation"] == "$everything" and fhir[7]["operation"] == "${op}"
    assert all(f["patient_data_in_clear"] == f["patient_level"] for f in fhir)


def test_findings_keep_templates(scanned: tuple[Path, list[Path], bool]) -> None:
    home, _, _ = scanned
    out = _cli(home, "findings", "list", "--status", "all", "--format", "json")
    assert not leaks(out)
    assert not leaks(_cli(home, "findings", "list", "--status", "all"))
    notes = {
        e["note"] for f in json.loads(out) if f["type"] == "phi-cleartext" for e in f["evidence"]
    }
    assert {
        "FHIR search /api/{id}/{id}/Patient",
        "FHIR search /records/{id}/{id}",
        "FHIR read /fhir/ProcedureRequest/{id}",
    } <= notes


def test_the_user_agent_still_names_the_handset(scanned: tuple[Path, list[Path], bool]) -> None:
    home, _, _ = scanned
    out = _cli(home, "devices", "--format", "json")
    phone = [d for d in json.loads(out) if d.get("ip") == CLIENT_ADDR or CLIENT_ADDR in str(d)]
    assert phone and any(d.get("model") == "SM-G973F" for d in phone)


def test_mqtt_topics_are_templates(scanned: tuple[Path, list[Path], bool]) -> None:
    home, _, mqtt = scanned
    if not mqtt:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (Mosquitto)")
    db = home / "medsentry.db"
    (conn,) = _events(db, "mqtt_connect")
    assert conn["client_id"] == "bedside-{id}"
    assert conn["will_topic"] == "ward3/patient/{id}/{id}/status"
    (sub,) = _events(db, "mqtt_subscribe")
    assert sub["topic_filters"] == ["ward3/patient/{id}/{id}/#"]
    assert sub["wildcard"] and sub["multi_level_wildcard"]
    topics = {(p["topic"], p["from_client"]) for p in _events(db, "mqtt_publish")}
    assert ("ward3/bed12/patient/{id}/spo2", True) in topics
    out = _cli(home, "alerts", "--format", "json")
    assert not leaks(out) and not leaks(_cli(home, "alerts"))
    (wc,) = [a for a in json.loads(out) if a["rule_id"] == "mqtt.wildcard_subscription"]
    assert wc["detail"]["filters"] == "ward3/patient/{id}/{id}/#"
    assert not leaks(_cli(home, "alerts", "show", wc["alert_id"], "--format", "json"))
    assert not leaks(_cli(home, "alerts", "show", wc["alert_id"]))


def _datagrams(s: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    try:
        while True:
            out.append(s.recv(65536))
            s.settimeout(0.5)
    except TimeoutError:
        return out


class _Webhook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()


def test_alert_outputs_carry_templates(
    scanned: tuple[Path, list[Path], bool], tmp_path: Path
) -> None:
    """`medsentry detect` sends the wildcard-subscription alert to JSON lines, syslog (RFC
    5424), CEF and a webhook: each carries the filter's template, never its values."""
    home, pcaps, mqtt = scanned
    if not mqtt:
        pytest.skip("no MQTT broker on 127.0.0.1:1883 (Mosquitto)")
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in receivers:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    jsonl = tmp_path / "alerts.jsonl"
    try:
        syslog, cef = (f"udp://127.0.0.1:{s.getsockname()[1]}" for s in receivers)
        out = _cli(
            home, "detect", "--ephemeral", "--jsonl", str(jsonl), "--syslog", syslog,
            "--cef", cef, "--webhook", f"http://127.0.0.1:{hook.server_port}/alerts",
            "--format", "json", *map(str, pcaps),
        )  # fmt: skip
        lines = [m.decode() for s in receivers for m in _datagrams(s)]
    finally:
        hook.shutdown()
        hook.server_close()
        for s in receivers:
            s.close()
    sent = [out, jsonl.read_text(), *lines, *(b.decode() for b in _Webhook.bodies)]
    assert all(not leaks(x) for x in sent), [leaks(x) for x in sent]
    assert "ward3/patient/{id}/{id}/#" in jsonl.read_text()
    assert any("ward3/patient/{id}/{id}/#" in b.decode() for b in _Webhook.bodies)
    for fmt in ("1 ", "CEF:0|"):  # syslog and CEF carry rule and title, not the detail
        assert any(fmt in x and "mqtt.wildcard_subscription" in x for x in lines)


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36",
        "Dalvik/2.1.0 (Linux; U; Android 11; Pixel 5 Build/RQ3A.210805.001.A1)",
        "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit",
        "Mozilla/5.0 (Linux; Android 10; SM-G973F Build/QP1A.190711.020; wv) AppleWebKit",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
        "MyChart/10.4.1 CFNetwork/1490.0.4 Darwin/23.2.0",
    ],
)
def test_user_agent_template_identifies_as_the_agent(agent: str) -> None:
    """The inventory reads the same OS, category and model from a User-Agent's template as from
    the User-Agent (data/inventory_fingerprints_network.yaml ua.* rules): platform comments and
    product tokens stay as sent."""
    from medsentry.inventory.fingerprints import load_library
    from medsentry.inventory.identify import identify
    from medsentry.inventory.state import DeviceState
    from medsentry.inventory.taxonomy import taxonomy
    from medsentry.protocols.template import user_agent_template

    def seen(ua: str) -> tuple:
        dev = DeviceState(device_id="mac:9a:00:00:00:00:01", mac="9a:00:00:00:00:01")
        dev.observe("http.user_agent", ua, 1)
        d = identify(dev, load_library(), taxonomy())
        return tuple(getattr(d, a).value if getattr(d, a) else None for a in ("os", "model"))

    assert user_agent_template(agent) == agent
    assert seen(user_agent_template(f"{agent} (patient {RECORD}; mrn {RECORD})")) == seen(agent)
    assert RECORD not in user_agent_template(f"{agent} (patient {RECORD}; mrn {RECORD})")
