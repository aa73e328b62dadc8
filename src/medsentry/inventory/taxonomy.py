"""The device taxonomy (`data/inventory_taxonomy.yaml`): categories, FDA class, criticality."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError
from medsentry.inventory.model import CRITICALITIES

FDA_CLASSES = ("I", "II", "III")


@dataclass(frozen=True, slots=True)
class Category:
    key: str
    name: str
    parent: str | None
    medical: bool
    criticality: str
    fda_class: str | None = None
    regulation: str | None = None


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, Category]
    source: str
    _lineage: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for key in self.categories:
            out = []
            cat = self.categories.get(key)
            while cat is not None and cat.parent:
                out.append(cat.parent)
                cat = self.categories.get(cat.parent)
            self._lineage[key] = tuple(out)

    def ancestors(self, key: str) -> tuple[str, ...]:
        """The category's parents, nearest first."""
        return self._lineage.get(key, ())

    def is_ancestor(self, maybe_parent: str, key: str) -> bool:
        return maybe_parent in self.ancestors(key)


def parse_taxonomy(doc: object, name: str = "data/inventory_taxonomy.yaml") -> Taxonomy:
    if not isinstance(doc, dict) or not isinstance(doc.get("categories"), dict):
        raise ConfigError(f"{name}: expected a mapping with 'categories'")
    source = doc.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{name}: missing 'source'")
    cats: dict[str, Category] = {}
    for key, c in doc["categories"].items():
        where = f"{name}: category {key!r}"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise ConfigError(f"{where}: needs a 'name'")
        crit = c.get("criticality")
        if crit not in CRITICALITIES:
            raise ConfigError(f"{where}: criticality must be one of {CRITICALITIES}")
        fda = c.get("fda_class")
        if fda is not None and fda not in FDA_CLASSES:
            raise ConfigError(f"{where}: fda_class must be one of {FDA_CLASSES}")
        if fda is not None and not c.get("regulation"):
            raise ConfigError(f"{where}: an FDA class needs its 21 CFR 'regulation'")
        if not isinstance(c.get("medical"), bool):
            raise ConfigError(f"{where}: 'medical' must be true or false")
        parent = c.get("parent") or (key.rsplit(".", 1)[0] if "." in key else None)
        cats[key] = Category(key, c["name"], parent, c["medical"], crit, fda, c.get("regulation"))
    for key, cat in cats.items():
        if cat.parent is not None and cat.parent not in cats:
            raise ConfigError(f"{name}: category {key!r}: parent {cat.parent!r} is not defined")
    return Taxonomy(cats, source)


@functools.cache
def taxonomy() -> Taxonomy:
    path = resources.files("medsentry").joinpath("data", "inventory_taxonomy.yaml")
    try:
        doc = yamlfile.load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"data/inventory_taxonomy.yaml: not valid YAML: {exc}") from None
    return parse_taxonomy(doc)
