"""SNMP messages (RFC 1157 v1, RFC 1901/3416 v2c, RFC 3412 v3), one per datagram.

Two facts leave the dissector:

- the community of a v1/v2c message, as a cleartext-credential fact with the community as a
  keyed hash (`CleartextCredentials`, like the other cleartext logins of `cleartext.py`);
- what an agent says of itself: the MIB-II system group (RFC 3418 §2) in its Response, Trap,
  SNMPv2-Trap or InformRequest, and nothing else of it: sysDescr.0, sysObjectID.0 and sysName.0
  (`SnmpSystem`). Other varbinds are never decoded: sysContact (a person) and sysLocation (a bed)
  are in the same group and are skipped like the rest. A value that reads as person data (the
  CMMS filter's cell check, `inventory/cmms_phi.person_data`: sysDescr is free text an
  administrator may set) is withheld and only its absence is said.

Of an SNMPv3 message only the security level and the reportable flag (RFC 3412 §6.4) and, when
the scoped PDU is in clear, its type are read (`SnmpV3Message`).

A datagram whose PDU names no system group object is read no further than its PDU tag (one
`bytes.find`): polls of interface counters cost what the community check cost before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsentry.events.base import Event
from medsentry.events.identity import SnmpSystem, SnmpV3Message
from medsentry.inventory.cmms_phi import person_data
from medsentry.protocols import ber
from medsentry.protocols.base import CLIENT_TO_SERVER, FlowContext, ParseError
from medsentry.protocols.cleartext import _Credentials
from medsentry.protocols.registry import register_stream
from medsentry.protocols.streamkit import text

# RFC 3416 §3 PDU tags (context-specific, constructed); 0xA4 is RFC 1157's Trap-PDU
GET, GET_NEXT, RESPONSE, SET, TRAP, GET_BULK, INFORM, SNMPV2_TRAP, REPORT = range(0xA0, 0xA9)
PDU_NAMES = {
    GET: "get",
    GET_NEXT: "get-next",
    RESPONSE: "response",
    SET: "set",
    TRAP: "trap",
    GET_BULK: "get-bulk",
    INFORM: "inform",
    SNMPV2_TRAP: "snmpv2-trap",
    REPORT: "report",
}
# the PDUs in which an agent (a notification originator) states its own values
_AGENT_PDUS = frozenset({RESPONSE, TRAP, INFORM, SNMPV2_TRAP})

# RFC 3418 §2 system group, 1.3.6.1.2.1.1, as the contents octets of its OBJECT IDENTIFIER
SYSTEM = bytes.fromhex("2b0601020101")
SYS_DESCR = SYSTEM + b"\x01\x00"  # sysDescr.0, DisplayString (SIZE (0..255))
SYS_OBJECT_ID = SYSTEM + b"\x02\x00"  # sysObjectID.0, OBJECT IDENTIFIER
SYS_NAME = SYSTEM + b"\x05\x00"  # sysName.0, DisplayString (SIZE (0..255))
DISPLAY_MAX = 255

# RFC 3412 §6.4 msgFlags
AUTH_FLAG, PRIV_FLAG, REPORTABLE_FLAG = 0x01, 0x02, 0x04
SECURITY_LEVELS = {0: "noAuthNoPriv", AUTH_FLAG: "authNoPriv", AUTH_FLAG | PRIV_FLAG: "authPriv"}

DEFAULT_COMMUNITIES = frozenset({b"public", b"private"})  # well-known SNMP defaults
MAX_COMMUNITIES = 16  # distinct communities reported per flow
MAX_REPORTED = 64  # distinct system facts / v3 levels reported per flow
MAX_INFORMS = 64  # InformRequest ids remembered per direction
_SPACES = re.compile(rb"[\r\n\t]+")


@dataclass(slots=True)
class SnmpMessage:
    """What the dissector reads of one message."""

    version: int  # 0 v1, 1 v2c, 3 v3 (RFC 3412 §6 msgVersion)
    community: bytes | None = None
    pdu: int = 0  # the PDU tag; 0 for an encrypted v3 scoped PDU
    request_id: int | None = None
    error_status: int = 0
    sys_descr: bytes | None = None
    sys_object_id: str | None = None
    sys_name: bytes | None = None
    enterprise: str | None = None  # Trap-PDU (RFC 1157 §4.1.6)
    agent_address: str | None = None
    msg_flags: int = 0  # v3


def parse(msg: bytes) -> SnmpMessage:
    """One SNMP message; `ParseError` when it is not one (RFC 1157 §4, RFC 3416 §3, RFC 3412 §6)."""
    _s, end = ber.expect(msg, 0, len(msg), ber.SEQUENCE, "SNMP message")
    version, pos = ber.integer(msg, _s, end, "SNMP version")
    if version == 3:
        return _v3(msg, pos, end)
    if version not in (0, 1):
        raise ParseError(f"SNMP version {version} unknown")
    cs, ce = ber.expect(msg, pos, end, ber.OCTET_STRING, "SNMP community")
    m = SnmpMessage(version=version, community=msg[cs:ce])
    pdu, ps, pe = ber.tlv(msg, ce, end)
    if pdu not in PDU_NAMES:
        raise ParseError(f"SNMP PDU tag {pdu:#x} unknown")
    m.pdu = pdu
    # requests are not read past their tag, nor an agent's PDU that names no system object
    if pdu == TRAP or (pdu in _AGENT_PDUS and msg.find(SYSTEM, ps, pe) >= 0):
        _pdu(msg, ps, pe, m)
    return m


def _pdu(msg: bytes, pos: int, end: int, m: SnmpMessage) -> None:
    """The PDU body: RFC 3416 §3 PDU, or RFC 1157 §4.1.6 Trap-PDU."""
    if m.pdu == TRAP:
        s, e = ber.expect(msg, pos, end, ber.OBJECT_IDENTIFIER, "Trap enterprise")
        m.enterprise = ber.oid(msg[s:e])
        s, e = ber.expect(msg, e, end, ber.IP_ADDRESS, "Trap agent-addr")
        m.agent_address = ber.ip_address(msg[s:e])
        _generic, pos = ber.integer(msg, e, end, "Trap generic-trap")
        _specific, pos = ber.integer(msg, pos, end, "Trap specific-trap")
        _tag, _ts, pos = ber.tlv(msg, pos, end)  # time-stamp, TimeTicks
    else:
        m.request_id, pos = ber.integer(msg, pos, end, "request-id")
        m.error_status, pos = ber.integer(msg, pos, end, "error-status")
        _index, pos = ber.integer(msg, pos, end, "error-index")
        if m.error_status:
            return  # RFC 3416 §4.2.1: an error's varbinds are the request's, not the agent's
    if msg.find(SYSTEM, pos, end) < 0:
        return  # no system group name in the varbinds: nothing to read
    vs, ve = ber.expect(msg, pos, end, ber.SEQUENCE, "variable-bindings")
    p = vs
    while p < ve:
        bs, be = ber.expect(msg, p, ve, ber.SEQUENCE, "VarBind")
        ns, ne = ber.expect(msg, bs, be, ber.OBJECT_IDENTIFIER, "VarBind name")
        tag, cs, ce = ber.tlv(msg, ne, be)
        name = msg[ns:ne]
        if name == SYS_DESCR and tag == ber.OCTET_STRING:
            m.sys_descr = msg[cs:ce]
        elif name == SYS_OBJECT_ID and tag == ber.OBJECT_IDENTIFIER:
            m.sys_object_id = ber.oid(msg[cs:ce])
        elif name == SYS_NAME and tag == ber.OCTET_STRING:
            m.sys_name = msg[cs:ce]
        # any other name or type (an exception, RFC 3416 §3: noSuchObject ...): not read
        p = be


def _v3(msg: bytes, pos: int, end: int) -> SnmpMessage:
    """RFC 3412 §6: msgGlobalData, msgSecurityParameters, then a ScopedPDU in clear or an
    encryptedPDU; the scoped PDU's contents are not read past the PDU tag."""
    gs, ge = ber.expect(msg, pos, end, ber.SEQUENCE, "msgGlobalData")
    _msg_id, p = ber.integer(msg, gs, ge, "msgID")
    _max_size, p = ber.integer(msg, p, ge, "msgMaxSize")
    fs, fe = ber.expect(msg, p, ge, ber.OCTET_STRING, "msgFlags")
    if fe - fs != 1:
        raise ParseError(f"msgFlags of {fe - fs} octets")
    flags = msg[fs]
    if flags & PRIV_FLAG and not flags & AUTH_FLAG:
        raise ParseError("msgFlags privFlag without authFlag")  # RFC 3412 §7.2 step 5
    _model, _p = ber.integer(msg, fe, ge, "msgSecurityModel")
    _s, se = ber.expect(msg, ge, end, ber.OCTET_STRING, "msgSecurityParameters")
    m = SnmpMessage(version=3, msg_flags=flags)
    tag, ds, de = ber.tlv(msg, se, end)
    if tag == ber.SEQUENCE:  # ScopedPDU in clear
        _s, e = ber.expect(msg, ds, de, ber.OCTET_STRING, "contextEngineID")
        _s, e = ber.expect(msg, e, de, ber.OCTET_STRING, "contextName")
        pdu, _s, _e = ber.tlv(msg, e, de)
        if pdu not in PDU_NAMES:
            raise ParseError(f"SNMP PDU tag {pdu:#x} unknown")
        m.pdu = pdu
    elif tag != ber.OCTET_STRING:  # encryptedPDU
        raise ParseError(f"msgData tag {tag:#x}")
    return m


def snmp_community(msg: bytes) -> tuple[int, bytes | None, int]:
    """(version, community, PDU tag) of an SNMP message (RFC 1157 §4, RFC 3416 §3)."""
    m = parse(msg)
    return m.version, m.community, m.pdu


def _screen(raw: bytes | None) -> tuple[str | None, bool]:
    """A DisplayString (RFC 2579) as text, or (None, True) when it reads as person data."""
    if raw is None:
        return None, False
    value = text(_SPACES.sub(b" ", raw), DISPLAY_MAX).strip()
    if value and person_data(value):
        return None, True
    return value or None, False


class SnmpDissector(_Credentials):
    """One message per datagram; each distinct community, system description and v3 security
    level is reported once per flow."""

    protocol = "snmp"

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self.seen: set[bytes] = set()
        self.reported: set[tuple] = set()
        self.informs: tuple[set[int], set[int]] = (set(), set())

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        m = parse(data)
        if m.version == 3:
            return self._v3(direction, m, ts_ns)
        out = self._community(direction, m, ts_ns)
        if m.pdu in _AGENT_PDUS:
            out += self._system(direction, m, ts_ns)
        return out

    def _community(self, direction: int, m: SnmpMessage, ts_ns: int) -> list[Event]:
        community = m.community or b""
        out: list[Event] = []
        if direction != CLIENT_TO_SERVER and m.pdu == RESPONSE and self.pending is not None:
            out += self._verdict(True)  # a GetResponse: the community was accepted
        if community in self.seen or len(self.seen) >= MAX_COMMUNITIES:
            return out
        self.seen.add(community)
        out += self._verdict(None)
        fact = self._fact(
            ts_ns, "community", community, True, default_credential=community in DEFAULT_COMMUNITIES
        )
        if direction == CLIENT_TO_SERVER:
            self.pending = fact
        else:
            out.append(fact)
        return out

    def _system(self, direction: int, m: SnmpMessage, ts_ns: int) -> list[Event]:
        if m.pdu == INFORM and m.request_id is not None:
            if len(self.informs[direction]) < MAX_INFORMS:
                self.informs[direction].add(m.request_id)
        elif m.pdu == RESPONSE and m.request_id in self.informs[1 - direction]:
            return []  # acknowledges an Inform: its varbinds are the Inform's (RFC 3416 §4.2.7)
        said = m.sys_descr is not None or m.sys_object_id is not None or m.sys_name is not None
        if not said and m.pdu != TRAP:  # a v1 Trap always names its enterprise and agent
            return []
        descr, descr_out = _screen(m.sys_descr)
        name, name_out = _screen(m.sys_name)
        withheld = [w for w, out in (("sysDescr", descr_out), ("sysName", name_out)) if out]
        key = (direction, descr, m.sys_object_id, name, m.enterprise, m.agent_address, *withheld)
        if key in self.reported or len(self.reported) >= MAX_REPORTED:
            return []
        self.reported.add(key)
        return [
            SnmpSystem(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                direction=direction,
                version=m.version,
                pdu=PDU_NAMES[m.pdu],
                sys_descr=descr,
                sys_object_id=m.sys_object_id,
                sys_name=name,
                enterprise=m.enterprise,
                agent_address=m.agent_address,
                withheld=withheld,
            )
        ]

    def _v3(self, direction: int, m: SnmpMessage, ts_ns: int) -> list[Event]:
        level = SECURITY_LEVELS[m.msg_flags & (AUTH_FLAG | PRIV_FLAG)]
        reportable = bool(m.msg_flags & REPORTABLE_FLAG)
        key = ("v3", direction, level, reportable, m.pdu)
        if key in self.reported or len(self.reported) >= MAX_REPORTED:
            return []
        self.reported.add(key)
        return [
            SnmpV3Message(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                direction=direction,
                security_level=level,
                reportable=reportable,
                pdu=PDU_NAMES.get(m.pdu),
            )
        ]


register_stream("snmp", SnmpDissector)
