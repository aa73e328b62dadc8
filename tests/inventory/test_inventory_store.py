"""The Device contract round-trips through the inventory tables on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import insert

from medsentry.inventory import store as inv_store
from medsentry.inventory.model import Attribute, Device, Evidence
from medsentry.inventory.tables import device_addresses
from medsentry.store import open_store


def test_devices_round_trip(db_url):
    dev = Device(
        device_id="mac:00:09:fb:01:02:03",
        mac="00:09:fb:01:02:03",
        ips=["10.1.2.3"],
        first_seen_ns=1,
        last_seen_ns=2,
        vendor=Attribute(
            value="Philips",
            confidence=0.6,
            evidence=[Evidence(source="oui", observed="00:09:FB", confidence=0.6)],
        ),
        criticality="patient-affecting",
        roles=["hl7-sender"],
    )
    with open_store(db_url) as store:
        with store.engine.begin() as conn:
            inv_store.replace_devices(
                conn,
                [inv_store.device_row(dev, b"{}")],
                [dict(device_id=dev.device_id, ip="10.1.2.3", first_ns=1, last_ns=2, source="arp")],
            )
        assert inv_store.load_devices(store) == [dev]
        assert inv_store.load_device(store, dev.device_id) == dev
        assert inv_store.load_device(store, "mac:00:00:00:00:00:00") is None
        assert inv_store.find_device(store, "10.1.2.3") == dev
        assert inv_store.find_device(store, "00:09:FB:01:02:03") == dev
        with store.engine.begin() as conn:
            conn.execute(
                insert(device_addresses),
                [
                    dict(
                        device_id=dev.device_id, ip="10.9.9.9", first_ns=0, last_ns=0, source="dhcp"
                    )
                ],
            )
        assert inv_store.find_device(store, "10.9.9.9") == dev
        # rewriting replaces, never duplicates
        with store.engine.begin() as conn:
            inv_store.replace_devices(conn, [inv_store.device_row(dev, b"{}")], [])
        assert len(inv_store.load_devices(store)) == 1
