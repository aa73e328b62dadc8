"""Bluetooth Low Energy advertising (Bluetooth Core 5.x Vol 6 Part B §2.3, CSS Part A)."""

from __future__ import annotations

import msgspec

from medsentry.events.base import Event


class BleAdvertisement(Event, tag="ble_adv", frozen=True, kw_only=True):
    """One advertising-channel PDU. Repeats of the same advertiser and content are counted
    by the consumer; the dissector emits every PDU it decodes."""

    linktype: int
    pdu_type: str  # ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ...
    advertiser_address: str
    address_random: bool
    rssi: int | None = None
    channel: int | None = None
    local_name: str | None = None
    complete_name: bool = False
    company_id: int | None = None  # manufacturer specific data (AD type 0xFF)
    company_name: str | None = None
    service_uuids16: list[int] = msgspec.field(default_factory=list)
    # SIG-assigned names of the 16-bit UUIDs we know
    service_names: list[str] = msgspec.field(default_factory=list)
    # the medical profiles among them
    health_services: list[str] = msgspec.field(default_factory=list)
    tx_power: int | None = None
    appearance: int | None = None
    # AD types 0x04/0x05 and 32-bit service data (0x20), CSS Part A §1.1/§1.11
    service_uuids32: list[int] = msgspec.field(default_factory=list)
    # AD types 0x06/0x07 and 128-bit service data (0x21): RFC 4122 text, lower case
    service_uuids128: list[str] = msgspec.field(default_factory=list)
    # UUIDs of the service data AD structures (0x16/0x20/0x21): 0x1234, 0x12345678 or 128-bit
    service_data_uuids: list[str] = msgspec.field(default_factory=list)
    # where the advertisement was seen: "air" (sniffer) or "hci" (host controller interface)
    observed_via: str = "air"
    address_type: int | None = None  # HCI LE Address_Type (0 public, 1 random, 2/3 identity)


class BleConnection(Event, tag="ble_conn", frozen=True, kw_only=True):
    """An LE connection the capturing host's controller reported (HCI LE Connection Complete,
    Core Vol 4 Part E §7.7.65.1 / LE Enhanced Connection Complete §7.7.65.10): the host (a phone
    running a companion app, a hub) connected to, or was connected by, `peer_address`."""

    linktype: int
    peer_address: str
    peer_address_random: bool
    peer_address_type: int  # 0 public, 1 random, 2/3 identity (resolved private address)
    local_role: str  # "central" (the host connected out) or "peripheral"
    status: int  # HCI error code (Vol 1 Part F); 0 = connected
    connection_handle: int
    connection_interval_ms: float | None = None  # Connection_Interval x 1.25 ms


class BleGattValue(Event, tag="ble_gatt", frozen=True, kw_only=True):
    """An identity characteristic the capturing host read from a connected peer's GATT server
    (protocols/ble_gatt.py): Device Information Service strings, PnP ID, System ID, the GAP
    Device Name or Appearance. Never a measurement or a User Data Service value."""

    linktype: int
    peer_address: str
    peer_address_random: bool
    connection_handle: int  # HCI Connection_Handle; a sniffed link's access address
    uuid: str  # 16-bit characteristic UUID, "0x2A29"
    characteristic: str  # its SIG name, "Manufacturer Name String"
    value: str  # text; PnP ID "bluetooth:0x020E:0x0001:0x0100"; System ID "oui:00:09:1f"


class BleGattServices(Event, tag="ble_gatt_svc", frozen=True, kw_only=True):
    """Primary services the capturing host discovered on a connected peer (Core Vol 3 Part G
    §4.4), each reported once per connection."""

    linktype: int
    peer_address: str
    peer_address_random: bool
    connection_handle: int
    service_uuids16: list[int] = msgspec.field(default_factory=list)
    service_uuids128: list[str] = msgspec.field(default_factory=list)
    service_names: list[str] = msgspec.field(default_factory=list)
    health_services: list[str] = msgspec.field(default_factory=list)


class BleAddressResolved(Event, tag="ble_resolved", frozen=True, kw_only=True):
    """A resolvable private address (Core Vol 6 Part B §1.3.2.2) shown to be one device's:
    `address` resolved to `identity_address` (protocols/ble_privacy.py). The key that resolved
    it is never part of the event."""

    linktype: int
    address: str  # the resolvable private address
    identity_address: str
    identity_address_random: bool  # a random static identity address; else public (has an OUI)
    # "smp": the IRK the device distributed when it bonded (Vol 3 Part H §3.6.4); "controller":
    # LE Enhanced Connection Complete (Vol 4 Part E §7.7.65.10); "key-file": a key the user gave
    resolved_by: str
