"""What a CMMS list may not bring in: columns about a patient, free text, person data in a cell.

A clinical engineering list describes equipment, but hospitals also use it to track loaners,
and then a column or a note names the patient who has the device. medsentry stores none of it
(HIPAA §164.514(b)(2): names, addresses, telephone numbers, e-mail addresses, dates of birth,
medical record, social security and health plan numbers are identifiers). Three rules, each
explainable to the person whose column was left out:

1. A column named for a patient is never read (`patient_column`): its name holds an
   identifying attribute (`IDENTIFYING`, "D.O.B.", "MedRec#"), or a person word
   (`PERSON`, "Patient", "Resident", "Loaned To") that the next word does not turn into a
   device or a place (`RESCUE`: "Patient Monitor ID", "Patient Care Area" are equipment).
2. A free-text column (`free_text_column`: notes, comments, description, ...) is never
   stored: free text routinely names the patient a loaner went to, in words no pattern finds.
3. Every other descriptive column (location, owner, department, the list's own columns) is
   read whole and left out, for the whole file, when any of its cells holds person data
   (`person_data`: a date of birth, a record number, an SSN, an e-mail address, a telephone
   number, a street address, a loan to someone, an HL7 name, a name with a title).

Warnings and errors name the column, the lines and the kind of data, never a value.
"""

from __future__ import annotations

import functools
import itertools
import re

# Names and cells up to this length are cached (a list repeats its departments, owners and
# rooms): the caches hold at most ~13 MB of cells and ~1 MB of names.
_CACHED = 200

# -- rule 1: column names ------------------------------------------------------------------
# Attributes that identify a person wherever they appear in a column name.
IDENTIFYING = frozenset(
    {
        "birth", "mrn", "ssn", "kin", "nok", "guarantor", "insurance", "insurer",
        "insured", "medicaid", "medicare", "beneficiary", "subscriber", "admission", "admit",
        "admitted", "deceased", "death", "surname", "forename",
    }
)  # fmt: skip
# Word pairs that identify a person ("Date of Birth" is caught by "birth" alone).
IDENTIFYING_PAIRS = frozenset(
    {
        ("social", "security"), ("member", "id"), ("nhs", "id"),
        ("first", "name"), ("last", "name"), ("given", "name"), ("family", "name"),
        ("middle", "name"), ("maiden", "name"), ("full", "name"), ("home", "address"),
        ("home", "phone"), ("home", "email"),
        # the person a loaner was handed to
        ("loaned", "to"), ("loan", "to"), ("lent", "to"), ("issued", "to"), ("out", "to"),
    }
)  # fmt: skip
# A person in a patient's place: the column is about them unless the next word is a RESCUE.
PERSON = frozenset(
    {"patient", "inpatient", "outpatient", "resident", "occupant", "borrower", "loanee"}
)
# Short forms ("Pt Name", "Pat ID"): a person only before an ATTRIBUTE word, since "PAT"
# alone is the UK's Portable Appliance Test of the equipment.
PERSON_SHORT = frozenset({"pt"})
# What a column says of a person: identifying when said of one (not "IP Address").
ATTRIBUTE = frozenset({"name", "id", "phone", "email", "address", "age", "sex", "gender"})
# After a person word, a word naming equipment, a place or a property of equipment:
# "Patient Monitor ID", "Patient Care Area", "Patient Connected", "Inpatient Unit".
RESCUE = frozenset(
    {
        "care", "area", "monitor", "monitoring", "device", "devices", "equipment", "connected",
        "connection", "facing", "side", "cable", "lead", "leads", "module", "lift", "bed",
        "room", "ward", "unit", "zone", "location", "floor", "wing", "bay", "clinic",
        "department", "dept", "safety", "risk", "population", "applied", "use", "simulator",
        "transport", "interface", "support",
    }
)  # fmt: skip
# Spellings folded to one word before the rules apply.
SYNONYMS = {
    "patients": "patient", "pts": "pt", "pat": "pt", "residents": "resident",
    "occupants": "occupant", "dob": "birth", "birthdate": "birth", "birthday": "birth",
    "born": "birth", "medrec": "mrn", "tel": "phone", "telephone": "phone", "mobile": "phone",
    "cell": "phone", "cellphone": "phone", "fax": "phone", "mail": "email", "addr": "address",
    "street": "address", "zip": "address", "zipcode": "address", "postcode": "address",
    "postal": "address", "identifier": "id", "ids": "id", "number": "id", "no": "id",
    "num": "id", "nbr": "id", "names": "name", "guarantors": "guarantor",
}  # fmt: skip
# Columns of free text (rule 2): "Notes", "Service History", "Loaner Info".
FREE_TEXT = frozenset(
    {
        "note", "notes", "comment", "comments", "remark", "remarks", "memo", "description",
        "desc", "descr", "details", "narrative", "history", "freetext", "text", "message",
        "info", "information", "observation", "observations", "instructions",
    }
)  # fmt: skip
# Words a run-together name ("PATIENTNAME", "dateofbirth") is split into.
_FILLER = frozenset({"date", "of", "to", "code", "e", "med", "rec", "medical", "record"})
_VOCABULARY = (
    IDENTIFYING | PERSON | PERSON_SHORT | ATTRIBUTE | RESCUE | FREE_TEXT | _FILLER
    | frozenset(SYNONYMS)
    | {w for pair in IDENTIFYING_PAIRS for w in pair}
)  # fmt: skip


def header_words(name: str) -> list[str]:
    """A column name as lower-case words: "PatientName", "Patient's Name", "patient_name"
    and "PATIENTNAME" are ["patient", "name"]; "D.O.B." is ["birth"], "MedRec#" ["mrn"]."""
    s = re.sub(r"['’]s\b", "", name)  # possessive: "Patient's Name"
    s = re.sub(r"\b(?:[A-Za-z]\.){2,}", lambda m: m.group().replace(".", ""), s)  # D.O.B.
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", s)  # camelCase: "PatientName", "MedRec"
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", s)  # "MRNNumber" -> "MRN Number"
    s = re.sub(r"\b[A-Za-z](?:\s+[A-Za-z]\b)+", lambda m: re.sub(r"\s", "", m.group()), s)  # D O B
    words: list[str] = []
    for w in re.findall(r"[a-z0-9]+", s.lower()):
        words += _split(w)
    folded = [SYNONYMS.get(w, w) for w in words]
    return _joined(folded)


def _split(word: str) -> list[str]:
    """A run-together word as vocabulary words ("patientname"), when it is made of them
    entirely; else the word itself."""
    if word in _VOCABULARY or len(word) > 40:
        return [word]
    best: dict[int, list[str]] = {0: []}  # prefix length -> fewest words that make it
    for end in range(1, len(word) + 1):
        for start in range(max(0, end - 12), end):
            piece = word[start:end]
            if start in best and piece in _VOCABULARY:
                cand = [*best[start], piece]
                if end not in best or len(cand) < len(best[end]):
                    best[end] = cand
    return best.get(len(word)) or [word]


def _joined(words: list[str]) -> list[str]:
    """Two-word spellings of one term: "med rec" and "medical record" are "mrn", "e mail"
    is "email"."""
    out: list[str] = []
    for w in words:
        prev = out[-1] if out else None
        if (prev, w) in (("med", "rec"), ("medical", "record")):
            out[-1] = "mrn"
        elif (prev, w) == ("e", "email"):
            out[-1] = "email"
        else:
            out.append(w)
    return out


def patient_column(name: str) -> bool:
    """True when a column of this name would carry a patient's identity (rule 1)."""
    return _patient_cached(name) if len(name) <= _CACHED else _patient(name)


@functools.lru_cache(maxsize=4096)
def _patient_cached(name: str) -> bool:
    return _patient(name)


def _patient(name: str) -> bool:
    words = header_words(name)
    if IDENTIFYING.intersection(words):
        return True
    if any(pair in IDENTIFYING_PAIRS for pair in itertools.pairwise(words)):
        return True
    for i, w in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else None
        if w in PERSON and after not in RESCUE:
            return True
        if w in PERSON_SHORT and after in ATTRIBUTE:
            return True
    return False


# -- rule 2: free text ---------------------------------------------------------------------


def free_text_column(name: str) -> bool:
    """True when a column of this name holds free text (rule 2): "Notes", "Service History"."""
    return bool(FREE_TEXT.intersection(header_words(name)))


def stored_column(name: str) -> bool:
    """A column an import may store (rules 1 and 2; cells are screened apart)."""
    return not patient_column(name) and not free_text_column(name)


# -- rule 3: cells -------------------------------------------------------------------------
PERSON_DATA_KINDS = {
    "birth": "a date of birth",
    "record": "a patient or medical record number",
    "ssn": "a social security number",
    "email": "an e-mail address",
    "phone": "a telephone number",
    "address": "a street address",
    "loan": "a device placed with a person",
    "hl7": "an HL7 person name (family^given)",
    "title": "a name with a title (Mr, Mrs, Ms)",
}
_PERSON_DATA = re.compile(
    r"(?P<birth>\b(?:dob|d\.o\.b\b|date\s+of\s+birth|birth\s*date|born)\b)"
    r"|(?P<record>\b(?:mrn|medrec|med\.?\s*rec|medical\s+record|nhs\s*(?:no|number|\#))\b"
    r"|\bpatient(?:'s)?\s*(?:id|\#|no\b|number|name))"
    r"|(?P<ssn>\b\d{3}-\d{2}-\d{4}\b|\bssn\b|\bsocial\s+security\b)"
    r"|(?P<phone>\b(?:tel|phone|telephone|mobile)\b\.?\s*[:#]?\s*\+?\(?\d"
    r"|\(\d{3}\)\s*\d{3}[-.\s]\d{4}\b|\b\d{3}[-.]\d{3}[-.]\d{4}\b"
    r"|\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,})"
    r"|(?P<address>\b\d+[a-z]?\s+(?:[a-z]+\s+){1,3}"
    r"(?:street|road|avenue|lane|drive|boulevard|terrace|crescent|rd|ave|blvd)\b)"
    r"|(?P<loan>\b(?:loan(?:ed)?|lent|issued|given|sent\s+home)\s+(?:out\s+)?to\b"
    r"|\b(?:bed|room|home|house|residence)\s+of\s+\w)"
    r"|(?P<title>(?-i:\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+[A-Z]))",
    re.IGNORECASE,
)


# Searched only in a cell holding their mark ("@", "^"): a pattern that may start at any letter
# costs a scan per position.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_HL7_NAME = re.compile(r"[^\W\d_]+\^[^\W\d_]+")  # HL7 v2.5.1 §2.A.88 XPN: family^given


def person_data(value: str) -> str | None:
    """The kind of person data a cell holds (a key of `PERSON_DATA_KINDS`), or None."""
    return _person_data_cached(value) if len(value) <= _CACHED else _person_data(value)


@functools.lru_cache(maxsize=65536)
def _person_data_cached(value: str) -> str | None:
    return _person_data(value)


def _person_data(value: str) -> str | None:
    if "@" in value and _EMAIL.search(value):
        return "email"
    if "^" in value and _HL7_NAME.search(value):
        return "hl7"
    m = _PERSON_DATA.search(value)
    return m.lastgroup if m else None


def shape(value: str) -> str:
    """A value described without itself: its length and the kinds of characters in it."""
    kinds = [
        name
        for name, present in (
            ("letters", any(c.isalpha() for c in value)),
            ("digits", any(c.isdigit() for c in value)),
            ("spaces", any(c.isspace() for c in value)),
            ("other characters", any(not (c.isalnum() or c.isspace()) for c in value)),
        )
        if present
    ]
    return f"text of {len(value)} characters: {', '.join(kinds) or 'none'}"
