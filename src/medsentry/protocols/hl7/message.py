"""HL7 v2 message parsing (HL7 v2.5.1 Chapter 2): delimiters as declared in MSH-1 and MSH-2.

Only what medsentry reports is extracted: MSH header fields, MSA acknowledgement, equipment
identifiers (PRT-10, PRT-16, PRT-20, OBX-18), observation codes and units (OBX-3, OBX-6) and segment
counts. Values of patient-bearing fields are never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsentry.protocols.hl7.knowledge import VitalLimit, vital_limits

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


MSH_FIELDS = 21  # MSH-1 .. MSH-21 are read


@dataclass(slots=True)
class ParsedMessage:
    delimiters: Delimiters
    encoding_characters: str
    # MSH-n raw value is msh[n - 1] for n <= MSH_FIELDS ("" when absent; MSH-1 and MSH-2 are
    # the delimiters, read from `delimiters`)
    msh: list[str]
    ack_code: str | None
    ack_control_id: str | None
    segment_counts: dict[str, int]
    devices: list[DeviceId]
    observations: list[Observation]


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
    if d.repetition in value:
        value = value.partition(d.repetition)[0]
    parts = value.split(d.component)
    if d.escape and d.escape in value:
        return [unescape(c, d)[:MAX_TEXT] for c in parts]
    if len(value) > MAX_TEXT:
        return [c[:MAX_TEXT] for c in parts]
    return parts  # no escape and no component longer than MAX_TEXT: nothing to change


def first_component(value: str, d: Delimiters) -> str:
    """`components(value, d)[0]` without splitting the rest."""
    if d.repetition in value:
        value = value.partition(d.repetition)[0]
    value = value.partition(d.component)[0]
    if d.escape and d.escape in value:
        value = unescape(value, d)
    return value[:MAX_TEXT]


def hd(value: str, d: Delimiters) -> str | None:
    """An HD (hierarchic designator) field as text, components joined by '^' (§2.A.33)."""
    if d.component == "^" and len(value) <= MAX_TEXT and not (d.escape and d.escape in value):
        # joined by the separator it was split on: the first repetition, trailing empties cut
        if d.repetition in value:
            value = value.partition(d.repetition)[0]
        return value.rstrip("^") or None
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


def _observation(
    d: Delimiters, obx2: str, obx3: str, obx6: str | None
) -> tuple[str, str | None, str | None, str | None, VitalLimit | None]:
    """OBX-3 code and coding system, OBX-2 value type, OBX-6 units, and the code's vital-sign
    limit when its units are among the known ones (else None: no plausibility)."""
    ident = [*components(obx3, d), "", "", ""]
    if not ident[0]:
        return "", None, None, None, None
    units = [u for u in components(obx6, d)[:2] if u] if obx6 is not None else []
    value_type = first_component(obx2, d)
    limit = vital_limits().find(ident[0], ident[2], ident[1])
    if limit is not None and not (units and limit.units.intersection(units)):
        limit = None
    return ident[0], ident[2] or None, value_type or None, units[0] if units else None, limit


_NEWLINE = re.compile(r"\r\n|\r|\n")
_CACHE_MAX = 512
_OBSERVATION_KEY_MAX = 512  # characters of OBX-2, -3, -6: longer ones are not kept
_observation_cache: dict[tuple, tuple] = {}  # (delimiters, OBX-2, OBX-3, OBX-6) -> _observation
_segment_kinds: dict[str, int] = {}  # seg[:3] -> _segment_kind
_delimiter_cache: dict[str, tuple[Delimiters, str]] = {}  # MSH[:10] -> valid delimiters


_NOT_SEGMENT, _COUNTED, _MSH, _MSA, _PRT, _OBX = range(6)
_READ = {"MSH": _MSH, "MSA": _MSA, "PRT": _PRT, "OBX": _OBX}  # segments whose fields are read


def _segment_kind(seg_id: str) -> int:
    """What parse does with a line starting with `seg_id` (bounded memo)."""
    kind = _READ.get(seg_id, _COUNTED) if _SEGMENT_ID.match(seg_id) else _NOT_SEGMENT
    if len(_segment_kinds) < _CACHE_MAX:
        _segment_kinds[seg_id] = kind
    return kind


def _delimiters(msh: str) -> tuple[Delimiters, str]:
    # valid delimiters depend only on MSH[:10]: "MSH", MSH-1 and 2-5 characters up to MSH-1
    key = msh[:10]
    hit = _delimiter_cache.get(key)
    if hit is None:
        hit = delimiters(msh)  # raises Hl7Error (never cached)
        if len(_delimiter_cache) < _CACHE_MAX:
            _delimiter_cache[key] = hit
    return hit


def parse(payload: bytes) -> ParsedMessage:
    """Parse one message (the payload of an MLLP frame); raises Hl7Error when it is not HL7 v2."""
    text = _decode(payload).lstrip("\r\n")
    lines = _NEWLINE.split(text) if "\n" in text else text.split("\r")
    segments = [s for s in lines if s]
    if not segments:
        raise Hl7Error("empty message")
    d, encoding = _delimiters(segments[0])
    fsep = d.field
    counts: dict[str, int] = {}
    msh: list[str] | None = None
    ack_code = ack_control_id = None
    devices: list[DeviceId] = []
    observations: list[Observation] = []
    if len(segments) > MAX_SEGMENTS:
        segments = segments[:MAX_SEGMENTS]
    for seg in segments:
        seg_id = seg[:3]
        kind = _segment_kinds.get(seg_id)
        if kind is None:
            kind = _segment_kind(seg_id)
        if not kind or (len(seg) > 3 and seg[3] != fsep):
            continue  # a broken line (e.g. a wrapped value); not counted as a segment
        counts[seg_id] = counts.get(seg_id, 0) + 1
        if kind == _COUNTED:
            continue  # only counted (PID, PV1, NK1 ... are PHI: never split into fields)
        if kind == _MSH:
            if msh is None:
                # MSH-1 is the separator itself, so MSH-n is fields[n - 1] (§2.14.9)
                msh = seg.split(fsep, MSH_FIELDS)[:MSH_FIELDS]
                if len(msh) < MSH_FIELDS:
                    msh += [""] * (MSH_FIELDS - len(msh))
            continue
        fields = seg.split(fsep)
        if kind == _MSA:
            if ack_code is None:  # §3.4.8 (v2.5.1 §2.14.8)
                ack_code = first_component(fields[1], d) if len(fields) > 1 else None
                ack_control_id = first_component(fields[2], d) if len(fields) > 2 else None
        elif kind == _PRT:
            if len(devices) < MAX_LIST:  # v2.7 §7.4.4
                if len(fields) > 10:
                    devices.extend(_entity_identifiers("PRT-10", fields[10], d))
                if len(fields) > 16:
                    devices.extend(_entity_identifiers("PRT-16", fields[16], d))
                if len(fields) > 20 and fields[20]:  # v2.8.2: participant device serial number
                    serial = unescape(_first_repetition(fields[20], d), d)[:MAX_TEXT]
                    devices.append(DeviceId("PRT-20", serial, None, None, None))
        else:  # OBX §7.4.2
            if len(fields) > 18 and len(devices) < MAX_LIST:
                devices.extend(_entity_identifiers("OBX-18", fields[18], d))
            if len(fields) > 3 and len(observations) < MAX_LIST:
                f6 = fields[6] if len(fields) > 6 else None
                key = (fsep, encoding, fields[2], fields[3], f6)
                known = _observation_cache.get(key)
                if known is None:
                    known = _observation(d, fields[2], fields[3], f6)
                    size = len(fields[2]) + len(fields[3]) + len(f6 or "")
                    if len(_observation_cache) < _CACHE_MAX and size <= _OBSERVATION_KEY_MAX:
                        _observation_cache[key] = known
                if known[0]:
                    code, system, value_type, units, limit = known
                    plausible = None
                    if limit is not None and len(fields) > 5:
                        # the only trace of OBX-5: inside or outside the possible range
                        raw = fields[5]
                        if d.repetition in raw:
                            raw = raw.partition(d.repetition)[0]
                        try:
                            number = float(raw.strip())
                        except ValueError:
                            pass
                        else:
                            plausible = limit.low <= number <= limit.high
                    observations.append(Observation(code, system, value_type, units, plausible))
    if msh is None:
        raise Hl7Error("no MSH segment in the message")
    if devices:
        unique: dict[tuple, DeviceId] = {}
        for dev in devices:
            key = (dev.field, dev.entity_identifier, dev.namespace_id, dev.universal_id)
            unique.setdefault(key, dev)
        devices = list(unique.values())[:MAX_LIST]
    return ParsedMessage(d, encoding, msh, ack_code, ack_control_id, counts, devices, observations)
