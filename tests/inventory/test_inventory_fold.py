"""Folding events into devices: keys, routers, address history, merges across captures."""

from __future__ import annotations

import pytest

from medsentry.events import ArpObserved, FlowRecord
from medsentry.events.base import Endpoints
from medsentry.events.identity import DhcpMessage, DnsMessage, DnsQuestion, DnsRecord
from medsentry.inventory.engine import InventoryEngine
from medsentry.inventory.observe import GATEWAY_MIN_FOREIGN_IPS, Observer
from medsentry.inventory.state import MAX_PEERS
from medsentry.inventory.store import list_changes, load_devices
from medsentry.store import open_store

T0 = 1_767_261_600_000_000_000
S = 1_000_000_000
ROUTER = "00:00:0c:07:ac:14"


def flow(i, client, server, cmac, smac, t=0, port=443, proto="tls", answered=True) -> FlowRecord:
    return FlowRecord(
        ts_ns=T0 + t * S,
        last_ns=T0 + t * S + S // 2,
        flow_id=f"{i:016x}",
        transport="tcp",
        ip_version=4,
        client=client,
        server=server,
        client_port=50000 + i,
        server_port=port,
        client_mac=cmac,
        server_mac=smac,
        packets_c2s=3,
        packets_s2c=3 if answered else 0,
        tcp_flags_c2s=0x1B,
        tcp_flags_s2c=0x12 | 0x09 if answered else 0,
        app_protocol=proto,
    )


def test_router_mac_speaks_for_hosts_behind_it() -> None:
    obs = Observer()
    evs = [
        # a local host talks to many servers in other subnets and on the internet
        flow(i, "10.20.0.50", srv, "00:12:21:00:00:50", ROUTER, t=i)
        for i, srv in enumerate(
            ["10.10.0.2", "10.10.0.3", "10.10.0.40", "8.8.8.8", "93.184.216.34", "10.10.0.60"]
        )
    ]
    evs.append(ArpObserved(ts_ns=T0, op=2, sender_mac=ROUTER, sender_ip="10.20.0.1",
                           target_mac="00:12:21:00:00:50", target_ip="10.20.0.50"))  # fmt: skip
    # a server on another VLAN is also seen directly with its own MAC
    evs.append(flow(99, "10.10.0.3", "10.10.0.9", "00:06:5b:10:00:03", "00:06:5b:10:00:09", t=9))
    obs.feed(evs)
    devices, gateways = obs.resolve()
    assert set(gateways) == {ROUTER} and gateways[ROUTER] == {"10.20.0.1"}
    router = devices[f"mac:{ROUTER}"]
    assert list(router.addresses) == ["10.20.0.1"]  # its own address only
    host = devices["mac:00:12:21:00:00:50"]
    assert sorted(host.external_peers) == ["8.8.8.8", "93.184.216.34"]
    # behind the router: by IP when no MAC was ever seen, by MAC when it was
    assert "ip:10.10.0.40" in devices and "ip:10.10.0.3" not in devices
    assert "mac:00:06:5b:10:00:03" in host.peers and "ip:10.10.0.40" in host.peers
    # what it served through the router is its own
    assert list(devices["mac:00:06:5b:10:00:03"].listening) == ["tcp/443"]
    assert not any(d.startswith("ip:8.") or d.startswith("ip:93.") for d in devices)


def test_an_observer_resolves_once() -> None:
    # the devices take over the endpoints' tables: a second resolve would find them empty
    obs = Observer()
    obs.feed([flow(1, "10.20.0.70", "10.20.0.5", "00:12:21:00:00:01", "00:06:5b:00:00:05")])
    devices, _ = obs.resolve()
    assert devices["mac:00:12:21:00:00:01"].protocols == {"tls": T0}
    assert devices["mac:00:06:5b:00:00:05"].listening == {"tcp/443": T0}
    with pytest.raises(RuntimeError, match="once"):
        obs.resolve()


def test_one_ip_several_macs_over_time_stays_several_devices() -> None:
    obs = Observer()
    obs.feed(
        [
            flow(1, "10.20.0.70", "10.20.0.5", "00:12:21:00:00:01", "00:06:5b:00:00:05", t=0),
            flow(2, "10.20.0.70", "10.20.0.5", "00:12:21:00:00:02", "00:06:5b:00:00:05", t=3600),
        ]
    )
    devices, _ = obs.resolve()
    a, b = devices["mac:00:12:21:00:00:01"], devices["mac:00:12:21:00:00:02"]
    assert list(a.addresses) == list(b.addresses) == ["10.20.0.70"]
    assert a.last_ns < b.first_ns
    srv = devices["mac:00:06:5b:00:00:05"]
    assert set(srv.peers) == {a.device_id, b.device_id}


def dhcp_request(mac: str, t: int, vendor_class: str, ip: str | None = None) -> DhcpMessage:
    """A client's DHCPREQUEST broadcast (RFC 2131 §4.3.2) with its vendor class (option 60)."""
    return DhcpMessage(
        ts_ns=T0 + t * S,
        flow_id=f"r{t}",
        endpoints=Endpoints(
            client="0.0.0.0",
            server="255.255.255.255",
            client_port=68,
            server_port=67,
            client_mac=mac,
        ),
        op=1,
        message_type="REQUEST",
        client_mac=mac,
        vendor_class=vendor_class,
        requested_address=ip,
    )


def dhcp_ack(mac: str, ip: str, t: int) -> DhcpMessage:
    return DhcpMessage(
        ts_ns=T0 + t * S,
        flow_id=f"d{t}",
        endpoints=Endpoints(
            client="10.20.0.1",
            server="255.255.255.255",
            client_port=67,
            server_port=68,
            client_mac=ROUTER,
        ),
        op=2,
        message_type="ACK",
        client_mac=mac,
        your_address=ip,
        server_id="10.10.0.2",
    )


def test_ip_only_device_merges_when_its_mac_shows_up(db_url: str) -> None:
    pump = "00:12:21:00:00:99"
    with open_store(db_url) as store:
        first = InventoryEngine()
        # capture 1: only routed traffic: the pump is known by IP
        first.feed(
            [
                flow(
                    i,
                    "10.10.0.50",
                    "10.20.0.99",
                    "00:0c:29:00:00:50",
                    ROUTER,
                    t=i,
                    port=161,
                    proto="snmp",
                )
                for i in range(5)
            ]
            + [
                flow(10 + i, "10.10.0.50", f"10.20.0.{i}", "00:0c:29:00:00:50", ROUTER, t=i)
                for i in range(2, 7)
            ]
        )
        first.finish(store, "c1")
        assert "ip:10.20.0.99" in {d.device_id for d in load_devices(store)}
        # capture 2: the pump's own frames (and a new lease)
        second = InventoryEngine()
        second.feed(
            [
                flow(20, "10.20.0.99", "10.10.0.40", pump, ROUTER, t=100),
                dhcp_ack(pump, "10.20.0.98", 200),
                flow(21, "10.20.0.98", "10.10.0.40", pump, ROUTER, t=201),
            ]
        )
        second.finish(store, "c2")
        devs = {d.device_id: d for d in load_devices(store)}
        assert "ip:10.20.0.99" not in devs
        dev = devs[f"mac:{pump}"]
        assert dev.ips == ["10.20.0.98", "10.20.0.99"]  # current first, history kept
        assert "udp/161" in dev.listening or "tcp/161" in dev.listening  # from capture 1
        assert dev.first_seen_ns == T0
        changes = list_changes(store, dev.device_id)
        kinds = [c["change"] for c in changes]
        assert "device_added" in kinds and "address_added" in kinds
        assert all(c["recorded_at"].year >= 2024 for c in changes)  # typed values round-trip


def test_a_new_role_is_a_change(sqlite_url: str) -> None:
    a, b = "02:00:00:00:00:01", "00:06:5b:00:00:05"  # a: no OUI, nothing known at first
    request = dhcp_request(a, 50, "BBraun-SpaceStation")
    with open_store(sqlite_url) as store:
        e = InventoryEngine()
        e.feed([flow(1, "10.20.0.7", "10.20.0.5", a, b)])
        e.finish(store, "c1")
        e.feed([request])
        counts = e.finish(store, "c2")
        assert counts["new"] == 0
        changes = {(c["change"], c["new_value"]) for c in list_changes(store, f"mac:{a}")}
        assert ("role_added", "dhcp-client") in changes
        assert ("identity_changed", "infusion-pump") in changes  # the vendor class named it
        assert all(c["capture_id"] == "c2" for c in list_changes(store, f"mac:{a}")[1:])


def test_a_router_stays_a_router_in_later_intervals(sqlite_url: str) -> None:
    """Live monitoring folds short intervals: a router found once is not taken for a host
    later, when an interval shows it with a single routed address."""
    host = "00:12:21:00:00:50"
    with open_store(sqlite_url) as store:
        e = InventoryEngine()
        e.feed(
            [
                flow(i, "10.20.0.50", f"10.10.0.{i + 2}", host, ROUTER, t=i)
                for i in range(GATEWAY_MIN_FOREIGN_IPS + 1)
            ]
        )
        e.finish(store, "interval-1")
        later = InventoryEngine()  # a new process: routers come back from the store
        later.feed([flow(50, "10.20.0.50", "10.10.0.77", host, ROUTER, t=60)])
        later.finish(store, "interval-2")
        devs = {d.device_id: d for d in load_devices(store)}
        assert devs[f"mac:{ROUTER}"].ips == []  # never took the routed addresses
        assert "ip-router" in devs[f"mac:{ROUTER}"].roles
        assert "ip:10.10.0.77" in devs


def test_a_busy_server_keeps_its_earliest_peers_within_the_bound() -> None:
    # the peers of each endpoint are folded into the device at resolve: the bound holds there
    obs = Observer()
    server = "00:06:5b:00:00:05"
    n = MAX_PEERS + 40
    obs.feed(
        [flow(i, f"10.20.{i // 200}.{i % 200 + 1}", "10.20.0.250", f"00:12:21:00:{i >> 8:02x}:"
              f"{i & 0xFF:02x}", server, t=i) for i in range(n)]
    )  # fmt: skip
    devices, _ = obs.resolve()
    peers = devices[f"mac:{server}"].peers
    assert len(peers) == MAX_PEERS
    assert max(peers.values()) == T0 + (MAX_PEERS - 1) * S  # the earliest are kept
    assert all(len(d.peers) == 1 for did, d in devices.items() if did != f"mac:{server}")


DNS_ENDS = Endpoints(
    client="10.20.0.70",
    server="10.10.0.3",
    client_port=50001,
    server_port=53,
    client_mac="00:12:21:00:00:01",
    server_mac="00:06:5b:00:00:03",
    transport="udp",
)


def dns(i: int, t: int, response: bool, name: str, answers=()) -> DnsMessage:
    return DnsMessage(
        ts_ns=T0 + t * S,
        flow_id=f"{i:016x}",
        endpoints=DNS_ENDS,
        protocol="dns",
        id=i,
        response=response,
        questions=[DnsQuestion(name=name, qtype=answers[0].rtype if answers else 1)],
        answers=list(answers),
    )


def test_dns_names_the_cloud_a_client_asks_for_and_the_hosts_it_answers_for() -> None:
    obs = Observer()
    a = DnsRecord(name="PACS1.Hospital.example.", rtype=1, ttl=60, data="10.10.0.9")
    ptr = DnsRecord(name="5.0.20.10.in-addr.arpa", rtype=12, ttl=60, data="pump-7.ward.example.")
    outside = DnsRecord(name="cdn.example.com", rtype=1, ttl=60, data="93.184.216.34")
    obs.feed(
        [
            dns(1, 0, False, "Share2.Dexcom.com."),
            dns(1, 0, True, "Share2.Dexcom.com.", [outside]),
            dns(1, 1, True, "Share2.Dexcom.com.", [outside]),  # a repeat: nothing new
            dns(2, 2, True, "PACS1.Hospital.example.", [a]),
            dns(3, 3, True, "5.0.20.10.in-addr.arpa", [ptr]),
            flow(4, "10.20.0.70", "10.10.0.9", "00:12:21:00:00:01", "00:06:5b:00:00:09", t=4),
            flow(5, "10.20.0.5", "10.20.0.70", "00:12:21:00:00:05", "00:12:21:00:00:01", t=5),
        ]
    )
    devices, _ = obs.resolve()
    client = devices["mac:00:12:21:00:00:01"]
    # lowercase, no root dot; a reverse lookup names no cloud
    assert client.observations["domain"] == {
        "share2.dexcom.com": T0,
        "pacs1.hospital.example": T0 + 2 * S,
    }
    assert "dns-server" in devices["mac:00:06:5b:00:00:03"].roles
    # an A answer names the local host at its address, a PTR answer too; internet hosts none
    assert list(devices["mac:00:06:5b:00:00:09"].hostnames) == ["4:PACS1.Hospital.example"]
    assert list(devices["mac:00:12:21:00:00:05"].hostnames) == ["3:pump-7.ward.example"]
    assert not any("93.184.216.34" in d for d in devices)


def test_an_older_capture_scanned_last_keeps_the_history_in_time_order(sqlite_url: str) -> None:
    """Captures scanned newest first: the device was there earlier than first recorded, and
    the address it used then came before the current one, not after it."""
    a, b = "02:00:00:00:00:01", "00:06:5b:00:00:05"

    with open_store(sqlite_url) as store:
        e = InventoryEngine()
        e.feed(
            [
                dhcp_request(a, 5000, "MSFT 5.0", "10.20.0.8"),
                flow(2, "10.20.0.8", "10.20.0.5", a, b, t=5001),
            ]
        )
        e.finish(store, "newer")
        e.feed(
            [
                dhcp_request(a, 10, "BBraun-SpaceStation", "10.20.0.7"),
                flow(1, "10.20.0.7", "10.20.0.5", a, b, t=11),
            ]
        )
        e.finish(store, "older")
        changes = list_changes(store, f"mac:{a}")
        assert changes[0]["change"] == "device_added" and changes[0]["ts_ns"] == T0 + 10 * S
        moves = [
            (c["ts_ns"], c["old_value"], c["new_value"])
            for c in changes
            if c["change"] == "address_added"
        ]
        assert moves == [
            (T0 + 10 * S, None, "10.20.0.7"),
            (T0 + 5000 * S, "10.20.0.7", "10.20.0.8"),
        ]
        assert [c["ts_ns"] for c in changes] == sorted(c["ts_ns"] for c in changes)
        (dev,) = [d for d in load_devices(store) if d.device_id == f"mac:{a}"]
        assert dev.ips[0] == "10.20.0.8"  # the current address is the newer
