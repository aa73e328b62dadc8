"""Bluetooth LE advertising from sniffer captures (frame dissector).

Link types (tcpdump.org/linktypes.html): 251 BLUETOOTH_LE_LL (access address, PDU, CRC),
256 BLUETOOTH_LE_LL_WITH_PHDR (10-byte pseudo-header first), 272 NORDIC_BLE (nRF Sniffer
board id + UART header + event header, then the LL packet). Only advertising physical channel
PDUs (access address 0x8E89BED6, Core Vol 6 Part B §2.1.2) are read: advertiser address,
local name, manufacturer company identifier and 16-bit service UUIDs (CSS Part A §1).
"""

from __future__ import annotations

import struct
from typing import Any

from medsentry.events.base import Event
from medsentry.events.ble import BleAdvertisement
from medsentry.protocols import ble_privacy
from medsentry.protocols.base import ParseError
from medsentry.protocols.registry import register_frame
from medsentry.protocols.streamkit import knowledge, text

LINKTYPE_BLUETOOTH_LE_LL = 251
LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR = 256
LINKTYPE_NORDIC_BLE = 272
ADVERTISING_ACCESS_ADDRESS = 0x8E89BED6  # Core Vol 6 Part B §2.1.2
# CSS Part A §1: AD types
AD_UUID16_INCOMPLETE, AD_UUID16_COMPLETE = 0x02, 0x03
AD_UUID32_INCOMPLETE, AD_UUID32_COMPLETE = 0x04, 0x05
AD_UUID128_INCOMPLETE, AD_UUID128_COMPLETE = 0x06, 0x07
AD_SERVICE_DATA32, AD_SERVICE_DATA128 = 0x20, 0x21
# Core Vol 3 Part B §2.5.1: Bluetooth Base UUID 00000000-0000-1000-8000-00805F9B34FB
BASE_UUID_TAIL = bytes.fromhex("0000100080000080 5f9b34fb".replace(" ", ""))
AD_SHORT_NAME, AD_COMPLETE_NAME, AD_TX_POWER = 0x08, 0x09, 0x0A
AD_SERVICE_DATA16, AD_APPEARANCE, AD_MANUFACTURER = 0x16, 0x19, 0xFF
_WITH_ADVA_AND_DATA = {0, 2, 4, 6}  # ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND


def _validate(doc: dict[str, Any]) -> None:
    for table in ("services", "companies", "pdu_types"):
        for k, v in doc[table].items():
            if not isinstance(k, int) or not isinstance(v, str):
                raise ValueError(f"{table}: bad entry {k!r}")
    if not set(doc["health_services"]) <= set(doc["services"]):
        raise ValueError("health_services must be listed in services")


_DOC = knowledge("ble_assigned_numbers.yaml", _validate)
SERVICES: dict[int, str] = dict(_DOC["services"])
HEALTH_SERVICES: frozenset[int] = frozenset(_DOC["health_services"])
COMPANIES: dict[int, str] = dict(_DOC["companies"])
PDU_TYPES: dict[int, str] = dict(_DOC["pdu_types"])


def _address(raw: bytes) -> str:
    """Device addresses are sent least significant octet first (Core Vol 6 Part B §1.3)."""
    return ":".join(f"{b:02x}" for b in reversed(raw))


def _ll_packet(pkt: bytes) -> tuple[int, bytes] | None:
    """(PDU header byte 0, PDU payload) of an advertising-channel LL packet, else None."""
    if len(pkt) < 6:
        raise ParseError("BLE LL packet shorter than access address + header")
    if struct.unpack("<I", pkt[:4])[0] != ADVERTISING_ACCESS_ADDRESS:
        return None  # a data channel PDU: not advertising
    h0, length = pkt[4], pkt[5]
    payload = pkt[6 : 6 + length]
    if len(payload) != length:
        raise ParseError("BLE advertising PDU truncated")
    return h0, payload


def dissect(linktype: int, ethertype: int, frame: bytes, ts_ns: int, interface: int) -> list[Event]:
    out = _dissect(linktype, frame, ts_ns)
    return ble_privacy.with_resolutions(out) if out else out


def _dissect(linktype: int, frame: bytes, ts_ns: int) -> list[Event]:
    rssi = channel = None
    if linktype == LINKTYPE_BLUETOOTH_LE_LL:
        pkt = frame
    elif linktype == LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR:
        if len(frame) < 10:
            raise ParseError("BLE pseudo-header truncated")
        channel = frame[0]
        flags = struct.unpack("<H", frame[8:10])[0]
        if flags & 0x0002:  # signal power valid
            rssi = struct.unpack("b", frame[1:2])[0]
        pkt = frame[10:]
    elif linktype == LINKTYPE_NORDIC_BLE:
        pkt, channel, rssi, _ = nordic_packet(frame)
    else:
        return []
    ll = _ll_packet(pkt)
    if ll is None:
        return []
    h0, payload = ll
    pdu = h0 & 0x0F
    name = PDU_TYPES.get(pdu)
    if name is None or pdu == 7:  # ADV_EXT_IND carries an extended header instead
        return []
    tx_add = bool(h0 & 0x40)
    if pdu in (3, 5):  # SCAN_REQ: ScanA AdvA; CONNECT_IND: InitA AdvA
        if len(payload) < 12:
            raise ParseError(f"BLE {name} shorter than two addresses")
        return [
            BleAdvertisement(
                ts_ns=ts_ns,
                linktype=linktype,
                pdu_type=name,
                advertiser_address=_address(payload[6:12]),
                address_random=bool(h0 & 0x80),
                rssi=rssi,
                channel=channel,
            )
        ]
    if len(payload) < 6:
        raise ParseError(f"BLE {name} shorter than its advertiser address")
    fields = _ad_structures(payload[6:]) if pdu in _WITH_ADVA_AND_DATA else {}
    return [
        BleAdvertisement(
            ts_ns=ts_ns,
            linktype=linktype,
            pdu_type=name,
            advertiser_address=_address(payload[:6]),
            address_random=tx_add,
            rssi=rssi,
            channel=channel,
            **fields,
        )
    ]


def nordic_packet(frame: bytes) -> tuple[bytes, int | None, int | None, int]:
    """nRF Sniffer for Bluetooth LE: board id, UART header (protocol version 1, 2 or 3), event
    packet header (length, flags, channel, RSSI, event counter, time), LL packet.
    Returns (LL packet, channel, RSSI, flags)."""
    if len(frame) < 7:
        raise ParseError("Nordic BLE header truncated")
    protover = frame[3]
    if protover == 1:
        pos = 1 + frame[1]  # header length, plus the board id
    elif protover in (2, 3):
        pos = 7  # board id + 6-byte UART header
    else:
        raise ParseError(f"Nordic BLE protocol version {protover} unsupported")
    if len(frame) < pos + 4:
        raise ParseError("Nordic BLE event header truncated")
    hlen = frame[pos]
    if not 6 <= hlen <= 16 or len(frame) < pos + hlen:
        raise ParseError("Nordic BLE event header length invalid")
    flags, channel, rssi = frame[pos + 1], frame[pos + 2], -frame[pos + 3]
    return frame[pos + hlen :], channel, rssi, flags


def uuid128_text(le: bytes) -> str:
    """A 128-bit UUID sent least significant octet first, as RFC 4122 text (lower case)."""
    h = le[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid32(value: bytes) -> list[int]:
    return [struct.unpack("<I", value[j : j + 4])[0] for j in range(0, len(value) - 3, 4)]


def _ad_structures(data: bytes) -> dict[str, Any]:
    """CSS Part A §1 / Core Vol 3 Part C §11: length, AD type, AD data."""
    out: dict[str, Any] = {}
    uuids: list[int] = []
    uuids32: list[int] = []
    uuids128: list[bytes] = []
    data_uuids: list[str] = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0:
            break  # early termination (Core Vol 3 Part C §11)
        if i + 1 + n > len(data):
            raise ParseError("BLE AD structure runs past the PDU")
        ad_type, value = data[i + 1], data[i + 2 : i + 1 + n]
        i += 1 + n
        if ad_type in (AD_UUID16_INCOMPLETE, AD_UUID16_COMPLETE):
            uuids += [struct.unpack("<H", value[j : j + 2])[0] for j in range(0, len(value) - 1, 2)]
        elif ad_type == AD_SERVICE_DATA16 and len(value) >= 2:
            uuids.append(struct.unpack("<H", value[:2])[0])
            data_uuids.append(f"0x{uuids[-1]:04x}")
        elif ad_type in (AD_UUID32_INCOMPLETE, AD_UUID32_COMPLETE):  # CSS Part A §1.1
            uuids32 += _uuid32(value)
        elif ad_type == AD_SERVICE_DATA32 and len(value) >= 4:  # CSS Part A §1.11
            uuids32 += _uuid32(value[:4])
            data_uuids.append(f"0x{uuids32[-1]:08x}")
        elif ad_type in (AD_UUID128_INCOMPLETE, AD_UUID128_COMPLETE):
            uuids128 += [value[j : j + 16] for j in range(0, len(value) - 15, 16)]
        elif ad_type == AD_SERVICE_DATA128 and len(value) >= 16:
            uuids128.append(value[:16])
            data_uuids.append(uuid128_text(value[:16]))
        elif ad_type in (AD_SHORT_NAME, AD_COMPLETE_NAME):
            out["local_name"] = text(value, 64)
            out["complete_name"] = ad_type == AD_COMPLETE_NAME
        elif ad_type == AD_MANUFACTURER and len(value) >= 2:
            cid = struct.unpack("<H", value[:2])[0]
            out["company_id"] = cid
            out["company_name"] = COMPANIES.get(cid)
        elif ad_type == AD_TX_POWER and len(value) == 1:
            out["tx_power"] = struct.unpack("b", value)[0]
        elif ad_type == AD_APPEARANCE and len(value) == 2:
            out["appearance"] = struct.unpack("<H", value)[0]
    # Core Vol 3 Part B §2.5.1: 16/32-bit values are shorthands of Base UUID forms; a SIG
    # service sent in 128-bit form is also listed by its 16-bit value
    for u in uuids128:
        if u[:12] == BASE_UUID_TAIL[::-1] and u[14:] == b"\0\0":
            uuids.append(struct.unpack("<H", u[12:14])[0])
    if uuids32:
        out["service_uuids32"] = list(dict.fromkeys(uuids32))[:32]
    if uuids128:
        out["service_uuids128"] = list(dict.fromkeys(uuid128_text(u) for u in uuids128))[:32]
    if data_uuids:
        out["service_data_uuids"] = list(dict.fromkeys(data_uuids))[:32]
    uuids = list(dict.fromkeys(uuids))[:32]
    out["service_uuids16"] = uuids
    out["service_names"] = [SERVICES[u] for u in uuids if u in SERVICES]
    out["health_services"] = [SERVICES[u] for u in uuids if u in HEALTH_SERVICES]
    return out


register_frame(dissect)
