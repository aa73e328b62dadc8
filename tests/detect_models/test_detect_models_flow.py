"""The flow model behind the Detector interface, run by the real DetectionEngine."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from detect_models_streams import ATTACKER_MAC, MONITOR_IP, flow

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.models import default_models
from medsentry.detect.models.flow import FlowAnomalyDetector, FlowRecordAnomalyDetector
from medsentry.events.flow import FlowRecord
from medsentry.store import open_store


def _learned(n: int = 1200, seed: int = 0) -> tuple[DetectionEngine, FlowAnomalyDetector]:
    det = FlowAnomalyDetector(window_size=100)
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(seed)
    engine.process([flow(i, rng=rng) for i in range(n)])
    engine.ctx.forced_learning = False
    return engine, det


def test_flow_model_learns_silently_then_calibrates_on_learning_scores():
    engine, det = _learned()
    assert engine.raised == 0 and det.threshold is None
    # scores taken once the trees had a reference window: 1200 - 100 first-window events
    calibration = sorted(det.calibration)
    assert len(calibration) == 1100
    expect_relay = calibration[int(0.99 * len(calibration))]
    expect_alone = calibration[int(0.999 * len(calibration))]
    assert det.calibrate() == expect_alone
    assert det.relay_threshold == expect_relay
    assert det.bindings == {MONITOR_IP: flow(0, rng=np.random.default_rng()).client_mac,
                            "10.0.1.150": "b8:ca:3a:cf:0b:87"}  # fmt: skip


def test_flow_model_ordinary_traffic_raises_nothing():
    engine, _ = _learned()
    rng = np.random.default_rng(11)
    alerts = engine.process([flow(2000 + i, rng=rng) for i in range(300)])
    assert len(alerts) <= 1  # the 0.999 quantile: at most a stray one in 300


def test_flow_model_spoofed_binding_and_relay_are_told_apart():
    engine, det = _learned()
    rng = np.random.default_rng(12)
    spoofed = engine.process([flow(3000, rng=rng, mac=ATTACKER_MAC)])
    assert [a.rule_id for a in spoofed] == ["net.flow_binding_mismatch"]
    assert spoofed[0].detail["bound_mac"] != ATTACKER_MAC
    assert spoofed[0].detail["seen_mac"] == ATTACKER_MAC
    relayed = engine.process([flow(3001, rng=rng, mac=ATTACKER_MAC, slow=12.0)])
    assert [a.rule_id for a in relayed] == ["model.relay_mitm"]
    assert relayed[0].severity == "high" and relayed[0].score > det.relay_threshold
    assert relayed[0].technique_id == "T0830"
    # slow but from the bound MAC: only the stand-alone model can speak, at its higher bar
    slow = engine.process([flow(3002, rng=rng, slow=12.0)])
    assert [a.rule_id for a in slow] == ["model.flow_hst"]
    # an analyst accepts the new binding: the attacker's MAC is now the known one
    det.accept_binding(MONITOR_IP, ATTACKER_MAC)
    assert engine.process([flow(3003, rng=rng, mac=ATTACKER_MAC)]) == []


def test_flow_model_repeats_aggregate_into_one_alert():
    engine, _ = _learned()
    rng = np.random.default_rng(13)
    for i in range(5):
        engine.process([flow(4000 + i, rng=rng, mac=ATTACKER_MAC)])
    (alert,) = [a for a in engine.open.values() if a.rule_id == "net.flow_binding_mismatch"]
    assert alert.count == 5 and len(alert.evidence) == 5


def test_flow_model_state_is_stored_not_relearned(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path / 'd.sqlite'}")
    det = FlowAnomalyDetector(window_size=100)
    engine = DetectionEngine([det], store=store, ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(0)
    engine.process([flow(i, rng=rng) for i in range(1200)])
    engine.commit()

    again = FlowAnomalyDetector(window_size=100)
    restarted = DetectionEngine([again], store=store, ledger=False)
    restarted.ctx.forced_learning = False
    assert again.model.ready and again.model.seen == 1200
    assert again.bindings == det.bindings
    probe = [flow(5000 + i, rng=np.random.default_rng(5), slow=s) for i, s in enumerate((1, 8))]
    from medsentry.detect.models.features import monitored_flow_features

    for p in probe:
        x = monitored_flow_features(p)
        assert again.model.score_one(x) == det.model.score_one(x)
    # the restarted engine alerts without a new learning period
    out = restarted.process([flow(6000, rng=rng, mac=ATTACKER_MAC, slow=12.0)])
    assert [a.rule_id for a in out] == ["model.relay_mitm"]
    restarted.commit()
    store.engine.dispose()


def test_flow_record_model_reads_the_flow_table_records():
    det = FlowRecordAnomalyDetector(window_size=50)
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(1)

    def rec(i: int, scale: float = 1.0, mac: str = "aa:aa:aa:aa:aa:01") -> FlowRecord:
        pk = int(rng.integers(8, 12))
        return FlowRecord(
            ts_ns=i * 10**9,
            last_ns=i * 10**9 + int(50e6 * scale),
            flow_id=f"r{i}",
            transport="tcp",
            ip_version=4,
            client="10.1.0.5",
            server="10.1.0.9",
            client_port=40000 + i,
            server_port=104,
            client_mac=mac,
            packets_c2s=pk,
            packets_s2c=pk,
            bytes_c2s=int(900 * scale * rng.uniform(0.9, 1.1)),
            bytes_s2c=600,
            iat_mean_us=5000.0 * scale,
        )

    engine.process([rec(i) for i in range(400)])
    engine.ctx.forced_learning = False
    out = engine.process([rec(1000, scale=500.0)])
    assert [a.rule_id for a in out] == ["model.flow_record_hst"]
    out = engine.process([rec(1001, mac="aa:aa:aa:aa:aa:99")])
    assert [a.rule_id for a in out] == ["net.flow_record_binding_mismatch"]


def test_default_models_have_unique_ids_and_plain_state():
    import msgspec

    dets = default_models()
    ids = [d.detector_id for d in dets]
    assert len(set(ids)) == len(ids)
    for d in dets:
        msgspec.json.encode(d.state())


@pytest.mark.parametrize("kind", ["monitored_flow"])
def test_flow_model_ignores_other_event_kinds(kind):
    assert FlowAnomalyDetector.kinds == frozenset({kind})


def test_flow_model_damaged_stored_state_is_one_clear_store_error(tmp_path: Path):
    from medsentry.detect.store import update_detector_state
    from medsentry.errors import StoreError

    store = open_store(f"sqlite:///{tmp_path / 'd.sqlite'}")
    _engine, det = _learned(300)
    state = det.state()
    state["model"]["r"] = "not base64 of the right size"
    update_detector_state(store, det.detector_id, state)
    with pytest.raises(StoreError, match=r"detector state model\.flow_hst: damaged Half-Space"):
        DetectionEngine([FlowAnomalyDetector(window_size=100)], store=store, ledger=False)
    store.engine.dispose()


def _category_flow(i: int, rng: np.random.Generator, ip: str, big: bool) -> FlowRecord:
    size = 2_000_000 if big else 600
    pk = 1500 if big else 6
    return FlowRecord(
        ts_ns=i * 10**9,
        last_ns=i * 10**9 + int((2e9 if big else 40e6) * rng.uniform(0.8, 1.2)),
        flow_id=f"c{i}",
        transport="tcp",
        ip_version=4,
        client=ip,
        server="10.9.0.1",
        client_port=40000 + i,
        server_port=104 if big else 443,
        packets_c2s=pk,
        packets_s2c=pk // 2,
        bytes_c2s=int(size * rng.uniform(0.9, 1.1)),
        bytes_s2c=int(size * 0.01) + 300,
        payload_c2s=int(size * 0.95),
        payload_s2c=200,
        iat_mean_us=(1300.0 if big else 8000.0) * rng.uniform(0.8, 1.2),
    )


def test_flow_model_per_device_category():
    from medsentry.detect.context import DeviceInfo

    det = FlowRecordAnomalyDetector(window_size=100)
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.add_device(DeviceInfo(device_id="d:pump", category="infusion_pump"), ["10.2.0.5"])
    engine.ctx.add_device(DeviceInfo(device_id="d:ct", category="imaging"), ["10.3.0.7"])
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(4)
    engine.process(
        [_category_flow(i, rng, "10.2.0.5" if i % 2 else "10.3.0.7", big=not i % 2)
         for i in range(800)]
    )  # fmt: skip
    engine.ctx.forced_learning = False
    assert set(det.categories) == {"infusion_pump", "imaging"}
    # a study-sized upload is ordinary for the CT scanner ...
    assert engine.process([_category_flow(900, rng, "10.3.0.7", big=True)]) == []
    # ... and never happens from the pump: judged by the pumps' own trees
    (alert,) = engine.process([_category_flow(901, rng, "10.2.0.5", big=True)])
    assert alert.rule_id == "model.flow_record_hst" and alert.detail["scope"] == "infusion_pump"
    assert alert.device_id == "d:pump"
    # the model of all flows has seen such uploads: it alone would not have said a word
    from medsentry.detect.models.features import flow_record_features

    x = flow_record_features(_category_flow(902, rng, "10.2.0.5", big=True))
    assert det.model.score_one(x) <= det.threshold
    # categories survive the stored form
    again = FlowRecordAnomalyDetector(window_size=100)
    import msgspec

    again.load_state(msgspec.json.decode(msgspec.json.encode(det.state())))
    assert again.categories["infusion_pump"].model.score_one(x) == (
        det.categories["infusion_pump"].model.score_one(x)
    )
    assert again.categories["infusion_pump"].threshold == det.categories["infusion_pump"].threshold


def test_flow_model_learning_ends_inside_a_batch():
    """The learning period ends in the middle of one batch: the events before its end are
    learned (deferred) before the first one after it is scored, as event by event."""
    rng = np.random.default_rng(6)
    events = [flow(i, rng=rng, slow=15.0 if i in (1300, 1450) else 1.0) for i in range(1600)]
    results = []
    for batch in (1, 7, 1600):
        det = FlowAnomalyDetector(window_size=100)
        engine = DetectionEngine([det], ledger=False, learning_ns=1200 * 10**9)
        for i in range(0, len(events), batch):
            engine.process(events[i : i + batch])
        alerts = [msgspec.json.encode(a) for a in engine.open.values()]
        results.append((msgspec.json.encode(det.state()), alerts))
    assert results[0] == results[1] == results[2]
    assert results[0][1]  # the slow flows after learning were flagged
