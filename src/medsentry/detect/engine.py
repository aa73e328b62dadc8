"""The streaming detection engine: events in, de-duplicated alerts out.

The same object serves a capture file, a replayed capture and a live interface: it only sees
events, in order, batch by batch. With a store, detector state (baselines, model thresholds,
windows) and alerts are loaded at start and written by `commit()`, so a restart continues
where it stopped instead of relearning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from medsentry.detect.base import (
    STATUS_CLOSED,
    Alert,
    AlertDraft,
    Detector,
    aggregate,
    draft_key,
    new_alert,
)
from medsentry.detect.context import DetectContext, DeviceInfo
from medsentry.errors import MedsentryError
from medsentry.events.base import Event

if TYPE_CHECKING:
    from medsentry.store import Store

# Open alerts kept in memory; the oldest (by last_seen) are evicted to the store beyond it.
MAX_OPEN_ALERTS = 50_000
# Capture ids remembered as processed.
MAX_CAPTURES = 10_000


class AlertSink(Protocol):
    """An output: receives each newly raised alert (store, JSON lines, syslog, CEF, webhook)."""

    def send(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


def devices_from_store(store: Store) -> list[DeviceInfo]:
    """The inventory's devices, when the inventory engine is installed and has run."""
    try:
        from medsentry.inventory.store import load_devices  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        devices = load_devices(store)
    except Exception:
        return []
    out: list[DeviceInfo] = []
    for d in devices:
        info = DeviceInfo(
            device_id=d.device_id,
            category=d.category.value if d.category is not None else None,
            medical=d.medical,
            criticality=d.criticality,
            hostname=d.hostname,
        )
        out.append(info)
    return out


def context_from_devices(devices: Iterable[Any], learning_ns: int = 0) -> DetectContext:
    """A context from inventory `Device` structs (ips, mac, category ...)."""
    ctx = DetectContext(learning_ns=learning_ns)
    for d in devices:
        info = DeviceInfo(
            device_id=d.device_id,
            category=d.category.value if d.category is not None else None,
            medical=d.medical,
            criticality=d.criticality,
            hostname=d.hostname,
        )
        ctx.add_device(info, d.ips, d.mac)
    return ctx


class DetectionEngine:
    """Run detectors over events; aggregate their drafts into alerts; persist with a store."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        store: Store | None = None,
        *,
        learning_ns: int = 0,
        sinks: Sequence[AlertSink] = (),
        ledger: bool = True,
        context: DetectContext | None = None,
    ) -> None:
        ids = [d.detector_id for d in detectors]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            from medsentry.errors import ConfigError

            raise ConfigError(f"detector ids must be unique: {sorted(dup)}")
        self.detectors = list(detectors)
        self.store = store
        self.sinks = list(sinks)
        self.ledger = ledger
        self.ctx = context or DetectContext(learning_ns=learning_ns)
        if context is not None and learning_ns:
            self.ctx.learning_ns = learning_ns
        self.open: dict[str, Alert] = {}  # dedup_key -> open alert
        self.dirty: dict[str, Alert] = {}  # alert_id -> alert changed since the last commit
        self.raised = 0
        self.events = 0
        self._by_kind: dict[type, list[Detector]] = {}
        self._observers: dict[type, list[Callable[[Event, DetectContext], Any]]] = {}
        self._all_kinds = [d for d in self.detectors if not d.kinds]
        # only detectors with a window to close are ticked after each batch
        self._tickers = [d for d in self.detectors if type(d).tick is not Detector.tick]
        self._flushers = [d for d in self.detectors if type(d).flush is not Detector.flush]
        self._was_learning: bool | None = None
        self.captures: list[str] = []  # capture ids already run through (a re-scan is skipped)
        self._ledger_items: list[tuple[str, dict[str, Any], str]] = []
        if store is not None:
            self._load(store)

    # --- state ---------------------------------------------------------------------------------
    def _load(self, store: Store) -> None:
        from medsentry.detect import store as dstore

        if not self.ctx.by_ip and not self.ctx.by_mac:
            self._add_inventory_addresses(store)
        states = dstore.load_states(store)
        engine_state = states.pop("_engine", None)
        try:
            if engine_state:
                self.ctx.start_ns = engine_state.get("start_ns")
                self.ctx.now_ns = engine_state.get("now_ns", 0)
                self.captures = list(engine_state.get("captures", []))
        except Exception as exc:  # stored JSON of another shape: damaged, not a bug here
            raise _damaged_state("_engine", exc) from None
        for det in self.detectors:
            st = states.get(det.detector_id)
            if st is not None:
                try:
                    det.load_state(st)
                except MedsentryError:  # the detector named the damage itself
                    raise
                except Exception as exc:
                    raise _damaged_state(det.detector_id, exc) from None
        for alert in dstore.load_open_alerts(store):
            self.open[alert.dedup_key] = alert

    def _add_inventory_addresses(self, store: Store) -> None:
        try:
            from medsentry.inventory.store import load_devices  # type: ignore[import-not-found]

            devices = load_devices(store)
        except Exception:
            return
        for d in devices:
            info = self.ctx.by_mac.get(d.mac or "") or DeviceInfo(
                device_id=d.device_id,
                category=d.category.value if d.category is not None else None,
                medical=d.medical,
                criticality=d.criticality,
                hostname=d.hostname,
            )
            self.ctx.add_device(info, d.ips, d.mac)

    def refresh_devices(self) -> None:
        """Reload the inventory's devices (after the inventory engine stored new ones)."""
        if self.store is not None:
            self._add_inventory_addresses(self.store)

    def commit(self, *, state: bool = True) -> dict[str, int]:
        """Write changed alerts and (with `state`) every detector's state, in one transaction.

        A live session commits alerts at every interval and the learned state less often
        (`state=False` in between): the state of thousands of device baselines is large.
        """
        if self.store is None:
            self.dirty.clear()
            return {"alerts": 0}
        from medsentry.detect import store as dstore

        self._fold_accepts(dstore.take_accepts(self.store))
        states: dict[str, Any] = {}
        if state:
            states = {d.detector_id: d.state() for d in self.detectors}
            states["_engine"] = {
                "start_ns": self.ctx.start_ns,
                "now_ns": self.ctx.now_ns,
                "captures": self.captures[-MAX_CAPTURES:],
            }
        n = dstore.save(self.store, list(self.dirty.values()), states)
        for a in self.dirty.values():
            if a.status == STATUS_CLOSED and self.open.get(a.dedup_key) is a:
                del self.open[a.dedup_key]  # closed meanwhile: a repeat raises a new alert
        self.dirty.clear()
        return {"alerts": n}

    def _fold_accepts(self, accepts: list[tuple[str, str | None]]) -> None:
        """Baseline acceptances made by `medsentry baseline accept` while this engine ran."""
        for det in self.detectors:
            accept = getattr(det, "accept", None)
            if accept is None or det.source != "baseline":
                continue
            for device, dimension in accepts:
                accept(device, dimension)

    # --- processing ----------------------------------------------------------------------------
    def _detectors_for(self, etype: type) -> list[Detector]:
        ds = self._by_kind.get(etype)
        if ds is None:
            kind = etype.__struct_config__.tag  # type: ignore[attr-defined]
            ds = [d for d in self.detectors if d.kinds and kind in d.kinds] + self._all_kinds
            self._by_kind[etype] = ds
        return ds

    def _observers_for(self, etype: type) -> list[Callable[[Event, DetectContext], Any]]:
        """The `observe` methods an event type goes to, resolved once per type."""
        obs = self._observers[etype] = [d.observe for d in self._detectors_for(etype)]
        return obs

    def process(self, events: Iterable[Event]) -> list[Alert]:
        """Feed events in order; return the alerts raised or updated by them (each once)."""
        touched: dict[str, Alert] = {}
        ctx = self.ctx
        observers = self._observers.get
        accept = self._accept
        n = 0
        forced = ctx.forced_learning
        learning_ns = ctx.learning_ns
        start = ctx.start_ns
        now = ctx.now_ns
        learning = self._was_learning
        clock_moved = True
        for event in events:
            n += 1
            ts = event.ts_ns
            if start is None:
                start = ctx.start_ns = ts
            if ts > now:
                now = ctx.now_ns = ts
                clock_moved = True
            if clock_moved:
                # the learning period (DetectContext.learning, inlined: this loop is the hot
                # path); it can only change when the clock moves
                clock_moved = False
                now_learning = forced if forced is not None else now - start < learning_ns
                if now_learning is not learning:
                    if learning and not now_learning:
                        self._end_learning()
                    learning = self._was_learning = now_learning
            etype = type(event)
            obs = observers(etype)
            if obs is None:
                obs = self._observers_for(etype)
            for observe in obs:
                drafts = observe(event, ctx)
                if drafts:
                    for draft in drafts:
                        a = accept(draft)
                        touched[a.alert_id] = a
        self.events += n
        for det in self._flushers:
            det.flush()
        for det in self._tickers:
            drafts = det.tick(ctx.now_ns, ctx)
            for draft in drafts:
                a = self._accept(draft)
                touched[a.alert_id] = a
        self._write_ledger()
        return list(touched.values())

    def _end_learning(self) -> None:
        for det in self.detectors:
            end = getattr(det, "end_learning", None)
            if end is not None:
                end(self.ctx)

    def _accept(self, draft: AlertDraft) -> Alert:
        key = draft_key(draft)
        alert = self.open.get(key)
        if alert is not None and alert.status != STATUS_CLOSED:
            aggregate(alert, draft)
            self.dirty[alert.alert_id] = alert
            return alert
        alert = new_alert(draft, self.ctx.capture_id)
        self.open[key] = alert
        self.dirty[alert.alert_id] = alert
        self.raised += 1
        if len(self.open) > MAX_OPEN_ALERTS:
            self._evict()
        self._announce(alert)
        return alert

    def _evict(self) -> None:
        """Bound memory: forget the least recently seen open alerts (they stay in the store)."""
        keep = sorted(self.open.values(), key=lambda a: a.last_seen_ns)
        for a in keep[: len(keep) - MAX_OPEN_ALERTS * 9 // 10]:
            del self.open[a.dedup_key]

    def _announce(self, alert: Alert) -> None:
        if self.ledger:
            self._ledger_items.append(("alert.raised", ledger_data(alert), "detect"))
        for sink in self.sinks:
            sink.send(alert)

    def _write_ledger(self) -> None:
        """The batch's raised alerts as one durable ledger append (one set of fsyncs)."""
        if self._ledger_items:
            from medsentry.ledger import ledger

            items, self._ledger_items = self._ledger_items, []
            ledger().append_many(items)

    def forget(self, alert_id: str) -> None:
        """Drop an alert closed elsewhere (CLI) from the open set."""
        for key, a in list(self.open.items()):
            if a.alert_id == alert_id:
                del self.open[key]

    def close(self) -> list[str]:
        """Drain and close the alert outputs; one line per output that lost alerts."""
        from medsentry.detect.outputs import delivery_problems

        for sink in self.sinks:
            sink.close()
        return delivery_problems(self.sinks)


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def ledger_data(alert: Alert) -> dict[str, Any]:
    """The PHI-free ledger entry of an alert (no evidence refs: they are in the store)."""
    return {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "source": alert.source,
        "severity": alert.severity,
        "device_id": alert.device_id,
        "technique_id": alert.technique_id,
        "title": alert.title,
        "first_seen": _iso(alert.first_seen_ns),  # I-JSON: no integers beyond 2^53 (RFC 7493)
        "status": alert.status,
        "recorded": _iso(time.time_ns()),
    }


def _damaged_state(detector_id: str, exc: Exception) -> Exception:
    from medsentry.store.damage import damaged

    return damaged(
        f"detect_state.state of {detector_id} is not the state it keeps ({type(exc).__name__})"
    )
