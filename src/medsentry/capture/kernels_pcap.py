"""Record walk of a classic libpcap file (draft-ietf-opsawg-pcap §4-§5) in a numba kernel.

Each 16-byte record header gives the length of its data, hence the offset of the next record:
the walk is sequential, so it runs compiled over a window of the file.
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.kernels_bytes import (
    WALK_BAD_LENGTH,
    WALK_END,
    WALK_FULL,
    WALK_NEED_MORE,
    WALK_TRUNCATED,
    WALK_ZERO_RECORD,
    prefetch,
    u32,
)
from medsentry.jit import njit

RECORD_HEADER_LEN = 16  # §5: ts_sec, ts_frac, caplen, origlen
PREFETCH_AHEAD = 4096  # bytes: hides the latency of the header-to-header chain


@njit(cache=True, nogil=True)
def walk_pcap(
    buf: np.ndarray,
    at_eof: bool,
    big: bool,
    frac_ns: int,
    snaplen: int,
    maxcap: int,
    ts_ns: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
) -> tuple[int, int, int, int, int]:
    """Walk the records that lie wholly in `buf` (a window starting on a record header).

    Returns (packets, bytes consumed, WALK_* status, bytes needed for the next record when
    status is WALK_NEED_MORE, records whose caplen exceeds the snaplen).
    """
    limit = buf.shape[0]
    nout = ts_ns.shape[0]
    pos = 0
    n = 0
    over_snap = 0
    status = WALK_END
    need = 0
    # One exit (break) keeps the loop tight: early returns here made LLVM's loop 3x slower.
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
        incl = u32(buf, pos + 8, big)  # §5 caplen
        orig = u32(buf, pos + 12, big)  # §5 original length
        end = pos + RECORD_HEADER_LEN + incl
        if incl > maxcap or (incl == 0 and orig == 0) or end > limit:
            if incl > maxcap:
                status = WALK_BAD_LENGTH
            elif incl == 0 and orig == 0:
                status = WALK_ZERO_RECORD
            elif at_eof:
                status = WALK_TRUNCATED
            else:
                status = WALK_NEED_MORE
                need = RECORD_HEADER_LEN + incl
            break
        if incl > snaplen > 0:
            over_snap += 1
        ts_ns[n] = u32(buf, pos, big) * 1_000_000_000 + u32(buf, pos + 4, big) * frac_ns
        off[n] = pos + RECORD_HEADER_LEN
        caplen[n] = incl
        wirelen[n] = orig
        n += 1
        prefetch(buf, pos + PREFETCH_AHEAD)
        pos = end
    return n, pos, status, need, over_snap
