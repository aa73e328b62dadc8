"""SNMP: messages built by hand to RFC 1157 / RFC 3416 / RFC 3412 (BER per X.690), the real
captures of the nDPI corpus cross-checked with tshark, and fuzzing (hypothesis) of the parser,
the OBJECT IDENTIFIER decoder and the dissector. Only the system group's sysDescr, sysObjectID
and sysName may leave the dissector, never sysContact or sysLocation."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, run, tshark

from medsentry.events import encode_json
from medsentry.events.identity import SnmpSystem, SnmpV3Message
from medsentry.protocols import ber
from medsentry.protocols.base import ParseError
from medsentry.protocols.snmp import SnmpDissector, parse

pytestmark = pytest.mark.xdist_group("net_live_captures")

SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0"
SYS_CONTACT, SYS_NAME, SYS_LOCATION = "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"
GET, RESPONSE, TRAP, INFORM, TRAP2, REPORT = 0xA0, 0xA2, 0xA4, 0xA6, 0xA7, 0xA8


# -- a BER encoder of the test's own (X.690 §8.1.3 definite lengths) --------------------------


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + content


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def oid_content(dotted: str) -> bytes:
    arcs = [int(x) for x in dotted.split(".")]
    out = bytearray()
    for a in [40 * arcs[0] + arcs[1], *arcs[2:]]:  # X.690 §8.19.4
        chunk = [a & 0x7F]
        a >>= 7
        while a:
            chunk.append(0x80 | (a & 0x7F))
            a >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def oid(dotted: str) -> bytes:
    return tlv(0x06, oid_content(dotted))


def value(v: object) -> bytes:
    if v is None:
        return b"\x05\x00"  # NULL
    if isinstance(v, bytes):
        return v  # an encoded value as given
    if isinstance(v, int):
        return tlv(0x43, v.to_bytes(4, "big"))  # TimeTicks
    if isinstance(v, str) and v.startswith("oid:"):
        return oid(v[4:])
    return tlv(0x04, str(v).encode())


def varbinds(vbs: list[tuple[str, object]]) -> bytes:
    return tlv(0x30, b"".join(tlv(0x30, oid(n) + value(v)) for n, v in vbs))


def message(
    pdu_tag: int,
    vbs: list[tuple[str, object]],
    community: bytes = b"public",
    version: int = 1,
    request_id: int = 7,
    error_status: int = 0,
) -> bytes:
    """RFC 3416 §3 Message { version, community, PDU }."""
    pdu = tlv(pdu_tag, integer(request_id) + integer(error_status) + integer(0) + varbinds(vbs))
    return tlv(0x30, integer(version) + tlv(0x04, community) + pdu)


def trap_v1(enterprise: str, agent: str, vbs: list[tuple[str, object]]) -> bytes:
    """RFC 1157 §4.1.6 Trap-PDU: enterprise, agent-addr, generic-trap, specific-trap, time-stamp."""
    addr = tlv(0x40, bytes(int(x) for x in agent.split(".")))
    body = oid(enterprise) + addr + integer(6) + integer(1) + tlv(0x43, b"\x01\x00") + varbinds(vbs)
    return tlv(0x30, integer(0) + tlv(0x04, b"public") + tlv(TRAP, body))


def v3(flags: int, pdu: bytes | None) -> bytes:
    """RFC 3412 §6: version 3, msgGlobalData, msgSecurityParameters, ScopedPDU or encryptedPDU."""
    glob = tlv(0x30, integer(1) + integer(65507) + tlv(0x04, bytes([flags])) + integer(3))
    usm = tlv(0x04, tlv(0x30, tlv(0x04, b"") + integer(0) + integer(0) + tlv(0x04, b"")))
    data = (
        tlv(0x04, b"\x8f" * 24) if pdu is None else tlv(0x30, tlv(0x04, b"") + tlv(0x04, b"") + pdu)
    )
    return tlv(0x30, integer(3) + glob + usm + data)


# the agent's whole system group, as net-snmp answers a walk
SYSTEM_GROUP = [
    (SYS_DESCR, "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(4)E10"),
    (SYS_OBJECT_ID, "oid:1.3.6.1.4.1.9.1.1208"),
    (SYS_UPTIME, 4242),
    (SYS_CONTACT, "Nurse Zorblatt, ext 4455"),
    (SYS_NAME, "sw-icu-01.example"),
    (SYS_LOCATION, "Bed 12, Ward 3"),
]


def _system(ev: list) -> list[SnmpSystem]:
    return [e for e in ev if isinstance(e, SnmpSystem)]


def test_response_yields_the_system_group_only() -> None:
    d = SnmpDissector(ctx_for())
    assert _system(d.feed(0, message(GET, [(n, None) for n, _ in SYSTEM_GROUP]), 1)) == []
    ev = d.feed(1, message(RESPONSE, SYSTEM_GROUP), 2)
    (s,) = _system(ev)
    assert (s.direction, s.version, s.pdu) == (1, 1, "response")
    assert s.sys_descr == SYSTEM_GROUP[0][1]
    assert s.sys_object_id == "1.3.6.1.4.1.9.1.1208"
    assert s.sys_name == "sw-icu-01.example" and s.withheld == []
    payload = b"".join(encode_json(e) for e in ev)
    for never in (b"Zorblatt", b"4455", b"Bed 12", b"Ward 3"):  # sysContact, sysLocation
        assert never not in payload
    # the same answer again (a poller's next round) is not reported again on this flow
    assert _system(d.feed(1, message(RESPONSE, SYSTEM_GROUP, request_id=8), 3)) == []


def test_errors_exceptions_requests_and_inform_acknowledgements_say_nothing() -> None:
    d = SnmpDissector(ctx_for())
    # RFC 3416 §4.2.1: an error Response carries the request's varbinds
    bad = message(RESPONSE, [(SYS_NAME, "from-the-request")], error_status=2)
    # RFC 3416 §3: noSuchObject [0] exception instead of a value
    exc = message(RESPONSE, [(SYS_NAME, b"\x80\x00"), (SYS_DESCR, b"\x81\x00")], request_id=9)
    wrong_type = message(RESPONSE, [(SYS_NAME, 5), (SYS_OBJECT_ID, "not an oid")], request_id=10)
    setreq = message(0xA3, [(SYS_NAME, "renamed-by-manager")])
    for direction, msg in ((1, bad), (1, exc), (1, wrong_type), (0, setreq)):
        assert _system(d.feed(direction, msg, 1)) == []
    # RFC 3416 §4.2.7: the receiver of an InformRequest answers with its varbinds
    d = SnmpDissector(ctx_for())
    (inform,) = _system(d.feed(0, message(INFORM, [(SYS_NAME, "agent-7")], request_id=77), 1))
    assert (inform.direction, inform.pdu, inform.sys_name) == (0, "inform", "agent-7")
    assert _system(d.feed(1, message(RESPONSE, [(SYS_NAME, "agent-7")], request_id=77), 2)) == []


def test_trap_v1_enterprise_and_agent_address() -> None:
    """RFC 1157 §4.1.6: the sender states its type (enterprise) and address."""
    d = SnmpDissector(ctx_for())
    ev = d.feed(0, trap_v1("1.3.6.1.4.1.22447.1.2", "10.20.30.40", [(SYS_LOCATION, "Bed 4")]), 1)
    (s,) = _system(ev)
    assert (s.pdu, s.enterprise, s.agent_address, s.version) == (
        "trap", "1.3.6.1.4.1.22447.1.2", "10.20.30.40", 0
    )  # fmt: skip
    assert s.sys_descr is None and b"Bed 4" not in encode_json(s)
    trap2 = message(TRAP2, [(SYS_UPTIME, 1), (SYS_NAME, "pump-gw")], request_id=3)
    (s2,) = _system(SnmpDissector(ctx_for()).feed(0, trap2, 1))
    assert (s2.pdu, s2.sys_name) == ("snmpv2-trap", "pump-gw")


def test_person_data_in_sys_descr_is_withheld() -> None:
    """sysDescr is free text an administrator may set: the CMMS cell check screens it."""
    d = SnmpDissector(ctx_for())
    vbs = [
        (SYS_DESCR, "Infusion pump loaned to Mrs Quintessa, DOB 02/03/1950"),
        (SYS_NAME, "pump-1"),
    ]
    (s,) = _system(d.feed(1, message(RESPONSE, vbs), 1))
    assert s.sys_descr is None and s.withheld == ["sysDescr"] and s.sys_name == "pump-1"
    assert b"Quintessa" not in encode_json(s) and b"1950" not in encode_json(s)
    # line breaks (Cisco's multi-line sysDescr) become spaces, controls are dropped
    multi = message(RESPONSE, [(SYS_DESCR, "Cisco IOS Software\r\nTechnical Support\x07")])
    (m,) = _system(SnmpDissector(ctx_for()).feed(1, multi, 1))
    assert m.sys_descr == "Cisco IOS Software Technical Support"


def test_v3_security_level_and_nothing_else() -> None:
    """RFC 3412 §6.4 msgFlags: auth 1, priv 2, reportable 4; the scoped PDU is not read past its
    type, and an encrypted one not at all."""
    d = SnmpDissector(ctx_for())
    get = tlv(GET, integer(1) + integer(0) + integer(0) + varbinds([(SYS_NAME, None)]))
    resp = tlv(RESPONSE, integer(1) + integer(0) + integer(0) + varbinds([(SYS_NAME, "v3-agent")]))
    ev = d.feed(0, v3(0x04, get), 1) + d.feed(1, v3(0x00, resp), 2) + d.feed(1, v3(0x03, None), 3)
    got = [(e.direction, e.security_level, e.reportable, e.pdu) for e in ev]
    assert got == [
        (0, "noAuthNoPriv", True, "get"),
        (1, "noAuthNoPriv", False, "response"),
        (1, "authPriv", False, None),
    ]
    assert all(isinstance(e, SnmpV3Message) for e in ev)
    assert b"v3-agent" not in b"".join(encode_json(e) for e in ev)
    with pytest.raises(ParseError):
        parse(v3(0x02, None))  # privFlag without authFlag (RFC 3412 §7.2)


@pytest.mark.parametrize(
    ("content", "dotted"),
    [
        (bytes.fromhex("2b06010401bf0803020a"), "1.3.6.1.4.1.8072.3.2.10"),
        (bytes.fromhex("883703"), "2.999.3"),  # X.690 §8.19.5 example: 2.999.3 is 88 37 03
        (b"\x00", "0.0"),
        (bytes.fromhex("2b06010401") + b"\x8f\xff\xff\xff\x7f", "1.3.6.1.4.1.4294967295"),
    ],
)
def test_oid_decoding(content: bytes, dotted: str) -> None:
    """RFC 2578 §7.1.3: 2^32-1 is the largest sub-identifier."""
    assert ber.oid(content) == dotted


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x2b\x80\x01",  # a sub-identifier led by 0x80 (not minimal, X.690 §8.19.2)
        b"\x2b\x86",  # truncated
        oid_content("1.3.6.1.4.1.4294967296"),  # above 2^32-1
        b"\x2b" + b"\x01" * 128,  # 129 sub-identifiers (RFC 2578 §3.5)
        b"\x2b" + b"\xff" * 1000 + b"\x7f",  # an endless sub-identifier
    ],
)
def test_oid_rejects(content: bytes) -> None:
    with pytest.raises(ParseError):
        ber.oid(content)


@pytest.mark.parametrize(
    "msg",
    [
        b"\x30\x80\x02\x01\x01\x04\x00\xa2\x00\x00\x00",  # indefinite length (RFC 3417 §8)
        b"\x30\x06\x02\x01\x02\x04\x01x",  # version 2 is no SNMP version
        b"\x30\x06\x02\x01\x01\x04\x09x",  # community runs past the message
        b"\x30\x08\x02\x01\x01\x04\x01x\xa9\x00",  # PDU tag 0xa9
        b"\x1f\x01\x00",  # high tag number form
        message(RESPONSE, [(SYS_OBJECT_ID, b"\x06\x02\x2b\x80")]),  # sysObjectID malformed
    ],
)
def test_malformed_is_a_parse_error(msg: bytes) -> None:
    with pytest.raises(ParseError):
        SnmpDissector(ctx_for()).feed(1, msg, 1)


# -- real captures -------------------------------------------------------------------------------


def _ndpi_events(ndpi_pcaps: Path) -> list:
    return [
        e
        for fl in flows(ndpi_pcaps / "snmp.pcap")
        for e in run(SnmpDissector(ctx_for(fl.endpoints)), fl.items, strict=True)
    ]


def test_ndpi_snmp_against_tshark(ndpi_pcaps: Path) -> None:
    """snmp.pcap: v1/v2c polls of sysName/sysLocation/sysContact, v3 at three security levels,
    v1 and v2c/v3 traps. Every message parses; sysName is what tshark reads, from the agents
    that sent it; sysContact (an e-mail address) and sysLocation never leave."""
    pcap = ndpi_pcaps / "snmp.pcap"
    ev = _ndpi_events(pcap.parent)
    rows = tshark(pcap, "snmp.version <= 1", "ip.src", "snmp.name", "snmp.value.octets")
    pairs = []  # (sender, name, value) of varbinds whose values are all octet strings
    for src, n, v in rows:
        ns, vs = n.split("|"), v.split("|")
        if len(ns) == len(vs):
            pairs += [(src, a, bytes.fromhex(b)) for a, b in zip(ns, vs, strict=True) if b]
        else:  # a message with values of other types: none names the system group here
            assert not any(x.startswith("1.3.6.1.2.1.1.") and x != SYS_UPTIME for x in ns)
    names = {(src, val.decode()) for src, n, val in pairs if n == SYS_NAME}
    assert names  # the capture carries sysName values
    got = set()
    for s in _system(ev):
        e = s.endpoints
        got.add((e.server if s.direction else e.client, s.sys_name))
    assert {g for g in got if g[1]} == names
    contact_location = {val for _src, n, val in pairs if n in (SYS_CONTACT, SYS_LOCATION)}
    assert contact_location  # the capture carries them: they must not leave
    payload = b"".join(encode_json(e) for e in ev)
    assert not [x for x in contact_location if x in payload]
    # the v1 trap: enterprise and agent-addr as tshark reads them
    (trap,) = tshark(pcap, "snmp.trap_element", "ip.src", "snmp.enterprise", "snmp.agent_addr")[:1]
    (t,) = [s for s in _system(ev) if s.pdu == "trap"]
    assert (t.endpoints.client, t.enterprise, t.agent_address) == tuple(trap)
    # v3: the security level of each flag combination tshark shows
    flags = tshark(pcap, "snmp.msgVersion == 3", "ip.src", "snmp.msgFlags")
    levels = {0: "noAuthNoPriv", 1: "authNoPriv", 3: "authPriv"}
    want = {(r[0], levels[int(r[1], 16) & 3], bool(int(r[1], 16) & 4)) for r in flags}
    v3s = [e for e in ev if isinstance(e, SnmpV3Message)]
    sent = {
        (e.endpoints.server if e.direction else e.endpoints.client, e.security_level, e.reportable)
        for e in v3s
    }
    assert sent == want


# -- fuzzing -------------------------------------------------------------------------------------

_printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)
_arc = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=300)), max_size=10),
    st.sampled_from(
        [
            message(RESPONSE, SYSTEM_GROUP),
            trap_v1("1.3.6.1.4.1.9.1", "10.0.0.1", [(SYS_NAME, "x")]),
            v3(0x04, tlv(GET, integer(1) + integer(0) + integer(0) + varbinds([]))),
            b"",
        ]
    ),
    st.integers(0, 400),
    st.binary(max_size=8),
)
def test_fuzz_dissector(
    datagrams: list[tuple[int, bytes]], seed: bytes, cut: int, splice: bytes
) -> None:
    """Any datagrams, and real messages cut or spliced anywhere: events or a ParseError."""
    d = SnmpDissector(ctx_for())
    mutated = seed[:cut] + splice + seed[cut + len(splice) :]
    for direction, data in [(1, mutated), *datagrams]:
        try:
            for e in d.feed(direction, data, 1):
                msgspec.json.encode(e)
        except ParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(_arc, min_size=1, max_size=20), st.integers(0, 2), st.integers(0, 39))
def test_fuzz_oid_round_trip(arcs: list[int], x: int, y: int) -> None:
    dotted = ".".join(map(str, [x, y, *arcs]))
    assert ber.oid(oid_content(dotted)) == dotted


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_oid_bytes(content: bytes) -> None:
    try:
        dotted = ber.oid(content)
    except ParseError:
        return
    assert ber.oid(oid_content(dotted)) == dotted


@settings(max_examples=200, deadline=None)
@given(
    _printable,
    st.lists(_arc, min_size=1, max_size=12),
    _printable,
    st.permutations(range(6)),
    st.integers(0, 1),
)
def test_fuzz_system_group_round_trip(
    descr: str, arcs: list[int], name: str, order: list[int], version: int
) -> None:
    """Whatever the agent says, in any order, comes back as sent (or withheld as person data)."""
    objid = "1.3.6.1.4.1." + ".".join(map(str, arcs))
    group = [
        (SYS_DESCR, descr),
        (SYS_OBJECT_ID, "oid:" + objid),
        (SYS_UPTIME, 1),
        (SYS_CONTACT, "c"),
        (SYS_NAME, name),
        (SYS_LOCATION, "l"),
    ]
    msg = message(RESPONSE, [group[i] for i in order], version=version)
    (s,) = _system(SnmpDissector(ctx_for()).feed(1, msg, 1))
    assert s.sys_object_id == objid
    assert s.sys_descr == descr or s.withheld[:1] == ["sysDescr"]
    assert s.sys_name == name or "sysName" in s.withheld
