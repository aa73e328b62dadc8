"""Load and validate the DICOM knowledge files in `medsentry/data/` (once, at first use)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

_TAG = re.compile(r"^[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}$")
_UID_ROOT = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _load(name: str) -> dict:
    try:
        text = resources.files("medsentry.data").joinpath(name).read_text("utf-8")
        doc = yamlfile.load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"knowledge file {name} cannot be read: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"knowledge file {name}: top level is not a mapping")
    return doc


@dataclass(frozen=True, slots=True)
class DatasetAttributes:
    device_identity: dict[int, str]  # tag -> keyword, values kept
    scheduled_sequence: int  # the Scheduled Procedure Step Sequence tag (worklist identifiers)
    scheduled_items: dict[int, str]  # tag -> keyword inside its first item, values kept


@dataclass(frozen=True, slots=True)
class ConfidentialityProfile:
    """PS3.15 Table E.1-1 attributes that may identify a person: presence only, never values."""

    identifying: dict[int, str]  # tag -> keyword
    # repeating groups (50xx Curve, 60xx Overlay): (group & 0xFF00, element, element mask, keyword)
    repeating: tuple[tuple[int, int, int, str], ...]
    private_keyword: str  # any private data element (PS3.5 §7.8.1)


def _tags(doc: dict, key: str, name: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for i, entry in enumerate(doc.get(key) or []):
        tag, keyword = (entry or {}).get("tag"), (entry or {}).get("keyword")
        if not isinstance(tag, str) or not _TAG.match(tag) or not isinstance(keyword, str):
            raise ConfigError(
                f"knowledge file {name}: {key}[{i}] needs tag 'gggg,eeee' and keyword"
            )
        out[int(tag.replace(",", ""), 16)] = keyword
    if not out:
        raise ConfigError(f"knowledge file {name}: {key} is empty")
    return out


@functools.cache
def dataset_attributes() -> DatasetAttributes:
    name = "dicom_attributes.yaml"
    doc = _load(name)
    if not doc.get("sources"):
        raise ConfigError(f"knowledge file {name}: sources are missing")
    step = doc.get("scheduled_step")
    sequence = step.get("sequence") if isinstance(step, dict) else None
    if not isinstance(sequence, dict) or not isinstance(sequence.get("tag"), str):
        raise ConfigError(f"knowledge file {name}: scheduled_step needs sequence and items")
    return DatasetAttributes(
        _tags(doc, "device_identity", name),
        _tags({"sequence": [sequence]}, "sequence", name).popitem()[0],
        _tags(step, "items", name),
    )


_REPEATING_TAG = re.compile(r"^([0-9A-Fa-f]{2})xx,([0-9A-Fa-f]{4}|xxxx)$")
_RETAINED_BY = {"uids", "device", "institution"}  # options that do not concern the patient


@functools.cache
def confidentiality_profile() -> ConfidentialityProfile:
    """`data/dicom_confidentiality_profile.yaml`: the rows of PS3.15 Table E.1-1 that no
    Retain UIDs / Device Identity / Institution Identity Option keeps."""
    name = "dicom_confidentiality_profile.yaml"
    doc = _load(name)
    private = doc.get("private")
    if not doc.get("sources") or not isinstance(private, dict) or not private.get("keyword"):
        raise ConfigError(f"knowledge file {name}: needs sources and private.keyword")
    identifying: dict[int, str] = {}
    repeating: list[tuple[int, int, int, str]] = []
    for i, entry in enumerate(doc.get("attributes") or []):
        entry = entry if isinstance(entry, dict) else {}
        tag, keyword, retained = entry.get("tag"), entry.get("keyword"), entry.get("retained_by")
        if not isinstance(tag, str) or not isinstance(keyword, str) or not entry.get("action"):
            raise ConfigError(f"knowledge file {name}: attributes[{i}] needs tag, keyword, action")
        if retained is not None and retained not in _RETAINED_BY:
            raise ConfigError(f"knowledge file {name}: attributes[{i}]: unknown retained_by")
        if retained is not None:
            continue
        if _TAG.match(tag):
            identifying[int(tag.replace(",", ""), 16)] = keyword
        elif m := _REPEATING_TAG.match(tag):
            group, element = int(m[1], 16) << 8, m[2]
            mask = 0 if element == "xxxx" else 0xFFFF
            repeating.append((group, 0 if element == "xxxx" else int(element, 16), mask, keyword))
        else:
            raise ConfigError(f"knowledge file {name}: attributes[{i}]: bad tag {tag!r}")
    if not identifying:
        raise ConfigError(f"knowledge file {name}: attributes is empty")
    return ConfidentialityProfile(identifying, tuple(repeating), str(private["keyword"]))


@functools.cache
def implementation_roots() -> tuple[tuple[str, str], ...]:
    """(root, name) pairs, longest root first."""
    name = "dicom_implementations.yaml"
    roots: list[tuple[str, str]] = []
    for i, entry in enumerate(_load(name).get("roots") or []):
        root, label, source = (entry or {}).get("root"), entry.get("name"), entry.get("source")
        if not (isinstance(root, str) and _UID_ROOT.match(root) and label and source):
            raise ConfigError(f"knowledge file {name}: roots[{i}] needs root, name and source")
        roots.append((root, str(label)))
    return tuple(sorted(roots, key=lambda r: -len(r[0])))


def implementation_name(class_uid: str | None) -> str | None:
    """The toolkit or vendor whose UID root the implementation class UID sits under."""
    if not class_uid:
        return None
    for root, label in implementation_roots():
        if class_uid == root or class_uid.startswith(root + "."):
            return label
    return None
