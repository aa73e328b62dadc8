"""Bluetooth LE advertising seen at the host controller interface (frame dissector).

Phones and hosts record BLE as HCI traffic: Android HCI snoop logs and BlueZ btmon (btsnoop
files, capture/btsnoop.py), Apple PacketLogger files (capture/pklg.py) or pcaps of link types
(tcpdump.org/linktypes.html) 187 BLUETOOTH_HCI_H4, 201 BLUETOOTH_HCI_H4_WITH_PHDR and 254
BLUETOOTH_LINUX_MONITOR. The scanner's controller reports what it heard in HCI LE Meta events
(Core Vol 4 Part E §7.7.65): LE Advertising Report (§7.7.65.2, legacy PDUs) and LE Extended
Advertising Report (§7.7.65.13). Each report gives the same BleAdvertisement as the sniffer path
(ble.py).
"""

from __future__ import annotations

import struct

from medsentry.capture import pklg
from medsentry.capture.hci_linktypes import (
    LINKTYPE_BLUETOOTH_HCI_H4,
    LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR,
    LINKTYPE_BLUETOOTH_LINUX_MONITOR,
    LINKTYPE_BTSNOOP_H1,
    LINKTYPE_BTSNOOP_H4,
    LINKTYPE_BTSNOOP_MONITOR,
    LINKTYPE_PACKETLOGGER,
)
from medsentry.events.base import Event
from medsentry.events.ble import BleAdvertisement, BleConnection
from medsentry.protocols.base import ParseError
from medsentry.protocols.ble import _ad_structures, _address
from medsentry.protocols.ble_privacy import KEYRING, with_resolutions
from medsentry.protocols.registry import register_frame

H4_COMMAND, H4_ACL, H4_SCO, H4_EVENT, H4_ISO = 0x01, 0x02, 0x03, 0x04, 0x05  # Vol 4 Part A §2
BTSNOOP_PREFIX = 16  # flags, cumulative drops, timestamp (capture/btsnoop.py)
EVT_LE_META = 0x3E  # Vol 4 Part E §7.7.65
LE_CONNECTION_COMPLETE = 0x01  # §7.7.65.1
LE_ADVERTISING_REPORT = 0x02  # §7.7.65.2
LE_ENHANCED_CONNECTION_COMPLETE = 0x0A  # §7.7.65.10
LE_ENHANCED_CONNECTION_COMPLETE_V2 = 0x29  # §7.7.65.10 (v2: same fields first)
LE_EXTENDED_ADVERTISING_REPORT = 0x0D  # §7.7.65.13
# §7.7.65.2 Event_Type
LEGACY_EVENT_TYPES = {
    0x00: "ADV_IND",
    0x01: "ADV_DIRECT_IND",
    0x02: "ADV_SCAN_IND",
    0x03: "ADV_NONCONN_IND",
    0x04: "SCAN_RSP",
}
# §7.7.65.13 Event_Type with bit 4 (legacy PDU) set
EXT_LEGACY_EVENT_TYPES = {
    0x13: "ADV_IND",
    0x15: "ADV_DIRECT_IND",
    0x12: "ADV_SCAN_IND",
    0x10: "ADV_NONCONN_IND",
    0x1B: "SCAN_RSP",
    0x1A: "SCAN_RSP",
}
RSSI_NOT_AVAILABLE = 0x7F  # §7.7.65.2 / §7.7.65.13
RANDOM_ADDRESS_TYPES = {0x01, 0x03}  # random device / random (static) identity address
IDENTITY_ADDRESS_TYPES = {0x02, 0x03}  # §7.7.65.10: the controller resolved the peer's RPA
ANONYMOUS_ADDRESS = 0xFF  # §7.7.65.13: no address sent
_DATA_STATUS_MASK = 0x60  # §7.7.65.13 Event_Type bits 5-6: 0 complete


MONITOR_KINDS = {2: H4_COMMAND, 3: H4_EVENT, 4: H4_ACL, 5: H4_ACL}  # command, event, ACL TX/RX
MONITOR_ACL_TX = 4
# PacketLogger packet types (capture/pklg.py) -> (H4 type, sent by the host)
PKLG_KINDS = {
    pklg.TYPE_COMMAND: (H4_COMMAND, True),
    pklg.TYPE_EVENT: (H4_EVENT, False),
    pklg.TYPE_ACL_SENT: (H4_ACL, True),
    pklg.TYPE_ACL_RECEIVED: (H4_ACL, False),
}


def hci_packet(linktype: int, frame: bytes) -> tuple[int, bool | None, int, bytes] | None:
    """(H4 packet type, sent by the host? (None: the capture does not say), adapter index,
    HCI packet without its type byte) of a frame of an HCI link type, else None."""
    if linktype == LINKTYPE_BLUETOOTH_HCI_H4:
        return _h4(frame, None)
    if linktype == LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR:
        if len(frame) < 4:
            raise ParseError("HCI H4 direction pseudo-header truncated")
        return _h4(frame[4:], struct.unpack(">I", frame[:4])[0] == 0)  # 0 sent, 1 received
    if linktype == LINKTYPE_BLUETOOTH_LINUX_MONITOR:
        if len(frame) < 4:
            raise ParseError("Linux monitor header truncated")
        index, opcode = struct.unpack(">HH", frame[:4])
        return _monitor(opcode, index, frame[4:])
    if linktype == LINKTYPE_PACKETLOGGER:
        kind = PKLG_KINDS.get(frame[0]) if frame else None
        return None if kind is None else (kind[0], kind[1], 0, frame[1:])
    if linktype in (LINKTYPE_BTSNOOP_H1, LINKTYPE_BTSNOOP_H4, LINKTYPE_BTSNOOP_MONITOR):
        if len(frame) < BTSNOOP_PREFIX:
            raise ParseError("btsnoop record header truncated")
        flags = struct.unpack(">I", frame[:4])[0]
        pkt = frame[BTSNOOP_PREFIX:]
        if linktype == LINKTYPE_BTSNOOP_MONITOR:
            return _monitor(flags & 0xFFFF, flags >> 16, pkt)
        sent = not flags & 0x1  # bit 0: 0 sent, 1 received
        if linktype == LINKTYPE_BTSNOOP_H4:
            return _h4(pkt, sent)
        if flags & 0x2:  # H1, bit 1: command (sent) or event (received); else data
            return (H4_COMMAND if sent else H4_EVENT), sent, 0, pkt
        return H4_ACL, sent, 0, pkt
    return None


def _h4(h4: bytes, sent: bool | None) -> tuple[int, bool | None, int, bytes]:
    if not h4:
        raise ParseError("HCI H4 packet without its packet indicator")
    return h4[0], sent, 0, h4[1:]


def _monitor(opcode: int, index: int, pkt: bytes) -> tuple[int, bool | None, int, bytes] | None:
    kind = MONITOR_KINDS.get(opcode)
    if kind is None:
        return None
    return kind, opcode in (2, MONITOR_ACL_TX), index, pkt


def hci_event(linktype: int, frame: bytes) -> bytes | None:
    """The HCI event packet (event code, length, parameters) in a frame, else None."""
    got = hci_packet(linktype, frame)
    return got[3] if got is not None and got[0] == H4_EVENT else None


def dissect(linktype: int, ethertype: int, frame: bytes, ts_ns: int, interface: int) -> list[Event]:
    out = _dissect(linktype, frame, ts_ns)
    return with_resolutions(out) if out else out


def _dissect(linktype: int, frame: bytes, ts_ns: int) -> list[Event]:
    evt = hci_event(linktype, frame)
    if evt is None:
        return []
    if len(evt) < 2:
        raise ParseError("HCI event header truncated")
    code, plen = evt[0], evt[1]
    params = evt[2 : 2 + plen]
    if len(params) != plen:
        raise ParseError("HCI event parameters truncated")
    if code != EVT_LE_META or not params:
        return []
    sub, body = params[0], params[1:]
    if sub == LE_ADVERTISING_REPORT:
        return _advertising_reports(linktype, body, ts_ns)
    if sub == LE_EXTENDED_ADVERTISING_REPORT:
        return _extended_reports(linktype, body, ts_ns)
    if sub == LE_CONNECTION_COMPLETE:
        return [_connection(linktype, body, ts_ns, 0)]
    if sub in (LE_ENHANCED_CONNECTION_COMPLETE, LE_ENHANCED_CONNECTION_COMPLETE_V2):
        conn = _connection(linktype, body, ts_ns, 12)  # + Local_ and Peer_Resolvable_Address
        if conn.status == 0 and conn.peer_address_type in IDENTITY_ADDRESS_TYPES:
            rpa = _address(body[17:23])  # Peer_Resolvable_Private_Address
            random = conn.peer_address_type == 0x03
            found = KEYRING.controller_resolved(rpa, conn.peer_address, random, ts_ns, linktype)
            return [conn, *found]
        return [conn]
    return []


def _connection(linktype: int, body: bytes, ts_ns: int, rpas: int) -> BleConnection:
    """§7.7.65.1: Status, Connection_Handle (2), Role, Peer_Address_Type, Peer_Address (6),
    [§7.7.65.10: Local_Resolvable_Private_Address (6), Peer_Resolvable_Private_Address (6)],
    Connection_Interval (2), Peripheral_Latency (2), Supervision_Timeout (2), clock accuracy."""
    if len(body) < 18 + rpas:
        raise ParseError("LE Connection Complete truncated")
    status, handle, role, atype = body[0], struct.unpack("<H", body[1:3])[0], body[3], body[4]
    interval = struct.unpack("<H", body[11 + rpas : 13 + rpas])[0]
    return BleConnection(
        ts_ns=ts_ns,
        linktype=linktype,
        peer_address=_address(body[5:11]),
        peer_address_random=atype in RANDOM_ADDRESS_TYPES,
        peer_address_type=atype,
        local_role="central" if role == 0 else "peripheral",
        status=status,
        connection_handle=handle & 0x0FFF,
        connection_interval_ms=interval * 1.25 if status == 0 else None,
    )


def _rssi(b: int) -> int | None:
    return None if b == RSSI_NOT_AVAILABLE else struct.unpack("b", bytes([b]))[0]


def _event(
    linktype: int, ts_ns: int, pdu: str, atype: int, addr: bytes, rssi: int | None, data: bytes
) -> BleAdvertisement:
    return BleAdvertisement(
        ts_ns=ts_ns,
        linktype=linktype,
        pdu_type=pdu,
        advertiser_address=_address(addr),
        address_random=atype in RANDOM_ADDRESS_TYPES,
        address_type=atype,
        rssi=rssi,
        observed_via="hci",
        **_ad_structures(data),
    )


def _advertising_reports(linktype: int, body: bytes, ts_ns: int) -> list[Event]:
    """§7.7.65.2: Num_Reports, then per report Event_Type, Address_Type, Address, Data_Length,
    Data, RSSI (in report order, as controllers send them and BlueZ/Wireshark read them)."""
    if not body:
        raise ParseError("LE Advertising Report without Num_Reports")
    out: list[Event] = []
    i = 1
    for _ in range(body[0]):
        if i + 9 > len(body):
            raise ParseError("LE Advertising Report truncated")
        etype, atype, addr, dlen = body[i], body[i + 1], body[i + 2 : i + 8], body[i + 8]
        data = body[i + 9 : i + 9 + dlen]
        if len(data) != dlen or i + 9 + dlen >= len(body):
            raise ParseError("LE Advertising Report data truncated")
        rssi = body[i + 9 + dlen]
        i += 10 + dlen
        pdu = LEGACY_EVENT_TYPES.get(etype, f"0x{etype:02x}")
        out.append(_event(linktype, ts_ns, pdu, atype, addr, _rssi(rssi), data))
    return out


def _extended_reports(linktype: int, body: bytes, ts_ns: int) -> list[Event]:
    """§7.7.65.13: Num_Reports, then per report Event_Type (2), Address_Type, Address (6),
    Primary_PHY, Secondary_PHY, Advertising_SID, TX_Power, RSSI, Periodic_Advertising_Interval
    (2), Direct_Address_Type, Direct_Address (6), Data_Length, Data."""
    if not body:
        raise ParseError("LE Extended Advertising Report without Num_Reports")
    out: list[Event] = []
    i = 1
    for _ in range(body[0]):
        if i + 24 > len(body):
            raise ParseError("LE Extended Advertising Report truncated")
        etype = struct.unpack("<H", body[i : i + 2])[0]
        atype, addr = body[i + 2], body[i + 3 : i + 9]
        rssi, dlen = body[i + 13], body[i + 23]
        data = body[i + 24 : i + 24 + dlen]
        if len(data) != dlen:
            raise ParseError("LE Extended Advertising Report data truncated")
        i += 24 + dlen
        if atype == ANONYMOUS_ADDRESS:
            continue  # no advertiser address to attribute the report to
        if etype & 0x10:
            pdu = EXT_LEGACY_EVENT_TYPES.get(etype & 0x1F, f"0x{etype:04x}")
        else:
            pdu = "AUX_SCAN_RSP" if etype & 0x08 else "AUX_ADV_IND"
        # incomplete data (bits 5-6): the AD structures may be cut; keep what parses
        try:
            ev = _event(linktype, ts_ns, pdu, atype, addr, _rssi(rssi), data)
        except ParseError:
            if not etype & _DATA_STATUS_MASK:
                raise
            ev = _event(linktype, ts_ns, pdu, atype, addr, _rssi(rssi), b"")
        out.append(ev)
    return out


dissect.reset = KEYRING.reset  # type: ignore[attr-defined]  # per-capture state: see FlowEngine
register_frame(dissect)
