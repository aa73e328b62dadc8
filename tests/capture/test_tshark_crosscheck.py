"""Decoded fields agree with tshark's dissection of the same real captures (nDPI test set)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medsentry.capture.batch import (
    DECODE_OK,
    ERR_BAD_TCP_HEADER,
    ERR_TRUNCATED_L4,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
)
from medsentry.capture.decode import decode, format_ip, format_mac
from medsentry.capture.reader import open_capture

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

FILES = [
    "1kxun.pcap",  # Ethernet, IPv4/IPv6, UDP/TCP
    "bot.pcap",  # 802.1Q
    "dns_fragmented.pcap",  # IPv4 and IPv6 fragments
    "KakaoTalk_chat.pcap",  # Linux SLL
    "bjnp.pcap",  # raw IP (101)
    "nats.pcap",  # NULL/loopback
    "kerberos_fuzz.pcapng",  # LINKTYPE_IPV4 (228), malformed TCP
    "alexa-app.pcapng",  # ARP, ICMPv6
    "gnutella.pcap",
    "4in6tunnel.pcap",
    "anydesk.pcapng",  # several interfaces
    "hsrp2_ipv6.pcapng",  # VLAN + IPv6
    "fuzz-2006-06-26-2594.pcap",  # damaged headers
    "ip_fragmented_garbage.pcap",
    "icmp-tunnel.pcap",
]
LIMIT = 300
TSHARK_FIELDS = [
    "frame.time_epoch",
    "frame.cap_len",
    "frame.len",
    "eth.src",
    "eth.dst",
    "sll.src.eth",
    "vlan.id",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.proto",
    "ip.ttl",
    "ip.len",
    "ip.hdr_len",
    "ip.frag_offset",
    "ip.flags.mf",
    "ipv6.fraghdr.more",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.window_size_value",
    "tcp.len",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
]


def _tshark(path: Path) -> list[dict[str, str]]:
    cmd = ["tshark", "-r", str(path), "-c", str(LIMIT), "-n", "-o", "ip.defragment:FALSE"]
    cmd += ["-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "occurrence=f"]
    cmd += ["-E", "separator=|"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return [dict(zip(TSHARK_FIELDS, line.split("|"), strict=True)) for line in out.splitlines()]


def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


@pytest.mark.parametrize("name", FILES)
def test_fields_match_tshark(ndpi_pcaps: Path, name: str) -> None:
    path = ndpi_pcaps / name
    if not path.exists():
        pytest.skip(f"{name} not in this nDPI checkout")
    rows = _tshark(path)
    assert rows, f"tshark read nothing from {name}"
    with open_capture(path) as reader:
        batches = [decode(b) for b in reader]
    checked = {"ip": 0, "tcp": 0, "udp": 0}
    i = 0
    for pb in batches:
        raw = pb.raw
        for j in range(len(pb)):
            if i >= len(rows):
                break
            t = rows[i]
            i += 1
            where = f"{name} frame {raw.first_frame + j}"
            assert int(raw.ts_ns[j]) == _ns(t["frame.time_epoch"]), where
            assert int(raw.caplen[j]) == int(t["frame.cap_len"]), where
            assert int(raw.wirelen[j]) == int(t["frame.len"]), where
            lt = int(raw.linktype[j])
            if pb.ethertype[j] == 0x0806 and t["arp.src.proto_ipv4"]:
                assert int(pb.arp_op[j]) == int(t["arp.opcode"]), where
                assert format_ip(4, 0, int(pb.src_lo[j])) == t["arp.src.proto_ipv4"], where
                assert format_ip(4, 0, int(pb.dst_lo[j])) == t["arp.dst.proto_ipv4"], where
                continue
            if lt == LINKTYPE_ETHERNET and t["eth.src"]:
                assert format_mac(int(pb.eth_src[j])) == t["eth.src"], where
                assert format_mac(int(pb.eth_dst[j])) == t["eth.dst"], where
            if lt == LINKTYPE_LINUX_SLL and t["sll.src.eth"]:
                assert format_mac(int(pb.eth_src[j])) == t["sll.src.eth"], where
            if t["vlan.id"]:
                assert int(pb.vlan[j]) == int(t["vlan.id"]), where
            ok_ip = pb.err[j] in (DECODE_OK, ERR_TRUNCATED_L4, ERR_BAD_TCP_HEADER)
            if pb.ip_ver[j] == 4 and ok_ip:
                assert format_ip(4, 0, int(pb.src_lo[j])) == t["ip.src"], where
                assert format_ip(4, 0, int(pb.dst_lo[j])) == t["ip.dst"], where
                assert int(pb.proto[j]) == int(t["ip.proto"]), where
                assert int(pb.ttl[j]) == int(t["ip.ttl"]), where
                assert int(pb.frag[j]) == (int(t["ip.frag_offset"] or 0) != 0), where
                checked["ip"] += 1
            if pb.ip_ver[j] == 6 and ok_ip:
                assert format_ip(6, int(pb.src_hi[j]), int(pb.src_lo[j])) == t["ipv6.src"], where
                assert format_ip(6, int(pb.dst_hi[j]), int(pb.dst_lo[j])) == t["ipv6.dst"], where
                checked["ip"] += 1
            if pb.err[j] != DECODE_OK or pb.frag[j]:
                continue
            whole = raw.caplen[j] == raw.wirelen[j] and t["ip.flags.mf"] in ("", "0", "False")
            whole = whole and t["ipv6.fraghdr.more"] in ("", "0", "False")
            if pb.proto[j] == 6 and t["tcp.srcport"]:
                assert int(pb.sport[j]) == int(t["tcp.srcport"]), where
                assert int(pb.dport[j]) == int(t["tcp.dstport"]), where
                assert int(pb.tcp_flags[j]) == int(t["tcp.flags"], 16) & 0xFF, where
                assert int(pb.tcp_seq[j]) == int(t["tcp.seq_raw"]), where
                assert int(pb.tcp_ack[j]) == int(t["tcp.ack_raw"] or 0), where
                assert int(pb.tcp_win[j]) == int(t["tcp.window_size_value"]), where
                if whole:
                    assert int(pb.pl_len[j]) == int(t["tcp.len"]), where
                checked["tcp"] += 1
            if pb.proto[j] == 17 and t["udp.srcport"]:
                assert int(pb.sport[j]) == int(t["udp.srcport"]), where
                assert int(pb.dport[j]) == int(t["udp.dstport"]), where
                if whole:
                    ulen = int(t["udp.length"])
                    if t["ip.len"]:  # a UDP length beyond the IP datagram is clipped to it
                        ulen = min(ulen, int(t["ip.len"]) - int(t["ip.hdr_len"]))
                    assert int(pb.pl_len[j]) == ulen - 8, where
                checked["udp"] += 1
            if pb.proto[j] == 1 and pb.ip_ver[j] == 4 and t["icmp.type"]:
                assert int(pb.sport[j]) == int(t["icmp.type"]), where
                assert int(pb.dport[j]) == int(t["icmp.code"]), where
            if pb.proto[j] == 58 and t["icmpv6.type"]:
                assert int(pb.sport[j]) == int(t["icmpv6.type"]), where
                assert int(pb.dport[j]) == int(t["icmpv6.code"]), where
    assert i == len(rows), f"{name}: read {i} packets, tshark {len(rows)}"
    assert sum(checked.values()) > 0 or name.startswith("fuzz")
    assert np.all([len(b) for b in batches])
