"""Data sets in clear (PS3.5 §7): device identity values and identifying-attribute presence flags.

One bounded walk over the data elements (PS3.5 §7.1) in the presentation context's transfer
syntax (PS3.5 §10, Annex A), into nested sequence items (PS3.5 §7.5), up to Pixel Data
(7FE0,0010). Values are stepped over by their length, not copied, except:
- the device identity values of the top level (General Equipment Module, PS3.3 C.7.5.1; see
  `data/dicom_attributes.yaml`);
- in a Modality Worklist identifier, the first Scheduled Procedure Step item's Modality and
  Scheduled Station AE Title (PS3.4 K.6.1.2), and nothing else in it.
The attributes that may identify a patient or another person are those of PS3.15 Table E.1-1
(`data/dicom_confidentiality_profile.yaml`) and the private data elements: only the keywords of
those present with a value, at any nesting level, are returned; their values are never read.

When no transfer syntax was negotiated (the flow was captured after its A-ASSOCIATE), the
encoding is guessed from the first element (PS3.5 §7.1.2) and, once the walk has read elements
in it without error, reported as inferred: Implicit VR Little Endian is one transfer syntax;
explicit VR little endian is shared by Explicit VR Little Endian and every encapsulated
(compressed) syntax, told apart only by a Pixel Data element of defined length (native) or
undefined length (encapsulated, PS3.5 §A.4). Big endian and deflated data sets are not
recognised without a negotiated syntax: nothing is inferred for them.

A value that runs past the bytes at hand is never kept. When those bytes are the whole data set
(not a prefix cut at the dissector's bound), that is a decode error, as is any element, item or
delimiter that breaks the encoding rules.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from medsentry.protocols.dicom.dictionary import sequence_tags
from medsentry.protocols.dicom.knowledge import confidentiality_profile, dataset_attributes

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"  # PS3.5 §A.1
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"  # PS3.5 §A.2
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"  # PS3.5 §A.5
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"  # PS3.5 §A.3 (retired)
# how a data set is encoded (PS3.5 §7.1), said when its transfer syntax is inferred
IMPLICIT_VR_LE_ENCODING = "implicit VR little endian"
EXPLICIT_VR_LE_ENCODING = "explicit VR little endian"  # Pixel Data native or not seen
ENCAPSULATED_ENCODING = "explicit VR little endian, encapsulated pixel data"  # PS3.5 §A.4

PIXEL_DATA = 0x7FE00010
ITEM = 0xFFFEE000  # PS3.5 §7.5: Item, Item Delimitation Item, Sequence Delimitation Item
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
# PS3.5 §7.1.2, Table 7.1-1: explicit VRs with a reserved field and a 32-bit length
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
MAX_DEPTH = 16  # nested sequences followed; deeper is refused as malformed
_MAX_KEPT_VALUE = 1024  # a device identity value is LO/SH/CS/UI (64 characters at most)
_PADDING_CHECKED = 64  # a value this short is empty when it is only padding (PS3.5 §6.2)
_MAX_VALUE_CHARS = 64
_MAX_VALUES = 8


@dataclass(slots=True)
class DatasetSummary:
    sop_class_uid: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    device_serial_number: str | None = None
    software_versions: list[str] = field(default_factory=list)
    station_name: str | None = None
    institutional_department_name: str | None = None
    scheduled_modality: str | None = None  # (0040,0100) item 1 (0008,0060)
    scheduled_station_ae_title: str | None = None  # (0040,0100) item 1 (0040,0001)
    phi_attributes: list[str] = field(default_factory=list)
    bytes_parsed: int = 0
    decode_error: bool = False
    # no transfer syntax given: the one the bytes show (when only one fits) and their encoding
    transfer_syntax_inferred: str | None = None
    encoding_inferred: str | None = None


class _Truncated(Exception):
    """An element runs past the bytes at hand."""


class _Malformed(Exception):
    """The bytes break the data set encoding (PS3.5 §7)."""


def _encoding(transfer_syntax: str | None, data: bytes) -> tuple[bool, bool]:
    """(is_implicit_VR, is_little_endian) for a transfer syntax; guess when it is unknown."""
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False
    if transfer_syntax is None:  # PS3.5 §7.1.2: explicit VR has two letters after the tag
        return not (len(data) >= 6 and data[4:6].isalpha() and data[4:6].isupper()), True
    return False, True  # explicit VR LE and every encapsulated (compressed) syntax


def inflate_prefix(data: bytes, limit: int) -> tuple[bytes, bool] | None:
    """The first `limit` bytes of a deflated data set (RFC 1951, no zlib header: PS3.5 §A.5)
    and whether the deflate stream ended within them; None when it is not a deflate stream."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        return inflater.decompress(data, limit), inflater.eof
    except zlib.error:
        return None


def _text(value: bytes) -> list[str]:
    try:
        s = value.decode("utf-8")
    except UnicodeDecodeError:
        s = value.decode("latin-1")
    parts = [p.strip("\x00 ") for p in s.split("\\")]
    return [p[:_MAX_VALUE_CHARS] for p in parts if p][:_MAX_VALUES]


class _Walk:
    """One walk over a data set's elements, collecting what `summarize` reports."""

    __slots__ = (
        "data",
        "device",
        "elements",
        "explicit_header",
        "found",
        "identifying",
        "implicit",
        "implicit_header",
        "pixel_data_length",
        "present",
        "private",
        "repeating",
        "scheduled",
        "seq_tags",
        "size",
        "step",
        "step_items",
        "tag16",
        "u32",
    )

    def __init__(self, data: bytes, implicit: bool, little: bool, worklist: bool) -> None:
        attrs, profile = dataset_attributes(), confidentiality_profile()
        self.data, self.size, self.implicit = data, len(data), implicit
        order = "<" if little else ">"
        self.tag16, self.u32 = struct.Struct(order + "HH"), struct.Struct(order + "I")
        self.explicit_header = struct.Struct(order + "HH2sH")  # PS3.5 Table 7.1-2
        self.implicit_header = struct.Struct(order + "HHI")  # PS3.5 Table 7.1-3
        self.device = attrs.device_identity
        self.identifying = profile.identifying
        self.repeating = profile.repeating
        self.private = profile.private_keyword
        self.scheduled = attrs.scheduled_sequence if worklist else None
        self.step_items = attrs.scheduled_items
        self.seq_tags = sequence_tags() if implicit else frozenset()  # implicit VR does not say
        self.found: dict[int, bytes] = {}
        self.step: dict[str, bytes] = {}
        self.present: set[str] = set()
        self.elements = 0  # top-level elements whose header was read
        self.pixel_data_length: int | None = None  # of the top-level Pixel Data, when reached

    def item_header(self, pos: int) -> tuple[int, int, int]:
        """(tag, length, value position) of an item or delimiter: a tag and a 32-bit length,
        no VR, in every transfer syntax (PS3.5 §7.5)."""
        if pos + 8 > self.size:
            raise _Truncated
        group, element = self.tag16.unpack_from(self.data, pos)
        return group << 16 | element, self.u32.unpack_from(self.data, pos + 4)[0], pos + 8

    def repeating_keyword(self, tag: int) -> str | None:
        """The keyword of an identifying attribute of a repeating group, else None."""
        hi = (tag >> 16) & 0xFF00
        for base, element, mask, kw in self.repeating:  # 50xx Curve, 60xx Overlay
            if base == hi and tag & mask == element:
                return kw
        return None

    def dataset(self, pos: int, end: int | None, depth: int, step: bool = False) -> int:
        """The elements of a data set or item from `pos` to `end`, or through its Item
        Delimitation Item when its length is undefined (end None): PS3.5 §7.5.2. `step`: the
        item is a worklist identifier's first Scheduled Procedure Step (PS3.4 K.6.1.2)."""
        data, size, implicit = self.data, self.size, self.implicit
        identifying, present, device = self.identifying, self.present, self.device
        element_header = self.implicit_header if implicit else self.explicit_header
        u32, long_vrs = self.u32, _LONG_VRS
        while end is None or pos < end:
            # PS3.5 §7.1.2 explicit, §7.1.3 implicit; items and delimiters have no VR (§7.5)
            if pos + 8 > size:
                raise _Truncated
            value = pos + 8
            if implicit:
                group, element, length = element_header.unpack_from(data, pos)
                vr = None
            else:
                group, element, vr, length = element_header.unpack_from(data, pos)
                if group == 0xFFFE:
                    vr, length = None, u32.unpack_from(data, pos + 4)[0]
                elif vr in long_vrs:
                    if pos + 12 > size:
                        raise _Truncated
                    length, value = u32.unpack_from(data, pos + 8)[0], pos + 12
                elif not (vr.isalpha() and vr.isupper()):
                    raise _Malformed
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == ITEM_DELIMITATION and end is None and depth:
                    return value
                raise _Malformed  # an item or delimiter where an element belongs
            if not depth:
                if tag >= PIXEL_DATA:  # pixel data and what follows it are not read
                    if tag == PIXEL_DATA:
                        self.pixel_data_length = length
                    return pos
                self.elements += 1
            kw = identifying.get(tag)
            if kw is None and group & 1:  # PS3.5 §7.8.1: odd groups but 0001-0007 and FFFF
                kw = self.private if group > 0x0008 and group != 0xFFFF and tag & 0xFF00 else None
            elif kw is None and (group & 0xFF00) in (0x5000, 0x6000):
                kw = self.repeating_keyword(tag)
            if vr == b"SQ" or (vr is None and (length == UNDEFINED_LENGTH or tag in self.seq_tags)):
                pos = self.sequence(value, length, depth, kw, not depth and tag == self.scheduled)
                continue
            if length == UNDEFINED_LENGTH:
                if vr == b"UN":  # PS3.5 §6.2.2: a sequence, in implicit VR little endian
                    pos = self.unknown_sequence(value, depth, kw)
                else:  # encapsulated pixel data (PS3.5 §A.4): fragments, skipped
                    pos = self.fragments(value)
                continue
            pos = value + length
            if pos > size:
                raise _Truncated
            if (
                kw is not None
                and length
                and kw not in present
                and (length > _PADDING_CHECKED or data[value:pos].strip(b"\x00 "))
            ):
                present.add(kw)
            if not depth and tag in device and length <= _MAX_KEPT_VALUE:
                self.found[tag] = data[value:pos]
            elif step and tag in self.step_items:
                self.step[self.step_items[tag]] = data[value:pos]
        if pos != end:
            raise _Malformed  # the last element overran its item
        return pos

    def sequence(self, pos: int, length: int, depth: int, kw: str | None, step: bool) -> int:
        """The items of a sequence (PS3.5 §7.5.1): defined length, or through its Sequence
        Delimitation Item. `kw`: the sequence is identifying, present when it has an item.
        `step`: its first item is a Scheduled Procedure Step to read."""
        if depth >= MAX_DEPTH:
            raise _Malformed
        end = None if length == UNDEFINED_LENGTH else pos + length
        first = True
        while end is None or pos < end:
            tag, item_length, value = self.item_header(pos)
            if tag == SEQUENCE_DELIMITATION and end is None:
                return value
            if tag != ITEM:
                raise _Malformed
            if kw is not None:
                self.present.add(kw)
            item_end = None if item_length == UNDEFINED_LENGTH else value + item_length
            if item_end is not None and end is not None and item_end > end:
                raise _Malformed  # the item overruns its sequence
            pos = self.dataset(value, item_end, depth + 1, step and first)
            first = False
        if pos != end:
            raise _Malformed
        return pos

    def unknown_sequence(self, pos: int, depth: int, kw: str | None) -> int:
        implicit, self.implicit = self.implicit, True
        try:
            return self.sequence(pos, UNDEFINED_LENGTH, depth, kw, False)
        finally:
            self.implicit = implicit

    def fragments(self, pos: int) -> int:
        """Items of encapsulated pixel data, through the Sequence Delimitation Item."""
        while True:
            tag, length, value = self.item_header(pos)
            if tag == SEQUENCE_DELIMITATION:
                return value
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise _Malformed
            pos = value + length
            if pos > self.size:
                raise _Truncated


def summarize(
    data: bytes, transfer_syntax: str | None, worklist: bool = False, complete: bool = True
) -> DatasetSummary:
    """Device identity and identifying attributes of a data set (or of its first bytes).

    `worklist`: the data set is a C-FIND identifier, which may hold a Scheduled Procedure Step.
    `complete`: `data` is the whole data set, not a prefix of it.
    """
    summary = DatasetSummary(bytes_parsed=len(data))
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        limit = len(data) * 4 + 4096
        inflated = inflate_prefix(data, limit)
        if inflated is None:
            summary.decode_error = True  # not a deflate stream: nothing can be read
            return summary
        data, ended = inflated
        if complete and not ended and len(data) < limit:
            summary.decode_error = True  # the deflate stream stops short
        complete = complete and ended
    implicit, little = _encoding(transfer_syntax, data)
    walk = _Walk(data, implicit, little, worklist)
    truncated = False
    try:
        walk.dataset(0, len(data), 0)
    except _Truncated:
        truncated = True
        summary.decode_error = summary.decode_error or complete
    except _Malformed:  # the framing cannot be trusted: no value read is kept
        summary.decode_error = True
        walk.found.clear()
        walk.step.clear()
    device = {walk.device[t]: _text(v) for t, v in walk.found.items()}

    def one(keyword: str) -> str | None:
        values = device.get(keyword)
        return values[0] if values else None

    summary.sop_class_uid = one("SOPClassUID")
    summary.modality = one("Modality")
    summary.manufacturer = one("Manufacturer")
    summary.manufacturer_model_name = one("ManufacturerModelName")
    summary.device_serial_number = one("DeviceSerialNumber")
    summary.software_versions = device.get("SoftwareVersions", [])
    summary.station_name = one("StationName")
    summary.institutional_department_name = one("InstitutionalDepartmentName")
    scheduled = {k: _text(v) for k, v in walk.step.items()}
    summary.scheduled_modality = (scheduled.get("Modality") or [None])[0]
    summary.scheduled_station_ae_title = (scheduled.get("ScheduledStationAETitle") or [None])[0]
    summary.phi_attributes = sorted(walk.present)
    # a guess holds once an element after the first is read, or the bytes end where one ends
    # (a first value running past a prefix is no evidence: a big endian length read as little)
    held = walk.elements > 1 or (walk.elements == 1 and not truncated)
    if transfer_syntax is None and held and not summary.decode_error:
        summary.transfer_syntax_inferred, summary.encoding_inferred = _inferred(walk)
    return summary


def _inferred(walk: _Walk) -> tuple[str | None, str]:
    """(transfer syntax UID when the bytes leave only one, encoding) of a guessed data set."""
    if walk.implicit:
        return IMPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LE_ENCODING  # PS3.5 §A.1
    if walk.pixel_data_length is None:  # no Pixel Data in the bytes at hand
        return None, EXPLICIT_VR_LE_ENCODING
    if walk.pixel_data_length == UNDEFINED_LENGTH:  # PS3.5 §A.4: which compression is not said
        return None, ENCAPSULATED_ENCODING
    return EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LE_ENCODING  # PS3.5 §A.2: native pixel data
