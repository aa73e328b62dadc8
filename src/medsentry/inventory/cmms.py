"""The inventory as clinical engineering keeps it: CMMS import/export and reconciliation.

Import reads CSV (header row) or JSON (a list of objects, or {"assets": [...]}) with the fields
a CMMS export holds: asset tag, location, owner, serial number, department, vendor, model,
category, MAC, IP, host name (common column spellings are accepted, see `_ALIASES`; other
columns are kept as they are). The whole file is validated before anything is stored.

Imported facts merge with observed ones: an asset matches a device by MAC, else IP, else host
name, else the serial number the device stated (DICOM, BLE Device Information); its vendor,
model and category join the device's evidence (source "cmms"), so a disagreement with the
network's evidence shows in the attribute's conflicts. `reconcile` reports assets never seen,
devices not on the list, and field mismatches.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from medsentry.errors import InputError
from medsentry.inventory.fingerprints import Claim
from medsentry.inventory.tables import assets, device_addresses, devices

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from medsentry.inventory.model import Device
    from medsentry.inventory.state import DeviceState
    from medsentry.store import Store

FIELDS = (
    "asset_tag",
    "mac",
    "ip",
    "hostname",
    "serial_number",
    "vendor",
    "model",
    "category",
    "location",
    "department",
    "owner",
)
_ALIASES = {
    "asset": "asset_tag",
    "asset_tag": "asset_tag",
    "asset_number": "asset_tag",
    "asset_no": "asset_tag",
    "asset_id": "asset_tag",
    "tag": "asset_tag",
    "equipment_number": "asset_tag",
    "control_number": "asset_tag",
    "mac": "mac",
    "mac_address": "mac",
    "ip": "ip",
    "ip_address": "ip",
    "ipv4": "ip",
    "hostname": "hostname",
    "host_name": "hostname",
    "host": "hostname",
    "serial": "serial_number",
    "serial_number": "serial_number",
    "serial_no": "serial_number",
    "sn": "serial_number",
    "vendor": "vendor",
    "manufacturer": "vendor",
    "make": "vendor",
    "model": "model",
    "model_number": "model",
    "category": "category",
    "device_type": "category",
    "type": "category",
    "location": "location",
    "room": "location",
    "department": "department",
    "dept": "department",
    "owner": "owner",
    "responsible": "owner",
}
CMMS_CONFIDENCE = 0.9  # the list is kept by people who handled the device
_MAC = re.compile(r"^[0-9a-f]{2}([:\-.]?[0-9a-f]{2}){5}$")


def _column(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return _ALIASES.get(key, key)


def _mac(value: str, where: str) -> str:
    v = value.strip().lower()
    if not _MAC.match(v):
        raise InputError(f"{where}: field mac: {value!r} is not a MAC address")
    hexes = re.sub(r"[^0-9a-f]", "", v)
    return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))


def _category(value: str) -> str | None:
    from medsentry.inventory.taxonomy import taxonomy

    tax = taxonomy()
    v = value.strip()
    if v in tax.categories:
        return v
    low = v.casefold()
    for key, cat in tax.categories.items():
        if cat.name.casefold() == low:
            return key
    return None


def read_assets(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Validated asset records and the number of rows skipped for lack of an asset tag."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: offset {exc.start}: not UTF-8 text") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
        except RecursionError:  # RFC 8259 §9: a parser may limit the depth of nesting
            raise InputError(f"{path}: JSON nested too deep to read") from None
        rows = doc.get("assets") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a list of assets (or {{'assets': [...]}})")
        label = "record"
    else:
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise InputError(f"{path}: not valid CSV: {exc}") from None
        label = "row"
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    skipped = 0
    for n, row in enumerate(rows, 1):
        where = f"{path}: {label} {n + 1 if label == 'row' else n}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: not an object")
        rec: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for k, v in row.items():
            if k is None:
                raise InputError(f"{where}: more fields than the header names")
            col = _column(str(k))
            val = "" if v is None else _csv_value(str(v).strip())
            if col in FIELDS:
                if val:
                    rec[col] = val
            elif val and col not in ("device_id", "status", "first_seen", "last_seen"):
                extra[col] = val[:500]
        if not rec.get("asset_tag"):
            skipped += 1
            continue
        tag = rec["asset_tag"]
        if tag in seen:
            raise InputError(f"{where}: field asset_tag: {tag!r} repeats {label} {seen[tag]}")
        seen[tag] = n
        if "mac" in rec:
            rec["mac"] = _mac(rec["mac"], where)
        if "ip" in rec:
            try:
                rec["ip"] = str(ipaddress.ip_address(rec["ip"]))
            except ValueError:
                raise InputError(f"{where}: field ip: {rec['ip']!r} is not an IP address") from None
        if "category" in rec:
            key = _category(rec["category"])
            if key is None:
                extra["category_text"] = rec.pop("category")
            else:
                rec["category"] = key
        for f in FIELDS:
            if f in rec and len(rec[f]) > 255:
                raise InputError(f"{where}: field {f}: longer than 255 characters")
        rec["extra"] = json.dumps(extra, sort_keys=True) if extra else None
        out.append(rec)
    return out, skipped


def import_assets(store: Store, path: Path) -> dict[str, Any]:
    """Store the list (replacing assets with the same tags), match it, re-identify matches."""
    records, skipped = read_assets(path)  # InputError before anything is written
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        tags = [r["asset_tag"] for r in records]
        for i in range(0, len(tags), 500):
            conn.execute(delete(assets).where(assets.c.asset_tag.in_(tags[i : i + 500])))
        if records:
            conn.execute(
                insert(assets),
                [
                    {
                        **{f: r.get(f) for f in FIELDS},
                        "extra": r["extra"],
                        "device_id": None,
                        "source": str(path),
                        "imported_at": now,
                    }
                    for r in records
                ],
            )
        match_assets(conn, {})
    from medsentry.inventory.engine import reidentify

    reidentify(store)
    report = reconcile(store)
    report["imported"] = len(records)
    report["skipped"] = skipped
    return report


# Serial numbers devices state on the wire: DICOM Device Serial Number (0018,1000) (PS3.3
# C.7.5.1), BLE Device Information Serial Number String (DIS 1.1 §3.3)
SERIAL_KEYS = ("dicom.device_serial", "ble.gatt.serial")


def match_assets(conn: Connection, states: dict[str, DeviceState]) -> int:
    """Give unmatched assets a device: by MAC, else IP (most recent holder), else host name,
    else the serial number the device stated (a BLE device with a random address has no MAC
    or IP to match)."""
    pending = conn.execute(
        select(
            assets.c.asset_tag, assets.c.mac, assets.c.ip, assets.c.hostname, assets.c.serial_number
        ).where(assets.c.device_id.is_(None))
    ).all()
    if not pending:
        return 0
    ip_of_state = {ip: did for did, st in states.items() for ip in st.addresses}
    serial_of_state: dict[str, str | None] = {}
    for did, st in states.items():
        for key in SERIAL_KEYS:
            for serial in st.observations.get(key, ()):
                # a serial stated by two devices matches neither
                other = serial_of_state.setdefault(serial.strip().casefold(), did)
                if other != did:
                    serial_of_state[serial.strip().casefold()] = None
    matched = 0
    for tag, mac, ip, hostname, serial in pending:
        did = None
        if mac:
            cand = f"mac:{mac}"
            if (
                cand in states
                or conn.execute(
                    select(devices.c.device_id).where(devices.c.device_id == cand)
                ).first()
            ):
                did = cand
        if did is None and ip:
            did = (
                ip_of_state.get(ip)
                or conn.execute(
                    select(device_addresses.c.device_id)
                    .where(device_addresses.c.ip == ip)
                    .order_by(device_addresses.c.last_ns.desc())
                    .limit(1)
                ).scalar()
            )
            if did is None and f"ip:{ip}" in states:
                did = f"ip:{ip}"
        if did is None and hostname:
            did = conn.execute(
                select(devices.c.device_id).where(devices.c.hostname == hostname).limit(1)
            ).scalar()
        if did is None and serial and serial.strip():
            did = serial_of_state.get(serial.strip().casefold())
        if did is not None:
            conn.execute(update(assets).where(assets.c.asset_tag == tag).values(device_id=did))
            matched += 1
    return matched


def assets_by_device(conn: Connection, device_ids: list[str]) -> dict[str, dict[str, str]]:
    """The CMMS records matched to these devices, by device id."""
    out: dict[str, dict[str, str]] = {}
    if (
        conn.execute(select(assets.c.asset_tag).where(assets.c.device_id.is_not(None))).first()
        is None
    ):
        return out  # no list imported, or none of it matched yet: one query, not one per 500
    for i in range(0, len(device_ids), 500):
        q = select(assets).where(assets.c.device_id.in_(device_ids[i : i + 500]))
        for r in conn.execute(q):
            m = r._mapping
            rec = {f: m[f] for f in FIELDS if m[f]}
            if m["extra"]:
                rec.update(json.loads(m["extra"]))
            out[m["device_id"]] = rec
    return out


def asset_claims_for(asset: dict[str, str] | None) -> list[Claim]:
    if not asset:
        return []
    tag = asset.get("asset_tag", "")
    return [
        Claim(attr, asset[attr], CMMS_CONFIDENCE, "cmms", "cmms.import", tag, None)
        for attr in ("category", "vendor", "model")
        if asset.get(attr)
    ]


def _observed(dev: Device, attr: str) -> str | None:
    """The value the network's evidence supports, ignoring the list's own claim."""
    a = getattr(dev, attr)
    if a is None:
        return None
    if any(e.source != "cmms" for e in a.evidence):
        return a.value
    rivals = [e for e in a.conflicts if e.source != "cmms"]
    return rivals[0].value if rivals else None


def reconcile(store: Store) -> dict[str, Any]:
    """Assets never seen, devices not on the list, and fields where list and network disagree."""
    from medsentry.inventory.identify import vendor_key
    from medsentry.inventory.store import load_devices

    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(assets).order_by(assets.c.asset_tag))]
    devs = {d.device_id: d for d in load_devices(store)}
    listed = {r["device_id"] for r in rows if r["device_id"]}
    never_seen = [
        {k: r[k] for k in ("asset_tag", "mac", "ip", "hostname", "vendor", "model", "location")}
        for r in rows
        if not r["device_id"] or r["device_id"] not in devs
    ]
    unlisted = [
        {
            "device_id": d.device_id,
            "ip": d.ips[0] if d.ips else None,
            "category": d.category.value if d.category else None,
            "vendor": d.vendor.value if d.vendor else None,
            "medical": d.medical,
        }
        for did, d in sorted(devs.items())
        if did not in listed
    ]
    mismatches = []
    for r in rows:
        dev = devs.get(r["device_id"] or "")
        if dev is None:
            continue
        for attr in ("category", "vendor", "model"):
            listed_v, seen_v = r[attr], _observed(dev, attr)
            if not listed_v or not seen_v:
                continue
            same = (
                vendor_key(listed_v) == vendor_key(seen_v)
                if attr == "vendor"
                else listed_v.casefold() == seen_v.casefold()
            )
            if attr == "category" and not same:
                from medsentry.inventory.taxonomy import taxonomy

                same = taxonomy().is_ancestor(listed_v, seen_v) or taxonomy().is_ancestor(
                    seen_v, listed_v
                )
            if not same:
                mismatches.append(_mismatch(r, dev, attr, listed_v, seen_v))
        if r["ip"] and dev.ips and r["ip"] not in dev.ips:
            mismatches.append(_mismatch(r, dev, "ip", r["ip"], dev.ips[0]))
        if r["mac"] and dev.mac and r["mac"] != dev.mac:
            mismatches.append(_mismatch(r, dev, "mac", r["mac"], dev.mac))
    return {"never_seen": never_seen, "unlisted": unlisted, "mismatches": mismatches}


def _mismatch(r: dict, dev: Device, field: str, listed: str, observed: str) -> dict[str, str]:
    return {
        "asset_tag": r["asset_tag"],
        "device_id": dev.device_id,
        "field": field,
        "listed": listed,
        "observed": observed,
    }


EXPORT_FIELDS = (
    "asset_tag",
    "device_id",
    "status",
    "mac",
    "ip",
    "hostname",
    "category",
    "vendor",
    "model",
    "software_version",
    "os",
    "serial_number",
    "location",
    "department",
    "owner",
    "criticality",
    "fda_class",
    "phi_observed",
    "first_seen",
    "last_seen",
)


def export_rows(store: Store) -> list[dict[str, Any]]:
    """One row per device (its asset facts merged in) and one per asset never seen."""
    from medsentry.inventory.store import load_devices
    from medsentry.store import ns_to_iso

    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(assets).order_by(assets.c.asset_tag))]
    by_dev = {r["device_id"]: r for r in rows if r["device_id"]}
    out = []
    devs = load_devices(store)
    ids = {d.device_id for d in devs}
    for d in devs:
        a = by_dev.get(d.device_id, {})

        def v(attr: str, dev: Device = d) -> str | None:
            x = getattr(dev, attr)
            return x.value if x is not None else None

        out.append(
            {
                "asset_tag": a.get("asset_tag"),
                "device_id": d.device_id,
                "status": "matched" if a else "observed-only",
                "mac": d.mac,
                "ip": d.ips[0] if d.ips else None,
                "hostname": d.hostname,
                "category": v("category"),
                "vendor": v("vendor"),
                "model": v("model"),
                "software_version": v("software_version"),
                "os": v("os"),
                "serial_number": a.get("serial_number"),
                "location": a.get("location"),
                "department": a.get("department"),
                "owner": a.get("owner"),
                "criticality": d.criticality,
                "fda_class": d.fda_class,
                "phi_observed": d.phi_observed,
                "first_seen": ns_to_iso(d.first_seen_ns) if d.first_seen_ns else None,
                "last_seen": ns_to_iso(d.last_seen_ns) if d.last_seen_ns else None,
            }
        )
    for r in rows:
        if r["device_id"] in ids:
            continue
        out.append(
            {f: r.get(f) for f in EXPORT_FIELDS if f in r}
            | {"device_id": None, "status": "never-seen"}
        )
    return out


def write_export(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, sort_keys=False, default=str) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(EXPORT_FIELDS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k)) for k in EXPORT_FIELDS})
    return buf.getvalue()


# A cell a spreadsheet would read as a formula (OWASP "CSV Injection"): a host name or vendor
# string observed on the network must not run as one when the export is opened. Such a cell is
# written with a leading apostrophe, which `read_assets` takes off again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _csv_value(v: str) -> str:
    """A cell as `write_export` wrote it: the apostrophe before a formula-like value removed."""
    return v[1:] if v.startswith("'") and v[1:].startswith(_FORMULA_START) else v
