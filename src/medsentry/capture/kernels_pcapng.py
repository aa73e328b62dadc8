"""Block walk of a pcapng file (draft-ietf-opsawg-pcapng) in a numba kernel.

The walk keeps its section and interface state in two int64 arrays owned by the reader, so it
can resume window after window: `st` (see ST_*) and `ifs` (one row per interface, IF_* columns).
Interfaces get a source-wide index: a later section's interface 0 follows the earlier ones.
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.kernels_bytes import (
    WALK_BAD_BLOCK,
    WALK_BAD_BYTE_ORDER,
    WALK_BAD_LENGTH,
    WALK_BAD_VERSION,
    WALK_END,
    WALK_FULL,
    WALK_NEED_MORE,
    WALK_TOO_MANY_IFACES,
    WALK_TRAILER_MISMATCH,
    WALK_TRUNCATED,
    prefetch,
    u16,
    u32,
    u32le,
)
from medsentry.jit import njit

# Block types (§4.1, §11.1)
BT_SHB = 0x0A0D0D0A  # Section Header Block §4.1
BT_IDB = 0x00000001  # Interface Description Block §4.2
BT_PB = 0x00000002  # Packet Block (obsolete) Appendix A
BT_SPB = 0x00000003  # Simple Packet Block §4.4
BT_EPB = 0x00000006  # Enhanced Packet Block §4.3
BT_CB = 0x00000BAD  # Custom Block §4.8 (PCAPdroid's uid -> app map)
BT_CB_NOCOPY = 0x40000BAD
BT_PIB = 0x80000001  # Apple Process Information Block (libpcap-apple pcap-ng.h)
BYTE_ORDER_MAGIC = 0x1A2B3C4D  # §4.1
BYTE_ORDER_MAGIC_SWAPPED = 0x4D3C2B1A

OPT_ENDOFOPT = 0  # §3.5
OPT_IF_TSRESOL = 9  # §4.2
OPT_IF_TSOFFSET = 14  # §4.2

MAX_IFACES = 65535  # RawBatch.iface is uint16
MAX_BLOCK_LEN = 1 << 28  # anything longer is a corrupt length field
PREFETCH_AHEAD = 4096  # bytes, see kernels_pcap

# st[] slots
ST_BIG = 0  # current section is big-endian
ST_SECTION_BASE = 1  # source-wide index of the current section's interface 0
ST_NIF = 2  # interfaces seen so far in the source
ST_LAST_TS = 3  # last timestamp (ns), given to Simple Packet Blocks which carry none
ST_SECTIONS = 4
ST_PROC_BLOCKS = 5  # process metadata blocks seen (PIB, Custom): capture/processes.py reads them
ST_SIZE = 8

# ifs[] columns
IF_LINKTYPE = 0
IF_SNAPLEN = 1
IF_TSMODE = 2  # 0: ts * val, 1: ts // val, 2: ts / 2**val seconds
IF_TSVAL = 3
IF_TSOFFSET_NS = 4
IF_COLS = 5

TSMODE_MUL = 0
TSMODE_DIV = 1
TSMODE_POW2 = 2


def new_state() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(ST_SIZE, np.int64), np.zeros((MAX_IFACES, IF_COLS), np.int64)


@njit(cache=True, nogil=True)
def _tsresol(ifs: np.ndarray, k: int, r: int) -> None:
    """if_tsresol (§4.2): MSB 0 -> 10**-r s, MSB 1 -> 2**-(r & 0x7f) s."""
    if r & 0x80:
        ifs[k, IF_TSMODE] = TSMODE_POW2
        ifs[k, IF_TSVAL] = r & 0x7F
        return
    if r <= 9:
        m = 1
        for _ in range(9 - r):
            m *= 10
        ifs[k, IF_TSMODE] = TSMODE_MUL
        ifs[k, IF_TSVAL] = m
    else:
        d = 1
        for _ in range(min(r - 9, 18)):
            d *= 10
        ifs[k, IF_TSMODE] = TSMODE_DIV
        ifs[k, IF_TSVAL] = d


@njit(cache=True, nogil=True, inline="always")
def _to_ns(ifs: np.ndarray, k: int, ts: int) -> int:
    mode = ifs[k, IF_TSMODE]
    val = ifs[k, IF_TSVAL]
    if mode == TSMODE_MUL:
        ns = ts * val
    elif mode == TSMODE_DIV:
        ns = ts // val
    else:
        if val == 0:
            ns = ts * 1_000_000_000
        elif val > 62:
            ns = np.int64(ts * (1e9 / 2.0**val))
        else:
            sec = ts >> val
            frac = ts & ((np.int64(1) << val) - 1)
            ns = sec * 1_000_000_000 + np.int64(frac * (1e9 / 2.0**val))
    return ns + ifs[k, IF_TSOFFSET_NS]


OK = -1  # _block: the block was read


@njit(cache=True, nogil=True)
def _block(
    buf: np.ndarray,
    pos: int,
    blen: int,
    btype: int,
    big: bool,
    st: np.ndarray,
    ifs: np.ndarray,
    n: int,
    ts_ns: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    linktype: np.ndarray,
    iface: np.ndarray,
) -> tuple[int, int]:
    """Read one whole block (length and trailer already checked): (OK or WALK_*, packets)."""
    if btype == BT_SHB:
        if blen < 28:
            return WALK_BAD_BLOCK, 0
        if u16(buf, pos + 12, big) != 1:  # §4.1 Major Version: 2+ is another format
            return WALK_BAD_VERSION, 0
        st[ST_BIG] = 1 if big else 0
        st[ST_SECTION_BASE] = st[ST_NIF]
        st[ST_SECTIONS] += 1
        return OK, 0
    if btype == BT_IDB:  # §4.2
        if blen < 20:
            return WALK_BAD_BLOCK, 0
        k = st[ST_NIF]
        if k >= ifs.shape[0]:
            return WALK_TOO_MANY_IFACES, 0
        ifs[k, IF_LINKTYPE] = u16(buf, pos + 8, big)
        ifs[k, IF_SNAPLEN] = u32(buf, pos + 12, big)
        _tsresol(ifs, k, 6)  # default: microseconds
        ifs[k, IF_TSOFFSET_NS] = 0
        o = pos + 16
        oend = pos + blen - 4
        while o + 4 <= oend:  # §3.5 options
            code = u16(buf, o, big)
            olen = u16(buf, o + 2, big)
            if code == OPT_ENDOFOPT or o + 4 + olen > oend:
                break
            if code == OPT_IF_TSRESOL and olen >= 1:
                _tsresol(ifs, k, np.int64(buf[o + 4]))
            elif code == OPT_IF_TSOFFSET and olen >= 8:
                if big:
                    secs = (u32(buf, o + 4, big) << 32) | u32(buf, o + 8, big)
                else:
                    secs = (u32(buf, o + 8, big) << 32) | u32(buf, o + 4, big)
                ifs[k, IF_TSOFFSET_NS] = secs * 1_000_000_000
            o += 4 + ((olen + 3) & ~3)
        st[ST_NIF] = k + 1
        return OK, 0
    if btype in (BT_EPB, BT_PB):  # §4.3, Appendix A
        if blen < 32:
            return WALK_BAD_BLOCK, 0
        ifid = u32(buf, pos + 8, big) if btype == BT_EPB else u16(buf, pos + 8, big)
        k = st[ST_SECTION_BASE] + ifid
        if k >= st[ST_NIF]:
            return WALK_BAD_BLOCK, 0
        incl = u32(buf, pos + 20, big)
        if incl > blen - 32:
            return WALK_BAD_BLOCK, 0
        ts = (u32(buf, pos + 12, big) << 32) | u32(buf, pos + 16, big)
        t = _to_ns(ifs, k, ts)
        st[ST_LAST_TS] = t
        ts_ns[n] = t
        off[n] = pos + 28
        caplen[n] = incl
        wirelen[n] = u32(buf, pos + 24, big)
        linktype[n] = ifs[k, IF_LINKTYPE]
        iface[n] = k
        return OK, 1
    if btype == BT_SPB:  # §4.4: interface 0 of the section, no timestamp
        if blen < 16:
            return WALK_BAD_BLOCK, 0
        k = st[ST_SECTION_BASE]
        if k >= st[ST_NIF]:
            return WALK_BAD_BLOCK, 0
        orig = u32(buf, pos + 8, big)
        incl = min(orig, blen - 16)
        snap = ifs[k, IF_SNAPLEN]
        if snap > 0:
            incl = min(incl, snap)
        ts_ns[n] = st[ST_LAST_TS]
        off[n] = pos + 12
        caplen[n] = incl
        wirelen[n] = orig
        linktype[n] = ifs[k, IF_LINKTYPE]
        iface[n] = k
        return OK, 1
    if btype in (BT_PIB, BT_CB, BT_CB_NOCOPY):
        st[ST_PROC_BLOCKS] += 1
    return OK, 0  # any other block type (NRB, ISB, DSB, custom...) is skipped (§3.1)


@njit(cache=True, nogil=True)
def walk_pcapng(
    buf: np.ndarray,
    at_eof: bool,
    st: np.ndarray,
    ifs: np.ndarray,
    ts_ns: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    linktype: np.ndarray,
    iface: np.ndarray,
) -> tuple[int, int, int, int]:
    """Walk the blocks that lie wholly in `buf` (a window starting on a block).

    Returns (packets, bytes consumed, WALK_* status, bytes needed for the next block when
    status is WALK_NEED_MORE). On damage, `pos` is the offset of the damaged block.
    """
    limit = buf.shape[0]
    nout = ts_ns.shape[0]
    pos = 0
    n = 0
    status = WALK_END
    need = 0
    # section state in locals (st may alias the int64 outputs, which would force reloads)
    big = st[ST_BIG] != 0
    base = st[ST_SECTION_BASE]
    nif = st[ST_NIF]
    last_ts = st[ST_LAST_TS]
    while True:  # one exit (break): see kernels_pcap
        if n >= nout:
            status = WALK_FULL
            break
        if pos + 12 > limit:
            if not at_eof:
                status = WALK_NEED_MORE
                need = 12
            elif pos != limit:
                status = WALK_TRUNCATED
            break
        btype = u32(buf, pos, big)
        bbig = big
        if btype == BT_SHB:  # §4.1: the byte-order magic fixes the section's endianness
            bom = u32le(buf, pos + 8)
            if bom == BYTE_ORDER_MAGIC:
                bbig = False
            elif bom == BYTE_ORDER_MAGIC_SWAPPED:
                bbig = True
            else:
                status = WALK_BAD_BYTE_ORDER
                break
        blen = u32(buf, pos + 4, bbig)
        if blen < 12 or (blen & 3) != 0 or blen > MAX_BLOCK_LEN:
            status = WALK_BAD_LENGTH
            break
        if pos + blen > limit:
            if at_eof:
                status = WALK_TRUNCATED
            else:
                status = WALK_NEED_MORE
                need = blen
            break
        if u32(buf, pos + blen - 4, bbig) != blen:  # §3.1: trailing Block Total Length
            status = WALK_TRAILER_MISMATCH
            break
        if btype == BT_EPB and blen >= 32:  # §4.3, the common case, inline
            k = base + u32(buf, pos + 8, big)
            incl = u32(buf, pos + 20, big)
            if k >= nif or incl > blen - 32:
                status = WALK_BAD_BLOCK
                break
            last_ts = _to_ns(ifs, k, (u32(buf, pos + 12, big) << 32) | u32(buf, pos + 16, big))
            ts_ns[n] = last_ts
            off[n] = pos + 28
            caplen[n] = incl
            wirelen[n] = u32(buf, pos + 24, big)
            linktype[n] = ifs[k, IF_LINKTYPE]
            iface[n] = k
            n += 1
        else:
            st[ST_LAST_TS] = last_ts
            res, got = _block(
                buf,
                pos,
                blen,
                btype,
                bbig,
                st,
                ifs,
                n,
                ts_ns,
                off,
                caplen,
                wirelen,
                linktype,
                iface,
            )
            if res != OK:
                status = res
                break
            n += got
            big = st[ST_BIG] != 0
            base = st[ST_SECTION_BASE]
            nif = st[ST_NIF]
            last_ts = st[ST_LAST_TS]
        prefetch(buf, pos + PREFETCH_AHEAD)
        pos += blen
    st[ST_LAST_TS] = last_ts
    return n, pos, status, need
