"""Alerts and detector state in the store; the alert lifecycle (acknowledge, close) with its trail.

Every lifecycle change is written to `alert_history` and to the audit ledger
(`alert.acknowledged`, `alert.closed`) in the same call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import delete, insert, select

from medsentry.detect.base import (
    SEVERITY_RANK,
    STATUS_ACKNOWLEDGED,
    STATUS_CLOSED,
    STATUSES,
    Alert,
    EvidenceRef,
)
from medsentry.detect.tables import alert_history, alerts, detect_state
from medsentry.errors import InputError, StoreError
from medsentry.store.damage import decode_stored

if TYPE_CHECKING:
    from medsentry.store import Store

_enc = msgspec.json.Encoder()
_evidence_dec = msgspec.json.Decoder(list[EvidenceRef])
_any_dec = msgspec.json.Decoder()
_detail_dec = msgspec.json.Decoder(dict[str, Any])  # an alert's detail is an object


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "source": alert.source,
        "severity": alert.severity,
        "device_id": alert.device_id,
        "technique_id": alert.technique_id,
        "technique_name": alert.technique_name,
        "title": alert.title,
        "dedup_key": alert.dedup_key[:512],
        "first_seen_ns": alert.first_seen_ns,
        "last_seen_ns": alert.last_seen_ns,
        "count": alert.count,
        "score": alert.score,
        "status": alert.status,
        "status_by": alert.status_by,
        "status_reason": alert.status_reason,
        "status_ns": alert.status_ns,
        "capture_id": alert.capture_id,
        "evidence": _enc.encode(alert.evidence).decode(),
        "detail": _enc.encode(alert.detail).decode(),
        "updated_at": datetime.now(UTC),
    }


def _alert(row: Any) -> Alert:
    return Alert(
        alert_id=row.alert_id,
        rule_id=row.rule_id,
        source=row.source,
        severity=row.severity,
        device_id=row.device_id,
        technique_id=row.technique_id,
        technique_name=row.technique_name,
        title=row.title,
        dedup_key=row.dedup_key,
        first_seen_ns=row.first_seen_ns,
        last_seen_ns=row.last_seen_ns,
        count=row.count,
        score=row.score,
        status=row.status,
        status_by=row.status_by,
        status_reason=row.status_reason,
        status_ns=row.status_ns,
        capture_id=row.capture_id,
        evidence=decode_stored(_evidence_dec, row.evidence, "alerts", "evidence", row.alert_id),
        detail=decode_stored(_detail_dec, row.detail, "alerts", "detail", row.alert_id),
    )


def save(store: Store, changed: Sequence[Alert], states: dict[str, Any]) -> int:
    """Upsert changed alerts and replace detector states, in one transaction."""
    now = datetime.now(UTC)
    with store.writing() as conn:
        if changed:
            ids = [a.alert_id for a in changed]
            existing: dict[str, Any] = {}
            for i in range(0, len(ids), 500):
                for r in conn.execute(
                    select(
                        alerts.c.alert_id,
                        alerts.c.status,
                        alerts.c.status_by,
                        alerts.c.status_reason,
                        alerts.c.status_ns,
                    ).where(alerts.c.alert_id.in_(ids[i : i + 500]))
                ):
                    existing[r.alert_id] = r
            for a in changed:  # a lifecycle change made meanwhile (CLI) wins over the engine's copy
                r = existing.get(a.alert_id)
                if (
                    r is not None
                    and r.status != a.status
                    and (r.status_ns or 0) > (a.status_ns or 0)
                ):
                    a.status, a.status_by = r.status, r.status_by
                    a.status_reason, a.status_ns = r.status_reason, r.status_ns
            for i in range(0, len(ids), 500):
                conn.execute(delete(alerts).where(alerts.c.alert_id.in_(ids[i : i + 500])))
            conn.execute(insert(alerts), [_row(a) for a in changed])
            raised = [a for a in changed if a.alert_id not in existing]
            if raised:
                conn.execute(
                    insert(alert_history),
                    [
                        {
                            "alert_id": a.alert_id,
                            "action": "raised",
                            "actor": "detect",
                            "reason": a.title,
                            "at_ns": a.first_seen_ns,
                        }
                        for a in raised
                    ],
                )
        if states:
            conn.execute(delete(detect_state).where(detect_state.c.detector_id.in_(list(states))))
            conn.execute(
                insert(detect_state),
                [
                    {"detector_id": k, "state": _enc.encode(v).decode(), "updated_at": now}
                    for k, v in states.items()
                ],
            )
    return len(changed)


def load_states(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(detect_state.c.detector_id, detect_state.c.state)).all()
    return {
        r.detector_id: decode_stored(_any_dec, r.state, "detect_state", "state", r.detector_id)
        for r in rows
    }


def load_open_alerts(store: Store) -> list[Alert]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(alerts).where(alerts.c.status != STATUS_CLOSED)).all()
    return [_alert(r) for r in rows]


def get_alert(store: Store, alert_id: str) -> Alert | None:
    """By full id or an unambiguous prefix (at least 6 hex digits)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(alerts).where(alerts.c.alert_id == alert_id)).first()
        if row is None and len(alert_id) >= 6:
            rows = conn.execute(
                select(alerts).where(alerts.c.alert_id.like(f"{alert_id}%")).limit(2)
            ).all()
            if len(rows) == 1:
                row = rows[0]
    return None if row is None else _alert(row)


class AlertFilter(msgspec.Struct, kw_only=True):
    severity: str | None = None  # at least this severity
    device: str | None = None
    rule: str | None = None  # rule id, or a prefix ending in "."/"*"
    status: str | None = None
    since_ns: int | None = None
    limit: int | None = None


def list_alerts(store: Store, f: AlertFilter | None = None) -> list[Alert]:
    """Alerts, most recent first, filtered."""
    f = f or AlertFilter()
    q = select(alerts)
    if f.severity:
        if f.severity not in SEVERITY_RANK:
            raise InputError(f"--severity: unknown severity {f.severity!r}")
        allowed = [s for s, r in SEVERITY_RANK.items() if r >= SEVERITY_RANK[f.severity]]
        q = q.where(alerts.c.severity.in_(allowed))
    if f.device:
        q = q.where(alerts.c.device_id == f.device)
    if f.rule:
        if f.rule.endswith(("*", ".")):
            q = q.where(alerts.c.rule_id.like(f.rule.rstrip("*") + "%"))
        else:
            q = q.where(alerts.c.rule_id == f.rule)
    if f.status:
        if f.status not in STATUSES and f.status != "open":
            raise InputError(f"--status: unknown status {f.status!r}")
        if f.status == "open":
            q = q.where(alerts.c.status != STATUS_CLOSED)
        else:
            q = q.where(alerts.c.status == f.status)
    if f.since_ns is not None:
        q = q.where(alerts.c.last_seen_ns >= f.since_ns)
    q = q.order_by(alerts.c.last_seen_ns.desc(), alerts.c.alert_id)
    if f.limit:
        q = q.limit(f.limit)
    with store.engine.connect() as conn:
        return [_alert(r) for r in conn.execute(q).all()]


def alert_history_of(store: Store, alert_id: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(alert_history)
            .where(alert_history.c.alert_id == alert_id)
            .order_by(alert_history.c.id)
        ).all()
    return [
        {"action": r.action, "actor": r.actor, "reason": r.reason, "at_ns": r.at_ns} for r in rows
    ]


_LEDGER_KIND = {STATUS_ACKNOWLEDGED: "alert.acknowledged", STATUS_CLOSED: "alert.closed"}


def set_status(store: Store, alert_id: str, status: str, by: str, reason: str) -> Alert:
    """Acknowledge or close an alert: store, history row and ledger entry (who, why, when)."""
    if status not in _LEDGER_KIND:
        raise InputError(f"cannot set alert status to {status!r}")
    if not by.strip():
        raise InputError("--by: say who (a name) acknowledges or closes the alert")
    if not reason.strip():
        raise InputError("--reason: say why")
    alert = get_alert(store, alert_id)
    if alert is None:
        raise InputError(f"alert {alert_id!r}: no such alert")
    if alert.status == STATUS_CLOSED:
        raise InputError(f"alert {alert.alert_id}: already closed")
    if alert.status == status:
        raise InputError(f"alert {alert.alert_id}: already {status}")
    now = time.time_ns()
    alert.status, alert.status_by, alert.status_reason, alert.status_ns = status, by, reason, now
    try:
        with store.engine.begin() as conn:
            conn.execute(
                alerts.update()
                .where(alerts.c.alert_id == alert.alert_id)
                .values(
                    status=status,
                    status_by=by,
                    status_reason=reason,
                    status_ns=now,
                    updated_at=datetime.now(UTC),
                )
            )
            conn.execute(
                insert(alert_history).values(
                    alert_id=alert.alert_id, action=status, actor=by, reason=reason, at_ns=now
                )
            )
    except Exception as exc:  # a database error is one line, not a traceback or its SQL
        from medsentry.store.environment import environment_of

        why = environment_of(exc) or (str(getattr(exc, "orig", exc)).splitlines() or [""])[0]
        raise StoreError(f"alert {alert.alert_id}: could not update: {why}") from exc
    from medsentry.ledger import record

    record(
        _LEDGER_KIND[status],
        {
            "alert_id": alert.alert_id,
            "rule_id": alert.rule_id,
            "device_id": alert.device_id,
            "status": status,
            "by": by,
            "reason": reason,
            "at": datetime.fromtimestamp(now / 1e9, UTC).isoformat(timespec="microseconds"),
        },
        actor=by,
    )
    return alert


def update_detector_state(store: Store, detector_id: str, state: Any) -> None:
    with store.writing() as conn:
        conn.execute(delete(detect_state).where(detect_state.c.detector_id == detector_id))
        conn.execute(
            insert(detect_state).values(
                detector_id=detector_id,
                state=_enc.encode(state).decode(),
                updated_at=datetime.now(UTC),
            )
        )


ACCEPTS = "baseline.accepts"  # acceptances a running engine has not folded in yet


def queue_accepts(store: Store, accepts: list[tuple[str, str | None]]) -> None:
    """Leave (device, dimension) acceptances for a running engine (see `take_accepts`)."""
    with store.writing() as conn:
        row = conn.execute(
            select(detect_state.c.state).where(detect_state.c.detector_id == ACCEPTS)
        ).scalar()
        pending = _stored_accepts(row) if row else []
        pending += [list(a) for a in accepts]
        conn.execute(delete(detect_state).where(detect_state.c.detector_id == ACCEPTS))
        conn.execute(
            insert(detect_state).values(
                detector_id=ACCEPTS,
                state=_enc.encode(pending).decode(),
                updated_at=datetime.now(UTC),
            )
        )


def take_accepts(store: Store) -> list[tuple[str, str | None]]:
    """The acceptances queued since the last call, removed from the store."""
    with store.writing() as conn:
        row = conn.execute(
            select(detect_state.c.state).where(detect_state.c.detector_id == ACCEPTS)
        ).scalar()
        if not row:
            return []
        conn.execute(delete(detect_state).where(detect_state.c.detector_id == ACCEPTS))
    return [(d, dim) for d, dim in _stored_accepts(row)]


_accepts_dec = msgspec.json.Decoder(list[tuple[str, str | None]])


def _stored_accepts(row: Any) -> list:
    return list(decode_stored(_accepts_dec, row, "detect_state", "state", ACCEPTS))
