"""The flow kernel on packet arrays built in the test: keys, orientation, counts, timeouts."""

from __future__ import annotations

import numpy as np
import pytest
from flowsynth import Builder, bulk_batch

from medsentry.events.flow import ArpObserved, FlowRecord
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.flows.table import FlowTable

S = 1_000_000_000
T0 = 1_700_000_000 * S
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def scan(*batches, **cfg) -> list:
    eng = FlowEngine(EngineConfig(**cfg))
    out = []
    for b in batches:
        out += eng.process(b.batch() if isinstance(b, Builder) else b)
    out += eng.finish()
    return out


def flows(events) -> list[FlowRecord]:
    return sorted((e for e in events if isinstance(e, FlowRecord)), key=lambda f: f.ts_ns)


def handshake(b: Builder, t: int, c="10.0.0.1", s="10.0.0.2", cp=40000, sp=104) -> None:
    b.add(t, c, s, cp, sp, flags=SYN, seq=1000)
    b.add(t + 1000, s, c, sp, cp, flags=SYN | ACK, seq=5000)
    b.add(t + 2000, c, s, cp, sp, flags=ACK, seq=1001)


def test_syn_sender_is_client_and_counts_per_direction():
    b = Builder()
    # the server has the lower address and port: orientation must still follow the SYN
    handshake(b, T0, c="10.0.0.9", s="10.0.0.2", cp=50000, sp=80)
    b.add(T0 + 3000, "10.0.0.9", "10.0.0.2", 50000, 80, flags=PSH | ACK, seq=1001, data=b"x" * 10)
    b.add(T0 + 4000, "10.0.0.2", "10.0.0.9", 80, 50000, flags=PSH | ACK, seq=5001, data=b"y" * 7)
    (f,) = flows(scan(b))
    assert (f.client, f.server, f.client_port, f.server_port) == ("10.0.0.9", "10.0.0.2", 50000, 80)
    assert (f.packets_c2s, f.packets_s2c) == (3, 2)
    assert (f.payload_c2s, f.payload_s2c) == (10, 7)
    assert f.bytes_c2s == 40 + 40 + 50 and f.bytes_s2c == 40 + 47
    assert f.tcp_flags_c2s == SYN | ACK | PSH and f.tcp_flags_s2c == SYN | ACK | PSH
    assert f.transport == "tcp" and f.ip_version == 4 and f.end_reason == "eof"
    assert (f.ts_ns, f.last_ns) == (T0, T0 + 4000)


def test_syn_ack_seen_first_reverses_orientation():
    b = Builder()
    b.add(T0, "10.0.0.2", "10.0.0.9", 104, 50000, flags=SYN | ACK, seq=5000)
    b.add(T0 + 10, "10.0.0.9", "10.0.0.2", 50000, 104, flags=ACK, seq=1001)
    (f,) = flows(scan(b))
    assert (f.client, f.client_port, f.server, f.server_port) == (
        "10.0.0.9",
        50000,
        "10.0.0.2",
        104,
    )
    assert (f.packets_c2s, f.packets_s2c) == (1, 1)


def test_first_sender_is_client_without_handshake():
    b = Builder()
    b.add(T0, "192.168.1.50", "192.168.1.1", 33000, 53, proto=17, data=b"q")
    b.add(T0 + 5, "192.168.1.1", "192.168.1.50", 53, 33000, proto=17, data=b"rr")
    b.add(T0 + 9, "192.168.1.50", "192.168.1.1", 33000, 53, proto=17, data=b"q")
    (f,) = flows(scan(b))
    assert (f.client, f.client_port, f.server_port) == ("192.168.1.50", 33000, 53)
    assert (f.packets_c2s, f.packets_s2c, f.payload_c2s, f.payload_s2c) == (2, 1, 2, 2)
    assert f.transport == "udp" and f.tcp_flags_c2s == 0


@pytest.mark.parametrize(
    ("sp", "cp", "client_port"),
    [
        (53, 33000, 33000),  # a DNS answer first (the query lost): port 53 serves
        (161, 33000, 33000),  # an SNMP response
        (2049, 800, 2049),  # to a reserved port (NFS clients bind 600-1023): the first sender
        (1900, 50000, 50000),  # an SSDP answer to an M-SEARCH sent to the multicast group
        (5353, 5353, 5353),  # equal classes (mDNS, NTP, DHCP 67/68): the first sender
        (40000, 40001, 40000),  # both ephemeral: no telling, the first sender
    ],
)
def test_udp_answer_first_takes_the_service_port_as_server(sp: int, cp: int, client_port: int):
    """A UDP exchange whose first packet is the answer (a capture started between request and
    answer, or one leg of an asymmetric route) made the DNS server the client."""
    b = Builder()
    b.add(T0, "10.0.0.2", "10.0.0.1", sp, cp, proto=17, data=b"answer")
    b.add(T0 + 5, "10.0.0.1", "10.0.0.2", cp, sp, proto=17, data=b"ask")
    (f,) = flows(scan(b))
    assert f.client_port == client_port
    assert f.client == ("10.0.0.1" if client_port == cp and cp != sp else "10.0.0.2")


@pytest.mark.parametrize(
    ("first_from_server", "sp", "cp", "client_port"),
    [
        (True, 2575, 54458, 54458),  # HL7 MLLP answer first: the registered port serves
        (True, 104, 40745, 40745),  # DICOM
        (True, 443, 2000, 2000),  # a system port serves a user port
        (False, 2575, 54458, 54458),  # the client's packet first: the same
        (True, 40000, 40001, 40000),  # both ephemeral: no telling, the first sender
    ],
)
def test_tcp_seen_from_its_middle_takes_the_service_port_as_server(
    first_from_server: bool, sp: int, cp: int, client_port: int
):
    """A capture that starts inside a connection has no SYN: its first packet may be the
    server's answer. That made the server the client (findings against the workstation's
    ephemeral port, flows listed with server port 54458)."""
    b = Builder()
    c, srv = "10.0.0.1", "10.0.0.2"
    pkts = [(srv, c, sp, cp, b"\x0bMSA|AA\x1c\r"), (c, srv, cp, sp, b"\x0bMSH|...\x1c\r")]
    if not first_from_server:
        pkts.reverse()
    for k, (a, z, pa, pz, data) in enumerate(pkts):
        b.add(T0 + k * 1000, a, z, pa, pz, flags=ACK | PSH, seq=1000 + k, data=data)
    (f,) = flows(scan(b))
    assert f.client_port == client_port


def test_iat_statistics_match_numpy():
    rng = np.random.default_rng(7)
    gaps = rng.integers(1, 5_000_000, 500)  # ns
    ts = T0 + np.concatenate([[0], np.cumsum(gaps)])
    b = Builder()
    for k, t in enumerate(ts.tolist()):
        if k % 3 == 1:
            b.add(t, "10.1.1.2", "10.1.1.1", 502, 40000, proto=17, data=b"a")
        else:
            b.add(t, "10.1.1.1", "10.1.1.2", 40000, 502, proto=17, data=b"a")
    (f,) = flows(scan(b))
    iat_us = np.diff(ts) / 1000.0
    assert f.iat_mean_us == pytest.approx(iat_us.mean(), rel=1e-9)
    assert f.iat_std_us == pytest.approx(iat_us.std(), rel=1e-9)
    assert f.iat_min_us == pytest.approx(iat_us.min())
    assert f.iat_max_us == pytest.approx(iat_us.max())
    assert f.packets_c2s + f.packets_s2c == ts.size


def test_single_packet_flow_has_zero_iat():
    b = Builder()
    b.add(T0, "10.0.0.1", "10.0.0.2", 1, 2, proto=17)
    (f,) = flows(scan(b))
    assert (f.iat_mean_us, f.iat_std_us, f.iat_min_us, f.iat_max_us) == (0.0, 0.0, 0.0, 0.0)


def test_idle_timeout_splits_flows_and_is_configurable():
    b = Builder()
    b.add(T0, "10.0.0.1", "10.0.0.2", 1000, 2575, proto=17, data=b"a")
    b.add(T0 + 119 * S, "10.0.0.1", "10.0.0.2", 1000, 2575, proto=17, data=b"a")
    b.add(T0 + 240 * S, "10.0.0.1", "10.0.0.2", 1000, 2575, proto=17, data=b"a")
    default = flows(scan(b))
    assert [f.packets_c2s for f in default] == [2, 1]
    assert [f.end_reason for f in default] == ["idle", "eof"]
    short = flows(scan(b, idle_timeout_s=60))
    assert [f.packets_c2s for f in short] == [1, 1, 1]
    assert len({f.flow_id for f in short}) == 3


def test_idle_flows_are_swept_on_packet_time():
    # a flow that goes quiet is ended by the sweep when later packets of other flows advance time
    eng = FlowEngine(EngineConfig(idle_timeout_s=10))
    b1 = Builder()
    b1.add(T0, "10.0.0.1", "10.0.0.2", 1000, 53, proto=17)
    assert not flows(eng.process(b1.batch()))
    b2 = Builder()
    b2.add(T0 + 11 * S, "10.0.0.3", "10.0.0.4", 1000, 53, proto=17)
    (f,) = flows(eng.process(b2.batch()))
    assert f.client == "10.0.0.1" and f.end_reason == "idle"
    assert eng.table.live == 1


def test_active_timeout():
    b = Builder()
    for k in range(50):
        b.add(T0 + k * 10 * S, "10.0.0.1", "10.0.0.2", 1000, 2575, proto=17)
    fs = flows(scan(b, active_timeout_s=100))
    assert [f.end_reason for f in fs[:-1]] == ["active"] * (len(fs) - 1)
    assert sum(f.packets_c2s for f in fs) == 50
    assert all(f.last_ns - f.ts_ns <= 100 * S for f in fs)


def test_fin_close_keeps_trailing_ack_and_new_syn_starts_new_flow():
    b = Builder()
    handshake(b, T0)
    b.add(T0 + 10_000, "10.0.0.1", "10.0.0.2", 40000, 104, flags=FIN | ACK, seq=1001)
    b.add(T0 + 20_000, "10.0.0.2", "10.0.0.1", 104, 40000, flags=FIN | ACK, seq=5001)
    b.add(T0 + 30_000, "10.0.0.1", "10.0.0.2", 40000, 104, flags=ACK, seq=1002)  # trailing ACK
    handshake(b, T0 + 100_000)  # same 5-tuple, new connection, within the linger
    fs = flows(scan(b))
    assert len(fs) == 2
    assert fs[0].end_reason == "fin" and fs[0].packets_c2s == 4 and fs[0].packets_s2c == 2
    assert fs[0].last_ns == T0 + 30_000
    assert fs[1].ts_ns == T0 + 100_000 and fs[1].end_reason == "eof"


def test_packets_after_linger_start_a_new_flow_and_rst_closes():
    b = Builder()
    handshake(b, T0)
    b.add(T0 + 5000, "10.0.0.2", "10.0.0.1", 104, 40000, flags=RST | ACK, seq=5001)
    b.add(T0 + 5 * S, "10.0.0.1", "10.0.0.2", 40000, 104, flags=ACK, seq=1001)
    fs = flows(scan(b, tcp_linger_s=2))
    assert [f.end_reason for f in fs] == ["rst", "eof"]
    assert fs[0].packets_c2s + fs[0].packets_s2c == 4


def test_closed_flow_at_eof_reports_close_reason():
    b = Builder()
    handshake(b, T0)
    b.add(T0 + 10_000, "10.0.0.2", "10.0.0.1", 104, 40000, flags=RST, seq=5001)
    (f,) = flows(scan(b))
    assert f.end_reason == "rst"


def test_key_fields_separate_flows_vlan_ipv6_icmp_macs():
    b = Builder()
    b.add(T0, "10.0.0.1", "10.0.0.2", 1, 2, proto=17, vlan=10, eth_src=0x020000000001)
    b.add(T0 + 1, "10.0.0.2", "10.0.0.1", 2, 1, proto=17, vlan=10, eth_src=0x020000000002)
    b.add(T0 + 2, "10.0.0.1", "10.0.0.2", 1, 2, proto=17, vlan=20)
    b.add(T0 + 3, "fe80::1", "fe80::2", 1, 2, proto=17)
    b.add(T0 + 4, "10.0.0.1", "10.0.0.2", 8, 0, proto=1)  # ICMP echo request (type 8)
    b.add(T0 + 5, "10.0.0.2", "10.0.0.1", 0, 0, proto=1)  # echo reply (type 0): same flow
    b.add(T0 + 6, "10.0.0.1", "10.0.0.2", 1, 2, proto=17, err=4)  # damaged: no flow
    b.add(T0 + 7, "10.0.0.1", "10.0.0.2", 0, 0, proto=17, frag=1)  # non-first fragment
    fs = flows(scan(b))
    assert len(fs) == 4
    v10, v20, v6, icmp = fs
    assert v10.vlan == 10 and v10.client_mac == "02:00:00:00:00:01"
    assert v10.server_mac == "02:00:00:00:00:02" and v10.packets_s2c == 1
    assert v20.vlan == 20 and v20.client_mac is None
    assert v6.ip_version == 6 and v6.client == "fe80::1" and v6.server == "fe80::2"
    assert icmp.transport == "icmp" and icmp.packets_c2s == 1 and icmp.packets_s2c == 1
    assert (icmp.client_port, icmp.server_port) == (0, 0)


def test_flow_ids_are_deterministic_and_depend_on_key_and_start():
    b = Builder()
    handshake(b, T0)
    b.add(T0 + 5, "10.0.0.3", "10.0.0.4", 1, 2, proto=17)
    a1 = [f.flow_id for f in flows(scan(b))]
    a2 = [f.flow_id for f in flows(scan(b))]
    assert a1 == a2 and len(set(a1)) == 2 and all(len(x) == 32 for x in a1)
    c = Builder()
    handshake(c, T0 + 1)
    assert flows(scan(c))[0].flow_id not in a1


def test_arp_is_aggregated_per_batch():
    b = Builder()
    for k in range(3):
        b.add(T0 + k, "10.0.0.1", "10.0.0.2", arp_op=1, eth_src=0x020000000001)
    b.add(T0 + 5, "10.0.0.7", "10.0.0.7", arp_op=2, eth_src=0x020000000007)  # gratuitous
    arps = sorted((e for e in scan(b) if isinstance(e, ArpObserved)), key=lambda e: e.op)
    assert [(a.op, a.count, a.gratuitous) for a in arps] == [(1, 3, False), (2, 1, True)]
    assert arps[0].sender_ip == "10.0.0.1" and arps[0].target_ip == "10.0.0.2"
    assert arps[0].sender_mac == "02:00:00:00:00:01" and arps[0].ts_ns == T0


def test_table_grows_to_100k_flows_and_reclaims_slots():
    t = FlowTable(capacity=16, idle_timeout_s=10)
    pb, flow, _rev = bulk_batch(300_000, 100_000, seed=1, gap_ns=100)
    pos = 0
    while pos < len(pb):
        pos = t.process(pb, pos)
        if pos < len(pb):
            assert t.free_slots == 0
            t.grow()
    assert t.live == 100_000 and t.capacity == 131072
    # every packet is in the flow of its 5-tuple, and the directions are right
    slot_of_flow = np.full(100_000, -1)
    slot_of_flow[flow] = t.pkt_slot[: len(pb)]
    assert (slot_of_flow[flow] == t.pkt_slot[: len(pb)]).all()
    assert len(np.unique(t.pkt_slot[: len(pb)])) == 100_000
    t.flush()
    slots = t.take_expired()
    assert slots.size == 100_000 and t.live == 0
    counts = np.bincount(flow, minlength=100_000)
    got = t.i64[slots, 3] + t.i64[slots, 4]
    assert sorted(got.tolist()) == sorted(counts[counts > 0].tolist())
    t.release(slots)
    # a second generation of 100k flows reuses the slots: no growth
    pb2, _, _ = bulk_batch(300_000, 100_000, seed=2, t0=pb.raw.ts_ns[-1] + 100 * S, gap_ns=100)
    assert t.process(pb2) == len(pb2)
    assert t.capacity == 131072 and t.live == 100_000


def test_engine_resumes_when_the_table_is_full():
    eng = FlowEngine(EngineConfig(initial_capacity=16))
    pb, flow, _ = bulk_batch(20_000, 5_000, seed=3)
    events = eng.process(pb) + eng.finish()
    fs = flows(events)
    assert len(fs) == len(np.unique(flow))
    assert sum(f.packets_c2s + f.packets_s2c for f in fs) == 20_000
    assert eng.counters.flows == len(fs) and eng.counters.hosts
