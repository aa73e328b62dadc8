"""The decode kernel, layer by layer, on packets built field by field from the RFCs."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest
from capture_build import arp, decode_one, eth, icmp, ipv4, ipv6, mac, raw_batch, tcp, udp

from medsentry.capture import batch as B
from medsentry.capture.decode import (
    decode,
    format_ip,
    format_ips,
    format_mac,
    format_macs,
    unique_ips,
)

M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
U = udp(40000, 104, b"DICM-payload")
T = tcp(
    50000,
    2575,
    b"MSH|^~\\&|",
    seq=0xDEADBEEF,
    ack=0x01020304,
    flags=0x18,
    win=1234,
    options=b"\x02\x04\x05\xb4",
)


def v4(text: str) -> int:
    return 0xFFFF_0000_0000 | int(ipaddress.IPv4Address(text))


def v6(text: str) -> tuple[int, int]:
    a = int(ipaddress.IPv6Address(text))
    return a >> 64, a & (2**64 - 1)


def test_ethernet_ipv4_tcp() -> None:
    d = decode_one(1, eth(M2, M1, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, T, ttl=33)))
    assert d["err"] == 0 and d["ethertype"] == 0x0800 and d["ip_ver"] == 4
    assert format_mac(d["eth_src"]) == M1 and format_mac(d["eth_dst"]) == M2
    assert d["src_lo"] == v4("10.0.0.1") and d["dst_lo"] == v4("10.0.0.2") and d["src_hi"] == 0
    assert (d["proto"], d["ttl"], d["ip_len"], d["frag"]) == (6, 33, 20 + len(T), 0)
    assert (d["sport"], d["dport"]) == (50000, 2575)
    assert (d["tcp_seq"], d["tcp_ack"], d["tcp_flags"], d["tcp_win"]) == (
        0xDEADBEEF,
        0x01020304,
        0x18,
        1234,
    )
    assert d["payload"] == b"MSH|^~\\&|"


def test_ethernet_padding_is_not_payload() -> None:
    frame = eth(M2, M1, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))) + b"\0" * 20
    d = decode_one(1, frame)
    assert d["payload"] == b"x" and d["ip_len"] == 29


def test_ipv4_options_and_fragments() -> None:
    d = decode_one(
        1, eth(M2, M1, 0x0800, ipv4("1.2.3.4", "5.6.7.8", 17, U, options=b"\x94\x04\0\0"))
    )
    assert (d["sport"], d["dport"], d["payload"]) == (40000, 104, b"DICM-payload")
    first = decode_one(101, ipv4("1.2.3.4", "5.6.7.8", 17, U, mf=True))
    assert first["frag"] == 0 and first["sport"] == 40000  # first fragment keeps its header
    later = decode_one(101, ipv4("1.2.3.4", "5.6.7.8", 17, b"continued data", frag_off=1480))
    assert later["frag"] == 1 and later["sport"] == later["dport"] == 0 and later["err"] == 0
    assert later["payload"] == b"continued data"


@pytest.mark.parametrize(
    ("tags", "vid"),
    [
        (((0x8100, 0x2064),), 100),
        (((0x88A8, 0x00C8), (0x8100, 0x0064)), 200),
        (((0x9100, 7), (0x8100, 9)), 7),
    ],
)
def test_vlan_tags(tags: tuple, vid: int) -> None:
    d = decode_one(1, eth(M2, M1, 0x0800, ipv4("10.1.1.1", "10.1.1.2", 17, U), tags=tags))
    assert d["vlan"] == vid and d["ethertype"] == 0x0800 and d["dport"] == 104 and d["err"] == 0


def test_ipv6_extension_headers() -> None:
    hbh = bytes([43, 0]) + b"\x01\x04\0\0\0\0"  # hop-by-hop -> routing, PadN
    rt = bytes([60, 0, 0, 0]) + b"\0" * 4  # routing -> destination options
    dst = bytes([51, 0]) + b"\x01\x04\0\0\0\0"  # destination options -> AH
    ah = bytes([44, 1, 0, 0]) + b"\0" * 4  # AH, payload len 1: (1+2)*4 = 12 bytes
    ah += b"\0" * 4
    frag = bytes([17, 0, 0, 0]) + b"\0\0\0\x01"  # fragment, offset 0 -> UDP
    pkt = ipv6("2001:db8::1", "2001:db8::2", 0, hbh + rt + dst + ah + frag + U, hlim=9)
    d = decode_one(229, pkt)
    assert d["err"] == 0 and d["ip_ver"] == 6 and d["proto"] == 17 and d["ttl"] == 9
    assert (d["src_hi"], d["src_lo"]) == v6("2001:db8::1") and (d["dst_hi"], d["dst_lo"]) == v6(
        "2001:db8::2"
    )
    assert (d["sport"], d["dport"], d["payload"]) == (40000, 104, b"DICM-payload")
    later = decode_one(
        229,
        ipv6("2001:db8::1", "2001:db8::2", 44, bytes([17, 0, 0x05, 0xC8]) + b"\0" * 4 + b"tail"),
    )
    assert later["frag"] == 1 and later["proto"] == 17 and later["payload"] == b"tail"


@pytest.mark.parametrize("count", [15, 16, 17, 40])
def test_ipv6_extension_chain_longer_than_the_walk_is_malformed(count: int) -> None:
    dst_opts = bytes([60, 0]) + b"\x01\x04\0\0\0\0"  # destination options -> destination options
    last = bytes([17, 0]) + b"\x01\x04\0\0\0\0"  # -> UDP
    d = decode_one(229, ipv6("::1", "::2", 60, dst_opts * (count - 1) + last + U))
    if count <= 16:  # RFC 8200 §4.1: each may appear at most twice; 16 covers every real chain
        assert d["err"] == 0 and d["proto"] == 17 and d["payload"] == b"DICM-payload"
    else:  # not a flow of transport "60": the packet is counted malformed
        assert d["err"] == B.ERR_BAD_IP_HEADER and d["sport"] == 0


def test_icmp_and_icmpv6() -> None:
    d = decode_one(228, ipv4("1.1.1.1", "2.2.2.2", 1, icmp(3, 3, payload=b"orig")))
    assert (d["sport"], d["dport"], d["payload"]) == (3, 3, b"orig")
    d6 = decode_one(229, ipv6("fe80::1", "ff02::1", 58, icmp(135, 0, payload=b"target")))
    assert (d6["proto"], d6["sport"], d6["dport"], d6["payload"]) == (58, 135, 0, b"target")


def test_arp() -> None:
    frame = eth(
        "ff:ff:ff:ff:ff:ff",
        "02:aa:aa:aa:aa:aa",
        0x0806,
        arp(1, M1, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.9"),
    )
    d = decode_one(1, frame)
    assert d["err"] == 0 and d["arp_op"] == 1 and d["ip_ver"] == 0 and d["ethertype"] == 0x0806
    assert format_mac(d["eth_src"]) == M1 and d["eth_dst"] == 0  # ARP sender / target hardware
    assert d["src_lo"] == v4("10.0.0.1") and d["dst_lo"] == v4("10.0.0.9")
    assert format_mac(d["arp_frame_src"]) == "02:aa:aa:aa:aa:aa"
    assert format_mac(d["arp_frame_dst"]) == "ff:ff:ff:ff:ff:ff"
    assert decode_one(1, frame[: 14 + 20])["err"] == B.ERR_BAD_ARP


def test_raw_ip_link_types() -> None:
    p4 = ipv4("192.0.2.1", "192.0.2.2", 17, U)
    p6 = ipv6("2001:db8::a", "2001:db8::b", 6, T)
    for lt, pkt, ver in ((101, p4, 4), (101, p6, 6), (228, p4, 4), (229, p6, 6)):
        d = decode_one(lt, pkt)
        assert d["ip_ver"] == ver and d["err"] == 0 and d["sport"] in (40000, 50000)
    assert decode_one(228, p6)["err"] == B.ERR_BAD_IP_HEADER
    assert decode_one(101, b"\x50" + p4[1:])["err"] == B.ERR_BAD_IP_HEADER


@pytest.mark.parametrize(
    "af,fmt,ver", [(2, "<I", 4), (2, ">I", 4), (24, "<I", 6), (28, ">I", 6), (30, "<I", 6)]
)
@pytest.mark.parametrize("lt", [0, 108])
def test_null_and_loop(lt: int, af: int, fmt: str, ver: int) -> None:
    inner = ipv4("127.0.0.1", "127.0.0.1", 17, U) if ver == 4 else ipv6("::1", "::1", 17, U)
    d = decode_one(lt, struct.pack(fmt, af) + inner)
    assert d["ip_ver"] == ver and d["dport"] == 104 and d["err"] == 0


def test_linux_sll_and_sll2() -> None:
    ip = ipv4("10.9.9.9", "10.8.8.8", 6, T)
    sll = struct.pack(">HHH", 0, 1, 6) + mac(M1) + b"\0\0" + struct.pack(">H", 0x0800) + ip
    d = decode_one(113, sll)
    assert format_mac(d["eth_src"]) == M1 and d["ip_ver"] == 4 and d["dport"] == 2575
    sll2 = struct.pack(">HHIHBB", 0x0800, 0, 3, 1, 4, 6) + mac(M2) + b"\0\0" + ip
    d2 = decode_one(276, sll2)
    assert format_mac(d2["eth_src"]) == M2 and d2["ip_ver"] == 4 and d2["payload"] == b"MSH|^~\\&|"
    vl = (
        struct.pack(">HHH", 0, 1, 6)
        + mac(M1)
        + b"\0\0"
        + struct.pack(">HHH", 0x8100, 42, 0x0800)
        + ip
    )
    assert decode_one(113, vl)["vlan"] == 42


def test_ble_is_left_raw_and_unknown_linktypes_flagged() -> None:
    for lt in (251, 256, 272):
        d = decode_one(lt, b"\xd6\xbe\x89\x8e" + bytes(30))
        assert (d["ethertype"], d["ip_ver"], d["err"]) == (0, 0, 0)
    assert (
        decode_one(9, b"\xff\x03\x00\x21" + ipv4("1.1.1.1", "2.2.2.2", 17, U))["err"]
        == B.ERR_UNKNOWN_LINKTYPE
    )


def test_truncation_at_every_length_sets_err_never_reads_past() -> None:
    """Each prefix of a full packet decodes with the error of the layer that was cut."""
    full = eth(M2, M1, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, T), tags=((0x8100, 5),))
    rb = raw_batch([(1, full[:k]) for k in range(len(full) + 1)])
    pb = decode(rb)
    errs = pb.err.tolist()
    for k, e in enumerate(errs):
        if k < 18:
            assert e == B.ERR_TRUNCATED_L2, k
        elif k < 18 + 20:
            assert e == B.ERR_TRUNCATED_IP, k
        elif k < 18 + 20 + 24:
            assert e == B.ERR_TRUNCATED_L4 and pb.sport[k] == 0 and pb.ip_ver[k] == 4, k
        else:
            assert e == 0 and pb.pl_len[k] == k - 62, k
    assert (
        pb.pl_off[pb.pl_len > 0] + pb.pl_len[pb.pl_len > 0]
        <= rb.off[pb.pl_len > 0] + rb.caplen[pb.pl_len > 0]
    ).all()


def test_malformed_headers() -> None:
    assert (
        decode_one(101, ipv4("1.1.1.1", "2.2.2.2", 6, T, total_len=10))["err"]
        == B.ERR_BAD_IP_HEADER
    )
    bad_off = tcp(1, 2, b"data", doff=3)
    d = decode_one(101, ipv4("1.1.1.1", "2.2.2.2", 6, bad_off))
    assert d["err"] == B.ERR_BAD_TCP_HEADER and d["sport"] == 0 and d["ip_ver"] == 4
    beyond = tcp(1, 2, b"", doff=15)  # 60-byte header in a 20-byte segment
    assert decode_one(101, ipv4("1.1.1.1", "2.2.2.2", 6, beyond))["err"] == B.ERR_BAD_TCP_HEADER
    hbh_long = bytes([17, 200]) + b"\0" * 6  # claims 1608 bytes
    assert decode_one(229, ipv6("::1", "::2", 0, hbh_long + U))["err"] == B.ERR_BAD_IP_HEADER
    assert decode_one(1, eth(M2, M1, 0x0800, b"\x45" + bytes(10)))["err"] == B.ERR_TRUNCATED_IP


def test_udp_length_clips_payload() -> None:
    d = decode_one(101, ipv4("1.1.1.1", "2.2.2.2", 17, udp(1, 2, b"abcdef", ulen=8 + 3)))
    assert d["payload"] == b"abc"


def test_address_text_helpers() -> None:
    ver = np.array([4, 4, 6, 4, 0], np.uint8)
    hi = np.array([0, 0, v6("2001:db8::5")[0], 0, 0], np.uint64)
    lo = np.array(
        [v4("10.0.0.1"), v4("10.0.0.2"), v6("2001:db8::5")[1], v4("10.0.0.1"), 0], np.uint64
    )
    assert format_ips(ver, hi, lo).tolist() == [
        "10.0.0.1",
        "10.0.0.2",
        "2001:db8::5",
        "10.0.0.1",
        "",
    ]
    text, inv = unique_ips(ver, hi, lo)
    assert len(text) == 4 and [text[i] for i in inv] == format_ips(ver, hi, lo).tolist()
    assert format_ip(4, 0, v4("192.168.1.254")) == "192.168.1.254"
    macs = np.array([0x0200_0000_0001, 0xFFFF_FFFF_FFFF, 0x0200_0000_0001], np.uint64)
    assert format_macs(macs).tolist() == [M1, "ff:ff:ff:ff:ff:ff", M1]
    assert format_ips(ver[:0], hi[:0], lo[:0]).tolist() == []


def test_empty_batch() -> None:
    pb = decode(raw_batch([]))
    assert len(pb) == 0 and pb.err.shape == (0,)
