"""Vital-sign integrity: limits from the data file, consistency, the online step model."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from detect_models_streams import flow, vitals

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.models import vitals as vmod
from medsentry.detect.models.vitals import VitalsIntegrityDetector, VitalStepModel
from medsentry.errors import ConfigError


def _learned(n: int = 1500) -> tuple[DetectionEngine, VitalsIntegrityDetector]:
    det = VitalsIntegrityDetector()
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(0)
    hr = 75.0
    events = []
    for i in range(n):
        hr = float(np.clip(hr + rng.choice([-1.0, 0.0, 0.0, 1.0]), 60, 90))
        t = 36.8 + float(rng.choice([0.0, 0.0, 0.1]))
        events.append(flow(i, rng=rng, v=vitals(heart_rate_bpm=hr, pulse_rate_bpm=hr,
                                                   temperature_c=t)))  # fmt: skip
    engine.process(events)
    engine.ctx.forced_learning = False
    return engine, det


def test_vitals_limits_come_from_the_data_file():
    limits = vmod.vital_limits()
    assert limits["heart_rate_bpm"] == (0.0, 480.0)
    assert limits["temperature_c"] == (10.0, 47.0)
    assert "st_segment_mv" not in limits


def test_vitals_malformed_limits_file_is_a_config_error(monkeypatch, tmp_path: Path):
    (tmp_path / "hl7_vital_limits.yaml").write_text("sources: [x]\nvitals:\n  - name: heart rate\n")

    class Files:
        def joinpath(self, name):
            return tmp_path / name

    monkeypatch.setattr(vmod.resources, "files", lambda _pkg: Files())
    vmod.vital_limits.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"vitals\[0\] is malformed"):
            vmod.vital_limits()
    finally:
        vmod.vital_limits.cache_clear()


def test_vitals_impossible_and_inconsistent_values_alert_even_while_learning():
    det = VitalsIntegrityDetector()
    engine = DetectionEngine([det], ledger=False)
    engine.ctx.forced_learning = True
    rng = np.random.default_rng(1)
    out = engine.process([flow(0, rng=rng, v=vitals(spo2_pct=140.0))])
    assert [(a.rule_id, a.detail["vital"]) for a in out] == [
        ("vitals.impossible_value", "spo2_pct")
    ]
    out = engine.process([flow(1, rng=rng, v=vitals(systolic_mmhg=70.0, diastolic_mmhg=90.0))])
    assert [a.rule_id for a in out] == ["vitals.inconsistent"]
    assert engine.process([flow(2, rng=rng, v=vitals(heart_rate_bpm=0.0))]) == []  # dropout


def test_vitals_step_model_scales_and_scores():
    m = VitalStepModel()
    for d in (0.0, 1.0, -1.0, 0.0):
        m.learn_one({"heart_rate_bpm": d})
    assert m.scale("heart_rate_bpm") == 1.0  # rms 0.71 is below the 1/min resolution
    assert m.score_one({"heart_rate_bpm": 30.0}) == 30.0
    assert m.scale("temperature_c") == 0.1  # never learned: the resolution
    back = VitalStepModel.from_state(msgspec.json.decode(msgspec.json.encode(m.to_state())))
    assert back.score_one({"heart_rate_bpm": 7.0}) == m.score_one({"heart_rate_bpm": 7.0})


def test_vitals_spike_alerts_once_and_the_true_reading_after_it_does_not():
    engine, det = _learned()
    assert det.calibrate() > 0
    rng = np.random.default_rng(2)
    normal = vitals(heart_rate_bpm=80.0, pulse_rate_bpm=80.0)
    engine.process([flow(4998, rng=rng, v=normal)])  # may jump from the last learned reading
    engine.process([flow(4999, rng=rng, v=normal)])  # confirms it
    assert engine.process([flow(5000, rng=rng, v=normal)]) == []
    forged = vitals(heart_rate_bpm=140.0, pulse_rate_bpm=80.0)
    out = engine.process([flow(5001, rng=rng, v=forged)])
    assert [(a.rule_id, a.detail["vital"]) for a in out] == [
        ("model.vitals_jump", "heart_rate_bpm")
    ]
    assert engine.process([flow(5002, rng=rng, v=normal)]) == []


def test_vitals_level_shift_alerts_once_then_becomes_the_reference():
    engine, _ = _learned()
    rng = np.random.default_rng(3)
    for i in range(3):
        engine.process([flow(5990 + i, rng=rng, v=vitals(temperature_c=36.8))])
    assert engine.process([flow(6000, rng=rng, v=vitals(temperature_c=36.8))]) == []
    assert len(engine.process([flow(6001, rng=rng, v=vitals(temperature_c=39.0))])) == 1
    for i in range(5):  # the new level persists: confirmed, no more alerts
        assert engine.process([flow(6002 + i, rng=rng, v=vitals(temperature_c=39.0))]) == []


def test_vitals_stored_state_holds_no_reading():
    _engine, det = _learned(400)
    det.calibrate()
    blob = msgspec.json.encode(det.state()).decode()
    state = msgspec.json.decode(blob)
    assert set(state) == {"threshold", "calibration", "model"}
    assert set(state["model"]) == {"n", "sumsq", "min_step"}
    assert "36.8" not in blob and "75.0" not in blob  # no raw value, only step statistics
    # the previous readings live in memory only
    assert det._refs
    fresh = VitalsIntegrityDetector()
    fresh.load_state(state)
    assert not fresh._refs and fresh.threshold == det.threshold
