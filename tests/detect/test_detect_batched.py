"""The batched paths of the detection engine give what event-by-event processing gives.

Half-Space Trees learn a batch in one compiled pass, flow features are computed from arrays,
and the flow models defer their learning-period updates to the end of the engine's batch: each
is checked here against the reference (row by row, event by event), bit for bit.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from medsentry.detect.base import AlertDraft, Detector
from medsentry.detect.context import DetectContext, DeviceInfo
from medsentry.detect.engine import DetectionEngine
from medsentry.detect.models.features import (
    FLOW_RECORD_FEATURES,
    MONITORED_FIELDS,
    MONITORED_FLOW_FEATURES,
    flow_record_features,
    flow_record_matrix,
    monitored_flow_features,
    monitored_flow_matrix,
)
from medsentry.detect.models.flow import FlowRecordAnomalyDetector
from medsentry.detect.models.hst import HalfSpaceTrees
from medsentry.events.flow import FlowRecord
from medsentry.events.telemetry import MonitoredFlow

T0 = 1_700_000_000 * 1_000_000_000
FEATURES = ("a", "b", "c", "d")


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 1.0, size=(n, len(FEATURES)))
    x[rng.random(n) < 0.02] *= 50.0  # a few outliers beyond the learned limits
    return x


def _reference(m: HalfSpaceTrees, X: np.ndarray, scores: list[float], room: int) -> None:
    for row in X:
        x = dict(zip(FEATURES, row.tolist(), strict=True))
        if m.ready and len(scores) < room:
            scores.append(m.score_one(x))
        m.learn_one(x)


def _same_model(a: HalfSpaceTrees, b: HalfSpaceTrees) -> None:
    assert (a.seen, a.windows) == (b.seen, b.windows)
    assert np.array_equal(a.r, b.r) and np.array_equal(a.l, b.l)
    assert np.array_equal(a.feat, b.feat) and np.array_equal(a.split, b.split)
    assert a.to_state() == b.to_state()


@pytest.mark.parametrize("chunks", [(1000,), (7, 93, 250, 1, 649), (249, 2, 499, 250)])
@pytest.mark.parametrize("room", [10_000, 300])
def test_hst_learn_many_is_score_then_learn_row_by_row(chunks, room):
    X = _rows(sum(chunks), seed=3)
    ref, fast = HalfSpaceTrees(FEATURES, window_size=100), HalfSpaceTrees(FEATURES, window_size=100)
    ref_scores: list[float] = []
    fast_scores: list[float] = []
    _reference(ref, X, ref_scores, room)
    i = 0
    for n in chunks:  # batches across the first window and across window ends
        fast.learn_many(X[i : i + n], fast_scores, room)
        i += n
    assert fast_scores == ref_scores  # exact floats
    assert len(ref_scores) == min(room, len(X) - 100)
    _same_model(ref, fast)
    probe = _rows(50, seed=4)
    for row in probe:
        x = dict(zip(FEATURES, row.tolist(), strict=True))
        assert fast.score_one(x) == ref.score_one(x) == fast.score_vector(row)


def test_hst_learn_many_with_given_limits_and_without_scores():
    limits = {f: (0.0, 20.0) for f in FEATURES}
    ref = HalfSpaceTrees(FEATURES, window_size=64, limits=limits)
    fast = HalfSpaceTrees(FEATURES, window_size=64, limits=limits)
    X = _rows(500, seed=5)
    _reference(ref, X, [], 0)
    fast.learn_many(X)
    _same_model(ref, fast)


def test_hst_trees_are_shared_by_alike_models_not_by_others():
    a = HalfSpaceTrees(FEATURES, window_size=10, seed=7)
    b = HalfSpaceTrees(FEATURES, window_size=10, seed=7)
    c = HalfSpaceTrees(FEATURES, window_size=10, seed=8)
    for m in (a, b, c):
        m.learn_many(_rows(20, seed=1))
    assert np.array_equal(a.split, b.split) and a.split is not b.split
    assert not np.array_equal(a.split, c.split)
    b.split[0, 0] = -5.0  # a copy: one model's trees are its own
    assert a.split[0, 0] != -5.0


def _record(i: int, rng: np.random.Generator, **kw) -> FlowRecord:
    pk = int(rng.integers(0, 40))
    base = dict(
        ts_ns=T0 + i * 10**9,
        last_ns=T0 + i * 10**9 + int(rng.integers(0, 5 * 10**9)),
        flow_id=f"r{i}",
        transport="tcp",
        ip_version=4,
        client="10.1.0.5",
        server="10.1.0.9",
        client_port=40000 + i,
        server_port=104,
        client_mac="aa:aa:aa:aa:aa:01",
        server_mac="aa:aa:aa:aa:aa:02",
        packets_c2s=pk,
        packets_s2c=int(rng.integers(0, 40)),
        bytes_c2s=int(rng.integers(0, 10**7)),
        bytes_s2c=int(rng.integers(0, 10**7)),
        payload_c2s=int(rng.integers(0, 10**6)),
        payload_s2c=0,
        iat_mean_us=float(rng.lognormal(8, 2)),
        iat_std_us=float(rng.lognormal(6, 2)),
        iat_min_us=0.0,
        iat_max_us=float(rng.lognormal(10, 3)),
    )
    base.update(kw)
    return FlowRecord(**base)  # type: ignore[arg-type]


def _record_rows(events: list[FlowRecord]) -> np.ndarray:
    return np.array([[flow_record_features(e)[f] for f in FLOW_RECORD_FEATURES] for e in events])


def test_flow_record_matrix_equals_the_features_of_each_record():
    rng = np.random.default_rng(8)
    events = [_record(i, rng) for i in range(2000)]
    events += [
        _record(9000, rng, last_ns=T0 + 9000 * 10**9),  # zero duration: no rate
        _record(9001, rng, last_ns=T0),  # ends before it starts: duration 0
        _record(9002, rng, packets_c2s=0, packets_s2c=0, iat_mean_us=0.0, iat_std_us=-1.0),
        _record(9003, rng, last_ns=T0 + 9003 * 10**9 + 1),  # one nanosecond
    ]
    assert np.array_equal(flow_record_matrix(events), _record_rows(events))  # bit for bit
    assert flow_record_matrix([]).shape == (0, len(FLOW_RECORD_FEATURES))


@pytest.mark.parametrize(
    "odd",
    [
        {"packets_c2s": 2**60},  # beyond float64's exact integers: the reference path
        {"packets_s2c": 3.0},  # a float where an int belongs
        {"ts_ns": 2**63 + 5, "last_ns": 2**63 + 10**9},  # beyond int64
        {"bytes_c2s": 2**70},
    ],
)
def test_flow_record_matrix_unusual_values_follow_the_reference(odd):
    rng = np.random.default_rng(9)
    events = [_record(i, rng) for i in range(5)] + [_record(5, rng, **odd)]
    assert np.array_equal(flow_record_matrix(events), _record_rows(events))


def test_monitored_flow_matrix_equals_the_features_of_each_flow():
    rng = np.random.default_rng(10)
    events = [
        MonitoredFlow(
            ts_ns=T0 + i,
            flow_id=f"m{i}",
            client="10.0.1.172",
            server="10.0.1.150",
            duration_s=float(rng.lognormal(-3, 2)) if i % 7 else 0.0,
            packets=int(rng.integers(0, 100)),
            bytes_c2s=int(rng.integers(0, 10**6)),
            bytes_s2c=int(rng.integers(0, 10**6)),
            load_c2s_bps=float(rng.lognormal(10, 3)),
            load_s2c_bps=float(rng.lognormal(10, 3)),
            rate_pps=float(rng.lognormal(3, 2)),
            iat_c2s_ms=float(rng.lognormal(1, 1)),
            iat_s2c_ms=float(rng.lognormal(1, 1)),
            jitter_c2s_ms=float(rng.lognormal(0, 1)) if i % 3 else -1.0,
            jitter_s2c_ms=float(rng.lognormal(0, 1)),
            max_size_c2s=int(rng.integers(0, 1500)),
            max_size_s2c=int(rng.integers(0, 1500)),
            min_size_c2s=int(rng.integers(0, 60)),
            min_size_s2c=int(rng.integers(0, 60)),
            loss_packets=int(rng.integers(0, 3)),
        )
        for i in range(1500)
    ]
    ref = np.array(
        [[monitored_flow_features(e)[f] for f in MONITORED_FLOW_FEATURES] for e in events]
    )
    assert np.array_equal(monitored_flow_matrix(events), ref)


def test_compiled_log1p_is_math_log1p():
    """The kernels' log1p is the C library's, as math.log1p (NumPy's may differ by an ulp)."""
    rng = np.random.default_rng(12)
    v = np.concatenate(
        [
            rng.random(20_000) * 1e-6,
            rng.random(20_000) * 10.0,
            np.exp(rng.random(20_000) * 60.0),
            [0.0, -0.0, -1.0, 1e-300, 5e-324, 1.0, 2.0**53, 1e308, np.inf, np.nan],
        ]
    )
    raw = np.zeros((len(v), len(MONITORED_FLOW_FEATURES)))
    raw[:, 1] = v
    got = monitored_flow_matrix([_Raw(row) for row in raw.tolist()])[:, 1]
    want = [math.log1p(x) if x > 0.0 else 0.0 for x in v.tolist()]
    assert got.tolist() == want


class _Raw:
    """An object with the monitored-flow metric attributes, from one row of values."""

    def __init__(self, row: list[float]) -> None:
        for k, x in zip(MONITORED_FIELDS, row, strict=True):
            setattr(self, k, x)


def _category_stream(n: int, seed: int) -> list[FlowRecord]:
    rng = np.random.default_rng(seed)
    hosts = ["10.2.0.5", "10.3.0.7", "10.4.0.1"]  # a pump, a CT, a host the inventory lacks
    out = []
    for i in range(n):
        client = hosts[i % 3]
        big = i % 3 == 1
        out.append(
            _record(
                i,
                rng,
                client=client,
                client_mac=f"aa:aa:aa:aa:aa:{i % 3:02x}",
                bytes_c2s=int((2_000_000 if big else 600) * rng.uniform(0.8, 1.2)),
                last_ns=T0 + i * 10**9 + int(50e6 * rng.uniform(0.5, 2.0)),
            )
        )
    return out


def _engine(det: Detector) -> DetectionEngine:
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.add_device(DeviceInfo(device_id="d:pump", category="infusion_pump"), ["10.2.0.5"])
    engine.ctx.add_device(DeviceInfo(device_id="d:ct", category="imaging"), ["10.3.0.7"])
    return engine


def _state(det: Detector) -> bytes:
    return msgspec.json.encode(det.state())


@pytest.mark.parametrize("window", [50, 100])
def test_flow_record_model_batch_equals_event_by_event(window):
    """One engine batch (learning deferred to its end) against one event per batch."""
    learn, after = _category_stream(900, seed=1), _category_stream(200, seed=2)
    after = [
        msgspec.structs.replace(e, ts_ns=e.ts_ns + 10**12, last_ns=e.last_ns + 10**12)
        for e in after
    ]
    after[50] = msgspec.structs.replace(after[50], bytes_c2s=10**9, client_mac="ee:ee:ee:ee:ee:ee")
    results = []
    for batched in (True, False):
        det = FlowRecordAnomalyDetector(window_size=window)
        engine = _engine(det)
        engine.ctx.forced_learning = True
        if batched:
            engine.process(learn)
        else:
            for e in learn:
                engine.process([e])
        engine.ctx.forced_learning = False
        alerts = [msgspec.json.encode(a) for e in after for a in engine.process([e])]
        results.append((_state(det), alerts, sorted(det.categories)))
    assert results[0] == results[1]
    assert results[0][2] == ["imaging", "infusion_pump"]
    assert results[0][1]  # the re-bound address and the odd flow said something


def test_reading_the_model_learns_what_observe_deferred():
    det = FlowRecordAnomalyDetector(window_size=50)
    ctx = DetectContext(learning_ns=10**15)
    for e in _category_stream(120, seed=3):
        ctx.advance(e.ts_ns)
        assert det.observe(e, ctx) == []
    assert det.model.seen == 120  # no engine flush: reading the model learned the batch
    assert len(det.calibration) == 70


class _Clock(Detector):
    detector_id = "test.clock"

    def __init__(self) -> None:
        self.ended_at: list[int] = []
        self.learning: list[bool] = []

    def observe(self, event, ctx) -> list[AlertDraft]:
        self.learning.append(ctx.learning)
        return []

    def end_learning(self, ctx: DetectContext) -> None:
        self.ended_at.append(ctx.now_ns)


def test_engine_learning_period_ends_once_at_the_right_event():
    rng = np.random.default_rng(0)
    # out of order times: the clock is the latest time seen, as before
    times = [0, 5, 3, 9, 9, 12, 11, 15, 14, 20, 2]
    events = [_record(0, rng, ts_ns=T0 + t * 10**9) for t in times]
    clock = _Clock()
    engine = DetectionEngine([clock], ledger=False, learning_ns=12 * 10**9)
    engine.process(events[:4])
    engine.process(events[4:])
    assert clock.ended_at == [T0 + 12 * 10**9]
    assert clock.learning == [True] * 5 + [False] * 6
    assert engine.events == len(events)
