"""DHCPv4 (RFC 2131, options RFC 2132) and DHCPv6 (RFC 8415): what a client says about itself.

One datagram per `feed`. The parameter request list (option 55) and the option order are kept
as fingerprints: they identify the DHCP client implementation, often the device's OS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import struct

from medsentry.events.base import Event
from medsentry.events.identity import DhcpMessage, Dhcpv6Message
from medsentry.protocols.base import ParseError
from medsentry.protocols.dns import read_name
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, mac_str, text

MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3
# RFC 2132 §9.6 (1-8), RFC 3203 (9), RFC 4388 (10-13), RFC 6926 (14-18)
DHCP_MESSAGE_TYPES = {
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
    8: "INFORM",
    9: "FORCERENEW",
    10: "LEASEQUERY",
    11: "LEASEUNASSIGNED",
    12: "LEASEUNKNOWN",
    13: "LEASEACTIVE",
    14: "BULKLEASEQUERY",
    15: "LEASEQUERYDONE",
    16: "ACTIVELEASEQUERY",
    17: "LEASEQUERYSTATUS",
    18: "TLS",
}
OPT_PAD, OPT_END = 0, 255
OPT_HOSTNAME, OPT_REQUESTED_ADDRESS, OPT_MESSAGE_TYPE, OPT_SERVER_ID = 12, 50, 53, 54
OPT_PARAMETER_REQUEST_LIST, OPT_VENDOR_CLASS, OPT_CLIENT_ID, OPT_CLIENT_FQDN = 55, 60, 61, 81

# RFC 8415 §7.3 message types
DHCPV6_MESSAGE_TYPES = {
    1: "SOLICIT",
    2: "ADVERTISE",
    3: "REQUEST",
    4: "CONFIRM",
    5: "RENEW",
    6: "REBIND",
    7: "REPLY",
    8: "RELEASE",
    9: "DECLINE",
    10: "RECONFIGURE",
    11: "INFORMATION-REQUEST",
    12: "RELAY-FORW",
    13: "RELAY-REPL",
}
OPTION_CLIENTID, OPTION_ORO, OPTION_RELAY_MSG, OPTION_VENDOR_CLASS = 1, 6, 9, 16  # RFC 8415 §21
OPTION_CLIENT_FQDN = 39  # RFC 4704 §4


def _ipv4(raw: bytes) -> str | None:
    return str(ipaddress.IPv4Address(raw)) if len(raw) == 4 else None


def parse_dhcp(data: bytes) -> dict:
    """RFC 2131 §2 message format; returns the fields the event carries."""
    if len(data) < 240:
        raise ParseError(f"DHCP message of {len(data)} bytes is shorter than 240")
    op, htype, hlen = data[0], data[1], data[2]
    if op not in (1, 2):
        raise ParseError(f"DHCP op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if data[236:240] != MAGIC_COOKIE:
        raise ParseError("DHCP magic cookie missing (RFC 2131 §3)")
    xid = struct.unpack(">I", data[4:8])[0]
    out: dict = {"op": op, "xid": xid, "options": []}
    if data[3]:
        out["hops"] = data[3]
    for key, raw in (
        ("client_address", data[12:16]),  # ciaddr
        ("your_address", data[16:20]),  # yiaddr
        ("relay_address", data[24:28]),  # giaddr
    ):
        if raw != b"\0\0\0\0":
            out[key] = _ipv4(raw)
    if htype == 1 and hlen == 6:  # Ethernet chaddr
        out["client_mac"] = mac_str(data[28:34])
    pos = 240
    while pos < len(data):
        code = data[pos]
        if code == OPT_PAD:
            pos += 1
            continue
        if code == OPT_END:
            break
        if pos + 2 > len(data):
            raise ParseError(f"DHCP option {code} truncated at byte {pos}")
        length = data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise ParseError(f"DHCP option {code} truncated at byte {pos}")
        pos += 2 + length
        out["options"].append(code)
        if code == OPT_MESSAGE_TYPE and length == 1:
            out["message_type"] = DHCP_MESSAGE_TYPES.get(value[0], str(value[0]))
        elif code == OPT_HOSTNAME:
            out["hostname"] = text(value, 255)
        elif code == OPT_VENDOR_CLASS:
            out["vendor_class"] = text(value, 255)
        elif code == OPT_PARAMETER_REQUEST_LIST:
            out["parameter_request_list"] = ",".join(str(b) for b in value)
        elif code == OPT_CLIENT_ID:
            out["client_id"] = value.hex()
        elif code == OPT_REQUESTED_ADDRESS:
            out["requested_address"] = _ipv4(value)
        elif code == OPT_SERVER_ID:
            out["server_id"] = _ipv4(value)
        elif code == OPT_CLIENT_FQDN and length >= 3:
            # RFC 4702 §2: flags, RCODE1, RCODE2, domain name (wire format when E is set)
            if value[0] & 0x04:
                with contextlib.suppress(ParseError):
                    out["client_fqdn"] = read_name(value, 3)[0]
            else:
                out["client_fqdn"] = text(value[3:], 255)
    return out


class DhcpDissector(StreamDissector):
    protocol = "dhcp"

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        f = parse_dhcp(data)
        ctx = self.ctx
        return [
            DhcpMessage(
                ts_ns=ts_ns, flow_id=ctx.flow_id, endpoints=ctx.endpoints, direction=direction, **f
            )
        ]


def _duid(raw: bytes, out: dict) -> None:
    """RFC 8415 §11: DUID-LLT (1), DUID-EN (2), DUID-LL (3), DUID-UUID (4)."""
    out["client_duid"] = raw[:130].hex()
    if len(raw) < 2:
        return
    kind = struct.unpack(">H", raw[:2])[0]
    out["duid_type"] = kind
    if kind == 1 and len(raw) >= 8 and raw[2:4] == b"\0\x01":
        out["duid_link_address"] = mac_str(raw[8:14])
    elif kind == 3 and len(raw) >= 4 and raw[2:4] == b"\0\x01":
        out["duid_link_address"] = mac_str(raw[4:10])


def parse_dhcpv6(data: bytes, depth: int = 0) -> dict:
    """RFC 8415 §8 (client/server) and §9 (relay) message formats."""
    if len(data) < 4:
        raise ParseError("DHCPv6 message shorter than 4 bytes")
    mtype = data[0]
    if mtype not in DHCPV6_MESSAGE_TYPES:
        raise ParseError(f"unknown DHCPv6 message type {mtype}")
    if mtype in (12, 13):  # relay: hop-count, link-address, peer-address, options
        if len(data) < 34:
            raise ParseError("DHCPv6 relay message truncated")
        pos, out = 34, {"message_type": DHCPV6_MESSAGE_TYPES[mtype], "options": []}
    else:
        pos = 4
        out = {
            "message_type": DHCPV6_MESSAGE_TYPES[mtype],
            "transaction_id": int.from_bytes(data[1:4], "big"),
            "options": [],
        }
    while pos < len(data):
        if pos + 4 > len(data):
            raise ParseError(f"DHCPv6 option header truncated at byte {pos}")
        code, length = struct.unpack(">HH", data[pos : pos + 4])
        value = data[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise ParseError(f"DHCPv6 option {code} truncated at byte {pos}")
        pos += 4 + length
        if len(out["options"]) < 64:
            out["options"].append(code)
        if code == OPTION_CLIENTID:
            _duid(value, out)
        elif code == OPTION_ORO:
            out["option_request"] = [
                struct.unpack(">H", value[i : i + 2])[0] for i in range(0, length - 1, 2)
            ][:64]
        elif code == OPTION_VENDOR_CLASS and length >= 4:
            # RFC 8415 §21.16: enterprise-number, then vendor-class-data items (len + opaque)
            out["vendor_enterprise"] = struct.unpack(">I", value[:4])[0]
            items, i = [], 4
            while i + 2 <= length and len(items) < 8:
                n = struct.unpack(">H", value[i : i + 2])[0]
                items.append(text(value[i + 2 : i + 2 + n], 255))
                i += 2 + n
            out["vendor_class"] = items
        elif code == OPTION_CLIENT_FQDN and length >= 1:
            # RFC 4704 §4: flags, then the domain name in DNS wire format
            with contextlib.suppress(ParseError):
                out["fqdn"] = read_name(value, 1, allow_partial=True)[0]
        elif code == OPTION_RELAY_MSG and depth < 4:
            inner = parse_dhcpv6(value, depth + 1)
            return inner  # the relayed client message is what describes the client
    return out


class Dhcpv6Dissector(StreamDissector):
    protocol = "dhcpv6"

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        f = parse_dhcpv6(data)
        return [
            Dhcpv6Message(ts_ns=ts_ns, flow_id=self.ctx.flow_id, endpoints=self.ctx.endpoints, **f)
        ]


register_stream("dhcp", DhcpDissector)
register_stream("dhcpv6", Dhcpv6Dissector)
