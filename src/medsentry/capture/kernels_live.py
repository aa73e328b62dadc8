"""Walk of retired TPACKET_V3 ring blocks (linux/if_packet.h) in a numba kernel.

Each block the kernel hands to user space (block_status & TP_STATUS_USER) holds `num_pkts`
packets chained by `tp_next_offset`. The walk copies each packet into a RawBatch buffer,
re-inserting the 802.1Q tag the kernel moved into the header, then gives the block back
(block_status = TP_STATUS_KERNEL).
"""

from __future__ import annotations

import numpy as np

from medsentry.capture.kernels_bytes import u16le, u32le
from medsentry.jit import njit

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
PACKET_OUTGOING = 4  # sockaddr_ll.sll_pkttype (linux/if_packet.h)

# struct tpacket_block_desc / tpacket_hdr_v1 field offsets
BD_BLOCK_STATUS = 8
BD_NUM_PKTS = 12
BD_OFFSET_TO_FIRST_PKT = 16
# struct tpacket3_hdr field offsets
H_NEXT_OFFSET = 0
H_SEC = 4
H_NSEC = 8
H_SNAPLEN = 12
H_LEN = 16
H_STATUS = 20
H_MAC = 24
H_VLAN_TCI = 32
H_VLAN_TPID = 36
H_SLL = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): the struct sockaddr_ll
SLL_PKTTYPE = 10


@njit(cache=True, nogil=True)
def block_ready(ring: np.ndarray, block: int, block_size: int) -> bool:
    return (u32le(ring, block * block_size + BD_BLOCK_STATUS) & TP_STATUS_USER) != 0


@njit(cache=True, nogil=True)
def drain_blocks(
    ring: np.ndarray,
    ring32: np.ndarray,
    block_size: int,
    block_count: int,
    start: int,
    max_blocks: int,
    snaplen: int,
    skip_outgoing: bool,
    out: np.ndarray,
    ts_ns: np.ndarray,
    off: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
) -> tuple[int, int, int, int, int]:
    """Copy the packets of up to `max_blocks` ready blocks from `start` on into `out`.

    Returns (packets, bytes used in out, next block to look at, malformed packets skipped,
    VLAN tags put back).
    `out` must hold max_blocks * block_size * 17 // 16 bytes and the arrays
    max_blocks * block_size // 64 packets (a packet takes >= 68 bytes of a block).
    """
    n = 0
    used = 0
    bad = 0
    tags = 0
    b = start
    for _ in range(max_blocks):
        base = b * block_size
        if (u32le(ring, base + BD_BLOCK_STATUS) & TP_STATUS_USER) == 0:
            break
        npk = u32le(ring, base + BD_NUM_PKTS)
        p = u32le(ring, base + BD_OFFSET_TO_FIRST_PKT)
        for _k in range(npk):
            if p < 0 or p + H_SLL + 20 > block_size or n >= ts_ns.shape[0]:
                bad += 1
                break
            h = base + p
            status = u32le(ring, h + H_STATUS)
            mac = u16le(ring, h + H_MAC)
            snap = u32le(ring, h + H_SNAPLEN)
            wire = u32le(ring, h + H_LEN)
            nxt = u32le(ring, h + H_NEXT_OFFSET)
            if mac + snap > block_size - p:
                bad += 1
            elif not (skip_outgoing and ring[h + H_SLL + SLL_PKTTYPE] == PACKET_OUTGOING):
                take = min(snap, snaplen)
                src = h + mac
                start_out = used
                if (status & TP_STATUS_VLAN_VALID) != 0 and take >= 12:
                    tpid = 0x8100
                    if (status & TP_STATUS_VLAN_TPID_VALID) != 0:
                        tpid = u16le(ring, h + H_VLAN_TPID)
                    tci = u32le(ring, h + H_VLAN_TCI)
                    out[used : used + 12] = ring[src : src + 12]
                    out[used + 12] = (tpid >> 8) & 0xFF
                    out[used + 13] = tpid & 0xFF
                    out[used + 14] = (tci >> 8) & 0xFF
                    out[used + 15] = tci & 0xFF
                    rest = take - 12
                    out[used + 16 : used + 16 + rest] = ring[src + 12 : src + 12 + rest]
                    take += 4
                    wire += 4
                    tags += 1
                else:
                    out[used : used + take] = ring[src : src + take]
                used += take
                ts_ns[n] = u32le(ring, h + H_SEC) * 1_000_000_000 + u32le(ring, h + H_NSEC)
                off[n] = start_out
                caplen[n] = take
                wirelen[n] = wire
                n += 1
            if nxt == 0:
                break
            p += nxt
        ring32[(base + BD_BLOCK_STATUS) // 4] = TP_STATUS_KERNEL  # one store: block goes back
        b = (b + 1) % block_count
    return n, used, b, bad, tags
