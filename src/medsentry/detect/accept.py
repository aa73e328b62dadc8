"""Accepting a baseline departure: the values join the device's baseline, the alert closes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medsentry.detect.base import SOURCE_BASELINE, STATUS_CLOSED
from medsentry.detect.baseline import BaselineDetector
from medsentry.detect.store import (
    AlertFilter,
    get_alert,
    list_alerts,
    load_states,
    queue_accepts,
    set_status,
    update_detector_state,
)
from medsentry.errors import InputError

if TYPE_CHECKING:
    from medsentry.store import Store


def accept_baseline(
    store: Store,
    *,
    alert_id: str | None = None,
    device: str | None = None,
    by: str,
    reason: str,
) -> list[dict[str, Any]]:
    """Move pending values into the stored baseline; close the alerts; ledger each step."""
    if alert_id is not None:
        a = get_alert(store, alert_id)
        if a is None:
            raise InputError(f"alert {alert_id!r}: no such alert")
        if a.source != SOURCE_BASELINE:
            from medsentry.detect.models.accept import BINDING_RULES, accept_binding

            if a.rule_id in BINDING_RULES:  # an IP-to-MAC binding held by the flow models
                return [accept_binding(store, a, by=by, reason=reason)]
            raise InputError(
                f"alert {a.alert_id} is a {a.source} alert ({a.rule_id}), not a baseline departure"
            )
        targets = [a]
    else:
        targets = [
            a
            for a in list_alerts(store, AlertFilter(device=device, status="open"))
            if a.source == SOURCE_BASELINE
        ]
    states = load_states(store)
    det = BaselineDetector()
    if "baseline" in states:
        det.load_state(states["baseline"])
    rows: list[dict[str, Any]] = []
    if device is not None and not targets:
        n = det.accept(device)
        if n == 0:
            raise InputError(f"device {device}: nothing pending to accept")
    for a in targets:
        dim = str(a.detail.get("dimension") or a.rule_id.removeprefix("baseline."))
        n = det.accept(a.device_id or "", dim)
        rows.append(
            {"alert_id": a.alert_id, "device_id": a.device_id, "dimension": dim, "values": n}
        )
    update_detector_state(store, "baseline", det.state())
    # a running engine (monitor, logs listen) folds these in before it next saves its state
    queue_accepts(store, [(r["device_id"], r["dimension"]) for r in rows] or [(device, None)])
    from medsentry.ledger import record

    for r, a in zip(rows, targets, strict=True):
        record("baseline.accepted", {**r, "by": by, "reason": reason}, actor=by)
        if a.status != STATUS_CLOSED:
            set_status(store, a.alert_id, STATUS_CLOSED, by, reason)
        r["status"] = STATUS_CLOSED
    return rows
