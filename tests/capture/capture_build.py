"""Capture-file builders for the capture tests, written from the format specs (not our reader).

`pcap_file` writes classic libpcap (draft-ietf-opsawg-pcap §4-§5) in either byte order and
either timestamp precision; `Pcapng` writes pcapng blocks (draft-ietf-opsawg-pcapng §3-§4).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from medsentry.capture.batch import PacketBatch, RawBatch
from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture


def pcap_bytes(
    records: Iterable[tuple[int, bytes] | tuple[int, bytes, int]],
    linktype: int = 1,
    big: bool = False,
    nano: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """records: (ts_ns, data[, wirelen])."""
    e = ">" if big else "<"
    out = [
        struct.pack(
            e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype
        )
    ]
    for rec in records:
        ts, data = rec[0], rec[1]
        wire = rec[2] if len(rec) > 2 else len(data)
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nano else ns // 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(data), wire) + data)
    return b"".join(out)


def pcap_file(path: Path, *args, **kw) -> Path:
    path.write_bytes(pcap_bytes(*args, **kw))
    return path


class Pcapng:
    """Build a pcapng file block by block."""

    def __init__(self, big: bool = False) -> None:
        self.e = ">" if big else "<"
        self.blocks: list[bytes] = []

    def block(self, btype: int, body: bytes) -> Pcapng:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        self.blocks.append(
            struct.pack(self.e + "II", btype, n) + body + struct.pack(self.e + "I", n)
        )
        return self

    def option(self, code: int, value: bytes) -> bytes:
        return struct.pack(self.e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    def shb(self, big: bool | None = None) -> Pcapng:
        if big is not None:
            self.e = ">" if big else "<"
        body = struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
        return self.block(0x0A0D0D0A, body)

    def idb(
        self,
        linktype: int,
        snaplen: int = 0,
        tsresol: int | None = None,
        tsoffset: int | None = None,
    ) -> Pcapng:
        opts = b""
        if tsresol is not None:
            opts += self.option(9, bytes([tsresol]))
        if tsoffset is not None:
            opts += self.option(14, struct.pack(self.e + "q", tsoffset))
        if opts:
            opts += self.option(0, b"")
        return self.block(1, struct.pack(self.e + "HHI", linktype, 0, snaplen) + opts)

    def epb(self, iface: int, ts_units: int, data: bytes, wirelen: int | None = None) -> Pcapng:
        body = struct.pack(
            self.e + "IIIII",
            iface,
            ts_units >> 32,
            ts_units & 0xFFFFFFFF,
            len(data),
            len(data) if wirelen is None else wirelen,
        )
        return self.block(6, body + data)

    def spb(self, data: bytes, wirelen: int | None = None) -> Pcapng:
        return self.block(
            3, struct.pack(self.e + "I", len(data) if wirelen is None else wirelen) + data
        )

    def pb(self, iface: int, ts_units: int, data: bytes) -> Pcapng:
        body = struct.pack(
            self.e + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data)
        )
        return self.block(2, body + data)

    def bytes(self) -> bytes:
        return b"".join(self.blocks)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.bytes())
        return path


def read_all(path: Path, **kw) -> tuple[list[RawBatch], object]:
    reader = open_capture(path, **kw)
    batches = list(reader)
    return batches, reader


def concat(path: Path, **kw) -> dict[str, np.ndarray | list]:
    """Every packet of a file: raw fields, decoded fields and captured bytes, concatenated."""
    reader = open_capture(path, **kw)
    pbs: list[PacketBatch] = [decode(b) for b in reader]
    out: dict[str, np.ndarray | list] = {"reader": reader}  # type: ignore[dict-item]
    if not pbs:
        out["data"] = []
        return out
    for name in ("ts_ns", "caplen", "wirelen", "linktype", "iface"):
        out[name] = np.concatenate([getattr(p.raw, name) for p in pbs])
    for name in PacketBatch.__dataclass_fields__:
        if name in ("raw", "extra"):
            continue
        out[name] = np.concatenate([getattr(p, name) for p in pbs])
    out["data"] = [
        bytes(p.raw.buf[int(o) : int(o) + int(c)])
        for p in pbs
        for o, c in zip(p.raw.off, p.raw.caplen, strict=True)
    ]
    out["payload"] = [
        bytes(p.raw.buf[int(o) : int(o) + int(c)])
        for p in pbs
        for o, c in zip(p.pl_off, p.pl_len, strict=True)
    ]
    return out


# ---- packet builders (RFC 791, 8200, 9293, 768, 826), fields set explicitly


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def eth(
    dst: str, src: str, ethertype: int, payload: bytes, tags: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """Ethernet II frame; tags = ((tpid, tci), ...) outermost first."""
    out = mac(dst) + mac(src)
    for tpid, tci in tags:
        out += struct.pack(">HH", tpid, tci)
    return out + struct.pack(">H", ethertype) + payload


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    options: bytes = b"",
    frag_off: int = 0,
    mf: bool = False,
    total_len: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    tl = ihl * 4 + len(payload) if total_len is None else total_len
    flags_frag = (0x2000 if mf else 0) | (frag_off // 8)
    hdr = struct.pack(
        ">BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        tl,
        0x1234,
        flags_frag,
        ttl,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return hdr + options + payload


def ipv6(
    src: str, dst: str, nh: int, payload: bytes, hlim: int = 64, plen: int | None = None
) -> bytes:
    pl = len(payload) if plen is None else plen
    return (
        struct.pack(">IHBB", 6 << 28, pl, nh, hlim)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def tcp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    seq: int = 0,
    ack: int = 0,
    flags: int = 0x18,
    win: int = 65535,
    options: bytes = b"",
    doff: int | None = None,
) -> bytes:
    off = (5 + len(options) // 4) if doff is None else doff
    return (
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, win, 0, 0)
        + options
        + payload
    )


def udp(sport: int, dport: int, payload: bytes = b"", ulen: int | None = None) -> bytes:
    n = 8 + len(payload) if ulen is None else ulen
    return struct.pack(">HHHH", sport, dport, n, 0) + payload


def icmp(typ: int, code: int, rest: bytes = b"\0\0\0\0", payload: bytes = b"") -> bytes:
    return struct.pack(">BBH", typ, code, 0) + rest + payload


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return (
        struct.pack(">HHBBH", 1, 0x0800, 6, 4, op)
        + mac(sha)
        + socket.inet_aton(spa)
        + mac(tha)
        + socket.inet_aton(tpa)
    )


def raw_batch(packets: list[tuple[int, bytes]], gap: int = 3) -> RawBatch:
    """A RawBatch holding `packets` (linktype, bytes), with junk bytes between them."""
    buf = bytearray()
    offs = []
    for _, data in packets:
        buf += b"\xee" * gap
        offs.append(len(buf))
        buf += data
    buf += b"\xee" * gap
    n = len(packets)
    return RawBatch(
        source="test",
        buf=np.frombuffer(bytes(buf), np.uint8),
        buf_offset=0,
        first_frame=1,
        ts_ns=np.arange(n, dtype=np.int64),
        off=np.array(offs, np.int64),
        caplen=np.array([len(d) for _, d in packets], np.uint32),
        wirelen=np.array([len(d) for _, d in packets], np.uint32),
        linktype=np.array([lt for lt, _ in packets], np.uint16),
        iface=np.zeros(n, np.uint16),
    )


def decode_one(linktype: int, data: bytes) -> dict[str, int | bytes]:
    """Decode one packet; every PacketBatch field as a Python int, plus the payload bytes."""
    pb = decode(raw_batch([(linktype, data)]))
    out: dict[str, int | bytes] = {}
    for name in PacketBatch.__dataclass_fields__:
        if name not in ("raw", "extra"):
            out[name] = int(getattr(pb, name)[0])
    for name, arr in pb.extra.items():
        out[name] = int(arr[0])
    o, n = int(pb.pl_off[0]), int(pb.pl_len[0])
    out["payload"] = bytes(pb.raw.buf[o : o + n])
    return out
