"""Scans, sweeps, brute force and a SYN flood made with real sockets on loopback, captured by
tcpdump and read by the real pipeline; ARP spoofing frames from the capture writer, checked
against tshark's "duplicate IP address" expert info."""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from detect_build import T0, S, arp_frame
from loopcap import scan
from netcap import tcpdump

from medsentry.capture.writer import write_pcap
from medsentry.detect.engine import DetectionEngine
from medsentry.detect.registry import default_detectors
from medsentry.detect.rules import build_rules


def _detect(pcap: Path, learning_ns: int = 0, rules_only: bool = True):
    events = sorted(scan(pcap), key=lambda e: e.ts_ns)
    dets = build_rules() if rules_only else default_detectors()
    return DetectionEngine(dets, learning_ns=learning_ns).process(events), events


def _probe(host: str, port: int) -> None:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        pass


def test_port_scan_and_host_sweep_on_loopback(tmp_path: Path) -> None:
    pcap = tmp_path / "scan.pcap"
    with tcpdump(pcap, "host 127.0.5.1 or net 127.0.6.0/24"):
        for port in range(2000, 2040):  # nmap -sT style: 40 closed ports of one host
            src = socket.socket()
            src.bind(("127.0.5.1", 0))
            src.settimeout(0.5)
            with contextlib.suppress(OSError):
                src.connect(("127.0.5.2", port))
            src.close()
        for i in range(1, 21):  # sweep of 20 hosts for DICOM port 104
            src = socket.socket()
            src.bind(("127.0.5.1", 0))
            src.settimeout(0.5)
            with contextlib.suppress(OSError):
                src.connect((f"127.0.6.{i}", 104))
            src.close()
    alerts, _events = _detect(pcap)
    by_rule = {a.rule_id: a for a in alerts}
    scan_a = by_rule["net.port_scan"]
    assert scan_a.device_id == "ip:127.0.5.1" and scan_a.technique_id == "T0846"
    assert scan_a.detail["target"] == "127.0.5.2" and scan_a.detail["distinct_ports"] >= 30
    sweep = by_rule["net.host_sweep"]
    assert sweep.device_id == "ip:127.0.5.1" and sweep.detail["distinct_hosts"] >= 15
    assert all(e.flow_id for e in scan_a.evidence)
    assert "auth.brute_force" not in by_rule and "net.syn_flood" not in by_rule


class _LoginServer(threading.Thread):
    """A Telnet-style login prompt on 127.0.5.3:23 that refuses every password."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.5.3", 23))
        self.sock.listen(16)
        self.stop = False

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"login: ")
                conn.recv(256)
                conn.sendall(b"Password: ")
                conn.recv(256)
                conn.sendall(b"\r\nLogin incorrect\r\n")


def test_brute_force_on_a_login_service(tmp_path: Path) -> None:
    pcap = tmp_path / "brute.pcap"
    srv = _LoginServer()
    srv.start()
    try:
        with tcpdump(pcap, "host 127.0.5.3 and tcp port 23"):
            for i in range(12):
                with socket.create_connection(
                    ("127.0.5.3", 23), timeout=2, source_address=("127.0.5.4", 0)
                ) as c:
                    c.recv(64)
                    c.sendall(b"admin\r\n")
                    c.recv(64)
                    c.sendall(f"guess{i}\r\n".encode())
                    c.recv(64)
    finally:
        srv.stop = True
        srv.join(2)
        srv.sock.close()
    alerts, _ = _detect(pcap)
    (bf,) = [a for a in alerts if a.rule_id == "auth.brute_force"]
    assert bf.device_id == "ip:127.0.5.3" and bf.detail["attacker"] == "127.0.5.4"
    assert bf.detail["port"] == 23 and bf.detail["short_sessions"] >= 10
    assert bf.technique_id == "T0859"
    assert "net.port_scan" not in {a.rule_id for a in alerts}


def _tcp_checksum(src: str, dst: str, segment: bytes) -> int:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">BBH", 0, 6, len(segment))
    data = pseudo + segment + (b"\0" if len(segment) % 2 else b"")
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_syn_flood_from_raw_sockets(tmp_path: Path) -> None:
    """SYNs sent with a raw socket (RFC 9293 header, RFC 4987 attack), never acknowledged."""
    pcap = tmp_path / "flood.pcap"
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.5.5", 8080))
    listener.listen(1024)
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except PermissionError:
        pytest.skip("raw sockets need root")
    src, dst = "127.0.5.6", "127.0.5.5"
    raw.bind((src, 0))  # the kernel writes the IP header with this source
    with raw, tcpdump(pcap, "host 127.0.5.5 and tcp port 8080"):
        for i in range(260):
            if i % 20 == 0:
                time.sleep(0.005)  # paced a little: tcpdump keeps every frame on a busy host
            sport = 20000 + i
            hdr = struct.pack(">HHIIBBHHH", sport, 8080, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
            csum = _tcp_checksum(src, dst, hdr)
            hdr = hdr[:16] + struct.pack(">H", csum) + hdr[18:]
            raw.sendto(hdr, (dst, 0))
        time.sleep(0.3)
    listener.close()
    alerts, _events = _detect(pcap)
    (flood,) = [a for a in alerts if a.rule_id == "net.syn_flood"]
    assert flood.device_id == "ip:127.0.5.5" and flood.technique_id == "T0814"
    assert flood.detail["port"] == 8080 and flood.detail["half_open_in_window"] >= 200


def test_arp_spoofing_frames_agree_with_tshark(tmp_path: Path) -> None:
    gw, gw_mac, victim, victim_mac = (
        "10.50.0.1",
        "00:1b:21:0a:0b:01",
        "10.50.0.20",
        "00:09:fb:33:44:55",
    )
    evil = "02:de:ad:be:ef:01"
    frames = [
        (T0, arp_frame(1, victim_mac, victim, "00:00:00:00:00:00", gw)),  # who-has gw
        (T0 + S // 100, arp_frame(2, gw_mac, gw, victim_mac, victim)),  # gw is-at (genuine)
    ]
    for i in range(12):  # arpspoof: unsolicited replies "gw is-at evil" to the victim, each second
        frames.append((T0 + (i + 1) * S, arp_frame(2, evil, gw, victim_mac, victim)))
    frames.append(
        (T0 + 13 * S, arp_frame(2, gw_mac, gw, "ff:ff:ff:ff:ff:ff", gw, dst="ff:ff:ff:ff:ff:ff"))
    )  # gratuitous: the real gw
    pcap = tmp_path / "arpspoof.pcap"
    write_pcap(pcap, frames)
    alerts, events = _detect(pcap)
    arp_events = [e for e in events if e.__struct_config__.tag == "arp"]
    assert arp_events
    (spoof,) = [a for a in alerts if a.rule_id == "arp.binding_change"]
    assert spoof.device_id == "ip:10.50.0.1" and spoof.technique_id == "T0830"
    assert {spoof.detail["previous_mac"], spoof.detail["new_mac"]} == {gw_mac, evil}
    # tshark flags the same frames: "duplicate use of 10.50.0.1 detected"
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-n",
            "-Y",
            "arp.duplicate-address-detected",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "arp.src.proto_ipv4",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out, "tshark saw no duplicate address"
    assert set(out[1::2]) == {gw}
    # every frame tshark flags is one our rule reported (evidence times are frame times)
    flagged_times = {frames[int(n) - 1][0] for n in out[0::2]}
    assert flagged_times & {e.ts_ns for e in spoof.evidence}


def test_udp_packet_flood(tmp_path: Path) -> None:
    pcap = tmp_path / "udpflood.pcap"
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.5.8", 9999))  # a device's service that never answers
    with (
        tcpdump(pcap, "host 127.0.5.8 and udp port 9999", snaplen=256),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src,
    ):
        src.bind(("127.0.5.9", 0))
        for _ in range(15000):
            src.sendto(b"x" * 64, ("127.0.5.8", 9999))
    sink.close()
    alerts, events = _detect(pcap)
    udp = [e for e in events if getattr(e, "server_port", None) == 9999]
    seen = [(e.packets_c2s, round(e.packets_c2s / max(e.duration_s, 1e-3))) for e in udp]
    floods = [a for a in alerts if a.rule_id == "net.packet_flood"]
    assert len(floods) == 1, f"captured (packets, pps): {seen}"
    flood = floods[0]
    assert flood.device_id == "ip:127.0.5.8" and flood.technique_id == "T0814"
    assert flood.detail["source"] == "127.0.5.9" and flood.detail["rate_pps"] >= 2000
    assert flood.detail["packets"] >= 5000
