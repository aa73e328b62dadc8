"""Database fixtures: every store test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432


def _pg_admin():
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {exc}".splitlines()[0])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    admin = _pg_admin()
    name = f"medsentry_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def flow(i: int, **over):
    """A plausible FlowRecord number i (distinct flow_id, times, ports)."""
    from medsentry.events import FlowRecord, StreamStats

    fields = dict(
        ts_ns=T0 + i * 1_000_000_000,
        flow_id=f"{i:016x}",
        last_ns=T0 + i * 1_000_000_000 + 250_000_000,
        transport="tcp",
        ip_version=4,
        client=f"10.0.0.{i % 200 + 1}",
        server="10.0.1.5",
        client_port=40000 + i,
        server_port=104,
        client_mac="02:00:00:00:00:01",
        server_mac="02:00:00:00:00:02",
        packets_c2s=10 + i,
        packets_s2c=8,
        bytes_c2s=1000 + i,
        bytes_s2c=600,
        payload_c2s=500,
        payload_s2c=200,
        tcp_flags_c2s=0x1B,
        tcp_flags_s2c=0x1B,
        iat_mean_us=12.5,
        iat_std_us=3.25,
        iat_min_us=1.0,
        iat_max_us=40.0,
        end_reason="fin",
        app_protocol="dicom",
        app_method="signature",
        app_confidence=1.0,
        stream_c2s=StreamStats(bytes_in_order=500, retransmitted_segments=1),
        stream_s2c=StreamStats(bytes_in_order=200, gaps=1, gap_bytes=12),
    )
    fields.update(over)
    return FlowRecord(**fields)


@pytest.fixture
def make_flow():
    return flow


# -- real captures made on the loopback interface -------------------------------------------


def _free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcpdump(out: Path, bpf: str):
    """Start tcpdump on lo and return once it is listening."""
    import shutil
    import subprocess

    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(out), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    if "listening" not in line:
        proc.kill()
        pytest.skip(f"tcpdump cannot capture on lo: {line.strip()}")
    return proc


def _stop(proc) -> None:
    import signal
    import time

    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)


@dataclass
class LoCapture:
    path: Path
    tcp_port: int  # a DICOM SCP (dcmtk storescp); 3 C-ECHO associations
    udp_port: int  # 4 datagrams from one client socket
    tcp_flows: int = 3
    udp_flows: int = 1


@pytest.fixture(scope="session")
def lo_capture(tmp_path_factory: pytest.TempPathFactory) -> LoCapture:
    """A pcap of real traffic on lo: three DICOM C-ECHO associations (dcmtk) and a UDP exchange."""
    import shutil
    import socket
    import subprocess
    import time

    if shutil.which("/usr/bin/storescp") is None or shutil.which("/usr/bin/echoscu") is None:
        pytest.skip("dcmtk (storescp, echoscu) is not installed")
    tmp = tmp_path_factory.mktemp("lo")
    out = tmp / "lo.pcap"
    tcp_port, udp_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "--aetitle", "PACS", "--output-directory", str(tmp), str(tcp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # wait for the SCP to listen
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", tcp_port)) == 0:
                    break
            time.sleep(0.05)
        dump = _tcpdump(out, f"(tcp port {tcp_port}) or (udp port {udp_port})")
        try:
            for _ in range(3):
                subprocess.run(
                    [
                        "/usr/bin/echoscu",
                        "-aec",
                        "PACS",
                        "-aet",
                        "MODALITY",
                        "127.0.0.1",
                        str(tcp_port),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=20,
                )
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cli,
            ):
                srv.bind(("127.0.0.1", udp_port))
                for i in range(4):
                    cli.sendto(b"ping %d" % i, ("127.0.0.1", udp_port))
                    data, addr = srv.recvfrom(100)
                    srv.sendto(b"pong" + data[4:], addr)
                    cli.recvfrom(100)
        finally:
            _stop(dump)
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    return LoCapture(out, tcp_port, udp_port)
