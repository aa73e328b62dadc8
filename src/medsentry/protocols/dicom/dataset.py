"""Data sets in clear (PS3.5 §7): device identity values and patient-attribute presence flags.

Only a bounded prefix of each data set is decoded, with pydicom's element reader, in the
presentation context's transfer syntax (PS3.5 §10, Annex A). Patient attribute values are never
converted or returned: only the keywords of the non-empty ones. In a Modality Worklist
identifier the reader also descends into the first Scheduled Procedure Step item (PS3.4 K.6.1.2)
for its Modality and Scheduled Station AE Title, and for nothing else in it.
"""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass, field

from medsentry.protocols.dicom.knowledge import dataset_attributes

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"  # PS3.5 §A.1
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"  # PS3.5 §A.2
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"  # PS3.5 §A.5
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"  # PS3.5 §A.3 (retired)

PIXEL_DATA = 0x7FE00010
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


def _encoding(transfer_syntax: str | None, data: bytes) -> tuple[bool, bool]:
    """(is_implicit_VR, is_little_endian) for a transfer syntax; guess when it is unknown."""
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False
    if transfer_syntax is None:  # PS3.5 §7.1.2: explicit VR has two letters after the tag
        return not (len(data) >= 6 and data[4:6].isalpha() and data[4:6].isupper()), True
    return False, True  # explicit VR LE and every encapsulated (compressed) syntax


def inflate_prefix(data: bytes, limit: int) -> bytes:
    """The first `limit` bytes of a deflated data set (RFC 1951, no zlib header: PS3.5 §A.5)."""
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, limit)
    except zlib.error:
        return b""


def _text(value: bytes) -> list[str]:
    try:
        s = value.decode("utf-8")
    except UnicodeDecodeError:
        s = value.decode("latin-1")
    parts = [p.strip("\x00 ") for p in s.split("\\")]
    return [p[:_MAX_VALUE_CHARS] for p in parts if p][:_MAX_VALUES]


def _first_item(elem: object, implicit: bool, little: bool, wanted: dict[int, str]) -> dict:
    """The wanted raw values of a sequence element's first item (PS3.5 §7.5), by keyword."""
    from pydicom.dataelem import RawDataElement
    from pydicom.filereader import read_sequence

    value = getattr(elem, "value", None)
    if isinstance(value, bytes):  # a defined-length sequence comes raw (PS3.5 §7.5.1)
        value = read_sequence(io.BytesIO(value), implicit, little, len(value), "iso8859")
    if not value:
        return {}
    item = value[0]
    out: dict[str, bytes] = {}
    for tag, keyword in wanted.items():
        raw = item.get_item(tag)
        if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
            out[keyword] = raw.value
    return out


def summarize(data: bytes, transfer_syntax: str | None, worklist: bool = False) -> DatasetSummary:
    """Read the device-identity and patient-attribute elements at the top level of `data`.

    `worklist`: the data set is a C-FIND identifier, which may hold a Scheduled Procedure Step.
    """
    # pydicom is imported at the first data set (~0.25 s): scans without DICOM never pay it
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.filereader import data_element_generator
    from pydicom.tag import Tag

    attrs = dataset_attributes()
    wanted = attrs.device_identity.keys() | attrs.patient_attributes.keys()
    if worklist:
        wanted = wanted | {attrs.scheduled_sequence}
    last_wanted = max(wanted)
    summary = DatasetSummary(bytes_parsed=len(data))
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        data = inflate_prefix(data, len(data) * 4 + 4096)
    implicit, little = _encoding(transfer_syntax, data)
    found: dict[int, bytes] = {}
    present: set[int] = set()
    step: dict[str, bytes] = {}

    def stop(tag: object, vr: object, length: object) -> bool:
        return int(tag) >= PIXEL_DATA or int(tag) > last_wanted  # type: ignore[call-overload]

    reader = data_element_generator(
        io.BytesIO(data),
        implicit,
        little,
        stop_when=stop,
        specific_tags=[Tag(t) for t in wanted],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for elem in reader:
                tag = int(elem.tag)
                if tag == attrs.scheduled_sequence:
                    step = _first_item(elem, implicit, little, attrs.scheduled_items)
                elif isinstance(elem, RawDataElement):
                    value = elem.value
                    if tag in attrs.patient_attributes:
                        if value:
                            present.add(tag)
                    elif tag in attrs.device_identity and isinstance(value, bytes):
                        found[tag] = value
                elif (
                    isinstance(elem, DataElement)
                    and tag in attrs.patient_attributes
                    and elem.value is not None
                    and len(elem.value) > 0
                ):
                    present.add(tag)
        # pydicom on hostile or truncated bytes can raise almost anything: keep what was read
        except Exception:
            summary.decode_error = True
    device = {attrs.device_identity[t]: _text(v) for t, v in found.items()}

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
    scheduled = {k: _text(v) for k, v in step.items()}
    summary.scheduled_modality = (scheduled.get("Modality") or [None])[0]
    summary.scheduled_station_ae_title = (scheduled.get("ScheduledStationAETitle") or [None])[0]
    summary.phi_attributes = sorted(attrs.patient_attributes[t] for t in present)
    return summary
