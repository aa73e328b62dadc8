"""Numba kernels that read which process sent or received each packet (see capture/processes.py).

Each runs only on a file that has shown process metadata; none runs on an ordinary capture.
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.kernels_bytes import u16, u32, u32be, u32le
from medsentry.capture.kernels_decode import PKTAP_MIN_HEADER
from medsentry.capture.kernels_pcapng import (
    BT_CB,
    BT_CB_NOCOPY,
    BT_EPB,
    BT_PB,
    BT_PIB,
    BT_SHB,
    BT_SPB,
    BYTE_ORDER_MAGIC,
)
from medsentry.jit import njit

# Apple PKTAP header (Wireshark packet-pktap.c, little-endian): field offsets
PKTAP_FLAGS = 36  # pth_flags: PTH_FLAG_DIR_IN 0x1, PTH_FLAG_DIR_OUT 0x2
PKTAP_PID = 52
PKTAP_COMM = 56  # pth_comm, 20 octets, NUL-terminated
PKTAP_EPID = 84
PKTAP_ECOMM = 88  # pth_ecomm: the effective process (on whose behalf the I/O was done)
PKTAP_COMM_LEN = 20

# PCAPdroid trailer (PCAPdroid pcap_dump.h, pcapdroid_trailer_t): big-endian magic and uid
PCAPDROID_MAGIC = 0x01072021
PCAPDROID_TRAILER_LEN = 32  # magic 4, uid 4, appname 20, fcs 4
PCAPDROID_APPNAME = 8  # offset of appname[20] in the trailer

# pcapng options (draft-ietf-opsawg-pcapng) and Apple's experimental ones
OPT_COMMENT = 1  # opt_comment §3.5
OPT_EPB_FLAGS = 2  # epb_flags §4.3.1: bits 0-1 inbound (1) / outbound (2)
OPT_EPB_PIB_INDEX = 0x8001  # Apple: index of the packet's PIB within the section
OPT_EPB_E_PIB_INDEX = 0x8003  # Apple: the effective process's PIB

META_SHB = 0
META_PIB = 1
META_CB = 2


@njit(cache=True, nogil=True)
def _fnv(buf: np.ndarray, p: int, n: int) -> int:
    """FNV-1a 63-bit hash of the NUL-terminated string in buf[p:p+n] (0 when empty)."""
    if n <= 0 or buf[p] == 0:
        return np.int64(0)
    h = np.int64(0x4BF29CE484222325)
    for j in range(n):
        c = buf[p + j]
        if c == 0:
            break
        h = ((h ^ np.int64(c)) * np.int64(0x100000001B3)) & np.int64(0x7FFFFFFFFFFFFFFF)
    return h | np.int64(1)  # never 0


@njit(cache=True, nogil=True)
def pktap_fields(
    buf: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    linktype: np.ndarray,
    lt_pktap: int,
    comm: np.ndarray,
    ecomm: np.ndarray,
    pid: np.ndarray,
    direction: np.ndarray,
) -> None:
    """Per packet of a PKTAP interface: hashes of pth_comm and pth_ecomm, pth_pid and the
    direction (1 in, 2 out, 0 unknown); comm = 0 where there is no header."""
    blen = buf.shape[0]
    for i in range(off.shape[0]):
        comm[i] = 0
        ecomm[i] = 0
        pid[i] = -1
        direction[i] = 0
        p = off[i]
        if linktype[i] != lt_pktap or p < 0 or caplen[i] < PKTAP_MIN_HEADER:
            continue
        if p + PKTAP_MIN_HEADER > blen or u32le(buf, p) < PKTAP_MIN_HEADER:
            continue
        comm[i] = _fnv(buf, p + PKTAP_COMM, PKTAP_COMM_LEN)
        ecomm[i] = _fnv(buf, p + PKTAP_ECOMM, PKTAP_COMM_LEN)
        pid[i] = u32le(buf, p + PKTAP_PID)
        flags = u32le(buf, p + PKTAP_FLAGS)
        direction[i] = 1 if flags & 1 else (2 if flags & 2 else 0)


@njit(cache=True, nogil=True)
def trailer_uids(
    buf: np.ndarray, off: np.ndarray, caplen: np.ndarray, uid: np.ndarray, has: np.ndarray
) -> None:
    """Per Ethernet frame: the PCAPdroid trailer's uid, where its magic ends the frame."""
    blen = buf.shape[0]
    for i in range(off.shape[0]):
        has[i] = 0
        uid[i] = 0
        p = off[i]
        n = np.int64(caplen[i])
        if p < 0 or n < 14 + PCAPDROID_TRAILER_LEN or p + n > blen:
            continue
        t = p + n - PCAPDROID_TRAILER_LEN
        if u32be(buf, t) != PCAPDROID_MAGIC:
            continue
        v = u32be(buf, t + 4)
        uid[i] = v - (1 << 32) if v >= (1 << 31) else v  # int32_t, network order
        has[i] = 1


@njit(cache=True, nogil=True)
def pcapng_meta(
    buf: np.ndarray,
    used: int,
    big0: bool,
    pib: np.ndarray,
    epib: np.ndarray,
    uid: np.ndarray,
    direction: np.ndarray,
    meta_off: np.ndarray,
    meta_kind: np.ndarray,
    meta_at: np.ndarray,
) -> tuple[int, int, bool]:
    """Walk the blocks in buf[:used] (the ones the packet walk consumed), in the same packet
    order: per packet its PIB and effective PIB indices, a "u-<uid>" comment's uid (-1 when
    none) and the epb_flags direction; and the offsets of SHB, PIB and Custom Blocks with the
    packet count before each.

    Returns (packets, meta blocks, big-endian at the end)."""
    pos = 0
    n = 0
    m = 0
    big = big0
    nmax = pib.shape[0]
    mmax = meta_off.shape[0]
    while pos + 12 <= used:
        btype = u32(buf, pos, big)
        if btype == BT_SHB:
            big = u32le(buf, pos + 8) != BYTE_ORDER_MAGIC
        blen = u32(buf, pos + 4, big)
        if blen < 12 or pos + blen > used:
            break
        if btype in (BT_SHB, BT_PIB, BT_CB, BT_CB_NOCOPY):
            if m < mmax:
                meta_off[m] = pos
                meta_kind[m] = (
                    META_SHB if btype == BT_SHB else (META_PIB if btype == BT_PIB else META_CB)
                )
                meta_at[m] = n
                m += 1
        elif btype in (BT_EPB, BT_PB, BT_SPB):
            if n >= nmax:
                break
            pib[n] = -1
            epib[n] = -1
            uid[n] = -1
            direction[n] = 0
            if btype != BT_SPB and blen >= 32:
                incl = u32(buf, pos + 20, big)
                o = pos + 28 + ((incl + 3) & ~3)
                oend = pos + blen - 4
                while o + 4 <= oend:  # §3.5 options
                    code = u16(buf, o, big)
                    olen = u16(buf, o + 2, big)
                    if code == 0 or o + 4 + olen > oend:
                        break
                    v = o + 4
                    if code == OPT_EPB_PIB_INDEX and olen == 4:
                        pib[n] = u32(buf, v, big)
                    elif code == OPT_EPB_E_PIB_INDEX and olen == 4:
                        epib[n] = u32(buf, v, big)
                    elif code == OPT_EPB_FLAGS and olen == 4 and btype == BT_EPB:
                        d = u32(buf, v, big) & 3
                        direction[n] = 1 if d == 1 else (2 if d == 2 else 0)
                    elif (
                        code == OPT_COMMENT
                        and 3 <= olen <= 13
                        and buf[v] == 0x75  # "u-<uid>": PCAPdroid's uid
                        and buf[v + 1] == 0x2D
                    ):
                        val = 0
                        ok = True
                        for j in range(v + 2, v + olen):
                            c = buf[j]
                            if c == 0 and j > v + 2:
                                break
                            if c < 0x30 or c > 0x39:
                                ok = False
                                break
                            val = val * 10 + np.int64(c - 0x30)
                        if ok and val < (1 << 31):
                            uid[n] = val
                    o += 4 + ((olen + 3) & ~3)
            n += 1
        pos += blen
    return n, m, big
