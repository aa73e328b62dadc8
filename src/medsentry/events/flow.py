"""Flow-level events produced by the flow table and protocol identification."""

from __future__ import annotations

import msgspec

from medsentry.events.base import Event


class StreamStats(msgspec.Struct, frozen=True, kw_only=True):
    """TCP reassembly outcome for one direction of a flow."""

    bytes_in_order: int = 0
    retransmitted_segments: int = 0
    out_of_order_segments: int = 0
    gaps: int = 0
    gap_bytes: int = 0


class FlowRecord(Event, tag="flow", frozen=True, kw_only=True):
    """One bidirectional flow, oriented initiator (client) -> responder (server).

    `ts_ns` is the time of the first packet. Byte counts are IP-layer bytes (IP total length;
    the frame length for non-IP). `end_reason` is one of idle, active, fin, rst, eof.
    """

    flow_id: str
    last_ns: int
    transport: str  # tcp, udp, icmp, icmp6, arp or the IP protocol number as text
    ip_version: int
    client: str
    server: str
    client_port: int = 0
    server_port: int = 0
    client_mac: str | None = None
    server_mac: str | None = None
    vlan: int | None = None
    packets_c2s: int = 0
    packets_s2c: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0
    payload_c2s: int = 0
    payload_s2c: int = 0
    tcp_flags_c2s: int = 0
    tcp_flags_s2c: int = 0
    iat_mean_us: float = 0.0
    iat_std_us: float = 0.0
    iat_min_us: float = 0.0
    iat_max_us: float = 0.0
    end_reason: str = "eof"
    app_protocol: str | None = None
    app_method: str | None = None  # "signature" or "port"
    app_confidence: float = 0.0
    stream_c2s: StreamStats | None = None
    stream_s2c: StreamStats | None = None
    capture_id: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.last_ns - self.ts_ns) / 1e9


class ProtocolDetected(Event, tag="protocol", frozen=True, kw_only=True):
    """The application protocol of a flow, and how it was recognized."""

    flow_id: str
    protocol: str
    method: str  # "signature" or "port"
    confidence: float
    detail: str | None = None


class ArpObserved(Event, tag="arp", frozen=True, kw_only=True):
    """An IP-to-MAC binding announced by ARP (RFC 826); repeats in a batch are counted."""

    op: int  # 1 request, 2 reply
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str
    gratuitous: bool = False
    count: int = 1
    vlan: int | None = None


class NdpObserved(Event, tag="ndp", frozen=True, kw_only=True):
    """An IPv6 Neighbor Discovery message (RFC 4861 §4): Router Solicitation (133), Router
    Advertisement (134), Neighbor Solicitation (135) or Advertisement (136); repeats in a
    batch are counted. Only messages with Hop Limit 255 (§6.1, §7.1: never routed)."""

    icmp_type: int  # 133 RS, 134 RA, 135 NS, 136 NA
    source_mac: str | None  # the frame's link-layer source
    source: str  # the IPv6 source; "::" for Duplicate Address Detection (RFC 4862 §5.4.2)
    target: str | None = None  # NS/NA Target Address (§4.3, §4.4)
    # Source (RS, RA, NS) or Target (NA) Link-Layer Address option (§4.6.1)
    link_layer_address: str | None = None
    router: bool = False  # NA R flag (§4.4)
    solicited: bool = False  # NA S flag
    override: bool = False  # NA O flag: clear in proxy and anycast advertisements (§7.2.8)
    router_lifetime: int | None = None  # RA, seconds (§4.2)
    on_link_prefixes: list[str] = msgspec.field(default_factory=list)  # RA, L flag (§4.6.2)
    count: int = 1
    vlan: int | None = None


class DecodeWarning(Event, tag="warning", frozen=True, kw_only=True):
    """Damage found while reading a capture: where it is and what was kept."""

    source: str
    offset: int | None
    message: str
