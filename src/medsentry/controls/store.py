"""Findings in the store: upsert with lifecycle, listing with filters, closing.

A finding observed again updates its times, evidence count and evidence; a closed finding seen
again with newer evidence reopens. Every opening, reopening and closing goes to the audit
ledger (`finding.opened`, `finding.closed`) and to `finding_history`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import and_, func, insert, select, update

from medsentry.controls.model import CLOSED, MAX_EVIDENCE, OPEN, Finding, FindingEvidence
from medsentry.controls.tables import finding_history, findings
from medsentry.errors import InputError
from medsentry.store.damage import decode_stored

if TYPE_CHECKING:
    from medsentry.store import Store

_enc = msgspec.json.Encoder()
_ev_dec = msgspec.json.Decoder(list[FindingEvidence])
_peers_dec = msgspec.json.Decoder(list[str])
_list_dec = msgspec.json.Decoder(list)
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}
_CHUNK = 500


def _ledger_entry(f: Finding, action: str) -> dict[str, Any]:
    return {
        "finding_id": f.finding_id,
        "type": f.type,
        "severity": f.severity,
        "device_id": f.device_id,
        "subject": f.subject,
        "action": action,
    }


def _row(f: Finding) -> dict[str, Any]:
    return {
        "finding_id": f.finding_id,
        "type": f.type,
        "severity": f.severity,
        "device_id": f.device_id,
        "subject": f.subject,
        "title": f.title,
        "detail": f.detail,
        "status": f.status,
        "first_seen_ns": f.first_seen_ns,
        "last_seen_ns": f.last_seen_ns,
        "evidence_count": f.evidence_count,
        "evidence": _enc.encode(f.evidence).decode(),
        "peers": _enc.encode(f.peers).decode(),
        "opened_ns": f.opened_ns,
        "closed_ns": f.closed_ns,
        "closed_by": f.closed_by,
        "closed_reason": f.closed_reason,
        "capture_id": f.capture_id,
    }


def from_row(r: Any) -> Finding:
    m = r._mapping
    return Finding(
        finding_id=m["finding_id"],
        type=m["type"],
        severity=m["severity"],
        device_id=m["device_id"],
        subject=m["subject"],
        title=m["title"],
        detail=m["detail"],
        status=m["status"],
        first_seen_ns=m["first_seen_ns"],
        last_seen_ns=m["last_seen_ns"],
        evidence_count=m["evidence_count"],
        evidence=decode_stored(_ev_dec, m["evidence"], "findings", "evidence", m["finding_id"]),
        peers=decode_stored(_peers_dec, m["peers"], "findings", "peers", m["finding_id"]),
        opened_ns=m["opened_ns"],
        closed_ns=m["closed_ns"],
        closed_by=m["closed_by"],
        closed_reason=m["closed_reason"],
        capture_id=m["capture_id"],
    )


@dataclass
class UpsertResult:
    opened: list[Finding]
    reopened: list[Finding]
    updated: int


def upsert_findings(
    store: Store, found: Iterable[Finding], actor: str = "controls", ledger: bool = True
) -> UpsertResult:
    """Store findings: new ones open, known ones update, closed ones with newer evidence reopen."""
    found = list(found)
    now = time.time_ns()
    res = UpsertResult([], [], 0)
    with store.writing() as conn:
        for i in range(0, len(found), _CHUNK):
            part = {f.finding_id: f for f in found[i : i + _CHUNK]}
            old = {
                r.finding_id: r
                for r in conn.execute(select(findings).where(findings.c.finding_id.in_(list(part))))
            }
            new_rows, hist = [], []
            for fid, f in part.items():
                r = old.get(fid)
                if r is None:
                    f.opened_ns = now
                    new_rows.append(_row(f))
                    hist.append(dict(finding_id=fid, action="opened", actor=actor, at_ns=now))
                    res.opened.append(f)
                    continue
                prev = decode_stored(_ev_dec, r.evidence, "findings", "evidence", fid)
                keep = prev[:MAX_EVIDENCE]
                have = {(e.flow_id, e.ts_ns, e.kind) for e in keep}
                for e in f.evidence:
                    if len(keep) >= MAX_EVIDENCE:
                        break
                    if (e.flow_id, e.ts_ns, e.kind) not in have:
                        keep.append(e)
                stored = decode_stored(_peers_dec, r.peers, "findings", "peers", fid)
                peers = sorted(set(stored) | set(f.peers))[:64]
                # the same evidence re-read (a rescan of one capture) does not add to the count
                newer = f.last_seen_ns > r.last_seen_ns
                values: dict[str, Any] = dict(
                    first_seen_ns=min(r.first_seen_ns, f.first_seen_ns),
                    last_seen_ns=max(r.last_seen_ns, f.last_seen_ns),
                    evidence_count=r.evidence_count + (f.evidence_count if newer else 0),
                    evidence=_enc.encode(keep).decode(),
                    peers=_enc.encode(peers).decode(),
                    severity=f.severity,
                    detail=f.detail,
                    capture_id=f.capture_id or r.capture_id,
                )
                if r.status == CLOSED and f.last_seen_ns > (r.closed_last_seen_ns or 0):
                    values.update(status=OPEN, closed_ns=None, closed_by=None, closed_reason=None)
                    hist.append(dict(finding_id=fid, action="reopened", actor=actor, at_ns=now))
                    f.status = OPEN
                    res.reopened.append(f)
                conn.execute(update(findings).where(findings.c.finding_id == fid).values(**values))
                res.updated += 1
            if new_rows:
                conn.execute(insert(findings), new_rows)
            if hist:
                conn.execute(insert(finding_history), hist)
    if ledger and (res.opened or res.reopened):
        from medsentry.ledger import ledger as _ledger

        entries = [("finding.opened", _ledger_entry(f, "opened"), actor) for f in res.opened]
        entries += [("finding.opened", _ledger_entry(f, "reopened"), actor) for f in res.reopened]
        _ledger().append_many(entries)
    return res


@dataclass
class FindingFilter:
    status: str | None = OPEN  # None: any
    types: tuple[str, ...] = ()
    min_severity: str | None = None
    device: str | None = None
    limit: int | None = None


def list_findings(store: Store, flt: FindingFilter | None = None) -> list[Finding]:
    flt = flt or FindingFilter()
    q = select(findings)
    conds = []
    if flt.status:
        conds.append(findings.c.status == flt.status)
    if flt.types:
        conds.append(findings.c.type.in_(flt.types))
    if flt.min_severity:
        if flt.min_severity not in SEVERITY_RANK:
            raise InputError(f"--severity: unknown severity {flt.min_severity!r}")
        keep = [s for s, r in SEVERITY_RANK.items() if r >= SEVERITY_RANK[flt.min_severity]]
        conds.append(findings.c.severity.in_(keep))
    if flt.device:
        conds.append(findings.c.device_id == flt.device)
    if conds:
        q = q.where(and_(*conds))
    q = q.order_by(findings.c.last_seen_ns.desc(), findings.c.finding_id)
    if flt.limit:
        q = q.limit(flt.limit)
    with store.engine.connect() as conn:
        rows = [from_row(r) for r in conn.execute(q)]
    rows.sort(key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), -f.last_seen_ns))
    return rows


def count_findings(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return dict(
            conn.execute(select(findings.c.status, func.count()).group_by(findings.c.status)).all()
        )


def find_finding(store: Store, fid: str) -> Finding:
    """The finding with this id, or the only one whose id starts with it."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(findings).where(findings.c.finding_id.like(fid.lower() + "%")).limit(2)
        ).all()
    if not rows:
        raise InputError(f"no finding {fid!r}")
    if len(rows) > 1:
        raise InputError(f"finding id prefix {fid!r} is ambiguous")
    return from_row(rows[0])


def close_finding(store: Store, fid: str, by: str, reason: str) -> Finding:
    """Close a finding (who and why go to the history and the ledger). A unique prefix works."""
    if not by.strip() or not reason.strip():
        raise InputError("closing a finding needs --by and --reason")
    now = time.time_ns()
    with store.writing() as conn:
        rows = conn.execute(
            select(findings).where(findings.c.finding_id.like(fid.lower() + "%")).limit(2)
        ).all()
        if not rows:
            raise InputError(f"no finding {fid!r}")
        if len(rows) > 1:
            raise InputError(f"finding id prefix {fid!r} is ambiguous")
        f = from_row(rows[0])
        if f.status == CLOSED:
            raise InputError(f"finding {f.finding_id} is already closed")
        conn.execute(
            update(findings)
            .where(findings.c.finding_id == f.finding_id)
            .values(
                status=CLOSED,
                closed_ns=now,
                closed_by=by,
                closed_reason=reason,
                closed_last_seen_ns=f.last_seen_ns,
            )
        )
        conn.execute(
            insert(finding_history),
            [dict(finding_id=f.finding_id, action="closed", actor=by, reason=reason, at_ns=now)],
        )
    from medsentry.ledger import record

    data = _ledger_entry(f, "closed")
    data["reason"] = reason
    record("finding.closed", data, actor=by)
    f.status, f.closed_ns, f.closed_by, f.closed_reason = CLOSED, now, by, reason
    return f


def finding_history_rows(store: Store, fid: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(finding_history)
                .where(finding_history.c.finding_id == fid)
                .order_by(finding_history.c.id)
            )
        ]


def _column_values(rows: list[Any], column: str) -> list[Any]:
    """One JSON column of many rows, decoded as one array; row by row (naming the damaged
    one) when that fails or the count comes out wrong."""
    try:
        values = msgspec.json.decode("[" + ",".join(r[column] for r in rows) + "]")
        if len(values) == len(rows) and all(type(v) is list for v in values):
            return values
    except (msgspec.DecodeError, TypeError):
        pass
    return [decode_stored(_list_dec, r[column], "findings", column, r["finding_id"]) for r in rows]


def finding_dicts(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    """Every finding as a plain dict (evidence and peers decoded in one pass each): the bulk
    path for reports, which handle 100,000 findings; times stay nanoseconds."""
    q = select(findings)
    if status:
        q = q.where(findings.c.status == status)
    with store.engine.connect() as conn:
        rows = [r._mapping for r in conn.execute(q)]
    if not rows:
        return []
    evidence = _column_values(rows, "evidence")
    peers = _column_values(rows, "peers")
    out = []
    for r, ev, pe in zip(rows, evidence, peers, strict=True):
        d = dict(r)
        d["evidence"], d["peers"] = ev, pe
        del d["closed_last_seen_ns"]
        out.append(d)
    return out
