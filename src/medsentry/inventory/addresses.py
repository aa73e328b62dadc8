"""Address classes the inventory needs: local (a device here) or external (a peer out there)."""

from __future__ import annotations

import functools
import ipaddress

# Local: RFC 1918, RFC 6598 shared (CGNAT), RFC 3927 / RFC 4291 link-local, RFC 4193 ULA, loopback.
_LOCAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
)


@functools.lru_cache(maxsize=65536)
def classify(ip: str) -> str:
    """'local', 'external', 'multicast' (incl. broadcast), 'unspecified' or 'invalid'."""
    if not ip or not (ip[0].isdigit() or ":" in ip):  # a name, not an address: no exception
        return "invalid"
    try:
        a = ipaddress.IPv6Address(ip) if ":" in ip else ipaddress.IPv4Address(ip)
    except ValueError:
        return "invalid"
    if a.is_unspecified:
        return "unspecified"
    if a.is_multicast or ip == "255.255.255.255" or (a.version == 4 and ip.endswith(".255")):
        # a /24-or-longer subnet broadcast is the common case; a host ending in .255 in a wider
        # subnet is rare enough to accept the miss
        return "multicast"
    if any(a in n for n in _LOCAL_NETS if n.version == a.version):
        return "local"
    return "external"


def is_unicast_mac(mac: str | None) -> bool:
    """A station address: not broadcast, not group (I/G bit, IEEE 802 §8.2), not all-zero."""
    if not mac or len(mac) < 17:
        return False
    try:
        first = int(mac[:2], 16)
    except ValueError:
        return False
    return not (first & 0x01) and mac != "00:00:00:00:00:00"


def is_local_admin_mac(mac: str) -> bool:
    """U/L bit set (IEEE 802 §8.2): locally administered, often randomized; no OUI applies."""
    return bool(int(mac[:2], 16) & 0x02)
