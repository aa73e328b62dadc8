"""Half-Space Trees: learning, scoring, persistence (a real model, real NumPy state)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.detect.base import OnlineModel
from medsentry.detect.models.hst import HalfSpaceTrees

FEATURES = ("a", "b", "c")


def _normal_stream(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    pts = rng.normal(loc=[5.0, 2.0, 0.0], scale=[0.3, 0.2, 0.5], size=(n, 3))
    return [dict(zip(FEATURES, map(float, p), strict=True)) for p in pts]


def _trained(n: int = 1000, **kw) -> HalfSpaceTrees:
    m = HalfSpaceTrees(FEATURES, window_size=100, **kw)
    for x in _normal_stream(n):
        m.learn_one(x)
    return m


def test_hst_is_a_river_style_online_model():
    assert isinstance(HalfSpaceTrees(FEATURES), OnlineModel)


def test_hst_not_ready_before_a_reference_window():
    m = HalfSpaceTrees(FEATURES, window_size=50)
    for x in _normal_stream(49):
        m.learn_one(x)
    assert not m.built and not m.ready
    assert m.score_one({"a": 100.0, "b": 100.0, "c": 100.0}) == 0.0
    m.learn_one(_normal_stream(1, seed=9)[0])
    assert m.built and m.ready and m.windows == 1 and m.seen == 50


def test_hst_outliers_score_higher_than_inliers():
    m = _trained()
    inliers = [m.score_one(x) for x in _normal_stream(200, seed=1)]
    outliers = [m.score_one({"a": 5.0 + 4.0 * s, "b": 2.0 - 3.0 * s, "c": 6.0}) for s in (1, -1, 2)]
    assert min(outliers) > np.quantile(inliers, 0.99)
    assert all(0.0 <= s <= 1.0 for s in inliers + outliers)
    # a point far outside the learned limits lands where the reference saw nothing
    assert m.score_one({"a": 1e6, "b": -1e6, "c": 1e6}) > 0.999


def test_hst_given_limits_build_at_once():
    m = HalfSpaceTrees(FEATURES, window_size=10, limits={f: (-10.0, 10.0) for f in FEATURES})
    assert m.built and not m.ready
    for x in _normal_stream(10):
        m.learn_one(x)
    assert m.ready


def test_hst_state_round_trip_through_json_scores_identically():
    m = _trained(750)
    blob = msgspec.json.encode(m.to_state())
    back = HalfSpaceTrees.from_state(msgspec.json.decode(blob))
    probe = [*_normal_stream(50, seed=3), {"a": 9.0, "b": 9.0, "c": 9.0}]
    assert [back.score_one(x) for x in probe] == [m.score_one(x) for x in probe]
    # and both keep learning the same way
    for x in _normal_stream(120, seed=4):
        m.learn_one(x)
        back.learn_one(x)
    assert np.array_equal(m.r, back.r) and np.array_equal(m.l, back.l)
    assert back.windows == m.windows


def test_hst_state_before_limits_keeps_the_warm_window():
    m = HalfSpaceTrees(FEATURES, window_size=100)
    for x in _normal_stream(40):
        m.learn_one(x)
    back = HalfSpaceTrees.from_state(msgspec.json.decode(msgspec.json.encode(m.to_state())))
    for x in _normal_stream(60, seed=5):
        m.learn_one(x)
        back.learn_one(x)
    assert back.ready and np.array_equal(m.r, back.r)


def test_hst_rejects_a_foreign_state_and_bad_parameters():
    with pytest.raises(ValueError):
        HalfSpaceTrees.from_state({"algorithm": "isolation-forest"})
    with pytest.raises(ValueError):
        HalfSpaceTrees(())
    with pytest.raises(ValueError):
        HalfSpaceTrees(FEATURES, height=0)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(finite, finite, finite), min_size=30, max_size=80),
    probe=st.tuples(finite, finite, finite),
)
def test_hst_property_scores_bounded_and_persistence_exact(rows, probe):
    m = HalfSpaceTrees(FEATURES, n_trees=5, height=4, window_size=10, seed=7)
    for r in rows:
        m.learn_one(dict(zip(FEATURES, r, strict=True)))
    x = dict(zip(FEATURES, probe, strict=True))
    s = m.score_one(x)
    assert 0.0 <= s <= 1.0
    back = HalfSpaceTrees.from_state(msgspec.json.decode(msgspec.json.encode(m.to_state())))
    assert back.score_one(x) == s
    # the reference window's total mass at the root is exactly one window
    assert int(m.r[:, 0].sum()) == m.n_trees * m.window_size
