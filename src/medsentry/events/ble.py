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
