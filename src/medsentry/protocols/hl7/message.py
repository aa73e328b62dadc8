"""HL7 v2 message parsing (HL7 v2.5.1 Chapter 2): delimiters as declared in MSH-1 and MSH-2.

Only what medsentry reports is extracted: MSH header fields, MSA acknowledgement, equipment
identifiers (PRT-10, PRT-16, PRT-20, OBX-18), observation codes and units (OBX-3, OBX-6) and segment
counts. Values of patient-bearing fields are never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsentry.protocols.hl7 import values
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
    code: str  # OBX-3.1 as sent: reported only when `standard_code`, else as a keyed hash
    standard_code: bool  # a code of a published vocabulary (values.observation_code)
    coding_system: str | None  # OBX-3.3, reported form (values.coding_system)
    value_type: str | None  # OBX-2, reported form
    units: str | None  # OBX-6, reported form (values.unit)
    plausible: bool | None


MSH_FIELDS = 21  # MSH-1 .. MSH-21 are read


@dataclass(slots=True)
class ParsedMessage:
    # MSH-n raw value is msh[n - 1] for n <= MSH_FIELDS ("" when absent; MSH-1 and MSH-2 are
    # the delimiters, read from the frame's `delimiters`)
    msh: list[str]
    ack_code: str | None
    ack_control_id: str | None
    segment_counts: dict[str, int]
    devices: list[DeviceId]
    observations: list[Observation]
    length: int  # characters of the message's segments and their terminators


@dataclass(slots=True)
class ParsedFrame:
    """The messages of one MLLP frame: one, or a batch (HL7 v2.5.1 §2.10.3).

    A batch is `[FHS] {[BHS] {MSH ...} [BTS]} [FTS]`; some interfaces also send several
    messages in one frame without any header. Header fields are kept raw like `msh`: FHS-n is
    `file_header[n - 1]`, BHS-n is `batch_header[n - 1]` (the first BHS).
    """

    delimiters: Delimiters
    encoding_characters: str
    messages: list[ParsedMessage]
    file_header: list[str] | None = None
    batch_header: list[str] | None = None
    batches: int = 0  # BHS segments
    declared_messages: int | None = None  # sum of BTS-1 batch message counts
    declared_batches: int | None = None  # FTS-1 file batch count

    @property
    def is_batch(self) -> bool:
        return self.file_header is not None or self.batches > 0 or len(self.messages) > 1


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
    """An HD (hierarchic designator, §2.A.33) field as reported, components joined by '^':
    the namespace ID as sent, the universal ID and its type only when they are valid."""
    return values.hd(components(value, d))


def _entity_identifiers(name: str, value: str, d: Delimiters) -> list[DeviceId]:
    """EI values (§2.A.24), each repetition: entity identifier, namespace, universal id, type;
    the namespace only when it names a maker, the universal id only of its type's syntax."""
    out = []
    for rep in value.split(d.repetition, MAX_LIST)[:MAX_LIST]:
        parts = [unescape(c, d)[:MAX_TEXT] for c in rep.split(d.component)] + [""] * 4
        if parts[0] or parts[2]:
            out.append(
                DeviceId(
                    name,
                    parts[0],
                    values.vendor_namespace(parts[1]),
                    values.universal_id(parts[2], parts[3]),
                    values.universal_id_type(parts[3]),
                )
            )
    return out


_VALUE_TYPE = re.compile(r"^[A-Z]{2,3}$")  # OBX-2 (Table 0125: NM, ST, CWE ...)


def _observation(
    d: Delimiters, obx2: str, obx3: str, obx6: str | None
) -> tuple[str, bool, str | None, str | None, str | None, VitalLimit | None]:
    """OBX-3 code (and whether it is a standard one) and coding system, OBX-2 value type,
    OBX-6 units as reported, and the code's vital-sign limit when its units are among the
    known ones (else None: no plausibility)."""
    ident = [*components(obx3, d), "", "", ""]
    if not ident[0]:
        return "", False, None, None, None, None
    unit_parts = [*components(obx6, d), "", "", ""] if obx6 is not None else ["", "", ""]
    units = [u for u in unit_parts[:2] if u]
    value_type = first_component(obx2, d)
    if value_type and not _VALUE_TYPE.match(value_type):
        value_type = values.NON_STANDARD
    limit = vital_limits().find(ident[0], ident[2], ident[1])
    if limit is not None and not (units and limit.units.intersection(units)):
        limit = None
    system = values.coding_system(ident[2])
    return (
        ident[0],
        values.observation_code(ident[0], system),
        system,
        value_type or None,
        values.unit(*unit_parts[:3]),
        limit,
    )


_NEWLINE = re.compile(r"\r\n|\r|\n")
_CACHE_MAX = 512
_OBSERVATION_KEY_MAX = 512  # characters of OBX-2, -3, -6: longer ones are not kept
_observation_cache: dict[tuple, tuple] = {}  # (delimiters, OBX-2, OBX-3, OBX-6) -> _observation
_segment_kinds: dict[str, int] = {}  # seg[:3] -> _segment_kind
_delimiter_cache: dict[str, tuple[Delimiters, str]] = {}  # MSH[:10] -> valid delimiters


_NOT_SEGMENT, _COUNTED, _MSH, _MSA, _PRT, _OBX, _BATCH = range(7)
# segments whose fields are read; FHS BHS BTS FTS frame a batch (HL7 v2.5.1 §2.10.3)
_READ = {"MSH": _MSH, "MSA": _MSA, "PRT": _PRT, "OBX": _OBX}
_READ |= dict.fromkeys(("FHS", "BHS", "BTS", "FTS"), _BATCH)
_HEADER_FIELDS = 12  # FHS-1 .. FHS-12, BHS-1 .. BHS-12 (§2.14.6, §2.14.2)


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


def _split_header(seg: str, fsep: str, n: int) -> list[str]:
    """Fields of a header segment (MSH, FHS, BHS): field n is item n - 1, since field 1 is
    the separator itself (§2.14.9.1); padded with "" to n items."""
    fields = seg.split(fsep, n)
    if len(fields) > n:
        del fields[n:]  # the rest of the segment, unsplit
    elif len(fields) < n:
        fields += [""] * (n - len(fields))
    return fields


def _count(value: str) -> int | None:
    """A numeric count field (BTS-1, FTS-1: NM), None when absent or not a whole number."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else None


def parse(payload: bytes) -> ParsedFrame:
    """Parse the payload of one MLLP frame: one message, or the messages of a batch
    (§2.10.3), each starting at its MSH. Raises Hl7Error when it holds no HL7 v2 message."""
    text = _decode(payload)
    if text[:1] in ("\r", "\n"):
        text = text.lstrip("\r\n")
    lines = _NEWLINE.split(text) if "\n" in text else text.split("\r")
    if not lines[-1]:
        lines.pop()  # after the last segment's terminator
    segments = [s for s in lines if s] if "" in lines else lines
    if not segments:
        raise Hl7Error("empty message")
    d, encoding = _delimiters(segments[0])
    fsep = d.field
    if len(segments) > MAX_SEGMENTS:
        segments = segments[:MAX_SEGMENTS]
    frame = ParsedFrame(d, encoding, [])
    messages = frame.messages
    counts: dict[str, int] = {}  # segments before the first MSH count in the first message
    msh: list[str] | None = None
    ack_code = ack_control_id = None
    devices: list[DeviceId] = []
    observations: list[Observation] = []
    length = 0
    for seg in segments:
        seg_id = seg[:3]
        kind = _segment_kinds.get(seg_id)
        if kind is None:
            kind = _segment_kind(seg_id)
        if not kind or (len(seg) > 3 and seg[3] != fsep):
            continue  # a broken line (e.g. a wrapped value); not counted as a segment
        if kind == _COUNTED:  # most segments (PID, PV1, NK1 ... are PHI: never split into fields)
            length += len(seg) + 1
            counts[seg_id] = counts.get(seg_id, 0) + 1
            continue
        if kind == _BATCH:
            if msh is not None:  # the message before it ends here
                messages.append(
                    _message(msh, ack_code, ack_control_id, counts, devices, observations, length)
                )
                msh, ack_code, ack_control_id = None, None, None
                counts, devices, observations, length = {}, [], [], 0
            _batch_segment(frame, seg_id, seg, fsep)
            continue
        if kind == _MSH:
            if msh is not None:  # §2.10.3: each MSH starts the next message of the batch
                messages.append(
                    _message(msh, ack_code, ack_control_id, counts, devices, observations, length)
                )
                ack_code = ack_control_id = None
                counts, devices, observations, length = {}, [], [], 0
            # MSH-1 is the separator itself, so MSH-n is fields[n - 1] (§2.14.9)
            msh = _split_header(seg, fsep, MSH_FIELDS)
        length += len(seg) + 1
        counts[seg_id] = counts.get(seg_id, 0) + 1
        if kind == _MSH:
            continue  # its fields are split above
        fields = seg.split(fsep)
        if kind == _MSA:
            if ack_code is None:  # §2.14.8
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
            _obx(fields, d, encoding, devices, observations)
    if msh is not None:
        messages.append(
            _message(msh, ack_code, ack_control_id, counts, devices, observations, length)
        )
    if not messages:
        raise Hl7Error("no MSH segment in the message")
    return frame


def _batch_segment(frame: ParsedFrame, seg_id: str, seg: str, fsep: str) -> None:
    """FHS, BHS, BTS, FTS (§2.14.6, §2.14.2, §2.14.3, §2.14.7): headers and declared counts."""
    if seg_id == "BHS":
        frame.batches += 1
        if frame.batch_header is None:
            frame.batch_header = _split_header(seg, fsep, _HEADER_FIELDS)
    elif seg_id == "FHS":
        if frame.file_header is None:
            frame.file_header = _split_header(seg, fsep, _HEADER_FIELDS)
    else:
        fields = seg.split(fsep, 2)
        n = _count(fields[1]) if len(fields) > 1 else None
        if n is None:
            return
        if seg_id == "BTS":  # BTS-1 batch message count
            frame.declared_messages = (frame.declared_messages or 0) + n
        else:  # FTS-1 file batch count
            frame.declared_batches = n


def _obx(
    fields: list[str],
    d: Delimiters,
    encoding: str,
    devices: list[DeviceId],
    observations: list[Observation],
) -> None:
    """OBX-18 equipment instance identifiers, OBX-2/-3/-6 and OBX-5's plausibility (§7.4.2)."""
    if len(fields) > 18 and len(devices) < MAX_LIST:
        devices.extend(_entity_identifiers("OBX-18", fields[18], d))
    if len(fields) <= 3 or len(observations) >= MAX_LIST:
        return
    f6 = fields[6] if len(fields) > 6 else None
    key = (d.field, encoding, fields[2], fields[3], f6)
    known = _observation_cache.get(key)
    if known is None:
        known = _observation(d, fields[2], fields[3], f6)
        size = len(fields[2]) + len(fields[3]) + len(f6 or "")
        if len(_observation_cache) < _CACHE_MAX and size <= _OBSERVATION_KEY_MAX:
            _observation_cache[key] = known
    if not known[0]:
        return
    code, standard, system, value_type, units, limit = known
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
    observations.append(Observation(code, standard, system, value_type, units, plausible))


def _message(
    msh: list[str],
    ack_code: str | None,
    ack_control_id: str | None,
    counts: dict[str, int],
    devices: list[DeviceId],
    observations: list[Observation],
    length: int,
) -> ParsedMessage:
    if len(devices) > 1:
        unique: dict[tuple, DeviceId] = {}
        for dev in devices:
            key = (dev.field, dev.entity_identifier, dev.namespace_id, dev.universal_id)
            unique.setdefault(key, dev)
        devices = list(unique.values())[:MAX_LIST]
    return ParsedMessage(msh, ack_code, ack_control_id, counts, devices, observations, length)
