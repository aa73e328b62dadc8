"""The inventory as clinical engineering keeps it: CMMS import/export and reconciliation.

Import reads CSV (header row) or JSON (a list of objects, or {"assets": [...]}) with the fields
a CMMS export holds: asset tag, location, owner, serial number, department, vendor, model,
category, MAC, IP, host name (common column spellings are accepted, see `_ALIASES`; other
columns are kept as they are). Columns about a patient, free text and columns with person
data in a cell are not (`cmms_phi`). The whole file is validated before anything is stored.

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
import itertools
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update

from medsentry.errors import InputError
from medsentry.inventory.cmms_phi import (
    PERSON_DATA_KINDS,
    free_text_column,
    patient_column,
    person_data,
    shape,
    stored_column,
)
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
    "equipment": "asset_tag",  # "Equipment #"
    "equipment_number": "asset_tag",
    "equipment_no": "asset_tag",
    "equipment_id": "asset_tag",
    "control": "asset_tag",  # "Control #"
    "control_number": "asset_tag",
    "control_no": "asset_tag",
    "mac": "mac",
    "mac_address": "mac",
    "mac_addr": "mac",
    "ip": "ip",
    "ip_address": "ip",
    "ip_addr": "ip",
    "ipv4": "ip",
    "ipv4_address": "ip",
    "ipv6": "ip",
    "ipv6_address": "ip",
    "hostname": "hostname",
    "host_name": "hostname",
    "host": "hostname",
    "dns_name": "hostname",
    "fqdn": "hostname",
    "serial": "serial_number",
    "serial_number": "serial_number",
    "serial_no": "serial_number",
    "sn": "serial_number",
    "s_n": "serial_number",  # "S/N"
    "vendor": "vendor",
    "manufacturer": "vendor",
    "make": "vendor",
    "model": "model",
    "model_number": "model",
    "model_name": "model",
    "category": "category",
    "device_type": "category",
    "equipment_type": "category",
    "type": "category",
    "location": "location",
    "room": "location",
    "department": "department",
    "dept": "department",
    "owner": "owner",
    "responsible": "owner",
}
# Columns `export` writes from the network's side and its own bookkeeping carry these
# prefixes, and an import ignores them: an export read back does not turn the network's
# guesses into the list's claims, and a CMMS's own "Status" or "OS" column is still kept.
EXPORT_ONLY_PREFIXES = ("medsentry_", "observed_")
CMMS_CONFIDENCE = 0.9  # the list is kept by people who handled the device
_MAC = re.compile(r"^[0-9a-f]{2}([:\-.]?[0-9a-f]{2}){5}$")
_DELIMITERS = (",", ";", "\t", "|")  # Excel writes ";" where "," is the decimal separator
_HEADER_SEARCH = 10  # rows above the header (a report title, a date) tolerated


def _column(name: str) -> str:
    return _ALIASES.get(_normalized(name), _normalized(name))


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _mac(value: str, where: str) -> str:
    v = value.strip().lower()
    if not _MAC.match(v):
        raise InputError(f"{where}: not a MAC address ({shape(value)})")
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


class AssetList(NamedTuple):
    """A validated CMMS file. Each record holds the fields its file has a column (CSV) or key
    (JSON) for, an empty one as None: an import replaces those and keeps the others."""

    records: list[dict[str, Any]]
    skipped: int  # rows without an asset tag
    warnings: list[str]


def _text(raw: bytes, path: Path) -> tuple[str, str | None]:
    """The file's text and, when it was not UTF-8, a warning saying how it was read."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode Text" is UTF-16
        try:
            return raw.decode("utf-16"), None
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: offset {exc.start}: not UTF-16 text") from None
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        try:  # Excel's plain "CSV" on Windows is the ANSI code page: Windows-1252 in the West
            return raw.decode("cp1252"), (
                f"{path}: line {line} is not UTF-8: the file was read as Windows-1252"
                " (save it as 'CSV UTF-8' to be sure of accented names)"
            )
        except UnicodeDecodeError:
            raise InputError(
                f"{path}: line {line}: neither UTF-8 nor Windows-1252 text (save it as 'CSV UTF-8')"
            ) from None


def _cell(v: Any, where: str, key: str) -> str:
    """A JSON value as text: strings and numbers; anything else is an error."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return str(int(v)) if v.is_integer() else repr(v)
    kind = {bool: "true/false", dict: "an object", list: "a list"}.get(type(v), "NaN or infinity")
    raise InputError(f"{where}: field {key}: expected text or a number, got {kind}")


def _csv_table(text: str, path: Path) -> tuple[list[str], list[tuple[int, list[str]]], list[str]]:
    """Header, (line, cells) rows and warnings of a CSV file: the delimiter is the one whose
    parse names an asset tag column within the first rows (Excel's ";" and "\\t" included)."""
    best: tuple[int, int, str] | None = None
    widest: list[str] = []
    for delim in _DELIMITERS:
        try:
            head = list(itertools.islice(csv.reader(io.StringIO(text), delimiter=delim), 50))
        except csv.Error:
            continue
        filled = [r for r in head if any(c.strip() for c in r)][:_HEADER_SEARCH]
        if filled and len(filled[0]) > len(widest):
            widest = filled[0]
        for i, row in enumerate(filled):
            if "asset_tag" in (_column(c) for c in row):
                cand = (i, -len(row), delim)
                if best is None or cand[:2] < best[:2]:
                    best = cand
                break
    if best is None:
        if not widest:
            raise InputError(f"{path}: the file is empty: no header row, no assets")
        raise InputError(
            f"{path}: no asset tag column (columns found: {_known_columns(widest)});"
            " name one 'Asset Tag'"
        )
    skip_rows, _, delim = best
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    warnings: list[str] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if header is None:
                if skip_rows:
                    skip_rows -= 1
                    continue
                header = cells
                if line > 1:
                    warnings.append(f"{path}: lines above the header (line {line}) skipped")
                continue
            rows.append((line, cells))
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None
    assert header is not None
    if not rows:
        raise InputError(f"{path}: a header row but no assets")
    return header, rows, warnings


def _known_columns(row: list[str]) -> str:
    """The cells of a row that name known fields; the others are counted, not shown: a file
    without a header row has its first asset there, perhaps a patient's name."""
    cells = [c.strip() for c in row if c.strip()]
    known = [repr(c) for c in cells if _column(c) in FIELDS][:20]
    others = len(cells) - len(known)
    if others:
        known.append(f"{others} other{'s' * (others > 1)}, not shown")
    return ", ".join(known)


def read_assets(path: Path) -> AssetList:
    """Validated asset records, the rows skipped for lack of an asset tag, and warnings."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text, how = _text(raw, path)
    warnings = [how] if how else []
    table: list[tuple[str, list[tuple[str, Any]]]] = []  # (where, [(column, value)])
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
        if not rows:
            raise InputError(f"{path}: the list holds no assets")
        for n, row in enumerate(rows, 1):
            where = f"{path}: record {n}"
            if not isinstance(row, dict):
                raise InputError(f"{where}: not an object")
            table.append((where, [(str(k), _cell(v, where, str(k))) for k, v in row.items()]))
        label = "record"
    else:
        header, csv_rows, more = _csv_table(text, path)
        warnings += more
        for line, cells in csv_rows:
            where = f"{path}: line {line}"
            if len(cells) > len(header):
                if any(c.strip() for c in cells[len(header) :]):
                    raise InputError(f"{where}: more fields than the header names")
                cells = cells[: len(header)]  # a trailing delimiter
            cells += [""] * (len(header) - len(cells))
            pairs = [(h, _csv_value(c.strip())) for h, c in zip(header, cells, strict=True)]
            table.append((where, pairs))
        label = "line"
    out: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    skipped = 0
    left_out = _LeftOut()
    named = "column" if label == "line" else "key"  # how errors name where a value was
    doubled: dict[tuple[str, str], str] = {}  # (field, later column) -> the column used
    names: dict[str, _Column] = {}
    for where, cells in table:
        rec: dict[str, Any] = {}
        used: dict[str, str] = {}  # field -> the column that gave it
        extra: dict[str, str] = {}
        sources: dict[str, str] = {}  # "field" or "extra:key" -> the column that gave it
        hits: list[tuple[str, str]] = []  # (column, kind of person data in its cell)
        line = where.rsplit(": ", 1)[1]
        for name, val in cells:
            c = names.get(name) or names.setdefault(name, _column_of(name))
            if c.rule is not None:  # rules 1 and 2: never read
                left_out.unread(c.rule, c.label, bool(val))
                continue
            if c.field in FIELDS and c.field not in used:
                used[c.field] = sources[c.field] = c.label
                rec[c.field] = val or None
                if val and c.field not in _UNSCREENED and (kind := person_data(val)):
                    hits.append((c.label, kind))
                continue
            if c.field in FIELDS:  # a second column for one field (Location and Room): apart
                doubled[(c.field, c.label)] = used[c.field]
                key = c.norm
            elif c.field and not c.field.startswith(EXPORT_ONLY_PREFIXES):
                key = c.field
            else:
                continue
            extra[key] = val[:500]
            sources["extra:" + key] = c.label
            if val and (kind := person_data(val)):
                hits.append((c.label, kind))
        if not rec.get("asset_tag"):
            skipped += 1
            continue
        for column, kind in hits:
            left_out.person_data(column, kind, line)  # rule 3, applied below
        tag = rec["asset_tag"]
        if tag in seen:
            raise InputError(
                f"{where}: field asset_tag ({named} {used['asset_tag']!r}): the tag repeats"
                f" {seen[tag].rsplit(': ', 1)[1]}"
            )
        seen[tag] = where
        if rec.get("mac"):
            rec["mac"] = _mac(rec["mac"], f"{where}: field mac ({named} {used['mac']!r})")
        if rec.get("ip"):
            try:
                rec["ip"] = str(ipaddress.ip_address(rec["ip"]))
            except ValueError:
                raise InputError(
                    f"{where}: field ip ({named} {used['ip']!r}): not an IP address"
                    f" ({shape(rec['ip'])})"
                ) from None
        if rec.get("category"):
            key = _category(rec["category"])
            if key is None:
                extra["category_text"] = rec["category"][:500]
                rec["category"] = None
            else:
                rec["category"] = key
                extra["category_text"] = ""  # a known category replaces an earlier text
        elif "category" in rec:
            extra["category_text"] = ""
        for f in FIELDS:
            if rec.get(f) and len(rec[f]) > 255:
                raise InputError(
                    f"{where}: field {f} ({named} {used[f]!r}): longer than 255 characters"
                )
        rec["extra"] = extra
        rec["where"] = where
        rec["sources"] = sources
        out.append(rec)
    if not out:
        raise InputError(f"{path}: no {label} has an asset tag ({skipped} without one)")
    left_out.drop_screened(out)
    warnings += left_out.warnings(path, len(out))
    for (field, later), first in sorted(doubled.items()):
        warnings.append(
            f"{path}: columns {first!r} and {later!r} both name the {field.replace('_', ' ')}:"
            f" {first!r} is used, {later!r} kept as a column of its own"
        )
    warnings += _shared_identifiers(out)
    return AssetList(out, skipped, warnings)


# Fields that identify the equipment (validated, or the list's key and names for it): not
# screened for person data. Location, owner, department and the list's own columns are.
_UNSCREENED = frozenset(
    {"asset_tag", "mac", "ip", "hostname", "serial_number", "vendor", "model", "category"}
)


class _Column(NamedTuple):
    label: str  # the name as the file gives it, for messages
    norm: str  # the name normalized
    field: str  # the field it names (`_ALIASES`), else the normalized name
    rule: str | None  # "patient" or "free text": never read (`cmms_phi` rules 1 and 2)


def _column_of(name: str) -> _Column:
    norm = _normalized(name)
    field = _ALIASES.get(norm, norm)
    rule = None
    if patient_column(name):
        rule = "patient"
    elif field not in FIELDS and free_text_column(name):
        rule = "free text"
    return _Column(name.strip(), norm, field, rule)


class _LeftOut:
    """The columns an import leaves out, and why: counts and lines, never values."""

    def __init__(self) -> None:
        self.unread_rows: dict[str, dict[str, int]] = {"patient": {}, "free text": {}}
        self.screened: dict[str, dict[str, list[str]]] = {}  # column -> kind -> lines

    def unread(self, rule: str, column: str, filled: bool) -> None:
        rows = self.unread_rows[rule]
        rows[column] = rows.get(column, 0) + filled

    def person_data(self, column: str, kind: str, line: str) -> None:
        self.screened.setdefault(column, {}).setdefault(kind, []).append(line)

    def drop_screened(self, records: list[dict[str, Any]]) -> None:
        """Rule 3: a column with person data in any cell is left out of every record, as if
        the file had no such column (an asset already stored keeps its value)."""
        if not self.screened:
            return
        for rec in records:
            for dest, column in rec["sources"].items():
                if column in self.screened:
                    if dest.startswith("extra:"):
                        rec["extra"].pop(dest[6:], None)
                    else:
                        rec.pop(dest, None)

    def warnings(self, path: Path, records: int) -> list[str]:
        out = []
        phi = self.unread_rows["patient"]
        if phi:
            out.append(
                f"{path}: columns that would carry patient identity were not imported: "
                + ", ".join(f"{c!r} ({_rows(n)} with a value)" for c, n in sorted(phi.items()))
            )
        text = self.unread_rows["free text"]
        if text:
            out.append(
                f"{path}: free-text columns were not imported (free text names the patients"
                " loaners go to, in words no check can recognise): "
                + ", ".join(f"{c!r} ({_rows(n)} with text)" for c, n in sorted(text.items()))
            )
        for column, kinds in sorted(self.screened.items()):
            found = "; ".join(
                f"{PERSON_DATA_KINDS[k]}: {_lines(lines)}" for k, lines in kinds.items()
            )
            n = len({x for lines in kinds.values() for x in lines})
            out.append(
                f"{path}: column {column!r} was not imported: what looks like person data is in"
                f" {n} of {records} rows ({found}); correct those cells and import again"
            )
        return out


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _lines(lines: list[str]) -> str:
    shown = ", ".join(lines[:5])
    return shown + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")


def _shared_identifiers(records: list[dict[str, Any]]) -> list[str]:
    """Two assets of one list naming the same MAC or IP: both are kept (the list is the
    user's), and the clash is said; `reconcile` lists the device both match."""
    out = []
    for field in ("mac", "ip"):
        first: dict[str, dict[str, Any]] = {}
        for r in records:
            v = r.get(field)
            if not v:
                continue
            if v in first:
                out.append(
                    f"{r['where']}: asset {r['asset_tag']!r} names the {field} {v} of asset"
                    f" {first[v]['asset_tag']!r} ({first[v]['where'].rsplit(': ', 1)[1]})"
                )
            else:
                first[v] = r
    return out


def import_assets(store: Store, path: Path) -> dict[str, Any]:
    """Store the list, match it, re-identify matches. An asset already stored under the same
    tag keeps the fields this file has no column for (a partial update changes what it names)."""
    listing = read_assets(path)  # InputError before anything is written
    records = listing.records
    now = datetime.now(UTC)
    with store.writing() as conn:
        tags = [r["asset_tag"] for r in records]
        old: dict[str, dict[str, Any]] = {}
        for i in range(0, len(tags), 500):
            q = select(assets).where(assets.c.asset_tag.in_(tags[i : i + 500]))
            old.update((r.asset_tag, dict(r._mapping)) for r in conn.execute(q))
            conn.execute(delete(assets).where(assets.c.asset_tag.in_(tags[i : i + 500])))
        rows = [_merged(r, old.get(r["asset_tag"]), str(path), now) for r in records]
        if rows:
            conn.execute(insert(assets), rows)
        match_assets(conn, {})
    from medsentry.inventory.engine import reidentify

    reidentify(store)
    report = reconcile(store)
    report["imported"] = len(records)
    report["skipped"] = listing.skipped
    report["warnings"] = listing.warnings
    return report


def _merged(
    rec: dict[str, Any], old: dict[str, Any] | None, source: str, now: datetime
) -> dict[str, Any]:
    """The stored row for an imported record: its fields over the stored asset's."""
    row = {f: rec[f] if f in rec else (old or {}).get(f) for f in FIELDS}
    extra = _stored_extra(json.loads(old["extra"])) if old and old.get("extra") else {}
    for k, v in rec["extra"].items():
        if v:
            extra[k] = v
        else:
            extra.pop(k, None)
    same_identity = old is not None and all(
        row[f] == old.get(f) for f in ("mac", "ip", "hostname", "serial_number")
    )
    return row | {
        "extra": json.dumps(extra, sort_keys=True) if extra else None,
        "device_id": old["device_id"] if same_identity else None,  # else matched again
        "source": source,
        "imported_at": now,
    }


def _stored_extra(extra: dict[str, str]) -> dict[str, str]:
    """A stored asset's other columns without those an import no longer reads (a database
    written before `cmms_phi`'s rules may hold a "Notes" or "PatientName" column): they are
    not shown, and the next import of the asset drops them."""
    return {
        k: v
        for k, v in extra.items()
        if k == "category_text" or (stored_column(k) and not person_data(v))
    }


# Serial numbers devices state on the wire: DICOM Device Serial Number (0018,1000) (PS3.3
# C.7.5.1), BLE Device Information Serial Number String (DIS 1.1 §3.3)
SERIAL_KEYS = ("dicom.device_serial", "ble.gatt.serial")


def match_assets(conn: Connection, states: dict[str, DeviceState]) -> int:
    """Give unmatched assets a device: by MAC, else IP (most recent holder), else host name,
    else the serial number the device stated (a BLE device with a random address has no MAC
    or IP to match). `states`: devices of the capture being folded, not stored yet.

    Lookups are batched (a list of 50,000 assets is a few queries, not three per asset).
    Host names compare without case, and a bare name matches its fully qualified form
    ("MON-104" and "mon-104.icu.example"); a name or serial two devices share matches neither.
    """
    pending = conn.execute(
        select(
            assets.c.asset_tag, assets.c.mac, assets.c.ip, assets.c.hostname, assets.c.serial_number
        ).where(assets.c.device_id.is_(None))
    ).all()
    if not pending:
        return 0
    macs = _stored_ids(conn, sorted({f"mac:{m}" for _, m, _, _, _ in pending if m}))
    ip_owner = _ip_owners(conn, sorted({ip for _, _, ip, _, _ in pending if ip}))
    seen_now: dict[str, tuple[int, str]] = {}
    for did, st in states.items():  # the capture being folded holds the latest holders
        for ip, span in st.addresses.items():
            if ip not in seen_now or span.last_ns > seen_now[ip][0]:
                seen_now[ip] = (span.last_ns, did)
    ip_owner |= seen_now
    names = _host_names(conn, states) if any(p[3] for p in pending) else _Names({}, {})
    serial_of_state: dict[str, str | None] = {}
    for did, st in states.items():
        for key in SERIAL_KEYS:
            for serial in st.observations.get(key, ()):
                # a serial stated by two devices matches neither
                other = serial_of_state.setdefault(serial.strip().casefold(), did)
                if other != did:
                    serial_of_state[serial.strip().casefold()] = None
    found: list[dict[str, str]] = []
    for tag, mac, ip, hostname, serial in pending:
        did = None
        if mac and (f"mac:{mac}" in states or f"mac:{mac}" in macs):
            did = f"mac:{mac}"
        if did is None and ip:
            owner = ip_owner.get(ip)
            did = owner[1] if owner else (f"ip:{ip}" if f"ip:{ip}" in states else None)
        if did is None and hostname:
            did = _by_name(names, hostname)
        if did is None and serial and serial.strip():
            did = serial_of_state.get(serial.strip().casefold())
        if did is not None:
            found.append({"tag": tag, "did": did})
    if found:
        conn.execute(
            update(assets)
            .where(assets.c.asset_tag == bindparam("tag"))
            .values(device_id=bindparam("did")),
            found,
        )
    return len(found)


def _stored_ids(conn: Connection, ids: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(ids), 500):
        q = select(devices.c.device_id).where(devices.c.device_id.in_(ids[i : i + 500]))
        out.update(conn.execute(q).scalars())
    return out


def _ip_owners(conn: Connection, ips: list[str]) -> dict[str, tuple[int, str]]:
    """IP -> (last seen, device): the most recent holder of each address."""
    out: dict[str, tuple[int, str]] = {}
    for i in range(0, len(ips), 500):
        q = select(
            device_addresses.c.ip, device_addresses.c.last_ns, device_addresses.c.device_id
        ).where(device_addresses.c.ip.in_(ips[i : i + 500]))
        for ip, last_ns, did in conn.execute(q):
            if ip not in out or last_ns > out[ip][0]:
                out[ip] = (last_ns, did)
    return out


class _Names(NamedTuple):
    full: dict[str, set[str]]  # host name (casefolded) -> the devices that go by it
    first_label: dict[str, set[str]]  # first label of a qualified name -> its devices


def _host_names(conn: Connection, states: dict[str, DeviceState]) -> _Names:
    """The devices' host names, stored and of the capture being folded."""
    names = _Names({}, {})

    def add(name: str, did: str) -> None:
        name = name.strip().rstrip(".").casefold()
        if name:
            names.full.setdefault(name, set()).add(did)
            if "." in name:
                names.first_label.setdefault(name.split(".", 1)[0], set()).add(did)

    for did, name in conn.execute(
        select(devices.c.device_id, devices.c.hostname).where(devices.c.hostname.is_not(None))
    ):
        if did not in states:
            add(name, did)
    for did, st in states.items():
        for key in st.hostnames:  # "<rank>:<name>" (observe.HOSTNAME_RANK)
            add(key.split(":", 1)[1], did)
    return names


def _by_name(names: _Names, hostname: str) -> str | None:
    """The one device a listed host name names: the same name in any case, else a bare name
    against the devices' first labels (or a listed FQDN's first label against bare names)."""
    want = hostname.strip().rstrip(".").casefold()
    hits = names.full.get(want)
    if not hits:
        short = want.split(".", 1)[0]
        hits = names.full.get(short) if "." in want else names.first_label.get(want)
    return next(iter(hits)) if hits and len(hits) == 1 else None


def assets_by_device(conn: Connection, device_ids: list[str]) -> dict[str, dict[str, str]]:
    """The CMMS records matched to these devices, by device id."""
    out: dict[str, dict[str, str]] = {}
    if (
        conn.execute(select(assets.c.asset_tag).where(assets.c.device_id.is_not(None))).first()
        is None
    ):
        return out  # no list imported, or none of it matched yet: one query, not one per 500
    for i in range(0, len(device_ids), 500):
        q = (
            select(assets)
            .where(assets.c.device_id.in_(device_ids[i : i + 500]))
            .order_by(assets.c.asset_tag)
        )
        for r in conn.execute(q):
            m = r._mapping
            if m["device_id"] in out:
                continue  # two assets match one device (`reconcile` says so): the first tag's
            rec = {f: m[f] for f in FIELDS if m[f]}
            if m["extra"]:
                rec.update(_stored_extra(json.loads(m["extra"])))
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
    tags_of: dict[str, list[str]] = {}
    for r in rows:
        if r["device_id"] in devs:
            tags_of.setdefault(r["device_id"], []).append(r["asset_tag"])
    shared = [
        {"device_id": did, "asset_tags": tags}
        for did, tags in sorted(tags_of.items())
        if len(tags) > 1
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
    return {
        "never_seen": never_seen,
        "unlisted": unlisted,
        "mismatches": mismatches,
        "shared": shared,
    }


def _mismatch(r: dict, dev: Device, field: str, listed: str, observed: str) -> dict[str, str]:
    return {
        "asset_tag": r["asset_tag"],
        "device_id": dev.device_id,
        "field": field,
        "listed": listed,
        "observed": observed,
    }


# The list's own columns first (what an import reads back), then its other columns, then the
# network's view under names an import ignores (`EXPORT_ONLY_PREFIXES`).
LISTED_FIELDS = (
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
OBSERVED_FIELDS = (
    "medsentry_device_id",
    "medsentry_status",
    "observed_mac",
    "observed_ip",
    "observed_hostname",
    "observed_category",
    "observed_vendor",
    "observed_model",
    "observed_software_version",
    "observed_os",
    "observed_criticality",
    "observed_fda_class",
    "observed_phi",
    "observed_first_seen",
    "observed_last_seen",
)
EXPORT_FIELDS = LISTED_FIELDS + OBSERVED_FIELDS


def export_rows(store: Store) -> list[dict[str, Any]]:
    """One row per matched asset (with its device's view), one per device on no list, and
    one per asset never seen. The listed columns hold the list's own values, so that the
    export imports back unchanged; a device on no list gets its MAC (else its IP) there, so
    that giving the row an asset tag and importing it lists that device."""
    from medsentry.inventory.store import load_devices
    from medsentry.store import ns_to_iso

    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(assets).order_by(assets.c.asset_tag))]
    by_dev: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["device_id"]:
            by_dev.setdefault(r["device_id"], []).append(r)
    out = []
    devs = load_devices(store)
    ids = {d.device_id for d in devs}
    for d in devs:

        def v(attr: str, dev: Device = d) -> str | None:
            x = getattr(dev, attr)
            return x.value if x is not None else None

        seen = {
            "medsentry_device_id": d.device_id,
            "observed_mac": d.mac,
            "observed_ip": d.ips[0] if d.ips else None,
            "observed_hostname": d.hostname,
            "observed_category": v("category"),
            "observed_vendor": v("vendor"),
            "observed_model": v("model"),
            "observed_software_version": v("software_version"),
            "observed_os": v("os"),
            "observed_criticality": d.criticality,
            "observed_fda_class": d.fda_class,
            "observed_phi": d.phi_observed,
            "observed_first_seen": ns_to_iso(d.first_seen_ns) if d.first_seen_ns else None,
            "observed_last_seen": ns_to_iso(d.last_seen_ns) if d.last_seen_ns else None,
        }
        for a in by_dev.get(d.device_id, ()):
            out.append(_listed(a) | seen | {"medsentry_status": "matched"})
        if d.device_id not in by_dev:
            ident = {"mac": d.mac} if d.mac else {"ip": d.ips[0] if d.ips else None}
            blank = dict.fromkeys(LISTED_FIELDS)
            out.append(blank | ident | seen | {"medsentry_status": "observed-only"})
    for r in rows:
        if r["device_id"] not in ids:
            unseen = dict.fromkeys(OBSERVED_FIELDS) | {"medsentry_status": "never-seen"}
            out.append(_listed(r) | unseen)
    return out


def _listed(r: dict[str, Any]) -> dict[str, Any]:
    """An asset row's listed values and other columns, as its file named them."""
    out = {f: r.get(f) for f in LISTED_FIELDS}
    extra = _stored_extra(json.loads(r["extra"])) if r.get("extra") else {}
    if not out["category"] and extra.get("category_text"):
        out["category"] = extra["category_text"]  # a category the taxonomy does not name
    for k, v in extra.items():
        if k != "category_text" and k not in EXPORT_FIELDS:
            out[k] = v
    return out


def write_export(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, sort_keys=False, default=str) + "\n"
    others = sorted({k for r in rows for k in r} - set(EXPORT_FIELDS))
    names = [*LISTED_FIELDS, *others, *OBSERVED_FIELDS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_cell(r.get(k)) for k in names})
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
