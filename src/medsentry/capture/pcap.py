"""Classic libpcap files (draft-ietf-opsawg-pcap): file header and the record walker."""

from __future__ import annotations

import struct

import numpy as np

from medsentry.capture.kernels_pcap import RECORD_HEADER_LEN, walk_pcap
from medsentry.capture.pcapng import CapacityHint, record_columns
from medsentry.errors import CaptureError

FILE_HEADER_LEN = 24  # §4
MAGIC_USEC = 0xA1B2C3D4  # §4: microsecond timestamps
MAGIC_NSEC = 0xA1B23C4D  # §4: nanosecond timestamps
LIBPCAP_MAX_SNAPLEN = 262144  # libpcap MAXIMUM_SNAPLEN
MAX_RECORD_LEN = 256 << 20  # a longer caplen is a corrupt length, whatever the snaplen says

# first four bytes -> (big-endian, nanosecond)
MAGICS: dict[bytes, tuple[bool, bool]] = {
    struct.pack(">I", MAGIC_USEC): (True, False),
    struct.pack("<I", MAGIC_USEC): (False, False),
    struct.pack(">I", MAGIC_NSEC): (True, True),
    struct.pack("<I", MAGIC_NSEC): (False, True),
}


class PcapWalker:
    """State of one classic pcap file: header fields and the compiled record walk."""

    format = "pcap"
    data_start = FILE_HEADER_LEN

    def __init__(self, head: bytes, source: str) -> None:
        if len(head) < FILE_HEADER_LEN:
            raise CaptureError(
                f"pcap file header truncated ({len(head)} of {FILE_HEADER_LEN} bytes)",
                source,
                len(head),
            )
        self.big, self.nano = MAGICS[head[:4]]
        e = ">" if self.big else "<"
        major, minor, _zone, _sigfigs, snaplen, linkfield = struct.unpack(
            e + "HHiIII", head[4:FILE_HEADER_LEN]
        )
        if major != 2:
            raise CaptureError(f"unsupported pcap version {major}.{minor}", source, 4)
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype = linkfield & 0xFFFF  # §4: bits 16-31 carry FCS information
        self.linktypes = [self.linktype]
        self.maxcap = min(max(snaplen, LIBPCAP_MAX_SNAPLEN), MAX_RECORD_LEN)
        self.over_snaplen = 0
        self._hint = CapacityHint()

    def walk(self, view: np.ndarray, at_eof: bool):
        ts, off, caplen, wirelen, _, _ = record_columns(
            self._hint.capacity(view.shape[0], RECORD_HEADER_LEN)
        )
        n, pos, status, need, over = walk_pcap(
            view,
            at_eof,
            self.big,
            1 if self.nano else 1000,
            self.snaplen,
            self.maxcap,
            ts,
            off,
            caplen,
            wirelen,
        )
        self.over_snaplen += over
        self._hint.update(n, pos)
        linktype = np.full(n, self.linktype, np.uint16)
        iface = np.zeros(n, np.uint16)
        return n, pos, status, need, (ts[:n], off[:n], caplen[:n], wirelen[:n], linktype, iface)
