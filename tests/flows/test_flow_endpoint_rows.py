"""FlowTable.endpoint_rows / endpoints_from (the endpoints a dissector's FlowContext gets, read
for a batch of slots in one pass) agree with the FlowRecord of the same flow (a separate code
path): orientation (SYN-ACK seen first too), IPv4/IPv6, ports, MACs, VLAN, transport."""

from __future__ import annotations

import numpy as np
from flowsynth import Builder

from medsentry.events.flow import FlowRecord
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.flows.kernels import B_STATE, LIVE

S = 1_000_000_000
T0 = 1_700_000_000 * S
SYN, ACK = 0x02, 0x10


def test_endpoint_rows_match_flow_records() -> None:
    b = Builder()
    b.add(T0, "10.0.0.1", "10.0.0.2", 40000, 104, flags=SYN, eth_src=0x020000000001)
    b.add(T0 + 1, "10.0.0.2", "10.0.0.1", 104, 40000, flags=SYN | ACK, eth_src=0x020000000002)
    # SYN-ACK first: the server sent first, the client is still the SYN sender
    b.add(T0 + 2, "10.0.0.9", "10.0.0.3", 11112, 50000, flags=SYN | ACK, vlan=7)
    b.add(T0 + 3, "10.0.0.3", "10.0.0.9", 50000, 11112, flags=ACK, vlan=7)
    b.add(T0 + 4, "fe80::2", "fe80::1", 5353, 53, proto=17, eth_src=0x0200000000AA)
    b.add(T0 + 5, "192.168.1.200", "192.168.1.7", 9, 8, proto=17, vlan=3)
    b.add(T0 + 6, "192.168.1.7", "192.168.1.200", 8, 9, proto=17, vlan=3)
    eng = FlowEngine(EngineConfig())
    events = list(eng.process(b.batch()))
    t = eng.table
    slots = np.flatnonzero(t.u8[:, B_STATE] == LIVE).astype(np.int32)
    assert slots.size == 4
    rows = t.endpoint_rows(slots)
    got = {t.flow_id(int(s)): t.endpoints_from(r) for s, r in zip(slots, rows, strict=True)}
    for s in slots.tolist():
        assert t.endpoints(s) == got[t.flow_id(s)]
    events += eng.finish()
    records = [e for e in events if isinstance(e, FlowRecord)]
    assert len(records) == 4
    for rec in records:
        ep = got[rec.flow_id]
        assert (ep.client, ep.server, ep.client_port, ep.server_port) == (
            rec.client,
            rec.server,
            rec.client_port,
            rec.server_port,
        )
        assert (ep.client_mac, ep.server_mac, ep.vlan, ep.transport) == (
            rec.client_mac,
            rec.server_mac,
            rec.vlan,
            rec.transport,
        )
