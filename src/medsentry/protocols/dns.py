"""DNS (RFC 1035 §4), multicast DNS (RFC 6762) and LLMNR (RFC 4795) messages, with DNS-SD
service types and instance names (RFC 6763). Names are decompressed with loop protection:
every compression pointer must point strictly backwards (RFC 1035 §4.1.4 "prior occurrence")."""

from __future__ import annotations

import ipaddress
import re
import struct

from medsentry.events.base import Event
from medsentry.events.identity import DnsMessage, DnsQuestion, DnsRecord
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import StreamDissector, text

MAX_NAME = 255  # RFC 1035 §2.3.4
MAX_QUESTIONS = 32
MAX_RECORDS = 64
MAX_TCP_MESSAGE = 65535
# RFC 1035 §3.2.2, RFC 3596 (AAAA), RFC 2782 (SRV), RFC 6891 (OPT)
A, NS, CNAME, PTR, TXT, AAAA, SRV, OPT = 1, 2, 5, 12, 16, 28, 33, 41
_SERVICE = re.compile(
    r"^(?:(?P<instance>.+?)\.)?(?P<type>(?:_[^.]+\._sub\.)?_[^.]+\._(?:tcp|udp)\..+)$"
)


def read_name(msg: bytes, pos: int, allow_partial: bool = False) -> tuple[str, int]:
    """A domain name at `pos` (RFC 1035 §4.1.4); returns (name, position after it)."""
    labels: list[str] = []
    total = 0
    end = None
    lowest = pos  # pointers must go strictly below every position already read
    while True:
        if pos >= len(msg):
            if allow_partial and not labels:
                return "", pos
            raise ParseError(f"DNS name runs past the message at byte {pos}")
        n = msg[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise ParseError("DNS compression pointer truncated")
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            if target >= lowest:
                raise ParseError(f"DNS compression pointer loop at byte {pos}")
            lowest = pos = target
            continue
        if n & 0xC0:
            raise ParseError(f"DNS label type {n >> 6} unsupported at byte {pos}")
        label = msg[pos + 1 : pos + 1 + n]
        if len(label) != n:
            raise ParseError(f"DNS label truncated at byte {pos}")
        total += n + 1
        if total > MAX_NAME:
            raise ParseError("DNS name longer than 255 bytes")
        labels.append(text(label, 63).replace(".", "\\."))
        pos += 1 + n
    return ".".join(labels), end if end is not None else pos


def _rdata(msg: bytes, rtype: int, start: int, length: int) -> str:
    rd = msg[start : start + length]
    if rtype == A and length == 4:
        return str(ipaddress.IPv4Address(rd))
    if rtype == AAAA and length == 16:
        return str(ipaddress.IPv6Address(rd))
    if rtype in (PTR, CNAME, NS):
        return read_name(msg, start)[0]
    if rtype == SRV and length >= 7:
        prio, weight, port = struct.unpack(">HHH", rd[:6])
        return f"{prio} {weight} {port} {read_name(msg, start + 6)[0]}"
    if rtype == TXT:
        parts, i = [], 0
        while i < length and len(parts) < 32:
            n = rd[i]
            parts.append(text(rd[i + 1 : i + 1 + n], 255))
            i += 1 + n
        return " ".join(parts)[:1024]
    return f"<{length} bytes>"


def parse_message(msg: bytes) -> dict:
    """RFC 1035 §4.1: header, question, answer, authority and additional sections."""
    if len(msg) < 12:
        raise ParseError(f"DNS message of {len(msg)} bytes is shorter than its header")
    ident, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    out: dict = {
        "id": ident,
        "response": bool(flags & 0x8000),
        "opcode": (flags >> 11) & 0xF,
        "rcode": flags & 0xF,
        "questions": [],
        "answers": [],
    }
    pos = 12
    for _ in range(qd):
        name, pos = read_name(msg, pos)
        if pos + 4 > len(msg):
            raise ParseError("DNS question truncated")
        qtype, qclass = struct.unpack(">HH", msg[pos : pos + 4])
        pos += 4
        if len(out["questions"]) < MAX_QUESTIONS:
            out["questions"].append(
                DnsQuestion(name=name, qtype=qtype, unicast_response=bool(qclass & 0x8000))
            )
    for _ in range(an + ns + ar):
        if pos >= len(msg) and not out["answers"] and an == 0:
            break
        name, pos = read_name(msg, pos)
        if pos + 10 > len(msg):
            raise ParseError("DNS resource record truncated")
        rtype, _rclass, ttl, rdlen = struct.unpack(">HHIH", msg[pos : pos + 10])
        pos += 10
        if pos + rdlen > len(msg):
            raise ParseError("DNS RDATA runs past the message")
        if rtype != OPT and len(out["answers"]) < MAX_RECORDS:
            out["answers"].append(
                DnsRecord(name=name, rtype=rtype, ttl=ttl, data=_rdata(msg, rtype, pos, rdlen))
            )
        pos += rdlen
    _services(out)
    return out


def _services(out: dict) -> None:
    """DNS-SD (RFC 6763 §4.1): <Instance>.<_Service>.<_proto>.<Domain>."""
    types: list[str] = []
    instances: list[str] = []
    names = [q.name for q in out["questions"]]
    for r in out["answers"]:
        names.append(r.name)
        if r.rtype == PTR:
            names.append(r.data)
    for name in names:
        m = _SERVICE.match(name)
        if not m:
            continue
        stype, inst = m.group("type"), m.group("instance")
        if stype.startswith("_services._dns-sd."):
            continue
        if stype not in types and len(types) < 32:
            types.append(stype)
        if inst and not inst.startswith("_") and name not in instances and len(instances) < 32:
            instances.append(name)
    out["service_types"] = types
    out["service_instances"] = instances


class DnsDissector(StreamDissector):
    """UDP: one message per datagram; TCP: two-byte length prefix (RFC 1035 §4.2.2)."""

    protocol = "dns"

    def __init__(self, ctx: FlowContext, protocol: str = "dns") -> None:
        super().__init__(ctx)
        self.name = protocol
        self.tcp = ctx.endpoints.transport == "tcp"
        self.bufs = (bytearray(), bytearray())

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        if not self.tcp:
            return [self._event(data, ts_ns)]
        buf = self.bufs[direction]
        buf += data
        out: list[Event] = []
        while len(buf) >= 2:
            n = struct.unpack(">H", buf[:2])[0]
            if n < 12:
                raise ParseError(f"DNS-over-TCP length {n} is shorter than a header")
            if len(buf) < 2 + n:
                break
            out.append(self._event(bytes(buf[2 : 2 + n]), ts_ns))
            del buf[: 2 + n]
        return out

    def _event(self, msg: bytes, ts_ns: int) -> DnsMessage:
        return DnsMessage(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            protocol=self.name,
            **parse_message(msg),
        )


register_stream("dns", DnsDissector)
register_stream("mdns", lambda ctx: DnsDissector(ctx, "mdns"))
register_stream("llmnr", lambda ctx: DnsDissector(ctx, "llmnr"))
