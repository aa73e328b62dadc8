"""HL7 v2 message parsing (HL7 v2.5.1 Chapter 2): delimiters as declared in MSH-1 and MSH-2.

Only what medsentry reports is extracted: MSH header fields, MSA acknowledgement, equipment
identifiers (PRT-10, PRT-16, PRT-20, OBX-18), observation codes and units (OBX-3, OBX-6) and segment
counts. Values of patient-bearing fields are never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medsentry.protocols.hl7.knowledge import vital_limits

MAX_SEGMENTS = 10_000
MAX_LIST = 64  # device identifiers and observations kept per message
MAX_TEXT = 128  # characters kept of an identifier or name
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")


class Hl7Error(ValueError):
    """A frame that does not hold an HL7 v2 message."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    """HL7 v2.5.1 §2.5.4: field, component, repetition, escape, subcomponent separators."""

    field: str
    component: str
    repetition: str
    escape: str | None
    subcomponent: str | None

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + (self.escape or "") + (self.subcomponent or "")


@dataclass(slots=True)
class DeviceId:
    field: str
    entity_identifier: str
    namespace_id: str | None
    universal_id: str | None
    universal_id_type: str | None


@dataclass(slots=True)
class Observation:
    code: str
    coding_system: str | None
    value_type: str | None
    units: str | None
    plausible: bool | None


@dataclass(slots=True)
class ParsedMessage:
    delimiters: Delimiters
    encoding_characters: str
    msh: dict[int, str] = field(default_factory=dict)  # MSH-n raw field values, n >= 3
    ack_code: str | None = None
    ack_control_id: str | None = None
    segment_counts: dict[str, int] = field(default_factory=dict)
    devices: list[DeviceId] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("latin-1")  # every byte maps: ISO 8859-1, the v2 default (MSH-18)


def delimiters(msh: str) -> tuple[Delimiters, str]:
    """Read MSH-1 (the character after "MSH") and MSH-2 (up to the next field separator)."""
    if len(msh) < 5 or msh[:3] not in ("MSH", "FHS", "BHS"):
        raise Hl7Error("no MSH segment at the start of the message")
    sep = msh[3]
    if sep.isalnum() or sep in "\r\n ":
        raise Hl7Error(f"MSH-1 field separator {sep!r} is not a delimiter")
    end = msh.find(sep, 4)
    encoding = msh[4:] if end < 0 else msh[4:end]
    if not 2 <= len(encoding) <= 5 or len(set(encoding + sep)) != len(encoding) + 1:
        raise Hl7Error(f"MSH-2 encoding characters {encoding!r} are not 2-5 distinct delimiters")
    if any(c.isalnum() or c in "\r\n " for c in encoding):
        raise Hl7Error(f"MSH-2 encoding characters {encoding!r} are not delimiters")
    return (
        Delimiters(
            sep,
            encoding[0],
            encoding[1],
            encoding[2] if len(encoding) > 2 else None,
            encoding[3] if len(encoding) > 3 else None,
        ),
        encoding,
    )


def unescape(value: str, d: Delimiters) -> str:
    """Resolve escape sequences (HL7 v2.5.1 §2.7): F S T R E Xhh; drop formatting ones."""
    esc = d.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        j = value.find(esc, i + 1) if c == esc else -1
        if j < 0:
            out.append(c)
            i += 1
            continue
        seq = value[i + 1 : j]
        if seq == "F":
            out.append(d.field)
        elif seq == "S":
            out.append(d.component)
        elif seq == "T":
            out.append(d.subcomponent or "")
        elif seq == "R":
            out.append(d.repetition)
        elif seq == "E":
            out.append(esc)
        elif seq.startswith("X") and len(seq) % 2 == 1:
            try:
                out.append(bytes.fromhex(seq[1:]).decode("latin-1"))
            except ValueError:
                out.append(value[i : j + 1])
        elif seq in ("H", "N") or seq.startswith((".", "C", "M", "Z")):
            pass  # highlighting, formatting (.br, .sp ...) and character set switches
        else:
            out.append(value[i : j + 1])
        i = j + 1
    return "".join(out)


def _first_repetition(value: str, d: Delimiters) -> str:
    return value.split(d.repetition, 1)[0]


def components(value: str, d: Delimiters) -> list[str]:
    """Components of the first repetition of a field, unescaped, subcomponents kept joined."""
    return [unescape(c, d)[:MAX_TEXT] for c in _first_repetition(value, d).split(d.component)]


def hd(value: str, d: Delimiters) -> str | None:
    """An HD (hierarchic designator) field as text, components joined by '^' (§2.A.33)."""
    parts = components(value, d)
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts) if parts else None


def _entity_identifiers(name: str, value: str, d: Delimiters) -> list[DeviceId]:
    """EI values (§2.A.24), each repetition: entity identifier, namespace, universal id, type."""
    out = []
    for rep in value.split(d.repetition, MAX_LIST)[:MAX_LIST]:
        parts = [unescape(c, d)[:MAX_TEXT] for c in rep.split(d.component)] + [""] * 4
        if parts[0] or parts[2]:
            out.append(
                DeviceId(name, parts[0], parts[1] or None, parts[2] or None, parts[3] or None)
            )
    return out


def _plausible(
    obx: list[str], d: Delimiters, code: str, system: str | None, text: str | None, units: list[str]
) -> bool | None:
    """The only trace of OBX-5: inside or outside the code's physiologically possible range."""
    limit = vital_limits().find(code, system, text)
    if limit is None or len(obx) <= 5 or not units or not limit.units.intersection(units):
        return None
    raw = _first_repetition(obx[5], d).strip()
    try:
        number = float(raw)
    except ValueError:
        return None
    return limit.low <= number <= limit.high


_FIELDS_READ = frozenset(("MSH", "MSA", "PRT", "OBX"))  # segments whose fields are read


def parse(payload: bytes) -> ParsedMessage:
    """Parse one message (the payload of an MLLP frame); raises Hl7Error when it is not HL7 v2."""
    text = _decode(payload).lstrip("\r\n")
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s]
    if not segments:
        raise Hl7Error("empty message")
    d, encoding = delimiters(segments[0])
    msg = ParsedMessage(d, encoding)
    msh_seen = False
    for seg in segments[:MAX_SEGMENTS]:
        seg_id = seg[:3]
        if not _SEGMENT_ID.match(seg_id) or (len(seg) > 3 and seg[3] != d.field):
            continue  # a broken line (e.g. a wrapped value); not counted as a segment
        msg.segment_counts[seg_id] = msg.segment_counts.get(seg_id, 0) + 1
        if seg_id not in _FIELDS_READ:
            continue  # only counted (PID, PV1, NK1 ... are PHI: never split into fields)
        fields = seg.split(d.field)
        if seg_id == "MSH" and not msh_seen:
            msh_seen = True
            # MSH-1 is the separator itself, so MSH-n is fields[n - 1] (§2.14.9)
            msg.msh = {n: fields[n - 1] for n in range(3, min(len(fields) + 1, 22))}
        elif seg_id == "MSA" and msg.ack_code is None:  # §3.4.8 (v2.5.1 §2.14.8)
            msg.ack_code = components(fields[1], d)[0] if len(fields) > 1 else None
            msg.ack_control_id = components(fields[2], d)[0] if len(fields) > 2 else None
        elif seg_id == "PRT" and len(msg.devices) < MAX_LIST:  # v2.7 §7.4.4
            if len(fields) > 10:
                msg.devices.extend(_entity_identifiers("PRT-10", fields[10], d))
            if len(fields) > 16:
                msg.devices.extend(_entity_identifiers("PRT-16", fields[16], d))
            if len(fields) > 20 and fields[20]:  # v2.8.2: participant device serial number
                serial = unescape(_first_repetition(fields[20], d), d)[:MAX_TEXT]
                msg.devices.append(DeviceId("PRT-20", serial, None, None, None))
        elif seg_id == "OBX":  # §7.4.2
            if len(fields) > 18 and len(msg.devices) < MAX_LIST:
                msg.devices.extend(_entity_identifiers("OBX-18", fields[18], d))
            if len(fields) > 3 and len(msg.observations) < MAX_LIST:
                ident = [*components(fields[3], d), "", "", ""]
                if ident[0]:
                    units = (
                        [u for u in components(fields[6], d)[:2] if u] if len(fields) > 6 else []
                    )
                    value_type = components(fields[2], d)[0] if len(fields) > 2 else ""
                    msg.observations.append(
                        Observation(
                            code=ident[0],
                            coding_system=ident[2] or None,
                            value_type=value_type or None,
                            units=units[0] if units else None,
                            plausible=_plausible(fields, d, ident[0], ident[2], ident[1], units),
                        )
                    )
    if not msh_seen:
        raise Hl7Error("no MSH segment in the message")
    unique: dict[tuple, DeviceId] = {}
    for dev in msg.devices:
        key = (dev.field, dev.entity_identifier, dev.namespace_id, dev.universal_id)
        unique.setdefault(key, dev)
    msg.devices = list(unique.values())[:MAX_LIST]
    return msg
