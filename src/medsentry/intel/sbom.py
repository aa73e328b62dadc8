"""Reading an SBOM file of any supported format: CycloneDX JSON/XML (1.2..1.6), SPDX 2.3 JSON.

    sbom = read_sbom(Path("infusion-pump-12.1.sbom.json"), DeviceModel("BD", "Alaris 8015", "12.1"))

The format is recognized from the content (a JSON object with bomFormat "CycloneDX" or with
spdxVersion; an XML <bom> in a CycloneDX namespace), not from the file name. Any defect is an
`InputError` naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

from medsentry.errors import InputError
from medsentry.intel.sbom_cyclonedx import (
    decode_json,
    is_cyclonedx_json,
    read_cyclonedx_json,
    read_cyclonedx_xml,
    sbom_from_cyclonedx,
)
from medsentry.intel.sbom_model import DeviceModel, Sbom
from medsentry.intel.sbom_spdx import is_spdx_json, read_spdx_json, sbom_from_spdx

MAX_SBOM_BYTES = 256 * 1024 * 1024


def parse_sbom(data: bytes, source: str, device: DeviceModel) -> Sbom:
    try:
        return _parse_sbom(data, source, device)
    except RecursionError:  # schema validation and the component walk recurse per level
        raise InputError("SBOM nested too deep to read", source=source) from None


def _parse_sbom(data: bytes, source: str, device: DeviceModel) -> Sbom:
    for field in ("manufacturer", "model", "version"):
        if not getattr(device, field).strip():
            raise InputError(f"the device {field} must not be empty", source=source)
    head = data.lstrip()[:1]
    if head == b"<":
        doc = read_cyclonedx_xml(data, source)
        return sbom_from_cyclonedx(doc, data, source, device, "xml")
    if head != b"{":
        raise InputError("not an SBOM: expected a JSON object or an XML document", source=source)
    raw = decode_json(data, source)
    if is_cyclonedx_json(raw):
        doc = read_cyclonedx_json(data, source, raw)
        return sbom_from_cyclonedx(doc, data, source, device, "json")
    if is_spdx_json(raw):
        document = read_spdx_json(data, source, raw)
        return sbom_from_spdx(document, data, source, device)
    raise InputError(
        "not an SBOM: field $.bomFormat (CycloneDX) or $.spdxVersion (SPDX) is missing",
        source=source,
    )


def read_sbom(path: Path, device: DeviceModel) -> Sbom:
    try:
        size = path.stat().st_size
        if size > MAX_SBOM_BYTES:
            raise InputError(f"{size} bytes is more than an SBOM can be here", source=str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    return parse_sbom(data, str(path), device)
