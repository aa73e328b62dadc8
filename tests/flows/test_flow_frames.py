"""Non-IP frames (LLDP, CDP, Bluetooth LE) reach the frame dissectors one at a time."""

from __future__ import annotations

from medsentry.capture.decode import decode
from medsentry.capture.reader import open_capture
from medsentry.capture.writer import FrameLog, Host, PcapWriter, udp
from medsentry.events.flow import DecodeWarning, FlowRecord
from medsentry.flows.engine import EngineConfig, FlowEngine
from medsentry.flows.frames import ETHERTYPE_LLDP, SNAP_PID_CDP

T0 = 1_700_000_000 * 10**9
# IEEE 802.1AB: nearest-bridge group address; chassis ID, port ID, TTL, end TLVs
LLDP = bytes.fromhex("0180c200000e020000000a0188cc") + bytes.fromhex(
    "020704020000000a0104030531060200780000"
)
CDP_PAYLOAD = bytes.fromhex("02b400000001000a737769746368")  # version, ttl, device id
CDP = (
    bytes.fromhex("01000ccccccc020000000a02")
    + (8 + len(CDP_PAYLOAD)).to_bytes(2, "big")
    + bytes.fromhex("aaaa0300000c2000")
    + CDP_PAYLOAD
)
# 802.3 frame with LLC but not Cisco SNAP (spanning tree): not a CDP frame
STP = bytes.fromhex("0180c2000000020000000a030026424203") + bytes(35)


class Collect:
    def __init__(self, fail: bool = False):
        self.seen: list[tuple[int, int, bytes, int, int]] = []
        self.fail = fail

    def __call__(self, linktype, ethertype, frame, ts_ns, iface):
        self.seen.append((linktype, ethertype, frame, ts_ns, iface))
        if self.fail:
            raise ValueError("boom " + frame.hex())
        return ()


def run(path, dissectors):
    eng = FlowEngine(EngineConfig(), frame_dissectors=dissectors)
    events = []
    with open_capture(path) as reader:
        for raw in reader:
            events += eng.process(decode(raw))
    return events + eng.finish(), eng


def test_lldp_and_cdp_frames_go_to_frame_dissectors(tmp_path):
    a = Host(ip="10.3.0.1", mac="02:00:00:00:03:01")
    b = Host(ip="10.3.0.2", mac="02:00:00:00:03:02")
    log = FrameLog()
    log.add(T0, LLDP)
    log.add(T0 + 1000, a.frame(b, 17, udp(a.ip, b.ip, 1000, 2000, b"x")))
    log.add(T0 + 2000, CDP)
    log.add(T0 + 3000, STP)
    path = tmp_path / "l2.pcap"
    log.write(path)
    col = Collect()
    events, eng = run(path, [col])
    assert [(lt, et, fr, ts) for lt, et, fr, ts, _ in col.seen] == [
        (1, ETHERTYPE_LLDP, LLDP, T0),
        (1, SNAP_PID_CDP, CDP, T0 + 2000),
    ]
    assert eng.counters.frames == 2
    assert len([e for e in events if isinstance(e, FlowRecord)]) == 1


def test_ble_link_type_frames_and_failing_dissector(tmp_path):
    path = tmp_path / "ble.pcap"
    adv = bytes.fromhex("d6be898e40060102030405 06".replace(" ", "")) + bytes(3)
    with PcapWriter(path, linktype=251) as w:
        w.write(adv, T0)
        w.write(adv[:-1], T0 + 1)
    bad = Collect(fail=True)
    good = Collect()
    events, eng = run(path, [bad, good])
    assert [fr for _, _, fr, _, _ in good.seen] == [adv, adv[:-1]]
    assert all(lt == 251 and et == 0 for lt, et, _, _, _ in good.seen)
    warnings = [e for e in events if isinstance(e, DecodeWarning)]
    assert len(warnings) == 2 and eng.counters.warnings == 2
    # the exception text may quote frame bytes: only its type is kept
    assert "ValueError" in warnings[0].message and adv.hex() not in warnings[0].message
    assert warnings[0].offset == 24 + 16  # pcap file header + first record header
