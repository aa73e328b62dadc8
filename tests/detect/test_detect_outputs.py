"""Alert outputs against real receivers on loopback: a UDP and a TCP syslog collector (octet
counting, RFC 6587), an http.server webhook, a JSON lines file; RFC 5424 and CEF checked by
parsing what arrived."""

from __future__ import annotations

import http.server
import json
import re
import socket
import socketserver
import threading
import time
from pathlib import Path

from detect_build import arp_event

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.logs import octet_frames, parse_syslog
from medsentry.detect.outputs import Background, JsonLinesSink, SyslogSink, WebhookSink
from medsentry.detect.rules import build_rules

# RFC 5424 §6: HEADER SP STRUCTURED-DATA [SP MSG]
RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>\[.*?[^\\]\]) (?P<msg>.*)$",
    re.S,
)


def _spoof_alerts(sinks) -> list:
    """Two spoofed addresses: two raised alerts (the second rebinding of each aggregates)."""
    engine = DetectionEngine(build_rules(), sinks=sinks)
    out: dict[str, object] = {}
    for ip in ("10.0.0.1", "10.0.0.2"):
        engine.process([arp_event(0, ip, "02:00:00:00:00:01")])
        for i, mac in ((1, "02:66:66:66:66:66"), (2, "02:00:00:00:00:01")):
            for a in engine.process([arp_event(i, ip, mac)]):
                out[a.alert_id] = a
    engine.close()
    return list(out.values())


def _sd_params(sd: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', sd))


def test_syslog_udp_rfc5424_and_tcp_cef_reach_real_collectors() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    tcp.settimeout(5)
    got_tcp = bytearray()

    def accept() -> None:
        conn, _ = tcp.accept()
        conn.settimeout(5)
        with conn:
            while chunk := conn.recv(65536):
                got_tcp.extend(chunk)

    t = threading.Thread(target=accept)
    t.start()
    sinks = [
        SyslogSink(f"udp://127.0.0.1:{udp.getsockname()[1]}", "rfc5424", hostname="sensor-1"),
        Background(SyslogSink(f"tcp://127.0.0.1:{tcp.getsockname()[1]}", "cef")),
    ]
    alerts = _spoof_alerts(sinks)
    t.join(10)
    raised = {a.alert_id: a for a in alerts}
    assert len(raised) == 2 and all(a.count == 2 for a in alerts)
    datagrams = [udp.recvfrom(65536)[0].decode() for _ in range(len(raised))]
    for d in datagrams:
        m = RFC5424.match(d)
        assert m, d
        sd = _sd_params(m["sd"])
        a = raised[sd["alertId"]]
        pri = int(m["pri"])
        assert pri >> 3 == 4  # facility: security/authorization
        assert pri & 7 == 3 and a.severity == "high"  # severity: error
        assert (m["host"], m["app"], m["msgid"]) == ("sensor-1", "medsentry", "ALERT")
        assert sd["technique"] == a.technique_id and sd["device"] == a.device_id
        # our own RFC 5424 parser (the log input) reads what our output wrote
        ev = parse_syslog(d.encode(), key=b"k" * 32)
        assert ev.format == "rfc5424" and ev.sd_ids == ["medsentry@32473"]
    frames = list(octet_frames(got_tcp))  # RFC 6587 octet counting, nothing left over
    assert len(frames) == len(raised) and not got_tcp
    for f in frames:
        m = RFC5424.match(f.decode())
        assert m
        cef = m["msg"]
        head = re.split(r"(?<!\\)\|", cef)
        assert head[0] == "CEF:0" and head[1:3] == ["medsentry", "medsentry"]
        ext = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", head[7]))
        a = raised[ext["externalId"]]
        assert head[4] == a.rule_id and head[5] == a.title
        assert head[6] == {"critical": "10", "high": "8", "medium": "5"}[a.severity]
        assert ext["cs2"] == a.device_id and ext["cnt"] == "1"
        assert ext["cs1"].startswith(a.technique_id)
    udp.close()
    tcp.close()


def test_webhook_posts_json_to_an_http_server() -> None:
    received: list[tuple[str, dict, str]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body), self.headers["Content-Type"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    srv = socketserver.TCPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = Background(WebhookSink(f"http://127.0.0.1:{srv.server_address[1]}/hooks/medsentry"))
    alerts = _spoof_alerts([hook])
    srv.shutdown()
    srv.server_close()
    assert hook.sent == len({a.alert_id for a in alerts}) and hook.failed == 0
    paths = {p for p, _, _ in received}
    assert paths == {"/hooks/medsentry"}
    assert {r["alert_id"] for _, r, _ in received} == {a.alert_id for a in alerts}
    assert all(ct == "application/json" for _, _, ct in received)
    sample = received[0][1]
    assert {"technique_id", "evidence", "severity", "device_id", "status"} <= set(sample)


def test_unreachable_collector_does_not_stop_detection(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = SyslogSink(f"tcp://127.0.0.1:{port}", "rfc5424")
    hook = WebhookSink(f"http://127.0.0.1:{port}/x", timeout=1)
    jl = JsonLinesSink(tmp_path / "alerts.jsonl")
    t0 = time.monotonic()
    alerts = _spoof_alerts([dead, hook, jl])
    assert time.monotonic() - t0 < 10
    assert dead.failed == len(alerts) and hook.failed == len(alerts)
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["alert_id"] for x in lines] == [a.alert_id for a in alerts]


def test_hostile_alert_text_stays_one_line_in_syslog_and_cef() -> None:
    """A title or device id carrying a newline, ESC or a forged syslog header (an observed name
    an attacker chose) stays inside its one message: controls are shown as escapes."""
    import msgspec

    from medsentry.detect.outputs import format_cef, format_rfc5424

    alert = _spoof_alerts([])[0]
    forged = "pump\n<10>1 2026-01-01T00:00:00Z evil medsentry - ALERT [x] forged\x1b[2J|a=b"
    alert = msgspec.structs.replace(alert, title=forged, device_id=f"ip:{forged}")
    for line in (format_rfc5424(alert, hostname="sensor-1"), format_cef(alert)):
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
    m = RFC5424.match(format_rfc5424(alert, hostname="sensor-1"))
    assert m and "\\x0a<10>1" in m["msg"] and "\\x1b[2J" in m["msg"]
    assert _sd_params(m["sd"])["device"].startswith("ip:pump\\\\x0a<10>1")
    ev = parse_syslog(format_rfc5424(alert, hostname="sensor-1").encode(), key=b"k" * 32)
    assert ev.format == "rfc5424" and ev.sd_ids == ["medsentry@32473"]
    cef = format_cef(alert)
    head = re.split(r"(?<!\\)\|", cef, maxsplit=7)  # a "|" in the extension needs no escape
    assert len(head) == 8 and head[5].startswith("pump <10>1") and "\\\\x1b[2J\\|a=b" in head[5]
    ext = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", head[7]))
    assert ext["msg"].startswith("pump\\n<10>1") and "\\\\x1b[2J|a\\=b" in ext["msg"]
