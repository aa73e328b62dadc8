"""Reading the store: flow listings with filters, events back as typed records, captures.

`FlowFilter` holds validated filter values (build it with `FlowFilter.parse(...)` from user
text: each bad value is an `InputError` naming the option). `list_flows()` returns display
records (dicts) for the CLI and API; `iter_flow_records()` and `iter_events()` give engines the
stored events back as the msgspec records they were written from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, cast, func, or_, select, type_coerce

from medsentry.errors import InputError
from medsentry.events import Event, FlowRecord, StreamStats, decode_json
from medsentry.store.db import Store
from medsentry.store.schema import STREAM_FIELDS, captures, events, flows

# User-facing sort keys -> SQL expressions over `flows`.
SORT_KEYS: dict[str, ColumnElement[Any]] = {
    "start": flows.c.ts_ns,
    "end": flows.c.last_ns,
    "duration": flows.c.last_ns - flows.c.ts_ns,
    "packets": flows.c.packets_c2s + flows.c.packets_s2c,
    "bytes": flows.c.bytes_c2s + flows.c.bytes_s2c,
    "client": flows.c.client,
    "server": flows.c.server,
    "client_port": flows.c.client_port,
    "server_port": flows.c.server_port,
    "protocol": flows.c.app_protocol,
    "transport": flows.c.transport,
    "capture": flows.c.capture_id,
}

TRANSPORTS = ("tcp", "udp", "icmp", "icmp6", "arp")

# Columns the `flows` table shows; JSON output carries these and every stored field.
FLOW_TABLE_COLUMNS = (
    "start",
    "duration_s",
    "transport",
    "client",
    "client_port",
    "server",
    "server_port",
    "protocol",
    "packets",
    "bytes",
    "end_reason",
    "capture",
)
APP_COLUMN = "app"  # shown when a listed flow has one (captures that name the app behind it)
PROCESS_KIND = "process_traffic"  # events.process.ProcessTraffic

_HEX = re.compile(r"^[0-9a-f]{1,64}$")


def ns_to_iso(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as ISO 8601 UTC with microseconds (`...Z`)."""
    if ns is None:
        return None
    sec, rem = divmod(int(ns), 1_000_000_000)
    minute, s = divmod(sec, 60)  # UTC minutes are 60 s long in POSIX time (no leap seconds)
    return f"{_minute_text(minute)}{s:02d}.{rem // 1000:06d}Z"


@lru_cache(maxsize=4096)
def _minute_text(minute: int) -> str:
    """'YYYY-MM-DDTHH:MM:' of a minute since the epoch (strftime costs ~5 us; times cluster)."""
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")


def parse_time(text: str, option: str) -> int:
    """ISO 8601 date or date-time (naive = UTC) -> nanoseconds since the epoch."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{option} {text!r} is not an ISO 8601 time (e.g. 2024-05-01T13:00:00Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    # times are stored as 64-bit integers (1677-2262): a bound beyond holds everything there is
    return min(max(ns, -(2**63)), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """Which flows to list. Every field is already validated."""

    protocol: str | None = None  # app protocol, case-insensitive, "x" matches "x-*"; "unknown"
    host: str | None = None  # client or server address
    port: int | None = None  # client or server port
    transport: str | None = None
    capture: str | None = None  # capture_id prefix (hex)
    app: str | None = None  # a process or app name the capture gave (part of it, any case)
    since_ns: int | None = None  # flows still active at or after this time
    until_ns: int | None = None  # flows that started at or before this time
    sort: str = "start"
    descending: bool = False
    limit: int | None = None

    @classmethod
    def parse(
        cls,
        *,
        protocol: str | None = None,
        host: str | None = None,
        port: int | None = None,
        transport: str | None = None,
        capture: str | None = None,
        app: str | None = None,
        since: str | None = None,
        until: str | None = None,
        sort: str = "start",
        limit: int | None = None,
    ) -> FlowFilter:
        """Validate user text; each bad value raises `InputError` naming its option."""
        if host is not None:
            try:
                host = str(ipaddress.ip_address(host.strip()))
            except ValueError:
                raise InputError(f"--host {host!r} is not an IPv4 or IPv6 address") from None
        if port is not None and not 0 <= port <= 65535:
            raise InputError(f"--port {port} is outside 0-65535")
        if transport is not None:
            transport = transport.lower()
            if transport not in TRANSPORTS:
                raise InputError(f"--transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
        if capture is not None:
            capture = capture.strip().lower()
            if not _HEX.match(capture):
                raise InputError(f"--capture {capture!r} is not a capture id prefix (hex digits)")
        if app is not None:
            app = app.strip()
            if not app:
                raise InputError("--app is empty")
        since_ns = parse_time(since, "--since") if since else None
        until_ns = parse_time(until, "--until") if until else None
        if since_ns is not None and until_ns is not None and since_ns > until_ns:
            raise InputError(f"--since {since} is after --until {until}")
        descending = sort.startswith("-")
        key = sort.lstrip("-")
        if key not in SORT_KEYS:
            raise InputError(
                f"--sort {sort!r} is not one of {', '.join(SORT_KEYS)} (prefix - for descending)"
            )
        if limit is not None and limit < 0:
            raise InputError(f"--limit {limit} is negative")
        return cls(
            protocol=protocol.strip() if protocol else None,
            host=host,
            port=port,
            transport=transport,
            capture=capture,
            app=app,
            since_ns=since_ns,
            until_ns=until_ns,
            sort=key,
            descending=descending,
            limit=limit,
        )

    def where(self, dialect: str | None = None) -> list[ColumnElement[bool]]:
        c = flows.c
        conds: list[ColumnElement[bool]] = []
        if self.protocol is not None:
            if self.protocol.lower() == "unknown":
                conds.append(c.app_protocol.is_(None))
            else:
                name = self.protocol.lower()  # "hl7" also matches its variants ("hl7-mllp")
                proto = func.lower(c.app_protocol)
                conds.append(or_(proto == name, proto.startswith(f"{name}-", autoescape=True)))
        if self.host is not None:
            conds.append(or_(c.client == self.host, c.server == self.host))
        if self.port is not None:
            conds.append(or_(c.client_port == self.port, c.server_port == self.port))
        if self.transport is not None:
            conds.append(c.transport == self.transport)
        if self.capture is not None:
            conds.append(c.capture_id.startswith(self.capture, autoescape=True))
        if self.app is not None:  # the flows a ProcessTraffic event names (payload JSON)
            # PostgreSQL's ->> needs a json value (the column is text); SQLite's json_extract
            # reads the text itself (CAST AS JSON there would be a numeric cast)
            coerce = cast if dialect == "postgresql" else type_coerce
            doc = coerce(events.c.payload, JSON)
            name = self.app.lower()
            named = or_(
                func.lower(doc["process"].as_string()).contains(name, autoescape=True),
                func.lower(doc["label"].as_string()).contains(name, autoescape=True),
            )
            q = select(events.c.flow_id).where(events.c.kind == PROCESS_KIND, named)
            conds.append(c.flow_id.in_(q))
        if self.since_ns is not None:
            conds.append(c.last_ns >= self.since_ns)
        if self.until_ns is not None:
            conds.append(c.ts_ns <= self.until_ns)
        return conds

    def select(self, dialect: str | None = None) -> Select[Any]:
        key = SORT_KEYS[self.sort]
        stmt = select(flows)
        for cond in self.where(dialect):
            stmt = stmt.where(cond)
        stmt = stmt.order_by(key.desc() if self.descending else key.asc(), flows.c.flow_id)
        if self.limit is not None:
            stmt = stmt.limit(self.limit)
        return stmt


def flow_display(row: dict[str, Any]) -> dict[str, Any]:
    """A stored flow row plus the derived fields the listing shows."""
    out: dict[str, Any] = {
        "start": ns_to_iso(row["ts_ns"]),
        "duration_s": round((row["last_ns"] - row["ts_ns"]) / 1e9, 3),  # exact: ts_ns, last_ns
        "transport": row["transport"],
        "client": row["client"],
        "client_port": row["client_port"],
        "server": row["server"],
        "server_port": row["server_port"],
        "protocol": row["app_protocol"],
        "packets": row["packets_c2s"] + row["packets_s2c"],
        "bytes": row["bytes_c2s"] + row["bytes_s2c"],
        "end_reason": row["end_reason"],
        "capture": row["capture_id"][:12],
    }
    out.update(row)
    return out


def list_flows(store: Store, flt: FlowFilter | None = None) -> list[dict[str, Any]]:
    """Display records of the flows matching `flt` (all stored fields + derived ones)."""
    flt = flt or FlowFilter()
    with store.engine.connect() as conn:
        found = conn.execute(flt.select(conn.dialect.name))
        rows = [flow_display(dict(r._mapping)) for r in found]
        apps = flow_apps(conn, [r["flow_id"] for r in rows])
    for r in rows:
        r[APP_COLUMN] = apps.get(r["flow_id"])
    return rows


def flow_apps(conn: Any, flow_ids: Sequence[str]) -> dict[str, str]:
    """flow id -> the apps behind it ("display name (process)", several joined by ", "), from
    the ProcessTraffic events of captures that name them; flows without one are left out."""
    names: dict[str, list[str]] = {}
    for i in range(0, len(flow_ids), 500):
        q = select(events.c.flow_id, events.c.payload).where(
            events.c.kind == PROCESS_KIND, events.c.flow_id.in_(flow_ids[i : i + 500])
        )
        for flow_id, payload in conn.execute(q.order_by(events.c.ts_ns, events.c.id)):
            ev = decode_json(payload)
            name = f"{ev.label} ({ev.process})" if ev.label else ev.process
            if ev.via:
                name += f" via {ev.via}"
            got = names.setdefault(flow_id, [])
            if name not in got:
                got.append(name)
    return {k: ", ".join(v) for k, v in names.items()}


def row_to_flow_record(row: dict[str, Any]) -> FlowRecord:
    """Rebuild the FlowRecord a `flows` row was written from."""
    fields = dict(row)
    for direction in ("c2s", "s2c"):
        values = {name: fields.pop(f"stream_{direction}_{name}") for name in STREAM_FIELDS}
        fields[f"stream_{direction}"] = (
            None if all(v is None for v in values.values()) else StreamStats(**values)
        )
    return FlowRecord(**fields)


def iter_flow_records(store: Store, flt: FlowFilter | None = None) -> Iterator[FlowRecord]:
    flt = flt or FlowFilter()
    with store.engine.connect() as conn:
        for r in conn.execution_options(yield_per=1000).execute(flt.select(conn.dialect.name)):
            yield row_to_flow_record(dict(r._mapping))


def iter_events(
    store: Store,
    *,
    kinds: Sequence[str] | None = None,
    capture: str | None = None,
    flow_id: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> Iterator[Event]:
    """Stored events (not flows) in time order, decoded back to their msgspec records."""
    c = events.c
    stmt = select(c.payload)
    if kinds:
        stmt = stmt.where(c.kind.in_(list(kinds)))
    if capture:
        stmt = stmt.where(c.capture_id.startswith(capture.lower(), autoescape=True))
    if flow_id:
        stmt = stmt.where(c.flow_id == flow_id)
    if since_ns is not None:
        stmt = stmt.where(c.ts_ns >= since_ns)
    if until_ns is not None:
        stmt = stmt.where(c.ts_ns <= until_ns)
    stmt = stmt.order_by(c.ts_ns, c.id)
    with store.engine.connect() as conn:
        for (payload,) in conn.execution_options(yield_per=1000).execute(stmt):
            yield decode_json(payload)


def list_captures(store: Store, capture: str | None = None) -> list[dict[str, Any]]:
    stmt = select(captures).order_by(captures.c.scanned_at)
    if capture:
        stmt = stmt.where(captures.c.capture_id.startswith(capture.lower(), autoescape=True))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def count_rows(store: Store) -> dict[str, int]:
    """Row counts per table (for summaries and tests)."""
    with store.engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (captures, flows, events)
        }
