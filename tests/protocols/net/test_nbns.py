"""NetBIOS name service (protocols/nbns.py) on real captures (nDPI's corpus), each message
cross-checked with tshark's NBNS dissector, and fuzzed. The real stack (Samba's nmbd answering
nmblookup on a namespace LAN) is in tests/inventory/test_inventory_namesvc.py."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, run, tshark

from medsentry.events.base import Endpoints
from medsentry.events.identity import NbnsMessage
from medsentry.protocols.base import ParseError
from medsentry.protocols.identify import identify
from medsentry.protocols.nbns import NbnsDissector, decode_name, name_text, parse_message
from medsentry.protocols.registry import load, stream_dissector

# names that name hosts: requests REGISTRATION 5, RELEASE 6, REFRESH 8/9, MULTI-HOMED 15,
# and positive answers to name queries and NODE STATUS requests (RFC 1002 §4.2)
_HOST_OPCODES = {"5": "REGISTRATION", "6": "RELEASE", "8": "REFRESH", "9": "REFRESH",
                 "15": "MULTI-HOMED REGISTRATION"}  # fmt: skip
_SHOWNAME = re.compile(r"^Name: (?P<name>.*)<(?P<suffix>[0-9a-f]{2})>(?: \(.*\))?$")
CAPTURES = [
    "netbios.pcap",  # NODE STATUS and positive name query responses
    "anyconnect-vpn.pcap",  # registrations and releases
    "zoom.pcap",  # refreshes (opcode 8)
    "gnutella.pcap",  # Windows 10 registrations
    "dos_win98_smb_netbeui.pcap",  # Windows 98: broadcast and WINS registrations
]


def _ours(pcap: Path) -> list[NbnsMessage]:
    load()
    factory = stream_dissector("netbios")
    out: list[NbnsMessage] = []
    for fl in flows(pcap):
        if fl.transport == "udp" and 137 in (fl.client[1], fl.server[1]):
            out += [
                e
                for e in run(factory(ctx_for(fl.endpoints)), fl.items)
                if isinstance(e, NbnsMessage)
            ]
    return out


def _tshark_messages(pcap: Path) -> set[tuple]:
    """(sender, opcode, response, names, unit id) of every NBNS message tshark decodes that
    names hosts, its names read from the resource records (answers, additional records)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    pdml = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "nbns", "-T", "pdml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    out = set()
    for packet in ET.fromstring(pdml).iter("packet"):
        src = next(f.get("show") for f in packet.iter("field") if f.get("name") == "ip.src")
        proto = next(p for p in packet.iter("proto") if p.get("name") == "nbns")
        flags = {f.get("name"): f.get("show") for f in proto.iter("field")}
        response, opcode = flags["nbns.flags.response"] == "1", flags["nbns.flags.opcode"]
        rcode = flags.get("nbns.flags.rcode", "0")
        names: list[tuple[str, int, bool]] = []
        unit = None
        for section in proto:
            if section.get("show") not in ("Answers", "Additional records"):
                continue
            rr_name, group = None, None
            for f in section.iter("field"):
                n = f.get("name")
                if n in ("nbns.name", "nbns.netbios_name"):
                    m = _SHOWNAME.match(f.get("showname"))
                    assert m, f.get("showname")
                    # a name's control characters (tshark writes <01>) are dropped, as we do
                    rr_name = (re.sub(r"<[0-9a-f]{2}>", "", m["name"]), int(m["suffix"], 16))
                elif n in ("nbns.nb_flags.group", "nbns.name_flags.group"):
                    group = f.get("show") == "1"
                    if n == "nbns.name_flags.group":  # NODE STATUS: one entry per name
                        names.append((*rr_name, group))
                elif n == "nbns.addr":
                    names.append((*rr_name, group, f.get("show")))
                elif n == "nbns.unit_id":
                    unit = f.get("show")
        names = [n for n in names if n[1] != 0x03]  # messenger names: a user's, not a host's
        hosts = (opcode == "0" and rcode == "0") if response else opcode in _HOST_OPCODES
        if hosts and names:
            kind = "QUERY" if response else _HOST_OPCODES[opcode]
            out.add((src, kind, response, tuple(names), unit))
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_ndpi_nbns_agree_with_tshark(ndpi_pcaps: Path, name: str) -> None:
    pcap = ndpi_pcaps / name
    ev = _ours(pcap)
    ours = set()
    for e in ev:
        sender = e.endpoints.client if e.direction == 0 else e.endpoints.server
        names = tuple(
            (n.name, n.suffix, n.group) if e.node_status else (n.name, n.suffix, n.group, n.address)
            for n in e.names
        )
        ours.add((sender, e.opcode, e.response, names, e.unit_id))
    assert ours == _tshark_messages(pcap) and ours


def test_node_status_names_the_answering_host(ndpi_pcaps: Path) -> None:
    ev = [e for e in _ours(ndpi_pcaps / "netbios.pcap") if e.node_status]
    assert {e.unit_id for e in ev} == {"00:1c:c4:10:79:0f"}  # tshark: HewlettP_10:79:0f
    table = {(n.name, n.suffix, n.group) for n in ev[0].names}
    assert table == {
        ("GUNNAR", 0x00, False),  # workstation
        ("GUNNAR", 0x20, False),  # file server
        ("VIGILANT_GROUP", 0x00, True),  # its workgroup
        ("VIGILANT_GROUP", 0x1E, True),  # browser elections
    }
    assert all(e.direction == 1 and e.endpoints.server == "10.0.4.24" for e in ev)


def test_messenger_names_are_dropped(ndpi_pcaps: Path) -> None:
    """A <03> messenger name can be the logged-on user's (Windows 98 registers "MARTIN
    ROSENAU<03>"): personal data, not the host's name; it never leaves the dissector."""
    ev = _ours(ndpi_pcaps / "dos_win98_smb_netbeui.pcap")
    names = {(n.name, n.suffix) for e in ev for n in e.names}
    assert ("MDJR98", 0x00) in names and ("WORKGROUP", 0x1D) in names
    assert not any("ROSENAU" in n for n, _ in names) and all(s != 0x03 for _, s in names)
    assert "ROSENAU" not in repr(ev)


def test_wildcard_name_in_a_dns_query(ndpi_pcaps: Path) -> None:
    """nDPI's capture of a DNS query (UDP 53) for the NODE STATUS wildcard name: tshark shows
    the first-level encoded name, which decodes to "*" padded with NULs (RFC 1002 §4.2.17)."""
    pcap = ndpi_pcaps / "netbios_wildcard_dns_query.pcap"
    ((qname, qtype),) = tshark(pcap, "dns", "dns.qry.name", "dns.qry.type")
    raw, scope = decode_name(qname)
    assert raw == b"*" + bytes(15) and scope == "" and name_text(raw) == "*"
    assert qtype == "33"  # SRV in DNS, NBSTAT (0x21) in NBNS: a NODE STATUS request
    (fl,) = flows(pcap)
    assert run(stream_dissector("netbios")(ctx_for(fl.endpoints)), fl.items) == []


def _zoom_refresh(ndpi_pcaps: Path) -> bytes:
    for fl in flows(ndpi_pcaps / "zoom.pcap"):
        if 137 in (fl.client[1], fl.server[1]):
            for _, data, _ in fl.items:
                if (data[2] >> 3) & 0xF == 8:
                    return data
    raise AssertionError("zoom.pcap has no NBNS refresh")


def test_refresh_and_registration_opcodes(ndpi_pcaps: Path) -> None:
    """A real refresh (opcode 8, macOS); the same message as opcode 9 (the refresh Windows
    sends) and 15 (multi-homed registration); an opcode RFC 1002 does not define is refused."""
    msg = bytearray(_zoom_refresh(ndpi_pcaps))
    assert parse_message(bytes(msg))["opcode"] == "REFRESH"
    for code, kind in ((9, "REFRESH"), (15, "MULTI-HOMED REGISTRATION"), (5, "REGISTRATION")):
        msg[2] = (msg[2] & 0x87) | (code << 3)
        got = parse_message(bytes(msg))
        assert got["opcode"] == kind and got["names"][0].address == "192.168.1.117"
    msg[2] = (msg[2] & 0x87) | (3 << 3)
    with pytest.raises(ParseError, match="opcode 3"):
        parse_message(bytes(msg))


def test_refresh_opcode_9_identified_by_signature(ndpi_pcaps: Path) -> None:
    """A flow whose first message is a Windows refresh (opcode 9) is the name service by its
    bytes, not only by its port."""
    msg = bytearray(_zoom_refresh(ndpi_pcaps))
    msg[2] = (msg[2] & 0x87) | (9 << 3)
    got = identify(17, 137, 137, bytes(msg), b"", False)
    assert got is not None and (got.protocol, got.method) == ("netbios", "signature")


def test_repeated_messages_once_per_flow(ndpi_pcaps: Path) -> None:
    """gnutella.pcap: Windows 10 broadcasts each of its 3 registrations four times (12
    messages, two kinds of flags): one event per distinct message, whatever its id."""
    ev = _ours(ndpi_pcaps / "gnutella.pcap")
    rows = tshark(ndpi_pcaps / "gnutella.pcap", "nbns.flags.opcode == 5", "nbns.flags", "nbns.name")
    assert len(rows) == 12 and len(ev) == len({tuple(r) for r in rows}) == 6


def test_datagram_and_session_flows_get_a_done_dissector() -> None:
    load()
    factory = stream_dissector("netbios")
    for transport, port in (("udp", 138), ("tcp", 139)):
        ep = Endpoints(client="10.0.0.2", server="10.0.0.3", client_port=port, server_port=port,
                       transport=transport)  # fmt: skip
        d = factory(ctx_for(ep))
        assert d.done and not d.whole_stream and d.feed(0, b"\x11\x02", 1) == []
    ns = factory(ctx_for(Endpoints(client="a", server="b", server_port=137, transport="udp")))
    assert isinstance(ns, NbnsDissector)


@pytest.fixture(scope="module")
def nbns_seeds(ndpi_pcaps: Path) -> list[bytes]:
    """Real messages for the fuzzer: a registration, a release, a refresh, name query
    responses and NODE STATUS responses."""
    seeds: dict[tuple[int, int], bytes] = {}
    for name in ("netbios.pcap", "anyconnect-vpn.pcap", "zoom.pcap"):
        for fl in flows(ndpi_pcaps / name):
            if 137 in (fl.client[1], fl.server[1]):
                for _, data, _ in fl.items:
                    seeds.setdefault((data[2] >> 3, len(data)), data)
    return list(seeds.values())


@settings(max_examples=500, deadline=None)
@given(junk=st.binary(max_size=300), data=st.data())
def test_fuzz_nbns(nbns_seeds: list[bytes], junk: bytes, data: st.DataObject) -> None:
    """Random bytes, and real messages with bytes changed or cut: only ParseError, never
    another exception."""
    seed = bytearray(data.draw(st.sampled_from(nbns_seeds)))
    for _ in range(data.draw(st.integers(0, 6))):
        seed[data.draw(st.integers(0, len(seed) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(seed)))
    d = NbnsDissector(ctx_for(Endpoints(client="a", server="b", transport="udp")))
    for msg in (junk, bytes(seed), bytes(seed[:cut]), bytes(seed) + junk):
        with contextlib.suppress(ParseError):
            parse_message(msg)
        with contextlib.suppress(ParseError):
            for e in d.feed(1, msg, 1):
                assert isinstance(e, NbnsMessage) and len(e.names) <= 64
    with contextlib.suppress(ParseError):
        decode_name(junk.decode("latin-1"))
