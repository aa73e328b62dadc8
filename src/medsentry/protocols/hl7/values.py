"""What of an HL7 v2 field value may leave the dissector: coded values only as sent when they
are codes of their table (data/hl7_tables.yaml) or of the syntax they follow, else a template.

Coded fields are free text on the wire: an interface may put anything there, a patient's name
or record number included (seen: an MRN as MSH-3's universal id, a name as OBX-6 units). What
an analyst needs of them is which code it is, not the text of a value that is no code.
"""

from __future__ import annotations

import re

from medsentry.events.hl7 import NON_STANDARD, NON_STANDARD_UNIT
from medsentry.protocols.hl7.knowledge import hl7_tables

_MEMO_MAX = 2048
_unit_memo: dict[tuple[str, str, str], str] = {}

# UCUM §3: a simple unit may carry an exponent, e.g. m2, s-1, 10*-3
_EXPONENT = re.compile(r"^(.*?\D)([+-]?\d+)$")
_FACTOR = re.compile(r"^\d{1,12}$")
_UCUM_MAX = 64

# ISO/IEEE 11073-10101 partition 4 (MDC_PART_DIM): unit codes 4 * 65536 + term code
_MDC_DIM = range(4 << 16, 5 << 16)

# HL7 v2.5.1 §2.A.33 HD-2 universal ID, by its HD-3 type (Table 0301)
_OID = re.compile(r"^[0-2](\.(0|[1-9]\d{0,15})){1,40}$")  # ISO: an OID (ISO/IEC 8824)
_UUID = re.compile(r"^\{?[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}?$")
_DNS = re.compile(r"^(?=.{4,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
_EUI64 = re.compile(r"^[0-9A-Fa-f]{16}$")
_CLIA = re.compile(r"^\d{2}D\d{7}$")
_UNIVERSAL_ID = {"ISO": _OID, "UUID": _UUID, "GUID": _UUID, "DNS": _DNS, "EUI64": _EUI64}
_UNIVERSAL_ID["CLIA"] = _CLIA

# a maker's or product's namespace (EI-2, HD-1 of device identifiers): a name, not a number
_VENDOR_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z &.,'_/+-]{0,39}$")
# an observation code of a published vocabulary (LOINC 8867-4, MDC 150456, SNOMED CT ...)
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$")
_LOCAL_SYSTEMS = re.compile(r"^(L|99[A-Za-z0-9]{3})$")  # Table 0396: local codes

# MSH-9 (Table 0076 message type, 0003 event type, 0354 message structure), MSH-12 (Table 0104)
_MESSAGE_TYPE = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_STRUCTURE = re.compile(r"^[A-Z][A-Z0-9]{2}(_[A-Z0-9]{3})?$")
_VERSION = re.compile(r"^2(\.\d{1,2}){1,2}$|^2\.0D$")


def ack_code(value: str | None) -> str | None:
    """MSA-1 (§2.14.8.1): a Table 0008 code, else the template."""
    if not value:
        return None
    return value if value in hl7_tables().ack_codes else NON_STANDARD


def coding_system(value: str | None) -> str | None:
    """CE/CWE component 3 (e.g. OBX-3.3): a Table 0396 name or pattern, else the template."""
    if not value:
        return None
    return value if hl7_tables().coding_system(value) else NON_STANDARD


def observation_code(code: str, system: str | None) -> bool:
    """Whether OBX-3.1 may be reported as sent: a code of a published vocabulary (a coding
    system of Table 0396 that is not local) with a code's syntax. Others are hashed."""
    return (
        system is not None
        and system != NON_STANDARD
        and not _LOCAL_SYSTEMS.match(system)
        and _CODE.match(code) is not None
    )


def message_type(value: str | None) -> str | None:
    """MSH-9.1 or MSH-9.2: three letters or digits, else the template."""
    if not value:
        return None
    return value if _MESSAGE_TYPE.match(value) else NON_STANDARD


def message_structure(value: str | None) -> str | None:
    """MSH-9.3, e.g. ADT_A01."""
    if not value:
        return None
    return value if _STRUCTURE.match(value) else NON_STANDARD


def processing_id(value: str | None) -> str | None:
    """MSH-11.1 (Table 0103: D, P, T)."""
    if not value:
        return None
    return value if value in hl7_tables().processing_ids else NON_STANDARD


def version(value: str | None) -> str | None:
    """MSH-12.1 (Table 0104: 2.1 ... 2.8.2)."""
    if not value:
        return None
    return value if _VERSION.match(value) else NON_STANDARD


def character_set(value: str | None) -> str | None:
    """MSH-18.1 (Table 0211)."""
    if not value:
        return None
    return value if value in hl7_tables().character_sets else NON_STANDARD


def universal_id(uid: str, uid_type: str) -> str | None:
    """HD-2 / EI-3 checked against its type (HD-3 / EI-4, Table 0301); without a type, an OID.
    A value that is not of its type's syntax is the template (types of free syntax too: L, M,
    N, HCD, HL7, URI, x400, x500, Random)."""
    if not uid:
        return None
    syntax = _UNIVERSAL_ID.get(uid_type) if uid_type else _OID
    return uid if syntax is not None and syntax.match(uid) else NON_STANDARD


def universal_id_type(value: str) -> str | None:
    if not value:
        return None
    return value if value in hl7_tables().universal_id_types else NON_STANDARD


def vendor_namespace(value: str | None) -> str | None:
    """EI-2 namespace of a device identifier: kept when it reads as a maker's or product's
    name (letters), else the template (a number there may be anything, e.g. an MRN)."""
    if not value:
        return None
    return value if _VENDOR_NAMESPACE.match(value) else NON_STANDARD


def hd(parts: list[str]) -> str | None:
    """An HD field (§2.A.33: namespace ID ^ universal ID ^ universal ID type) as reported:
    the namespace ID (an application or facility name) as sent, the universal ID only when
    it has its type's syntax, the type only from Table 0301."""
    parts = [*parts[:3], "", "", ""][:3]
    out = [parts[0], universal_id(parts[1], parts[2]) or "", universal_id_type(parts[2]) or ""]
    while out and not out[-1]:
        out.pop()
    return "^".join(out) if out else None


def unit(identifier: str, text: str, system: str) -> str | None:
    """OBX-6 (CE: identifier ^ text ^ coding system) as reported: the identifier, or else the
    text, that is a unit code (UCUM, an MDC dimension, or a unit of the vital-sign limits);
    otherwise the template. None when OBX-6 is empty."""
    if not (identifier or text):
        return None
    key = (identifier, text, system)
    hit = _unit_memo.get(key)
    if hit is None:
        hit = NON_STANDARD_UNIT
        for value in (identifier, text):
            if value and _is_unit(value, system, text):
                hit = value
                break
        if len(_unit_memo) < _MEMO_MAX:
            _unit_memo[key] = hit
    return hit


def _is_unit(value: str, system: str, text: str) -> bool:
    if value in hl7_tables().known_units:
        return True
    # an MDC unit code, named as one (ASCII digits only: int() refuses a digit such as "²")
    if value.isascii() and value.isdigit() and int(value) in _MDC_DIM:
        return system == "MDC" or text.startswith("MDC_DIM_")
    return is_ucum(value)


def is_ucum(code: str) -> bool:
    """A UCUM code (UCUM §2-§4 syntax: terms of prefixed atoms with exponents, factors, '.',
    '/' and parentheses). Annotations ({...}) are free text: a code with one is not kept."""
    if not code or len(code) > _UCUM_MAX or not code.isascii() or "{" in code or " " in code:
        return False
    if code.isdigit():  # a bare number is a UCUM term, but as a unit only "1" (unity) is one
        return code == "1"
    term = code[1:] if code.startswith("/") else code  # §2 main-term: "/" term
    end = _term(term, 0)
    return end == len(term)


def _term(s: str, i: int) -> int:
    """Parse `component (('.' | '/') component)*` from s[i:]; the end, or -1."""
    i = _component(s, i)
    while 0 <= i < len(s) and s[i] in "./":
        i = _component(s, i + 1)
    return i


def _component(s: str, i: int) -> int:
    if i >= len(s):
        return -1
    if s[i] == "(":
        j = _term(s, i + 1)
        return j + 1 if 0 <= j < len(s) and s[j] == ")" else -1
    j = i
    while j < len(s) and s[j] not in "./()":
        if s[j] == "[":  # bracketed atoms ([in_i], m[Hg], [in_i'H2O]) may hold any of them
            close = s.find("]", j)
            if close < 0:
                return -1
            j = close
        j += 1
    chunk = s[i:j]
    if _FACTOR.match(chunk) or _simple_unit(chunk):
        return j
    m = _EXPONENT.match(chunk)
    return j if m is not None and _simple_unit(m.group(1)) else -1


def _simple_unit(s: str) -> bool:
    """An atom, or a prefix and a metric atom (UCUM §3)."""
    t = hl7_tables()
    if s in t.ucum_atoms or s in t.ucum_metric_atoms:
        return True
    return any(s.startswith(p) and s[len(p) :] in t.ucum_metric_atoms for p in t.ucum_prefixes)
