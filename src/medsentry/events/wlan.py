"""802.11 stations and access points seen in management and encrypted data frames
(IEEE Std 802.11-2020 §9.3.3 management frame bodies, §9.4.2 information elements)."""

from __future__ import annotations

import msgspec

from medsentry.events.base import Event


class WlanStation(Event, tag="wlan_station", frozen=True, kw_only=True):
    """What the air said about one 802.11 transmitter (an AP or a client station).

    Emitted at its first sighting and again only when a new fact about it appears (a new frame
    kind, WPS attributes, a vendor IE...), never once per frame. Probe-request SSIDs and the WPS
    Device Name can name a person ("Anna's iPhone"): they are keyed hashes only.
    """

    linktype: int
    station_mac: str
    role: str  # "ap" or "station"
    bssid: str | None = None
    address_random: bool = False  # locally administered MAC (IEEE 802 §8.2 U/L bit)
    frame_kinds: list[str] = msgspec.field(default_factory=list)  # "beacon", "probe_req", ...
    frames: int = 0  # frames folded into this record so far
    # access points: the network name (an SSID of an infrastructure network is not personal)
    ssid: str | None = None
    ssid_hidden: bool = False
    privacy: bool = False  # Capability Information Privacy bit (§9.4.1.4) or an RSN element
    rsn: bool = False  # RSN element (§9.4.2.24): WPA2/WPA3
    # stations: Wi-Fi Simple Configuration (WPS) attributes of a vendor IE 00:50:F2 type 4
    wps_manufacturer: str | None = None
    wps_model_name: str | None = None
    wps_model_number: str | None = None
    wps_device_name_hash: str | None = None  # keyed hash: a device name may be personal
    probed_ssid_hashes: list[str] = msgspec.field(default_factory=list)  # keyed hashes
    wildcard_probe: bool = False  # a probe request for any network (empty SSID)
    vendor_ouis: list[str] = msgspec.field(default_factory=list)  # vendor-specific IE OUIs
    # rates, HT/VHT/HE presence and element order of probe/association requests
    fingerprint: str | None = None
    protected_data: bool = False  # data frames with the Protected Frame bit (§9.2.4.1.9)
