"""Alert outputs at the end of a run: a `scan` (and `monitor`) delivers every alert it raised
before the process exits, says which outputs could not deliver, never shows an output's secret,
and refuses a bad output URL with one clear error. Real receivers on loopback, real processes."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsentry.demo.hospital import build
from medsentry.detect.outputs import SyslogSink

EXE = shutil.which("medsentry") or "medsentry"


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo-hospital.pcap"
    build(path)
    return path


class _Hook(http.server.BaseHTTPRequestHandler):
    delay = 0.0
    seen: list[tuple[str, str | None, dict]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)  # a slow collector
        self.seen.append((self.path, self.headers.get("Authorization"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def webhook(delay: float) -> Iterator[tuple[int, list]]:
    seen: list = []
    handler = type("Hook", (_Hook,), {"delay": delay, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _home(tmp_path: Path, outputs: list[dict]) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "detect.yaml").write_text(json.dumps({"outputs": outputs}))  # JSON is YAML
    return home


def _scan(tmp_path: Path, home: Path, pcap: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, "scan", str(pcap), "--db", f"sqlite:///{tmp_path / 's.db'}", "-q", "--format",
         "json"],
        env={**os.environ, "MEDSENTRY_HOME": str(home)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_a_scan_delivers_every_alert_to_a_slow_webhook_before_it_exits(
    tmp_path: Path, demo_pcap: Path
) -> None:
    """The outputs run on a background thread; the process used to exit with most of the
    queue still undelivered (2 of 89 alerts reached a webhook taking 50 ms per request)."""
    with webhook(delay=0.3) as (port, seen):
        home = _home(tmp_path, [{"webhook": f"http://127.0.0.1:{port}/alerts"}])
        proc = _scan(tmp_path, home, demo_pcap)
        arrived = len(seen)  # counted the moment the process is gone
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    raised = summary["engines"]["detect"]["alerts"]
    assert raised >= 3
    assert arrived == raised
    assert summary["alert_delivery_problems"] == []
    assert "warning" not in proc.stderr


def test_alerts_an_output_could_not_deliver_are_told_without_its_secrets(
    tmp_path: Path, demo_pcap: Path
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    with closed:
        home = _home(
            tmp_path,
            [
                {"syslog": f"tcp://127.0.0.1:{port}"},
                {"webhook": f"https://hook:s3cret-pw@127.0.0.1:{port}/services/T0K3N?key=abc"},
            ],
        )
        proc = _scan(tmp_path, home, demo_pcap)
    assert proc.returncode == 0, proc.stderr  # the scan itself is stored
    summary = json.loads(proc.stdout)
    raised = summary["engines"]["detect"]["alerts"]
    problems = summary["alert_delivery_problems"]
    assert problems == [
        line.removeprefix("medsentry: warning: ") for line in proc.stderr.splitlines()
    ]
    assert len(problems) == 2
    assert problems[0].startswith(
        f"alert output syslog tcp://127.0.0.1:{port}: {raised} of {raised} alerts not delivered"
    )
    assert problems[1].startswith(f"alert output webhook https://127.0.0.1:{port}: {raised} of")
    assert all("last error:" in p for p in problems)
    for secret in ("s3cret", "T0K3N", "key=abc", "hook:"):
        assert secret not in proc.stderr + proc.stdout


def test_credentials_in_a_webhook_url_are_sent_as_basic_auth(
    tmp_path: Path, demo_pcap: Path
) -> None:
    with webhook(delay=0.0) as (port, seen):
        home = _home(tmp_path, [{"webhook": f"http://siem:p%40ss@127.0.0.1:{port}/in?t=1"}])
        proc = _scan(tmp_path, home, demo_pcap)
    assert proc.returncode == 0, proc.stderr
    assert seen and {(path, auth) for path, auth, _ in seen} == {
        ("/in?t=1", "Basic " + base64.b64encode(b"siem:p@ss").decode())
    }


@pytest.mark.parametrize(
    "output",
    [
        {"syslog": "udp://127.0.0.1:99999"},
        {"syslog": "udp://[::1"},
        {"cef": "tcp://collector:port"},
        {"webhook": "http://"},
        {"webhook": "https://siem.example:70000/in"},
        {"jsonl": ""},
    ],
    ids=["port-range", "broken-ipv6", "port-text", "no-host", "webhook-port", "empty-path"],
)
def test_a_bad_output_is_one_clear_error_before_anything_is_scanned(
    tmp_path: Path, demo_pcap: Path, output: dict
) -> None:
    proc = _scan(tmp_path, _home(tmp_path, [output]), demo_pcap)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsentry: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_syslog_over_udp_reaches_an_ipv6_collector(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        rx.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback address")
    rx.settimeout(5)
    with rx:
        from test_detect_outputs import _spoof_alerts

        sink = SyslogSink(f"udp://[::1]:{rx.getsockname()[1]}")
        alerts = _spoof_alerts([sink])
        got = [rx.recv(65535) for _ in alerts]
    assert sink.sent == len(alerts) and sink.failed == 0
    assert all(m.startswith(b"<") and b"medsentry" in m for m in got)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="live capture on lo needs Linux and root (CAP_NET_RAW)",
)
def test_a_live_sessions_learned_state_is_saved_when_it_ends(tmp_path: Path) -> None:
    """`monitor` stores the detection state at its first batch and then every 30 s; what it
    learned after the last save used to be lost when the session ended."""
    from medsentry.detect.store import load_states
    from medsentry.store import open_store

    db = f"sqlite:///{tmp_path / 'm.db'}"
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [EXE, "monitor", "-i", "lo", "--duration", "4", "--bpf", "host 127.0.9.3", "--db", db,
         "--engines", "detect", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "MEDSENTRY_HOME": str(home)},
    )  # fmt: skip
    # DNS queries (RFC 1035 §4.1): each one an event the engine sees as it arrives, so the
    # engine's clock moves on through the whole session
    deadline = time.monotonic() + 60
    line = b""
    while time.monotonic() < deadline and b"capturing on lo" not in line:
        if select.select([proc.stderr], [], [], 1)[0]:
            line = proc.stderr.readline()
            if not line:
                break
    assert b"capturing on lo" in line, line
    header = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)  # RD, one question
    question = struct.pack(">HH", 1, 1)  # type A, class IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.bind(("127.0.9.3", 0))
        k = 0
        while proc.poll() is None and time.monotonic() < deadline:
            select.select([], [], [], 0.05)
            k += 1
            name = f"h{k}".encode()  # a new name each time: not a repeat of an earlier one
            query = header + bytes([len(name)]) + name + b"\x07example\x00" + question
            with contextlib.suppress(OSError):
                tx.sendto(query, ("127.0.9.4", 53))  # until the very end of the session
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    with open_store(db) as store, store.engine.connect() as conn:
        engine_state = load_states(store)["_engine"]
        last_ts, n = conn.exec_driver_sql(
            "SELECT MAX(ts_ns), COUNT(*) FROM events WHERE kind = 'dns'"
        ).one()
    assert n >= 20, (out, err)
    # saved when the session ended: the state has seen the last query
    assert engine_state["now_ns"] >= last_ts


@pytest.mark.parametrize(
    "text",
    ["learning_period_s: true", "learning_period_s: -1", "learning_period_s: 1.5e3",
     "outputs: [{syslog: x, webhook: y}]", "outputs: [[1]]", "alerts: []", "- 1"],
)  # fmt: skip
def test_a_bad_detect_yaml_is_one_clear_error(tmp_path: Path, demo_pcap: Path, text: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "detect.yaml").write_text(text + "\n")
    proc = _scan(tmp_path, home, demo_pcap)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsentry: error: "), proc.stderr
    assert "detect.yaml" in lines[0]


def test_a_hung_collector_delays_the_end_by_the_timeout_and_its_alerts_are_counted() -> None:
    from test_detect_outputs import _spoof_alerts

    from medsentry.detect.outputs import Background, WebhookSink, delivery_problems

    alerts = _spoof_alerts([])
    with webhook(delay=3.0) as (port, seen):
        out = Background(WebhookSink(f"http://127.0.0.1:{port}/x", timeout=10))
        for a in alerts:
            out.send(a)
        t0 = time.monotonic()
        out.close(timeout=1.0)
        waited = time.monotonic() - t0
        (line,) = delivery_problems([out])
    assert 0.9 < waited < 2.5
    n = len(alerts)
    assert line == (
        f"alert output webhook http://127.0.0.1:{port}: {n} of {n} alerts not delivered"
        f" ({n} still queued at exit)"
    )
    assert len(seen) <= 1
