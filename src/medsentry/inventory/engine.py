"""The inventory analysis engine: events in, devices and their changes out.

`feed` files observations per endpoint (cheap, per event); `finish` resolves endpoints into
devices, folds them into what the store already knows (earlier captures, earlier live commits),
identifies every touched device, writes devices, address history and changes in one
transaction, then records the changes in the audit ledger.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from medsentry.events.base import Event
from medsentry.inventory import ble_companies, oui
from medsentry.inventory import store as inv_store
from medsentry.inventory.changes import diff_devices, ledger_entries
from medsentry.inventory.cmms import asset_claims_for, assets_by_device, match_assets
from medsentry.inventory.fingerprints import Library, default_library
from medsentry.inventory.identify import identify, vendor_key
from medsentry.inventory.model import Device
from medsentry.inventory.observe import Observer
from medsentry.inventory.state import DeviceState, decode_state, encode_state
from medsentry.inventory.taxonomy import Taxonomy, taxonomy

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from medsentry.store import Store


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around a burst of allocations.

    Folding allocates hundreds of thousands of small acyclic objects (claims, evidence, rows);
    reference counting frees them. Left on, the collector's full passes would traverse the whole
    heap (the capture pipeline's state included) again and again: measured, that doubled the
    identification time at 10,000 devices. The previous state is restored afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class InventoryEngine:
    name = "inventory"

    def __init__(
        self,
        store: Store | None = None,
        library: Library | None = None,
        tax: Taxonomy | None = None,
        ledger: bool = True,
    ) -> None:
        with _no_cyclic_gc():  # tens of thousands of acyclic table entries
            self.library = library or default_library()  # ConfigError now, at start-up
            self.tax = tax or taxonomy()
            oui.source()  # the OUI extract and the BLE company table too
            ble_companies.company(0)
            vendor_key("GE Healthcare")  # and the company alias table
        self.observer = Observer()
        self.ledger = ledger
        self.gateways: dict[str, set[str]] | None = None  # router MACs -> own addresses

    def feed(self, events: Sequence[Event]) -> None:
        with _no_cyclic_gc():
            self.observer.feed(events)

    def finish(self, store: Store, capture_id: str | None) -> dict[str, Any]:
        observer, self.observer = self.observer, Observer()
        if self.gateways is None:
            self.gateways = inv_store.load_routers(store)
        # The whole burst, ledger append included, runs with the cyclic GC paused, and what it
        # allocated is released before the GC resumes: re-enabled with the burst still alive, the
        # collector's first passes would traverse every device, row and ledger entry.
        with _no_cyclic_gc():
            fresh, gateways = observer.resolve(self.gateways)
            self.gateways.update(gateways)
            if not fresh:
                return {"devices": 0, "new": 0, "changes": 0}
            with store.writing() as conn:  # two scans of one capture: the second waits
                devices, changes, removed = fold_and_identify(
                    conn, fresh, self.library, self.tax, capture_id
                )
            entries = ledger_entries(changes, devices) if self.ledger else []
            if entries:
                from medsentry.ledger import ledger

                ledger().append_many(entries)
            counts = {
                "devices": len(devices),
                "new": sum(1 for c in changes if c["change"] == "device_added"),
                "changes": len(changes),
                "routers": len(gateways),
                "merged": len(removed),
                "events": observer.events,
            }
            del observer, fresh, devices, changes, removed, entries
        return counts


def fold_and_identify(
    conn: Connection,
    fresh: dict[str, DeviceState],
    library: Library,
    tax: Taxonomy,
    capture_id: str | None,
) -> tuple[list[Device], list[dict[str, Any]], list[str]]:
    """Merge fresh states into stored ones, identify, write.

    Returns the devices, the changes, and the ids merged away (IP-only devices now known by MAC).
    """
    stored: dict[str, bytes] = {}
    if inv_store.has_devices(conn):
        wanted = set(fresh)
        for st in fresh.values():  # devices stored under an address these devices now explain
            wanted.update(_aliases(st))
        stored = inv_store.load_states(conn, wanted)
    states: dict[str, DeviceState] = {}
    removed: dict[str, str] = {}  # merged-away id -> the device it proved to be
    for did, st in fresh.items():
        old = stored.get(did)
        if old is not None:
            merged = decode_state(old, did)
            merged.merge(st)
            st = merged
        states[did] = st
    for did, st in list(states.items()):
        for alias in _aliases(st):
            if alias in stored and alias not in fresh:
                st.merge(decode_state(stored[alias], alias))
                removed[alias] = did
    old_records = inv_store.load_records_for(conn, list(states) + list(removed)) if stored else {}
    match_assets(conn, states)
    assets = assets_by_device(conn, list(states))
    devices: list[Device] = []
    rows, addresses = [], []
    now = datetime.now(UTC)
    for did, st in states.items():
        asset = assets.get(did)
        dev = identify(st, library, tax, asset, asset_claims_for(asset))
        devices.append(dev)
        rows.append(inv_store.device_row(dev, encode_state(st), now))
        addresses += [
            {
                "device_id": did,
                "ip": ip,
                "first_ns": span.first_ns,
                "last_ns": span.last_ns,
                "source": span.source,
            }
            for ip, span in st.addresses.items()
        ]
    changes = []
    for dev in devices:
        old = old_records.get(dev.device_id)
        if old is None:  # a device first seen by IP keeps its history under its MAC
            for r, target in removed.items():
                if target == dev.device_id and old_records.get(r) is not None:
                    old = old_records[r]
        state = states[dev.device_id]
        for ch in diff_devices(old, dev, state):
            ch.update(capture_id=capture_id, recorded_at=now)
            changes.append(ch)
    known = [did for did in states if did in stored] + list(removed)  # rows to replace
    inv_store.replace_devices(conn, rows, addresses, list(removed), existing=known)
    inv_store.rekey(conn, removed)  # its history and CMMS match follow the device
    inv_store.add_changes(conn, changes)
    # a capture older than the stored ones: the device was there earlier than first recorded
    inv_store.move_device_added(
        conn,
        {
            dev.device_id: dev.first_seen_ns
            for dev in devices
            if (old := old_records.get(dev.device_id)) is not None
            and dev.first_seen_ns < old.first_seen_ns
        },
    )
    return devices, changes, list(removed)


def _aliases(st: DeviceState) -> list[str]:
    """Ids under which this device may have been stored before it was known as itself: an
    IP-only device of its addresses; a BLE device of each of its resolved private addresses."""
    if st.device_id.startswith("mac:"):
        return [f"ip:{ip}" for ip in st.addresses]
    if st.device_id.startswith("ble:"):
        return [f"ble:{a}" for a in st.observations.get("ble.private_address", ())]
    return []


def reidentify(store: Store, library: Library | None = None, ledger: bool = True) -> dict:
    """Identify every stored device again (new fingerprint rules, new CMMS facts)."""
    library = library or default_library()
    with store.writing() as conn:
        states = {did: decode_state(raw, did) for did, raw in inv_store.load_states(conn).items()}
        devices, changes, _ = _reidentify_all(conn, states, library, taxonomy())
    entries = ledger_entries(changes, devices) if ledger else []
    if entries:
        from medsentry.ledger import ledger as open_ledger

        open_ledger().append_many(entries)
    return {"devices": len(devices), "changes": len(changes)}


def _reidentify_all(
    conn: Connection, states: dict[str, DeviceState], library: Library, tax: Taxonomy
) -> tuple[list[Device], list[dict[str, Any]], list[str]]:
    old_records = inv_store.load_records_for(conn, list(states))
    match_assets(conn, states)
    assets = assets_by_device(conn, list(states))
    devices, rows, changes = [], [], []
    now = datetime.now(UTC)
    for did, st in states.items():
        asset = assets.get(did)
        dev = identify(st, library, tax, asset, asset_claims_for(asset))
        devices.append(dev)
        rows.append(inv_store.device_row(dev, encode_state(st), now))
        for ch in diff_devices(old_records.get(did), dev, st):
            ch.update(capture_id=None, recorded_at=now)
            changes.append(ch)
    inv_store.update_records(conn, rows)
    inv_store.add_changes(conn, changes)
    return devices, changes, []


def inventory_engine(store: Store) -> InventoryEngine:
    """The factory `medsentry.analysis` registers."""
    return InventoryEngine(store)
