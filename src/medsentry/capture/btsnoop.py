"""btsnoop files (Android HCI snoop logs, BlueZ btmon): file header and the record walker.

Format (RFC 1761 snoop, as used by the Symbian/BlueZ/Android btsnoop writers): a 16-byte file
header ("btsnoop\\0", version 1, datalink), then records of a 24-byte big-endian header
(original length, included length, packet flags, cumulative drops, timestamp in microseconds
since 0000-01-01) and the packet bytes.

Zero-copy: each packet handed on is the record *from its flags field* (flags, drops,
timestamp, then the HCI packet), under a pseudo link type equal to the btsnoop datalink
(1001 H1, 1002 H4, 2001 Linux monitor). The HCI dissector (protocols/ble_hci.py) reads the
flags and treats the packet as the equivalent pcap link type (201 H4 with direction, 254
Linux monitor). The file's bytes thus stay the batch buffer (mmap windows, capture hash).
"""

from __future__ import annotations

import struct

import numpy as np

from medsentry.capture.kernels_bytes import (
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    WALK_NEED_MORE,
    WALK_TRUNCATED,
    WALK_ZERO_RECORD,
    u32be,
)
from medsentry.capture.pcapng import CapacityHint, walk_one_linktype
from medsentry.errors import CaptureError
from medsentry.jit import njit

MAGIC = b"btsnoop\0"
FILE_HEADER_LEN = 16  # magic, version, datalink
RECORD_HEADER_LEN = 24  # original length, included length, flags, drops, timestamp
RECORD_PREFIX = 16  # flags + drops + timestamp, kept in front of each packet handed on
MAX_RECORD_LEN = 1 << 20  # an HCI packet is at most ~64 KiB; longer is a corrupt length
# Microseconds from 0000-01-01 (proleptic Gregorian) to 1970-01-01 (Android/BlueZ writers)
EPOCH_DELTA_US = 0x00DCDDB30F2F8000

DATALINK_H1 = 1001  # HCI packets without the UART type byte; type from the flags
DATALINK_H4 = 1002  # HCI UART (H4): type byte first
DATALINK_BCSP = 1003
DATALINK_H5 = 1004
DATALINK_MONITOR = 2001  # BlueZ monitor: flags = adapter index << 16 | opcode
DATALINKS = {DATALINK_H1: "H1", DATALINK_H4: "H4", DATALINK_MONITOR: "Linux monitor"}

# packet flags (bit 0 direction, bit 1 command/event vs data) for H1/H4
FLAG_RECEIVED = 0x1  # 1 = controller to host
FLAG_COMMAND_EVENT = 0x2


@njit(cache=True, nogil=True)
def walk_btsnoop(
    buf: np.ndarray,
    at_eof: bool,
    maxcap: int,
    ts_ns: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
) -> tuple[int, int, int, int]:
    """Walk the records lying wholly in `buf` (a window starting on a record header).

    Returns (packets, bytes consumed, WALK_* status, bytes needed when WALK_NEED_MORE).
    """
    limit = buf.shape[0]
    nout = ts_ns.shape[0]
    pos = 0
    n = 0
    status = WALK_END
    need = 0
    while True:
        if n >= nout:
            status = WALK_FULL
            break
        if pos + RECORD_HEADER_LEN > limit:
            if not at_eof:
                status = WALK_NEED_MORE
                need = RECORD_HEADER_LEN
            elif pos != limit:
                status = WALK_TRUNCATED
            break
        orig = u32be(buf, pos)
        incl = u32be(buf, pos + 4)
        end = pos + RECORD_HEADER_LEN + incl
        us = (u32be(buf, pos + 16) << 32) | u32be(buf, pos + 20)
        # An empty record is legitimate: the monitor format's Open, Close and Deleted Index
        # carry no data (btmon writes Open Index first for every running adapter). A header
        # that is all zeros, timestamp included, is a zero-filled tail, not a record.
        zeroed = incl == 0 and orig == 0 and us == 0 and u32be(buf, pos + 8) == 0
        if incl > maxcap or zeroed or end > limit:
            if incl > maxcap:
                status = WALK_BAD_LENGTH
            elif zeroed:
                status = WALK_ZERO_RECORD
            elif at_eof:
                status = WALK_TRUNCATED
            else:
                status = WALK_NEED_MORE
                need = RECORD_HEADER_LEN + incl
            break
        ts_ns[n] = (us - EPOCH_DELTA_US) * 1000
        off[n] = pos + RECORD_HEADER_LEN - RECORD_PREFIX
        caplen[n] = incl + RECORD_PREFIX
        wirelen[n] = orig + RECORD_PREFIX
        n += 1
        pos = end
    return n, pos, status, need


class BtsnoopWalker:
    """State of one btsnoop file: header fields and the compiled record walk."""

    format = "btsnoop"
    data_start = FILE_HEADER_LEN

    def __init__(self, head: bytes, source: str) -> None:
        if len(head) < FILE_HEADER_LEN:
            raise CaptureError(
                f"btsnoop file header truncated ({len(head)} of {FILE_HEADER_LEN} bytes)",
                source,
                len(head),
            )
        version, datalink = struct.unpack(">II", head[8:FILE_HEADER_LEN])
        if version != 1:
            raise CaptureError(f"unsupported btsnoop version {version}", source, 8)
        if datalink not in DATALINKS:
            raise CaptureError(
                f"btsnoop datalink {datalink} is not supported (1001 H1, 1002 H4, 2001 monitor)",
                source,
                12,
            )
        self.version = version
        self.datalink = datalink
        self.linktype = datalink  # pseudo link type: the record from its flags field
        self.linktypes = [datalink]
        self._hint = CapacityHint()

    def walk(self, view: np.ndarray, at_eof: bool):
        return walk_one_linktype(
            self._hint, walk_btsnoop, view, at_eof, MAX_RECORD_LEN, RECORD_HEADER_LEN, self.linktype
        )
