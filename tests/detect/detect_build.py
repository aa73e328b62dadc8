"""Event and frame builders for the detection tests."""

from __future__ import annotations

import socket
import struct

from medsentry.events import ArpObserved, FlowRecord

T0 = 1_795_000_000_000_000_000
S = 1_000_000_000


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def arp_frame(op: int, sha: str, spa: str, tha: str, tpa: str, dst: str | None = None) -> bytes:
    """An Ethernet II frame (EtherType 0x0806) carrying an ARP packet (RFC 826)."""
    eth_dst = dst or ("ff:ff:ff:ff:ff:ff" if op == 1 else tha)
    arp = (
        struct.pack(">HHBBH", 1, 0x0800, 6, 4, op)
        + mac_bytes(sha)
        + socket.inet_aton(spa)
        + mac_bytes(tha)
        + socket.inet_aton(tpa)
    )
    frame = mac_bytes(eth_dst) + mac_bytes(sha) + b"\x08\x06" + arp
    return frame + b"\x00" * (60 - len(frame))  # minimum Ethernet frame (without FCS)


def flow(i: int, **over) -> FlowRecord:
    fields = dict(
        ts_ns=T0 + i * S,
        flow_id=f"f{i:06d}",
        last_ns=T0 + i * S + S // 4,
        transport="tcp",
        ip_version=4,
        client="10.0.0.5",
        server="10.0.1.9",
        client_port=40000 + i % 20000,
        server_port=104,
        packets_c2s=10,
        packets_s2c=8,
        bytes_c2s=1000,
        bytes_s2c=600,
        payload_c2s=500,
        payload_s2c=200,
        tcp_flags_c2s=0x1B,
        tcp_flags_s2c=0x1B,
        app_protocol="dicom",
        app_method="signature",
    )
    fields.update(over)
    return FlowRecord(**fields)


def arp_event(i: int, ip: str, mac: str, gratuitous: bool = False) -> ArpObserved:
    return ArpObserved(
        ts_ns=T0 + i * S,
        op=2,
        sender_mac=mac,
        sender_ip=ip,
        target_mac="ff:ff:ff:ff:ff:ff" if gratuitous else "02:00:00:00:00:99",
        target_ip=ip if gratuitous else "10.0.0.99",
        gratuitous=gratuitous,
    )
