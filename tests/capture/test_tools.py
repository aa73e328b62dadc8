"""Fixtures made by real tools: tcpdump on `lo` while we send real traffic, then editcap,
mergecap and text2pcap conversions of them, all read back and checked against what was sent."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from capture_build import concat

from medsentry.capture.reader import open_capture

TOOLS = ("tcpdump", "editcap", "mergecap", "text2pcap")
# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = [
    pytest.mark.xdist_group("test_tools"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS), reason="tcpdump/wireshark tools missing"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root"),
]
N_UDP = 25


def _start_tcpdump(iface: str, path: Path, bpf: str) -> subprocess.Popen:
    # immediate mode: each packet is read at once; libpcap then gives every ring frame the
    # snaplen, so a 70000-byte snaplen (lo segments reach 64 KiB) and a 64 MiB ring (-B, KiB)
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "70000",
            "-B",
            "65536",
            "-w",
            str(path),
            bpf,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    while True:  # "tcpdump: listening on lo, ..." once the socket is live
        line = proc.stderr.readline()
        lines.append(line)
        if "listening" in line:
            return proc
        if not line:
            proc.wait(timeout=10)
            raise AssertionError(f"tcpdump did not start: {''.join(lines)}")


def _stop(proc: subprocess.Popen, path: Path | None = None) -> None:
    """Stop tcpdump once its output stopped growing (it writes each packet as it reads it)."""
    last, stable, deadline = -1, 0, time.monotonic() + 20
    while path is not None and stable < 6 and time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        stable = stable + 1 if size == last else 0
        last = size
        time.sleep(0.25)
    proc.terminate()
    proc.wait(timeout=10)
    assert proc.stderr is not None
    stats = proc.stderr.read()
    assert "\n0 packets dropped by kernel" in "\n" + stats, stats


class Sent:
    udp4: list[bytes]
    udp6: list[bytes]
    tcp_c2s: bytes
    tcp_s2c: bytes
    ports: dict[str, int]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Sent]]:
    """(Ethernet capture on lo, Linux cooked capture on `any`, what was sent)."""
    d = tmp_path_factory.mktemp("lo")
    sent = Sent()
    # the receiving sockets are bound before the capture starts and kept (no free-port race)
    rx4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srv = socket.create_server(("127.0.0.1", 0))
    rx4.bind(("127.0.0.1", 0))
    rx6.bind(("::1", 0))
    ports = {
        "udp4": rx4.getsockname()[1],
        "udp6": rx6.getsockname()[1],
        "tcp": srv.getsockname()[1],
    }
    sent.ports = ports
    bpf = f"udp port {ports['udp4']} or udp port {ports['udp6']} or tcp port {ports['tcp']}"
    lo_path, any_path = d / "lo.pcap", d / "any.pcap"
    p_lo = _start_tcpdump("lo", lo_path, bpf)
    try:
        p_any = _start_tcpdump("any", any_path, bpf)
    except BaseException:
        _stop(p_lo)
        raise
    try:
        sent.udp4 = [f"udp4 datagram {i} ".encode() * (i + 1) for i in range(N_UDP)]
        sent.udp6 = [f"udp6 datagram {i} ".encode() * (N_UDP - i) for i in range(N_UDP)]
        with rx4 as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for m in sent.udp4:
                tx.sendto(m, ("127.0.0.1", ports["udp4"]))
                assert rx.recv(65535) == m
        with rx6 as rx, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx:
            for m in sent.udp6:
                tx.sendto(m, ("::1", ports["udp6"]))
                assert rx.recv(65535) == m
        sent.tcp_c2s = b"".join(b"MSH|^~\\&|request %d\r" % i for i in range(200))
        sent.tcp_s2c = b"ACK" * 3000
        with srv:
            cli = socket.create_connection(("127.0.0.1", ports["tcp"]))
            conn, _ = srv.accept()
            cli.sendall(sent.tcp_c2s)
            got = b""
            while len(got) < len(sent.tcp_c2s):
                got += conn.recv(65536)
            conn.sendall(sent.tcp_s2c)
            back = b""
            while len(back) < len(sent.tcp_s2c):
                back += cli.recv(65536)
            cli.close()
            conn.close()
    finally:
        for sock in (rx4, rx6, srv):
            sock.close()
        _stop(p_lo, lo_path)
        _stop(p_any, any_path)
    yield lo_path, any_path, sent


def _check_traffic(path: Path, sent: Sent, dup: int = 1) -> dict:
    """The capture holds exactly what was sent (each packet `dup` times, for `-i any` on lo)."""
    g = concat(path)
    r = g["reader"]
    assert r.warnings == [] and r.packets > 0
    assert (g["err"] == 0).all()
    udp = g["proto"] == 17
    v4 = udp & (g["ip_ver"] == 4) & (g["dport"] == sent.ports["udp4"])
    v6 = udp & (g["ip_ver"] == 6) & (g["dport"] == sent.ports["udp6"])
    pl = g["payload"]
    assert [pl[i] for i in np.flatnonzero(v4)][::dup] == sent.udp4
    assert [pl[i] for i in np.flatnonzero(v6)][::dup] == sent.udp6
    lo4 = 0xFFFF_7F00_0001
    assert (g["src_lo"][v4] == lo4).all() and (g["dst_lo"][v4] == lo4).all()
    assert (g["src_hi"][v6] == 0).all() and (g["dst_lo"][v6] == 1).all()
    tcp = g["proto"] == 6
    assert tcp.sum() >= 6 * dup
    c2s = tcp & (g["dport"] == sent.ports["tcp"])
    s2c = tcp & (g["sport"] == sent.ports["tcp"])
    syn = (g["tcp_flags"] & 0x12) == 0x02
    assert syn[c2s].sum() == dup and not syn[s2c].any()
    # loopback delivers in order: concatenated payloads are the byte streams
    idx = np.flatnonzero(c2s & (g["pl_len"] > 0))[::dup]
    assert b"".join(pl[i] for i in idx) == sent.tcp_c2s
    idx = np.flatnonzero(s2c & (g["pl_len"] > 0))[::dup]
    assert b"".join(pl[i] for i in idx) == sent.tcp_s2c
    return g


def test_tcpdump_lo_ethernet(captures: tuple[Path, Path, Sent]) -> None:
    lo_path, _, sent = captures
    g = _check_traffic(lo_path, sent)
    assert g["reader"].format == "pcap" and g["reader"].linktypes == [1]
    assert (g["ethertype"][g["ip_ver"] == 4] == 0x0800).all()
    ts = g["ts_ns"]
    assert (np.diff(ts) >= 0).all() and abs(int(ts[0]) - time.time_ns()) < 600e9


def test_tcpdump_any_linux_cooked(captures: tuple[Path, Path, Sent]) -> None:
    _, any_path, sent = captures
    r = open_capture(any_path)
    assert r.linktypes[0] in (113, 276)
    g = concat(any_path)
    n_lo = concat(captures[0])["reader"].packets
    dup = g["reader"].packets // n_lo  # `any` sees loopback packets once or twice
    assert dup in (1, 2) and g["reader"].packets == dup * n_lo
    _check_traffic(any_path, sent, dup=dup)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap", "pcap"])
def test_editcap_formats(captures: tuple[Path, Path, Sent], tmp_path: Path, fmt: str) -> None:
    lo_path, _, sent = captures
    out = tmp_path / f"x.{fmt}"
    _run("editcap", "-F", fmt, str(lo_path), str(out))
    g = _check_traffic(out, sent)
    assert g["reader"].format == ("pcapng" if fmt == "pcapng" else "pcap")
    assert (g["ts_ns"] == concat(lo_path)["ts_ns"]).all()


def test_mergecap_two_link_types(captures: tuple[Path, Path, Sent], tmp_path: Path) -> None:
    lo_path, any_path, sent = captures
    out = tmp_path / "merged.pcapng"
    _run("mergecap", "-F", "pcapng", "-w", str(out), str(lo_path), str(any_path))
    g = concat(out, chunk_bytes=8192)
    r = g["reader"]
    assert r.format == "pcapng" and len(r.linktypes) == 2 and r.linktypes[0] == 1
    assert r.linktypes[1] in (113, 276)
    n_lo = concat(lo_path)["reader"].packets
    n_any = concat(any_path)["reader"].packets
    assert r.packets == n_lo + n_any
    assert (np.bincount(g["iface"]) == [n_lo, n_any]).all()
    assert (g["linktype"][g["iface"] == 0] == 1).all()
    assert (np.diff(g["ts_ns"]) >= 0).all()  # mergecap interleaves by time
    for k in (0, 1):
        sel = g["iface"] == k
        assert sorted(
            p for p, s in zip(g["payload"], sel, strict=True) if s and p.startswith(b"udp4")
        ) == sorted(sent.udp4 * (1 if k == 0 else n_any // n_lo))


def _pktap(frame: bytes, dlt: int, rectype: int = 1) -> bytes:
    """Apple's PKTAP header (108 octets, little-endian; tcpdump print-pktap.c): length, record
    type, DLT, interface name, flags, protocol family, link header/trailer lengths, pid,
    command name, service class, interface type/unit, effective pid and command name."""
    return (
        struct.pack("<III24sIIIII20sIHHI20s", 108, rectype, dlt, b"en0", 0, 2, 14, 0, 4242,
                    b"CompanionApp", 0, 6, 0, 4242, b"CompanionApp")
        + frame
    )  # fmt: skip


@pytest.mark.parametrize("dlt", [1, 12], ids=["ethernet", "raw-ip"])
def test_pktap_wrapped_like_a_mac_or_rvi_capture(
    captures: tuple[Path, Path, Sent], tmp_path: Path, dlt: int
) -> None:
    """macOS writes captures of its pktap and rvi (an iPhone's Remote Virtual Interface)
    interfaces as LINKTYPE_PKTAP (258): each packet behind Apple's header, in the header's own
    DLT. The same traffic re-wrapped so reads back the same, and tshark agrees on every packet."""
    lo_path, _, sent = captures
    data = lo_path.read_bytes()
    out, pos = [data[:20] + struct.pack("<I", 258)], 24
    while pos < len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        body = _pktap(frame if dlt == 1 else frame[14:], dlt)
        out.append(struct.pack("<IIII", sec, usec, len(body), len(body)) + body)
        pos += 16 + incl
    out.append(struct.pack("<IIII", 0, 0, 108, 108) + _pktap(b"", 1, rectype=0))  # no packet
    path = tmp_path / f"pktap-{dlt}.pcap"
    path.write_bytes(b"".join(out))
    g = _check_traffic(path, sent)
    assert g["reader"].linktypes == [258]
    mine = [(int(a), int(b)) for a, b in zip(g["sport"], g["dport"], strict=True) if a or b]
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "pktap.dlt", "-e", "udp.srcport",
         "-e", "udp.dstport", "-e", "tcp.srcport", "-e", "tcp.dstport", "-Y", "udp or tcp"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    theirs = [tuple(int(x) for x in r.split("\t")[1:] if x) for r in rows if r]
    assert {r.split("\t")[0] for r in rows if r} == {str(dlt)}
    assert mine == theirs


def test_big_endian_by_swapping_header_fields(
    captures: tuple[Path, Path, Sent], tmp_path: Path
) -> None:
    """Rewrite tcpdump's little-endian file with every header field byte-swapped."""
    lo_path, _, sent = captures
    data = lo_path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", data[:24])))
    pos = 24
    while pos < len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, pos)
        out += struct.pack(">IIII", sec, frac, incl, orig) + data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
    be = tmp_path / "be.pcap"
    be.write_bytes(bytes(out))
    g = _check_traffic(be, sent)
    assert (g["ts_ns"] == concat(lo_path)["ts_ns"]).all()


TEXT = """\
0000  48 4c 37 20 4f 52 55 5e 52 30 31 7c
0000  44 49 43 4d 00 01 02 03
"""


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["-T", "1000,2575"], {"proto": 6, "sport": 1000, "dport": 2575, "ethertype": 0x0800}),
        (["-u", "5000,104"], {"proto": 17, "sport": 5000, "dport": 104, "ethertype": 0x0800}),
        (["-6", "2001:db8::1,2001:db8::2", "-u", "7,8"], {"proto": 17, "ip_ver": 6, "dport": 8}),
        (["-i", "47"], {"proto": 47, "ip_ver": 4}),
        (["-l", "101", "-4", "10.1.1.1,10.2.2.2", "-u", "9,10"], {"ip_ver": 4, "dport": 10}),
        (["-l", "228", "-4", "10.1.1.1,10.2.2.2", "-T", "11,12"], {"ip_ver": 4, "dport": 12}),
        (["-e", "0x0806"], {"ethertype": 0x0806}),
    ],
)
def test_text2pcap(tmp_path: Path, args: list[str], check: dict[str, int]) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    for fmt in ("pcap", "pcapng"):
        out = tmp_path / f"o.{fmt}"
        _run("text2pcap", "-q", "-F", fmt, *args, str(src), str(out))
        g = concat(out)
        assert g["reader"].packets == 2 and g["reader"].warnings == []
        for name, want in check.items():
            assert (g[name] == want).all(), (name, g[name])
        if ("proto" in check and check["proto"] in (6, 17)) or "dport" in check:
            assert g["payload"] == [
                bytes.fromhex("484c3720 4f52555e 5230317c"),
                b"DICM\x00\x01\x02\x03",
            ]


def test_text2pcap_vlan_via_hex(tmp_path: Path) -> None:
    """A QinQ-tagged UDP frame written as hex: outer VLAN id, inner ports and payload."""
    udp = struct.pack(">HHHH", 4000, 104, 8 + 4, 0) + b"DICM"
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        1,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    frame = (
        bytes.fromhex("020000000002 020000000001 88a8 0064 8100 00c8 0800") + ip + udp + bytes(8)
    )
    src = tmp_path / "vlan.txt"
    src.write_text("0000  " + " ".join(f"{b:02x}" for b in frame) + "\n")
    out = tmp_path / "vlan.pcap"
    _run("text2pcap", "-q", str(src), str(out))
    g = concat(out)
    assert g["vlan"].tolist() == [100] and g["ethertype"].tolist() == [0x0800]
    assert g["payload"] == [b"DICM"] and g["dport"].tolist() == [104]
