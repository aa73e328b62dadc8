"""The HL7 v2 over MLLP stream dissector: frames of both directions -> `Hl7Message` events."""

from __future__ import annotations

from typing import ClassVar

from msgspec.structs import replace

from medsentry.events.base import Event
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.hl7 import (
    Hl7Batch,
    Hl7DeviceIdentifier,
    Hl7Message,
    Hl7MllpSession,
    Hl7Observation,
)
from medsentry.protocols.base import FlowContext, ParseError
from medsentry.protocols.hl7 import values
from medsentry.protocols.hl7.knowledge import (
    hl7_tables,
    is_phi_segment,
    phi_segment_prefixes,
    phi_segments,
    vital_limits,
)
from medsentry.protocols.hl7.message import (
    Delimiters,
    Hl7Error,
    ParsedFrame,
    ParsedMessage,
    components,
    first_component,
    hd,
    parse,
)
from medsentry.protocols.hl7.mllp import Frame, MllpFramer

# knowledge files are loaded and validated at start-up (a bad file fails here, not mid-scan)
phi_segments()
phi_segment_prefixes()
vital_limits()
hl7_tables()


_HEADERS_MAX = 1024
_HEADER_KEY_MAX = 1024  # characters: a longer header is decoded each time, not kept
_headers: dict[tuple, tuple[str | None, ...]] = {}


def _header(d: Delimiters, msh: list[str]) -> tuple[str | None, ...]:
    """MSH-3..6 (HD), MSH-9.1..3, MSH-11.1, MSH-12.1, MSH-18.1 as reported (values.py)."""
    kind = components(msh[8], d) if msh[8] else []
    kind += [""] * (3 - len(kind))
    first = [first_component(v, d) or None if v else None for v in (msh[10], msh[11], msh[17])]
    return (
        *(hd(v, d) if v else None for v in msh[2:6]),
        values.message_type(kind[0]),
        values.message_type(kind[1]),
        values.message_structure(kind[2]),
        values.processing_id(first[0]),
        values.version(first[1]),
        values.character_set(first[2]),
    )


_TEMPLATES_MAX = 32  # header sets a dissector keeps per direction
_HASHES_MAX = 256  # values whose keyed hash a dissector keeps (cleared when full)
_HASH_KEY_MAX = 256  # characters: a longer value is hashed each time, not kept

_PHI_LISTS_MAX = 1024
_phi_lists: dict[tuple[str, ...], list[str]] = {}  # segment ids -> PHI-bearing ones, sorted


def _phi_present(counts: dict[str, int]) -> list[str]:
    """The PHI-bearing segment ids among a message's, sorted (bounded memo: messages of one
    kind have the same segments)."""
    key = tuple(counts)
    hit = _phi_lists.get(key)
    if hit is None:
        hit = sorted(s for s in key if is_phi_segment(s))
        if len(_phi_lists) < _PHI_LISTS_MAX and len(key) <= 64:
            _phi_lists[key] = hit
    return hit.copy()  # each event owns its list


class Hl7MllpDissector:
    protocol: ClassVar[str] = "hl7-mllp"
    whole_stream: ClassVar[bool] = True

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self._framers = (MllpFramer(), MllpFramer())
        self._invalid = 0
        self._gaps = 0
        self._security_reported = False
        # per direction: header key -> template event (see _message)
        self._templates: tuple[dict[tuple, Hl7Message], ...] = ({}, {})
        self._hashes: dict[str, str] = {}  # recent values -> ctx.phi_hash (bounded, see _hash)

    def feed(self, direction: int, data: bytes, ts_ns: int) -> list[Event]:
        framer = self._framers[direction]
        try:
            frames = framer.feed(data)
        except ParseError as exc:
            raise ParseError(f"{exc} (direction {direction})") from None
        events: list[Event] = []
        for frame in frames:
            try:
                parsed = parse(frame.payload)
            except Hl7Error:
                self._invalid += 1
                continue
            batch = self._batch(direction, frame, parsed, ts_ns) if parsed.is_batch else None
            security = batch is not None and batch.security_present
            if batch is not None:
                events.append(batch)
            for i, msg in enumerate(parsed.messages, 1):
                event = self._message(direction, frame, parsed, msg, i if batch else 0, ts_ns)
                events.append(event)
                security = security or event.security_present
            if security and not self._security_reported:
                # MSH-8 / BHS-8 / FHS-8 security (HL7 v2.5.1 §2.14.9.8) in clear is a
                # credential; reported once per flow
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

    def _batch(self, direction: int, frame: Frame, parsed: ParsedFrame, ts_ns: int) -> Hl7Batch:
        """The batch context (HL7 v2.5.1 §2.10.3): BHS-3..6, else FHS-3..6, and the counts."""
        d = parsed.delimiters
        header, name = parsed.batch_header, "BHS"
        if header is None:
            header, name = parsed.file_header, "FHS"
        sec = any(h is not None and h[7] for h in (parsed.batch_header, parsed.file_header))
        names = [hd(v, d) if v else None for v in header[2:6]] if header else [None] * 4
        return Hl7Batch(
            ts_ns=ts_ns,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            header=name if header is not None else None,
            sending_application=names[0],
            sending_facility=names[1],
            receiving_application=names[2],
            receiving_facility=names[3],
            security_present=sec,
            messages=len(parsed.messages),
            declared_messages=parsed.declared_messages,
            batches=parsed.batches,
            declared_batches=parsed.declared_batches,
            size=frame.size,
            truncated=frame.truncated,
        )

    def _message(
        self,
        direction: int,
        frame: Frame,
        parsed: ParsedFrame,
        msg: ParsedMessage,
        position: int,
        ts_ns: int,
    ) -> Hl7Message:
        d, msh = parsed.delimiters, msg.msh  # MSH-n is msh[n - 1], "" when absent
        # the header fields reported (MSH-7 time and MSH-10 control id vary per message, the
        # others rarely): a connection's messages of one direction share a few sets of them,
        # each kept as a template event (bounded memo; MSH-8 not in the key)
        key = (d.field, parsed.encoding_characters, *msh[2:6], msh[8], msh[10], msh[11], msh[17])
        template = self._templates[direction].get(key)
        if template is None:
            template = self._template(direction, d, parsed.encoding_characters, key, msh)
        counts = msg.segment_counts
        # MSH-10 / MSA-2 (ST) are built by the sender, sometimes from a record number: keyed
        # hashes, so an ACK's MSA-2 hashes as the MSH-10 it answers
        control_id = first_component(msh[9], d) if msh[9] else None
        ack_control_id = msg.ack_control_id
        ack = msg.ack_code
        return replace(
            template,
            ts_ns=ts_ns,
            security_present=bool(msh[7]),
            control_id_hash=self._hash(control_id) if control_id else None,
            ack_code=values.ack_code(ack) if ack else None,
            ack_control_id_hash=self._hash(ack_control_id) if ack_control_id else None,
            segment_counts=counts,
            phi_segments=_phi_present(counts),
            devices=[
                Hl7DeviceIdentifier(
                    field=x.field,
                    entity_identifier=x.entity_identifier,
                    namespace_id=x.namespace_id,
                    universal_id=x.universal_id,
                    universal_id_type=x.universal_id_type,
                )
                for x in msg.devices
            ]
            if msg.devices
            else [],
            observations=[
                Hl7Observation(
                    code=o.code if o.standard_code else f"#{self._hash(o.code)}",
                    coding_system=o.coding_system,
                    value_type=o.value_type,
                    units=o.units,
                    plausible=o.plausible,
                )
                for o in msg.observations
            ]
            if msg.observations
            else [],
            size=frame.size if not position else msg.length,
            truncated=frame.truncated and msg is parsed.messages[-1],
            batch_position=position,
        )

    def _template(
        self, direction: int, d: Delimiters, encoding: str, key: tuple, msh: list[str]
    ) -> Hl7Message:
        """An `Hl7Message` with this flow's and this header's fields (the per-message ones
        are replaced by `_message`), kept among the direction's templates."""
        header = _headers.get(key)
        if header is None:
            header = _header(d, msh)
            if len(_headers) < _HEADERS_MAX and sum(map(len, key)) <= _HEADER_KEY_MAX:
                _headers[key] = header
        template = Hl7Message(
            ts_ns=0,
            flow_id=self.ctx.flow_id,
            endpoints=self.ctx.endpoints,
            direction=direction,
            field_separator=d.field,
            encoding_characters=encoding,
            sending_application=header[0],
            sending_facility=header[1],
            receiving_application=header[2],
            receiving_facility=header[3],
            message_type=header[4],
            trigger_event=header[5],
            message_structure=header[6],
            processing_id=header[7],
            version=header[8],
            character_set=header[9],
        )
        templates = self._templates[direction]
        if len(templates) < _TEMPLATES_MAX and sum(map(len, key)) <= _HEADER_KEY_MAX:
            templates[key] = template
        return template

    def _hash(self, value: str) -> str:
        """`ctx.phi_hash` with a small memo: an ACK's MSA-2 is the MSH-10 hashed a moment
        before, a local observation code repeats on every message of a device."""
        hit = self._hashes.get(value)
        if hit is None:
            hit = self.ctx.phi_hash(value)
            if len(self._hashes) >= _HASHES_MAX or len(value) > _HASH_KEY_MAX:
                self._hashes.clear()
            if len(value) <= _HASH_KEY_MAX:
                self._hashes[value] = hit
        return hit
