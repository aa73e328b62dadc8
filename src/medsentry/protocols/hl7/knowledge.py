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
