"""First bytes gathered by the flow kernel for identification: TCP in-order prefix (segments
reordered or repeated), UDP first datagram per direction, no payload to Python when no dissector
wants it; and flow ids that stay unique and stable when timestamps go backwards."""

from __future__ import annotations

from flowsynth import Builder

from medsentry.events.flow import FlowRecord, ProtocolDetected
from medsentry.flows import kernels as K
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.protocols.identify import Identification

S = 1_000_000_000
T0 = 1_700_000_000 * S
SYN, ACK, RST, PSH = 0x02, 0x10, 0x04, 0x08
REQ = b"GET /fhir/Patient/1 HTTP/1.1\r\nHost: ehr.example\r\nAccept: */*\r\n\r\n"


class Seen:
    """An identify function that records what it was given (the bytes under test)."""

    def __init__(self):
        self.calls: list[tuple[bytes, bytes, bool]] = []

    def __call__(self, transport, cport, sport, c2s, s2c, final):
        self.calls.append((c2s, s2c, final))
        if final:
            return Identification("seen", "signature", 0.9)
        return None


def run(builder: Builder, identify, **cfg) -> tuple[list, FlowEngine, int]:
    eng = FlowEngine(EngineConfig(**cfg), identify=identify)
    pb = builder.batch()
    events = eng.process(pb)
    emitted = int(((eng.table.pkt_dir[: len(pb)] & K.EMITTED) != 0).sum())
    events += eng.finish()
    return events, eng, emitted


def test_tcp_first_bytes_are_the_in_order_prefix_despite_reordering_and_repeats():
    b = Builder()
    c, s = "10.0.0.1", "10.0.0.2"
    b.add(T0, c, s, 40000, 8080, flags=SYN, seq=999)
    b.add(T0 + 1, s, c, 8080, 40000, flags=SYN | ACK, seq=4999)
    parts = [REQ[:10], REQ[10:30], REQ[30:]]
    # third segment first (held as out-of-order), then the first one twice, then the second
    b.add(T0 + 2, c, s, 40000, 8080, flags=ACK | PSH, seq=1000 + 30, data=parts[2])
    b.add(T0 + 3, c, s, 40000, 8080, flags=ACK | PSH, seq=1000, data=parts[0])
    b.add(T0 + 4, c, s, 40000, 8080, flags=ACK | PSH, seq=1000, data=parts[0])
    b.add(T0 + 5, c, s, 40000, 8080, flags=ACK | PSH, seq=1000 + 10, data=parts[1])
    b.add(T0 + 6, s, c, 8080, 40000, flags=ACK | PSH, seq=5000, data=b"HTTP/1.1 200 OK\r\n")
    seen = Seen()
    run(b, seen, dissectors=False)
    c2s, s2c, final = seen.calls[-1]
    assert final and c2s == REQ and s2c == b"HTTP/1.1 200 OK\r\n"
    # every earlier call saw a prefix of the stream, never bytes after a hole
    assert all(REQ.startswith(call[0]) for call in seen.calls)


def test_first_bytes_stop_at_the_configured_size():
    b = Builder()
    b.add(T0, "10.0.0.1", "10.0.0.2", 40000, 9000, flags=SYN, seq=0)
    data = bytes(range(256)) * 8
    for k in range(4):
        b.add(T0 + k + 1, "10.0.0.1", "10.0.0.2", 40000, 9000, flags=ACK, seq=1 + 512 * k,
              data=data[512 * k : 512 * (k + 1)])  # fmt: skip
    seen = Seen()
    run(b, seen, first_bytes=700, dissectors=False)
    assert seen.calls[-1][0] == data[:700]


def test_udp_first_datagram_of_each_direction_and_no_payload_to_python():
    b = Builder()
    c, s = "10.0.0.1", "10.0.0.53"
    for k in range(5):
        b.add(T0 + k, c, s, 5353, 53, proto=17, data=b"Q%d" % k)
        b.add(T0 + k, s, c, 53, 5353, proto=17, data=b"A%d" % k)
    seen = Seen()
    events, eng, emitted = run(b, seen, dissectors=False)
    assert seen.calls[-1] == (b"Q0", b"A0", True)
    assert emitted == 0  # no dissector: the kernel selects no payload for Python
    (f,) = [e for e in events if isinstance(e, FlowRecord)]
    assert f.app_protocol == "seen" and f.packets_c2s == 5
    assert eng.table.free_blocks == eng.table.fb_blocks  # every first-bytes block came back


def test_identified_flow_stops_gathering():
    b = Builder()
    for k in range(50):
        b.add(T0 + k, "10.0.0.1", "10.0.0.53", 5353, 53, proto=17, data=b"x" * 40)
    calls = []

    def decide(transport, cport, sport, c2s, s2c, final):
        calls.append(final)
        return Identification("dns", "port", 0.4)

    events, _, _ = run(b, decide, dissectors=False)
    assert calls == [False]  # once, when the first datagram came; never per packet
    assert [e.protocol for e in events if isinstance(e, ProtocolDetected)] == ["dns"]


def test_flow_ids_unique_and_stable_when_time_goes_backwards():
    def build() -> Builder:
        b = Builder()
        c, s = "10.0.0.1", "10.0.0.2"
        # the same 5-tuple opens and resets three times; the second starts *earlier* and the
        # third at the same nanosecond as the first
        for t in (T0 + 5 * S, T0, T0 + 5 * S):
            b.add(t, c, s, 40000, 104, flags=SYN, seq=1)
            b.add(t + 1, s, c, 104, 40000, flags=RST | ACK, seq=0)
        return b

    ids = []
    for _ in range(2):  # a rescan gives the same ids
        events, _, _ = run(build(), None)
        flows = [e for e in events if isinstance(e, FlowRecord)]
        assert len(flows) == 3
        ids.append([f.flow_id for f in flows])
    assert len(set(ids[0])) == 3 and ids[0] == ids[1]
