"""The packet batch: the hot-path contract between capture readers, decode and flows.

A reader yields `RawBatch`es: one chunk of capture bytes (`buf`) and, per packet, where its
captured bytes lie in `buf` plus its time, lengths, link type and interface. The decode kernel
turns a `RawBatch` into a `PacketBatch` by adding one array per header field. No Python object
exists per packet: every per-packet value is an element of a NumPy array.

Addresses are 128-bit, split in two uint64 (`*_hi`, `*_lo`): IPv4 is stored IPv4-mapped
(RFC 4291 §2.5.5.2: hi = 0, lo = 0x0000_ffff_0000_0000 | addr); `ip_ver` tells which.
MAC addresses are uint64 (48 bits used, 0 = absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medsentry.capture.processes import Processes

# Link-layer header types (tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105  # IEEE 802.11 MAC frame, no radio header
LINKTYPE_IEEE802_11_RADIOTAP = 127  # radiotap header (radiotap.org) + 802.11 frame
LINKTYPE_PPI = 192  # Per-Packet Information header + the frame of its pph_dlt
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_BLUETOOTH_LE_LL = 251
LINKTYPE_PKTAP = 258  # Apple PKTAP header (macOS pktap and rvi interfaces) + the packet
LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR = 256
LINKTYPE_NORDIC_BLE = 272

# Decode error codes (PacketBatch.err); 0 = the packet decoded as far as it goes.
DECODE_OK = 0
ERR_TRUNCATED_L2 = 1  # link header longer than the captured bytes
ERR_UNKNOWN_LINKTYPE = 2
ERR_BAD_IP_HEADER = 3  # version/IHL/total length inconsistent
ERR_TRUNCATED_IP = 4
ERR_BAD_TCP_HEADER = 5  # data offset < 5 or beyond the segment
ERR_TRUNCATED_L4 = 6
ERR_BAD_ARP = 7
ERR_WLAN_PROTECTED = 8  # 802.11 data frame with the Protected Frame bit: encrypted body
ERR_WLAN_NOT_DATA = 9  # 802.11 management, control or extension frame: no network layer
ERR_BAD_L2 = 10  # radiotap/PPI/802.11 header contradicts itself (version, lengths)
ERR_WLAN_BAD_FCS = 11  # 802.11 frame the radio flagged as failing its FCS check
DECODE_ERRORS = {
    ERR_TRUNCATED_L2: "link-layer header truncated",
    ERR_UNKNOWN_LINKTYPE: "unknown link type",
    ERR_BAD_IP_HEADER: "malformed IP header",
    ERR_TRUNCATED_IP: "IP header truncated",
    ERR_BAD_TCP_HEADER: "malformed TCP header",
    ERR_TRUNCATED_L4: "transport header truncated",
    ERR_BAD_ARP: "malformed ARP packet",
    ERR_WLAN_PROTECTED: "802.11 data frame encrypted (not decoded)",
    ERR_WLAN_NOT_DATA: "802.11 management/control frame (not decoded)",
    ERR_BAD_L2: "malformed radiotap/PPI/802.11 header",
    ERR_WLAN_BAD_FCS: "802.11 frame with a bad FCS (damaged, not decoded)",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58


@dataclass(slots=True)
class RawBatch:
    """Packets as read from a source, before decoding."""

    source: str  # file name or interface, for messages
    buf: np.ndarray  # uint8: the bytes of this chunk
    buf_offset: int  # byte offset of buf[0] in the source file (0 for live)
    first_frame: int  # 1-based frame number of packet 0 in the whole source
    ts_ns: np.ndarray  # int64, nanoseconds since the epoch
    off: np.ndarray  # int64, start of the packet's captured bytes in buf
    caplen: np.ndarray  # uint32
    wirelen: np.ndarray  # uint32, original length on the wire
    linktype: np.ndarray  # uint16, per packet (pcapng mixes interfaces)
    iface: np.ndarray  # uint16, interface index within the source
    # the process behind each packet, where the file names it (capture/processes.py)
    processes: Processes | None = None

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])


@dataclass(slots=True)
class PacketBatch:
    """A RawBatch plus one decoded array per header field (all of length n)."""

    raw: RawBatch
    eth_src: np.ndarray  # uint64
    eth_dst: np.ndarray  # uint64
    vlan: np.ndarray  # uint16, outermost 802.1Q VLAN id, 0 = untagged
    ethertype: np.ndarray  # uint16 (after VLAN tags; synthesized for raw/null/SLL)
    ip_ver: np.ndarray  # uint8: 0 not IP, 4 or 6
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    proto: np.ndarray  # uint8, IP protocol (after IPv6 extension headers)
    ttl: np.ndarray  # uint8, TTL or hop limit
    ip_len: np.ndarray  # uint32, IP total length (wire bytes at layer 3)
    frag: np.ndarray  # uint8: 1 = non-first fragment (no transport header)
    sport: np.ndarray  # uint16 (ICMP: type)
    dport: np.ndarray  # uint16 (ICMP: code)
    tcp_flags: np.ndarray  # uint8
    tcp_seq: np.ndarray  # uint32
    tcp_ack: np.ndarray  # uint32
    tcp_win: np.ndarray  # uint16
    pl_off: np.ndarray  # int64, transport payload start in raw.buf
    pl_len: np.ndarray  # uint32, payload bytes captured (clipped to caplen)
    arp_op: np.ndarray  # uint8, ARP opcode (ethertype 0x0806); sender/target in src/dst
    err: np.ndarray  # uint8, DECODE_* code
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)
