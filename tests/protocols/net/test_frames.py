"""Frame dissectors: LLDP and CDP (Ethernet) and BLE advertising (link types 251, 256, 272).

Frames are assembled field by field from the standards (IEEE 802.1AB-2016, Cisco CDP, Bluetooth
Core Vol 6 Part B §2.3 and CSS Part A), written to pcap with text2pcap and decoded by tshark's
own dissectors (lldp, cdp, btle, nordic_ble); our events must agree with tshark field by field.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import tshark

from medsentry.events.ble import BleAdvertisement
from medsentry.events.identity import CdpNeighbor, LldpNeighbor
from medsentry.protocols import ble, lldp
from medsentry.protocols.base import ParseError
from medsentry.protocols.registry import FRAME_DISSECTORS, load

SRC = bytes.fromhex("0050c2a1b2c3")


def _tlv(ttype: int, value: bytes) -> bytes:
    return struct.pack(">H", (ttype << 9) | len(value)) + value


def lldp_frame() -> bytes:
    body = (
        _tlv(1, b"\x04" + SRC)  # Chassis ID, subtype 4 MAC address
        + _tlv(2, b"\x05eth0")  # Port ID, subtype 5 interface name
        + _tlv(3, struct.pack(">H", 120))  # TTL
        + _tlv(4, b"Patient monitor LAN")
        + _tlv(5, b"ICU-MON-07")
        + _tlv(6, b"IntelliVue MX800 Rev M.00.03")
        + _tlv(7, struct.pack(">HH", 0x0080, 0x0080))  # station only
        + _tlv(8, b"\x05\x01\x0a\x01\x02\x03\x02\x00\x00\x00\x01\x00")  # mgmt 10.1.2.3
        + _tlv(0, b"")
    )
    return bytes.fromhex("0180c200000e") + SRC + b"\x88\xcc" + body


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def cdp_frame() -> bytes:
    def t(kind: int, value: bytes) -> bytes:
        return struct.pack(">HH", kind, len(value) + 4) + value

    addr = struct.pack(">I", 1) + b"\x01\x01\xcc" + struct.pack(">H", 4) + bytes([10, 9, 8, 7])
    tlvs = (
        t(0x0001, b"SEP001122334455")
        + t(0x0002, addr)
        + t(0x0003, b"Port 1")
        + t(0x0004, struct.pack(">I", 0x90))
        + t(0x0005, b"SIP88xx.14-1-1SR2")
        + t(0x0006, b"Cisco IP Phone 8845")
        + t(0x000A, struct.pack(">H", 10))
    )
    pdu = bytearray(b"\x02\xb4\x00\x00" + tlvs)
    pdu[2:4] = struct.pack(">H", _checksum(bytes(pdu)))
    llc = bytes.fromhex("aaaa0300000c2000") + pdu
    return bytes.fromhex("01000ccccccc") + SRC + struct.pack(">H", len(llc)) + llc


ADV_A = bytes.fromhex("665544332211")[::-1]  # 66:55:44:33:22:11 sent LSB first
AD = (
    b"\x02\x01\x06"  # Flags: LE General Discoverable, BR/EDR not supported
    + b"\x05\x03\x10\x18\x0a\x18"  # Complete 16-bit UUIDs: Blood Pressure, Device Information
    + b"\x0b\x09A&D_UA-651"  # Complete Local Name
    + b"\x05\xff\x59\x00\x01\x02"
)  # Manufacturer Specific Data, company 0x0059


def _crc24(data: bytes, init: int = 0x555555) -> bytes:
    """Core Vol 6 Part B §3.1.1: CRC-24 (x^24+x^10+x^9+x^6+x^4+x^3+x+1), data shifted in LSB
    first, advertising CRCInit 0x555555; the register is sent bit-reversed, LSB byte first."""
    state = init
    for byte in data:
        for i in range(8):
            bit = ((byte >> i) & 1) ^ (state >> 23 & 1)
            state = (state << 1) & 0xFFFFFF
            if bit:
                state ^= 0x00065B
    return int(f"{state:024b}"[::-1], 2).to_bytes(3, "little")


def ble_ll(pdu_type: int = 0, ad: bytes = AD) -> bytes:
    payload = ADV_A + ad
    pdu = bytes([0x40 | pdu_type, len(payload)]) + payload  # TxAdd = 1: random address
    return struct.pack("<I", 0x8E89BED6) + pdu + _crc24(pdu)


def ble_phdr() -> bytes:
    # rf_channel 0 (2402 MHz = advertising channel 37), signal -60 dBm, noise, AA offenses,
    # reference access address, flags: signal power valid (0x0002) + CRC checked/valid
    return (
        bytes([0, 0xC4, 0x9C, 0])
        + struct.pack("<I", 0x8E89BED6)
        + struct.pack("<H", 0x0002 | 0x0400 | 0x0800)
        + ble_ll()
    )


def ble_nordic() -> bytes:
    ll = ble_ll()
    event = bytes([10, 0x01, 38, 55]) + struct.pack("<HI", 0, 123456) + ll
    return (
        b"\x00" + struct.pack("<H", len(event)) + b"\x03" + struct.pack("<H", 7) + b"\x02" + event
    )


def _pcap(tmp: Path, linktype: int, frames: list[bytes]) -> Path:
    if shutil.which("text2pcap") is None:
        pytest.skip("text2pcap is not installed")
    dump = tmp / f"lt{linktype}.txt"
    dump.write_text("".join("0000 " + " ".join(f"{b:02x}" for b in f) + "\n" for f in frames))
    out = tmp / f"lt{linktype}.pcap"
    subprocess.run(
        ["text2pcap", "-q", "-F", "pcap", "-l", str(linktype), str(dump), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _events(pcap: Path) -> list:
    load()
    out = []
    with open(pcap, "rb") as fh:
        rd = dpkt.pcap.Reader(fh)
        for ts, frame in rd:
            for d in FRAME_DISSECTORS:
                out += d(rd.datalink(), 0, bytes(frame), int(ts * 1e9), 0)
    return out


def test_lldp_matches_tshark(tmp_path: Path) -> None:
    pcap = _pcap(tmp_path, 1, [lldp_frame()])
    (ev,) = _events(pcap)
    assert isinstance(ev, LldpNeighbor)
    row = tshark(
        pcap,
        "lldp",
        "lldp.chassis.id.mac",
        "lldp.port.id",
        "lldp.tlv.system.name",
        "lldp.tlv.system.desc",
        "lldp.mgn.addr.ip4",
        "lldp.time_to_live",
    )[0]
    assert [
        ev.chassis_id,
        ev.port_id,
        ev.system_name,
        ev.system_description,
        ev.management_addresses[0],
        str(ev.ttl),
    ] == row
    assert ev.capabilities == ["station"] and ev.port_description == "Patient monitor LAN"


def test_cdp_matches_tshark(tmp_path: Path) -> None:
    pcap = _pcap(tmp_path, 1, [cdp_frame()])
    (ev,) = _events(pcap)
    assert isinstance(ev, CdpNeighbor)
    row = tshark(
        pcap,
        "cdp",
        "cdp.deviceid",
        "cdp.platform",
        "cdp.software_version",
        "cdp.portid",
        "cdp.native_vlan",
        "cdp.checksum.status",
    )[0]
    assert [ev.device_id, ev.platform, ev.software_version, ev.port_id, str(ev.native_vlan)] == (
        row[:5]
    )
    assert row[5] == "1"  # tshark: checksum good (PROTO_CHECKSUM_E_GOOD)
    assert ev.capabilities == ["host", "phone"] and ev.addresses == ["10.9.8.7"]


@pytest.mark.parametrize(
    ("linktype", "frame"), [(251, ble_ll()), (256, ble_phdr()), (272, ble_nordic())]
)
def test_ble_advertising_matches_tshark(tmp_path: Path, linktype: int, frame: bytes) -> None:
    pcap = _pcap(tmp_path, linktype, [frame])
    (ev,) = _events(pcap)
    assert isinstance(ev, BleAdvertisement)
    row = tshark(
        pcap,
        "btle",
        "btle.advertising_address",
        "btcommon.eir_ad.entry.device_name",
        "btcommon.eir_ad.entry.uuid_16",
        "btcommon.eir_ad.entry.company_id",
        "btle.advertising_header.pdu_type",
        "btle.crc.incorrect",
    )[0]
    addr, name, uuids, company, pdu_type = row[:5]
    assert ev.advertiser_address == addr == "66:55:44:33:22:11" and ev.address_random
    assert ev.local_name == name == "A&D_UA-651" and ev.complete_name
    assert ev.service_uuids16 == [int(u, 16) for u in uuids.split("|")] == [0x1810, 0x180A]
    assert ev.company_id == int(company, 16) == 0x0059
    assert ev.pdu_type == "ADV_IND" and int(pdu_type, 0) == 0
    assert ev.health_services == ["Blood Pressure"]
    assert ev.company_name == "Nordic Semiconductor ASA"
    assert len(row) < 6 or row[5] == ""  # tshark found the CRC correct
    if linktype == 256:
        assert (ev.rssi, ev.channel) == (-60, 0)
    if linktype == 272:
        nrow = tshark(pcap, "nordic_ble", "nordic_ble.channel", "nordic_ble.rssi")[0]
        assert (str(ev.channel), str(ev.rssi)) == tuple(nrow)


def test_ble_data_channel_and_other_frames_ignored() -> None:
    data_pdu = struct.pack("<I", 0x50654A3B) + b"\x01\x00" + b"\0\0\0"
    assert ble.dissect(251, 0, data_pdu, 1, 0) == []
    assert lldp.dissect(1, 0, bytes(12) + b"\x08\x00" + bytes(20), 1, 0) == []


def test_lldp_without_mandatory_tlvs_is_a_parse_error() -> None:
    frame = bytes.fromhex("0180c200000e") + SRC + b"\x88\xcc" + _tlv(5, b"x") + _tlv(0, b"")
    with pytest.raises(ParseError):
        lldp.dissect(1, 0, frame, 1, 0)


def test_lldp_ttl_tlv_too_short_is_a_parse_error() -> None:
    """Found by mutation fuzzing: a TTL TLV of one byte (§8.5.4 says two) was in order but gave
    no TTL, and building the event raised TypeError instead of ParseError."""
    body = _tlv(1, b"\x04" + SRC) + _tlv(2, b"\x05eth0") + _tlv(3, b"\x00") + _tlv(0, b"")
    with pytest.raises(ParseError):
        lldp.dissect(1, 0, bytes.fromhex("0180c200000e") + SRC + b"\x88\xcc" + body, 1, 0)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(
        [
            (1, lldp_frame()),
            (1, cdp_frame()),
            (251, ble_ll()),
            (256, ble_phdr()),
            (272, ble_nordic()),
        ]
    ),
    st.data(),
)
def test_fuzz_frames(seed: tuple[int, bytes], data: st.DataObject) -> None:
    linktype, frame = seed
    buf = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 8))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    buf = buf[: data.draw(st.integers(0, len(buf)))]
    for d in (lldp.dissect, ble.dissect):
        with contextlib.suppress(ParseError):
            d(linktype, 0, bytes(buf), 1, 0)
