"""IPv6 Neighbor Discovery observations (RFC 4861), aggregated per batch like ARP: one event per
distinct message, counted.

Neighbor Discovery is to IPv6 what ARP is to IPv4: a node's solicitations and advertisements
bind its addresses to its link-layer address, and only routers send Router Advertisements. A
NumPy mask picks the ICMPv6 types 133-136 with Hop Limit 255 (RFC 4861 §6.1, §7.1: a routed
message has a lower one and is discarded); Python reads only those messages.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from medsentry.capture.batch import IPPROTO_ICMPV6, PacketBatch
from medsentry.events.flow import NdpObserved
from medsentry.flows.table import AddressFormatter, format_mac

# RFC 4861 §4.1-§4.4
ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT = 133, 134
NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT = 135, 136
ND_HOP_LIMIT = 255  # §6.1.1, §7.1.1
# §4.6 option types
OPT_SOURCE_LL, OPT_TARGET_LL, OPT_PREFIX_INFORMATION = 1, 2, 3
# where the options start in the message after the ICMPv6 type, code and checksum (§4.1-§4.4)
_OPTIONS_AT = {
    ROUTER_SOLICITATION: 4,
    ROUTER_ADVERTISEMENT: 12,
    NEIGHBOR_SOLICITATION: 20,
    NEIGHBOR_ADVERTISEMENT: 20,
}


def ndp_events(pb: PacketBatch, fmt_ip: AddressFormatter) -> list[NdpObserved]:
    """One NdpObserved per (type, frame source MAC, IPv6 source, VLAN, message) in the batch.

    The decode kernel gives ICMPv6 type and code in sport/dport and the payload after the
    8-byte ICMPv6 header; the message is read from its fifth byte (flags, then body).
    """
    icmp = np.flatnonzero(pb.proto == IPPROTO_ICMPV6)
    if icmp.size == 0:
        return []
    kind = pb.sport[icmp]
    m = (kind >= ROUTER_SOLICITATION) & (kind <= NEIGHBOR_ADVERTISEMENT)
    m &= (pb.ip_ver[icmp] == 6) & (pb.ttl[icmp] == ND_HOP_LIMIT) & (pb.dport[icmp] == 0)
    m &= (pb.err[icmp] == 0) & (pb.frag[icmp] == 0) & (pb.pl_len[icmp] > 0)
    idx = icmp[m]
    if idx.size == 0:
        return []
    buf = pb.raw.buf
    seen: dict[tuple, list[int]] = {}
    for typ, smac, shi, slo, vlan, off, n, ts in zip(
        pb.sport[idx].tolist(),
        pb.eth_src[idx].tolist(),
        pb.src_hi[idx].tolist(),
        pb.src_lo[idx].tolist(),
        pb.vlan[idx].tolist(),
        pb.pl_off[idx].tolist(),
        pb.pl_len[idx].tolist(),
        pb.raw.ts_ns[idx].tolist(),
        strict=True,
    ):
        key = (typ, smac, shi, slo, vlan, buf[off - 4 : off + n].tobytes())
        hit = seen.get(key)
        if hit is None:
            seen[key] = [ts, 1]
        else:
            hit[1] += 1
    out = []
    for (typ, smac, shi, slo, vlan, body), (ts, count) in seen.items():
        ev = _message(typ, body, format_mac(smac), fmt_ip(6, shi, slo), ts, count, vlan or None)
        if ev is not None:
            out.append(ev)
    return out


def _message(
    typ: int, body: bytes, smac: str | None, source: str, ts: int, count: int, vlan: int | None
) -> NdpObserved | None:
    """`body`: the message from its fifth byte (after type, code and checksum)."""
    start = _OPTIONS_AT[typ]
    if len(body) < start:
        return None  # shorter than its fixed part (§6.1.1, §7.1.1: ICMP length)
    f: dict = {}
    if typ in (NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT):
        f["target"] = _ipv6(body[4:20])
    if typ == NEIGHBOR_ADVERTISEMENT:  # §4.4: R, S, O
        flags = body[0]
        f["router"], f["solicited"], f["override"] = (
            bool(flags & 0x80), bool(flags & 0x40), bool(flags & 0x20)
        )  # fmt: skip
    elif typ == ROUTER_ADVERTISEMENT:  # §4.2: Router Lifetime
        f["router_lifetime"] = int.from_bytes(body[2:4], "big")
    lla_type = OPT_TARGET_LL if typ == NEIGHBOR_ADVERTISEMENT else OPT_SOURCE_LL
    prefixes: list[str] = []
    pos = start
    while pos + 2 <= len(body):
        otype, olen = body[pos], body[pos + 1] * 8
        if olen == 0 or pos + olen > len(body):
            break  # §4.6: a zero length is invalid; a truncated option ends the walk
        if otype == lla_type and olen == 8:  # Ethernet and 802.11: 6 octets (RFC 2464 §8)
            f["link_layer_address"] = body[pos + 2 : pos + 8].hex(":")
        elif otype == OPT_PREFIX_INFORMATION and olen == 32 and body[pos + 3] & 0x80:
            plen = body[pos + 2]  # §4.6.2: L (on-link) flag set
            if plen <= 128 and len(prefixes) < 16:
                prefixes.append(f"{_ipv6(body[pos + 16 : pos + 32])}/{plen}")
        pos += olen
    if prefixes:
        f["on_link_prefixes"] = prefixes
    return NdpObserved(
        ts_ns=ts, icmp_type=typ, source_mac=smac, source=source, count=count, vlan=vlan, **f
    )


def _ipv6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))
