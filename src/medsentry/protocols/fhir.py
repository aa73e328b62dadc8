"""FHIR RESTful API on top of HTTP (HL7 FHIR R4 §3.1.0 "RESTful API", R5 same section).

Turns a request line into a FHIR interaction: resource type, interaction, operation and a path
template in which every logical id and version id is replaced (`Patient/{id}/_history/{vid}`),
because ids can be medical record numbers, and so is every base segment that is not a generic
word (`/api/{id}/{id}/Patient`, protocols/template.py). Bodies are read only where the standard puts
identity in them: the CapabilityStatement of `/metadata` (fhirVersion, software) and the type of
a Bundle POSTed to the base (transaction or batch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from medsentry.protocols import template
from medsentry.protocols.streamkit import knowledge

_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def _validate(doc: dict[str, Any]) -> None:
    types = doc["resource_types"]
    for name in types:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"bad resource type {name!r}")
    unknown = set(doc["patient_compartment"]) - set(types)
    if unknown:
        raise ValueError(f"patient_compartment names unknown types {sorted(unknown)}")


_DOC = knowledge("fhir_resources.yaml", _validate)
RESOURCE_TYPES: frozenset[str] = frozenset(_DOC["resource_types"])
PATIENT_COMPARTMENT: frozenset[str] = frozenset(_DOC["patient_compartment"])

# FHIR R4 §3.1.0.1.2 mime types; §3.1.0.1.3 fhirVersion parameter (R4 §3.1.0.1.4 "Version")
FHIR_MIME_TYPES = (
    "application/fhir+json",
    "application/fhir+xml",
    "application/json+fhir",
    "application/xml+fhir",
    "application/fhir+turtle",
)
_FHIR_VERSION_PARAM = re.compile(r";\s*fhirVersion\s*=\s*\"?([0-9][0-9.]{0,15})", re.I)


@dataclass(slots=True)
class FhirRequest:
    interaction: str
    method: str
    path_template: str
    resource_type: str | None = None
    operation: str | None = None
    search_params: list[str] = field(default_factory=list)
    fhir_version: str | None = None
    mime_type: str | None = None
    wants_body: bool = False  # read the request body (a Bundle POSTed to the base)


def is_fhir_mime(value: str | None) -> bool:
    return bool(value) and any(m in value.lower() for m in FHIR_MIME_TYPES)  # type: ignore[union-attr]


def mime_fhir_version(*values: str | None) -> str | None:
    """The `fhirVersion` parameter of a FHIR mime type (R4 §3.1.0.1.4)."""
    for v in values:
        if v:
            m = _FHIR_VERSION_PARAM.search(v)
            if m:
                return m.group(1)
    return None


def _is_id(seg: str) -> bool:
    return bool(seg) and not seg.startswith(("_", "$"))


# STU3/R4 resource types as some servers accept them, lower case ("/fhir/patient/123"); taken
# only where the request is FHIR already (media type, FHIR port, a "fhir" base segment)
_BY_LOWER = {t.lower(): t for t in RESOURCE_TYPES}
# FHIR R4 §2.36 OperationDefinition.code: a token; the standard's and implementers' operation
# names start lower case ("$everything", "$validate-code", "$lastn")
_OPERATION = re.compile(r"^\$[a-z][A-Za-z0-9-]{0,63}$")
OPERATION = "${op}"  # an operation name that is not a plausible code


def _operation(seg: str) -> str:
    ok = _OPERATION.match(seg) and not template.looks_like_id(seg[1:])
    return seg if ok else OPERATION


def _resource_index(segs: list[str], fhir_context: bool) -> int | None:
    """Where the resource type is: the first segment naming one (R4 §3.1.0.1.1: [base]/[type]);
    in a FHIR context, a lower-case name counts too."""
    for i, s in enumerate(segs):
        if s in RESOURCE_TYPES:
            return i
    if fhir_context:
        for i, s in enumerate(segs):
            canonical = _BY_LOWER.get(s.lower())
            if canonical is not None:
                segs[i] = canonical
                return i
    return None


def classify(
    method: str,
    path: str,
    query: str,
    content_type: str | None,
    accept: str | None,
    assume_fhir: bool = False,
) -> FhirRequest | None:
    """Which FHIR interaction a request is (R4 §3.1.0.1.1 "Service Base URL" and the table of
    interactions in §3.1.0); None when the request is not FHIR. `path` is the request path as
    sent (percent-encoded, matrix parameters and all), `query` the query string: the request's
    template keeps resource types, the standard's fixed segments and generic words only."""
    segs = template.path_segments(path)
    fhir_mime = is_fhir_mime(content_type) or is_fhir_mime(accept)
    based = any(s.lower() == "fhir" for s in segs)
    idx = _resource_index(segs, fhir_mime or assume_fhir or based)
    last = segs[-1] if segs else ""
    system_level = last in ("_history", "_search") or last.startswith("$")
    if idx is None and not (fhir_mime or assume_fhir or system_level):
        return None
    version = mime_fhir_version(content_type, accept)
    mime = None
    for v in (content_type, accept):
        if is_fhir_mime(v):
            mime = v.split(";")[0].strip().lower()  # type: ignore[union-attr]
            break
    base = segs[:idx] if idx is not None else segs
    req = FhirRequest(
        interaction="",
        method=method,
        path_template="",
        fhir_version=version,
        mime_type=mime,
        search_params=template.query_names(query, fhir=True),
    )
    tmpl: list[str] = []
    if idx is None:
        # system-level interactions (R4 §3.1.0: capabilities, transaction/batch, history, search)
        if last == "metadata":
            req.interaction = "capabilities"
            base = segs[:-1]
            tmpl = ["metadata"]
        elif last == "_history":
            req.interaction = "history"
            base = segs[:-1]
            tmpl = ["_history"]
        elif last == "_search":
            req.interaction = "search"
            base = segs[:-1]
            tmpl = ["_search"]
        elif last.startswith("$"):
            req.interaction, req.operation = "operation", _operation(last)
            base = segs[:-1]
            tmpl = [req.operation]
        elif method == "POST":
            req.interaction = "transaction"  # or batch: refined from the Bundle's type
            req.wants_body = True
        elif method == "GET":
            req.interaction = "search"
        else:
            return None
    else:
        rtype = segs[idx]
        rest = segs[idx + 1 :]
        req.resource_type = rtype
        tmpl = [rtype]
        if not rest:
            req.interaction = {
                "GET": "search",
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
                "HEAD": "search",
            }.get(method, "unknown")
        elif rest[0] == "_search":
            req.interaction, tmpl = "search", [rtype, "_search"]
        elif rest[0] == "_history":
            req.interaction, tmpl = "history", [rtype, "_history"]
        elif rest[0].startswith("$"):
            req.interaction, req.operation = "operation", _operation(rest[0])
            tmpl = [rtype, req.operation]
        else:
            tmpl = [rtype, "{id}"]
            after = rest[1:]
            compartment = _BY_LOWER.get(after[0].lower()) if after else None
            if not after:
                req.interaction = {
                    "GET": "read",
                    "HEAD": "read",
                    "PUT": "update",
                    "PATCH": "patch",
                    "DELETE": "delete",
                }.get(method, "unknown")
            elif after[0] == "_history":
                if len(after) >= 2 and _is_id(after[1]):
                    req.interaction, tmpl = "vread", [rtype, "{id}", "_history", "{vid}"]
                else:
                    req.interaction, tmpl = "history", [rtype, "{id}", "_history"]
            elif after[0].startswith("$"):
                req.interaction, req.operation = "operation", _operation(after[0])
                tmpl = [rtype, "{id}", req.operation]
            elif compartment is not None:
                # compartment search (R4 §3.1.0.11.1): Patient/{id}/Observation
                req.interaction, req.resource_type = "search", compartment
                tmpl = [rtype, "{id}", compartment]
            else:
                req.interaction = "unknown"
    req.path_template = "/" + "/".join([*template.template_segments(base), *tmpl])
    return req


def patient_level(resource_type: str | None) -> bool:
    return resource_type in PATIENT_COMPARTMENT


# interactions that name no resource type yet return or carry resources of any type
# (R4 §3.1.0.8 system search, §3.1.0.12 system history, §3.1.0.13 transaction/batch)
_ANY_TYPE = frozenset({"search", "history", "transaction", "batch"})


def holds_patient_data(req: FhirRequest, body_types: set[str], fhir_typed: bool) -> bool:
    """Whether an interaction concerns the Patient compartment: by its resource type, by the
    resources seen in its body, or, when neither names a type and FHIR content was exchanged,
    because a system-level search, history or bundle may carry any of them."""
    if patient_level(req.resource_type) or any(patient_level(t) for t in body_types):
        return True
    unnamed = req.resource_type is None and not body_types
    return unnamed and fhir_typed and req.interaction in _ANY_TYPE


# -- bodies the standard puts identity in -------------------------------------------------------

_BUNDLE_TYPE = re.compile(
    rb'"type"\s*:\s*"(transaction|batch)"|<type\s+value\s*=\s*"(transaction|batch)"'
)
_RESOURCE_TYPE_JSON = re.compile(rb'"resourceType"\s*:\s*"([A-Z][A-Za-z]{1,63})"')
_RESOURCE_TYPE_XML = re.compile(rb"<([A-Z][A-Za-z]{1,63})\s+xmlns=\"http://hl7.org/fhir\"")
_CS_VERSION = re.compile(rb'"fhirVersion"\s*:\s*"([^"]{1,20})"|<fhirVersion\s+value="([^"]{1,20})"')
_CS_SOFTWARE_XML = re.compile(
    rb'<software>\s*<name\s+value="([^"]{1,128})"\s*/>\s*(?:<version\s+value="([^"]{1,64})")?'
)


def bundle_type(body: bytes) -> str | None:
    m = _BUNDLE_TYPE.search(body)
    if not m:
        return None
    return (m.group(1) or m.group(2)).decode()


def resource_types_in(body: bytes) -> set[str]:
    found = {m.group(1).decode() for m in _RESOURCE_TYPE_JSON.finditer(body)}
    found |= {m.group(1).decode() for m in _RESOURCE_TYPE_XML.finditer(body)}
    return found & RESOURCE_TYPES


@dataclass(slots=True)
class Capability:
    fhir_version: str | None = None
    software_name: str | None = None
    software_version: str | None = None


def capability_statement(body: bytes) -> Capability:
    """fhirVersion and software of a CapabilityStatement (R4 §2.38 CapabilityStatement)."""
    cap = Capability()
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # not UTF-8, too deep
        doc = None
    if isinstance(doc, dict) and doc.get("resourceType") == "CapabilityStatement":
        v = doc.get("fhirVersion")
        cap.fhir_version = v[:20] if isinstance(v, str) else None
        sw = doc.get("software")
        if isinstance(sw, dict):
            n, ver = sw.get("name"), sw.get("version")
            cap.software_name = n[:128] if isinstance(n, str) else None
            cap.software_version = ver[:64] if isinstance(ver, str) else None
        return cap
    m = _CS_VERSION.search(body)
    if m:
        cap.fhir_version = (m.group(1) or m.group(2)).decode("utf-8", "replace")
    m = _CS_SOFTWARE_XML.search(body)
    if m:
        cap.software_name = m.group(1).decode("utf-8", "replace")
        if m.group(2):
            cap.software_version = m.group(2).decode("utf-8", "replace")
    return cap
