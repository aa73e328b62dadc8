"""The decode kernel: link, network and transport headers of every packet of a batch.

One compiled loop over the packets fills every PacketBatch array. Each header is checked
against the captured bytes before it is read; a header that does not fit or contradicts
itself sets `err` and leaves its own fields, and every field above it, zero (fields of the
layers below stay filled: a packet whose TCP header is cut still has its IP addresses).
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.batch import (
    ERR_BAD_ARP,
    ERR_BAD_IP_HEADER,
    ERR_BAD_TCP_HEADER,
    ERR_TRUNCATED_IP,
    ERR_TRUNCATED_L2,
    ERR_TRUNCATED_L4,
    ERR_UNKNOWN_LINKTYPE,
    LINKTYPE_BLUETOOTH_LE_LL,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NORDIC_BLE,
    LINKTYPE_NULL,
    LINKTYPE_PKTAP,
    LINKTYPE_PPI,
    LINKTYPE_RAW,
)
from medsentry.capture.hci_linktypes import HCI_LINKTYPES
from medsentry.capture.kernels_bytes import prefetch, u16be, u32be, u32le, ubytes_be
from medsentry.capture.kernels_wlan import WLAN_LINKTYPES, wlan_link
from medsentry.jit import njit

# Link types the kernel understands; BLE ones (sniffer, HCI, and the btsnoop and PacketLogger
# pseudo link types of HCI logs) are passed through for a BLE dissector.
BLE_LINKTYPES = frozenset(
    {LINKTYPE_BLUETOOTH_LE_LL, LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR, LINKTYPE_NORDIC_BLE}
    | set(HCI_LINKTYPES)
)
DECODED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_PKTAP,
    }
    | BLE_LINKTYPES
    | WLAN_LINKTYPES
)

IPV4_MAPPED = np.uint64(0x0000_FFFF_0000_0000)  # RFC 4291 §2.5.5.2
MAX_VLAN_TAGS = 8
PREFETCH_PACKETS = 16  # prefetch distance in packets (memory latency / time per packet)
MAX_IPV6_EXT_HEADERS = 16

# BSD AF_INET6 values seen in DLT_NULL/DLT_LOOP headers (tcpdump.org/linktypes.html)
AF_INET = 2
AF_INET6_LINUX = 10
AF_INET6_BSD = 24  # NetBSD, OpenBSD, BSD/OS
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30
# Apple PKTAP (tcpdump print-pktap.c, Wireshark packet-pktap.c): little-endian header length,
# record type, DLT of the packet that follows; 108 octets at least
PKTAP_MIN_HEADER = 108
PKTAP_REC_PACKET = 1
DLT_RAW_BSD = 12  # DLT_RAW's value on the BSDs and Darwin (tcpdump.org/linktypes.html)
DLT_RAW_OPENBSD = 14


@njit(cache=True, nogil=True, inline="always")
def _is_ipv6_ext(nh: np.int64) -> bool:
    """An IPv6 extension header the decoder walks (RFC 8200 §4; RFC 4302, 6275, 7401, 5533)."""
    return (
        nh == 0 or nh == 43 or nh == 44 or nh == 51 or nh == 60 or nh == 135 or nh == 139
        or nh == 140
    )  # fmt: skip


@njit(cache=True, nogil=True)
def decode_kernel(
    buf: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    linktype: np.ndarray,
    eth_src: np.ndarray,
    eth_dst: np.ndarray,
    vlan: np.ndarray,
    ethertype: np.ndarray,
    ip_ver: np.ndarray,
    src_hi: np.ndarray,
    src_lo: np.ndarray,
    dst_hi: np.ndarray,
    dst_lo: np.ndarray,
    proto: np.ndarray,
    ttl: np.ndarray,
    ip_len: np.ndarray,
    frag: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    tcp_flags: np.ndarray,
    tcp_seq: np.ndarray,
    tcp_ack: np.ndarray,
    tcp_win: np.ndarray,
    pl_off: np.ndarray,
    pl_len: np.ndarray,
    arp_op: np.ndarray,
    err: np.ndarray,
    arp_frame_src: np.ndarray,
    arp_frame_dst: np.ndarray,
) -> None:
    """Fill the output arrays (all pre-zeroed, length n) for packets off/caplen/linktype
    (wirelen only tells whether an 802.11 frame's trailing FCS was captured)."""
    blen = buf.shape[0]
    zero = np.uint64(0)
    npk = off.shape[0]
    for i in range(npk):
        if i + PREFETCH_PACKETS < npk:  # the headers of a later packet: two cache lines
            prefetch(buf, off[i + PREFETCH_PACKETS])
            prefetch(buf, off[i + PREFETCH_PACKETS] + 64)
        p = off[i]
        if p < 0 or p > blen:
            err[i] = ERR_TRUNCATED_L2
            continue
        end = p + caplen[i]
        if end > blen:
            end = blen
        lt = np.int64(linktype[i])
        if lt == LINKTYPE_PKTAP:  # the packet after the header, in the header's own DLT
            if end - p < 12:
                err[i] = ERR_TRUNCATED_L2
                continue
            hl = u32le(buf, p)
            if hl < PKTAP_MIN_HEADER or end - p < hl:
                err[i] = ERR_TRUNCATED_L2
                continue
            if u32le(buf, p + 4) != PKTAP_REC_PACKET:
                continue  # PKT_REC_NONE: a header without a packet
            lt = np.int64(u32le(buf, p + 8))
            if lt in (DLT_RAW_BSD, DLT_RAW_OPENBSD):
                lt = LINKTYPE_RAW
            elif lt == LINKTYPE_PKTAP:
                err[i] = ERR_UNKNOWN_LINKTYPE
                continue
            p += hl
        src_mac = zero
        dst_mac = zero
        pos = p
        et = 0
        # ---- link layer
        if lt == LINKTYPE_ETHERNET:  # IEEE 802.3 §3.1.1
            if end - p < 14:
                err[i] = ERR_TRUNCATED_L2
                continue
            dst_mac = ubytes_be(buf, p, 6)
            src_mac = ubytes_be(buf, p + 6, 6)
            et = u16be(buf, p + 12)
            pos = p + 14
        elif lt == LINKTYPE_LINUX_SLL:  # tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
            if end - p < 16:
                err[i] = ERR_TRUNCATED_L2
                continue
            if u16be(buf, p + 4) == 6:
                src_mac = ubytes_be(buf, p + 6, 6)
            et = u16be(buf, p + 14)
            pos = p + 16
        elif lt == LINKTYPE_LINUX_SLL2:  # tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html
            if end - p < 20:
                err[i] = ERR_TRUNCATED_L2
                continue
            et = u16be(buf, p)
            if buf[p + 11] == 6:
                src_mac = ubytes_be(buf, p + 12, 6)
            pos = p + 20
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):  # 4-byte AF_ value, either order
            if end - p < 4:
                err[i] = ERR_TRUNCATED_L2
                continue
            af = u32le(buf, p)
            if af > 0xFFFF:
                af = u32be(buf, p)
            if af == AF_INET:
                et = 0x0800
            elif af in (AF_INET6_BSD, AF_INET6_FREEBSD, AF_INET6_DARWIN, AF_INET6_LINUX):
                et = 0x86DD
            else:
                continue
            pos = p + 4
        elif lt == LINKTYPE_RAW:  # the IP version nibble tells v4 from v6
            if end - p < 1:
                err[i] = ERR_TRUNCATED_IP
                continue
            v = buf[p] >> 4
            if v == 4:
                et = 0x0800
            elif v == 6:
                et = 0x86DD
            else:
                err[i] = ERR_BAD_IP_HEADER
                continue
        elif lt == LINKTYPE_IPV4:
            et = 0x0800
        elif lt == LINKTYPE_IPV6:
            et = 0x86DD
        elif lt in (LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_IEEE802_11, LINKTYPE_PPI):
            # radiotap.org, IEEE 802.11-2020 §9, CACE PPI 1.0.10 (kernels_wlan.py)
            werr, pos, end, et, src_mac, dst_mac = wlan_link(
                buf, p, end, lt, caplen[i] >= wirelen[i]
            )
            if werr != 0:  # encrypted, management or damaged: the addresses, if any, only
                eth_src[i] = src_mac
                eth_dst[i] = dst_mac
                err[i] = werr
                continue
        elif (
            lt
            in (
                LINKTYPE_BLUETOOTH_LE_LL,
                LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
                LINKTYPE_NORDIC_BLE,
            )
            or lt in HCI_LINKTYPES
        ):
            continue  # left for the BLE dissector
        else:
            err[i] = ERR_UNKNOWN_LINKTYPE
            continue
        # IEEE 802.1Q §9.6 C-tag 0x8100, S-tag 0x88a8; 0x9100 pre-standard QinQ
        vid = 0
        ntags = 0
        bad = False
        while et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if end - pos < 4 or ntags >= MAX_VLAN_TAGS:
                bad = True
                break
            if ntags == 0:
                vid = u16be(buf, pos) & 0x0FFF
            et = u16be(buf, pos + 2)
            pos += 4
            ntags += 1
        if bad:
            err[i] = ERR_TRUNCATED_L2
            continue
        eth_src[i] = src_mac
        eth_dst[i] = dst_mac
        vlan[i] = vid
        ethertype[i] = et
        avail = end - pos
        # ---- network layer
        if et == 0x0806:  # RFC 826
            if avail < 8:
                err[i] = ERR_BAD_ARP
                continue
            op = u16be(buf, pos + 6)
            hlen = buf[pos + 4]
            plen = buf[pos + 5]
            if u16be(buf, pos + 2) == 0x0800 and plen != 4:  # IPv4 addresses are 4 bytes
                err[i] = ERR_BAD_ARP
                continue
            if hlen == 6 and plen == 4:
                if avail < 28:
                    err[i] = ERR_BAD_ARP
                    continue
                arp_frame_src[i] = src_mac
                arp_frame_dst[i] = dst_mac
                eth_src[i] = ubytes_be(buf, pos + 8, 6)  # sender hardware address
                src_lo[i] = IPV4_MAPPED | np.uint64(u32be(buf, pos + 14))  # sender protocol
                eth_dst[i] = ubytes_be(buf, pos + 18, 6)  # target hardware address
                dst_lo[i] = IPV4_MAPPED | np.uint64(u32be(buf, pos + 24))  # target protocol
            arp_op[i] = op
            continue
        is_frag = False
        if et == 0x0800:  # RFC 791 §3.1
            if avail < 20:
                err[i] = ERR_TRUNCATED_IP
                continue
            b0 = buf[pos]
            ihl = np.int64(b0 & 0x0F) * 4
            if (b0 >> 4) != 4 or ihl < 20:
                err[i] = ERR_BAD_IP_HEADER
                continue
            tl = u16be(buf, pos + 2)
            if tl == 0:  # TCP segmentation offload: length left to the NIC
                tl = avail
            if tl < ihl:
                err[i] = ERR_BAD_IP_HEADER
                continue
            if ihl > avail:
                err[i] = ERR_TRUNCATED_IP
                continue
            nh = np.int64(buf[pos + 9])
            hop = buf[pos + 8]
            s_hi = zero
            d_hi = zero
            s_lo = IPV4_MAPPED | np.uint64(u32be(buf, pos + 12))
            d_lo = IPV4_MAPPED | np.uint64(u32be(buf, pos + 16))
            is_frag = (u16be(buf, pos + 6) & 0x1FFF) != 0  # fragment offset
            l4 = pos + ihl
            ipend = pos + tl
            ver = 4
        elif et == 0x86DD:  # RFC 8200 §3
            if avail < 40:
                err[i] = ERR_TRUNCATED_IP
                continue
            if (buf[pos] >> 4) != 6:
                err[i] = ERR_BAD_IP_HEADER
                continue
            plen = u16be(buf, pos + 4)
            nh = np.int64(buf[pos + 6])
            hop = buf[pos + 7]
            tl = 40 + plen
            if plen == 0 and nh == 0:  # RFC 2675 jumbogram: length in hop-by-hop option
                tl = avail
            s_hi = ubytes_be(buf, pos + 8, 8)
            s_lo = ubytes_be(buf, pos + 16, 8)
            d_hi = ubytes_be(buf, pos + 24, 8)
            d_lo = ubytes_be(buf, pos + 32, 8)
            l4 = pos + 40
            ipend = pos + tl
            ver = 6
            ext_err = 0
            for _ in range(MAX_IPV6_EXT_HEADERS):  # RFC 8200 §4
                if not _is_ipv6_ext(nh):
                    break
                hdr_min = 8 if nh == 44 else 2  # RFC 8200 §4.5; RFC 4302 §2.2
                if l4 + hdr_min > ipend:
                    ext_err = ERR_BAD_IP_HEADER
                    break
                if l4 + hdr_min > end:
                    ext_err = ERR_TRUNCATED_IP
                    break
                if nh == 44:  # RFC 8200 §4.5
                    elen = 8
                    is_frag = (u16be(buf, l4 + 2) >> 3) != 0
                elif nh == 51:
                    elen = (np.int64(buf[l4 + 1]) + 2) * 4
                else:
                    elen = (np.int64(buf[l4 + 1]) + 1) * 8
                if l4 + elen > ipend:
                    ext_err = ERR_BAD_IP_HEADER
                    break
                if l4 + elen > end:
                    ext_err = ERR_TRUNCATED_IP
                    break
                nh = np.int64(buf[l4])
                l4 += elen
                if is_frag:
                    break
            if ext_err == 0 and not is_frag and _is_ipv6_ext(nh):
                ext_err = ERR_BAD_IP_HEADER  # a chain longer than any real stack sends
            if ext_err != 0:
                err[i] = ext_err
                continue
        else:
            continue  # another ethertype: link fields only
        capend = min(end, ipend)
        ip_ver[i] = ver
        src_hi[i] = s_hi
        src_lo[i] = s_lo
        dst_hi[i] = d_hi
        dst_lo[i] = d_lo
        proto[i] = nh
        ttl[i] = hop
        ip_len[i] = tl
        if is_frag:  # non-first fragment: its bytes are the datagram's, not a header
            frag[i] = 1
            pl_off[i] = l4
            pl_len[i] = capend - l4
            continue
        # ---- transport layer
        if nh == 6:  # RFC 9293 §3.1
            if l4 + 20 > ipend:
                err[i] = ERR_BAD_TCP_HEADER
                continue
            if l4 + 20 > end:
                err[i] = ERR_TRUNCATED_L4
                continue
            doff = np.int64(buf[l4 + 12] >> 4) * 4
            if doff < 20 or l4 + doff > ipend:
                err[i] = ERR_BAD_TCP_HEADER
                continue
            if l4 + doff > end:
                err[i] = ERR_TRUNCATED_L4
                continue
            sport[i] = u16be(buf, l4)
            dport[i] = u16be(buf, l4 + 2)
            tcp_seq[i] = u32be(buf, l4 + 4)
            tcp_ack[i] = u32be(buf, l4 + 8)
            tcp_flags[i] = buf[l4 + 13]
            tcp_win[i] = u16be(buf, l4 + 14)
            pl_off[i] = l4 + doff
            pl_len[i] = capend - (l4 + doff)
        elif nh == 17:  # RFC 768
            if l4 + 8 > capend:
                err[i] = ERR_TRUNCATED_L4
                continue
            sport[i] = u16be(buf, l4)
            dport[i] = u16be(buf, l4 + 2)
            ulen = u16be(buf, l4 + 4)
            pe = capend
            if ulen >= 8 and l4 + ulen < pe:
                pe = l4 + ulen
            pl_off[i] = l4 + 8
            pl_len[i] = pe - (l4 + 8)
        elif nh == 1 or nh == 58:  # RFC 792, RFC 4443 §2.1: type and code
            if l4 + 4 > capend:
                err[i] = ERR_TRUNCATED_L4
                continue
            sport[i] = buf[l4]
            dport[i] = buf[l4 + 1]
            h = min(8, capend - l4)
            pl_off[i] = l4 + h
            pl_len[i] = capend - (l4 + h)
        else:
            pl_off[i] = l4
            pl_len[i] = capend - l4
