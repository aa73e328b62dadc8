"""The identity dissectors run inside `medsentry scan`: real captures (a DHCP exchange, TLS 1.2
and 1.3 with python's ssl, MQTT 3.1.1 and 5 against Mosquitto, FTP logins against pyftpdlib)
and BLE advertising captures of the three sniffer link types go through the real CLI into
SQLite; the events read back from the store are the ones the dissectors make, and no password
reached the database. BLE advertisements carry every standard medical profile and are
cross-checked, frame by frame, with tshark's btle dissector.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from netcap import tshark
from test_cleartext import ftp_capture  # noqa: F401  (fixtures of the unit tests)
from test_frames import _crc24, _pcap
from test_identity import dhcp_capture  # noqa: F401
from test_mqtt import mqtt_capture  # noqa: F401
from test_tls import tls_capture  # noqa: F401

from medsentry.cli import main as cli
from medsentry.events import encode_json
from medsentry.events.ble import BleAdvertisement
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.store import iter_events, open_store

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

# (PDU type, advertiser address, AD structures, expected local name, company, UUIDs): one
# device per medical profile of the Bluetooth SIG (Assigned Numbers §3.4.2 GATT services)
DEVICES = [
    (0, "66:55:44:33:22:11", [(0x09, b"A&D_UA-651")], 0x0059, [0x1810, 0x180A]),  # BP
    (2, "c0:ff:ee:00:00:01", [(0x09, b"Dexcom G7")], 0x00D0, [0x181F, 0x1808]),  # CGM, glucose
    (0, "c0:ff:ee:00:00:02", [(0x08, b"Nonin3150")], 0x006B, [0x1822, 0x180D]),  # SpO2, HR
    (6, "c0:ff:ee:00:00:03", [(0x09, b"OMRON BCM-500")], 0x020E, [0x181D, 0x1809]),  # scale, temp
]
HEALTH = {
    0x1808: "Glucose",
    0x1809: "Health Thermometer",
    0x180D: "Heart Rate",
    0x1810: "Blood Pressure",
    0x181D: "Weight Scale",
    0x181F: "Continuous Glucose Monitoring",
    0x1822: "Pulse Oximeter",
}
PASSWORDS = [b"hunter2", b"Xr4y-pass", b"wrong-pass"]  # sent by the MQTT and FTP clients


def _adv(pdu_type: int, address: str, names: list, company: int, uuids: list[int]) -> bytes:
    """An advertising-channel PDU (Core Vol 6 Part B §2.3) with flags, a 16-bit UUID list,
    a name and manufacturer data (CSS Part A §1), in a link-layer packet with its CRC."""
    ad = b"\x02\x01\x06"
    ad += bytes([1 + 2 * len(uuids), 0x03]) + b"".join(struct.pack("<H", u) for u in uuids)
    for ad_type, value in names:
        ad += bytes([1 + len(value), ad_type]) + value
    ad += bytes([5, 0xFF]) + struct.pack("<H", company) + b"\x01\x02"
    payload = bytes.fromhex(address.replace(":", ""))[::-1] + ad
    pdu = bytes([0x40 | pdu_type, len(payload)]) + payload  # TxAdd = 1: random address
    return struct.pack("<I", 0x8E89BED6) + pdu + _crc24(pdu)


def _phdr(ll: bytes) -> bytes:  # LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR (256)
    return bytes([0, 0xC4, 0x9C, 0]) + struct.pack("<IH", 0x8E89BED6, 0x0C02) + ll


def _nordic(ll: bytes) -> bytes:  # LINKTYPE_NORDIC_BLE (272), nRF Sniffer protocol 2
    event = bytes([10, 0x01, 38, 55]) + struct.pack("<HI", 0, 123456) + ll
    return (
        b"\x00" + struct.pack("<H", len(event)) + b"\x03" + struct.pack("<H", 7) + b"\x02" + event
    )


def kind(event) -> str:
    return type(event).__struct_config__.tag


WRAP = {251: lambda ll: ll, 256: _phdr, 272: _nordic}


@pytest.fixture(scope="module")
def ble_captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for linktype, wrap in WRAP.items():
        tmp = tmp_path_factory.mktemp(f"ble{linktype}")
        out.append(_pcap(tmp, linktype, [wrap(_adv(*d)) for d in DEVICES]))
    return out


@pytest.mark.parametrize("index", [0, 1, 2])
def test_ble_health_profiles_match_tshark(ble_captures: list[Path], index: int) -> None:
    pcap = ble_captures[index]
    linktype = list(WRAP)[index]
    events: list = []
    Pipeline(ScanConfig(phi_key=b"k" * 32)).scan_files([pcap], events.extend)
    ads = [e for e in events if isinstance(e, BleAdvertisement)]
    rows = tshark(
        pcap,
        "btle",
        "btle.advertising_address",
        "btcommon.eir_ad.entry.device_name",
        "btcommon.eir_ad.entry.uuid_16",
        "btcommon.eir_ad.entry.company_id",
        "btle.advertising_header.pdu_type",
        "btle.crc.incorrect",
    )
    assert len(ads) == len(rows) == len(DEVICES)
    for ev, row, (pdu_type, address, names, company, uuids) in zip(ads, rows, DEVICES, strict=True):
        addr, name, tuuids, tcompany, tpdu = row[:5]
        assert ev.linktype == linktype
        assert ev.advertiser_address == addr == address
        assert ev.local_name == name == names[0][1].decode()
        assert ev.complete_name == (names[0][0] == 0x09)
        assert ev.service_uuids16 == [int(u, 16) for u in tuuids.split("|")] == uuids
        assert ev.company_id == int(tcompany, 16) == company
        assert int(tpdu, 0) == pdu_type
        assert ev.health_services == [HEALTH[u] for u in uuids if u in HEALTH]
        assert len(row) < 6 or row[5] == ""  # tshark: CRC correct
    assert {s for ev in ads for s in ev.health_services} == set(HEALTH.values())


def test_identity_events_land_in_the_store(
    dhcp_capture: Path,  # noqa: F811
    tls_capture: Path,  # noqa: F811
    mqtt_capture: Path,  # noqa: F811
    ftp_capture: Path,  # noqa: F811
    ble_captures: list[Path],
    tmp_path: Path,
) -> None:
    files = [dhcp_capture, tls_capture, mqtt_capture, ftp_capture, *ble_captures]
    db = tmp_path / "scan.db"
    res = CliRunner().invoke(cli, ["scan", *map(str, files), "--db", f"sqlite:///{db}", "-q"])
    assert res.exit_code == 0, res.output

    direct: list = []
    Pipeline(ScanConfig()).scan_files(files, direct.extend)
    kinds = [
        "dhcp",
        "tls_client_hello",
        "tls_server_hello",
        "tls_certificate",
        "mqtt_connect",
        "mqtt_subscribe",
        "mqtt_publish",
        "cleartext_credentials",
        "ble_adv",
    ]
    with open_store(f"sqlite:///{db}") as store:
        stored = list(iter_events(store, kinds=kinds))
    counts = {k: sum(1 for e in stored if kind(e) == k) for k in kinds}
    assert counts["dhcp"] == 2 and counts["tls_client_hello"] == 2
    assert counts["tls_server_hello"] == 2 and counts["tls_certificate"] == 1
    assert counts["mqtt_connect"] == 2 and counts["mqtt_subscribe"] == 2
    assert counts["mqtt_publish"] >= 6 and counts["ble_adv"] == 3 * len(DEVICES)
    assert {c.protocol for c in stored if kind(c) == "cleartext_credentials"} == {"mqtt", "ftp"}

    def key(e) -> bytes:  # the store gives events their capture id; compare the rest
        return encode_json(e)

    wanted = sorted(key(e) for e in direct if kind(e) in kinds)
    assert sorted(key(e) for e in stored) == wanted

    blob = db.read_bytes() + res.output.encode()
    for pw in PASSWORDS:
        assert pw not in blob
