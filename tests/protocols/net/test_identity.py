"""DHCP, DHCPv6, DNS/mDNS/LLMNR and SSDP: a DHCP exchange made with real sockets on loopback,
and real captures (nDPI corpus), each cross-checked field by field with tshark."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, run, tcpdump, tshark

from medsentry.events.identity import DhcpMessage, Dhcpv6Message, DnsMessage, SsdpMessage
from medsentry.protocols.base import ParseError
from medsentry.protocols.dhcp import DhcpDissector, Dhcpv6Dissector, parse_dhcp
from medsentry.protocols.dns import DnsDissector, parse_message, read_name
from medsentry.protocols.registry import load, stream_dissector
from medsentry.protocols.ssdp import SsdpDissector

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

MAC = bytes.fromhex("001b2c3d4e5f")


def _discover(xid: int) -> bytes:
    """A DHCPDISCOVER built field by field per RFC 2131 §2 and RFC 2132 options."""
    fixed = struct.pack(
        ">BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        MAC + b"\0" * 10,
        b"",
        b"",
    )
    opts = (
        bytes([53, 1, 1])  # DHCP message type DISCOVER
        + bytes([61, 7, 1])
        + MAC  # client identifier: htype 1 + chaddr
        + bytes([50, 4, 10, 0, 0, 42])  # requested IP address
        + bytes([12, 11])
        + b"PUMP-ICU-07"  # host name
        + bytes([60, 14])
        + b"BD.Alaris.8015"  # vendor class identifier
        + bytes([55, 7, 1, 3, 6, 15, 28, 42, 121])  # parameter request list
        + bytes([255])
    )
    return fixed + b"\x63\x82\x53\x63" + opts


@pytest.fixture(scope="module")
def dhcp_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pcap = tmp_path_factory.mktemp("dhcp") / "dhcp.pcap"
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 67))
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind(("127.0.0.1", 68))

    def server() -> None:  # answers with an OFFER (op 2, yiaddr) echoing xid and chaddr
        data, addr = srv.recvfrom(2048)
        offer = bytearray(data[:240])
        offer[0] = 2
        offer[16:20] = bytes([10, 0, 0, 42])
        offer += bytes([53, 1, 2, 54, 4, 127, 0, 0, 1, 51, 4, 0, 0, 14, 16, 255])
        srv.sendto(bytes(offer), addr)

    t = threading.Thread(target=server, daemon=True)
    t.start()
    try:
        with tcpdump(pcap, "udp port 67 or udp port 68"):
            cli.sendto(_discover(0x3903F326), ("127.0.0.1", 67))
            cli.settimeout(5)
            cli.recvfrom(2048)
    finally:
        t.join(5)
        srv.close()
        cli.close()
    return pcap


def _all(pcap: Path, protocol: str) -> list:
    load()
    factory = stream_dissector(protocol)
    return [
        e for fl in flows(pcap) for e in run(factory(ctx_for(fl.endpoints)), fl.items, strict=False)
    ]


def test_dhcp_discover_and_offer(dhcp_capture: Path) -> None:
    ev = _all(dhcp_capture, "dhcp")
    disc, offer = ev
    assert isinstance(disc, DhcpMessage) and disc.message_type == "DISCOVER"
    assert disc.hostname == "PUMP-ICU-07" and disc.vendor_class == "BD.Alaris.8015"
    assert disc.parameter_request_list == "1,3,6,15,28,42,121"
    assert disc.client_id == "01" + MAC.hex() and disc.requested_address == "10.0.0.42"
    assert disc.client_mac == "00:1b:2c:3d:4e:5f" and disc.xid == 0x3903F326
    assert disc.options == [53, 61, 50, 12, 60, 55]
    assert offer.message_type == "OFFER" and offer.your_address == "10.0.0.42"
    assert offer.server_id == "127.0.0.1"
    rows = tshark(
        dhcp_capture,
        "dhcp.option.dhcp == 1",
        "dhcp.option.hostname",
        "dhcp.option.vendor_class_id",
        "dhcp.option.request_list_item",
        "dhcp.hw.mac_addr",
        "dhcp.option.requested_ip_address",
        "dhcp.hw.type",
    )
    host, vendor, prl, mac, req, hw_types = rows[0]
    # option 61 (RFC 2132 §9.14): a type byte, then the identifier (here a MAC); tshark shows
    # them as a second hardware type and client MAC after the header's
    cid_type, cid_mac = hw_types.split("|")[-1], mac.split("|")[-1]
    assert disc.client_id == f"{int(cid_type, 0):02x}" + cid_mac.replace(":", "")
    mac = mac.split("|")[0]  # tshark also lists the MAC inside option 61
    assert (host, vendor, mac, req) == (
        disc.hostname,
        disc.vendor_class,
        disc.client_mac,
        disc.requested_address,
    )
    assert prl.replace("|", ",") == disc.parameter_request_list


def test_ndpi_dhcp_and_dhcpv6_agree_with_tshark(ndpi_pcaps: Path) -> None:
    pcap = ndpi_pcaps / "1kxun.pcap"
    ev = [e for e in _all(pcap, "dhcp") if isinstance(e, DhcpMessage)]
    rows = tshark(
        pcap, "dhcp", "dhcp.option.hostname", "dhcp.option.vendor_class_id", "dhcp.hw.mac_addr"
    )
    assert sorted((e.hostname or "", e.vendor_class or "", e.client_mac or "") for e in ev) == (
        sorted((r[0], r[1], r[2].split("|")[0]) for r in rows)
    )
    ev6 = [e for e in _all(pcap, "dhcpv6") if isinstance(e, Dhcpv6Message)]
    rows6 = tshark(
        pcap,
        "dhcpv6",
        "dhcpv6.msgtype",
        "dhcpv6.duidllt.link_layer_addr",
        "dhcpv6.requested_option_code",
        "dhcpv6.option.type",
    )
    assert len(ev6) == len(rows6) >= 1
    for e, (mtype, lladdr, oro, opts) in zip(ev6, rows6, strict=True):
        assert e.message_type == "INFORMATION-REQUEST" and mtype == "11"
        assert e.duid_link_address == lladdr
        assert e.option_request == [int(x) for x in oro.split("|")]
        assert e.options == [int(x) for x in opts.split("|")]


@pytest.mark.parametrize(
    ("name", "proto"),
    [
        ("dns.pcap", "dns"),
        ("iphone.pcap", "mdns"),
        ("1kxun.pcap", "llmnr"),
        ("telegram.pcap", "mdns"),
    ],
)
def test_ndpi_dns_agree_with_tshark(ndpi_pcaps: Path, name: str, proto: str) -> None:
    pcap = ndpi_pcaps / name
    port = {"dns": 53, "mdns": 5353, "llmnr": 5355}[proto]
    load()
    ev = []
    for fl in flows(pcap):
        if port in (fl.client[1], fl.server[1]) and fl.transport == "udp":
            ev += run(stream_dissector(proto)(ctx_for(fl.endpoints)), fl.items, strict=False)
    ev = [e for e in ev if isinstance(e, DnsMessage)]
    rows = tshark(
        pcap,
        f"udp.port == {port} && !icmp",
        "dns.qry.name",
        "dns.a",
        "dns.ptr.domain_name",
        "dns.srv.target",
        "dns.txt",
    )
    assert len(ev) == len(rows) >= 1
    rows = [r + [""] * (5 - len(r)) for r in rows]  # tshark leaves trailing empty fields out
    for e, (qn, a, ptr, srv, txt) in zip(sorted(ev, key=lambda e: e.ts_ns), rows, strict=True):
        # we write a dot inside a label as "\." (RFC 1035 §5.1); tshark writes it bare
        ptr = ptr.replace("\\.", ".")
        assert [q.name for q in e.questions] == [x for x in qn.split("|") if x]
        assert [r.data for r in e.answers if r.rtype == 1] == [x for x in a.split("|") if x]
        assert [r.data.replace("\\.", ".") for r in e.answers if r.rtype == 12] == [
            x for x in ptr.split("|") if x
        ]
        assert [r.data.split()[-1] for r in e.answers if r.rtype == 33] == [
            x for x in srv.split("|") if x
        ]
        # TXT character-strings one by one (RFC 1035 §3.3.14), the "key=value" pairs of DNS-SD
        strings = [x for r in e.answers if r.rtype == 16 for x in r.strings]
        assert [x for x in strings if x] == [x for x in txt.split("|") if x]


def test_mdns_service_names(ndpi_pcaps: Path) -> None:
    load()
    ev = [
        e
        for fl in flows(ndpi_pcaps / "iphone.pcap")
        if 5353 in (fl.client[1], fl.server[1])
        for e in run(stream_dissector("mdns")(ctx_for(fl.endpoints)), fl.items)
    ]
    types = {t for e in ev for t in e.service_types}
    assert any(t.endswith("._tcp.local") for t in types)


def test_compression_loop_and_forward_pointer_rejected() -> None:
    hdr = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0)
    with pytest.raises(ParseError):
        parse_message(hdr + b"\xc0\x0c\x00\x01\x00\x01")  # points at itself
    with pytest.raises(ParseError):
        read_name(b"\x03abc\xc0\x00", 0)  # points back at its own start
    assert read_name(hdr + b"\x03foo\x00\x03bar\xc0\x0c", 17)[0] == "bar.foo"


@pytest.mark.parametrize("name", ["ssdp-m-search.pcap", "upnp.pcap", "ssdp-m-search-ua.pcap"])
def test_ndpi_ssdp_agree_with_tshark(ndpi_pcaps: Path, name: str) -> None:
    pcap = ndpi_pcaps / name
    ev = []
    for fl in flows(pcap):
        if 1900 in (fl.client[1], fl.server[1]):
            ev += run(SsdpDissector(ctx_for(fl.endpoints)), fl.items, strict=False)
    rows = tshark(pcap, "ssdp", "http.request.method", "http.server", "http.location")
    distinct = {
        (r[0] or "RESPONSE", r[1] if len(r) > 1 else "", r[2] if len(r) > 2 else "") for r in rows
    }
    ours = {(e.method, e.server or "", e.location or "") for e in ev if isinstance(e, SsdpMessage)}
    assert ours == distinct


def _fuzz(dissector, chunks: list[bytes]) -> None:
    for c in chunks:
        with contextlib.suppress(ParseError):
            dissector.feed(0, c, 1)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=6), st.data())
def test_fuzz_dhcp_dns_ssdp(chunks: list[bytes], data: st.DataObject) -> None:
    seed = bytearray(_discover(1))
    for _ in range(data.draw(st.integers(0, 8))):
        seed[data.draw(st.integers(0, len(seed) - 1))] = data.draw(st.integers(0, 255))
    mutated = [bytes(seed), b"\x01" + bytes(seed[1:4]) + bytes(chunks[0] if chunks else b"")]
    for d in (
        DhcpDissector(ctx_for()),
        Dhcpv6Dissector(ctx_for()),
        DnsDissector(ctx_for()),
        DnsDissector(ctx_for(), "mdns"),
        SsdpDissector(ctx_for()),
    ):
        _fuzz(d, [*chunks, *mutated])
    from medsentry.events.base import Endpoints

    tcp = DnsDissector(ctx_for(Endpoints(client="a", server="b", transport="tcp")))
    _fuzz(tcp, chunks)
    assert all(len(b) <= 65537 + 600 for b in tcp.bufs)
    with contextlib.suppress(ParseError):
        parse_dhcp(bytes(seed))
