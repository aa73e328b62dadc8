"""Hosts and TCP conversations for small synthetic captures (demo, test fixtures).

`Host` puts a transport segment into the frame a capture point would see (VLAN, next-hop MAC,
TTL, IPv4 identification); `TcpSession` builds a whole TCP connection segment by segment;
`FrameLog` collects the frames of many conversations and writes them in time order.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from medsentry.capture.batch import IPPROTO_TCP, IPPROTO_UDP
from medsentry.capture.frames import ACK, FIN, PSH, RST, SYN, ethernet, ip_packet, tcp, udp


@dataclass(slots=True)
class Host:
    """One network interface: its addresses, VLAN, default router and IP behaviour.

    Frames are written as one capture point sees them. Between hosts on the same VLAN (or
    without a router) that is the frame as sent. A routed conversation crosses two VLANs; it
    is seen on one of them: the sender's, unless the sender is not `spanned` and the receiver
    is, in which case the frame is seen after the router (source MAC the router's, TTL - 1).
    """

    ip: str
    mac: str
    vlan: int | None = None
    gateway_mac: str | None = None  # the router's MAC on this host's VLAN
    ttl: int = 64
    name: str = ""
    spanned: bool = True
    ident: int = 1  # next IPv4 identification (RFC 791 §3.2; RFC 6864 for atomic datagrams)

    def same_link(self, other: Host) -> bool:
        return self.vlan == other.vlan or self.gateway_mac is None

    def frame(self, dst: Host, proto: int, l4: bytes) -> bytes:
        """The frame `self` sends to `dst` at the capture point (see the class)."""
        ttl, vlan, src_mac = self.ttl, self.vlan, self.mac
        if self.same_link(dst):
            next_hop = dst.mac
        elif not self.spanned and dst.spanned and dst.gateway_mac is not None:
            next_hop, src_mac, vlan, ttl = dst.mac, dst.gateway_mac, dst.vlan, self.ttl - 1
        else:
            assert self.gateway_mac is not None
            next_hop = self.gateway_mac
        etype, packet = ip_packet(self.ip, dst.ip, proto, l4, ttl=ttl, ident=self.ident)
        self.ident = (self.ident + 1) & 0xFFFF
        return ethernet(next_hop, src_mac, etype, packet, vlan=vlan)

    def udp_frame(self, dst: Host, sport: int, dport: int, payload: bytes) -> bytes:
        return self.frame(dst, IPPROTO_UDP, udp(self.ip, dst.ip, sport, dport, payload))


@dataclass(slots=True)
class FrameLog:
    """Frames of many conversations, each stamped; written out in time order."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, ts_ns: int, frame: bytes) -> None:
        self.frames.append((int(ts_ns), frame))

    def write(self, file: str | os.PathLike[str] | BinaryIO, *, nanosecond: bool = False) -> int:
        from medsentry.capture.writer import write_pcap

        return write_pcap(file, self.frames, nanosecond=nanosecond)

    def __len__(self) -> int:
        return len(self.frames)


CLIENT = 0
SERVER = 1


class TcpSession:
    """One TCP connection between two hosts, built segment by segment (RFC 9293).

    Times are as seen at one capture point between the hosts: a packet's answer appears
    `rtt_ns` later. Data is segmented at the MSS and paced by the ACKs like slow start from an
    initial window of 10 segments (RFC 5681 §3.1, RFC 6928) up to the receive window; the
    receiver acknowledges every second full segment and the last one (RFC 9293 §3.8.6.3,
    RFC 5681 §4.2).
    """

    INITIAL_WINDOW = 10

    def __init__(
        self,
        log: FrameLog,
        client: Host,
        server: Host,
        sport: int,
        dport: int,
        *,
        isn_client: int,
        isn_server: int,
        mss: int = 1460,
        rtt_ns: int = 400_000,
        rate_bps: float = 1e9,
        window: int = 64240,
    ) -> None:
        self.log = log
        self.hosts = (client, server)
        self.ports = (sport, dport)
        self.mss = mss
        self.rtt_ns = rtt_ns
        self.rate_bps = rate_bps
        self.window = window
        self.snd_nxt = [isn_client & 0xFFFFFFFF, isn_server & 0xFFFFFFFF]
        self.established = False
        self.closed = False
        self.sent = [bytearray(), bytearray()]  # application bytes per direction, for checks

    def _segment(
        self, direction: int, ts_ns: int, flags: int, payload: bytes = b"", options: bytes = b""
    ) -> None:
        src, dst = self.hosts[direction], self.hosts[1 - direction]
        sport, dport = self.ports[direction], self.ports[1 - direction]
        ack = self.snd_nxt[1 - direction] if flags & ACK else 0
        seg = tcp(
            src.ip,
            dst.ip,
            sport,
            dport,
            self.snd_nxt[direction],
            ack,
            flags,
            payload,
            window=self.window,
            options=options,
        )
        self.log.add(ts_ns, src.frame(dst, IPPROTO_TCP, seg))
        advance = len(payload) + (1 if flags & (SYN | FIN) else 0)  # RFC 9293 §3.4
        self.snd_nxt[direction] = (self.snd_nxt[direction] + advance) & 0xFFFFFFFF

    def _wire_ns(self, nbytes: int) -> int:
        return int((nbytes + 58) * 8 * 1e9 / self.rate_bps)  # + Ethernet/IP/TCP headers

    def open(self, ts_ns: int) -> int:
        """Three-way handshake (RFC 9293 §3.5); returns the time of the final ACK."""
        mss_opt = struct.pack("!BBH", 2, 4, self.mss)  # RFC 9293 §3.2: Maximum Segment Size
        sack_ok = b"\x01\x01\x04\x02"  # NOP, NOP, SACK-permitted (RFC 2018 §2)
        self._segment(CLIENT, ts_ns, SYN, options=mss_opt + sack_ok)
        self._segment(SERVER, ts_ns + self.rtt_ns // 2, SYN | ACK, options=mss_opt + sack_ok)
        t = ts_ns + self.rtt_ns
        self._segment(CLIENT, t, ACK)
        self.established = True
        return t

    def _acked_before(self, j: int) -> int:
        """Segments that must be acknowledged before segment j may leave: slow start from
        the initial window (cwnd + 1 per ACKed segment, RFC 5681 §3.1; receiver ACKs every
        second segment), never more in flight than the receive window holds."""
        in_window = max(1, self.window // self.mss - 1)
        start = self.INITIAL_WINDOW
        return max(0, (j - start + 2) // 2, j - in_window + 1)

    def send(self, direction: int, data: bytes, ts_ns: int) -> int:
        """`data` from one side, segmented and acknowledged; returns the time of the last ACK."""
        if not self.established or self.closed:
            raise RuntimeError("send on a TCP session that is not established")
        self.sent[direction] += data
        nseg = -(-len(data) // self.mss)
        sent_at: list[int] = []
        t = ts_ns
        for j in range(nseg):
            need = self._acked_before(j)
            if need:  # wait for the ACK that covers segment need - 1
                t = max(t, sent_at[min((need - 1) | 1, nseg - 1)] + self.rtt_ns)
            sent_at.append(t)
            chunk = data[j * self.mss : (j + 1) * self.mss]
            last = j == nseg - 1
            self._segment(direction, t, ACK | (PSH if last else 0), chunk)
            t += self._wire_ns(len(chunk))
            if j % 2 == 1 or last:  # every second segment, and the last
                self._segment(1 - direction, sent_at[j] + self.rtt_ns, ACK)
        return sent_at[-1] + self.rtt_ns if sent_at else ts_ns

    def exchange(self, direction: int, data: bytes, ts_ns: int, think_ns: int = 0) -> int:
        """Send `data` after `think_ns`; returns when the peer may answer."""
        return self.send(direction, data, ts_ns + think_ns)

    def close(self, ts_ns: int, by: int = CLIENT) -> int:
        """Orderly release: FIN from `by`, FIN from the peer, final ACK (RFC 9293 §3.6)."""
        self._segment(by, ts_ns, FIN | ACK)
        t = ts_ns + self.rtt_ns // 2
        self._segment(1 - by, t, FIN | ACK)
        t += self.rtt_ns // 2
        self._segment(by, t, ACK)
        self.closed = True
        return t

    def reset(self, ts_ns: int, by: int = CLIENT) -> int:
        """Abort with RST (RFC 9293 §3.10.7.1)."""
        self._segment(by, ts_ns, RST | ACK)
        self.closed = True
        return ts_ns
