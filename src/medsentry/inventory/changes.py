"""Inventory changes as events with time: new device, changed identity, new software version,
new role, new address. Stored in `device_changes` and recorded in the audit ledger."""

from __future__ import annotations

from typing import Any

from medsentry.inventory.model import Device
from medsentry.inventory.state import DeviceState

DEVICE_ADDED = "device_added"
IDENTITY_CHANGED = "identity_changed"  # category, vendor or model
SOFTWARE_CHANGED = "software_changed"  # software version or operating system
ROLE_ADDED = "role_added"
ADDRESS_ADDED = "address_added"

_IDENTITY = ("category", "vendor", "model")
_SOFTWARE = ("software_version", "os")


def _val(dev: Device, attr: str) -> str | None:
    a = getattr(dev, attr)
    return None if a is None else a.value


def _when(attr_ts: int | None, dev: Device) -> int:
    return attr_ts if attr_ts else dev.last_seen_ns


def diff_devices(old: Device | None, new: Device, state: DeviceState) -> list[dict[str, Any]]:
    did = new.device_id
    if old is None:
        return [
            {
                "device_id": did,
                "ts_ns": new.first_seen_ns,
                "change": DEVICE_ADDED,
                "attribute": None,
                "old_value": None,
                "new_value": _val(new, "category"),
            }
        ]
    out = []
    for attrs, kind in ((_IDENTITY, IDENTITY_CHANGED), (_SOFTWARE, SOFTWARE_CHANGED)):
        for attr in attrs:
            before, after = _val(old, attr), _val(new, attr)
            if after is None or before == after:
                continue
            if attr == "vendor" and before is not None:
                from medsentry.inventory.identify import vendor_key

                if vendor_key(before) == vendor_key(after):  # another spelling, same company
                    continue
            a = getattr(new, attr)
            ts = max((e.ts_ns or 0 for e in a.evidence), default=0)
            out.append(
                {
                    "device_id": did,
                    "ts_ns": _when(ts, new),
                    "change": kind,
                    "attribute": attr,
                    "old_value": before,
                    "new_value": after,
                }
            )
    for role in sorted(set(new.roles) - set(old.roles)):
        out.append(
            {
                "device_id": did,
                "ts_ns": _when(state.roles.get(role), new),
                "change": ROLE_ADDED,
                "attribute": "role",
                "old_value": None,
                "new_value": role,
            }
        )
    added = set(new.ips) - set(old.ips)
    for ip in sorted(added):
        span = state.addresses.get(ip)
        if span is None:
            before = old.ips[0] if old.ips else None
        else:  # a capture older than the stored ones: the address before it then, not now
            before = _address_before(state, span.first_ns)
        out.append(
            {
                "device_id": did,
                "ts_ns": _when(span.first_ns if span else None, new),
                "change": ADDRESS_ADDED,
                "attribute": "ip",
                "old_value": before,
                "new_value": ip,
            }
        )
        after = _address_after(state, span.first_ns) if span is not None else None
        # the move away from it to the address the device was first stored with (no row says
        # when that one came: the device_added row stood for it)
        if (
            after is not None
            and after not in added
            and state.addresses[after].first_ns <= old.first_seen_ns
        ):
            out.append(
                {
                    "device_id": did,
                    "ts_ns": state.addresses[after].first_ns,
                    "change": ADDRESS_ADDED,
                    "attribute": "ip",
                    "old_value": ip,
                    "new_value": after,
                }
            )
    return out


def _address_before(state: DeviceState, ts: int) -> str | None:
    """The address the device was last seen using when it first used the one seen at `ts`."""
    prior = [(s.first_ns, ip) for ip, s in state.addresses.items() if s.first_ns < ts]
    return max(prior)[1] if prior else None


def _address_after(state: DeviceState, ts: int) -> str | None:
    """The address the device took next after the one first seen at `ts`."""
    later = [(s.first_ns, ip) for ip, s in state.addresses.items() if s.first_ns > ts]
    return min(later)[1] if later else None


def ledger_entries(
    changes: list[dict[str, Any]], devices: list[Device]
) -> list[tuple[str, dict[str, Any], str]]:
    """One ledger entry per change (PHI-free: identifiers, attribute values, times)."""
    # times as RFC 3339 text: ledger JSON keeps integers within I-JSON's 2^53 (RFC 7493)
    from medsentry.store import ns_to_iso

    by_id = {d.device_id: d for d in devices}
    out = []
    append = out.append
    for ch in changes:
        dev = by_id.get(ch["device_id"])
        if ch["change"] == DEVICE_ADDED and dev is not None:
            category, vendor, model, first = dev.category, dev.vendor, dev.model, dev.first_seen_ns
            data = {
                "device_id": dev.device_id,
                "mac": dev.mac,
                "ips": dev.ips[:4],
                "category": None if category is None else category.value,
                "vendor": None if vendor is None else vendor.value,
                "model": None if model is None else model.value,
                "criticality": dev.criticality,
                "first_seen": ns_to_iso(first) if first else None,
                "capture_id": ch.get("capture_id"),
            }
            append(("inventory.device_added", data, "inventory"))
        else:
            ts = ch["ts_ns"]
            data = {
                "device_id": ch["device_id"],
                "change": ch["change"],
                "attribute": ch["attribute"],
                "old": ch["old_value"],
                "new": ch["new_value"],
                "observed": ns_to_iso(ts) if ts else None,
                "capture_id": ch.get("capture_id"),
            }
            append(("inventory.device_changed", data, "inventory"))
    return out
