"""LLDP (IEEE 802.1AB-2016) and Cisco Discovery Protocol on raw Ethernet frames.

Switches and many medical devices announce themselves with these: system name and
description (vendor, model, firmware), capabilities and a management address. Both are frame
dissectors: they see a frame at a time, never a flow.
"""

from __future__ import annotations

import ipaddress
import struct

from medsentry.events.base import Event
from medsentry.events.identity import CdpNeighbor, LldpNeighbor
from medsentry.protocols.base import ParseError
from medsentry.protocols.registry import register_frame
from medsentry.protocols.streamkit import mac_str, text

LINKTYPE_ETHERNET = 1
ETHERTYPE_LLDP = 0x88CC  # IEEE 802.1AB §7.2
ETHERTYPE_VLAN = (0x8100, 0x88A8)  # IEEE 802.1Q C-tag, S-tag
CDP_SNAP = bytes.fromhex("aaaa0300000c2000")  # LLC SNAP, Cisco OUI, protocol id 0x2000

# IEEE 802.1AB-2016 §8.5 TLV types
END, CHASSIS_ID, PORT_ID, TTL, PORT_DESCRIPTION, SYSTEM_NAME = 0, 1, 2, 3, 4, 5
SYSTEM_DESCRIPTION, SYSTEM_CAPABILITIES, MANAGEMENT_ADDRESS = 6, 7, 8
# §8.5.8.1 system capabilities bits
LLDP_CAPABILITIES = (
    "other",
    "repeater",
    "bridge",
    "wlan-ap",
    "router",
    "telephone",
    "docsis",
    "station",
    "c-vlan",
    "s-vlan",
    "two-port-mac-relay",
)
# Cisco CDP TLV types
CDP_DEVICE_ID, CDP_ADDRESSES, CDP_PORT_ID, CDP_CAPABILITIES = 0x0001, 0x0002, 0x0003, 0x0004
CDP_SOFTWARE_VERSION, CDP_PLATFORM, CDP_NATIVE_VLAN = 0x0005, 0x0006, 0x000A
CDP_CAPABILITY_BITS = (
    "router",
    "trans-bridge",
    "source-route-bridge",
    "switch",
    "host",
    "igmp",
    "repeater",
    "phone",
    "remote-managed",
    "cvta",
    "two-port-mac-relay",
)


def _bits(value: int, names: tuple[str, ...]) -> list[str]:
    return [n for i, n in enumerate(names) if value & (1 << i)]


def _iana_address(raw: bytes) -> str:
    """An IANA address family number (RFC 3232) then the address."""
    if len(raw) == 5 and raw[0] == 1:
        return str(ipaddress.IPv4Address(raw[1:]))
    if len(raw) == 17 and raw[0] == 2:
        return str(ipaddress.IPv6Address(raw[1:]))
    if len(raw) == 7 and raw[0] == 6:
        return mac_str(raw[1:])
    return raw.hex()


def _id(subtype: int, value: bytes, mac_subtype: int, net_subtype: int) -> str:
    if subtype == mac_subtype and len(value) == 6:
        return mac_str(value)
    if subtype == net_subtype:
        return _iana_address(value)
    return text(value, 255)


def ethernet(frame: bytes) -> tuple[bytes, int, int | None, int]:
    """(source MAC, ethertype or 802.3 length, VLAN id, payload offset) of an Ethernet frame."""
    if len(frame) < 14:
        raise ParseError("Ethernet frame shorter than its header")
    src = frame[6:12]
    etype = struct.unpack(">H", frame[12:14])[0]
    pos, vlan = 14, None
    while etype in ETHERTYPE_VLAN:
        if len(frame) < pos + 4:
            raise ParseError("VLAN tag truncated")
        vlan = struct.unpack(">H", frame[pos : pos + 2])[0] & 0x0FFF
        etype = struct.unpack(">H", frame[pos + 2 : pos + 4])[0]
        pos += 4
    return src, etype, vlan, pos


def parse_lldpdu(data: bytes, src: bytes, vlan: int | None, ts_ns: int) -> LldpNeighbor:
    """IEEE 802.1AB-2016 §8.2: Chassis ID, Port ID, TTL, optional TLVs, End."""
    pos = 0
    f: dict = {"capabilities": [], "enabled_capabilities": [], "management_addresses": []}
    order: list[int] = []
    while pos + 2 <= len(data):
        header = struct.unpack(">H", data[pos : pos + 2])[0]
        ttype, length = header >> 9, header & 0x01FF  # §8.4: 7-bit type, 9-bit length
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise ParseError(f"LLDP TLV {ttype} truncated at byte {pos}")
        pos += 2 + length
        if ttype == END:
            break
        order.append(ttype)
        if ttype == CHASSIS_ID and length >= 2:
            f["chassis_id_subtype"] = value[0]
            f["chassis_id"] = _id(value[0], value[1:], 4, 5)  # §8.5.2.2
        elif ttype == PORT_ID and length >= 2:
            f["port_id_subtype"] = value[0]
            f["port_id"] = _id(value[0], value[1:], 3, 4)  # §8.5.3.2
        elif ttype == TTL and length >= 2:
            f["ttl"] = struct.unpack(">H", value[:2])[0]
        elif ttype == PORT_DESCRIPTION:
            f["port_description"] = text(value, 255)
        elif ttype == SYSTEM_NAME:
            f["system_name"] = text(value, 255)
        elif ttype == SYSTEM_DESCRIPTION:
            f["system_description"] = text(value, 512)
        elif ttype == SYSTEM_CAPABILITIES and length == 4:
            caps, enabled = struct.unpack(">HH", value)
            f["capabilities"] = _bits(caps, LLDP_CAPABILITIES)
            f["enabled_capabilities"] = _bits(enabled, LLDP_CAPABILITIES)
        elif ttype == MANAGEMENT_ADDRESS and length >= 2:
            n = value[0]  # §8.5.9.2: address string length covers the subtype byte
            if 2 <= n <= 32 and n + 1 <= length and len(f["management_addresses"]) < 8:
                f["management_addresses"].append(_iana_address(value[1 : 1 + n]))
    if order[:3] != [CHASSIS_ID, PORT_ID, TTL] or not {"chassis_id", "port_id", "ttl"} <= f.keys():
        raise ParseError("LLDPDU does not start with Chassis ID, Port ID, TTL (802.1AB §8.2)")
    return LldpNeighbor(ts_ns=ts_ns, source_mac=mac_str(src), vlan=vlan, **f)


def parse_cdp(data: bytes, src: bytes, ts_ns: int) -> CdpNeighbor:
    """CDP: version, TTL, checksum, then type/length/value with a 4-byte header."""
    if len(data) < 4:
        raise ParseError("CDP header truncated")
    version, ttl = data[0], data[1]
    if version not in (1, 2):
        raise ParseError(f"CDP version {version} unknown")
    f: dict = {"capabilities": [], "addresses": []}
    pos = 4
    while pos + 4 <= len(data):
        ttype, length = struct.unpack(">HH", data[pos : pos + 4])
        if length < 4 or pos + length > len(data):
            raise ParseError(f"CDP TLV {ttype:#06x} length {length} invalid at byte {pos}")
        value = data[pos + 4 : pos + length]
        pos += length
        if ttype == CDP_DEVICE_ID:
            f["device_id"] = text(value, 255)
        elif ttype == CDP_PORT_ID:
            f["port_id"] = text(value, 255)
        elif ttype == CDP_PLATFORM:
            f["platform"] = text(value, 255)
        elif ttype == CDP_SOFTWARE_VERSION:
            f["software_version"] = text(value, 1024)
        elif ttype == CDP_CAPABILITIES and len(value) == 4:
            f["capabilities"] = _bits(struct.unpack(">I", value)[0], CDP_CAPABILITY_BITS)
        elif ttype == CDP_NATIVE_VLAN and len(value) == 2:
            f["native_vlan"] = struct.unpack(">H", value)[0]
        elif ttype == CDP_ADDRESSES and len(value) >= 4:
            f["addresses"] = _cdp_addresses(value)
    return CdpNeighbor(ts_ns=ts_ns, source_mac=mac_str(src), version=version, ttl=ttl, **f)


def _cdp_addresses(value: bytes) -> list[str]:
    """Count, then per address: protocol type, protocol length, protocol, length, address."""
    count = struct.unpack(">I", value[:4])[0]
    out: list[str] = []
    i = 4
    for _ in range(min(count, 8)):
        if i + 2 > len(value):
            break
        plen = value[i + 1]
        proto = value[i + 2 : i + 2 + plen]
        i += 2 + plen
        if i + 2 > len(value):
            break
        alen = struct.unpack(">H", value[i : i + 2])[0]
        addr = value[i + 2 : i + 2 + alen]
        i += 2 + alen
        if proto == b"\xcc" and len(addr) == 4:  # NLPID IPv4
            out.append(str(ipaddress.IPv4Address(addr)))
        elif len(addr) == 16:
            out.append(str(ipaddress.IPv6Address(addr)))
    return out


def dissect(linktype: int, ethertype: int, frame: bytes, ts_ns: int, interface: int) -> list[Event]:
    if linktype != LINKTYPE_ETHERNET:
        return []
    src, etype, vlan, pos = ethernet(frame)
    if etype == ETHERTYPE_LLDP:
        return [parse_lldpdu(frame[pos:], src, vlan, ts_ns)]
    if etype <= 1500 and frame[pos : pos + 8] == CDP_SNAP:  # IEEE 802.3 length + LLC/SNAP
        return [parse_cdp(frame[pos + 8 : pos + etype], src, ts_ns)]
    return []


register_frame(dissect)
