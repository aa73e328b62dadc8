"""The app behind each connection, where the capture names it: one `ProcessTraffic` per
(flow, process), from the per-packet attribution of capture/processes.py."""

from __future__ import annotations

import numpy as np

from medsentry.capture.batch import DECODE_OK, IPPROTO_TCP, IPPROTO_UDP, PacketBatch
from medsentry.events.base import Endpoints
from medsentry.events.process import ProcessTraffic
from medsentry.flows.table import FlowTable, format_mac

MAX_SEEN = 1 << 20  # (process, flow) pairs remembered per capture before the memory starts over
_SENT, _RECEIVED = 2, 1  # Processes.direction


def process_events(
    pb: PacketBatch, table: FlowTable, seen: set[tuple], lo: int, hi: int
) -> list[ProcessTraffic]:
    """New (process, flow) pairs among packets [lo, hi) of the batch, just accounted by the
    flow table (their flows not yet expired), oriented host side -> remote side."""
    pr = pb.raw.processes
    if pr is None or hi <= lo:
        return []
    sl = slice(lo, hi)
    slots_all = table.pkt_slot[sl]
    m = (pr.proc[sl] >= 0) & (slots_all >= 0) & (pb.ip_ver[sl] > 0) & (pb.err[sl] == DECODE_OK)
    m &= (pb.frag[sl] == 0) & ((pb.proto[sl] == IPPROTO_TCP) | (pb.proto[sl] == IPPROTO_UDP))
    idx = np.flatnonzero(m) + lo
    if idx.size == 0:
        return []
    fmt_ip = table.fmt_ip
    d = pr.direction[idx]
    # the host's end: the packet's source when it sent it, its destination when it received it;
    # undirected packets: the address in more of the range's attributed packets (the capturing
    # host is in all of them), else the ephemeral (higher) port (apps are clients)
    n = idx.size
    ends = np.empty((2 * n, 2), np.uint64)
    ends[:n, 0], ends[:n, 1] = pb.src_hi[idx], pb.src_lo[idx]
    ends[n:, 0], ends[n:, 1] = pb.dst_hi[idx], pb.dst_lo[idx]
    _, inverse, counts = np.unique(ends, axis=0, return_inverse=True, return_counts=True)
    per = counts[inverse.reshape(-1)]
    c_src, c_dst = per[:n], per[n:]
    by_ports = pb.sport[idx] >= pb.dport[idx]
    src_local = np.where(
        d == _SENT,
        True,
        np.where(d == _RECEIVED, False, np.where(c_src != c_dst, c_src > c_dst, by_ports)),
    )
    keys = np.empty((idx.size, 13), np.uint64)
    keys[:, 12] = table.pkt_slot[idx]
    keys[:, 0] = pr.proc[idx]
    keys[:, 1] = pb.proto[idx]
    keys[:, 2] = np.where(src_local, pb.src_hi[idx], pb.dst_hi[idx])
    keys[:, 3] = np.where(src_local, pb.src_lo[idx], pb.dst_lo[idx])
    keys[:, 4] = np.where(src_local, pb.sport[idx], pb.dport[idx])
    keys[:, 5] = np.where(src_local, pb.dst_hi[idx], pb.src_hi[idx])
    keys[:, 6] = np.where(src_local, pb.dst_lo[idx], pb.src_lo[idx])
    keys[:, 7] = np.where(src_local, pb.dport[idx], pb.sport[idx])
    keys[:, 8] = np.where(src_local, pb.eth_src[idx], pb.eth_dst[idx])
    keys[:, 9] = np.where(src_local, pb.eth_dst[idx], pb.eth_src[idx])
    keys[:, 10] = pb.ip_ver[idx].astype(np.uint64) * 0x10000 + pb.vlan[idx]
    keys[:, 11] = d != 0
    uniq, first = np.unique(keys, axis=0, return_index=True)
    ts = pb.raw.ts_ns[idx][first].tolist()
    flow_ids = table.flow_ids(uniq[:, 12].astype(np.int32))
    out: list[ProcessTraffic] = []
    for row, t, flow_id in zip(uniq.tolist(), ts, flow_ids, strict=True):
        proc, proto, lhi, llo, lport, rhi, rlo, rport, lmac, rmac, vv, known, _ = row
        info = pr.table[proc]
        key = (info, flow_id)
        if key in seen:
            continue
        if len(seen) >= MAX_SEEN:
            seen.clear()
        seen.add(key)
        ver, vlan = vv >> 16, vv & 0xFFFF
        out.append(
            ProcessTraffic(
                ts_ns=t,
                endpoints=Endpoints(
                    client=fmt_ip(ver, lhi, llo),
                    server=fmt_ip(ver, rhi, rlo),
                    client_port=lport,
                    server_port=rport,
                    client_mac=format_mac(lmac),
                    server_mac=format_mac(rmac),
                    vlan=vlan or None,
                    transport="tcp" if proto == IPPROTO_TCP else "udp",
                ),
                flow_id=flow_id,
                process=info.name,
                label=info.label,
                process_id=info.ident,
                via=info.via,
                source=info.source,
                local_known=bool(known),
            )
        )
    return out
