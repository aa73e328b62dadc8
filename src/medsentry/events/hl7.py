"""HL7 v2 events (messages framed by MLLP): header, acknowledgement, device identifiers.

No event holds PHI: segments that carry patient data (PID, NK1, PV1, IN1, GT1, ...) are reduced
to counts; observations keep their identifier code and units, never their value (at most a
plausibility flag); MSH-8 security is a credential, kept as a presence flag.
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Endpoints, Event


class Hl7DeviceIdentifier(msgspec.Struct, frozen=True, kw_only=True):
    """An equipment identifier: PRT-10 device, PRT-16 device identifier (UDI), PRT-20 device
    serial number (v2.8.2), OBX-18 equipment instance identifier (EI: entity^namespace^uid^type)."""

    field: str  # "PRT-10", "PRT-16", "PRT-20" or "OBX-18"
    entity_identifier: str
    namespace_id: str | None = None
    universal_id: str | None = None
    universal_id_type: str | None = None


class Hl7Observation(msgspec.Struct, frozen=True, kw_only=True):
    """OBX-3 observation identifier, OBX-2 value type and OBX-6 units; never the value.

    `plausible` is the only trace of the value: None when no range is known for the code (or
    the value is not numeric), else whether it lies in the physiologically possible range.
    """

    code: str
    coding_system: str | None = None
    value_type: str | None = None
    units: str | None = None
    plausible: bool | None = None


class Hl7Message(Event, tag="hl7_message", frozen=True, kw_only=True):
    """One HL7 v2 message (HL7 v2.5.1 §2.5, §2.14.9 MSH, §2.14.8 MSA) seen on an MLLP stream."""

    flow_id: str
    endpoints: Endpoints
    direction: int  # 0 client -> server, 1 server -> client
    field_separator: str  # MSH-1, as declared
    encoding_characters: str  # MSH-2, as declared
    sending_application: str | None = None  # MSH-3 (HD components joined by ^)
    sending_facility: str | None = None  # MSH-4
    receiving_application: str | None = None  # MSH-5
    receiving_facility: str | None = None  # MSH-6
    security_present: bool = False  # MSH-8 is a credential: presence only
    message_type: str | None = None  # MSH-9.1, e.g. ADT
    trigger_event: str | None = None  # MSH-9.2, e.g. A01
    message_structure: str | None = None  # MSH-9.3, e.g. ADT_A01
    control_id: str | None = None  # MSH-10
    processing_id: str | None = None  # MSH-11 (P production, T training, D debugging)
    version: str | None = None  # MSH-12
    character_set: str | None = None  # MSH-18
    ack_code: str | None = None  # MSA-1: AA AE AR CA CE CR
    ack_control_id: str | None = None  # MSA-2: the MSH-10 this acknowledges
    segment_counts: dict[str, int] = msgspec.field(default_factory=dict)
    phi_segments: list[str] = msgspec.field(default_factory=list)  # PHI-bearing segments present
    devices: list[Hl7DeviceIdentifier] = msgspec.field(default_factory=list)
    observations: list[Hl7Observation] = msgspec.field(default_factory=list)
    size: int = 0  # bytes of the MLLP payload
    truncated: bool = False  # longer than the parse limit: only the prefix was read


class Hl7MllpSession(Event, tag="hl7_mllp_session", frozen=True, kw_only=True):
    """Summary of one MLLP flow, at close: frames and what did not frame properly (MLLP R2)."""

    flow_id: str
    endpoints: Endpoints
    frames_c2s: int = 0
    frames_s2c: int = 0
    junk_bytes: int = 0  # bytes outside any frame
    invalid_frames: int = 0  # frames that do not hold an HL7 v2 message
    unterminated_frames: int = 0  # a start block before the end block of the previous frame
    gaps: int = 0
