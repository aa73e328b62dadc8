"""Database fixtures: every store test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from freeport import bound_socket, free_port

_NET = str(Path(__file__).resolve().parents[1] / "protocols" / "net")
if _NET not in sys.path:
    sys.path.insert(0, _NET)  # netcap.py: the tshark reference

# -- real captures made on the loopback interface -------------------------------------------


def _free_port(kind: int) -> int:
    return free_port(kind)


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on `port` (/proc/net/tcp, state 0A = LISTEN)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


_TCPDUMP_LO = ["-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-B", "65536"]


def _tcpdump(out: Path, bpf: str):
    """Start tcpdump on lo and return once it is listening."""
    import shutil
    import subprocess

    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    proc = subprocess.Popen(
        # -B: with -s 0 a ring slot is 256 KiB; the default 2 MiB buffer would hold only 8
        ["tcpdump", *_TCPDUMP_LO, "-w", str(out), bpf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    if "listening" not in line:
        proc.kill()
        pytest.skip(f"tcpdump cannot capture on lo: {line.strip()}")
    return proc


def _stop(proc, out: Path) -> None:
    """Stop tcpdump once the capture file has stopped growing (SIGINT drops unread packets)."""
    import signal
    import time

    deadline, size, since = time.time() + 5, -1, time.time()
    while time.time() < deadline:
        now = out.stat().st_size if out.exists() else 0
        size, since = (now, time.time()) if now != size else (size, since)
        if time.time() - since >= 0.3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, tail = proc.communicate(timeout=10)
    assert "\n0 packets dropped by kernel" in "\n" + tail, f"tcpdump lost packets: {tail}"


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
    tcp_port = _free_port(socket.SOCK_STREAM)
    srv = bound_socket(socket.SOCK_DGRAM)  # the UDP server, bound before the capture and kept
    udp_port = srv.getsockname()[1]
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "--aetitle", "PACS", "--output-directory", str(tmp), str(tcp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # wait for the SCP to listen (no probe connection: its late
            if _listening(tcp_port):  # FIN could land in the capture as an extra flow)
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
            with srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cli:
                for i in range(4):
                    cli.sendto(b"ping %d" % i, ("127.0.0.1", udp_port))
                    data, addr = srv.recvfrom(100)
                    srv.sendto(b"pong" + data[4:], addr)
                    cli.recvfrom(100)
        finally:
            _stop(dump, out)
    finally:
        srv.close()
        scp.terminate()
        scp.wait(timeout=10)
    return LoCapture(out, tcp_port, udp_port)
