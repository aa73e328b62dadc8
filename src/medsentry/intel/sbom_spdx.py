"""SPDX 2.3 SBOMs (JSON), parsed and validated with spdx-tools.

spdx-tools' parser reports every structural error at once (`SPDXParsingError`), and
`validate_full_spdx_document` checks the 2.3 rules (SPDX ids, relationships, license
expressions, external reference formats); the first message is reported with the SPDX id of
the element it concerns. Packages become components:

- purl: externalRefs of category PACKAGE-MANAGER (PACKAGE_MANAGER), type purl (SPDX 2.3 §F.3.5);
- CPE: category SECURITY, types cpe23Type / cpe22Type (§F.3.1/§F.3.2);
- supplier: §7.5 PackageSupplier (an Organization or Person);
- end-of-support: §7.29 validUntilDate; level of support: an annotation or the package comment
  written "Level of Support: <value>" (SPDX 2.3 has no field for it).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from spdx_tools.spdx.model import Actor, Document, Package
from spdx_tools.spdx.parser.error import SPDXParsingError
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from medsentry.errors import InputError
from medsentry.intel.sbom_cyclonedx import decode_json
from medsentry.intel.sbom_model import Component, DeviceModel, Sbom
from medsentry.intel.sbom_support import read_support

SUPPORTED = ("SPDX-2.3", "SPDX-2.2")
# SPDX 2.3 §6 / §7: fields the JSON schema requires, and the date format of §6.9, §7.26-7.29.
_DOC_REQUIRED = ("SPDXID", "name", "dataLicense", "documentNamespace", "creationInfo")
_PACKAGE_REQUIRED = ("SPDXID", "name", "downloadLocation")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_PACKAGE_DATES = ("releaseDate", "builtDate", "validUntilDate")


def _precheck(doc: dict[str, Any], version: str, source: str) -> None:
    """The required fields and date formats, named by JSON path (spdx-tools' own messages name
    the Python class, not the field)."""

    def fail(path: str, msg: str) -> InputError:
        return InputError(f"SPDX {version} field {path}: {msg}", source=source)

    for key in _DOC_REQUIRED:
        if key not in doc:
            raise fail(f"$.{key}", "missing")
    ci = doc["creationInfo"]
    if not isinstance(ci, dict):
        raise fail("$.creationInfo", "must be an object")
    if not isinstance(ci.get("creators"), list) or not ci["creators"]:
        raise fail("$.creationInfo.creators", "missing or empty")
    if not isinstance(ci.get("created"), str) or not _DATE.match(ci["created"]):
        raise fail("$.creationInfo.created", "missing or not YYYY-MM-DDThh:mm:ssZ")
    packages = doc.get("packages", [])
    if not isinstance(packages, list):
        raise fail("$.packages", "must be an array")
    for i, pkg in enumerate(packages):
        path = f"$.packages[{i}]"
        if not isinstance(pkg, dict):
            raise fail(path, "must be an object")
        for key in _PACKAGE_REQUIRED:
            if not isinstance(pkg.get(key), str) or not pkg[key].strip():
                raise fail(f"{path}.{key}", "missing")
        for key in _PACKAGE_DATES:
            if key in pkg and not (isinstance(pkg[key], str) and _DATE.match(pkg[key])):
                raise fail(f"{path}.{key}", f"{pkg[key]!r} is not YYYY-MM-DDThh:mm:ssZ")


_KV = re.compile(r"^\s*([A-Za-z][A-Za-z _:-]{2,40}?)\s*[:=]\s*(.+?)\s*$", re.M)


def is_spdx_json(doc: Any) -> bool:
    return isinstance(doc, dict) and "spdxVersion" in doc


def read_spdx_json(data: bytes, source: str, doc: Any | None = None) -> Document:
    if doc is None:
        doc = decode_json(data, source)
    if not isinstance(doc, dict):
        raise InputError("SPDX document must be a JSON object", source=source)
    version = doc.get("spdxVersion")
    if version not in SUPPORTED:
        raise InputError(
            f"SPDX field spdxVersion: {version!r} is not one of {', '.join(SUPPORTED)}",
            source=source,
        )
    _precheck(doc, version, source)
    try:
        document = JsonLikeDictParser().parse(doc)
    except SPDXParsingError as exc:
        msgs = exc.get_messages()
        first = str(msgs[0]) if msgs else "unreadable"
        first = first.replace("\n", " ")[:300]
        more = f" (and {len(msgs) - 1} more)" if len(msgs) > 1 else ""
        raise InputError(f"SPDX {version}: {first}{more}", source=source) from None
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise InputError(f"SPDX {version}: malformed document ({exc})", source=source) from None
    problems = validate_full_spdx_document(document, version)
    if problems:
        p = problems[0]
        ctx = p.context
        where = ctx.spdx_id or ctx.parent_id or (ctx.element_type.name if ctx.element_type else "")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"SPDX {version} element {where or 'document'}: {p.validation_message[:300]}{more}",
            source=source,
        )
    return document


def _actor(a: Any) -> str:
    return a.name if isinstance(a, Actor) else ""


def _package(p: Package, annotations: dict[str, list[str]]) -> Component:
    purl = cpe = ""
    for ref in p.external_references:
        t = (ref.reference_type or "").lower()
        if t == "purl" and not purl:
            purl = ref.locator
        elif t in ("cpe23type", "cpe22type") and (not cpe or t == "cpe23type"):
            cpe = ref.locator
    props: list[tuple[str, str]] = []
    for text in (*annotations.get(p.spdx_id, ()), p.comment or ""):
        props += [(m.group(1), m.group(2)) for m in _KV.finditer(text)]
    if p.valid_until_date is not None:  # §7.29
        props.insert(0, ("validUntilDate", p.valid_until_date.date().isoformat()))
    support = read_support(props)
    lic = p.license_declared if p.license_declared is not None else p.license_concluded
    return Component(
        name=p.name,
        version=p.version or "",
        bom_ref=p.spdx_id,
        type=p.primary_package_purpose.name.lower() if p.primary_package_purpose else "",
        supplier=_actor(p.supplier) or _actor(p.originator),
        purl=purl,
        cpe=cpe,
        hashes={c.algorithm.name: c.value for c in p.checksums},
        licenses=(str(lic),) if lic is not None and str(lic) not in ("NOASSERTION", "NONE") else (),
        **support,
    )


def sbom_from_spdx(document: Document, data: bytes, source: str, device: DeviceModel) -> Sbom:
    ci = document.creation_info
    annotations: dict[str, list[str]] = {}
    for a in document.annotations:
        annotations.setdefault(a.spdx_id, []).append(a.annotation_comment)
    # The document's described package (DESCRIBES) is the device itself, not a component.
    described = {
        r.related_spdx_element_id
        for r in document.relationships
        if r.spdx_element_id == ci.spdx_id and r.relationship_type.name == "DESCRIBES"
    }
    comps = tuple(_package(p, annotations) for p in document.packages)
    name = next((p.name for p in document.packages if p.spdx_id in described), ci.name)
    comps = tuple(c for c in comps if c.bom_ref not in described) or comps
    return Sbom(
        sbom_id=hashlib.sha256(data).hexdigest(),
        format="spdx",
        spec_version=ci.spdx_version,
        encoding="json",
        source=source,
        device=device,
        components=comps,
        serial_number=ci.document_namespace,
        name=name,
        created=ci.created.isoformat(),
        authors=tuple(a.name for a in ci.creators if a.actor_type.name != "TOOL"),
        tools=tuple(a.name for a in ci.creators if a.actor_type.name == "TOOL"),
        warnings=() if comps else ("the SBOM lists no packages",),
    )
