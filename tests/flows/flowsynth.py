"""Packet batches built directly as arrays (the decode kernel's output layout), for kernel tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from medsentry.capture.batch import PacketBatch, RawBatch

V4_MAPPED = 0x0000_FFFF_0000_0000


def addr(text: str) -> tuple[int, int, int]:
    """(ip_ver, hi, lo) of an address, IPv4 stored IPv4-mapped."""
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return 4, 0, V4_MAPPED | int(a)
    v = int(a)
    return 6, v >> 64, v & ((1 << 64) - 1)


@dataclass
class Builder:
    """Collects packets one by one (tests only), then makes one PacketBatch."""

    rows: list[dict] = field(default_factory=list)
    payload: bytearray = field(default_factory=bytearray)

    def add(
        self,
        ts_ns: int,
        src: str,
        dst: str,
        sport: int = 0,
        dport: int = 0,
        proto: int = 6,
        flags: int = 0,
        seq: int = 0,
        data: bytes = b"",
        ip_len: int | None = None,
        vlan: int = 0,
        eth_src: int = 0,
        eth_dst: int = 0,
        err: int = 0,
        frag: int = 0,
        ethertype: int | None = None,
        arp_op: int = 0,
    ) -> None:
        ver, sh, sl = addr(src)
        _, dh, dl = addr(dst)
        off = len(self.payload)
        self.payload += data
        hdr = 20 if ver == 4 else 40
        l4 = 20 if proto == 6 else 8
        self.rows.append(
            dict(
                ts=ts_ns,
                ver=ver if arp_op == 0 else 0,
                sh=sh,
                sl=sl,
                dh=dh,
                dl=dl,
                sport=sport,
                dport=dport,
                proto=proto,
                flags=flags,
                seq=seq % (1 << 32),
                ip_len=ip_len if ip_len is not None else hdr + l4 + len(data),
                pl_off=off,
                pl_len=len(data),
                vlan=vlan,
                eth_src=eth_src,
                eth_dst=eth_dst,
                err=err,
                frag=frag,
                ethertype=ethertype
                if ethertype is not None
                else (0x0806 if arp_op else (0x0800 if ver == 4 else 0x86DD)),
                arp_op=arp_op,
            )
        )

    def batch(self) -> PacketBatch:
        return make_batch(self.rows, bytes(self.payload))


def make_batch(rows: list[dict], payload: bytes) -> PacketBatch:
    n = len(rows)

    def col(name: str, dtype) -> np.ndarray:
        return np.array([r[name] for r in rows], dtype=dtype).reshape(n)

    buf = np.frombuffer(payload, np.uint8).copy() if payload else np.zeros(1, np.uint8)
    raw = RawBatch(
        source="synthetic",
        buf=buf,
        buf_offset=0,
        first_frame=1,
        ts_ns=col("ts", np.int64),
        off=col("pl_off", np.int64),
        caplen=col("pl_len", np.uint32),
        wirelen=col("ip_len", np.uint32),
        linktype=np.ones(n, np.uint16),
        iface=np.zeros(n, np.uint16),
    )
    return PacketBatch(
        raw=raw,
        eth_src=col("eth_src", np.uint64),
        eth_dst=col("eth_dst", np.uint64),
        vlan=col("vlan", np.uint16),
        ethertype=col("ethertype", np.uint16),
        ip_ver=col("ver", np.uint8),
        src_hi=col("sh", np.uint64),
        src_lo=col("sl", np.uint64),
        dst_hi=col("dh", np.uint64),
        dst_lo=col("dl", np.uint64),
        proto=col("proto", np.uint8),
        ttl=np.full(n, 64, np.uint8),
        ip_len=col("ip_len", np.uint32),
        frag=col("frag", np.uint8),
        sport=col("sport", np.uint16),
        dport=col("dport", np.uint16),
        tcp_flags=col("flags", np.uint8),
        tcp_seq=col("seq", np.uint32),
        tcp_ack=np.zeros(n, np.uint32),
        tcp_win=np.zeros(n, np.uint16),
        pl_off=col("pl_off", np.int64),
        pl_len=col("pl_len", np.uint32),
        arp_op=col("arp_op", np.uint8),
        err=col("err", np.uint8),
    )


def bulk_batch(
    n_packets: int, n_flows: int, *, seed: int = 0, t0: int = 1_700_000_000 * 10**9, gap_ns=1000
):
    """A large batch of UDP/TCP packets over `n_flows` random 5-tuples (vectorized)."""
    rng = np.random.default_rng(seed)
    flow = rng.integers(0, n_flows, n_packets)
    if n_packets >= n_flows:  # every flow has at least one packet
        flow[rng.choice(n_packets, n_flows, replace=False)] = np.arange(n_flows)
    a = (V4_MAPPED | (0x0A000000 + np.arange(n_flows) % 65000)).astype(np.uint64)
    b = (V4_MAPPED | (0xC0A80000 + (np.arange(n_flows) * 7) % 65000)).astype(np.uint64)
    pa = (1024 + np.arange(n_flows) % 60000).astype(np.uint16)
    pb = np.where(np.arange(n_flows) % 2 == 0, 80, 104).astype(np.uint16)
    rev = rng.integers(0, 2, n_packets).astype(bool)
    src = np.where(rev, b[flow], a[flow])
    dst = np.where(rev, a[flow], b[flow])
    sp = np.where(rev, pb[flow], pa[flow])
    dp = np.where(rev, pa[flow], pb[flow])
    ts = t0 + np.arange(n_packets, dtype=np.int64) * gap_ns
    z64 = np.zeros(n_packets, np.uint64)
    raw = RawBatch(
        source="bulk",
        buf=np.zeros(64, np.uint8),
        buf_offset=0,
        first_frame=1,
        ts_ns=ts,
        off=np.zeros(n_packets, np.int64),
        caplen=np.full(n_packets, 60, np.uint32),
        wirelen=np.full(n_packets, 60, np.uint32),
        linktype=np.ones(n_packets, np.uint16),
        iface=np.zeros(n_packets, np.uint16),
    )
    pb_ = PacketBatch(
        raw=raw,
        eth_src=z64,
        eth_dst=z64,
        vlan=np.zeros(n_packets, np.uint16),
        ethertype=np.full(n_packets, 0x0800, np.uint16),
        ip_ver=np.full(n_packets, 4, np.uint8),
        src_hi=z64,
        src_lo=src,
        dst_hi=z64,
        dst_lo=dst,
        proto=np.full(n_packets, 17, np.uint8),
        ttl=np.full(n_packets, 64, np.uint8),
        ip_len=np.full(n_packets, 46, np.uint32),
        frag=np.zeros(n_packets, np.uint8),
        sport=sp,
        dport=dp,
        tcp_flags=np.zeros(n_packets, np.uint8),
        tcp_seq=np.zeros(n_packets, np.uint32),
        tcp_ack=np.zeros(n_packets, np.uint32),
        tcp_win=np.zeros(n_packets, np.uint16),
        pl_off=np.zeros(n_packets, np.int64),
        pl_len=np.zeros(n_packets, np.uint32),
        arp_op=np.zeros(n_packets, np.uint8),
        err=np.zeros(n_packets, np.uint8),
    )
    return pb_, flow, rev
