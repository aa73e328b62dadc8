"""DNS (RFC 1035 §4), multicast DNS (RFC 6762) and LLMNR (RFC 4795) messages, with DNS-SD
service types and instance names (RFC 6763). Names are decompressed with loop protection:
every compression pointer must point strictly backwards (RFC 1035 §4.1.4 "prior occurrence")."""

from __future__ import annotations

import ipaddress
import re
import socket
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


_RUNS_MAX = 4096
_runs: dict[bytes, list[str]] = {}  # wire labels (length-prefixed) -> their texts (bounded memo)


def _labels(run: bytes) -> list[str]:
    """Texts of consecutive length-prefixed labels (lengths already checked)."""
    out = _runs.get(run)
    if out is None:
        out = []
        i, size = 0, len(run)
        while i < size:
            n = run[i]
            label = run[i + 1 : i + 1 + n]
            if label.isascii() and (s := label.decode("ascii")).isprintable():
                out.append(s.replace(".", "\\."))
            else:
                out.append(text(label, 63).replace(".", "\\."))
            i += 1 + n
        if len(_runs) < _RUNS_MAX:
            _runs[run] = out
    return out


def read_name(
    msg: bytes,
    pos: int,
    allow_partial: bool = False,
    suffixes: dict[int, tuple[list[str], int]] | None = None,
) -> tuple[str, int]:
    """A domain name at `pos` (RFC 1035 §4.1.4); returns (name, position after it).

    `suffixes` (one dict per message) remembers the labels read from each compression
    pointer's target: what follows a target depends only on the message and the target, since
    every later pointer must point below it."""
    labels: list[str] = []
    total = 0
    end = None
    lowest = pos  # pointers must go strictly below every position already read
    size = len(msg)
    jumps: list[tuple[int, int, int]] | None = None  # (target, labels, total) at each jump
    start = pos  # of the run of labels being walked
    while True:
        if pos >= size:
            if allow_partial and not labels and pos == start:
                return "", pos
            raise ParseError(f"DNS name runs past the message at byte {pos}")
        n = msg[pos]
        if n == 0:
            if pos > start:
                labels += _labels(bytes(msg[start:pos]))
            pos += 1
            break
        if n >= 0x40:
            if n < 0xC0:
                raise ParseError(f"DNS label type {n >> 6} unsupported at byte {pos}")
            if pos + 1 >= size:
                raise ParseError("DNS compression pointer truncated")
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            if target >= lowest:
                raise ParseError(f"DNS compression pointer loop at byte {pos}")
            if pos > start:
                labels += _labels(bytes(msg[start:pos]))
            lowest = pos = start = target
            if suffixes is not None:
                known = suffixes.get(target)
                if known is not None:
                    labels += known[0]
                    total += known[1]
                    if total > MAX_NAME:
                        raise ParseError("DNS name longer than 255 bytes")
                    break
                if jumps is None:
                    jumps = []
                jumps.append((target, len(labels), total))
            continue
        if pos + 1 + n > size:
            raise ParseError(f"DNS label truncated at byte {pos}")
        total += n + 1
        if total > MAX_NAME:
            raise ParseError("DNS name longer than 255 bytes")
        pos += 1 + n
    if jumps is not None and suffixes is not None:
        for target, count, before in jumps:
            suffixes[target] = (labels[count:], total - before)
    return ".".join(labels), end if end is not None else pos


def _rdata(msg: bytes, rtype: int, start: int, length: int, suffixes: dict | None = None) -> str:
    rd = msg[start : start + length]
    if rtype == A and length == 4:
        return socket.inet_ntoa(rd)
    if rtype == AAAA and length == 16:
        return str(ipaddress.IPv6Address(rd))
    if rtype in (PTR, CNAME, NS):
        return read_name(msg, start, False, suffixes)[0]
    if rtype == SRV and length >= 7:
        prio, weight, port = struct.unpack(">HHH", rd[:6])
        return f"{prio} {weight} {port} {read_name(msg, start + 6, False, suffixes)[0]}"
    return f"<{length} bytes>"


def _txt(rd: bytes) -> tuple[str, ...]:
    """TXT RDATA: one or more <character-string>s (RFC 1035 §3.3.14), at most 32."""
    parts, i, length = [], 0, len(rd)
    while i < length and len(parts) < 32:
        n = rd[i]
        parts.append(text(rd[i + 1 : i + 1 + n], 255))
        i += 1 + n
    return tuple(parts)


_HEADER = struct.Struct(">HHHHHH")
_QUESTION = struct.Struct(">HH")
_RR = struct.Struct(">HHIH")


def parse_message(msg: bytes) -> dict:
    """RFC 1035 §4.1: header, question, answer, authority and additional sections."""
    size = len(msg)
    if size < 12:
        raise ParseError(f"DNS message of {size} bytes is shorter than its header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(msg)
    questions: list[DnsQuestion] = []
    answers: list[DnsRecord] = []
    out: dict = {
        "id": ident,
        "response": bool(flags & 0x8000),
        "opcode": (flags >> 11) & 0xF,
        "rcode": flags & 0xF,
        "questions": questions,
        "answers": answers,
    }
    pos = 12
    suffixes: dict[int, tuple[list[str], int]] = {}
    for _ in range(qd):
        name, pos = read_name(msg, pos, False, suffixes)
        if pos + 4 > size:
            raise ParseError("DNS question truncated")
        qtype, qclass = _QUESTION.unpack_from(msg, pos)
        pos += 4
        if len(questions) < MAX_QUESTIONS:
            questions.append(
                DnsQuestion(name=name, qtype=qtype, unicast_response=bool(qclass & 0x8000))
            )
    for _ in range(an + ns + ar):
        if pos >= size and not answers and an == 0:
            break
        name, pos = read_name(msg, pos, False, suffixes)
        if pos + 10 > size:
            raise ParseError("DNS resource record truncated")
        rtype, _rclass, ttl, rdlen = _RR.unpack_from(msg, pos)
        pos += 10
        if pos + rdlen > size:
            raise ParseError("DNS RDATA runs past the message")
        if rtype != OPT and len(answers) < MAX_RECORDS:
            if rtype == TXT:  # the strings one by one too: "key=value" pairs (RFC 6763 §6.3)
                strings = _txt(msg[pos : pos + rdlen])
                data = " ".join(strings)[:1024]
                rr = DnsRecord(name=name, rtype=rtype, ttl=ttl, data=data, strings=strings)
            else:
                data = _rdata(msg, rtype, pos, rdlen, suffixes)
                rr = DnsRecord(name=name, rtype=rtype, ttl=ttl, data=data)
            answers.append(rr)
        pos += rdlen
    _services(out)
    return out


_SERVICE_NAMES_MAX = 4096
_service_names: dict[str, tuple[str, str | None] | tuple[()]] = {}  # name -> _SERVICE groups


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
        if "._tcp." not in name and "._udp." not in name:
            continue  # no service type: the pattern cannot match
        found = _service_names.get(name)
        if found is None:
            m = _SERVICE.match(name)
            found = (m.group("type"), m.group("instance")) if m else ()
            if len(_service_names) < _SERVICE_NAMES_MAX:
                _service_names[name] = found
        if not found:
            continue
        stype, inst = found
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
        # the same message but for its ID (a repeated query, an mDNS announcement) is parsed
        # once: parse_message is a pure function of the bytes (bounded memo of short messages)
        key = msg[2:]
        known = _messages.get(key)
        if known is None:
            out = parse_message(msg)
            if len(msg) <= _MESSAGE_MEMO_BYTES and len(_messages) < _MESSAGES_MAX:
                _messages[bytes(key)] = out
        else:
            out = {**known, "id": (msg[0] << 8) | msg[1]}
        return DnsMessage(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            protocol=self.name,
            id=out["id"],
            response=out["response"],
            opcode=out["opcode"],
            rcode=out["rcode"],
            questions=list(out["questions"]),
            answers=list(out["answers"]),
            service_types=list(out["service_types"]),
            service_instances=list(out["service_instances"]),
        )


_MESSAGES_MAX = 4096
_MESSAGE_MEMO_BYTES = 512
_messages: dict[bytes, dict] = {}  # message without its ID -> parse_message result


register_stream("dns", DnsDissector)
register_stream("mdns", lambda ctx: DnsDissector(ctx, "mdns"))
register_stream("llmnr", lambda ctx: DnsDissector(ctx, "llmnr"))
