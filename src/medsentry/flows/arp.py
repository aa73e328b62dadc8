"""ARP observations (RFC 826), aggregated per batch: one event per distinct announcement."""

from __future__ import annotations

import numpy as np

from medsentry.capture.batch import ETHERTYPE_ARP, PacketBatch
from medsentry.events.flow import ArpObserved
from medsentry.flows.table import AddressFormatter, format_mac

_MAPPED = np.uint64(0x0000_FFFF_0000_0000)
_HI_MASK = np.uint64(0xFFFF_FFFF_0000_0000)


def arp_events(pb: PacketBatch, fmt_ip: AddressFormatter) -> list[ArpObserved]:
    """One ArpObserved per (op, sender MAC/IP, target MAC/IP, VLAN) in the batch, counted.

    The decode kernel leaves the sender/target hardware addresses in eth_src/eth_dst and the
    protocol addresses, IPv4-mapped, in src_lo/dst_lo (Ethernet/IPv4 ARP only).
    """
    m = (pb.ethertype == ETHERTYPE_ARP) & (pb.arp_op > 0) & (pb.err == 0)
    m &= (pb.src_lo & _HI_MASK) == _MAPPED
    idx = np.flatnonzero(m)
    if idx.size == 0:
        return []
    keys = np.empty((idx.size, 6), np.uint64)
    keys[:, 0] = pb.arp_op[idx]
    keys[:, 1] = pb.eth_src[idx]
    keys[:, 2] = pb.src_lo[idx]
    keys[:, 3] = pb.eth_dst[idx]
    keys[:, 4] = pb.dst_lo[idx]
    keys[:, 5] = pb.vlan[idx]
    uniq, first, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    ts = pb.raw.ts_ns[idx][first].tolist()
    out = []
    for (op, smac, sip, tmac, tip, vlan), t, c in zip(
        uniq.tolist(), ts, counts.tolist(), strict=True
    ):
        out.append(
            ArpObserved(
                ts_ns=t,
                op=op,
                sender_mac=format_mac(smac) or "00:00:00:00:00:00",
                sender_ip=fmt_ip(4, 0, sip),
                target_mac=format_mac(tmac) or "00:00:00:00:00:00",
                target_ip=fmt_ip(4, 0, tip),
                gratuitous=sip == tip,  # RFC 5227 §3: sender and target protocol address equal
                count=c,
                vlan=vlan or None,
            )
        )
    return out
