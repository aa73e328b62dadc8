"""The detection contract: one Detector interface, the Alert record, the engine entry point.

Every detector -- a rule, a behavioural baseline, an online anomaly model -- is a `Detector`:

    class MyRule(Detector):
        detector_id = "dicom.store_to_new_peer"
        kinds = frozenset({"dicom_dimse"})            # event kinds it wants (empty: all)
        def observe(self, event, ctx) -> list[AlertDraft]: ...
        def state(self) -> dict: ...                  # msgspec-serializable, stored in the DB
        def load_state(self, state: dict) -> None: ...

Online models follow river's method set (`learn_one(x)`, `score_one(x) -> float`) and are put
behind the same interface by `ModelDetector`, which turns an event into a feature dict,
learns during the learning period, calibrates its alert threshold on the scores of that
period and scores afterwards.

The engine (`medsentry.detect.engine.DetectionEngine`) dispatches events by kind, resolves
devices, de-duplicates drafts into `Alert`s (one open alert per `dedup_key`, repeats counted)
and, with a store, persists alerts and detector state so that a restart does not relearn:

    engine = DetectionEngine(default_detectors(), store=store)
    alerts = engine.process(events)   # new or updated alerts, in order

Severities are the five of CVSS/ECS usage: info, low, medium, high, critical.
Techniques are MITRE ATT&CK for ICS ids ("T0830") with their names.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import msgspec

from medsentry.events.base import Event

if TYPE_CHECKING:
    from medsentry.detect.context import DetectContext

# Alert severity, least to most severe.
SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Alert lifecycle.
STATUS_NEW = "new"
STATUS_ACKNOWLEDGED = "acknowledged"
STATUS_CLOSED = "closed"
STATUSES = (STATUS_NEW, STATUS_ACKNOWLEDGED, STATUS_CLOSED)

# What raised an alert.
SOURCE_RULE = "rule"
SOURCE_BASELINE = "baseline"
SOURCE_MODEL = "model"
SOURCE_LOG = "log"

# Evidence kept per alert: the first ones and the most recent ones (bounded memory and rows).
MAX_EVIDENCE = 20

Scalar = str | int | float | bool | None


class EvidenceRef(msgspec.Struct, frozen=True, kw_only=True):
    """One observation behind an alert: the event kind, its time, its flow, a PHI-free summary."""

    kind: str  # event kind ("flow", "dicom_dimse", "arp", "syslog", ...)
    ts_ns: int
    flow_id: str | None = None
    ref: str = ""  # short description, e.g. "10.0.0.5:51000 -> 10.0.0.9:104 C-STORE-RQ CT"


class AlertDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What a detector returns: one observation of something alert-worthy.

    `dedup_key` groups repeats: drafts with the same key aggregate into one open alert
    (count, first/last seen, evidence). It defaults to rule + device when empty.
    `detail` holds small PHI-free facts (the new peer, the port count, the baseline dimension
    and value a baseline alert is about, so that `baseline accept` can take it in).
    """

    rule_id: str
    severity: str
    title: str
    technique_id: str
    technique_name: str
    ts_ns: int
    device_id: str | None = None
    source: str = SOURCE_RULE
    evidence: list[EvidenceRef] = msgspec.field(default_factory=list)
    dedup_key: str = ""
    detail: dict[str, Scalar] = msgspec.field(default_factory=dict)
    score: float | None = None  # a model's anomaly score, when a model raised it


class Alert(msgspec.Struct, kw_only=True):
    """A stored alert: aggregated repeats of one (rule, device, key), with its lifecycle."""

    alert_id: str
    rule_id: str
    source: str  # rule, baseline, model, log
    severity: str
    device_id: str | None
    technique_id: str
    technique_name: str
    title: str
    dedup_key: str
    first_seen_ns: int
    last_seen_ns: int
    count: int = 1
    evidence: list[EvidenceRef] = msgspec.field(default_factory=list)
    detail: dict[str, Scalar] = msgspec.field(default_factory=dict)
    score: float | None = None
    status: str = STATUS_NEW
    status_by: str | None = None
    status_reason: str | None = None
    status_ns: int | None = None  # wall-clock time of the last lifecycle change
    capture_id: str | None = None

    @property
    def open(self) -> bool:
        return self.status != STATUS_CLOSED


def alert_id_for(dedup_key: str, first_seen_ns: int) -> str:
    """A stable id: the same capture replayed yields the same ids (16 hex digits)."""
    return hashlib.sha256(f"{dedup_key}|{first_seen_ns}".encode()).hexdigest()[:16]


def draft_key(draft: AlertDraft) -> str:
    return draft.dedup_key or f"{draft.rule_id}|{draft.device_id or '-'}"


def new_alert(draft: AlertDraft, capture_id: str | None = None) -> Alert:
    key = draft_key(draft)
    return Alert(
        alert_id=alert_id_for(key, draft.ts_ns),
        rule_id=draft.rule_id,
        source=draft.source,
        severity=draft.severity,
        device_id=draft.device_id,
        technique_id=draft.technique_id,
        technique_name=draft.technique_name,
        title=draft.title,
        dedup_key=key,
        first_seen_ns=draft.ts_ns,
        last_seen_ns=draft.ts_ns,
        evidence=list(draft.evidence[:MAX_EVIDENCE]),
        detail=dict(draft.detail),
        score=draft.score,
        capture_id=capture_id,
    )


def aggregate(alert: Alert, draft: AlertDraft) -> None:
    """Fold a repeat into an open alert: count, times, bounded evidence, highest severity."""
    alert.count += 1
    alert.first_seen_ns = min(alert.first_seen_ns, draft.ts_ns)
    alert.last_seen_ns = max(alert.last_seen_ns, draft.ts_ns)
    if SEVERITY_RANK[draft.severity] > SEVERITY_RANK[alert.severity]:
        alert.severity = draft.severity
    if draft.score is not None and (alert.score is None or draft.score > alert.score):
        alert.score = draft.score
    if draft.evidence:
        ev = alert.evidence + list(draft.evidence)
        if len(ev) > MAX_EVIDENCE:  # keep the first half and the latest half
            half = MAX_EVIDENCE // 2
            ev = ev[:half] + ev[-(MAX_EVIDENCE - half) :]
        alert.evidence = ev
    alert.detail.update(draft.detail)  # the latest counts win


class Detector(abc.ABC):
    """One detector: a rule, a baseline or a model. Stateless rules return {} from `state`."""

    detector_id: ClassVar[str] = ""
    source: ClassVar[str] = SOURCE_RULE
    # Event kinds this detector wants (`Event.__struct_config__.tag`); empty means every kind.
    kinds: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def observe(self, event: Event, ctx: DetectContext) -> list[AlertDraft]:
        """Look at one event (in time order) and return the alerts it causes, usually none."""

    def state(self) -> dict[str, Any]:
        """Everything learned, as msgspec-serializable data (stored; survives a restart)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027  (stateless by default)
        """Restore what `state()` returned."""

    def tick(self, now_ns: int, ctx: DetectContext) -> list[AlertDraft]:
        """Called once per processed batch with the latest event time (windowed detectors)."""
        return []

    def flush(self) -> None:  # noqa: B027  (nothing deferred by default)
        """Finish work deferred while observing (a batched model update); raises no alert.
        Called once per processed batch, after its last event and before `tick`."""


@runtime_checkable
class OnlineModel(Protocol):
    """river's uniform method set for an online unsupervised model (higher score = stranger)."""

    def learn_one(self, x: Mapping[str, float]) -> None: ...

    def score_one(self, x: Mapping[str, float]) -> float: ...


class ModelDetector(Detector):
    """An `OnlineModel` behind the Detector interface.

    - `featurize(event, ctx)` returns the feature dict of an event, or None to ignore it.
      Features must not identify a host (no addresses, MACs, ports, packet numbers).
    - During the learning period (`ctx.learning`) the model learns every featurized event and
      the detector keeps the learning-period scores; the alert threshold is the `quantile` of
      those scores (times `margin`), fixed when learning ends.
    - After it, each event is scored; a score above the threshold is an AlertDraft. With
      `keep_learning`, events below the threshold keep updating the model.
    Subclasses set `detector_id`, `technique_id`/`technique_name`, and override `model_state`
    / `load_model_state` when the model can be persisted (else it relearns: say so).
    """

    source = SOURCE_MODEL
    technique_id: ClassVar[str] = "T0830"
    technique_name: ClassVar[str] = "Adversary-in-the-Middle"
    severity: ClassVar[str] = "medium"
    title: ClassVar[str] = "Anomalous traffic (online model)"

    def __init__(
        self,
        model: OnlineModel,
        featurize: Callable[[Event, DetectContext], Mapping[str, float] | None],
        *,
        quantile: float = 0.995,
        margin: float = 1.0,
        keep_learning: bool = False,
        max_calibration: int = 100_000,
    ) -> None:
        self.model = model
        self.featurize = featurize
        self.quantile = quantile
        self.margin = margin
        self.keep_learning = keep_learning
        self.max_calibration = max_calibration
        self.calibration: list[float] = []
        self.threshold: float | None = None

    def calibrate(self) -> float:
        """Fix the threshold from the learning-period scores (called when learning ends)."""
        scores = sorted(self.calibration)
        if not scores:
            self.threshold = float("inf")
        else:
            i = min(len(scores) - 1, int(self.quantile * len(scores)))
            self.threshold = scores[i] * self.margin
        self.calibration = []
        return self.threshold

    def observe(self, event: Event, ctx: DetectContext) -> list[AlertDraft]:
        x = self.featurize(event, ctx)
        if x is None:
            return []
        if ctx.learning:
            if len(self.calibration) < self.max_calibration:
                self.calibration.append(self.model.score_one(x))
            self.model.learn_one(x)
            return []
        if self.threshold is None:
            self.calibrate()
        score = self.model.score_one(x)
        assert self.threshold is not None
        if score <= self.threshold:
            if self.keep_learning:
                self.model.learn_one(x)
            return []
        return [self.model_alert(event, ctx, score, self.threshold)]

    def model_alert(
        self,
        event: Event,
        ctx: DetectContext,
        score: float,
        threshold: float,
        device: str | None = None,
        **detail: Any,
    ) -> AlertDraft:
        """The alert for a score above the threshold (one per device, repeats aggregated)."""
        device = device if device is not None else ctx.device_of_event(event)
        return AlertDraft(
            rule_id=self.detector_id,
            source=SOURCE_MODEL,
            severity=self.severity,
            title=self.title,
            technique_id=self.technique_id,
            technique_name=self.technique_name,
            ts_ns=event.ts_ns,
            device_id=device,
            evidence=[ctx.evidence(event)],
            dedup_key=f"{self.detector_id}|{device or '-'}",
            detail={**detail, "score": round(score, 6), "threshold": round(threshold, 6)},
            score=score,
        )

    def model_state(self) -> Any:
        return None

    def load_model_state(self, state: Any) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "calibration": self.calibration,
            "model": self.model_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.threshold = state.get("threshold")
        self.calibration = list(state.get("calibration") or [])
        if state.get("model") is not None:
            self.load_model_state(state["model"])


def event_kind(event: Event) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


__all__ = [
    "MAX_EVIDENCE",
    "SEVERITIES",
    "SEVERITY_RANK",
    "STATUSES",
    "STATUS_ACKNOWLEDGED",
    "STATUS_CLOSED",
    "STATUS_NEW",
    "Alert",
    "AlertDraft",
    "Detector",
    "EvidenceRef",
    "ModelDetector",
    "OnlineModel",
    "aggregate",
    "alert_id_for",
    "draft_key",
    "event_kind",
    "new_alert",
]
