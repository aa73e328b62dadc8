"""Integrity of vital-sign telemetry: impossible values, inconsistent sets, jumps no body makes.

Three checks over `MonitoredFlow.vitals`, per patient stream (initiator -> responder):

- `vitals.impossible_value`: a reading outside the physiologically possible limits of
  `data/hl7_vital_limits.yaml` (the same limits the HL7 dissector uses; 0 is a sensor dropout).
- `vitals.inconsistent`: systolic pressure not above diastolic.
- `model.vitals_jump`: an online model of the step between consecutive readings of a stream.
  For each vital it learns the root mean square of the step (never below the sensor's
  resolution); a reading's score is its largest step in units of that scale. The alert
  threshold is a quantile of the learning-period scores. Each vital of a stream keeps two
  references: the last trusted reading and the last jump (unconfirmed). A step is measured to
  the nearer of the two, so a forged spike alerts once and the true reading after it does not,
  and a real level shift (a new patient, a re-sited probe) alerts once and is confirmed by the
  next reading near it, which then becomes the trusted reference.

Privacy: the previous reading of each stream lives in memory only (bounded); the stored state
holds the population step scales and the thresholds, and alerts name the vital, never a value.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import yaml

from medsentry import yamlfile
from medsentry.detect.base import SOURCE_RULE, AlertDraft, ModelDetector
from medsentry.detect.context import DetectContext
from medsentry.errors import ConfigError, StoreError
from medsentry.events.base import Event
from medsentry.events.telemetry import MonitoredFlow, VitalSigns

# VitalSigns field -> the `name` of its entry in hl7_vital_limits.yaml (ST has no limit there).
LIMIT_NAMES = {
    "temperature_c": "body temperature",
    "spo2_pct": "oxygen saturation",
    "pulse_rate_bpm": "heart rate",
    "heart_rate_bpm": "heart rate",
    "systolic_mmhg": "systolic blood pressure",
    "diastolic_mmhg": "diastolic blood pressure",
    "resp_rate_bpm": "respiratory rate",
}

# Display resolution of bedside monitors: the smallest step a reading can make.
MIN_STEP = {
    "temperature_c": 0.1,
    "spo2_pct": 1.0,
    "pulse_rate_bpm": 1.0,
    "systolic_mmhg": 1.0,
    "diastolic_mmhg": 1.0,
    "heart_rate_bpm": 1.0,
    "resp_rate_bpm": 1.0,
    "st_segment_mv": 0.01,
}

# Patient streams whose previous reading is kept (least recently seen dropped beyond it).
MAX_STREAMS = 10_000


@functools.cache
def vital_limits() -> dict[str, tuple[float, float]]:
    """VitalSigns field -> (min, max) from hl7_vital_limits.yaml (ConfigError when malformed)."""
    name = "hl7_vital_limits.yaml"
    try:
        doc = yamlfile.load(resources.files("medsentry.data").joinpath(name).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"knowledge file {name} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or not doc.get("sources"):
        raise ConfigError(f"knowledge file {name}: needs a mapping with `sources`")
    by_name: dict[str, tuple[float, float]] = {}
    for i, v in enumerate(doc.get("vitals") or []):
        try:
            by_name[str(v["name"])] = (float(v["min"]), float(v["max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"knowledge file {name}: vitals[{i}] is malformed: {exc}") from exc
    missing = sorted({n for n in LIMIT_NAMES.values() if n not in by_name})
    if missing:
        raise ConfigError(f"knowledge file {name}: no limits for {', '.join(missing)}")
    return {field: by_name[n] for field, n in LIMIT_NAMES.items()}


class VitalStepModel:
    """river-style online model of the step between consecutive readings (see module doc)."""

    def __init__(self, min_step: Mapping[str, float] | None = None) -> None:
        self.min_step = dict(MIN_STEP if min_step is None else min_step)
        self.n: dict[str, int] = {}
        self.sumsq: dict[str, float] = {}

    def scale(self, vital: str) -> float:
        n = self.n.get(vital, 0)
        rms = math.sqrt(self.sumsq[vital] / n) if n else 0.0
        return max(rms, self.min_step.get(vital, 1.0))

    def learn_one(self, x: Mapping[str, float]) -> None:
        for vital, step in x.items():
            self.n[vital] = self.n.get(vital, 0) + 1
            self.sumsq[vital] = self.sumsq.get(vital, 0.0) + step * step

    def score_one(self, x: Mapping[str, float]) -> float:
        return max((abs(step) / self.scale(v) for v, step in x.items()), default=0.0)

    def explain(self, x: Mapping[str, float]) -> str | None:
        """The vital with the largest scaled step."""
        if not x:
            return None
        return max(x, key=lambda v: abs(x[v]) / self.scale(v))

    def to_state(self) -> dict[str, Any]:
        return {"n": dict(self.n), "sumsq": dict(self.sumsq), "min_step": dict(self.min_step)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> VitalStepModel:
        m = cls(state.get("min_step"))
        m.n = {k: int(v) for k, v in (state.get("n") or {}).items()}
        m.sumsq = {k: float(v) for k, v in (state.get("sumsq") or {}).items()}
        return m


def _present(vitals: VitalSigns) -> dict[str, float]:
    """Readings that carry a value (0 is a dropout, not a measurement)."""
    return {k: v for k, v in vitals.items() if v != 0.0 and math.isfinite(v)}


class VitalsIntegrityDetector(ModelDetector):
    detector_id: ClassVar[str] = "model.vitals_jump"
    kinds: ClassVar[frozenset[str]] = frozenset({"monitored_flow"})
    severity: ClassVar[str] = "high"
    title: ClassVar[str] = "Vital-sign reading jumps further than the stream ever moves"
    technique_id: ClassVar[str] = "T0832"
    technique_name: ClassVar[str] = "Manipulation of View"

    def __init__(self, *, quantile: float = 0.999, warmup: int = 50) -> None:
        model = VitalStepModel()
        super().__init__(model, self._featurize, quantile=quantile)
        self.model: VitalStepModel = model
        self.limits = vital_limits()
        self.warmup = warmup  # steps learned before scores count for calibration
        # stream -> vital -> [trusted reading, unconfirmed jump or None] (memory only)
        self._refs: OrderedDict[tuple[str, str], dict[str, list[float | None]]] = OrderedDict()
        self._pending: tuple[tuple[str, str], dict[str, float]] | None = None

    def _featurize(self, event: Event, ctx: DetectContext) -> Mapping[str, float] | None:
        if not isinstance(event, MonitoredFlow) or event.vitals is None:
            return None
        key = (event.client, event.server)
        now = _present(event.vitals)
        self._pending = (key, now)
        refs = self._refs.get(key)
        if refs is None:
            return None
        steps: dict[str, float] = {}
        for v, value in now.items():
            ref = refs.get(v)
            if ref is None:
                continue
            trusted, jump = ref
            assert trusted is not None
            step = value - trusted
            if jump is not None and abs(value - jump) < abs(step):
                step = value - jump
            steps[v] = step
        return steps

    def _remember(self, jumped: frozenset[str] = frozenset()) -> None:
        """Update the stream's references: a vital that jumped is kept as unconfirmed."""
        if self._pending is None:
            return
        key, now = self._pending
        self._pending = None
        refs = self._refs.pop(key, {})
        for v, value in now.items():
            ref = refs.get(v)
            if ref is None:
                refs[v] = [value, None]
            elif v in jumped:
                ref[1] = value
            else:
                refs[v] = [value, None]
        self._refs[key] = refs
        if len(self._refs) > MAX_STREAMS:
            self._refs.popitem(last=False)

    def _rule(self, event: MonitoredFlow, ctx: DetectContext, rule: str, title: str, what: str):
        device = ctx.device_of_event(event)
        return AlertDraft(
            rule_id=rule,
            source=SOURCE_RULE,
            severity="high",
            title=title,
            technique_id=self.technique_id,
            technique_name=self.technique_name,
            ts_ns=event.ts_ns,
            device_id=device,
            evidence=[ctx.evidence(event)],
            dedup_key=f"{rule}|{device or '-'}|{what}",
            detail={"vital": what},
        )

    def _rules(self, event: Event, ctx: DetectContext) -> list[AlertDraft]:
        if not isinstance(event, MonitoredFlow) or event.vitals is None:
            return []
        out: list[AlertDraft] = []
        for vital, value in event.vitals.items():
            limit = self.limits.get(vital)
            if limit is not None and not (limit[0] <= value <= limit[1]):
                out.append(
                    self._rule(
                        event,
                        ctx,
                        "vitals.impossible_value",
                        "Physiologically impossible vital-sign value",
                        vital,
                    )
                )
        sys_, dia = event.vitals.systolic_mmhg, event.vitals.diastolic_mmhg
        if sys_ and dia and sys_ <= dia:
            out.append(
                self._rule(
                    event,
                    ctx,
                    "vitals.inconsistent",
                    "Systolic blood pressure not above diastolic",
                    "systolic_mmhg",
                )
            )
        return out

    def observe(self, event: Event, ctx: DetectContext) -> list[AlertDraft]:
        drafts = self._rules(event, ctx)
        x = self.featurize(event, ctx)
        if x is not None and x:
            if ctx.learning:
                warm = bool(self.model.n) and min(self.model.n.values()) >= self.warmup
                if warm and len(self.calibration) < self.max_calibration:
                    self.calibration.append(self.model.score_one(x))
                self.model.learn_one(x)
            else:
                if self.threshold is None:
                    self.calibrate()
                assert self.threshold is not None
                score = self.model.score_one(x)
                if score > self.threshold:
                    drafts.append(
                        self.model_alert(
                            event, ctx, score, self.threshold, vital=self.model.explain(x)
                        )
                    )
        jumped: frozenset[str] = frozenset()
        if x and self.threshold is not None and not ctx.learning:
            t = self.threshold
            jumped = frozenset(v for v, d in x.items() if abs(d) / self.model.scale(v) > t)
        self._remember(jumped)
        return drafts

    def model_state(self) -> Any:
        return self.model.to_state()

    def load_model_state(self, state: Any) -> None:
        try:
            self.model = VitalStepModel.from_state(state)
        except (AttributeError, TypeError, ValueError) as exc:
            raise StoreError(f"detector state {self.detector_id}: damaged ({exc})") from exc
