"""Writing classic pcap files (draft-ietf-opsawg-pcap §4 file header, §5 packet record).

Two ways in: `PcapWriter.write(frame, ts_ns)` appends one frame (demo captures, test fixtures);
`PcapWriter.write_batch(buf, off, length, ts_ns)` writes many frames held in one NumPy buffer
through a compiled kernel (benchmark captures of millions of packets).

The frame builders (`medsentry.capture.frames`) and the hosts and TCP sessions
(`medsentry.capture.tcpsession`) are re-exported here: one import for whoever writes captures.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from medsentry.capture.batch import LINKTYPE_ETHERNET
from medsentry.capture.frames import (
    ACK,
    ETHERTYPE_VLAN,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    IPAddress,
    ethernet,
    fill_checksums,
    internet_checksum,
    ip_packet,
    ipv4,
    ipv6,
    mac_bytes,
    tcp,
    udp,
)
from medsentry.capture.tcpsession import CLIENT, SERVER, FrameLog, Host, TcpSession
from medsentry.jit import njit

__all__ = [
    "ACK",
    "CLIENT",
    "DEFAULT_SNAPLEN",
    "ETHERTYPE_VLAN",
    "FIN",
    "PSH",
    "RST",
    "SERVER",
    "SYN",
    "URG",
    "FrameLog",
    "Host",
    "IPAddress",
    "PcapWriter",
    "TcpSession",
    "ethernet",
    "fill_checksums",
    "internet_checksum",
    "ip_packet",
    "ipv4",
    "ipv6",
    "mac_bytes",
    "pcap_bytes",
    "tcp",
    "udp",
    "write_pcap",
]

# draft-ietf-opsawg-pcap §4: magic numbers for microsecond and nanosecond time stamps.
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_VERSION = (2, 4)
PCAP_FILE_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, lt
PCAP_RECORD_HEADER = struct.Struct("<IIII")  # ts sec, ts usec|nsec, captured length, orig length
DEFAULT_SNAPLEN = 262144


@njit(cache=True, inline="always")
def _put_u32le(out: np.ndarray, pos: int, v: int) -> None:
    out[pos] = v & 0xFF
    out[pos + 1] = (v >> 8) & 0xFF
    out[pos + 2] = (v >> 16) & 0xFF
    out[pos + 3] = (v >> 24) & 0xFF


@njit(cache=True, nogil=True)
def _pack_records(
    out: np.ndarray,
    buf: np.ndarray,
    off: np.ndarray,
    incl: np.ndarray,
    orig: np.ndarray,
    ts_sec: np.ndarray,
    ts_frac: np.ndarray,
    start: int,
    stop: int,
) -> int:
    """Lay out records start..stop-1 (16-byte header + bytes) in `out`; bytes written or -1."""
    pos = 0
    nbuf = buf.shape[0]
    nout = out.shape[0]
    for i in range(start, stop):
        o = off[i]
        c = np.int64(incl[i])
        if o < 0 or o + c > nbuf or pos + 16 + c > nout:
            return -1
        # draft-ietf-opsawg-pcap §5: four little-endian uint32, then the captured bytes
        _put_u32le(out, pos, ts_sec[i])
        _put_u32le(out, pos + 4, ts_frac[i])
        _put_u32le(out, pos + 8, c)
        _put_u32le(out, pos + 12, np.int64(orig[i]))
        out[pos + 16 : pos + 16 + c] = buf[o : o + c]
        pos += 16 + c
    return pos


class PcapWriter:
    """A classic pcap file being written (little-endian, one link type)."""

    def __init__(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = False,
    ) -> None:
        if isinstance(file, str | os.PathLike):
            self._fh: BinaryIO = open(Path(file), "wb", buffering=1 << 20)  # noqa: SIM115
            self._owns = True
        else:
            self._fh = file
            self._owns = False
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self.packets = 0
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._fh.write(PCAP_FILE_HEADER.pack(magic, *PCAP_VERSION, 0, 0, snaplen, linktype))

    def _split_ts(self, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = np.asarray(ts_ns, dtype=np.int64)
        sec = ts // 1_000_000_000
        frac = ts % 1_000_000_000
        if not self.nanosecond:
            frac = frac // 1000
        if ts.size and (sec.min() < 0 or sec.max() > 0xFFFFFFFF):
            raise ValueError("time stamp outside the 32-bit seconds range of classic pcap")
        return sec, frac

    def write(self, frame: bytes, ts_ns: int, wirelen: int | None = None) -> None:
        """Append one frame (truncated to the snap length; `wirelen` defaults to its length)."""
        sec, frac = divmod(int(ts_ns), 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        if not 0 <= sec <= 0xFFFFFFFF:
            raise ValueError("time stamp outside the 32-bit seconds range of classic pcap")
        incl = min(len(frame), self.snaplen)
        orig = len(frame) if wirelen is None else wirelen
        self._fh.write(PCAP_RECORD_HEADER.pack(sec, frac, incl, orig))
        self._fh.write(frame[:incl])
        self.packets += 1

    def write_batch(
        self,
        buf: np.ndarray,
        off: np.ndarray,
        length: np.ndarray,
        ts_ns: np.ndarray,
        wirelen: np.ndarray | None = None,
        chunk_bytes: int = 64 << 20,
    ) -> None:
        """Append frames buf[off[i] : off[i] + length[i]] stamped ts_ns[i], in order."""
        buf = np.ascontiguousarray(buf, dtype=np.uint8)
        off = np.ascontiguousarray(off, dtype=np.int64)
        length = np.asarray(length, dtype=np.int64)
        n = off.shape[0]
        if length.shape[0] != n or np.asarray(ts_ns).shape[0] != n:
            raise ValueError("off, length and ts_ns must have one element per frame")
        if n == 0:
            return
        if length.min() < 0 or off.min() < 0 or int((off + length).max()) > buf.shape[0]:
            raise ValueError("a frame lies outside the buffer")
        incl = np.minimum(length, self.snaplen)
        orig = length if wirelen is None else np.asarray(wirelen, dtype=np.int64)
        sec, frac = self._split_ts(ts_ns)
        rec = incl + 16
        ends = np.cumsum(rec)
        start = 0
        scratch = np.empty(max(chunk_bytes, int(rec.max())), dtype=np.uint8)
        while start < n:
            base = int(ends[start - 1]) if start else 0
            stop = int(np.searchsorted(ends, base + scratch.shape[0], side="right"))
            stop = max(stop, start + 1)
            used = _pack_records(scratch, buf, off, incl, orig, sec, frac, start, stop)
            if used < 0:
                raise ValueError("internal: record layout overflow")
            self._fh.write(memoryview(scratch)[:used])
            start = stop
        self.packets += n

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if self._owns:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pcap(
    file: str | os.PathLike[str] | BinaryIO,
    frames: list[tuple[int, bytes]],
    *,
    nanosecond: bool = False,
) -> int:
    """Write (ts_ns, frame) pairs sorted by time (stable); returns the number written."""
    order = sorted(range(len(frames)), key=lambda i: frames[i][0])
    with PcapWriter(file, nanosecond=nanosecond) as w:
        for i in order:
            w.write(frames[i][1], frames[i][0])
    return len(frames)


def pcap_bytes(frames: list[tuple[int, bytes]], *, nanosecond: bool = False) -> bytes:
    """The pcap file for (ts_ns, frame) pairs, in memory."""
    out = io.BytesIO()
    write_pcap(out, frames, nanosecond=nanosecond)
    return out.getvalue()
