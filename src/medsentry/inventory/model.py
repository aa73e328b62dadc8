"""The device record: the contract between the inventory and the engines that use it.

Risk, detection, controls and reports read devices as these structs (see
`medsentry.inventory.store.load_devices`); they never reach into the inventory's tables.
Every identified attribute carries its confidence and the evidence behind it.
"""

from __future__ import annotations

import msgspec

# Clinical criticality, most to least critical.
LIFE_SUSTAINING = "life-sustaining"
PATIENT_AFFECTING = "patient-affecting"
SUPPORT = "support"
NONE = "none"
CRITICALITIES = (LIFE_SUSTAINING, PATIENT_AFFECTING, SUPPORT, NONE)


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """One reason to believe an attribute value: which rule or source, on what observation."""

    source: str  # e.g. "oui", "dhcp.vendor_class", "dicom.implementation_class_uid"
    rule: str | None = None  # fingerprint rule id, when a rule fired
    observed: str = ""  # the observed value (never PHI), e.g. "OFFIS_DCMTK_369"
    confidence: float = 0.0  # 0..1, this evidence alone
    ts_ns: int | None = None  # when it was observed
    value: str | None = None  # the value it supports (set on conflicts: the rival value)


class Attribute(msgspec.Struct, kw_only=True):
    """An identified value (category, vendor, model, software version, OS) with its support."""

    value: str
    confidence: float  # 0..1, combined
    evidence: list[Evidence] = []
    conflicts: list[Evidence] = []  # evidence for other values: shown, and lowers confidence


class Device(msgspec.Struct, kw_only=True):
    device_id: str  # stable key: "mac:<aa:bb:cc:dd:ee:ff>" where a MAC was seen, else "ip:<addr>"
    mac: str | None = None
    ips: list[str] = []  # current first; history in the inventory's tables
    hostname: str | None = None
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    category: Attribute | None = None  # taxonomy key, e.g. "infusion-pump", "imaging.ct"
    vendor: Attribute | None = None
    model: Attribute | None = None
    software_version: Attribute | None = None
    os: Attribute | None = None
    criticality: str = NONE  # one of CRITICALITIES, from the category (taxonomy)
    fda_class: str | None = None  # "I", "II", "III" where the category is a medical device
    medical: bool = False  # the category is a medical device (not IT / IoT)
    phi_observed: bool = False  # seen carrying PHI (flags from HL7/DICOM/FHIR dissectors)
    roles: list[str] = []  # "dicom-scu", "dicom-scp", "hl7-sender", "hl7-receiver", ...
    protocols: list[str] = []  # application protocols seen (identification names)
    peers: list[str] = []  # device_ids it talked to
    external_peers: list[str] = []  # public (internet) addresses it talked to
    listening: list[str] = []  # services it offered, "tcp/104", "udp/161"
    asset: dict[str, str] = {}  # imported CMMS facts: asset_tag, location, owner, serial, ...
    # BLE resolvable private addresses resolved to this device (Core Vol 6 Part B §1.3.2.2)
    private_addresses: list[str] = []
