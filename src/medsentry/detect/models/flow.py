"""Flow-shape anomaly detectors: Half-Space Trees over host-agnostic flow features.

Three alerts come out of one detector:

- `model.flow_hst` (and `model.flow_record_hst` for the flow table's records): a flow whose
  shape (sizes, rates, inter-packet times) the learning period never produced, above the
  `quantile` (default 0.999) of the learning-period scores.
- `model.relay_mitm`: a flow from or to an address whose MAC is not the one first bound to it
  (stateful evidence, trust on first use as arpwatch does) AND whose shape is unusual at the
  lower `relay_quantile` (default 0.99). A host that answers for someone else's address and
  also changes how the traffic flows (an extra hop adds delay, a proxy re-segments) is relaying
  the conversation and can alter it in passing: adversary-in-the-middle with manipulation of
  what the receiver sees. Either fact alone is weaker evidence; together they are one alert.
- `net.flow_binding_mismatch`: the re-bound address alone (a spoofed source whose traffic
  looks ordinary): every such flow, aggregated into one alert per address. `accept_binding`
  takes a legitimate change (a replaced NIC, a DHCP re-assignment) into the baseline.

Thresholds are fixed when the learning period ends, from the scores of that period (taken once
the model has a reference window), and stored with the trees and the bindings.

Per device category: when the inventory knows the acting device's category (infusion pump,
patient monitor, modality, ...), that category also gets trees of its own, learned from its
flows only, and its flows are scored against them -- a PACS transfer is ordinary for a
modality and strange for an infusion pump. A category without a reference window at the end
of learning, or first seen after it, is scored by the model of all flows.

During learning the flows of a batch are learned together at its end (`flush`): their features
come from arrays and the trees score-then-learn them in one compiled pass, with the very
numbers that flow-by-flow learning gives (see `HalfSpaceTrees.learn_many`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from medsentry.detect.base import SOURCE_MODEL, SOURCE_RULE, AlertDraft, ModelDetector
from medsentry.detect.context import DetectContext, is_external
from medsentry.detect.models.features import (
    FLOW_RECORD_FEATURES,
    MONITORED_FLOW_FEATURES,
    flow_record_features,
    flow_record_matrix,
    monitored_flow_features,
    monitored_flow_matrix,
)
from medsentry.detect.models.hst import HalfSpaceTrees
from medsentry.detect.models.robust import RobustZScore
from medsentry.errors import StoreError
from medsentry.events.base import Event
from medsentry.events.flow import FlowRecord
from medsentry.events.telemetry import MonitoredFlow

# Address -> MAC bindings kept (bounded memory; later addresses are not bound once full).
MAX_BINDINGS = 100_000
# Device categories with a model of their own (bounded memory; the taxonomy has fewer).
MAX_CATEGORIES = 64
# Learning-period events kept for one batched learning pass (bounded memory).
MAX_PENDING = 8192

FlowModel = HalfSpaceTrees | RobustZScore
ALGORITHMS = ("half-space-trees", "robust-z")


def model_from_state(state: Mapping[str, Any]) -> FlowModel:
    if isinstance(state, Mapping) and state.get("algorithm") == "robust-z":
        return RobustZScore.from_state(state)
    return HalfSpaceTrees.from_state(state)


class CategoryModel:
    """One device category's trees, learning-period scores and thresholds."""

    def __init__(self, model: FlowModel) -> None:
        self.model = model
        self.calibration: list[float] = []
        self.threshold: float | None = None
        self.relay_threshold: float | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "model": self.model.to_state(),
            "calibration": self.calibration,
            "threshold": self.threshold,
            "relay_threshold": self.relay_threshold,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> CategoryModel:
        g = cls(model_from_state(state["model"]))
        g.calibration = [float(v) for v in state.get("calibration") or []]
        g.threshold = state.get("threshold")
        g.relay_threshold = state.get("relay_threshold")
        return g


def quantile_of(scores: list[float], q: float) -> float:
    """The empirical q-quantile (the same index rule as ModelDetector.calibrate)."""
    if not scores:
        return float("inf")
    s = sorted(scores)
    return s[min(len(s) - 1, int(q * len(s)))]


class FlowAnomalyDetector(ModelDetector):
    """Half-Space Trees over monitored-flow metrics, with the relay (MITM) correlation."""

    detector_id: ClassVar[str] = "model.flow_hst"
    kinds: ClassVar[frozenset[str]] = frozenset({"monitored_flow"})
    relay_rule_id: ClassVar[str] = "model.relay_mitm"
    binding_rule_id: ClassVar[str] = "net.flow_binding_mismatch"
    features: ClassVar[tuple[str, ...]] = MONITORED_FLOW_FEATURES
    event_type: ClassVar[type] = MonitoredFlow  # the events it judges (others: ignored)
    severity: ClassVar[str] = "medium"
    title: ClassVar[str] = "Flow unlike any in the learning period (online model)"
    technique_id: ClassVar[str] = "T0830"
    technique_name: ClassVar[str] = "Adversary-in-the-Middle"

    def __init__(
        self,
        *,
        quantile: float = 0.999,
        relay_quantile: float = 0.99,
        n_trees: int = 25,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
        keep_learning: bool = False,
        algorithm: str = "half-space-trees",
    ) -> None:
        if algorithm not in ALGORITHMS:
            from medsentry.errors import ConfigError

            raise ConfigError(f"unknown flow model {algorithm!r} (known: {', '.join(ALGORITHMS)})")
        self.algorithm = algorithm
        self._hst = {
            "n_trees": n_trees,
            "height": height,
            "window_size": window_size,
            "seed": seed,
        }
        # learning-period events whose learning is deferred to `flush` (see `observe`), and
        # for each category model the positions of its events among them
        self._pending: list[Event] = []
        self._pending_groups: dict[str, list[int]] = {}
        self._model: FlowModel
        self._calibration: list[float] = []
        self._categories: dict[str, CategoryModel] = {}
        model = self._new_model()
        super().__init__(model, self._featurize, quantile=quantile, keep_learning=keep_learning)
        self.relay_quantile = relay_quantile
        self.relay_threshold: float | None = None
        self.bindings: dict[str, str] = {}  # IP -> the MAC first seen with it

    # What the model learned is read through these: a deferred batch is learned first.
    @property  # type: ignore[override]
    def model(self) -> FlowModel:
        if self._pending:
            self.flush()
        return self._model

    @model.setter
    def model(self, model: FlowModel) -> None:
        if self._pending:
            self.flush()
        self._model = model

    @property  # type: ignore[override]
    def calibration(self) -> list[float]:
        if self._pending:
            self.flush()
        return self._calibration

    @calibration.setter
    def calibration(self, scores: list[float]) -> None:
        if self._pending:
            self.flush()
        self._calibration = scores

    @property
    def categories(self) -> dict[str, CategoryModel]:
        if self._pending:
            self.flush()
        return self._categories

    @categories.setter
    def categories(self, categories: dict[str, CategoryModel]) -> None:
        if self._pending:
            self.flush()
        self._categories = categories

    def _new_model(self) -> FlowModel:
        if self.algorithm == "robust-z":
            return RobustZScore(self.features)
        return HalfSpaceTrees(self.features, **self._hst)

    # --- features and bindings ------------------------------------------------------------------
    def _featurize(self, event: Event, ctx: DetectContext) -> Mapping[str, float] | None:
        if isinstance(event, MonitoredFlow):
            return monitored_flow_features(event)
        return None

    def _rebound(self, ip: str | None, mac: str | None) -> str | None:
        """The MAC first bound to `ip` when `mac` differs from it; binds a new address."""
        if not ip or not mac or is_external(ip):
            return None  # a routed (global) address arrives with its router's MAC
        bound = self.bindings.get(ip)
        if bound is None:
            if len(self.bindings) < MAX_BINDINGS:
                self.bindings[ip] = mac
            return None
        return bound if bound != mac else None

    def accept_binding(self, ip: str, mac: str) -> None:
        """Take a new IP-to-MAC binding into the baseline (an analyst's decision)."""
        self.bindings[ip] = mac

    # --- learning and calibration ---------------------------------------------------------------
    def calibrate(self) -> float:
        if self._pending:
            self.flush()
        self.relay_threshold = quantile_of(self.calibration, self.relay_quantile)
        for g in self.categories.values():
            if g.threshold is None and g.calibration:
                g.relay_threshold = quantile_of(g.calibration, self.relay_quantile)
                g.threshold = quantile_of(g.calibration, self.quantile) * self.margin
                g.calibration = []
        return super().calibrate()

    def _category(self, event: Event, ctx: DetectContext) -> str | None:
        client = getattr(event, "client", None)
        d = ctx.device(client, getattr(event, "client_mac", None))
        return d.category if d is not None else None

    def _learn(self, scores: list[float], model: FlowModel, x: Mapping[str, float]) -> None:
        # scores before the first reference window mean nothing: not calibration data
        if model.ready and len(scores) < self.max_calibration:
            scores.append(model.score_one(x))
        model.learn_one(x)

    def _learn_rows(self, scores: list[float], model: FlowModel, X: np.ndarray) -> None:
        """`_learn` of each row of X (features in order), in order, as one batch."""
        if isinstance(model, HalfSpaceTrees):
            model.learn_many(X, scores, self.max_calibration)
            return
        for row in X.tolist():
            self._learn(scores, model, dict(zip(self.features, row, strict=True)))

    def _matrix(self, events: list[Event]) -> np.ndarray:
        return monitored_flow_matrix(events)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Learn the deferred learning-period events, in their order.

        During learning `observe` only keeps the event (and its category): the model's
        reference profile changes only at the end of a window, so scoring then learning each
        event of a batch in one compiled pass gives the very trees, masses and calibration
        scores that event-by-event learning gives. The engine calls this after each batch;
        reading `model`, `calibration` or `categories`, scoring, calibrating and `state()` call
        it first, so no one sees a model that is behind its events.
        """
        events, groups = self._pending, self._pending_groups
        if not events:
            return
        self._pending, self._pending_groups = [], {}
        X = self._matrix(events)
        self._learn_rows(self._calibration, self._model, X)
        for category, rows in groups.items():
            g = self._categories.get(category)
            if g is not None:
                self._learn_rows(g.calibration, g.model, X[rows])

    def _scorer(self, category: str | None) -> tuple[FlowModel, float, float, str]:
        """(model, threshold, relay threshold, scope) that judges a flow of this category."""
        g = self.categories.get(category) if category else None
        if g is not None and g.model.ready and g.threshold is not None:
            assert g.relay_threshold is not None and category is not None
            return g.model, g.threshold, g.relay_threshold, category
        assert self.threshold is not None and self.relay_threshold is not None
        return self.model, self.threshold, self.relay_threshold, "all"

    def observe(self, event: Event, ctx: DetectContext) -> list[AlertDraft]:
        if not isinstance(event, self.event_type):
            return []
        client, server = event.client, event.server  # type: ignore[attr-defined]
        client_mac, server_mac = event.client_mac, event.server_mac  # type: ignore[attr-defined]
        rebound = []
        bindings = self.bindings
        # an address already bound to this very MAC is never re-bound: `_rebound` is skipped
        # (nor is an address seen without a MAC)
        if client_mac is not None and bindings.get(client) != client_mac:
            bound = self._rebound(client, client_mac)
            if bound is not None:
                rebound.append((client, bound, client_mac))
        if server_mac is not None and bindings.get(server) != server_mac:
            bound = self._rebound(server, server_mac)
            if bound is not None:
                rebound.append((server, bound, server_mac))
        # `_category` (ctx.device), inlined
        d = ctx.by_ip.get(client) if client is not None else None
        if d is None and client_mac is not None:
            d = ctx.by_mac.get(client_mac)
        category = d.category if d is not None else None
        if ctx.learning:
            # learned in order at the next `flush` (the end of the engine's batch at the latest)
            i = len(self._pending)
            self._pending.append(event)
            if category:
                g = self._categories.get(category)
                if g is None and len(self._categories) < MAX_CATEGORIES:
                    g = self._categories[category] = CategoryModel(self._new_model())
                if g is not None:
                    rows = self._pending_groups.get(category)
                    if rows is None:
                        rows = self._pending_groups[category] = []
                    rows.append(i)
            if i + 1 >= MAX_PENDING:
                self.flush()
            return []
        if self._pending:
            self.flush()
        x = self.featurize(event, ctx)
        if x is None:
            return []
        if self.threshold is None or self.relay_threshold is None:
            self.calibrate()
        model, threshold, relay_threshold, scope = self._scorer(category)
        score = model.score_one(x)
        device = ctx.device_of_event(event)
        if rebound and score > relay_threshold:
            ip, bound, mac = rebound[0]
            return [
                AlertDraft(
                    rule_id=self.relay_rule_id,
                    source=SOURCE_MODEL,
                    severity="high",
                    title=(
                        "Traffic of a re-bound address relayed with an altered flow shape "
                        "(adversary in the middle, data alteration)"
                    ),
                    technique_id="T0830",
                    technique_name="Adversary-in-the-Middle",
                    ts_ns=event.ts_ns,
                    device_id=device,
                    evidence=[ctx.evidence(event)],
                    dedup_key=f"{self.relay_rule_id}|{device or '-'}|{ip}",
                    detail={
                        "ip": ip,
                        "bound_mac": bound,
                        "seen_mac": mac,
                        "score": round(score, 6),
                        "threshold": round(relay_threshold, 6),
                        "model": self.algorithm,
                        "scope": scope,
                    },
                    score=score,
                )
            ]
        if rebound:
            ip, bound, mac = rebound[0]
            return [
                AlertDraft(
                    rule_id=self.binding_rule_id,
                    source=SOURCE_RULE,
                    severity="high",
                    title="Traffic of an address from a MAC that is not the one bound to it",
                    technique_id="T0830",
                    technique_name="Adversary-in-the-Middle",
                    ts_ns=event.ts_ns,
                    device_id=device,
                    evidence=[ctx.evidence(event, f"{ip} seen at {mac} (bound to {bound})")],
                    dedup_key=f"{self.binding_rule_id}|{device or '-'}|{ip}",
                    detail={"ip": ip, "bound_mac": bound, "seen_mac": mac},
                )
            ]
        if score > threshold:
            return [
                self.model_alert(
                    event, ctx, score, threshold, device, model=self.algorithm, scope=scope
                )
            ]
        if self.keep_learning and not rebound:
            model.learn_one(x)
        return []

    # --- persistence ----------------------------------------------------------------------------
    def model_state(self) -> Any:
        return self.model.to_state()

    def load_model_state(self, state: Any) -> None:
        try:
            self.model = model_from_state(state)
        except ValueError as exc:
            raise StoreError(f"detector state {self.detector_id}: {exc}") from exc

    def state(self) -> dict[str, Any]:
        out = super().state()
        out["relay_threshold"] = self.relay_threshold
        out["bindings"] = dict(self.bindings)
        out["categories"] = {c: g.to_state() for c, g in self.categories.items()}
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.relay_threshold = state.get("relay_threshold")
        self.bindings = dict(state.get("bindings") or {})
        try:
            self.categories = {
                str(c): CategoryModel.from_state(g)
                for c, g in (state.get("categories") or {}).items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"detector state {self.detector_id}: categories: {exc}") from exc


class FlowRecordAnomalyDetector(FlowAnomalyDetector):
    """The same model over the flow table's `FlowRecord`s (captures, live interfaces)."""

    detector_id: ClassVar[str] = "model.flow_record_hst"
    kinds: ClassVar[frozenset[str]] = frozenset({"flow"})
    relay_rule_id: ClassVar[str] = "model.flow_record_relay_mitm"
    binding_rule_id: ClassVar[str] = "net.flow_record_binding_mismatch"
    features: ClassVar[tuple[str, ...]] = FLOW_RECORD_FEATURES
    event_type: ClassVar[type] = FlowRecord

    def _featurize(self, event: Event, ctx: DetectContext) -> Mapping[str, float] | None:
        if isinstance(event, FlowRecord):
            return flow_record_features(event)
        return None

    def _matrix(self, events: list[Event]) -> np.ndarray:
        return flow_record_matrix(events)  # type: ignore[arg-type]
