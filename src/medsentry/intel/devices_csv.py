"""A hospital's device inventory as CSV (a CMMS or asset-list export) -> `DeviceQuery`s.

Column names vary between CMMS products; each field accepts the usual headers (case and
punctuation ignored): id (asset tag), vendor (manufacturer), product (model), version
(software / firmware version) and a free-text description. At least a vendor, product or
description column is required.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from medsentry.errors import InputError
from medsentry.intel.match import DeviceQuery

COLUMNS: dict[str, tuple[str, ...]] = {
    "device_id": (
        "deviceid",
        "assettag",
        "asset",
        "assetid",
        "assetnumber",
        "tag",
        "id",
        "equipmentid",
        "controlnumber",
    ),
    "vendor": ("vendor", "manufacturer", "mfr", "make", "manufacturername", "brand"),
    "product": (
        "product",
        "model",
        "modelname",
        "modelnumber",
        "device",
        "devicemodel",
        "productname",
    ),
    "version": (
        "version",
        "softwareversion",
        "swversion",
        "firmware",
        "firmwareversion",
        "fwversion",
        "sw",
        "fw",
        "softwarerevision",
        "revision",
    ),
    "text": ("description", "devicedescription", "desc", "name", "devicename"),
}


def _norm(h: str) -> str:
    return re.sub(r"[^a-z0-9]", "", h.lower())


def read_devices_csv(path: Path) -> list[DeviceQuery]:
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", "replace")  # Excel exports
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        return _rows(csv.reader(io.StringIO(text), dialect), source)
    except csv.Error as exc:  # e.g. a bare CR inside an unquoted field (RFC 4180 §2)
        raise InputError(f"not valid CSV: {exc}", source) from None


def _rows(reader: Iterator[list[str]], source: str) -> list[DeviceQuery]:
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty device inventory (no header line)", source) from None
    index: dict[str, int] = {}
    normed = [_norm(h) for h in header]
    for field, names in COLUMNS.items():
        for name in names:
            if name in normed:
                index[field] = normed.index(name)
                break
    if not ({"vendor", "product", "text"} & set(index)):
        raise InputError(
            "device inventory line 1: needs a manufacturer, model or description column"
            f" (found {', '.join(h for h in header if h) or 'none'})",
            source,
        )
    out: list[DeviceQuery] = []
    for lineno, row in enumerate(reader, 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < len(header) and len(row) <= max(index.values()):
            raise InputError(
                f"device inventory line {lineno}: {len(row)} cells, the header has {len(header)}",
                source,
            )
        vals = {f: row[i].strip() for f, i in index.items() if i < len(row)}
        out.append(
            DeviceQuery(
                device_id=vals.get("device_id") or f"line:{lineno}",
                vendor=vals.get("vendor", ""),
                product=vals.get("product", ""),
                version=vals.get("version", ""),
                text=vals.get("text", "") if not (vals.get("product")) else "",
            )
        )
    return out
