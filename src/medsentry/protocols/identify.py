"""Application protocol identification: signature first, port second.

`identify` looks at the first in-order bytes of each direction of a flow (for UDP, the first
datagram of each direction) and answers which application protocol the flow carries. The
knowledge is data: byte signatures in `data/protocol_signatures.yaml`, the port table in
`data/ports.yaml` (IANA service name registry), both loaded and validated once at import
(a malformed file raises ConfigError naming the entry).

Canonical protocol names with byte signatures (`SIGNATURE_PROTOCOLS`, 63):
  medical     dicom (PS3.8 Upper Layer PDUs, any port), dicom-tls (TLS on 2762), hl7-mllp,
              fhir (HTTP addressing a FHIR resource / FHIR media type; detail = resource type)
  web         http, tls, dtls, quic
  naming      dns, mdns, llmnr, netbios, dhcp, dhcpv6, ssdp, slp, ws-discovery
  management  ntp, snmp, syslog, ssh, telnet, rdp, vnc, zabbix
  mail/files  ftp, smtp, pop3, imap, smb, tftp, nfs, sunrpc
  IoT/ICS     mqtt, coap, modbus, dnp3, bacnet, iec104, opc-ua, rtps (DDS), amqp, nats,
              tuya-lp (Tuya local protocol)
  voice/video sip, rtsp, stun, rtp, rtcp, h323
  directory   kerberos, ldap, radius
  databases   mysql, mssql-tds, postgresql, redis, mongodb
  other       dcerpc, bittorrent, wireguard, openvpn, ipsec (IKE)
The port table adds names it alone knows (e.g. ipsec, nfs, amqp, ethernet-ip), always with
method "port" and a lower confidence.

Ranking: each signature that matches scores its confidence, plus `PORT_BONUS` when the client
or server port is one of its port hints. The best score wins; among equal scores the signature
with the higher confidence, then the one listed first. With `final=False`, `identify` answers
None while more bytes could still change the answer: nothing matched yet and some signature is
still undecided, or the best match may yet be refined (http -> fhir) by an undecided signature.

Orientation: the answer's `oriented` says whether the bytes show the flow's sides as given (a
c2s/s2c signature matched; or an `any` signature's role function found the requester sending
c2s), the other way round, or cannot tell. The flow layer, when a TCP connection seen from its
middle left its client a guess, asks again with the directions swapped (flows.apps).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from medsentry.protocols.signatures import (
    Pattern,
    PortEntry,
    SideSpec,
    Signature,
    load_ports,
    load_signatures,
    run_validator,
    side_verdict,
)
from medsentry.protocols.signatures_validators import Exchange, Verdict

PORT_BONUS = 0.04
MAX_BYTES = 4096  # the flow layer passes at most this many bytes per direction
TCP, UDP = 6, 17


@dataclass(frozen=True, slots=True)
class Identification:
    protocol: str
    method: str  # "signature" or "port"
    confidence: float
    detail: str | None = None
    # whether the bytes show the flow oriented as given: True when a c2s/s2c/exchange
    # signature matched, or a role function (protocols.roles) found the requester on the c2s
    # side or the responder on the s2c side; False when it found them the other way round;
    # None when nothing tells (a port, an `any` match without a role). Not compared: the same
    # identification, whichever way it was told
    oriented: bool | None = field(default=None, compare=False)


SIGNATURES: tuple[Signature, ...] = load_signatures()
PORTS: dict[tuple[int, int], PortEntry] = load_ports()
SIGNATURE_PROTOCOLS: frozenset[str] = frozenset(s.protocol for s in SIGNATURES)
# per transport, best possible score first (stable: file order among equals), so the scan can
# stop as soon as nothing left could beat the match in hand
_BY_TRANSPORT: dict[int, tuple[Signature, ...]] = {
    t: tuple(sorted((s for s in SIGNATURES if s.transport == t), key=lambda s: -s.confidence))
    for t in (TCP, UDP)
}
# (transport, port) pairs some signature names as a hint: any other port ranks like "no port"
_HINT_PORTS: frozenset[tuple[int, int]] = frozenset(
    (s.transport, p) for s in SIGNATURES for p in s.ports
)
_HINTS: dict[int, frozenset[int]] = {
    t: frozenset(p for tr, p in _HINT_PORTS if tr == t) for t in (TCP, UDP)
}


def _side_allows(first: frozenset[int] | None, byte: int) -> bool:
    return first is None or byte < 0 or byte in first


def _may_match(sig: Signature, c0: int, s0: int) -> bool:
    """Whether the first byte of each direction (-1: no bytes yet) leaves `sig` possible."""
    if sig.any is not None:
        f = sig.any.first
        return f is None or c0 < 0 or s0 < 0 or c0 in f or s0 in f
    if sig.c2s is not None and not _side_allows(sig.c2s.first, c0):
        return False
    return sig.s2c is None or _side_allows(sig.s2c.first, s0)


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _pattern_check(p: Pattern) -> Callable[[bytes], Verdict]:
    """`p.verdict` as a closure, specialised for patterns without mask or nocase."""
    if p.mask is not None or p.nocase:
        return p.verdict
    off = p.offset
    if len(p.alternatives) > 1:
        alts = tuple((a, off + len(a)) for a in p.alternatives)

        def check_any(data: bytes) -> Verdict:
            n = len(data)
            undecided = False
            for a, a_end in alts:
                if n >= a_end:
                    if data.startswith(a, off):
                        return True
                elif a.startswith(data[off:]):  # a prefix of it: still undecided
                    undecided = True
            return None if undecided else False

        return check_any
    alt = p.alternatives[0]
    end = off + len(alt)

    def check(data: bytes) -> Verdict:
        if len(data) >= end:
            return data.startswith(alt, off)
        window = data[off:]  # shorter than alt: a prefix of it is still undecided
        return None if alt[: len(window)] == window else False

    return check


def _side_check(spec: SideSpec) -> Callable[[bytes, bool], Verdict]:
    """`spec.verdict` as one closure (same answers), with fewer calls per flow."""
    first = spec.first
    validator = spec.validator
    patterns = tuple(_pattern_check(p) for p in spec.patterns)
    if len(patterns) == 1 and validator is None:
        pattern = patterns[0]

        def check_pattern(data: bytes, complete: bool) -> Verdict:
            if not data:
                return False if complete else None
            if first is not None and data[0] not in first:
                return False
            v = pattern(data)
            if v is None:
                return False if complete else None
            return v

        return check_pattern
    if not patterns and validator is not None:

        def check_validator(data: bytes, complete: bool) -> Verdict:
            if not data:
                return False if complete else None
            if first is not None and data[0] not in first:
                return False
            return run_validator(validator, data, complete)

        return check_validator

    def check(data: bytes, complete: bool) -> Verdict:
        return side_verdict(data, complete, first, patterns, validator)

    return check


def _exchange_check(
    exchange: Exchange,
) -> Callable[[bytes, bytes, bool, bool], Verdict]:
    def check(c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool) -> Verdict:
        if (not c2s and c2s_done) or (not s2c and s2c_done):
            return False
        if not c2s or not s2c:
            return None
        try:
            v = exchange(c2s, s2c)
        except (IndexError, ValueError):
            return False
        if v is None:
            v = False if c2s_done and s2c_done else None
        return v

    return check


def _compile(sig: Signature) -> Callable[[bytes, bytes, bool, bool], Verdict]:
    """`_signature_verdict(sig, ...)` as one closure: the same verdict for every input
    (tests/protocols/test_identify_compiled.py compares them), fewer calls per check."""
    if sig.any is not None:
        side = _side_check(sig.any)

        def check_any(c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool) -> Verdict:
            a = side(c2s, c2s_done)
            if a is True:
                return True
            b = side(s2c, s2c_done)
            if b is True:
                return True
            return None if a is None or b is None else False

        return check_any
    c_side = _side_check(sig.c2s) if sig.c2s is not None else None
    s_side = _side_check(sig.s2c) if sig.s2c is not None else None
    ex = _exchange_check(sig.exchange) if sig.exchange is not None else None
    if ex is None and s_side is None and c_side is not None:
        c_only = c_side

        def check_c2s(c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool) -> Verdict:
            return c_only(c2s, c2s_done)

        return check_c2s
    if ex is None and c_side is None and s_side is not None:
        s_only = s_side

        def check_s2c(c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool) -> Verdict:
            return _and(True, s_only(s2c, s2c_done))

        return check_s2c

    def check(c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool) -> Verdict:
        verdict: Verdict = True
        if c_side is not None:
            verdict = c_side(c2s, c2s_done)
            if verdict is False:
                return False
        if s_side is not None:
            verdict = _and(verdict, s_side(s2c, s2c_done))
        if ex is not None and verdict is not False:
            verdict = _and(verdict, ex(c2s, s2c, c2s_done, s2c_done))
        return verdict

    return check


_CHECKS: dict[str, Callable[[bytes, bytes, bool, bool], Verdict]] = {
    s.name: _compile(s) for s in SIGNATURES
}


_Candidate = tuple[
    Signature, float, Callable[[bytes, bytes, bool, bool], Verdict], "Identification | None"
]


@functools.lru_cache(maxsize=1 << 16)
def _candidates(transport: int, c0: int, s0: int, cport: int, sport: int) -> tuple[_Candidate, ...]:
    """(signature, score, check, answer) of `transport` that the two first bytes and the ports
    leave possible, best score first, then higher confidence, then file order: the winner is
    the first match, and the scan stops at the first score below it. Ports that no signature
    names come as -1, so the cache stays small. The answer is made here (once) when the
    signature has no per-flow detail."""
    out = []
    for sig in _BY_TRANSPORT[transport]:  # stable: (-confidence, file order) among equal scores
        if not _may_match(sig, c0, s0):
            continue
        port_hit = cport in sig.ports or sport in sig.ports
        if sig.port_required and not port_hit:
            continue
        score = sig.confidence + (PORT_BONUS if port_hit else 0.0)
        # the answer, made once, when the signature has no per-flow detail or orientation (it
        # is immutable)
        made = None
        if sig.detail is None and sig.role is None:
            made = Identification(
                sig.protocol, "signature", round(min(score, 1.0), 3), None, _directional(sig)
            )
        out.append((sig, score, _CHECKS[sig.name], made))
    out.sort(key=lambda e: -e[1])
    return tuple(out)


def _directional(sig: Signature) -> bool | None:
    """A match of a signature that says which side is which shows the flow as given."""
    return None if sig.any is not None else True


def _oriented(sig: Signature, c2s: bytes, s2c: bytes) -> bool | None:
    """`Identification.oriented` of a match of `sig` on these bytes."""
    if sig.role is None:
        return _directional(sig)
    a, b = sig.role(c2s), sig.role(s2c)
    as_given = a is True or b is False
    turned = a is False or b is True
    if as_given == turned:
        return None  # nothing tells, or the two directions disagree
    return as_given


def _signature_verdict(
    sig: Signature, c2s: bytes, s2c: bytes, c2s_done: bool, s2c_done: bool
) -> bool | None:
    if sig.any is not None:
        a = sig.any.verdict(c2s, c2s_done)
        if a is True:
            return True
        b = sig.any.verdict(s2c, s2c_done)
        if b is True:
            return True
        return None if a is None or b is None else False
    verdict: bool | None = True
    if sig.c2s is not None:
        verdict = sig.c2s.verdict(c2s, c2s_done)
        if verdict is False:
            return False
    if sig.s2c is not None:
        verdict = _and(verdict, sig.s2c.verdict(s2c, s2c_done))
    if sig.exchange is not None and verdict is not False:
        if (not c2s and c2s_done) or (not s2c and s2c_done):
            return False
        if not c2s or not s2c:
            return None
        try:
            v = sig.exchange(c2s, s2c)
        except (IndexError, ValueError):
            return False
        if v is None:
            v = False if c2s_done and s2c_done else None
        verdict = _and(verdict, v)
    return verdict


@functools.lru_cache(maxsize=1 << 16)
def _by_port(transport: int, client_port: int, server_port: int) -> Identification | None:
    """The port table's answer: the server port first, then the client port."""
    for port in (server_port, client_port):
        entry = PORTS.get((transport, port))
        if entry is not None:
            return Identification(entry.protocol, "port", entry.confidence, entry.service)
    return None


def identify(
    transport: int,
    client_port: int,
    server_port: int,
    c2s: bytes,
    s2c: bytes,
    final: bool,
) -> Identification | None:
    """Identify a flow's application protocol from its first bytes, then its ports.

    transport: IP protocol number (6 TCP, 17 UDP). c2s/s2c: the first in-order bytes (TCP,
    up to 4096) or the first datagram (UDP) of each direction. final=False: None means "need
    more data"; final=True: the best answer now, None when unknown.
    """
    if transport not in _BY_TRANSPORT or (not c2s and not s2c):
        # no bytes: no signature can match now; wait unless this is the last word
        return _by_port(transport, client_port, server_port) if final else None
    if type(c2s) is not bytes or len(c2s) > MAX_BYTES:
        c2s = bytes(c2s[:MAX_BYTES])
    if type(s2c) is not bytes or len(s2c) > MAX_BYTES:
        s2c = bytes(s2c[:MAX_BYTES])
    hints = _HINTS[transport]
    sigs = _candidates(
        transport,
        c2s[0] if c2s else -1,
        s2c[0] if s2c else -1,
        client_port if client_port in hints else -1,
        server_port if server_port in hints else -1,
    )
    # a direction is complete when no more of its bytes can change a verdict
    if transport == UDP:
        c2s_done, s2c_done = final or bool(c2s), final or bool(s2c)
    else:
        c2s_done = final or len(c2s) >= MAX_BYTES
        s2c_done = final or len(s2c) >= MAX_BYTES

    best: Signature | None = None
    best_score = -1.0
    pending: list[tuple[Signature, float]] = []
    answer: Identification | None = None
    for sig, score, check, made in sigs:
        if best is not None and score <= best_score:
            break  # no signature left can score higher (or win a tie)
        verdict = check(c2s, s2c, c2s_done, s2c_done)
        if verdict is True:
            best, best_score, answer = sig, score, made
        elif verdict is None:
            pending.append((sig, score))

    if not final:
        if best is None and pending:
            return None
        if best is not None and any(
            p.refines == best.protocol and score > best_score for p, score in pending
        ):
            return None
    if best is not None:
        if answer is not None:
            return answer
        detail = best.detail(c2s, s2c) if best.detail is not None else None
        confidence = round(min(best_score, 1.0), 3)
        oriented = _oriented(best, c2s, s2c)
        return Identification(best.protocol, "signature", confidence, detail, oriented)
    return _by_port(transport, client_port, server_port)
