"""Templates of the identifiers that ride in request paths, query names, User-Agent comments,
MQTT topics and client ids: a record number, a patient's name or a device serial becomes a
placeholder inside the dissector, the structure around it stays ("/emr/patients/{id}/chart",
"ward3/patient/{id}/spo2", "App/1.0 (patient {id})").

Paths keep only what is clearly not an identifier: generic words (data/path_words.yaml), the
first segment, short version tokens and file extensions. Topics and client ids keep every level
that does not look like an identifier (digits, long mixed tokens, UUIDs), and nothing below a
person-ish level ("patient", "mrn", ...) but generic words and wildcards. Called once per
request head, per first sight of a topic, per CONNECT: never per packet.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus

from medsentry.protocols.streamkit import knowledge, text

ID = "{id}"
PARAM = "{param}"  # a query parameter name that is not a plausible name
VALUE = "{value}"  # a query token without "=": a value, not a name (RFC 3986 §3.4)
MAX_PARAMS = 32

_WORD = re.compile(r"^[a-z0-9_$][a-z0-9_.$-]{0,39}$")


def _validate(doc: dict[str, Any]) -> None:
    for key in ("person_words", "generic_words", "file_extensions"):
        for w in doc[key]:
            if not isinstance(w, str) or not _WORD.match(w):
                raise ValueError(f"{key}: bad word {w!r}")


_DOC = knowledge("path_words.yaml", _validate)
PERSON_WORDS: frozenset[str] = frozenset(_DOC["person_words"])
GENERIC_WORDS: frozenset[str] = frozenset(_DOC["generic_words"]) | PERSON_WORDS
FILE_EXTENSIONS: frozenset[str] = frozenset(_DOC["file_extensions"])

_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
_VERSION = re.compile(r"^(?:v?\d{1,2}(?:\.\d{1,3}){0,2}|[rv]\d{1,2}[a-z]?)$", re.I)  # v2, 1.0, r4
_DOTTED_NUMBER = re.compile(r"^\d+(?:[._]\d+)+$")  # "10.0", "17_0": versions in User-Agents
_SEPARATORS = re.compile(r"([-_:.@ ]+)")
# RFC 3986 §3.4 query names as servers read them: a letter, "_" or "$" first, then word
# characters, ".", ":", "-", "[", "]" (PHP arrays)
_PARAM_NAME = re.compile(r"^[A-Za-z_$][\w.:\-\[\]]{0,63}$")
# FHIR R4 §3.1.1.4 (search.html): parameter codes start lower case or "_"; chains and
# modifiers add ".", ":" and a resource type ("subject:Patient.name", "_has:Observation:...")
_FHIR_PARAM = re.compile(r"^_?[a-z][A-Za-z0-9\-_]*(?:[:.][A-Za-z][A-Za-z0-9\-_]*)*$")


def looks_like_id(token: str) -> bool:
    """A record number, date, phone number, UID, serial, hash, token or e-mail address:
    four digits or more, a long token mixing letters and digits, a UUID, "@", or longer than
    32 characters."""
    if len(token) > 32 or "@" in token:
        return True
    digits = sum(c.isdigit() for c in token)
    if digits >= 4:
        return True
    return bool(digits) and len(token) >= 8 and any(c.isalpha() for c in token)


def _is_word(seg: str) -> bool:
    return seg.lower() in GENERIC_WORDS


def path_segments(path: str) -> list[str]:
    """The segments of a path, percent-decoded (RFC 3986 §2.1: "%2F" is a "/" to the server
    that splits after decoding) and without matrix parameters (RFC 3986 §3.3: ";name=value")."""
    decoded = unquote(path, errors="replace")
    return [s.split(";", 1)[0] for s in decoded.split("/") if s and s.split(";", 1)[0]]


def template_segments(segs: list[str], first: bool = True) -> list[str]:
    """Each segment kept when clearly not an identifier, else "{id}"; `first` when `segs`
    starts the path (its first segment names the application: kept unless id-shaped)."""
    out: list[str] = []
    below_person = False
    for i, seg in enumerate(segs):
        out.append(_segment(seg, first and i == 0, below_person))
        if seg.lower() in PERSON_WORDS:
            below_person = True
    return out


def _segment(seg: str, first: bool, below_person: bool) -> str:
    stem, dot, ext = seg.rpartition(".")
    if dot and stem and ext.lower() in FILE_EXTENSIONS:
        return f"{_segment(stem, first, below_person)}.{ext}"
    if _is_word(seg):
        return seg
    if below_person:
        return ID
    if (first and not looks_like_id(seg)) or _VERSION.match(seg):
        return seg
    return ID


def path_template(path: str) -> str:
    """An HTTP request path (RFC 9110 §4.2.3 path-abempty) reduced to its template:
    "/emr/patients/NAME/chart/123" -> "/emr/patients/{id}/chart/{id}"."""
    segs = path_segments(path)
    if not segs:
        return "/"
    tail = "/" if path.endswith("/") else ""
    return "/" + "/".join(template_segments(segs)) + tail


def query_names(query: str, fhir: bool = False) -> list[str]:
    """Parameter names of a query (RFC 3986 §3.4, application/x-www-form-urlencoded pairs);
    values are never kept. A token without "=" is a value unless it is a generic word
    ("?wsdl"): "{value}"; a name that is not plausible (for FHIR, not a search parameter
    code, R4 §3.1.1.4) is "{param}"."""
    names: list[str] = []
    for part in re.split(r"[&;]", query):
        if not part:
            continue
        raw, eq, _ = part.partition("=")
        name = text(unquote_plus(raw, errors="replace").encode("utf-8", "replace"), 64)
        if not eq:
            name = name if _is_word(name) else VALUE
        elif not _plausible_name(name, fhir):
            name = PARAM
        if name and name not in names:
            names.append(name)
            if len(names) >= MAX_PARAMS:
                break
    return names


def _plausible_name(name: str, fhir: bool) -> bool:
    if not (_FHIR_PARAM if fhir else _PARAM_NAME).match(name):
        return False
    return not any(looks_like_id(p) for p in re.split(r"[:.]", name) if p)


def user_agent_template(agent: str) -> str:
    """A User-Agent (RFC 9110 §10.1.5: products and comments) with identifiers in its words
    replaced: product tokens and platform comments stay ("Mozilla/5.0 (Linux; Android 10;
    SM-G973F)"), a word after a person-ish word in the same comment item, an e-mail address,
    a UUID, or a word of six digits or more that is not a product or a dotted version
    ("(patient 1234567)") becomes "{id}"."""
    out: list[str] = []
    below_person = False
    for tok in re.findall(r"[();,]|\s+|[^\s();,]+", agent):
        if tok in "();," or tok.isspace():
            below_person = below_person and tok.isspace()
            out.append(tok)
            continue
        word = tok.strip(":=").lower()
        if word in PERSON_WORDS:
            below_person = True
            out.append(tok)
        elif (below_person and not _is_word(tok)) or _ua_id(tok):
            out.append(ID)
        else:
            out.append(tok)
    return "".join(out)


def _ua_id(word: str) -> bool:
    if "@" in word or _UUID.search(word):
        return True
    if "/" in word or _DOTTED_NUMBER.match(word):  # a product or a version
        return False
    return sum(c.isdigit() for c in word) >= 6 or len(word) > 40


def topic_template(topic: str) -> str:
    """An MQTT topic name or filter (MQTT 3.1.1 §4.7) with identifier levels replaced:
    wildcards ("+", "#"), empty levels, "$" system prefixes (§4.7.2) and generic words stay;
    a level below a person-ish level, or shaped like an identifier, becomes "{id}"."""
    out: list[str] = []
    below_person = False
    for i, level in enumerate(topic.split("/")):
        if level in ("", "+", "#") or (i == 0 and level.startswith("$")) or _is_word(level):
            out.append(level)
        elif below_person or looks_like_id(level):
            out.append(ID)
        else:
            out.append(level)
        if level.lower() in PERSON_WORDS:
            below_person = True
    return "/".join(out)


def client_id_template(client_id: str) -> str:
    """An MQTT client identifier (MQTT 3.1.1 §3.1.3.1) with identifier parts replaced: split on
    "-", "_", ":", ".", "@", each part shaped like an identifier, after a person-ish part, or
    before "@" becomes "{id}" ("ward3-pump-{id}")."""
    parts = _SEPARATORS.split(client_id)
    out: list[str] = []
    below_person = False
    for i, part in enumerate(parts):
        if i % 2 or not part:  # a separator
            out.append(part)
            continue
        at = i + 1 < len(parts) and "@" in parts[i + 1]
        if _is_word(part) and not at:
            out.append(part)
        elif below_person or at or looks_like_id(part):
            out.append(ID)
        else:
            out.append(part)
        if part.lower() in PERSON_WORDS:
            below_person = True
    return "".join(out)
