"""HL7 v2 events (messages framed by MLLP): header, acknowledgement, device identifiers.

No event holds PHI: segments that carry patient data (PID, NK1, PV1, IN1, GT1, ...) are reduced
to counts; observations keep their identifier code and units, never their value (at most a
plausibility flag); MSH-8 security is a credential, kept as a presence flag. Coded fields are
reported only as codes of their tables, else "(non-standard)"; control ids as keyed hashes.
"""

from __future__ import annotations

import msgspec

from medsentry.events.base import Endpoints, Event

# the reported form of a coded value that is not a code of its table (protocols/hl7/values.py)
NON_STANDARD = "(non-standard)"
NON_STANDARD_UNIT = "(non-standard unit)"


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
    control_id_hash: str | None = None  # MSH-10, keyed hash (FlowContext.phi_hash)
    processing_id: str | None = None  # MSH-11 (P production, T training, D debugging)
    version: str | None = None  # MSH-12
    character_set: str | None = None  # MSH-18
    ack_code: str | None = None  # MSA-1: AA AE AR CA CE CR (Table 0008), else "(non-standard)"
    ack_control_id_hash: str | None = None  # MSA-2, keyed: the control_id_hash it acknowledges
    segment_counts: dict[str, int] = msgspec.field(default_factory=dict)
    phi_segments: list[str] = msgspec.field(default_factory=list)  # PHI-bearing segments present
    devices: list[Hl7DeviceIdentifier] = msgspec.field(default_factory=list)
    observations: list[Hl7Observation] = msgspec.field(default_factory=list)
    size: int = 0  # bytes of the MLLP payload (of this message's segments, in a batch)
    truncated: bool = False  # longer than the parse limit: only the prefix was read
    batch_position: int = 0  # 1, 2 ... within a batch of one frame (Hl7Batch); 0 alone


class Hl7Batch(Event, tag="hl7_batch", frozen=True, kw_only=True):
    """A batch of HL7 v2 messages in one MLLP frame (HL7 v2.5.1 §2.10.3:
    [FHS] {[BHS] {MSH ...} [BTS]} [FTS]), or several messages in one frame without a header.

    Each message of the batch is its own `Hl7Message` (batch_position 1, 2, ...), reported
    after this event; this one holds the batch context: the sender and receiver the header
    names (BHS-3..6, else FHS-3..6) and the counts the trailers declare beside those seen.
    """

    flow_id: str
    endpoints: Endpoints
    direction: int  # 0 client -> server, 1 server -> client
    header: str | None = None  # "BHS", "FHS" or None (messages one after another, no header)
    sending_application: str | None = None  # BHS-3, else FHS-3 (HD components joined by ^)
    sending_facility: str | None = None  # BHS-4, else FHS-4
    receiving_application: str | None = None  # BHS-5, else FHS-5
    receiving_facility: str | None = None  # BHS-6, else FHS-6
    security_present: bool = False  # BHS-8 / FHS-8 security: presence only
    messages: int = 0  # MSH segments seen
    declared_messages: int | None = None  # sum of BTS-1 batch message counts
    batches: int = 0  # BHS segments seen
    declared_batches: int | None = None  # FTS-1 file batch count
    size: int = 0  # bytes of the MLLP payload
    truncated: bool = False  # longer than the parse limit: later messages were not read


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
