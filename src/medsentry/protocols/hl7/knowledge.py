"""Load and validate the HL7 knowledge files in `medsentry/data/` (once, at first use)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")


def _load(name: str) -> dict:
    try:
        doc = yamlfile.load(resources.files("medsentry.data").joinpath(name).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"knowledge file {name} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or not doc.get("sources"):
        raise ConfigError(f"knowledge file {name}: needs a mapping with `sources`")
    return doc


@functools.cache
def phi_segments() -> frozenset[str]:
    name = "hl7_segments.yaml"
    segments = _load(name).get("phi_segments")
    if not isinstance(segments, dict) or not segments:
        raise ConfigError(f"knowledge file {name}: phi_segments is missing")
    for seg in segments:
        if not isinstance(seg, str) or not _SEGMENT.match(seg):
            raise ConfigError(f"knowledge file {name}: {seg!r} is not a segment id")
    return frozenset(segments)


@functools.cache
def phi_segment_prefixes() -> tuple[str, ...]:
    """Segment id prefixes whose segments are treated as PHI-bearing (Z: locally defined)."""
    name = "hl7_segments.yaml"
    prefixes = _load(name).get("phi_segment_prefixes") or {}
    if not isinstance(prefixes, dict):
        raise ConfigError(f"knowledge file {name}: phi_segment_prefixes is not a mapping")
    for p in prefixes:
        if not isinstance(p, str) or not re.fullmatch(r"[A-Z][A-Z0-9]{0,2}", p):
            raise ConfigError(f"knowledge file {name}: {p!r} is not a segment id prefix")
    return tuple(prefixes)


_phi_memo: dict[str, bool] = {}


def is_phi_segment(seg_id: str) -> bool:
    """A PHI-bearing segment: listed, or starting with a listed prefix (bounded memo)."""
    hit = _phi_memo.get(seg_id)
    if hit is None:
        hit = seg_id in phi_segments() or seg_id.startswith(phi_segment_prefixes())
        if len(_phi_memo) < 1024:
            _phi_memo[seg_id] = hit
    return hit


@dataclass(frozen=True, slots=True)
class VitalLimit:
    name: str
    units: frozenset[str]
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class VitalLimits:
    by_code: dict[tuple[str, str], VitalLimit]
    by_refid: dict[str, VitalLimit]

    def find(self, code: str, system: str | None, text: str | None) -> VitalLimit | None:
        if system and (system, code) in self.by_code:
            return self.by_code[(system, code)]
        if text and text in self.by_refid:
            return self.by_refid[text]
        return None


@functools.cache
def vital_limits() -> VitalLimits:
    name = "hl7_vital_limits.yaml"
    by_code: dict[tuple[str, str], VitalLimit] = {}
    by_refid: dict[str, VitalLimit] = {}
    for i, v in enumerate(_load(name).get("vitals") or []):
        try:
            limit = VitalLimit(
                str(v["name"]),
                frozenset(str(u) for u in v["units"]),
                float(v["min"]),
                float(v["max"]),
            )
            codes = [(str(s), str(c)) for s, c in v["codes"]]
            refids = [str(r) for r in v.get("refids") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"knowledge file {name}: vitals[{i}] is malformed: {exc}") from exc
        if not limit.low < limit.high or not limit.units:
            raise ConfigError(f"knowledge file {name}: vitals[{i}] needs units and min < max")
        for key in codes:
            by_code[key] = limit
        for refid in refids:
            by_refid[refid] = limit
    if not by_code:
        raise ConfigError(f"knowledge file {name}: no vitals")
    return VitalLimits(by_code, by_refid)


@dataclass(frozen=True, slots=True)
class Hl7Tables:
    """Coded values that may be reported as sent (data/hl7_tables.yaml)."""

    ack_codes: frozenset[str]  # Table 0008
    coding_systems: frozenset[str]  # Table 0396
    coding_system_patterns: tuple[re.Pattern[str], ...]  # its 'nnnn' / '99zzz' entries
    universal_id_types: frozenset[str]  # Table 0301
    character_sets: frozenset[str]  # Table 0211
    processing_ids: frozenset[str]  # Table 0103
    ucum_prefixes: tuple[str, ...]
    ucum_metric_atoms: frozenset[str]
    ucum_atoms: frozenset[str]
    known_units: frozenset[str]  # every unit of hl7_vital_limits.yaml

    def coding_system(self, value: str) -> bool:
        return value in self.coding_systems or any(
            p.match(value) for p in self.coding_system_patterns
        )


@functools.cache
def hl7_tables() -> Hl7Tables:
    name = "hl7_tables.yaml"
    doc = _load(name)

    def codes(key: str) -> list[str]:
        values = doc.get(key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"knowledge file {name}: {key} needs a list of codes")
        if not all(isinstance(v, str) and v and v.isprintable() for v in values):
            raise ConfigError(f"knowledge file {name}: {key} holds a value that is no code")
        return values

    patterns = doc.get("coding_system_patterns")
    if not isinstance(patterns, dict) or not patterns:
        raise ConfigError(f"knowledge file {name}: coding_system_patterns is missing")
    try:
        compiled = tuple(re.compile(str(p)) for p in patterns.values())
    except re.error as exc:
        raise ConfigError(f"knowledge file {name}: bad coding system pattern: {exc}") from exc
    prefixes = sorted(codes("ucum_prefixes"), key=len, reverse=True)  # "da" before "d"
    limits = vital_limits()
    units = frozenset(
        u for v in {*limits.by_code.values(), *limits.by_refid.values()} for u in v.units
    )
    return Hl7Tables(
        ack_codes=frozenset(codes("ack_codes")),
        coding_systems=frozenset(codes("coding_systems")),
        coding_system_patterns=compiled,
        universal_id_types=frozenset(codes("universal_id_types")),
        character_sets=frozenset(codes("character_sets")),
        processing_ids=frozenset(codes("processing_ids")),
        ucum_prefixes=tuple(prefixes),
        ucum_metric_atoms=frozenset(codes("ucum_metric_atoms")),
        ucum_atoms=frozenset(codes("ucum_atoms")),
        known_units=units,
    )
