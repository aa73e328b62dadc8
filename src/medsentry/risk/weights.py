"""The risk model's weights and vocabularies (`data/risk_weights.yaml`), loaded and validated."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError
from medsentry.inventory.model import CRITICALITIES

EFFECTS = ("confidentiality", "integrity", "availability")


@dataclass(frozen=True)
class Category:
    name: str
    weight: float
    effects: tuple[str, ...]
    rubric: str


@dataclass(frozen=True)
class Weights:
    likelihood: dict[str, float]
    flat_min_nonmedical: int
    flat_prefix_v4: int
    flat_prefix_v6: int
    potential_match_factor: float
    controls: dict[str, tuple[float, str]]  # asset key -> (points, source)
    max_control_credit: float
    weak_auth: dict[str, tuple[float, str]]  # controls finding type -> (points, source)
    cleartext: dict[str, str]  # protocol -> why
    categories: dict[str, Category]
    criticality_category: dict[str, str]
    clinical_points: float
    multi_patient_points: float
    multi_patient_roles: frozenset[str]
    multi_patient_categories: frozenset[str]
    multi_patient_min_medical_peers: int
    bands: tuple[tuple[float, str], ...]
    source: str
    path: str


_LIKELIHOOD_KEYS = (
    "exploitability",
    "known_exploited",
    "epss",
    "internet_exposure",
    "flat_network",
    "cleartext_protocols",
)


def _num(doc: dict[str, Any], key: str, where: str, lo: float = 0, hi: float = 100) -> float:
    v = doc.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: must be a number in {lo}..{hi}")
    return float(v)


def load_weights(path: Path | None = None) -> Weights:
    name = "risk_weights.yaml"
    where = str(path) if path else f"medsentry/data/{name}"
    try:
        text = (
            Path(path).read_bytes()  # bytes: bad UTF-8 is a YAMLError
            if path
            else (resources.files("medsentry") / "data" / name).read_text(encoding="utf-8")
        )
        doc: Any = yamlfile.load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
        raise ConfigError(f"{where}: must be a mapping with a 'source' string")
    try:
        lk = doc["likelihood"]
        likelihood = {k: _num(lk, k, f"{where}: likelihood") for k in _LIKELIHOOD_KEYS}
        cc = doc["compensating_controls"]
        controls = {}
        for key, c in cc["controls"].items():
            if not isinstance(c, dict) or not c.get("source"):
                raise ConfigError(f"{where}: compensating_controls.controls.{key} needs a source")
            controls[str(key)] = (_num(c, "points", f"{where}: controls.{key}"), str(c["source"]))
        weak_auth = {}
        for ftype, c in (doc.get("weak_authentication") or {}).items():
            if not isinstance(c, dict) or not c.get("source"):
                raise ConfigError(f"{where}: weak_authentication.{ftype} needs a source")
            weak_auth[str(ftype)] = (
                _num(c, "points", f"{where}: weak_authentication.{ftype}"),
                str(c["source"]),
            )
        imp = doc["impact"]
        cats = {}
        for cname, c in imp["categories"].items():
            effects = tuple(c.get("effects") or ())
            if not effects or set(effects) - set(EFFECTS):
                raise ConfigError(f"{where}: impact.categories.{cname}.effects must be C/I/A")
            cats[cname] = Category(
                cname,
                _num(c, "weight", f"{where}: impact.categories.{cname}", 0, 1),
                effects,
                str(c.get("rubric", "")),
            )
        crit = dict(imp["criticality_category"])
        if set(crit) != set(CRITICALITIES) or set(crit.values()) - set(cats):
            raise ConfigError(
                f"{where}: impact.criticality_category must map each of"
                f" {', '.join(CRITICALITIES)} to a category"
            )
        bands = tuple((_num(b, "min", f"{where}: bands"), str(b["label"])) for b in doc["bands"])
        if [b[0] for b in bands] != sorted((b[0] for b in bands), reverse=True):
            raise ConfigError(f"{where}: bands must be listed highest first")
        return Weights(
            likelihood=likelihood,
            flat_min_nonmedical=int(_num(lk, "flat_min_nonmedical_neighbours", where, 1, 1e6)),
            flat_prefix_v4=int(_num(lk, "flat_prefix_v4", where, 8, 32)),
            flat_prefix_v6=int(_num(lk, "flat_prefix_v6", where, 16, 128)),
            potential_match_factor=_num(lk, "potential_match_factor", where, 0, 1),
            controls=controls,
            max_control_credit=_num(cc, "max_credit", where),
            weak_auth=weak_auth,
            cleartext={str(k): str(v) for k, v in doc["cleartext_protocols"].items()},
            categories=cats,
            criticality_category=crit,
            clinical_points=_num(imp, "clinical_points", where),
            multi_patient_points=_num(imp, "multi_patient", where),
            multi_patient_roles=frozenset(imp["multi_patient_roles"]),
            multi_patient_categories=frozenset(imp["multi_patient_categories"]),
            multi_patient_min_medical_peers=int(
                _num(imp, "multi_patient_min_medical_peers", where, 1, 1e6)
            ),
            bands=bands,
            source=doc["source"],
            path=where,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: missing or malformed section ({exc})") from exc


@cache
def weights() -> Weights:
    return load_weights()
