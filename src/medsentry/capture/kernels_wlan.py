"""The 802.11 link layer for the decode kernel: radiotap / PPI radio headers, the 802.11 MAC
header and its LLC/SNAP encapsulation (IEEE Std 802.11-2020 §9.2-§9.3, IEEE 802.2 / RFC 1042).

`wlan_link` is called by `decode_kernel` once per 802.11/PPI packet and returns where the
encapsulated ethertype's header starts, so the network layer is decoded exactly as for
Ethernet (`ppi_header` unwraps PPI, whose inner frame may be 802.11 or Ethernet). The MAC
columns receive the frame's source and destination addresses (SA/DA, from the ToDS/FromDS
address table), so a station is keyed by its own MAC and not by the access
point that relays its frames.
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.batch import (
    ERR_BAD_L2,
    ERR_TRUNCATED_L2,
    ERR_UNKNOWN_LINKTYPE,
    ERR_WLAN_BAD_FCS,
    ERR_WLAN_NOT_DATA,
    ERR_WLAN_PROTECTED,
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_PPI,
)
from medsentry.capture.kernels_bytes import u16be, u16le, u32le, ubytes_be
from medsentry.jit import njit

WLAN_LINKTYPES = frozenset({LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI})

# radiotap.org/fields/defined: present-bitmap bits of the fields before and at Flags
RADIOTAP_TSFT = 0x0000_0001  # field 0: u64 mactime, 8-byte aligned
RADIOTAP_FLAGS = 0x0000_0002  # field 1: u8
RADIOTAP_EXT = 0x8000_0000  # bit 31: another present bitmap follows
MAX_PRESENT_WORDS = 64
# radiotap.org/fields/Flags
RT_FLAG_FCS = 0x10  # frame includes the 4-byte FCS at its end
RT_FLAG_DATAPAD = 0x20  # padding between the 802.11 header and the payload (32-bit align)
RT_FLAG_BADFCS = 0x40  # frame failed its FCS check

# PPI (CACE Per-Packet Information Header Specification 1.0.10): header and 802.11-Common field
PPI_HEADER_LEN = 8
PPI_ALIGN = 0x01  # pph_flags bit 0: fields 32-bit aligned
PPI_80211_COMMON = 2  # pfh_type of the 802.11-Common field: TSFT u64, then flags u16
PPI_FLAG_FCS = 0x0001
PPI_FLAG_BADFCS = 0x0004
MAX_PPI_FIELDS = 64

# IEEE 802.11-2020 §9.2.4.1 Frame Control
FC_TYPE_MGMT = 0
FC_TYPE_DATA = 2
FC_TO_DS = 0x01
FC_FROM_DS = 0x02
FC_PROTECTED = 0x40
FC_ORDER = 0x80  # +HTC in QoS data frames (§9.2.4.1.10)
SUBTYPE_QOS = 0x08  # data subtypes 8-15 carry a QoS Control field (§9.2.4.5)
SUBTYPE_NO_DATA = 0x04  # Null, CF-Ack/Poll without data, QoS Null: no frame body
QOS_AMSDU_PRESENT = 0x80  # QoS Control bit 7 (§9.2.4.5.9)
MAC_HEADER_LEN = 24
ADDR4_LEN = 6
QOS_CONTROL_LEN = 2
HT_CONTROL_LEN = 4
AMSDU_SUBFRAME_HEADER = 14  # DA, SA, Length (§9.3.2.2.2)
FCS_LEN = 4
# RFC 1042 / IEEE 802.1H: LLC DSAP AA, SSAP AA, control 03 (UI), then the SNAP OUI
SNAP_HEADER_LEN = 8


@njit(cache=True, nogil=True)
def _radiotap(buf: np.ndarray, p: int, end: int) -> tuple[int, int, int]:
    """(error, start of the 802.11 frame, radiotap Flags) of the radiotap header at p."""
    if end - p < 8:
        return ERR_TRUNCATED_L2, 0, 0
    if buf[p] != 0:  # it_version
        return ERR_BAD_L2, 0, 0
    rlen = u16le(buf, p + 2)  # it_len, the whole radiotap header
    if rlen < 8:
        return ERR_BAD_L2, 0, 0
    if rlen > end - p:
        return ERR_TRUNCATED_L2, 0, 0
    hend = p + rlen
    present = u32le(buf, p + 4)
    q = p + 4
    word = present
    nwords = 1
    while word & RADIOTAP_EXT:  # extended present bitmaps precede every field
        q += 4
        nwords += 1
        if q + 4 > hend or nwords > MAX_PRESENT_WORDS:
            return ERR_BAD_L2, 0, 0
        word = u32le(buf, q)
    q += 4
    flags = 0
    if present & RADIOTAP_FLAGS:
        if present & RADIOTAP_TSFT:  # fields are aligned to their size from the header start
            q = p + ((q - p + 7) & ~7) + 8
        if q + 1 > hend:
            return ERR_BAD_L2, 0, 0
        flags = np.int64(buf[q])
    return 0, hend, flags


@njit(cache=True, nogil=True)
def ppi_header(buf: np.ndarray, p: int, end: int) -> tuple[int, int, int, int]:
    """(error, start of the inner frame, its link type pph_dlt, radiotap-style Flags from an
    802.11-Common field) of the PPI header at p."""
    if end - p < PPI_HEADER_LEN:
        return ERR_TRUNCATED_L2, 0, 0, 0
    if buf[p] != 0:  # pph_version
        return ERR_BAD_L2, 0, 0, 0
    align = (buf[p + 1] & PPI_ALIGN) != 0
    hlen = u16le(buf, p + 2)
    if hlen < PPI_HEADER_LEN:
        return ERR_BAD_L2, 0, 0, 0
    if hlen > end - p:
        return ERR_TRUNCATED_L2, 0, 0, 0
    dlt = u32le(buf, p + 4)
    hend = p + hlen
    q = p + PPI_HEADER_LEN
    flags = 0
    for _ in range(MAX_PPI_FIELDS):
        if q + 4 > hend:
            break
        ftype = u16le(buf, q)
        flen = u16le(buf, q + 2)
        if q + 4 + flen > hend:
            return ERR_BAD_L2, 0, 0, 0
        if ftype == PPI_80211_COMMON and flen >= 10:
            f = u16le(buf, q + 4 + 8)
            if f & PPI_FLAG_FCS:
                flags |= RT_FLAG_FCS
            if f & PPI_FLAG_BADFCS:
                flags |= RT_FLAG_BADFCS
        q += 4 + flen
        if align:
            q = p + ((q - p + 3) & ~3)
    return 0, hend, dlt, flags


@njit(cache=True, nogil=True)
def wlan_link(
    buf: np.ndarray, p: int, end: int, lt: int, whole: bool
) -> tuple[int, int, int, int, np.uint64, np.uint64]:
    """(error, network header start, new end, ethertype, SA, DA) of the packet at p whose
    link type `lt` is one of WLAN_LINKTYPES (PPI may also wrap an Ethernet frame).

    One call site in the decode kernel serves the three link types. `whole`: the capture
    holds the whole frame (caplen >= wire length), so a flagged FCS is really the last 4
    captured bytes. On error the addresses are those the MAC header gave (management and
    protected frames) or zero (a header that is cut or contradicts itself).
    """
    zero = np.uint64(0)
    wp = p
    flags = 0
    if lt == LINKTYPE_IEEE802_11_RADIOTAP:
        e, wp, flags = _radiotap(buf, p, end)
        if e != 0:
            return e, 0, end, 0, zero, zero
    elif lt == LINKTYPE_PPI:
        e, wp, dlt, flags = ppi_header(buf, p, end)
        if e != 0:
            return e, 0, end, 0, zero, zero
        if dlt == LINKTYPE_ETHERNET:  # IEEE 802.3 §3.1.1
            if end - wp < 14:
                return ERR_TRUNCATED_L2, 0, end, 0, zero, zero
            return (
                0,
                wp + 14,
                end,
                u16be(buf, wp + 12),
                ubytes_be(buf, wp + 6, 6),
                ubytes_be(buf, wp, 6),
            )
        if dlt != LINKTYPE_IEEE802_11:
            return ERR_UNKNOWN_LINKTYPE, 0, end, 0, zero, zero
    if (flags & RT_FLAG_FCS) and whole:
        if end - wp < FCS_LEN:
            return ERR_TRUNCATED_L2, 0, end, 0, zero, zero
        end -= FCS_LEN
    avail = end - wp
    if avail < 2:
        return ERR_TRUNCATED_L2, 0, end, 0, zero, zero
    fc0 = buf[wp]
    fc1 = buf[wp + 1]
    if fc0 & 0x03:  # §9.2.4.1.2 Protocol Version is 0
        return ERR_BAD_L2, 0, end, 0, zero, zero
    ftype = (fc0 >> 2) & 0x03
    sub = fc0 >> 4
    if ftype != FC_TYPE_DATA:
        if ftype == FC_TYPE_MGMT and avail >= MAC_HEADER_LEN:  # §9.3.3.2: A1 = DA, A2 = SA
            return (
                ERR_WLAN_NOT_DATA,
                0,
                end,
                0,
                ubytes_be(buf, wp + 10, 6),
                ubytes_be(buf, wp + 4, 6),
            )
        return ERR_WLAN_NOT_DATA, 0, end, 0, zero, zero
    tods = (fc1 & FC_TO_DS) != 0
    fromds = (fc1 & FC_FROM_DS) != 0
    hdr = MAC_HEADER_LEN
    if tods and fromds:
        hdr += ADDR4_LEN
    qos_at = wp + hdr
    if sub & SUBTYPE_QOS:
        hdr += QOS_CONTROL_LEN
        if fc1 & FC_ORDER:
            hdr += HT_CONTROL_LEN
    if avail < hdr:
        return ERR_TRUNCATED_L2, 0, end, 0, zero, zero
    a1 = ubytes_be(buf, wp + 4, 6)
    a2 = ubytes_be(buf, wp + 10, 6)
    a3 = ubytes_be(buf, wp + 16, 6)
    # IEEE 802.11-2020 Table 9-30 (802.11-2016 Table 9-26): SA and DA by ToDS/FromDS
    if not tods and not fromds:
        da, sa = a1, a2
    elif not tods:
        da, sa = a1, a3
    elif not fromds:
        da, sa = a3, a2
    else:
        da, sa = a3, ubytes_be(buf, wp + 24, 6)
    if flags & RT_FLAG_BADFCS:  # the radio says the bits are damaged: trust no field
        return ERR_WLAN_BAD_FCS, 0, end, 0, zero, zero
    if fc1 & FC_PROTECTED:  # §9.2.4.1.9: the body is encrypted (CCMP/GCMP/TKIP/WEP)
        return ERR_WLAN_PROTECTED, 0, end, 0, sa, da
    if sub & SUBTYPE_NO_DATA:  # Null / QoS Null: no body, link fields only
        return 0, wp + hdr, end, 0, sa, da
    if flags & RT_FLAG_DATAPAD:
        hdr = (hdr + 3) & ~3
    pos = wp + hdr
    if (sub & SUBTYPE_QOS) and (buf[qos_at] & QOS_AMSDU_PRESENT):
        # §9.3.2.2.2: an A-MSDU; decode its first subframe (DA, SA, Length, then the MSDU)
        if end - pos < AMSDU_SUBFRAME_HEADER:
            return ERR_TRUNCATED_L2, 0, end, 0, zero, zero
        da = ubytes_be(buf, pos, 6)
        sa = ubytes_be(buf, pos + 6, 6)
        mlen = u16be(buf, pos + 12)
        pos += AMSDU_SUBFRAME_HEADER
        if pos + mlen < end:
            end = pos + mlen
    if end - pos < SNAP_HEADER_LEN:
        return 0, pos, end, 0, sa, da  # no LLC/SNAP header: link fields only
    # RFC 1042 (OUI 00-00-00) and IEEE 802.1H bridge tunnel (OUI 00-00-F8) carry an ethertype
    if (
        buf[pos] == 0xAA
        and buf[pos + 1] == 0xAA
        and buf[pos + 2] == 0x03
        and buf[pos + 3] == 0
        and buf[pos + 4] == 0
        and (buf[pos + 5] == 0 or buf[pos + 5] == 0xF8)
    ):
        return 0, pos + SNAP_HEADER_LEN, end, u16be(buf, pos + 6), sa, da
    return 0, pos, end, 0, sa, da
