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


def test_a_renamed_device_shows_its_new_name_and_answers_to_every_name(db_url):
    """It kept the first name it was seen with; `device NAME` knew only that shown name."""
    import pytest

    from medsentry.errors import InputError
    from medsentry.inventory.identify import best_hostname
    from medsentry.inventory.state import DeviceState, encode_state

    day = 86_400 * 10**9
    monitor = DeviceState(
        device_id="mac:00:09:5c:66:00:04",
        mac="00:09:5c:66:00:04",
        hostnames={"0:ICU-BED-04": day, "0:ICU-BED-04B": 2 * day, "1:Bed4-Monitor": day},
    )
    laptop = DeviceState(
        device_id="mac:3c:52:82:44:00:50",
        mac="3c:52:82:44:00:50",
        hostnames={"1:Johns_Laptop": day, "4:shared.hosp.example": day},
    )
    printer = DeviceState(
        device_id="mac:00:00:aa:44:00:40",
        mac="00:00:aa:44:00:40",
        hostnames={"4:printer-2f.hosp.example": day, "4:shared.hosp.example": day},
    )
    assert best_hostname(monitor) == "ICU-BED-04B"  # DHCP outranks mDNS; its newest name
    rows = []
    for st in (monitor, laptop, printer):
        dev = Device(device_id=st.device_id, mac=st.mac, hostname=best_hostname(st))
        rows.append(inv_store.device_row(dev, encode_state(st)))
    with open_store(db_url) as store:
        with store.engine.begin() as conn:
            inv_store.replace_devices(conn, rows, [])
        find = inv_store.find_device
        assert find(store, "icu-bed-04b").device_id == monitor.device_id
        assert find(store, "ICU-BED-04").device_id == monitor.device_id  # its old name
        assert find(store, "bed4-monitor").device_id == monitor.device_id
        assert find(store, "JOHNS_LAPTOP").device_id == laptop.device_id
        assert find(store, "johns%laptop") is None  # LIKE wildcards are literal
        assert find(store, "printer-2f.hosp.example").device_id == printer.device_id
        with pytest.raises(InputError, match="2 devices went by the host name"):
            find(store, "shared.hosp.example")
