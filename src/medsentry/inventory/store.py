"""Reading and writing the inventory: the `Device` contract in, the `Device` contract out.

Engines read devices with `load_devices(store)` / `load_device(store, device_id)`; they never
query the inventory's tables themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import delete, func, insert, select, update

from medsentry.errors import InputError
from medsentry.inventory.model import Device
from medsentry.inventory.state import decode_state
from medsentry.inventory.tables import device_addresses, device_changes, devices
from medsentry.store.damage import decode_stored

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from medsentry.store import Store

_device_decoder = msgspec.json.Decoder(Device)
_encoder = msgspec.json.Encoder()
_MISSING = object()


def _record(raw: Any, device_id: str | None) -> Device:
    return decode_stored(_device_decoder, raw, "devices", "record", device_id)


def load_devices(store: Store) -> list[Device]:
    """Every device of the inventory, ordered by device_id."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(devices.c.device_id, devices.c.record).order_by(devices.c.device_id)
        )
        return [_record(r.record, r.device_id) for r in rows]


def load_device(store: Store, device_id: str) -> Device | None:
    """One device by its id ("mac:aa:bb:..", "ip:10.0.0.5"), or None."""
    with store.engine.connect() as conn:
        rec = conn.execute(
            select(devices.c.record).where(devices.c.device_id == device_id)
        ).scalar_one_or_none()
    return None if rec is None else _record(rec, device_id)


def find_device(store: Store, key: str) -> Device | None:
    """A device by id, MAC or BLE address in any common spelling (an identity, or a private
    address resolved to it), IP (its most recent holder), or host name (any case), else None.
    A host name two devices go by is an InputError naming both: never one of them silently."""
    key = key.strip()
    found = load_device(store, key)
    if found is not None:
        return found
    low = key.lower()
    mac = _any_mac(low.removeprefix("mac:").removeprefix("ble:"))
    try:
        ip = str(ipaddress.ip_address(key))  # "2001:DB8::05" -> "2001:db8::5"
    except ValueError:
        ip = None
    with store.engine.connect() as conn:
        conds = []
        if mac is not None:
            conds += [
                devices.c.device_id == f"mac:{mac}",
                devices.c.mac == mac,
                devices.c.device_id == f"ble:{mac}",
            ]
        if ip is not None:
            conds.append(devices.c.ip == ip)
        for cond in conds:
            row = conn.execute(
                select(devices.c.device_id, devices.c.record).where(cond).limit(1)
            ).first()
            if row is not None:
                return _record(row.record, row.device_id)
        named = conn.execute(  # a host name (or a name that merely looks like an address)
            select(devices.c.device_id, devices.c.record)
            .where(func.lower(devices.c.hostname) == low)
            .order_by(devices.c.device_id)
        ).all()
        if len(named) > 1:
            ids = ", ".join(r.device_id for r in named[:5])
            raise InputError(
                f"{len(named)} devices go by the host name {key!r} ({ids}): name one by its id"
            )
        if named:
            return _record(named[0].record, named[0].device_id)
        if ip is None and mac is None and low:
            other = _other_name(conn, low)  # a name it went by that is not its shown one
            if other is not None:
                return other
        ip_owner = (
            conn.execute(
                select(device_addresses.c.device_id)
                .where(device_addresses.c.ip == ip)
                .order_by(device_addresses.c.last_ns.desc())
                .limit(1)
            ).scalar()
            if ip is not None
            else None
        )
        if ip_owner is None and mac is not None:  # a private address it resolved to
            q = select(devices.c.device_id, devices.c.record).where(
                devices.c.device_id.like("ble:%"), devices.c.record.like(f'%"{mac}"%')
            )
            for did, rec in conn.execute(q):
                dev = _record(rec, did)
                if mac in dev.private_addresses:
                    return dev
    return load_device(store, ip_owner) if ip_owner else None


def _other_name(conn: Any, low: str) -> Device | None:
    """The device that went by host name `low` (any case) among every name it was seen with
    (DHCP, mDNS, DNS, LLDP: `DeviceState.hostnames` keys "<rank>:<name>"); None if none did."""
    like = low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        select(devices.c.device_id, devices.c.record, devices.c.state)
        .where(func.lower(devices.c.state).like(f'%:{like}":%', escape="\\"))
        .order_by(devices.c.device_id)
    ).all()
    hits = []
    for row in rows:
        state = decode_state(row.state.encode(), row.device_id)
        if any(k.split(":", 1)[1].lower() == low for k in state.hostnames):
            hits.append(row)
    if len(hits) > 1:
        ids = ", ".join(r.device_id for r in hits[:5])
        raise InputError(
            f"{len(hits)} devices went by the host name {low!r} ({ids}): name one by its id"
        )
    return _record(hits[0].record, hits[0].device_id) if hits else None


def _any_mac(text: str) -> str | None:
    """A MAC as aa:bb:cc:dd:ee:ff from colon, hyphen, Cisco dotted or bare hex spellings."""
    if not _ANY_MAC.match(text):
        return None
    hexes = re.sub(r"[^0-9a-f]", "", text)
    return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))


_ANY_MAC = re.compile(
    r"^(?:[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}"
    r"|[0-9a-f]{12})$"
)


def bulk_insert(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows with one driver-level executemany: the statement is compiled once for
    the dialect and each value goes through its column type's bind processor, as SQLAlchemy
    would, without its per-row parameter bookkeeping (a third of the write time at 10k rows)."""
    if not rows:
        return
    cols = list(rows[0])
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=cols)
    procs = {c: table.c[c].type._cached_bind_processor(conn.dialect) for c in cols}
    names = list(compiled.positiontup) if compiled.positional else cols
    get = itemgetter(*names)
    rows_vals = [get(r) for r in rows] if len(names) > 1 else [(get(r),) for r in rows]
    conv = [(i, p) for i, p in enumerate(procs.get(n) for n in names) if p is not None]
    if conv:  # bind processors (dates on SQLite); a value object shared by rows converted once
        seen: dict[int, Any] = {}  # id -> converted (the rows keep every value alive)
        converted: list = []
        for vals in rows_vals:
            vals = list(vals)
            for i, p in conv:
                v = vals[i]
                out = seen.get(id(v), _MISSING)
                if out is _MISSING:
                    out = seen[id(v)] = p(v)
                vals[i] = out
            converted.append(vals)
        rows_vals = converted
    if compiled.positional:
        params: list = [tuple(v) for v in rows_vals]
    else:
        params = [dict(zip(names, v, strict=True)) for v in rows_vals]
    conn.exec_driver_sql(compiled.string, params)


def load_routers(store: Store) -> dict[str, set[str]]:
    """Router interfaces already in the inventory (role ip-router): MAC -> own addresses."""
    out: dict[str, set[str]] = {}
    with store.engine.connect() as conn:
        q = select(devices.c.device_id, devices.c.mac).where(
            devices.c.mac.is_not(None), devices.c.record.like('%"ip-router"%')
        )
        for did, mac in conn.execute(q).all():
            ips = conn.execute(
                select(device_addresses.c.ip).where(device_addresses.c.device_id == did)
            ).scalars()
            out[mac] = set(ips)
    return out


def has_devices(conn: Connection) -> bool:
    """Whether the inventory holds any device yet (a first scan need not look any up)."""
    return conn.execute(select(devices.c.device_id).limit(1)).first() is not None


def load_states(conn: Connection, device_ids: Iterable[str] | None = None) -> dict[str, bytes]:
    """The stored observation state (JSON) per device, for folding new evidence in."""
    q = select(devices.c.device_id, devices.c.state)
    if device_ids is not None:
        ids = list(device_ids)
        if not ids:
            return {}
        q = q.where(devices.c.device_id.in_(ids))
    return {r.device_id: r.state.encode() for r in conn.execute(q)}


def load_records(conn: Connection) -> dict[str, Device]:
    rows = conn.execute(select(devices.c.device_id, devices.c.record))
    return {r.device_id: _record(r.record, r.device_id) for r in rows}


def load_records_for(conn: Connection, device_ids: list[str]) -> dict[str, Device]:
    out: dict[str, Device] = {}
    for i in range(0, len(device_ids), 500):
        chunk = device_ids[i : i + 500]
        q = select(devices.c.device_id, devices.c.record).where(devices.c.device_id.in_(chunk))
        for r in conn.execute(q):
            out[r.device_id] = _record(r.record, r.device_id)
    return out


def update_records(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rewrite device rows in place (address history untouched)."""
    ids = [r["device_id"] for r in rows]
    for i in range(0, len(ids), 500):
        conn.execute(delete(devices).where(devices.c.device_id.in_(ids[i : i + 500])))
    bulk_insert(conn, devices, rows)


def device_row(dev: Device, state: bytes, now: datetime | None = None) -> dict[str, Any]:
    def val(attr):
        return None if attr is None else attr.value[:255]

    return {
        "device_id": dev.device_id,
        "mac": dev.mac,
        "ip": dev.ips[0] if dev.ips else None,
        "hostname": (dev.hostname or None) and dev.hostname[:255],
        "first_seen_ns": dev.first_seen_ns,
        "last_seen_ns": dev.last_seen_ns,
        "category": val(dev.category),
        "category_confidence": dev.category.confidence if dev.category else None,
        "vendor": val(dev.vendor),
        "model": val(dev.model),
        "software_version": val(dev.software_version),
        "os": val(dev.os),
        "criticality": dev.criticality,
        "medical": dev.medical,
        "phi_observed": dev.phi_observed,
        "record": _encoder.encode(dev).decode(),
        "state": state.decode(),
        "updated_at": now or datetime.now(UTC),
    }


def replace_devices(
    conn: Connection,
    rows: list[dict[str, Any]],
    addresses: list[dict[str, Any]],
    removed: Iterable[str] = (),
    existing: Iterable[str] | None = None,
) -> None:
    """Write devices (upsert by delete + insert, portable across SQLite and PostgreSQL) and
    their address history; `removed` are ids merged into another device; `existing`, when
    known, the ids already stored (only those need deleting)."""
    ids = [r["device_id"] for r in rows] + list(removed) if existing is None else list(existing)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        conn.execute(delete(devices).where(devices.c.device_id.in_(chunk)))
        conn.execute(delete(device_addresses).where(device_addresses.c.device_id.in_(chunk)))
    bulk_insert(conn, devices, rows)
    bulk_insert(conn, device_addresses, addresses)


def rekey(conn: Connection, moved: dict[str, str]) -> None:
    """Device ids merged into another device: their change history and asset matches follow."""
    from medsentry.inventory.tables import assets

    for old, new in moved.items():
        conn.execute(
            update(device_changes).where(device_changes.c.device_id == old).values(device_id=new)
        )
        conn.execute(update(assets).where(assets.c.device_id == old).values(device_id=new))


def add_changes(conn: Connection, changes: list[dict[str, Any]]) -> None:
    bulk_insert(conn, device_changes, changes)


def move_device_added(conn: Connection, first_seen: dict[str, int]) -> None:
    """Date each device's `device_added` change at its (now earlier) first sighting."""
    for did, ts in first_seen.items():
        conn.execute(
            update(device_changes)
            .where(
                device_changes.c.device_id == did,
                device_changes.c.change == "device_added",
                device_changes.c.ts_ns > ts,
            )
            .values(ts_ns=ts)
        )


def list_changes(store: Store, device_id: str | None = None, limit: int = 1000) -> list[dict]:
    q = select(device_changes).order_by(device_changes.c.ts_ns, device_changes.c.id)
    if device_id:
        q = q.where(device_changes.c.device_id == device_id)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.limit(limit))]


def list_addresses(store: Store, device_id: str) -> list[dict]:
    q = (
        select(device_addresses)
        .where(device_addresses.c.device_id == device_id)
        .order_by(device_addresses.c.first_ns)
    )
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
