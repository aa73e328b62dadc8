"""Fuzzing the flow engine with arbitrary packet arrays: it never crashes, and every packet that
belongs to a flow is counted in exactly one FlowRecord."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from medsentry.capture.batch import PacketBatch, RawBatch
from medsentry.events.flow import DecodeWarning, FlowRecord
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.protocols.identify import Identification

MAPPED = 0x0000_FFFF_0000_0000


def arrays(n: int, dtype, elements):
    return hnp.arrays(dtype, n, elements=elements)


@st.composite
def batches(draw):
    n = draw(st.integers(1, 120))
    buf_len = draw(st.integers(1, 3000))
    buf = draw(arrays(buf_len, np.uint8, st.integers(0, 255)))
    pl_off = draw(arrays(n, np.int64, st.integers(0, buf_len - 1)))
    room = (buf_len - pl_off).astype(np.int64)
    pl_len = np.minimum(draw(arrays(n, np.uint32, st.integers(0, 1500))), room).astype(np.uint32)
    t0 = 1_700_000_000 * 10**9
    steps = draw(arrays(n, np.int64, st.sampled_from([0, 1, 1000, 10**9, 200 * 10**9, -5])))
    ts = t0 + np.cumsum(steps)
    hosts = draw(arrays(n, np.uint64, st.integers(1, 4))) | np.uint64(MAPPED)
    peers = draw(arrays(n, np.uint64, st.integers(1, 4))) | np.uint64(MAPPED)
    z = np.zeros(n, np.uint64)
    raw = RawBatch("fuzz", buf, 0, 1, ts, pl_off.copy(), pl_len.copy(), pl_len.copy(),
                   np.ones(n, np.uint16), np.zeros(n, np.uint16))  # fmt: skip
    pb = PacketBatch(
        raw=raw,
        eth_src=draw(arrays(n, np.uint64, st.integers(0, 3))),
        eth_dst=z,
        vlan=draw(arrays(n, np.uint16, st.sampled_from([0, 0, 7]))),
        ethertype=np.full(n, 0x0800, np.uint16),
        ip_ver=draw(arrays(n, np.uint8, st.sampled_from([4, 4, 4, 0]))),
        src_hi=z,
        src_lo=hosts,
        dst_hi=z,
        dst_lo=peers,
        proto=draw(arrays(n, np.uint8, st.sampled_from([6, 6, 17, 1, 47]))),
        ttl=np.full(n, 64, np.uint8),
        ip_len=(pl_len + 40).astype(np.uint32),
        frag=draw(arrays(n, np.uint8, st.sampled_from([0, 0, 0, 1]))),
        sport=draw(arrays(n, np.uint16, st.sampled_from([80, 104, 2575, 40000]))),
        dport=draw(arrays(n, np.uint16, st.sampled_from([80, 104, 2575, 40000]))),
        tcp_flags=draw(arrays(n, np.uint8, st.integers(0, 255))),
        tcp_seq=draw(arrays(n, np.uint32, st.integers(0, 2**32 - 1))),
        tcp_ack=np.zeros(n, np.uint32),
        tcp_win=np.zeros(n, np.uint16),
        pl_off=pl_off,
        pl_len=pl_len,
        arp_op=np.zeros(n, np.uint8),
        err=draw(arrays(n, np.uint8, st.sampled_from([0, 0, 0, 0, 3]))),
    )
    return pb


class Greedy:
    """Takes every byte; raises on a marker so detaching is exercised too."""

    protocol = "greedy"
    whole_stream = True

    def __init__(self, ctx):
        self.n = 0

    def feed(self, direction, data, ts_ns):
        self.n += len(data)
        if b"\xff\xfe" in data:
            raise ValueError("marker")
        return ()

    def gap(self, direction, length, ts_ns):
        return ()

    def close(self, ts_ns):
        return ()


def pick(transport, cport, sport, c2s, s2c, final):
    if c2s[:1] == b"\x00":
        raise RuntimeError("identification fault")
    if c2s or s2c or final:
        return Identification("greedy", "signature", 0.5)
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches(), min_size=1, max_size=3), st.integers(16, 64), st.integers(1, 600))
def test_engine_survives_arbitrary_batches(bs, cap, first_bytes):
    eng = FlowEngine(
        EngineConfig(initial_capacity=cap, first_bytes=first_bytes, idle_timeout_s=100),
        identify=pick,
        dissector_lookup=lambda p: Greedy,
    )
    events = []
    expected = 0
    for pb in bs:
        events += eng.process(pb)
        ok = (pb.ip_ver != 0) & (pb.err == 0) & (pb.frag == 0)
        expected += int(ok.sum())
    events += eng.finish()
    flows = [e for e in events if isinstance(e, FlowRecord)]
    assert sum(f.packets_c2s + f.packets_s2c for f in flows) == expected
    assert len({f.flow_id for f in flows}) == len(flows)
    assert eng.table.live == 0 and eng.table.free_slots == eng.table.capacity
    assert not eng.apps.apps
    for w in (e for e in events if isinstance(e, DecodeWarning)):
        assert w.message in ("ValueError in dissector", "RuntimeError")
