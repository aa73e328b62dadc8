"""Live capture through the TPACKET_V3 ring on `lo`, checked against the datagrams we send."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest

from freeport import free_port
from medsentry.capture.decode import decode
from medsentry.capture.live import LiveSource, compile_bpf
from medsentry.errors import CaptureError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET capture needs root")


def _port() -> int:
    return free_port(socket.SOCK_DGRAM)


def _collect(src: LiveSource, want: int) -> list:
    out = []
    for b in src:
        pb = decode(b)
        out.append(pb)
        if sum(len(p) for p in out) >= want:
            src.stop()
    return out


def test_udp_datagrams_all_captured_and_decoded() -> None:
    port, n = _port(), 200
    with LiveSource("lo", bpf=f"udp dst port {port}", duration=20, block_size=1 << 16) as src:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(n):
                tx.sendto(bytes([i % 256]) * (i + 1), ("127.0.0.1", port))
        t0 = time.time_ns()
        pbs = _collect(src, n)
    assert sum(len(p) for p in pbs) == n
    sport = np.concatenate([p.sport for p in pbs])
    dport = np.concatenate([p.dport for p in pbs])
    pl_len = np.concatenate([p.pl_len for p in pbs])
    err = np.concatenate([p.err for p in pbs])
    assert (err == 0).all() and (dport == port).all() and len(set(sport.tolist())) == 1
    assert pl_len.tolist() == list(range(1, n + 1))  # every datagram, in order, once
    first = pbs[0]
    o = int(first.pl_off[0])
    assert bytes(first.raw.buf[o : o + 1]) == b"\x00"
    assert (first.src_lo == 0xFFFF_7F00_0001).all() and (first.raw.linktype == 1).all()
    ts = np.concatenate([p.raw.ts_ns for p in pbs])
    assert abs(int(ts[-1]) - t0) < 30e9 and (np.diff(ts) >= 0).all()
    assert src.packets == n and src.drops == 0


def test_traffic_during_iteration_ipv6_and_stop_from_thread() -> None:
    port, n = _port(), 120
    src = LiveSource(
        "lo", bpf=f"ip6 and udp dst port {port}", block_size=1 << 16, block_timeout_ms=10
    )

    def send() -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx:
            for i in range(n):
                tx.sendto(b"v6" * (i + 1), ("::1", port))
                if i % 20 == 0:
                    time.sleep(0.02)

    got = []

    def consume() -> None:
        for b in src:
            got.append(decode(b))

    th = threading.Thread(target=consume)
    th.start()
    send()
    deadline = time.monotonic() + 20
    while sum(len(p) for p in got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    src.stop()
    th.join(timeout=10)
    src.close()
    assert not th.is_alive()
    pl = np.concatenate([p.pl_len for p in got]).tolist()
    assert pl == [2 * (i + 1) for i in range(n)]
    assert all((p.ip_ver == 6).all() and (p.dst_lo == 1).all() for p in got)


def test_snaplen_and_max_packets() -> None:
    port = _port()
    with LiveSource(
        "lo", bpf=f"udp dst port {port}", snaplen=60, max_packets=5, duration=20
    ) as src:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(5):
                tx.sendto(b"z" * 500, ("127.0.0.1", port))
        batches = list(src)
    caplen = np.concatenate([b.caplen for b in batches])
    wirelen = np.concatenate([b.wirelen for b in batches])
    assert (caplen == 60).all() and (wirelen == 14 + 20 + 8 + 500).all() and len(caplen) == 5
    pb = decode(batches[0])
    assert (pb.pl_len == 60 - 42).all() and (pb.err == 0).all()


def test_bad_filter_and_interface() -> None:
    with pytest.raises(CaptureError, match="invalid BPF filter"):
        LiveSource("lo", bpf="udp port nonsense")
    with pytest.raises(CaptureError, match="no such network interface"):
        LiveSource("medsentry-nope0")
    assert len(compile_bpf("tcp port 104", 1, 262144)) > 4


@pytest.mark.parametrize(
    "tags",
    [((0x8100, 0x2000 | 42),), ((0x88A8, 100), (0x8100, 200))],
    ids=["802.1Q", "QinQ"],
)
def test_vlan_tag_moved_to_metadata_is_put_back(tags: tuple[tuple[int, int], ...]) -> None:
    """The kernel strips the outer tag into tp_vlan_tci on receive; the frame we yield has it
    back, byte for byte as sent (injected on `lo` through a packet socket)."""
    from capture_build import eth, ipv4, udp

    port = _port()
    frame = eth(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        0x0800,
        ipv4("127.0.0.1", "127.0.0.1", 17, udp(40000, port, b"tagged")),
        tags=tags,
    )
    with LiveSource("lo", bpf=f"udp port {port} or (vlan and udp port {port})", duration=10) as src:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as tx:
            tx.bind(("lo", 0))
            tx.send(frame)
        got = []
        for b in src:
            got += [bytes(b.buf[o : o + c]) for o, c in zip(b.off, b.caplen, strict=True)]
            pb = decode(b)
            if got:
                src.stop()
    assert got == [frame]
    assert src.vlan_tags_restored == 1  # the kernel did strip it: the re-insertion ran
    assert int(pb.vlan[0]) == tags[0][1] & 0x0FFF and int(pb.dport[0]) == port
