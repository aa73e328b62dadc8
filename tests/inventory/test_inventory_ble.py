"""BLE advertisers (link type 251 captures written by text2pcap, frames built field by field from
the Core specification as in tests/protocols/net/test_frames.py): health services, local names
and company identifiers identify personal health devices; chip makers' ids do not name them."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from medsentry.inventory.identify import vendor_key

# The BLE frame helpers of the protocol tests, shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocols" / "net"))
from test_frames import _crc24, _pcap


def adv(address: str, ad: bytes, random: bool = True) -> bytes:
    adv_a = bytes.fromhex(address.replace(":", ""))[::-1]  # sent LSB first
    payload = adv_a + ad
    pdu = bytes([(0x40 if random else 0x00) | 0, len(payload)]) + payload  # ADV_IND
    return struct.pack("<I", 0x8E89BED6) + pdu + _crc24(pdu)


BP = (
    b"\x02\x01\x06"
    + b"\x03\x03\x10\x18"  # Complete 16-bit UUIDs: Blood Pressure (0x1810)
    + b"\x0b\x09A&D_UA-651"  # Complete Local Name
    + b"\x05\xff\x59\x00\x01\x02"  # Manufacturer Specific Data: Nordic Semiconductor (the chip)
)
CGM = b"\x02\x01\x06" + b"\x09\x09DexcomAB" + b"\x05\xff\xd0\x00\x01\x02"  # company 0x00D0
PUMP = (
    b"\x02\x01\x06" + b"\x05\xff\x60\x03\x01\x02"
)  # company 0x0360 only (not in the dissector's list)
MDT = b"\x02\x01\x06" + b"\x03\x03\xa8\xfc"  # 16-bit UUID 0xFCA8: a SIG member UUID (Medtronic)
OXI = b"\x02\x01\x06" + b"\x03\x03\x22\x18" + b"\x0f\x09Nonin3230_0042"  # Pulse Oximeter 0x1822


def test_ble_personal_health_devices(tmp_path: Path, inventory_of) -> None:
    frames = [
        adv("c0:11:22:33:44:01", BP),
        adv("c0:11:22:33:44:01", BP),
        adv("d0:11:22:33:44:02", CGM),
        adv("00:1c:05:00:00:03", OXI, random=False),  # a public (IEEE) address
        adv("e0:11:22:33:44:04", PUMP),
        adv("f0:11:22:33:44:05", MDT),
    ]
    devs = inventory_of(_pcap(tmp_path, 251, frames))
    bp = devs["ble:c0:11:22:33:44:01"]
    assert bp.category.value == "remote-monitoring.blood-pressure"
    assert bp.vendor.value == "A&D Medical"  # from its name; Nordic's id names the radio only
    assert "ble-peripheral" in bp.roles and bp.mac is None  # random address: no OUI
    cgm = devs["ble:d0:11:22:33:44:02"]
    assert cgm.category.value == "remote-monitoring.cgm" and vendor_key(cgm.vendor.value) in (
        "dexcom",
    )
    oxi = devs["ble:00:1c:05:00:00:03"]
    assert oxi.category.value == "remote-monitoring.pulse-oximeter"
    assert oxi.mac == "00:1c:05:00:00:03"
    assert oxi.criticality == "patient-affecting" and oxi.fda_class == "II"
    pump = devs["ble:e0:11:22:33:44:04"]  # named by the full SIG company table
    assert vendor_key(pump.vendor.value) == "insulet"
    assert pump.category.value == "infusion-pump.insulin"
    assert pump.criticality == "life-sustaining"
    mdt = devs["ble:f0:11:22:33:44:05"]  # only a member service UUID to go by
    assert vendor_key(mdt.vendor.value) == "medtronic"
    assert mdt.category.value == "remote-monitoring"
