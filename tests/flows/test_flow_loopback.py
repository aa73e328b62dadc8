"""End to end on real traffic: Python sockets over loopback, captured by tcpdump, scanned by the
pipeline; reassembled bytes must equal what was sent, counts must agree with tshark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import pytest

from freeport import free_port
from medsentry.events.flow import FlowRecord
from medsentry.pipeline import Pipeline, ScanConfig

pytestmark = pytest.mark.skipif(
    shutil.which("tcpdump") is None or shutil.which("tshark") is None or os.geteuid() != 0,
    reason="needs tcpdump and tshark, and root to capture on lo",
)

REQUEST = b"POST /upload HTTP/1.1\r\nHost: modality\r\nContent-Length: 300000\r\n\r\n"


class Recorder:
    protocol = "recorder"
    whole_stream = True
    made: ClassVar[list[Recorder]] = []

    def __init__(self, ctx):
        self.ctx = ctx
        self.data = [bytearray(), bytearray()]
        self.gaps = 0
        Recorder.made.append(self)

    def feed(self, direction, data, ts_ns):
        self.data[direction] += data
        return ()

    def gap(self, direction, length, ts_ns):
        self.gaps += 1
        return ()

    def close(self, ts_ns):
        return ()


def _free_port() -> int:
    return free_port()


def _capture(path: Path, port: int, traffic) -> None:
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "-U",
            "-n",
            "-B",
            "65536",
            "-s",
            "0",
            "-w",
            str(path),
            f"tcp port {port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stderr.readline()  # "listening on lo, ..."
        if b"listening" not in line:
            pytest.skip(f"tcpdump cannot capture on lo: {line.decode(errors='replace')}")
        time.sleep(0.2)
        traffic()
        time.sleep(1.0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    tail = proc.stderr.read().decode(errors="replace")
    assert "\n0 packets dropped by kernel" in "\n" + tail, tail


def _run_traffic(port: int, body: bytes, response: bytes, pieces: int):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    received: list[bytes] = []

    def serve():
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                got = bytearray()
                while len(got) < len(REQUEST) + len(body):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                received.append(bytes(got))
                step = max(1, len(response) // pieces)
                for k in range(0, len(response), step):  # many small writes
                    conn.sendall(response[k : k + step])
                conn.shutdown(socket.SHUT_WR)

    th = threading.Thread(target=serve)
    th.start()

    def traffic():
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(REQUEST + body)
                got = bytearray()
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                assert bytes(got) == response
        th.join(timeout=10)

    return traffic, received, srv


def _tshark_conv(path: Path) -> dict[tuple[int, int], tuple[int, int]]:
    """(client port, server port) -> (frames, frames total) from `tshark -z conv,tcp`."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-q", "-z", "conv,tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conv = {}
    for line in out.splitlines():
        if "<->" not in line:
            continue
        left, right = line.split("<->")
        a_port = int(left.split()[0].rsplit(":", 1)[1])
        fields = right.split()
        b_port = int(fields[0].rsplit(":", 1)[1])
        # | <- frames bytes unit | -> frames bytes unit | total frames bytes unit | ...
        frames_ba, frames_ab, frames_total = int(fields[1]), int(fields[4]), int(fields[7])
        conv[tuple(sorted((a_port, b_port)))] = (frames_ab, frames_ba, frames_total)
    return conv


def _tshark_bytes(path: Path) -> dict[tuple[int, int], int]:
    """(src port, dst port) -> sum of IP total length, from tshark's per-packet fields."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "ip.len",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total: dict[tuple[int, int], int] = defaultdict(int)
    for line in out.splitlines():
        sp, dp, ln = line.split("\t")
        total[(int(sp), int(dp))] += int(ln)
    return total


def test_loopback_tcp_reassembles_exactly_and_matches_tshark(tmp_path):
    Recorder.made.clear()
    port = _free_port()
    body = os.urandom(300_000)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 500000\r\n\r\n" + os.urandom(500_000)
    traffic, received, srv = _run_traffic(port, body, response, pieces=2000)
    path = tmp_path / "lo.pcap"
    try:
        _capture(path, port, traffic)
    finally:
        srv.close()
    assert received == [REQUEST + body] * 2

    events: list = []
    calls = []
    pipe = Pipeline(ScanConfig(phi_key=b"k"), dissector_lookup=lambda proto: Recorder)
    stats = pipe.scan_files([path], lambda evs: (calls.append(len(evs)), events.extend(evs)))
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert len(flows) == 2 and stats.flows == 2 and stats.hosts == 1
    assert len(Recorder.made) == 2
    for rec in Recorder.made:
        assert bytes(rec.data[0]) == REQUEST + body
        assert bytes(rec.data[1]) == response
        assert rec.gaps == 0

    conv = _tshark_conv(path)
    ip_bytes = _tshark_bytes(path)
    for f in flows:
        assert f.server_port == port and f.app_protocol == "http"
        frames_c2s, frames_s2c, total = conv[tuple(sorted((f.client_port, f.server_port)))]
        assert {f.packets_c2s, f.packets_s2c} == {frames_c2s, frames_s2c}
        assert f.packets_c2s + f.packets_s2c == total
        assert f.bytes_c2s == ip_bytes[(f.client_port, f.server_port)]
        assert f.bytes_s2c == ip_bytes[(f.server_port, f.client_port)]
        assert f.stream_c2s.bytes_in_order == len(REQUEST + body)
        assert f.stream_s2c.bytes_in_order == len(response)
        assert f.end_reason == "fin"
    assert stats.packets == sum(v[2] for v in conv.values())
