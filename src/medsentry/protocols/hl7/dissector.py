"""The HL7 v2 over MLLP stream dissector: frames of both directions -> `Hl7Message` events."""

from __future__ import annotations

from typing import ClassVar

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.hl7 import Hl7DeviceIdentifier, Hl7Message, Hl7MllpSession, Hl7Observation
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.hl7.knowledge import phi_segments, vital_limits
from medsentry.protocols.hl7.message import (
    Delimiters,
    Hl7Error,
    components,
    first_component,
    hd,
    parse,
)
from medsentry.protocols.hl7.mllp import Frame, MllpFramer

# knowledge files are loaded and validated at start-up (a bad file fails here, not mid-scan)
phi_segments()
vital_limits()


_HEADERS_MAX = 1024
_HEADER_KEY_MAX = 1024  # characters: a longer header is decoded each time, not kept
_headers: dict[tuple, tuple[str | None, ...]] = {}


def _header(d: Delimiters, msh: list[str]) -> tuple[str | None, ...]:
    """MSH-3..6 (HD), MSH-9.1..3, MSH-11.1, MSH-12.1, MSH-18.1 as reported."""
    kind = components(msh[8], d) if msh[8] else []
    kind += [""] * (3 - len(kind))
    return (
        *(hd(v, d) if v else None for v in msh[2:6]),
        kind[0] or None,
        kind[1] or None,
        kind[2] or None,
        *(first_component(v, d) or None if v else None for v in (msh[10], msh[11], msh[17])),
    )


class Hl7MllpDissector:
    protocol: ClassVar[str] = "hl7-mllp"
    whole_stream: ClassVar[bool] = True

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._framers = (MllpFramer(), MllpFramer())
        self._invalid = 0
        self._gaps = 0
        self._security_reported = False

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        framer = self._framers[direction]
        try:
            frames = framer.feed(data)
        except ParseError as exc:
            raise ParseError(f"{exc} (direction {direction})") from None
        events: list[Event] = []
        for frame in frames:
            event = self._message(direction, frame, ts_ns)
            if event is None:
                self._invalid += 1
                continue
            events.append(event)
            if event.security_present and not self._security_reported:
                # MSH-8 security (HL7 v2.5.1 §2.14.9.8) in clear is a credential; once per flow
                self._security_reported = True
                events.append(
                    CleartextCredentials(
                        ts_ns=ts_ns,
                        flow_id=self.ctx.flow_id,
                        endpoints=self.ctx.endpoints,
                        protocol="hl7-mllp",
                        mechanism="msh-8-security",
                        password_sent=True,
                    )
                )
        return events

    def gap(self, direction: int, length: int, ts_ns: int) -> list[Event]:
        """Bytes lost: the frame in progress is dropped; framing resumes at the next <VT>."""
        self._gaps += 1
        self._framers[direction].reset()
        return []

    def close(self, ts_ns: int) -> list[Event]:
        c2s, s2c = self._framers
        if not (c2s.frames or s2c.frames or c2s.junk_bytes or s2c.junk_bytes or self._gaps):
            return []  # nothing was said: no session summary
        return [
            Hl7MllpSession(
                ts_ns=ts_ns,
                flow_id=self.ctx.flow_id,
                endpoints=self.ctx.endpoints,
                frames_c2s=c2s.frames,
                frames_s2c=s2c.frames,
                junk_bytes=c2s.junk_bytes + s2c.junk_bytes,
                invalid_frames=self._invalid,
                unterminated_frames=c2s.unterminated + s2c.unterminated,
                gaps=self._gaps,
            )
        ]

    def _message(self, direction: int, frame: Frame, ts_ns: int) -> Hl7Message | None:
        try:
            msg = parse(frame.payload)
        except Hl7Error:
            return None
        d, msh = msg.delimiters, msg.msh  # MSH-n is msh[n - 1], "" when absent
        # the header fields reported (MSH-7 time and MSH-10 control id vary per message, the
        # others rarely): decoded once per distinct header (bounded memo; MSH-8 not in the key)
        key = (d.field, msg.encoding_characters, *msh[2:6], msh[8], msh[10], msh[11], msh[17])
        header = _headers.get(key)
        if header is None:
            header = _header(d, msh)
            if len(_headers) < _HEADERS_MAX and sum(map(len, key)) <= _HEADER_KEY_MAX:
                _headers[key] = header
        counts = msg.segment_counts
        phi = phi_segments()
        phi_present = [s for s in counts if s in phi]
        if len(phi_present) > 1:
            phi_present.sort()
        return Hl7Message(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            field_separator=d.field,
            encoding_characters=msg.encoding_characters,
            sending_application=header[0],
            sending_facility=header[1],
            receiving_application=header[2],
            receiving_facility=header[3],
            security_present=bool(msh[7]),
            message_type=header[4],
            trigger_event=header[5],
            message_structure=header[6],
            control_id=first_component(msh[9], d) or None if msh[9] else None,
            processing_id=header[7],
            version=header[8],
            character_set=header[9],
            ack_code=msg.ack_code or None,
            ack_control_id=msg.ack_control_id or None,
            segment_counts=counts,
            phi_segments=phi_present,
            devices=[
                Hl7DeviceIdentifier(
                    field=x.field,
                    entity_identifier=x.entity_identifier,
                    namespace_id=x.namespace_id,
                    universal_id=x.universal_id,
                    universal_id_type=x.universal_id_type,
                )
                for x in msg.devices
            ],
            observations=[
                Hl7Observation(
                    code=o.code,
                    coding_system=o.coding_system,
                    value_type=o.value_type,
                    units=o.units,
                    plausible=o.plausible,
                )
                for o in msg.observations
            ],
            size=frame.size,
            truncated=frame.truncated,
        )
