"""Who holds an address: dual-stack hosts and IPv6 Neighbor Discovery, routers, DHCP relay
agents, forged group source MACs, DHCPv6 roles. Captures from the Linux IPv6 stack on a
namespace LAN (invnet.py) and frames built to the RFCs' layouts, scanned through the pipeline
into SQLite."""

from __future__ import annotations

import ipaddress
import sqlite3
import struct
import sys
import time
from pathlib import Path

import pytest
from invnet import lan, scan, wait_port

from medsentry.capture.batch import ETHERTYPE_ARP, ETHERTYPE_IPV6, IPPROTO_ICMPV6
from medsentry.capture.frames import ACK, SYN, ethernet, internet_checksum, ip_packet, tcp, udp
from medsentry.capture.writer import write_pcap
from medsentry.demo.netproto import DHCPACK, DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, dhcp_message
from medsentry.events.flow import NdpObserved
from medsentry.inventory.observe import Observer

T0 = 1_767_261_600_000_000_000
MS = 1_000_000
PHILIPS = "00:09:5c:33:00:50"  # IEEE MA-L 00:09:5C Philips Medical Systems
DELL = "00:14:22:33:00:10"  # 00:14:22 Dell
CISCO = "00:00:0c:22:22:22"  # 00:00:0C Cisco
BBRAUN = "00:12:21:bb:00:02"  # 00:12:21 B. Braun
MON_LL = "fe80::209:5cff:fe33:50"  # PHILIPS's Modified EUI-64 (RFC 4291 Appendix A)
PACS_LL = "fe80::214:22ff:fe33:10"
# temporary addresses (RFC 8981): random interface identifiers in the host's /64
TEMPORARY = ("2001:db8:3:0:1a2b:3c4d:5e6f:7081", "2001:db8:3:0:9a2b:3c4d:5e6f:7082")


class Frames:
    """Frames in time order, 10 ms apart."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []

    def add(self, frame: bytes) -> None:
        self.frames.append((T0 + len(self.frames) * 10 * MS, frame))

    def ip(self, smac: str, dmac: str, src: str, dst: str, proto: int, l4: bytes, ttl=64):
        etype, pkt = ip_packet(src, dst, proto, l4, ttl=ttl)
        self.add(ethernet(dmac, smac, etype, pkt))

    def connect(self, cmac: str, smac: str, client: str, server: str, port: int = 104) -> None:
        """A TCP handshake: SYN, SYN-ACK, ACK (RFC 9293 §3.5)."""
        sport = 40000 + len(self.frames)
        self.ip(cmac, smac, client, server, 6, tcp(client, server, sport, port, 1, 0, SYN))
        self.ip(smac, cmac, server, client, 6, tcp(server, client, port, sport, 9, 2, SYN | ACK))
        self.ip(cmac, smac, client, server, 6, tcp(client, server, sport, port, 2, 10, ACK))

    def arp_reply(self, mac: str, ip: str) -> None:
        """A gratuitous ARP reply (RFC 826, RFC 5227 §3)."""
        spa = ipaddress.IPv4Address(ip).packed
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + _mac(mac) + spa + _mac(mac) + spa
        self.add(ethernet("ff:ff:ff:ff:ff:ff", mac, ETHERTYPE_ARP, body))

    def icmpv6(self, smac: str, dmac: str, src: str, dst: str, typ: int, body: bytes, hop=255):
        """An ICMPv6 message with its checksum over the pseudo-header (RFC 4443 §2.3)."""
        s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
        msg = bytes([typ, 0, 0, 0]) + body
        pseudo = s + d + struct.pack("!I3xB", len(msg), IPPROTO_ICMPV6)
        msg = msg[:2] + struct.pack("!H", internet_checksum(pseudo + msg)) + msg[4:]
        etype, pkt = ETHERTYPE_IPV6, _ipv6(s, d, msg, hop)
        self.add(ethernet(dmac, smac, etype, pkt))

    def neighbor_solicitation(self, mac: str, src: str, target: str, hop: int = 255) -> None:
        """RFC 4861 §4.3; from :: it is a DAD probe without options (RFC 4862 §5.4.2)."""
        opt = b"" if src == "::" else _lla_option(1, mac)
        body = bytes(4) + ipaddress.IPv6Address(target).packed + opt
        dst = _solicited_node(target)
        self.icmpv6(mac, _multicast_mac(dst), src, dst, 135, body, hop)

    def neighbor_advertisement(self, mac: str, src: str, target: str, override=True) -> None:
        """RFC 4861 §4.4: unsolicited, to all nodes, with the Target Link-Layer Address."""
        flags = 0x20 if override else 0
        body = bytes([flags, 0, 0, 0]) + ipaddress.IPv6Address(target).packed
        self.icmpv6(mac, "33:33:00:00:00:01", src, "ff02::1", 136, body + _lla_option(2, mac))

    def router_advertisement(self, mac: str, src: str, prefix: str) -> None:
        """RFC 4861 §4.2 with a Prefix Information option, L and A set (§4.6.2)."""
        body = struct.pack("!BBHII", 64, 0, 1800, 0, 0) + _lla_option(1, mac)
        net = ipaddress.IPv6Network(prefix)
        body += struct.pack("!BBBBIII", 3, 4, net.prefixlen, 0xC0, 86400, 14400, 0)
        body += net.network_address.packed
        self.icmpv6(mac, "33:33:00:00:00:01", src, "ff02::1", 134, body)

    def write(self, path: Path) -> Path:
        write_pcap(path, self.frames)
        return path


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _ipv6(src: bytes, dst: bytes, payload: bytes, hop: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), IPPROTO_ICMPV6, hop) + src + dst + payload


def _lla_option(kind: int, mac: str) -> bytes:
    return bytes([kind, 1]) + _mac(mac)  # RFC 4861 §4.6.1, length in units of 8 octets


def _solicited_node(ip: str) -> str:
    low = int(ipaddress.IPv6Address(ip)) & 0xFFFFFF  # RFC 4291 §2.7.1
    return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low))


def _multicast_mac(ip: str) -> str:
    return "33:33:" + ipaddress.IPv6Address(ip).packed[-4:].hex(":")  # RFC 2464 §7


def _sources(url: str, device_id: str) -> dict[str, str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        rows = db.execute(
            "SELECT ip, source FROM device_addresses WHERE device_id = ?", (device_id,)
        ).fetchall()
    return dict(rows)


# ---- dual-stack hosts -------------------------------------------------------------------------


def _wait_dad(n, host: str, timeout: float = 15.0) -> None:
    """Until no address of `host` is tentative (RFC 4862 §5.4: DAD done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not n.run(host, "ip", "-6", "addr", "show", "dev", "eth0", "tentative").stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"{host}: addresses still tentative")


def test_linux_dual_stack_host_is_one_host_not_a_router(tmp_path: Path, inventory_of) -> None:
    # The Linux stack: each address's DAD probe, NS/NA with link-layer options, EUI-64
    # link-local addresses; the monitor talks over IPv4 and from each IPv6 address
    mon_v6 = ("2001:db8:3::50", *TEMPORARY)
    hosts = {
        "mon": (PHILIPS, ("10.3.0.50/24", *(f"{a}/64" for a in mon_v6))),
        "pacs": (DELL, ("10.3.0.10/24", "2001:db8:3::10/64")),
    }
    with lan(tmp_path, hosts, ipv6=True) as n:
        _wait_dad(n, "mon")
        _wait_dad(n, "pacs")
        n.start("pacs", sys.executable, "-m", "http.server", "--bind", "::", "8080")
        wait_port(n, "pacs", 8080)
        get = ("curl", "-sS", "-o", "/dev/null", "--max-time", "10")
        n.run("mon", *get, "http://10.3.0.10:8080/")
        for a in mon_v6:
            n.run("mon", *get, "--interface", a, "-g", "http://[2001:db8:3::10]:8080/")
        n.run("mon", *get, "-g", f"http://[{PACS_LL}%25eth0]:8080/")
    devs = inventory_of(n.pcap)
    # one device per host, no ip: device (the bridge's own IGMP report makes one without IP)
    assert sorted(d for d, dev in devs.items() if dev.ips) == [f"mac:{PHILIPS}", f"mac:{DELL}"]
    mon, pacs = devs[f"mac:{PHILIPS}"], devs[f"mac:{DELL}"]
    assert "ip-router" not in mon.roles and "ip-router" not in pacs.roles
    assert set(mon.ips) == {"10.3.0.50", MON_LL, *mon_v6}
    assert set(pacs.ips) == {"10.3.0.10", PACS_LL, "2001:db8:3::10"}
    src = _sources(inventory_of.url, mon.device_id)
    assert src["10.3.0.50"] == "arp"
    assert {src[a] for a in (MON_LL, *mon_v6)} == {"ndp"}  # DAD, NS source link-layer option
    assert pacs.category.value != "it.network" and mon.category.value == "patient-monitor"


@pytest.mark.parametrize("v4", ["10.3.0", "128.59.3"])  # a hospital on public IPv4 space too
def test_dual_stack_hosts_without_neighbor_discovery(tmp_path: Path, inventory_of, v4) -> None:
    # A capture that missed every ND message (taken after the addresses were configured):
    # link-local and EUI-64 addresses are the MAC's own, temporary addresses share their /64
    f = Frames()
    f.arp_reply(PHILIPS, f"{v4}.50")
    eui64_gua = "2001:db8:3:0:209:5cff:fe33:50"
    f.connect(PHILIPS, DELL, f"{v4}.50", f"{v4}.10")
    f.connect(PHILIPS, DELL, MON_LL, PACS_LL)
    for a in (eui64_gua, *TEMPORARY):
        f.connect(PHILIPS, DELL, a, "2001:db8:3::10", port=443)
    devs = inventory_of(f.write(tmp_path / "ds.pcap"))
    assert sorted(devs) == [f"mac:{PHILIPS}", f"mac:{DELL}"]
    mon, pacs = devs[f"mac:{PHILIPS}"], devs[f"mac:{DELL}"]
    assert not {"ip-router"} & {*mon.roles, *pacs.roles}
    assert set(mon.ips) == {f"{v4}.50", MON_LL, eui64_gua, *TEMPORARY}
    assert set(pacs.ips) == {f"{v4}.10", PACS_LL, "2001:db8:3::10"}


# ---- routers are still routers --------------------------------------------------------------


def test_routers_by_advertisement_and_by_remote_prefixes(tmp_path: Path, inventory_of) -> None:
    f = Frames()
    # a router that only advertises itself (RFC 4861 §6.2.3) and answers on its own global
    # address in the prefix it advertises on-link
    f.router_advertisement(CISCO, "fe80::200:cff:fe22:2222", "2001:db8:7::/64")
    f.connect(PHILIPS, CISCO, MON_LL, "fe80::200:cff:fe22:2222", port=22)
    f.connect(PHILIPS, CISCO, "2001:db8:7::50", "2001:db8:7::1", port=22)
    # a second router, silent, forwarding the monitor's traffic to three remote /64s
    juniper = "00:05:85:00:00:01"
    remote = [f"2001:db8:{n}::5" for n in (100, 101, 102)]
    for r in remote:
        f.connect(PHILIPS, juniper, "2001:db8:7::50", r, port=443)
    devs = inventory_of(f.write(tmp_path / "routers.pcap"))
    cisco, jnpr, mon = devs[f"mac:{CISCO}"], devs[f"mac:{juniper}"], devs[f"mac:{PHILIPS}"]
    assert "ip-router" in cisco.roles and "ip-router" in jnpr.roles
    assert set(cisco.ips) == {"fe80::200:cff:fe22:2222", "2001:db8:7::1"}
    assert jnpr.ips == []  # the addresses behind it are others'
    assert "ip-router" not in mon.roles
    assert set(mon.external_peers) >= set(remote)


def test_neighbor_discovery_events_and_what_they_bind(tmp_path: Path) -> None:
    f = Frames()
    f.neighbor_solicitation(PHILIPS, "::", TEMPORARY[0])  # DAD probe: the sender's address
    f.neighbor_solicitation(PHILIPS, MON_LL, "2001:db8:3::10")  # NS: its source, not the target
    f.neighbor_advertisement(DELL, PACS_LL, "2001:db8:3::10")  # O set: the target is the sender's
    f.neighbor_advertisement(CISCO, "fe80::1", "2001:db8:3::99", override=False)  # a proxy
    f.neighbor_solicitation(BBRAUN, "fe80::1:2", "2001:db8:3::10", hop=64)  # routed: invalid
    evs = scan(f.write(tmp_path / "nd.pcap"))
    nd = [e for e in evs if isinstance(e, NdpObserved)]
    assert [(e.icmp_type, e.source, e.target) for e in nd] == [
        (135, "::", TEMPORARY[0]),
        (135, MON_LL, "2001:db8:3::10"),
        (136, PACS_LL, "2001:db8:3::10"),
        (136, "fe80::1", "2001:db8:3::99"),
    ]
    assert nd[1].link_layer_address == PHILIPS and nd[0].link_layer_address is None
    assert nd[2].override and not nd[3].override
    obs = Observer()
    obs.feed(evs)
    assert set(obs.claimed[PHILIPS]) == {TEMPORARY[0], MON_LL}
    assert set(obs.claimed[DELL]) == {PACS_LL, "2001:db8:3::10"}
    assert set(obs.claimed[CISCO]) == {"fe80::1"}  # not the address it proxies for
    assert BBRAUN not in obs.claimed


# ---- DHCP relay agents ------------------------------------------------------------------------

SERVER_MAC, SERVER = "00:14:22:00:00:01", "10.1.0.2"
RELAY_MAC, GIADDR = "00:00:0c:11:11:11", "10.2.0.1"
CLIENTS = [("00:09:5c:bb:00:01", "ICU-BED-11", "10.2.0.20"), (BBRAUN, "PUMP-0112", "10.2.0.21")]


def _relayed(msg: bytes, hops: int = 1) -> bytes:
    """A relay agent's copy (RFC 1542 §4.1.1): hops incremented, giaddr set."""
    out = bytearray(msg)
    out[3] = hops
    out[24:28] = ipaddress.IPv4Address(GIADDR).packed
    return bytes(out)


@pytest.mark.parametrize("relay_ip", ["10.1.0.1", GIADDR])  # its server-side address, or giaddr
def test_dhcp_relay_agent_and_its_clients(tmp_path: Path, inventory_of, relay_ip: str) -> None:
    f = Frames()

    def dhcp(smac, dmac, src, dst, msg):
        f.ip(smac, dmac, src, dst, 17, udp(src, dst, 67, 67, msg))

    for i, (mac, name, lease) in enumerate(CLIENTS):
        m, x = _mac(mac), 0x100 + i
        dhcp(RELAY_MAC, SERVER_MAC, relay_ip, SERVER,
             _relayed(dhcp_message(DHCPDISCOVER, x, m, hostname=name)))  # fmt: skip
        dhcp(SERVER_MAC, RELAY_MAC, SERVER, GIADDR,
             _relayed(dhcp_message(DHCPOFFER, x, m, yiaddr=lease, server_id=SERVER)))  # fmt: skip
        dhcp(RELAY_MAC, SERVER_MAC, relay_ip, SERVER, _relayed(
            dhcp_message(DHCPREQUEST, x, m, hostname=name, requested_ip=lease, server_id=SERVER)
        ))  # fmt: skip
        dhcp(SERVER_MAC, RELAY_MAC, SERVER, GIADDR,
             _relayed(dhcp_message(DHCPACK, x, m, yiaddr=lease, server_id=SERVER)))  # fmt: skip
    for *_, lease in CLIENTS:  # later, routed through the relay (a router)
        f.connect(RELAY_MAC, SERVER_MAC, lease, SERVER, port=443)
    devs = inventory_of(f.write(tmp_path / "relay.pcap"))
    server, relay = devs[f"mac:{SERVER_MAC}"], devs[f"mac:{RELAY_MAC}"]
    assert not any(d.startswith("ip:") for d in devs)
    assert server.ips == [SERVER] and "dhcp-server" in server.roles
    assert "dhcp-relay" not in server.roles
    assert set(relay.ips) == {"10.1.0.1", GIADDR} & {relay_ip, GIADDR}
    assert {"dhcp-relay", "ip-router"} <= set(relay.roles) and "dhcp-server" not in relay.roles
    for mac, name, lease in CLIENTS:
        c = devs[f"mac:{mac}"]
        assert c.ips == [lease] and c.hostname == name and "dhcp-client" in c.roles


# ---- forged sources, DHCPv6 -------------------------------------------------------------------


def test_group_source_mac_makes_no_device(tmp_path: Path, inventory_of) -> None:
    # I/G bit set (IEEE 802 §8.2): no station sends from a group address
    f = Frames()
    f.arp_reply(DELL, "10.3.0.10")
    for mac, ip in [("ff:ff:ff:ff:ff:ff", "10.3.0.200"), ("01:00:5e:00:00:fb", "10.3.0.201")]:
        f.ip(mac, DELL, ip, "10.3.0.10", 17, udp(ip, "10.3.0.10", 5000, 5001, b"x"))
    f.connect(PHILIPS, DELL, "10.3.0.50", "10.3.0.10")
    devs = inventory_of(f.write(tmp_path / "group.pcap"))
    assert sorted(devs) == [f"mac:{PHILIPS}", f"mac:{DELL}"]
    assert devs[f"mac:{DELL}"].peers == [f"mac:{PHILIPS}"]


def _dhcpv6(msg_type: int, *options: tuple[int, bytes]) -> bytes:
    """RFC 8415 §8: msg-type, transaction-id, options (code, length, value)."""
    out = bytes([msg_type]) + (0x1234).to_bytes(3, "big")
    return out + b"".join(struct.pack("!HH", c, len(v)) + v for c, v in options)


def _duid_ll(mac: str) -> bytes:
    return struct.pack("!HH", 3, 1) + _mac(mac)  # RFC 8415 §11.4 DUID-LL, Ethernet


def test_dhcpv6_client_server_and_relay_roles(tmp_path: Path, inventory_of) -> None:
    f = Frames()
    fqdn = b"\x00\x0aicu-bed-21\x04hosp\x07example\x00"  # RFC 4704 §4: flags, wire name
    solicit = _dhcpv6(1, (1, _duid_ll(PHILIPS)), (39, fqdn))
    f.ip(PHILIPS, "33:33:00:01:00:02", MON_LL, "ff02::1:2", 17,
         udp(MON_LL, "ff02::1:2", 546, 547, solicit))  # fmt: skip
    advertise = _dhcpv6(2, (1, _duid_ll(PHILIPS)), (2, _duid_ll(DELL)))
    f.ip(DELL, PHILIPS, PACS_LL, MON_LL, 17, udp(PACS_LL, MON_LL, 547, 546, advertise))
    # a relay agent forwards another client's SOLICIT to the server (RFC 8415 §9, §19.1)
    inner = _dhcpv6(1, (1, _duid_ll(BBRAUN)))
    forw = bytes([12, 0]) + bytes(16) + ipaddress.IPv6Address("fe80::1:2").packed
    forw += struct.pack("!HH", 9, len(inner)) + inner
    f.ip(CISCO, DELL, "2001:db8:9::1", "2001:db8:3::10", 17,
         udp("2001:db8:9::1", "2001:db8:3::10", 547, 547, forw))  # fmt: skip
    devs = inventory_of(f.write(tmp_path / "v6.pcap"))
    mon, server = devs[f"mac:{PHILIPS}"], devs[f"mac:{DELL}"]
    assert "dhcp-client" in mon.roles and mon.hostname == "icu-bed-21.hosp.example"
    assert "dhcp-server" in server.roles and "dhcp-client" not in server.roles
    assert "dhcp-client" in devs[f"mac:{BBRAUN}"].roles  # by its DUID
    assert "dhcp-client" not in devs[f"mac:{CISCO}"].roles
