"""NetBIOS name service (RFC 1002 §4.2, UDP 137): the messages that name hosts.

Windows hosts (modality consoles, PACS/RIS workstations, lab PCs) register their NetBIOS names
by broadcast or with a WINS server, refresh and release them, answer name queries for them, and
answer NODE STATUS requests with their whole name table and adapter MAC. Each such message is
one `NbnsMessage`; name queries, negative answers and WACKs are checked and dropped (a query
names someone else). Names are first-level encoded (RFC 1001 §14.1): 32 letters 'A'..'P' for
16 bytes, the 16th byte being the name's suffix.

The identified protocol `netbios` also covers the datagram (UDP 138) and session (TCP 139)
services: their flows get a dissector that is done at once, so they cost nothing more.
"""

from __future__ import annotations

import socket
import struct

from medsentry.events.base import Event
from medsentry.events.identity import NbnsMessage, NetbiosName
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.dns import read_name
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, mac_str, text

# RFC 1002 §4.2.1.1 OPCODE; 9 is the refresh opcode Windows and Samba send (RFC 1002 §4.2.1.1
# reserves it), 15 the multi-homed name registration of Microsoft's NBNS (MS-NBTE §2.2.1)
OPCODES = {
    0: "QUERY",
    5: "REGISTRATION",
    6: "RELEASE",
    7: "WACK",
    8: "REFRESH",
    9: "REFRESH",
    15: "MULTI-HOMED REGISTRATION",
}
NB, NBSTAT = 0x0020, 0x0021  # RR_TYPE / QUESTION_TYPE (RFC 1002 §4.2.1.2, §4.2.1.3)
MESSENGER = 0x03  # the 16th byte of a messenger service name
MAX_RECORDS = 8  # a real message carries one question and one resource record
MAX_NAMES = 64  # NODE STATUS name table entries kept (NUM_NAMES is one byte)
MAX_SEEN = 256
_HEADER = struct.Struct(">HHHHHH")
_RR = struct.Struct(">HHIH")


def decode_name(encoded: str) -> tuple[bytes, str]:
    """First-level decoding (RFC 1001 §14.1): the 16 bytes of the NetBIOS name (the first
    label, 32 letters 'A'..'P', each the high or low nibble of a byte plus 'A') and the scope
    (the labels after it, "" for none)."""
    label, _, scope = encoded.partition(".")
    if len(label) != 32:
        raise ParseError(f"NetBIOS name label of {len(label)} characters, not 32")
    raw = label.encode("ascii", "replace")
    out = bytearray(16)
    for i in range(16):
        hi, lo = raw[2 * i] - 0x41, raw[2 * i + 1] - 0x41
        if not (0 <= hi <= 15 and 0 <= lo <= 15):
            raise ParseError("NetBIOS name not first-level encoded ('A'..'P')")
        out[i] = (hi << 4) | lo
    return bytes(out), scope


def name_text(raw: bytes) -> str:
    """The 15 name bytes as text: the space padding (RFC 1001 §14.1) and, for the wildcard
    "*", the NUL padding removed."""
    return text(raw[:15].rstrip(b" ").rstrip(b"\x00"), 15)


def _nb_entries(rd: bytes, name: bytes) -> list[NetbiosName]:
    """NB RDATA: NB_FLAGS (G, ONT) and NB_ADDRESS, six bytes per address (RFC 1002 §4.2.2,
    §4.2.13)."""
    if len(rd) % 6:
        raise ParseError(f"NB RDATA of {len(rd)} bytes is no multiple of 6")
    label, suffix = name_text(name), name[15]
    return [
        NetbiosName(
            name=label,
            suffix=suffix,
            group=bool(rd[i] & 0x80),
            address=socket.inet_ntoa(rd[i + 2 : i + 6]),
        )
        for i in range(0, min(len(rd), 6 * MAX_NAMES), 6)
    ]


def _node_status(rd: bytes) -> tuple[list[NetbiosName], str | None]:
    """NODE STATUS RDATA (RFC 1002 §4.2.18): NUM_NAMES, 18 bytes per NODE_NAME (16-byte name
    as is, NAME_FLAGS whose top bit is G), then STATISTICS opening with the 6-byte UNIT_ID."""
    if not rd:
        raise ParseError("NODE STATUS RDATA is empty")
    n = rd[0]
    end = 1 + 18 * n
    if end > len(rd):
        raise ParseError(f"NODE STATUS announces {n} names in {len(rd)} bytes")
    names = [
        NetbiosName(
            name=name_text(rd[i : i + 15]), suffix=rd[i + 15], group=bool(rd[i + 16] & 0x80)
        )
        for i in range(1, 1 + 18 * min(n, MAX_NAMES), 18)
    ]
    unit = mac_str(rd[end : end + 6]) if len(rd) >= end + 6 else None
    return names, unit


def parse_message(msg: bytes) -> dict:
    """RFC 1002 §4.2.1: header, question (name, type, class) and resource records."""
    size = len(msg)
    if size < 12:
        raise ParseError(f"NBNS message of {size} bytes is shorter than its header")
    trn_id, flags, qd, an, ns, ar = _HEADER.unpack_from(msg)
    code = (flags >> 11) & 0xF
    opcode = OPCODES.get(code)
    if opcode is None:
        raise ParseError(f"NBNS opcode {code} is not defined")
    if qd + an + ns + ar > MAX_RECORDS:
        raise ParseError(f"NBNS message announces {qd + an + ns + ar} entries")
    pos = 12
    suffixes: dict[int, tuple[list[str], int]] = {}
    question: tuple[bytes, int] | None = None
    for _ in range(qd):  # QUESTION_NAME, QUESTION_TYPE, QUESTION_CLASS (§4.2.1.2)
        encoded, pos = read_name(msg, pos, False, suffixes)
        if pos + 4 > size:
            raise ParseError("NBNS question truncated")
        question = (decode_name(encoded)[0], struct.unpack_from(">H", msg, pos)[0])
        pos += 4
    names: list[NetbiosName] = []
    unit: str | None = None
    node_status = question is not None and question[1] == NBSTAT
    for _ in range(an + ns + ar):  # RR_NAME, RR_TYPE, RR_CLASS, TTL, RDLENGTH, RDATA (§4.2.1.3)
        encoded, pos = read_name(msg, pos, False, suffixes)
        if pos + 10 > size:
            raise ParseError("NBNS resource record truncated")
        rtype, _rclass, _ttl, rdlen = _RR.unpack_from(msg, pos)
        pos += 10
        if pos + rdlen > size:
            raise ParseError("NBNS RDATA runs past the message")
        raw = decode_name(encoded)[0]
        rd = msg[pos : pos + rdlen]
        pos += rdlen
        if rtype == NB:
            names += _nb_entries(rd, raw)
        elif rtype == NBSTAT:
            node_status = True
            table, unit = _node_status(rd)
            names += table
    # a <03> messenger name is the computer's or the logged-on user's (a person's name): no
    # host name, so none is kept (MS-NBTE §2.2.1 name suffixes)
    names = [n for n in names if n.suffix != MESSENGER]
    return {
        "transaction_id": trn_id,
        "response": bool(flags & 0x8000),
        "opcode": opcode,
        "rcode": flags & 0xF,
        "broadcast": bool(flags & 0x0010),
        "node_status": node_status,
        "names": names[:MAX_NAMES],
        "unit_id": unit,
    }


def names_hosts(m: dict) -> bool:
    """Does the message name its sender or a registered host: a registration, refresh or
    release request, a positive name query response, a NODE STATUS response?"""
    if not m["names"]:
        return False
    if m["response"]:
        return m["opcode"] == "QUERY" and m["rcode"] == 0
    return m["opcode"] in ("REGISTRATION", "RELEASE", "REFRESH", "MULTI-HOMED REGISTRATION")


class NbnsDissector(StreamDissector):
    """One message per datagram (RFC 1002 §4.2); hosts repeat their registrations and
    refreshes (and answer every broadcast query): each distinct message once per flow."""

    protocol = "netbios"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.seen: set[bytes] = set()

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        key = bytes([direction]) + bytes(data[2:])  # the same message but for its id
        if key in self.seen:
            return []
        m = parse_message(data)
        if len(self.seen) < MAX_SEEN:
            self.seen.add(key)
        if not names_hosts(m):
            return []
        return [
            NbnsMessage(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                direction=direction,
                transaction_id=m["transaction_id"],
                opcode=m["opcode"],
                response=m["response"],
                broadcast=m["broadcast"],
                node_status=m["node_status"],
                names=m["names"],
                unit_id=m["unit_id"],
            )
        ]


class _Done(StreamDissector):
    """NetBIOS datagram and session service flows: nothing to read (done at once)."""

    protocol = "netbios"
    whole_stream = False
    done = True

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        return []


def netbios(ctx: FlowContext) -> StreamDissector:
    """The name service's dissector for UDP flows other than the datagram service's (138)."""
    e = ctx.endpoints
    if e.transport == "udp" and 138 not in (e.client_port, e.server_port):
        return NbnsDissector(ctx)
    return _Done(ctx)


register_stream("netbios", netbios)
