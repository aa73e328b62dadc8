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


# The IPv4 local networks above as (network, mask) integers, for the dotted-quad fast path.
_LOCAL_V4 = tuple((int(n.network_address), int(n.netmask)) for n in _LOCAL_NETS if n.version == 4)
_MULTICAST_V4 = (0xE0000000, 0xF0000000)  # 224.0.0.0/4 (RFC 5771)


def _v4_int(ip: str) -> int | None:
    """A dotted quad as `ipaddress.IPv4Address` accepts it (four decimal octets, no leading
    zero, each <= 255), as an integer; None for anything else (left to `ipaddress`)."""
    parts = ip.split(".")
    if len(parts) != 4:
        return None
    n = 0
    for p in parts:
        if not (0 < len(p) <= 3 and p.isascii() and p.isdigit()) or (p[0] == "0" and len(p) > 1):
            return None
        o = int(p)
        if o > 255:
            return None
        n = n << 8 | o
    return n


@functools.lru_cache(maxsize=65536)
def classify(ip: str) -> str:
    """'local', 'external', 'multicast' (incl. broadcast), 'unspecified' or 'invalid'."""
    if not ip or not (ip[0].isdigit() or ":" in ip):  # a name, not an address: no exception
        return "invalid"
    n = _v4_int(ip) if ":" not in ip else None
    if n is not None:  # the same answers as below, without building an IPv4Address
        if n == 0:
            return "unspecified"
        if n & _MULTICAST_V4[1] == _MULTICAST_V4[0] or ip.endswith(".255"):
            return "multicast"
        for net, mask in _LOCAL_V4:  # a loop, not any(<generator>): classify runs cold per pair
            if n & mask == net:
                return "local"
        return "external"
    return classify_by_ipaddress(ip)


def classify_by_ipaddress(ip: str) -> str:
    """`classify` written with `ipaddress` alone: every address the fast path does not take
    (and the reference its answers are tested against)."""
    if not ip or not (ip[0].isdigit() or ":" in ip):
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


_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


@functools.lru_cache(maxsize=65536)
def is_link_local(ip: str) -> bool:
    """RFC 3927 / RFC 4291 §2.5.6 link-local: routers never forward it (RFC 3927 §7, RFC 4291
    §2.5.6), so the frame that carries it as source comes from its holder."""
    if ":" not in ip and not ip.startswith("169.254."):
        return False  # `ipaddress` spells IPv4 one way only: four decimal octets, no padding
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(a in n for n in _LINK_LOCAL if n.version == a.version)


@functools.lru_cache(maxsize=65536)
def ipv6_halves(ip: str) -> tuple[int, int] | None:
    """(64-bit prefix, 64-bit interface identifier) of an IPv6 address (RFC 4291 §2.5.1);
    None for an IPv4 address or no address."""
    if ":" not in ip:
        return None
    try:
        n = int(ipaddress.IPv6Address(ip))
    except ValueError:
        return None
    return n >> 64, n & 0xFFFF_FFFF_FFFF_FFFF


def eui64_interface_id(mac: str) -> int:
    """The Modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 Appendix A): FFFE
    inserted in the middle, the universal/local bit inverted."""
    m = int(mac.replace(":", ""), 16) ^ 0x0200_0000_0000
    return (m >> 24) << 40 | 0xFFFE << 24 | (m & 0xFF_FFFF)
