"""CycloneDX SBOMs (specification 1.2 to 1.6; JSON and XML).

The document is validated against the CycloneDX schema of its own `specVersion` (JSON) or
namespace (XML), as bundled with cyclonedx-python-lib; a violation is an `InputError` naming the
document and the field (`$.components[3].type` / the XML element path and line). Components are
then read from the validated document, nested components included (CycloneDX §components), with:

- identity: name, version, group, purl, cpe, bom-ref, hashes, licenses;
- supplier (NTIA minimum element): `supplier.name`, else `publisher`, else `author`
  (CycloneDX 1.6 `authors[].name`);
- FDA support information: component `properties` and `releaseNotes.properties`
  (see `sbom_support`); the release notes' `timestamp` is kept as a last-release date only.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from typing import Any

import msgspec
from cyclonedx.schema import SchemaVersion
from cyclonedx.schema._res import BOM_JSON, CRYPTOGRAPHY_DEFS, JSF, SPDX_JSON
from cyclonedx.validation.xml import XmlValidator
from jsonschema import Draft7Validator, FormatChecker
from lxml import etree
from referencing import Registry
from referencing.jsonschema import DRAFT7

from medsentry.errors import InputError, utf8_error_offset
from medsentry.intel.sbom_model import Component, DeviceModel, Sbom
from medsentry.intel.sbom_support import read_support

# CycloneDX versions medsentry reads (the issue asks 1.2..1.6; 1.7 is read as well when the
# installed cyclonedx-python-lib bundles its schema).
SUPPORTED = ("1.2", "1.3", "1.4", "1.5", "1.6", "1.7")
_XML_NS = re.compile(r"^\{http://cyclonedx\.org/schema/bom/(\d+\.\d+)\}bom$")


_IRI = re.compile(r"^[^\s<>\"{}|\\^`\x00-\x1f]*$")  # RFC 3987 excludes these characters


def _format_checker() -> FormatChecker:
    """Draft 7 format checks, with IRIs checked by the characters RFC 3987 §2.2 excludes.

    jsonschema's full RFC 3987 grammar (rfc3987-syntax, a lark parser) costs ~60 ms per URL:
    seven seconds for a 62-component SBOM. The character check catches what breaks a consumer.
    """
    checker = FormatChecker()
    checker.checkers = dict(Draft7Validator.FORMAT_CHECKER.checkers)
    for fmt in ("iri", "iri-reference"):
        checker.checkers[fmt] = (lambda v: not isinstance(v, str) or bool(_IRI.match(v)), ())
    return checker


@cache
def json_validator(spec: str) -> Draft7Validator:
    """The CycloneDX JSON schema of version `spec` bundled with cyclonedx-python-lib."""
    prefix = "http://cyclonedx.org/schema/"

    def load(path: str) -> Any:
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    registry: Registry = Registry().with_resources(
        [
            (f"{prefix}spdx.SNAPSHOT.schema.json", DRAFT7.create_resource(load(SPDX_JSON))),
            (
                f"{prefix}cryptography-defs.SNAPSHOT.schema.json",
                DRAFT7.create_resource(load(CRYPTOGRAPHY_DEFS)),
            ),
            (f"{prefix}jsf-0.82.SNAPSHOT.schema.json", DRAFT7.create_resource(load(JSF))),
        ]
    )
    schema = load(BOM_JSON[SchemaVersion.from_version(spec)])
    return Draft7Validator(schema, registry=registry, format_checker=_format_checker())


def _json_path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _schema_version(v: str, source: str, where: str) -> SchemaVersion:
    if v not in SUPPORTED:
        raise InputError(
            f"CycloneDX field {where}: specVersion {v!r} is not one of {', '.join(SUPPORTED)}",
            source=source,
        )
    try:
        return SchemaVersion.from_version(v)
    except ValueError as exc:
        raise InputError(f"CycloneDX field {where}: unknown specVersion {v!r}", source) from exc


def is_cyclonedx_json(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX"


def read_cyclonedx_json(data: bytes, source: str, doc: Any | None = None) -> dict[str, Any]:
    """The validated CycloneDX JSON document as a dict."""
    if doc is None:
        doc = decode_json(data, source)
    if not isinstance(doc, dict):
        raise InputError("CycloneDX document must be a JSON object", source=source)
    if doc.get("bomFormat") != "CycloneDX":
        raise InputError(
            f"CycloneDX field $.bomFormat: must be 'CycloneDX', not {doc.get('bomFormat')!r}",
            source=source,
        )
    spec = doc.get("specVersion")
    if not isinstance(spec, str):
        raise InputError("CycloneDX field $.specVersion: missing or not a string", source=source)
    _schema_version(spec, source, "$.specVersion")
    ve = next(json_validator(spec).iter_errors(doc), None)
    if ve is not None:
        path = _json_path(ve.absolute_path)
        msg = ve.message.splitlines()[0][:300]
        raise InputError(f"CycloneDX {spec} field {path}: {msg}", source=source)
    return doc


def decode_json(data: bytes, source: str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        m = re.search(r"at byte (\d+)", str(exc))
        raise InputError(
            f"not valid JSON ({str(exc).split(' - ')[0]})",
            source=source,
            offset=int(m.group(1)) if m else None,
        ) from None
    except UnicodeDecodeError:  # msgspec decodes each string as UTF-8 (RFC 8259 §8.1)
        raise InputError(
            "not valid JSON (text that is not UTF-8)", source=source, offset=utf8_error_offset(data)
        ) from None
    except RecursionError:  # RFC 8259 §9: a parser may limit the depth of nesting
        raise InputError("JSON nested too deep to read", source=source) from None


def read_cyclonedx_xml(data: bytes, source: str) -> dict[str, Any]:
    """The validated CycloneDX XML document, converted to the JSON shape this module reads."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"not well-formed XML: {exc.msg} (line {exc.lineno})", source) from None
    m = _XML_NS.match(root.tag)
    if not m:
        raise InputError(
            f"CycloneDX XML root element {root.tag!r} is not a CycloneDX <bom>", source=source
        )
    spec = m.group(1)
    sv = _schema_version(spec, source, "/bom/@xmlns")
    err = XmlValidator(sv).validate_str(data.decode("utf-8"))
    if err is not None:
        entry = err.data
        line = getattr(entry, "line", None)
        path = getattr(entry, "path", "") or ""
        msg = getattr(entry, "message", "") or str(err)
        raise InputError(
            f"CycloneDX {spec} XML element {path} (line {line}): {msg.strip()[:300]}",
            source=source,
        )
    return _xml_to_doc(root, spec)


# -- XML -> the JSON document shape ------------------------------------------------------------


def _local(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _child(el: Any, name: str) -> Any | None:
    for c in el:
        if _local(c) == name:
            return c
    return None


def _children(el: Any, name: str) -> list[Any]:
    return [c for c in el if _local(c) == name]


def _text(el: Any, name: str) -> str:
    c = _child(el, name)
    return (c.text or "").strip() if c is not None else ""


def _xml_props(el: Any) -> list[dict[str, str]]:
    props = _child(el, "properties")
    if props is None:
        return []
    return [{"name": p.get("name", ""), "value": (p.text or "").strip()} for p in props]


def _xml_component(el: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": el.get("type", ""), "name": _text(el, "name")}
    for key in ("version", "group", "publisher", "author", "purl", "cpe"):
        v = _text(el, key)
        if v:
            comp[key] = v
    if el.get("bom-ref"):
        comp["bom-ref"] = el.get("bom-ref")
    sup = _child(el, "supplier")
    if sup is not None:
        comp["supplier"] = {"name": _text(sup, "name")}
    hashes = _child(el, "hashes")
    if hashes is not None:
        comp["hashes"] = [
            {"alg": h.get("alg", ""), "content": (h.text or "").strip()} for h in hashes
        ]
    lic = _child(el, "licenses")
    if lic is not None:
        out = []
        for item in lic:
            if _local(item) == "expression":
                out.append({"expression": (item.text or "").strip()})
            elif _local(item) == "license":
                out.append({"license": {"id": _text(item, "id"), "name": _text(item, "name")}})
        comp["licenses"] = out
    comp["properties"] = _xml_props(el)
    rn = _child(el, "releaseNotes")
    if rn is not None:
        comp["releaseNotes"] = {"timestamp": _text(rn, "timestamp"), "properties": _xml_props(rn)}
    sub = _child(el, "components")
    if sub is not None:
        comp["components"] = [_xml_component(c) for c in _children(sub, "component")]
    return comp


def _xml_to_doc(root: Any, spec: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"bomFormat": "CycloneDX", "specVersion": spec}
    if root.get("serialNumber"):
        doc["serialNumber"] = root.get("serialNumber")
    if root.get("version"):
        doc["version"] = int(root.get("version"))
    md = _child(root, "metadata")
    if md is not None:
        meta: dict[str, Any] = {"timestamp": _text(md, "timestamp")}
        mc = _child(md, "component")
        if mc is not None:
            meta["component"] = _xml_component(mc)
        authors = _child(md, "authors")
        if authors is not None:
            meta["authors"] = [{"name": _text(a, "name")} for a in authors]
        tools = _child(md, "tools")
        if tools is not None:
            names = [_text(t, "name") for t in _children(tools, "tool")]
            tc = _child(tools, "components")
            if tc is not None:
                names += [_text(t, "name") for t in tc]
            meta["tools"] = [{"name": n} for n in names if n]
        lcs = _child(md, "lifecycles")
        if lcs is not None:
            meta["lifecycles"] = [
                {"phase": _text(lc, "phase"), "name": _text(lc, "name")} for lc in lcs
            ]
        manu = _child(md, "manufacturer")
    if manu is None:
        manu = _child(md, "manufacture")
        if manu is not None:
            meta["manufacturer"] = {"name": _text(manu, "name")}
        doc["metadata"] = meta
    comps = _child(root, "components")
    doc["components"] = (
        [_xml_component(c) for c in _children(comps, "component")] if comps is not None else []
    )
    return doc


# -- the document -> Sbom --------------------------------------------------------------------


def _supplier(c: dict[str, Any]) -> str:
    sup = c.get("supplier")
    if isinstance(sup, dict) and sup.get("name"):
        return str(sup["name"])
    if c.get("publisher"):
        return str(c["publisher"])
    if c.get("author"):
        return str(c["author"])
    authors = c.get("authors")  # CycloneDX 1.6
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        return str(authors[0].get("name", ""))
    return ""


def _licenses(c: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for item in c.get("licenses") or ():
        if not isinstance(item, dict):
            continue
        if item.get("expression"):
            out.append(str(item["expression"]))
        lic = item.get("license")
        if isinstance(lic, dict):
            v = lic.get("id") or lic.get("name")
            if v:
                out.append(str(v))
    return tuple(out)


def _props(obj: Any) -> list[tuple[str, str]]:
    if not isinstance(obj, dict):
        return []
    return [
        (str(p.get("name", "")), str(p.get("value", "")))
        for p in obj.get("properties") or ()
        if isinstance(p, dict)
    ]


def _component(c: dict[str, Any], parent: str) -> Component:
    props = _props(c) + _props(c.get("releaseNotes"))
    hashes = {
        str(h.get("alg", "")): str(h.get("content", ""))
        for h in c.get("hashes") or ()
        if isinstance(h, dict)
    }
    return Component(
        name=str(c.get("name", "")),
        version=str(c.get("version", "") or ""),
        bom_ref=str(c.get("bom-ref", "") or ""),
        type=str(c.get("type", "") or ""),
        supplier=_supplier(c),
        group=str(c.get("group", "") or ""),
        purl=str(c.get("purl", "") or ""),
        cpe=str(c.get("cpe", "") or ""),
        hashes=hashes,
        licenses=_licenses(c),
        parent=parent,
        **read_support(props),
    )


def _walk(comps: Any, parent: str, out: list[Component]) -> None:
    for c in comps or ():
        if not isinstance(c, dict):
            continue
        comp = _component(c, parent)
        out.append(comp)
        _walk(c.get("components"), comp.bom_ref or comp.name, out)


def sbom_from_cyclonedx(
    doc: dict[str, Any], data: bytes, source: str, device: DeviceModel, encoding: str
) -> Sbom:
    meta = doc.get("metadata") or {}
    comps: list[Component] = []
    _walk(doc.get("components"), "", comps)
    mc = meta.get("component") if isinstance(meta.get("component"), dict) else {}
    tools_raw = meta.get("tools")
    tools: list[str] = []
    if isinstance(tools_raw, list):  # 1.2..1.4 (and deprecated form in 1.5+)
        tools = [str(t.get("name", "")) for t in tools_raw if isinstance(t, dict)]
    elif isinstance(tools_raw, dict):  # 1.5+: tools.components / tools.services
        for key in ("components", "services"):
            tools += [
                str(t.get("name", "")) for t in tools_raw.get(key) or () if isinstance(t, dict)
            ]
    authors = [str(a.get("name", "")) for a in meta.get("authors") or () if isinstance(a, dict)]
    lifecycles = [
        str(lc.get("phase") or lc.get("name") or "")
        for lc in meta.get("lifecycles") or ()
        if isinstance(lc, dict)
    ]
    warnings = []
    if not comps:
        warnings.append("the SBOM lists no components")
    return Sbom(
        sbom_id=hashlib.sha256(data).hexdigest(),
        format="cyclonedx",
        spec_version=str(doc.get("specVersion")),
        encoding=encoding,
        source=source,
        device=device,
        components=tuple(comps),
        serial_number=str(doc.get("serialNumber", "") or ""),
        document_version=doc.get("version") if isinstance(doc.get("version"), int) else None,
        name=str(mc.get("name", "") or ""),
        created=str(meta.get("timestamp", "") or ""),
        authors=tuple(a for a in authors if a),
        tools=tuple(t for t in tools if t),
        lifecycles=tuple(x for x in lifecycles if x),
        warnings=tuple(warnings),
    )
