"""Bluetooth LE GATT identity: what a connected device says it is, from HCI logs and sniffers.

A companion app that connects to a personal health device discovers its primary services (Core
Vol 3 Part G §4.4) and reads its Device Information Service (DIS 1.1: manufacturer, model
number, serial number, hardware, firmware and software revision, System ID, PnP ID, IEEE
11073-20601 certification) and its GAP Device Name (Vol 3 Part C §12.1). Every health profile
(BLP, GLP, CGMP, PLXP, WSP, HTP) requires the DIS. In an HCI trace (Android HCI snoop log, BlueZ
btmon, Apple PacketLogger; the link types of ble_hci.py) these are ATT PDUs (Vol 3 Part F §3.4)
in L2CAP basic frames on the LE attribute channel (CID 0x0004, Vol 3 Part A §2.1), carried by
HCI ACL data packets (Vol 4 Part E §5.4.2).

The same ATT exchange is read from BLE sniffer captures (nRF Sniffer 272, and 256 where its
pseudo-header gives the direction) of a connection whose CONNECT_IND was captured, until the
link is encrypted (Core Vol 6 Part B §2.3.3.1, §2.4).

Only the responses the peer sent are read (the host's own GATT server describes the phone),
and only the values of the identity characteristics below: never a measurement, never the User
Data Service (names, birth dates: PHI). Per-capture state, bounded: connection handle -> peer
address (LE Connection Complete), the characteristic handles discovered, the request waiting
for its response (ATT is sequential, §3.3.2), and a long value read in parts (Read Blob).
Captures without a direction (link types 187 and 251, a 256 pseudo-header without a data PDU
type) are not read: the two sides cannot be told apart.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from medsentry.events.base import Event
from medsentry.events.ble import BleGattServices, BleGattValue
from medsentry.protocols.base import ParseError
from medsentry.protocols.ble import (
    ADVERTISING_ACCESS_ADDRESS,
    BASE_UUID_TAIL,
    HEALTH_SERVICES,
    LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR,
    LINKTYPE_NORDIC_BLE,
    SERVICES,
    _address,
    nordic_packet,
    uuid128_text,
)
from medsentry.protocols.ble_hci import (
    EVT_LE_META,
    H4_ACL,
    H4_EVENT,
    LE_CONNECTION_COMPLETE,
    LE_ENHANCED_CONNECTION_COMPLETE,
    LE_ENHANCED_CONNECTION_COMPLETE_V2,
    RANDOM_ADDRESS_TYPES,
    hci_packet,
)
from medsentry.protocols.ble_privacy import KEYRING, SMP_CID
from medsentry.protocols.registry import register_frame
from medsentry.protocols.streamkit import text

SNIFFED = -1  # the "adapter" of a connection followed on the air (key: its access address)
# Core Vol 6 Part B §2.3.3.1 CONNECT_IND; §2.4 data channel PDU header LLID; §2.4.2 control PDUs
PDU_CONNECT_IND = 0x05
LLID_CONTINUATION, LLID_START, LLID_CONTROL = 0b01, 0b10, 0b11
LL_TERMINATE_IND, LL_ENC_REQ, LL_START_ENC_REQ = 0x02, 0x03, 0x05
# nRF Sniffer event flags: CRC OK, direction (central to peripheral), encrypted, MIC OK
NORDIC_CRC_OK, NORDIC_CENTRAL, NORDIC_ENCRYPTED, NORDIC_MIC_OK = 0x01, 0x02, 0x04, 0x08
# LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR flags: CRC checked / valid; PDU type (bits 7-9) 2 and 3:
# data, central to peripheral / peripheral to central
PHDR_CRC_CHECKED, PHDR_CRC_VALID = 0x0400, 0x0800
PHDR_DATA_C2P, PHDR_DATA_P2C = 2, 3
EVT_DISCONNECTION_COMPLETE = 0x05  # Vol 4 Part E §7.7.5
PB_CONTINUING = 0b01  # Vol 4 Part E §5.4.2 Packet_Boundary_Flag
L2CAP_ATT_CID = 0x0004  # Vol 3 Part A §2.1
ATT_DEFAULT_MTU = 23  # Vol 3 Part G §5.2.1: LE default ATT_MTU
# Vol 3 Part F §3.4: attribute protocol opcodes
ATT_ERROR_RSP = 0x01
ATT_EXCHANGE_MTU_REQ, ATT_EXCHANGE_MTU_RSP = 0x02, 0x03
ATT_FIND_INFORMATION_REQ, ATT_FIND_INFORMATION_RSP = 0x04, 0x05
ATT_FIND_BY_TYPE_VALUE_REQ, ATT_FIND_BY_TYPE_VALUE_RSP = 0x06, 0x07
ATT_READ_BY_TYPE_REQ, ATT_READ_BY_TYPE_RSP = 0x08, 0x09
ATT_READ_REQ, ATT_READ_RSP = 0x0A, 0x0B
ATT_READ_BLOB_REQ, ATT_READ_BLOB_RSP = 0x0C, 0x0D
ATT_READ_BY_GROUP_TYPE_REQ, ATT_READ_BY_GROUP_TYPE_RSP = 0x10, 0x11
ATT_REQUESTS = frozenset({0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x20})
ATT_RESPONSES = frozenset({0x01, 0x03, 0x05, 0x07, 0x09, 0x0B, 0x0D, 0x0F, 0x11, 0x13, 0x17, 0x19})
# Vol 3 Part G §3.1 / §3.3.1: GATT declarations
PRIMARY_SERVICE, CHARACTERISTIC = 0x2800, 0x2803
# The characteristics whose values are read (GATT Specification Supplement; DIS 1.1 §3)
IDENTITY = {
    0x2A00: "Device Name",
    0x2A01: "Appearance",
    0x2A23: "System ID",
    0x2A24: "Model Number String",
    0x2A25: "Serial Number String",
    0x2A26: "Firmware Revision String",
    0x2A27: "Hardware Revision String",
    0x2A28: "Software Revision String",
    0x2A29: "Manufacturer Name String",
    0x2A2A: "IEEE 11073-20601 Regulatory Certification Data List",
    0x2A50: "PnP ID",
}
PNP_SOURCES = {1: "bluetooth", 2: "usb"}  # DIS 1.1 §3.9.1.1 Vendor ID Source
MAX_LINKS = 64  # connections followed at once (LRU)
MAX_HANDLES = 512  # characteristic handles remembered per connection
MAX_SERVICES = 64
MAX_L2CAP = 4096  # an ATT PDU is at most 517 octets (§3.2.9); bigger SDUs are other channels
MAX_VALUE = 512  # §3.2.9: attribute values are at most 512 octets


@dataclass(slots=True)
class _Link:
    """One LE connection as the capturing host sees it."""

    peer: str | None = None
    random: bool = False
    mtu_client: int | None = None
    mtu_server: int | None = None
    chars: dict[int, int] = field(default_factory=dict)  # value handle -> 16-bit UUID
    request: tuple[int, int] | None = None  # (opcode, handle or UUID) the host is waiting on
    long: tuple[int, int, bytearray] | None = None  # (handle, UUID, value so far)
    services: set[str] = field(default_factory=set)
    rx: bytearray | None = None  # an L2CAP PDU in fragments, from the peer
    rx_need: int = 0
    tx: bytearray | None = None  # the same, from the host
    tx_need: int = 0
    encrypted: bool = False  # a sniffed link after LL_ENC_REQ: its payloads are ciphertext

    @property
    def mtu(self) -> int:
        if self.mtu_client and self.mtu_server:  # §3.4.2.2: the smaller of the two
            return max(ATT_DEFAULT_MTU, min(self.mtu_client, self.mtu_server))
        return ATT_DEFAULT_MTU


_LINKS: OrderedDict[tuple[int, int, int], _Link] = OrderedDict()  # (iface, adapter, handle)


def reset() -> None:
    _LINKS.clear()


def dissect(linktype: int, ethertype: int, frame: bytes, ts_ns: int, interface: int) -> list[Event]:
    if linktype in (LINKTYPE_NORDIC_BLE, LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR):
        return _sniffed(linktype, frame, ts_ns, interface)
    got = hci_packet(linktype, frame)
    if got is None:
        return []
    kind, sent, adapter, pkt = got
    if kind == H4_EVENT:
        _connected(interface, adapter, pkt)
        return _flush_closed(interface, adapter, pkt, ts_ns, linktype)
    if kind != H4_ACL or sent is None:
        return []
    # Vol 4 Part E §5.4.2: Handle (12 bits), PB flag (2), BC flag (2), Data_Total_Length, Data
    if len(pkt) < 4:
        raise ParseError("HCI ACL header truncated")
    hf, dlen = struct.unpack("<HH", pkt[:4])
    data = pkt[4 : 4 + dlen]
    if len(data) != dlen:
        raise ParseError("HCI ACL data truncated")
    link = _LINKS.get((interface, adapter, hf & 0x0FFF))
    if link is None:
        return []  # a connection that began before the capture: whose it is is unknown
    sdu = _l2cap(link, sent, (hf >> 12) & 0x3, data)
    if sdu is None:
        return []
    cid, att = sdu
    if cid == SMP_CID and not sent:  # the peer's own keys (ble_privacy.py)
        return KEYRING.smp((interface, adapter, hf & 0x0FFF), link.peer, att, ts_ns, linktype)
    if cid != L2CAP_ATT_CID or not att:
        return []
    out: list[Event] = []
    _att(link, hf & 0x0FFF, sent, att, ts_ns, linktype, out)
    return out


def _sniffed(linktype: int, frame: bytes, ts: int, interface: int) -> list[Event]:
    """A BLE sniffer's link-layer packet (Core Vol 6 Part B §2.1): a CONNECT_IND names the two
    ends of the connection its access address opens; that connection's data channel PDUs carry
    its L2CAP. Read only where the capture gives the direction (an nRF Sniffer's flags, a
    pseudo-header's PDU type) and only until the link is encrypted."""
    if linktype == LINKTYPE_NORDIC_BLE:
        pkt, _, _, flags = nordic_packet(frame)
        if not flags & NORDIC_CRC_OK:
            return []
        if flags & NORDIC_ENCRYPTED and not flags & NORDIC_MIC_OK:
            return []  # ciphertext the sniffer could not decrypt
        central: bool | None = bool(flags & NORDIC_CENTRAL)
    else:
        if len(frame) < 10:
            raise ParseError("BLE pseudo-header truncated")
        flags = struct.unpack("<H", frame[8:10])[0]
        if flags & PHDR_CRC_CHECKED and not flags & PHDR_CRC_VALID:
            return []
        pdu_type = (flags >> 7) & 0x7
        central = {PHDR_DATA_C2P: True, PHDR_DATA_P2C: False}.get(pdu_type)
        pkt = frame[10:]
    if len(pkt) < 6:
        raise ParseError("BLE LL packet shorter than access address + header")
    aa, h0, length = struct.unpack("<IBB", pkt[:6])
    payload = pkt[6 : 6 + length]
    if len(payload) != length:
        raise ParseError("BLE LL PDU truncated")
    if aa == ADVERTISING_ACCESS_ADDRESS:
        # §2.3.3.1 CONNECT_IND: InitA (6), AdvA (6), LLData: AA (4), CRCInit, ... ; RxAdd (bit 7)
        # says whether AdvA is a random address
        if h0 & 0x0F == PDU_CONNECT_IND and len(payload) >= 16:
            key = (interface, SNIFFED, struct.unpack("<I", payload[12:16])[0])
            _LINKS.pop(key, None)
            _LINKS[key] = _Link(peer=_address(payload[6:12]), random=bool(h0 & 0x80))
            while len(_LINKS) > MAX_LINKS:
                _LINKS.popitem(last=False)
        return []
    link = _LINKS.get((interface, SNIFFED, aa))
    if link is None or link.encrypted or central is None:
        return []
    llid = h0 & 0x03
    if llid == LLID_CONTROL:
        out: list[Event] = []
        if payload and payload[0] in (LL_ENC_REQ, LL_START_ENC_REQ):
            link.encrypted = not (flags & NORDIC_MIC_OK and linktype == LINKTYPE_NORDIC_BLE)
        elif payload and payload[0] == LL_TERMINATE_IND:  # the connection ends (§2.4.2.2)
            _end_long(link, aa, ts, linktype, out)
            _LINKS.pop((interface, SNIFFED, aa), None)
        return out
    if not payload:
        return []  # an empty PDU (acknowledgement, §2.4)
    # LLID 0b10 starts an L2CAP message, 0b01 continues it: as HCI's PB flags (0b10, 0b01)
    sdu = _l2cap(link, central, PB_CONTINUING if llid == LLID_CONTINUATION else 0b10, payload)
    if sdu is not None and sdu[0] == SMP_CID and not central:  # decrypted by the sniffer
        return KEYRING.smp((interface, SNIFFED, aa), link.peer, sdu[1], ts, linktype)
    if sdu is None or sdu[0] != L2CAP_ATT_CID or not sdu[1]:
        return []
    found: list[Event] = []
    _att(link, aa, central, sdu[1], ts, linktype, found)
    return found


def _connected(interface: int, adapter: int, evt: bytes) -> None:
    """LE (Enhanced) Connection Complete: connection handle -> peer address (§7.7.65.1/10)."""
    if len(evt) < 3 or evt[0] != EVT_LE_META or evt[2] not in _CONNECTION_SUBEVENTS:
        return
    body = evt[3 : 2 + evt[1]]
    if len(body) < 11 or body[0] != 0:  # truncated (ble_hci.py reports it) or failed
        return
    handle = struct.unpack("<H", body[1:3])[0] & 0x0FFF
    key = (interface, adapter, handle)
    _LINKS.pop(key, None)  # a handle is reused after a disconnection
    _LINKS[key] = _Link(peer=_address(body[5:11]), random=body[4] in RANDOM_ADDRESS_TYPES)
    while len(_LINKS) > MAX_LINKS:
        _LINKS.popitem(last=False)


_CONNECTION_SUBEVENTS = frozenset(
    {LE_CONNECTION_COMPLETE, LE_ENHANCED_CONNECTION_COMPLETE, LE_ENHANCED_CONNECTION_COMPLETE_V2}
)


def _flush_closed(
    interface: int, adapter: int, evt: bytes, ts_ns: int, linktype: int
) -> list[Event]:
    """Disconnection Complete (§7.7.5): a long value read in parts ends with the connection."""
    if len(evt) < 6 or evt[0] != EVT_DISCONNECTION_COMPLETE or evt[2] != 0:
        return []
    handle = struct.unpack("<H", evt[3:5])[0] & 0x0FFF
    link = _LINKS.pop((interface, adapter, handle), None)
    out: list[Event] = []
    if link is not None:
        _end_long(link, handle, ts_ns, linktype, out)
    return out


def _l2cap(link: _Link, sent: bool, pb: int, data: bytes) -> tuple[int, bytes] | None:
    """Vol 3 Part A §3.1 basic L2CAP header (Length, Channel ID), fragments reassembled."""
    buf, need = (link.tx, link.tx_need) if sent else (link.rx, link.rx_need)
    if pb == PB_CONTINUING:
        if buf is None:
            return None  # the start was not seen (or belonged to another channel)
        buf += data
    else:
        if len(data) < 4:
            raise ParseError("L2CAP basic header truncated")
        length, cid = struct.unpack("<HH", data[:4])
        if length <= len(data) - 4:
            _keep(link, sent, None, 0)
            return cid, bytes(data[4 : 4 + length])
        if cid != L2CAP_ATT_CID or length > MAX_L2CAP:
            _keep(link, sent, None, 0)
            return None
        buf, need = bytearray(data), length + 4
    if len(buf) < need:
        _keep(link, sent, buf, need)
        return None
    _keep(link, sent, None, 0)
    return struct.unpack("<H", buf[2:4])[0], bytes(buf[4:need])


def _keep(link: _Link, sent: bool, buf: bytearray | None, need: int) -> None:
    if sent:
        link.tx, link.tx_need = buf, need
    else:
        link.rx, link.rx_need = buf, need


def _uuid(raw: bytes) -> int | str:
    """A 16-bit UUID as its number; a 128-bit one as its 16-bit alias when it is a Base UUID
    form (Vol 3 Part B §2.5.1), else as RFC 4122 text."""
    if len(raw) == 2:
        return struct.unpack("<H", raw)[0]
    if len(raw) == 16:
        if raw[:12] == BASE_UUID_TAIL[::-1] and raw[14:] == b"\0\0":
            return struct.unpack("<H", raw[12:14])[0]
        return uuid128_text(raw)
    raise ParseError(f"ATT UUID of {len(raw)} octets")


def _att(
    link: _Link, handle: int, sent: bool, pdu: bytes, ts: int, lt: int, out: list[Event]
) -> None:
    op = pdu[0]
    if sent:  # the host's GATT client asks the peer's server
        if op not in ATT_REQUESTS:
            return
        link.request = None  # cleared first: a malformed request (ParseError) awaits nothing
        link.request = _request(op, pdu)
        if link.long is not None and link.request != (ATT_READ_BLOB_REQ, link.long[0]):
            _end_long(link, handle, ts, lt, out)  # the client read on: the value was whole
        if op == ATT_EXCHANGE_MTU_REQ and len(pdu) >= 3:
            link.mtu_client = struct.unpack("<H", pdu[1:3])[0]
        return
    if op not in ATT_RESPONSES:  # notifications, the peer's own requests: not an answer
        return
    request, link.request = link.request, None
    if op == ATT_EXCHANGE_MTU_RSP and len(pdu) >= 3:
        link.mtu_server = struct.unpack("<H", pdu[1:3])[0]
    elif op == ATT_ERROR_RSP:
        _end_long(link, handle, ts, lt, out)  # Attribute Not Long, Invalid Offset: it was whole
    elif request is None:
        return
    elif op == ATT_READ_BY_GROUP_TYPE_RSP and request == (
        ATT_READ_BY_GROUP_TYPE_REQ,
        PRIMARY_SERVICE,
    ):
        # §3.4.4.10: Attribute Handle, End Group Handle, Attribute Value (the service UUID)
        found = [_uuid(item[4:]) for item in _items(pdu, 4) if len(item) in (6, 20)]
        _services(link, handle, found, ts, lt, out)
    elif op == ATT_FIND_BY_TYPE_VALUE_RSP and request[0] == ATT_FIND_BY_TYPE_VALUE_REQ:
        if len(pdu) >= 5 and request[1] >= 0:  # a Handles Information (§3.4.3.4): it is there
            _services(link, handle, [request[1]], ts, lt, out)
    elif op == ATT_READ_BY_TYPE_RSP and request[0] == ATT_READ_BY_TYPE_REQ:
        _read_by_type(link, handle, request[1], pdu, ts, lt, out)
    elif op == ATT_FIND_INFORMATION_RSP and request[0] == ATT_FIND_INFORMATION_REQ:
        if len(pdu) >= 2 and pdu[1] == 1:  # Format 1: handle, 16-bit UUID pairs (§3.4.3.2)
            for i in range(2, len(pdu) - 3, 4):
                h, u = struct.unpack("<HH", pdu[i : i + 4])
                if u in IDENTITY:
                    _remember(link, h, u)
    elif op == ATT_READ_RSP and request[0] == ATT_READ_REQ:
        uuid = link.chars.get(request[1])
        if uuid is not None:
            _value(link, handle, request[1], uuid, pdu[1:], link.mtu - 1, ts, lt, out)
    elif op == ATT_READ_BLOB_RSP and request[0] == ATT_READ_BLOB_REQ and link.long is not None:
        h, uuid, buf = link.long
        if h == request[1]:
            buf += pdu[1:]
            if len(pdu) - 1 < link.mtu - 1 or len(buf) >= MAX_VALUE:
                _end_long(link, handle, ts, lt, out)


def _request(op: int, pdu: bytes) -> tuple[int, int]:
    """What a response will answer: the handle read, or the attribute type asked for."""
    if op in (ATT_READ_REQ, ATT_READ_BLOB_REQ):
        if len(pdu) < 3:
            raise ParseError("ATT read request truncated")
        return op, struct.unpack("<H", pdu[1:3])[0]
    if op in (ATT_READ_BY_TYPE_REQ, ATT_READ_BY_GROUP_TYPE_REQ):
        if len(pdu) not in (7, 21):  # Starting, Ending Handle, 2- or 16-octet type (§3.4.4.1)
            raise ParseError("ATT read-by-type request malformed")
        u = _uuid(pdu[5:])
        return op, u if isinstance(u, int) else -1
    if op == ATT_FIND_BY_TYPE_VALUE_REQ:  # §3.4.3.3: type 0x2800, value = the service UUID
        if len(pdu) < 7:
            raise ParseError("ATT Find By Type Value request truncated")
        if struct.unpack("<H", pdu[5:7])[0] != PRIMARY_SERVICE or len(pdu) not in (9, 23):
            return op, -1
        u = _uuid(pdu[7:])
        return op, u if isinstance(u, int) else -1
    return op, -1


def _items(pdu: bytes, head: int) -> list[bytes]:
    """Attribute Data List of a Read By (Group) Type Response: Length, then items (§3.4.4.2)."""
    if len(pdu) < 2:
        raise ParseError("ATT response without its Length")
    n = pdu[1]
    if n <= head or (len(pdu) - 2) % n:
        raise ParseError("ATT attribute data list malformed")
    return [pdu[i : i + n] for i in range(2, len(pdu), n)]


def _services(
    link: _Link, handle: int, found: list[int | str], ts: int, lt: int, out: list[Event]
) -> None:
    """Primary services discovered on the peer; each reported once per connection."""
    new16: list[int] = []
    new128: list[str] = []
    for u in found:
        key = f"0x{u:04X}" if isinstance(u, int) else u
        if key in link.services or len(link.services) >= MAX_SERVICES:
            continue
        link.services.add(key)
        if isinstance(u, int):
            new16.append(u)
        else:
            new128.append(u)
    if (new16 or new128) and link.peer is not None:
        out.append(
            BleGattServices(
                ts_ns=ts,
                linktype=lt,
                peer_address=link.peer,
                peer_address_random=link.random,
                connection_handle=handle,
                service_uuids16=new16,
                service_uuids128=new128,
                service_names=[SERVICES[u] for u in new16 if u in SERVICES],
                health_services=[SERVICES[u] for u in new16 if u in HEALTH_SERVICES],
            )
        )


def _read_by_type(
    link: _Link, handle: int, asked: int, pdu: bytes, ts: int, lt: int, out: list[Event]
) -> None:
    if asked == CHARACTERISTIC:  # declarations: Properties, Value Handle, UUID (Part G §3.3.1)
        for item in _items(pdu, 2):
            if len(item) == 7:  # Attribute Handle (2) + a declaration with a 16-bit UUID
                vh, u = struct.unpack("<HH", item[3:7])
                if u in IDENTITY:
                    _remember(link, vh, u)
    elif asked in IDENTITY:  # Read Using Characteristic UUID (Part G §4.8.2): handle, value
        for item in _items(pdu, 2)[:1]:
            h = struct.unpack("<H", item[:2])[0]
            _remember(link, h, asked)
            # §3.4.4.2: a value longer than the item room (ATT_MTU - 4, at most 253) is cut;
            # the client reads the rest with Read Blob
            _value(link, handle, h, asked, item[2:], min(link.mtu - 4, 253), ts, lt, out)


def _remember(link: _Link, value_handle: int, uuid: int) -> None:
    if value_handle in link.chars or len(link.chars) < MAX_HANDLES:
        link.chars[value_handle] = uuid


def _value(
    link: _Link,
    handle: int,
    value_handle: int,
    uuid: int,
    value: bytes,
    room: int,
    ts: int,
    lt: int,
    out: list[Event],
) -> None:
    """A value that fills its response may go on (Read Blob, §3.4.4.5): held until it ends."""
    if len(value) >= room:
        link.long = (value_handle, uuid, bytearray(value))
        return
    _emit(link, handle, uuid, bytes(value), ts, lt, out)


def _end_long(link: _Link, handle: int, ts: int, lt: int, out: list[Event]) -> None:
    if link.long is not None:
        _, uuid, buf = link.long
        link.long = None
        _emit(link, handle, uuid, bytes(buf[:MAX_VALUE]), ts, lt, out)


def _emit(link: _Link, handle: int, uuid: int, raw: bytes, ts: int, lt: int, out: list) -> None:
    value = decode_value(uuid, raw)
    if value is None or link.peer is None:
        return
    out.append(
        BleGattValue(
            ts_ns=ts,
            linktype=lt,
            peer_address=link.peer,
            peer_address_random=link.random,
            connection_handle=handle,
            uuid=f"0x{uuid:04X}",
            characteristic=IDENTITY[uuid],
            value=value,
        )
    )


def decode_value(uuid: int, raw: bytes) -> str | None:
    """The characteristic value as text (GATT Specification Supplement formats), else None."""
    if uuid == 0x2A01:  # Appearance: uint16 category and sub-category (§3.17)
        return str(struct.unpack("<H", raw)[0]) if len(raw) == 2 else None
    if uuid == 0x2A23:  # System ID: Manufacturer Identifier (40 bits), OUI (24 bits) (§3.218)
        if len(raw) != 8:
            return None
        oui = raw[5:8][::-1]
        return "oui:" + ":".join(f"{b:02x}" for b in oui)
    if uuid == 0x2A50:  # PnP ID: Vendor ID Source, Vendor ID, Product ID, Version (§3.170)
        if len(raw) != 7:
            return None
        src, vid, pid, ver = struct.unpack("<BHHH", raw)
        return f"{PNP_SOURCES.get(src, str(src))}:0x{vid:04X}:0x{pid:04X}:0x{ver:04X}"
    if uuid == 0x2A2A:  # IEEE 11073-20601 certification data list: its presence (§3.124)
        return "present" if raw else None
    s = text(raw, 64).strip()  # UTF-8 strings, often NUL-padded
    return s or None


dissect.reset = reset  # type: ignore[attr-defined]  # per-capture state: see FlowEngine
register_frame(dissect)
