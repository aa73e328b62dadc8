"""Apple PacketLogger files (.pklg: macOS PacketLogger, iOS Bluetooth logging profile).

Format (as Wireshark's wiretap/packetlogger.c reads it): no file header; records of a 12-byte
header (length, seconds, microseconds: 32-bit, one byte order for the whole file) and `length -
8` bytes: a packet type (0x00 HCI command, 0x01 HCI event, 0x02/0x03 ACL data sent/received,
0x08/0x09 SCO, 0x0A/0x0B LMP, 0xF7-0xFE PacketLogger's own notes) and the HCI packet.

Zero-copy, as for btsnoop: each packet handed on is the record from its type byte, under the
pseudo link type LINKTYPE_PACKETLOGGER; the HCI dissector (protocols/ble_hci.py) reads the type.
There is no magic number, so a file is taken for PacketLogger only when its first records
(up to PROBE_RECORDS, within PROBE_BYTES) all have a plausible length, microseconds and type.
"""

from __future__ import annotations

import struct

import numpy as np

from medsentry.capture.hci_linktypes import LINKTYPE_PACKETLOGGER
from medsentry.capture.kernels_bytes import (
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    WALK_NEED_MORE,
    WALK_TRUNCATED,
    WALK_ZERO_RECORD,
    u32,
)
from medsentry.capture.pcapng import CapacityHint, walk_one_linktype
from medsentry.jit import njit

RECORD_HEADER_LEN = 12  # length, seconds, microseconds
TS_LEN = 8  # `length` counts the timestamp, the type byte and the packet
MAX_RECORD_LEN = 1 << 16  # packetlogger.c: a length of 65536 or more is not PacketLogger
PROBE_RECORDS = 5
PROBE_BYTES = 4 * (RECORD_HEADER_LEN + 1 + 1024)
# packet types (packetlogger.c): HCI command/event, ACL sent/received, SCO, LMP, then notes
TYPE_COMMAND, TYPE_EVENT, TYPE_ACL_SENT, TYPE_ACL_RECEIVED = 0x00, 0x01, 0x02, 0x03
TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B, *range(0xF7, 0xFF)})


def probe(head: bytes) -> bool | None:
    """The byte order (True: big-endian) if `head` starts like a PacketLogger file, else None."""
    if len(head) < RECORD_HEADER_LEN + 1:
        return None
    first = struct.unpack_from("<I", head)[0]
    # packetlogger.c: a length with only its upper 16 bits set is in the other byte order
    swapped = first & 0xFFFF == 0 and first >> 16 != 0
    for big in (swapped, not swapped):
        if _plausible(head, ">" if big else "<"):
            return big
    return None


def _plausible(head: bytes, order: str) -> bool:
    pos = checked = 0
    while checked < PROBE_RECORDS and pos + RECORD_HEADER_LEN + 1 <= len(head):
        length, _, usecs = struct.unpack_from(order + "III", head, pos)
        if not TS_LEN + 1 <= length < MAX_RECORD_LEN or usecs >= 1_000_000:
            return False
        if head[pos + RECORD_HEADER_LEN] not in TYPES:
            return False
        checked += 1
        pos += 4 + length
    return checked > 0 and (checked >= 2 or pos >= len(head))


@njit(cache=True, nogil=True)
def walk_pklg(
    buf: np.ndarray,
    at_eof: bool,
    big: bool,
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
        length = u32(buf, pos, big)
        end = pos + 4 + length
        if length < TS_LEN or length >= MAX_RECORD_LEN or end > limit:
            if length == 0:
                status = WALK_ZERO_RECORD
            elif length < TS_LEN or length >= MAX_RECORD_LEN:
                status = WALK_BAD_LENGTH
            elif at_eof:
                status = WALK_TRUNCATED
            else:
                status = WALK_NEED_MORE
                need = 4 + length
            break
        secs = u32(buf, pos + 4, big)
        usecs = u32(buf, pos + 8, big)
        ts_ns[n] = secs * 1_000_000_000 + usecs * 1000
        off[n] = pos + RECORD_HEADER_LEN
        caplen[n] = length - TS_LEN
        wirelen[n] = length - TS_LEN
        n += 1
        pos = end
    return n, pos, status, need


class PklgWalker:
    """State of one PacketLogger file: its byte order and the compiled record walk."""

    format = "pklg"
    data_start = 0

    def __init__(self, big_endian: bool) -> None:
        self.big_endian = big_endian
        self.linktype = LINKTYPE_PACKETLOGGER
        self.linktypes = [LINKTYPE_PACKETLOGGER]
        self._hint = CapacityHint()

    def walk(self, view: np.ndarray, at_eof: bool):
        return walk_one_linktype(
            self._hint, walk_pklg, view, at_eof, self.big_endian, RECORD_HEADER_LEN, self.linktype
        )
