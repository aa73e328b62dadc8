"""`medsentry monitor` on the loopback interface with real traffic; stops and failures."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from freeport import bound_socket
from medsentry.cli import main
from medsentry.store import iter_events, list_captures, list_flows, open_store

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="live capture on lo needs Linux and root (CAP_NET_RAW)",
)


def _medsentry() -> list[str]:
    exe = shutil.which("medsentry")
    return [exe] if exe else [sys.executable, "-c", "from medsentry.cli import main; main()"]


def _start(args: list[str], home: Path) -> subprocess.Popen:
    """Start `medsentry monitor ...` and return once it says it is capturing."""
    proc = subprocess.Popen(
        [*_medsentry(), "monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MEDSENTRY_HOME": str(home)},
    )
    deadline = time.monotonic() + 60
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            line = proc.stderr.readline()
            if b"capturing on lo" in line or not line:
                break
    if b"capturing on lo" not in line:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"monitor did not start: {line!r} {err!r}")
    return proc


def _udp_exchange(srv: socket.socket, n: int = 5) -> None:
    port = srv.getsockname()[1]
    with srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cli:
        for i in range(n):
            cli.sendto(b"req %d" % i, ("127.0.0.1", port))
            data, addr = srv.recvfrom(100)
            srv.sendto(b"rsp" + data[3:], addr)
            cli.recvfrom(100)


def _tcp_exchange(
    srv: socket.socket, request: bytes = b"hello server", response: bytes = b"hello client"
) -> None:
    port = srv.getsockname()[1]
    with srv:
        srv.listen(1)
        with socket.create_connection(("127.0.0.1", port)) as cli:
            conn, _ = srv.accept()
            with conn:
                cli.sendall(request)
                conn.recv(1000)
                conn.sendall(response)
                cli.recv(1000)
                cli.shutdown(socket.SHUT_WR)
                conn.recv(1000)


def _servers() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP server socket, each bound when its port is chosen (no window in which
    another test's socket can take the port)."""
    return bound_socket(socket.SOCK_DGRAM), bound_socket(socket.SOCK_STREAM)


def test_monitor_with_duration_stores_live_flows(db_url, tmp_path) -> None:
    udp_srv, tcp_srv = _servers()
    udp, tcp = udp_srv.getsockname()[1], tcp_srv.getsockname()[1]
    bpf = f"udp port {udp} or tcp port {tcp}"
    proc = _start(
        ["-i", "lo", "--duration", "4", "--bpf", bpf, "--db", db_url, "--format", "json"],
        tmp_path / "home",
    )
    _udp_exchange(udp_srv)
    _tcp_exchange(tcp_srv)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    summary = json.loads(out)
    assert summary["flows"] == 2 and summary["packets"] >= 10 + 6
    assert summary["kernel_drops"] == 0
    [cap] = summary["captures"]
    assert cap["format"] == "live" and cap["source"] == "live:lo"
    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["status"] == "stopped" and row["capture_id"] == cap["capture_id"]
        flows = {f["transport"]: f for f in list_flows(store)}
        assert flows["udp"]["server_port"] == udp and flows["udp"]["packets"] == 10
        assert (
            flows["tcp"]["server_port"] == tcp and flows["tcp"]["capture_id"] == cap["capture_id"]
        )


def test_monitor_flows_only_labels_without_dissecting(tmp_path) -> None:
    """--flows-only live: the HTTP flow is identified and stored, no HTTP event is, and the
    session's row says depth "flows"."""
    db_url = f"sqlite:///{tmp_path / 's.db'}"
    srv = bound_socket(socket.SOCK_STREAM)
    port = srv.getsockname()[1]
    proc = _start(
        ["-i", "lo", "--duration", "3", "--bpf", f"tcp port {port}", "--db", db_url,
         "--format", "json", "--flows-only", "--engines", "none"],
        tmp_path / "home",
    )  # fmt: skip
    _tcp_exchange(
        srv,
        b"GET /status HTTP/1.1\r\nHost: pump-7\r\nUser-Agent: t/1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["protocols"] == {"http": 1}
    assert summary["captures"][0]["depth"] == "flows"
    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["depth"] == "flows"
        kinds = {type(e).__struct_config__.tag for e in iter_events(store)}
        assert kinds == {"protocol"}


def test_ctrl_c_stops_cleanly_with_summary(tmp_path) -> None:
    """Ctrl-C while traffic still flows: the open flow is ended, stored, and summarized."""
    srv = bound_socket(socket.SOCK_DGRAM)
    udp = srv.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'live.db'}"
    proc = _start(["-i", "lo", "--bpf", f"udp port {udp}", "--db", db], tmp_path / "home")
    with srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cli:
        end, interrupted = time.monotonic() + 4, False
        while time.monotonic() < end:  # one datagram every 20 ms, through the interrupt
            cli.sendto(b"tick", ("127.0.0.1", udp))
            srv.recvfrom(100)
            time.sleep(0.02)
            if not interrupted and time.monotonic() > end - 1:
                proc.send_signal(signal.SIGINT)
                interrupted = True
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    assert b"scan summary" in out and b"stopped" in out
    with open_store(db) as store:
        [row] = list_captures(store)
        [flow] = list_flows(store)
        assert row["status"] == "stopped" and row["flows"] == 1
        assert row["packets"] == flow["packets"] > 0
        assert flow["server_port"] == udp and flow["transport"] == "udp"


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["monitor", *args])
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "nosuchif0", "--duration", "1"], "nosuchif0: no such network interface"),
        (["-i", "lo", "--bpf", "port notaport", "--duration", "1"], "invalid BPF filter"),
        (["-i", "lo", "--duration", "0"], "--duration 0.0 must be a positive number"),
        (["-i", "lo", "--db", "postgresql://u@127.0.0.1:1/x"], "cannot open database"),
    ],
)
def test_monitor_errors_are_one_line(tmp_path, args, message) -> None:
    code, out, err = _run(*args)
    assert code == 2
    assert err.startswith("medsentry: error: ") and err.count("\n") == 1
    assert message in err and "Traceback" not in out + err


def test_without_cap_net_raw(tmp_path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    proc = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-net_raw",
            "--bounding-set=-net_raw",
            "--",
            *_medsentry(),
            "monitor",
            "-i",
            "lo",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "medsentry: error: lo: live capture needs root or CAP_NET_RAW"
