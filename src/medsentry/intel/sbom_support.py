"""FDA per-component support information: level of support and end-of-support date.

Which property names carry them and how their values read is knowledge, kept in
`data/sbom_fields.yaml` (with sources); this module loads it and reads a component's properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_ISO_DATE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?\s*$")


def _key(name: str) -> str:
    return _NON_ALNUM.sub("", name.lower())


@dataclass(frozen=True)
class SupportFields:
    level_names: frozenset[str]  # normalized property names
    eos_names: frozenset[str]
    level_values: dict[str, str]  # normalized value -> FDA vocabulary
    source: str


def load_support_fields(path: Path | None = None) -> SupportFields:
    name = "sbom_fields.yaml"
    source = str(path) if path else f"medsentry/data/{name}"
    try:
        text = (
            Path(path).read_bytes()  # bytes: bad UTF-8 is a YAMLError
            if path
            else (resources.files("medsentry") / "data" / name).read_text(encoding="utf-8")
        )
        doc: Any = yamlfile.load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
        raise ConfigError(f"{source}: must be a mapping with a 'source' string")

    def names(section: str) -> frozenset[str]:
        entries = (doc.get(section) or {}).get("property_names")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source}: {section}.property_names must be a non-empty list")
        out = set()
        for i, e in enumerate(entries):
            if not (isinstance(e, dict) and isinstance(e.get("name"), str) and e.get("source")):
                raise ConfigError(
                    f"{source}: {section}.property_names[{i}] needs a 'name' and its 'source'"
                )
            out.add(_key(e["name"]))
        return frozenset(out)

    for section in ("level_of_support", "end_of_support"):
        if not isinstance(doc.get(section), dict):
            raise ConfigError(f"{source}: '{section}' must be a mapping")
    level_names = names("level_of_support")
    eos_names = names("end_of_support")
    values = doc["level_of_support"].get("values")
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise ConfigError(f"{source}: level_of_support.values must map strings to strings")
    return SupportFields(
        level_names=level_names,
        eos_names=eos_names,
        level_values={_key(k): v for k, v in values.items()},
        source=doc["source"],
    )


@cache
def support_fields() -> SupportFields:
    return load_support_fields()


def parse_date(text: str) -> str:
    """The ISO date (YYYY-MM-DD) `text` names, or "" when it names none."""
    m = _ISO_DATE.match(text or "")
    if not m:
        return ""
    try:
        return date.fromisoformat(m.group(1)).isoformat()
    except ValueError:
        return ""


def read_support(properties: list[tuple[str, str]]) -> dict[str, str]:
    """level_of_support(+_raw), end_of_support(+_date) from (name, value) properties."""
    f = support_fields()
    out: dict[str, str] = {}
    for name, value in properties:
        k = _key(name)
        value = (value or "").strip()
        if not value:
            continue
        if k in f.level_names and "level_of_support_raw" not in out:
            out["level_of_support_raw"] = value
            out["level_of_support"] = f.level_values.get(_key(value), "")
        elif k in f.eos_names and "end_of_support" not in out:
            out["end_of_support"] = value
            iso = parse_date(value)
            if iso:
                out["end_of_support_date"] = iso
    return out


def today() -> str:
    return datetime.now().date().isoformat()


# NTIA "Minimum Elements for an SBOM" (2021) per-component data fields, and the FDA premarket
# guidance §V.A.4.b additions; (element, where it is read from, test on a Component).
ELEMENTS: tuple[tuple[str, str, Any], ...] = (
    ("supplier_name", "NTIA", lambda c: bool(c.supplier)),
    ("component_name", "NTIA", lambda c: bool(c.name)),
    ("component_version", "NTIA", lambda c: bool(c.version)),
    ("unique_identifier", "NTIA (purl or CPE)", lambda c: bool(c.purl or c.cpe)),
    ("component_hash", "CISA minimum elements update", lambda c: bool(c.hashes)),
    ("license", "CISA minimum elements update", lambda c: bool(c.licenses)),
    ("level_of_support", "FDA §V.A.4.b", lambda c: bool(c.level_of_support_raw)),
    ("end_of_support_date", "FDA §V.A.4.b (a date)", lambda c: bool(c.end_of_support_date)),
)


def completeness(components: list[Any]) -> list[dict[str, Any]]:
    """Per element: how many components carry it, and the first few that do not."""
    out = []
    n = len(components)
    for name, source, test in ELEMENTS:
        missing = [c.name or c.bom_ref or "(unnamed)" for c in components if not test(c)]
        out.append(
            {
                "element": name,
                "required_by": source,
                "present": n - len(missing),
                "total": n,
                "share": round((n - len(missing)) / n, 3) if n else 0.0,
                "missing_examples": missing[:5],
            }
        )
    return out
