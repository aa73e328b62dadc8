"""Filtering, sorting and flattening devices for listings (CLI, API, reports)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from medsentry.errors import InputError
from medsentry.inventory.model import CRITICALITIES, Device

SORT_KEYS = (
    "device_id",
    "ip",
    "category",
    "vendor",
    "model",
    "criticality",
    "confidence",
    "first_seen",
    "last_seen",
)
LIST_COLUMNS = (
    "device_id",
    "ip",
    "hostname",
    "category",
    "conf",
    "vendor",
    "model",
    "software",
    "criticality",
    "phi",
    "roles",
    "last_seen",
)


def _val(dev: Device, attr: str) -> str | None:
    a = getattr(dev, attr)
    return None if a is None else a.value


def _ip_key(dev: Device) -> tuple[int, int]:
    if not dev.ips:
        return (9, 0)
    try:
        a = ipaddress.ip_address(dev.ips[0])
        return (a.version, int(a))
    except ValueError:
        return (9, 0)


def filter_devices(
    devices: Iterable[Device],
    category: str | None = None,
    vendor: str | None = None,
    criticality: Iterable[str] = (),
    subnet: str | None = None,
    medical: bool | None = None,
    sort: str = "ip",
    limit: int | None = None,
) -> list[Device]:
    """Devices matching every given filter, sorted (`-key` descending)."""
    from medsentry.inventory.identify import vendor_key
    from medsentry.inventory.taxonomy import taxonomy

    crit = [c.lower() for c in criticality]
    for c in crit:
        if c not in CRITICALITIES:
            raise InputError(f"--criticality: {c!r} is not one of {', '.join(CRITICALITIES)}")
    net = None
    if subnet:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError:
            raise InputError(f"--subnet: {subnet!r} is not a network (e.g. 10.20.0.0/16)") from None
    cat_keys: set[str] | None = None
    if category:
        tax = taxonomy()
        want = category.strip().casefold()
        cat_keys = {
            k
            for k, c in tax.categories.items()
            if k.casefold() == want
            or k.casefold().startswith(want + ".")
            or c.name.casefold() == want
        }
        if not cat_keys:
            raise InputError(f"--category: {category!r} is not a taxonomy category")
        cat_keys |= {k for k in tax.categories for p in list(cat_keys) if k.startswith(p + ".")}
    # a vendor matches from the start of a word: "ge" finds GE HealthCare, not Dräger
    want_vendor = re.compile(r"(?<!\w)" + re.escape((vendor or "").strip()), re.IGNORECASE)
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_KEYS:
        raise InputError(f"--sort: {key!r} is not one of {', '.join(SORT_KEYS)}")
    out = []
    for d in devices:
        if cat_keys is not None and (d.category is None or d.category.value not in cat_keys):
            continue
        if vendor:
            v = _val(d, "vendor")
            if v is None or (not want_vendor.search(v) and vendor_key(vendor) != vendor_key(v)):
                continue
        if crit and d.criticality not in crit:
            continue
        if medical is not None and d.medical != medical:
            continue
        if net is not None:
            hit = False
            for ip in d.ips:
                try:
                    hit = ipaddress.ip_address(ip) in net
                except ValueError:
                    hit = False
                if hit:
                    break
            if not hit:
                continue
        out.append(d)
    rank = {c: i for i, c in enumerate(CRITICALITIES)}

    def sort_key(d: Device) -> Any:
        if key == "ip":
            return _ip_key(d)
        if key == "criticality":
            return (rank.get(d.criticality, 9), _ip_key(d))
        if key == "confidence":
            return d.category.confidence if d.category else -1.0
        if key == "first_seen":
            return d.first_seen_ns
        if key == "last_seen":
            return d.last_seen_ns
        if key == "device_id":
            return d.device_id
        return ((_val(d, key) or "\uffff").casefold(), _ip_key(d))

    out.sort(key=sort_key, reverse=desc)
    return out[:limit] if limit else out


def summary(dev: Device) -> dict[str, Any]:
    """The listing record: flat fields, same for table and JSON."""
    from medsentry.store import ns_to_iso

    return {
        "device_id": dev.device_id,
        "mac": dev.mac,
        "ip": dev.ips[0] if dev.ips else None,
        "ips": dev.ips,
        "hostname": dev.hostname,
        "category": _val(dev, "category"),
        "conf": round(dev.category.confidence, 2) if dev.category else None,
        "vendor": _val(dev, "vendor"),
        "vendor_confidence": round(dev.vendor.confidence, 2) if dev.vendor else None,
        "model": _val(dev, "model"),
        "software": _val(dev, "software_version"),
        "os": _val(dev, "os"),
        "criticality": dev.criticality,
        "fda_class": dev.fda_class,
        "medical": dev.medical,
        "phi": dev.phi_observed,
        "roles": ",".join(dev.roles),
        "asset_tag": dev.asset.get("asset_tag"),
        "first_seen": ns_to_iso(dev.first_seen_ns) if dev.first_seen_ns else None,
        "last_seen": ns_to_iso(dev.last_seen_ns) if dev.last_seen_ns else None,
    }
