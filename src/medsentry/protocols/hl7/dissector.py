"""The HL7 v2 over MLLP stream dissector: frames of both directions -> `Hl7Message` events."""

from __future__ import annotations

from typing import ClassVar

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.hl7 import Hl7DeviceIdentifier, Hl7Message, Hl7MllpSession, Hl7Observation
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.hl7.knowledge import phi_segments, vital_limits
from medsentry.protocols.hl7.message import Hl7Error, components, hd, parse
from medsentry.protocols.hl7.mllp import Frame, MllpFramer

# knowledge files are loaded and validated at start-up (a bad file fails here, not mid-scan)
phi_segments()
vital_limits()


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
        d, msh = msg.delimiters, msg.msh

        def field(n: int) -> str | None:
            value = msh.get(n)
            return hd(value, d) if value else None

        def component(n: int, i: int) -> str | None:
            value = msh.get(n)
            if not value:
                return None
            parts = components(value, d)
            return parts[i] or None if i < len(parts) else None

        phi = phi_segments()
        return Hl7Message(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            field_separator=d.field,
            encoding_characters=msg.encoding_characters,
            sending_application=field(3),
            sending_facility=field(4),
            receiving_application=field(5),
            receiving_facility=field(6),
            security_present=bool(msh.get(8)),
            message_type=component(9, 0),
            trigger_event=component(9, 1),
            message_structure=component(9, 2),
            control_id=component(10, 0),
            processing_id=component(11, 0),
            version=component(12, 0),
            character_set=component(18, 0),
            ack_code=msg.ack_code or None,
            ack_control_id=msg.ack_control_id or None,
            segment_counts=msg.segment_counts,
            phi_segments=sorted(s for s in msg.segment_counts if s in phi),
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
