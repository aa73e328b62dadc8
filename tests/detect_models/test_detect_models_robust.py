"""Online robust z-score: the second flow model behind the same interface."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from detect_models_streams import ATTACKER_MAC, flow
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.detect.base import OnlineModel
from medsentry.detect.engine import DetectionEngine
from medsentry.detect.models.flow import FlowAnomalyDetector
from medsentry.detect.models.robust import RobustZScore
from medsentry.errors import ConfigError


def test_robust_z_tracks_median_and_spread():
    m = RobustZScore(["a"])
    assert isinstance(m, OnlineModel)
    rng = np.random.default_rng(0)
    for v in rng.normal(10.0, 1.0, size=4000):
        m.learn_one({"a": float(v)})
    assert m.median[0] == pytest.approx(10.0, abs=0.2)
    assert m.scale(0) == pytest.approx(1.0, abs=0.25)
    assert m.score_one({"a": 10.0}) < 0.5
    assert m.score_one({"a": 16.0}) > 4.0
    assert m.score_one({"a": 1e9}) == m.clip  # clipped


def test_robust_z_state_round_trip_and_damage():
    m = RobustZScore(["a", "b"])
    for i in range(50):
        m.learn_one({"a": float(i % 7), "b": 3.0})
    back = RobustZScore.from_state(msgspec.json.decode(msgspec.json.encode(m.to_state())))
    assert back.score_one({"a": 20.0, "b": 3.0}) == m.score_one({"a": 20.0, "b": 3.0})
    bad = m.to_state() | {"spread": [1.0]}
    with pytest.raises(ValueError, match="lengths differ"):
        RobustZScore.from_state(bad)
    with pytest.raises(ValueError):
        RobustZScore.from_state({"algorithm": "half-space-trees"})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=3, max_size=60))
def test_robust_z_property_scores_bounded(values):
    m = RobustZScore(["a"])
    for v in values:
        m.learn_one({"a": v})
    for v in values:
        assert 0.0 <= m.score_one({"a": v}) <= m.clip


def test_flow_detector_swaps_its_model():
    with pytest.raises(ConfigError, match="unknown flow model"):
        FlowAnomalyDetector(algorithm="isolation-forest")
    det = FlowAnomalyDetector(algorithm="robust-z")
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(0)
    engine.process([flow(i, rng=rng) for i in range(600)])
    engine.ctx.forced_learning = False
    out = engine.process([flow(1000, rng=rng, mac=ATTACKER_MAC, slow=12.0)])
    assert [(a.rule_id, a.detail["model"]) for a in out] == [("model.relay_mitm", "robust-z")]
    again = FlowAnomalyDetector(algorithm="robust-z")
    again.load_state(msgspec.json.decode(msgspec.json.encode(det.state())))
    assert isinstance(again.model, RobustZScore) and again.model.median == det.model.median
