"""pcapng files (draft-ietf-opsawg-pcapng): first section header and the block walker."""

from __future__ import annotations

import struct

import numpy as np

from medsentry.capture import kernels_pcapng as k
from medsentry.errors import CaptureError

SHB_MAGIC = struct.pack("<I", k.BT_SHB)
MIN_SHB_LEN = 28  # §4.1


class CapacityHint:
    """How many packets to make room for in a window, from the bytes per packet seen so far.

    Too small is harmless (the walk stops with WALK_FULL and resumes), too large only
    reserves address space; a close guess keeps freshly faulted memory to what is used.
    """

    def __init__(self) -> None:
        self.bytes_per_packet = 64.0

    def capacity(self, window: int, min_record: int) -> int:
        guess = int(window / self.bytes_per_packet * 1.25) + 256
        return min(guess, window // min_record + 1)

    def update(self, packets: int, used: int) -> None:
        if packets >= 64:
            self.bytes_per_packet = max(used / packets, 16.0)


def record_columns(cap: int) -> tuple[np.ndarray, ...]:
    """ts_ns, off, caplen, wirelen, linktype, iface for `cap` packets, from one allocation."""
    block = np.empty(cap * 28, np.uint8)
    ts = block[: cap * 8].view(np.int64)
    off = block[cap * 8 : cap * 16].view(np.int64)
    caplen = block[cap * 16 : cap * 20].view(np.uint32)
    wirelen = block[cap * 20 : cap * 24].view(np.uint32)
    linktype = block[cap * 24 : cap * 26].view(np.uint16)
    iface = block[cap * 26 : cap * 28].view(np.uint16)
    return ts, off, caplen, wirelen, linktype, iface


def walk_one_linktype(
    hint: CapacityHint,
    kernel,
    view: np.ndarray,
    at_eof: bool,
    param: object,
    min_record: int,
    linktype: int,
):
    """Run a record-walk kernel `kernel(view, at_eof, param, ts, off, caplen, wirelen)` of a
    file with one link type (btsnoop, PacketLogger): (n, pos, status, need, columns)."""
    ts, off, caplen, wirelen, _, _ = record_columns(hint.capacity(view.shape[0], min_record))
    n, pos, status, need = kernel(view, at_eof, param, ts, off, caplen, wirelen)
    hint.update(n, pos)
    lts, iface = np.full(n, linktype, np.uint16), np.zeros(n, np.uint16)
    return n, pos, status, need, (ts[:n], off[:n], caplen[:n], wirelen[:n], lts, iface)


class PcapngWalker:
    """State of one pcapng file across windows: sections, interfaces, the compiled walk."""

    format = "pcapng"
    data_start = 0

    def __init__(self, head: bytes, source: str, size: int) -> None:
        if len(head) < 12:
            raise CaptureError(
                f"pcapng section header truncated ({len(head)} of {MIN_SHB_LEN} bytes)",
                source,
                len(head),
            )
        bom = head[8:12]
        if bom == struct.pack("<I", k.BYTE_ORDER_MAGIC):
            e = "<"
        elif bom == struct.pack(">I", k.BYTE_ORDER_MAGIC):
            e = ">"
        else:
            raise CaptureError(
                f"pcapng section header has an unknown byte-order magic 0x{bom.hex()}", source, 8
            )
        (blen,) = struct.unpack(e + "I", head[4:8])
        if blen < MIN_SHB_LEN or blen % 4:
            raise CaptureError(f"pcapng section header length {blen} is invalid", source, 4)
        if len(head) >= 16:
            major, minor = struct.unpack(e + "HH", head[12:16])
            if major != 1:  # §4.1: a new major version is a format this reader cannot read
                raise CaptureError(
                    f"pcapng version {major}.{minor}: only version 1 is a format this reader"
                    " knows (a new major version is not compatible, pcapng §4.1)",
                    source,
                    12,
                )
        if blen > size:
            raise CaptureError(
                f"pcapng section header truncated (block of {blen} bytes, file of {size})",
                source,
                size,
            )
        self.st, self.ifs = k.new_state()
        self._hint = CapacityHint()
        self.over_snaplen = 0  # records longer than their interface's SnapLen (§4.2)
        self.snaplen = 0  # the SnapLen of the first interface they were over

    @property
    def linktypes(self) -> list[int]:
        nif = int(self.st[k.ST_NIF])
        return [int(x) for x in self.ifs[:nif, k.IF_LINKTYPE]]

    @property
    def sections(self) -> int:
        return int(self.st[k.ST_SECTIONS])

    def walk(self, view: np.ndarray, at_eof: bool):
        # the smallest packet block (SPB) is 16 bytes
        ts, off, caplen, wirelen, linktype, iface = record_columns(
            self._hint.capacity(view.shape[0], 16)
        )
        n, pos, status, need = k.walk_pcapng(
            view, at_eof, self.st, self.ifs, ts, off, caplen, wirelen, linktype, iface
        )
        self._hint.update(n, pos)
        arrays = (ts[:n], off[:n], caplen[:n], wirelen[:n], linktype[:n], iface[:n])
        if n:
            self._count_over_snaplen(arrays[2], arrays[5])
        return n, pos, status, need, arrays

    def _count_over_snaplen(self, caplen: np.ndarray, iface: np.ndarray) -> None:
        """§4.2: SnapLen 0 is no limit; a longer Captured Packet Length is kept, and noted."""
        snap = self.ifs[: int(self.st[k.ST_NIF]), k.IF_SNAPLEN]
        limit = snap[iface]
        over = (limit > 0) & (caplen > limit)
        if over.any():
            if not self.over_snaplen:
                self.snaplen = int(limit[int(np.argmax(over))])
            self.over_snaplen += int(over.sum())
