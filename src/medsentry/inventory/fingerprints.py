"""The fingerprint library: declarative rules from observations to device attributes.

One YAML format for the shipped library (`data/inventory_fingerprints*.yaml`) and the user's
own rules (a directory of `*.yaml`: `--fingerprints DIR`, `$MEDSENTRY_FINGERPRINTS`, or
`<data dir>/fingerprints/`):

    source: "default source for the rules of this file"
    rules:
      - id: dhcp.bbraun.spacestation          # unique across all files
        when:                                  # all conditions must hold
          dhcp.vendor_class: {prefix: "BBraun"}
          role: hl7-sender                     # a bare string: equals (case-insensitive)
        set: {vendor: "B. Braun", category: infusion-pump}
        confidence: 0.85                       # this evidence alone, 0..1
        source: "B. Braun SpaceStation documentation ..."

Matchers: `equals`, `in` (list), `prefix`, `suffix`, `contains`, `regex` (Python syntax,
case-insensitive; named groups may be used in `set` as `{name}`), `domain` (the name or any
subdomain of it). `{value}` in `set` is the observed value of the first condition.
A key written `"!key"` negates: the condition holds when no value of `key` matches (never the
first condition). The key `product` stands for every observation that may name a product
(`PRODUCT_KEYS`): one rule for "IntelliVue" fires on a DHCP vendor class, a hostname, an HL7
application or a BLE name alike, and its evidence names the key it was found under.
Attributes: category (a taxonomy key), vendor, model, software_version, os.
A malformed file is a ConfigError naming the file and the rule. A user's regular expressions
are compiled when the file is loaded (a bad one is that ConfigError at start-up); the shipped
library's, a few hundred of which a capture uses a handful, when a rule first tests a value
(the test suite compiles every one of them).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

ATTRIBUTES = ("category", "vendor", "model", "software_version", "os")
MATCHERS = ("equals", "in", "prefix", "suffix", "contains", "regex", "domain")
ENV_FINGERPRINTS = "MEDSENTRY_FINGERPRINTS"
PRODUCT_KEYS = (
    "hostname",
    "dhcp.vendor_class",
    "hl7.application",
    "http.user_agent",
    "http.server",
    "ble.local_name",
    "ble.gatt.model",
    "lldp.system_name",
    "lldp.system_description",
    "cdp.platform",
    "snmp.sys_descr",
    "ssdp.server",
    "mdns.instance",
    "dicom.model",
    "dicom.implementation_version_name",
    "fhir.software",
    "tls.cert.subject_cn",
    "mqtt.client_id",
)
_PRODUCT_SET = frozenset(PRODUCT_KEYS)
PACKAGE_FILES = "inventory_fingerprints"  # data/inventory_fingerprints*.yaml


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    kind: str
    arg: Any  # str (a regex: its pattern) or frozenset
    negated: bool = False

    def match(self, value: str) -> dict[str, str] | None:
        """Named groups (empty dict) when `value` matches, else None."""
        v = value.lower()
        k = self.kind
        if k == "equals":
            return {} if v == self.arg else None
        if k == "in":
            return {} if v in self.arg else None
        if k == "prefix":
            return {} if v.startswith(self.arg) else None
        if k == "suffix":
            return {} if v.endswith(self.arg) else None
        if k == "contains":
            return {} if self.arg in v else None
        if k == "domain":
            return {} if v == self.arg or v.endswith("." + self.arg) else None
        m = _regex(self.arg).search(value)
        if m is None:
            return None
        return {n: g for n, g in m.groupdict().items() if g is not None}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    conditions: tuple[Condition, ...]
    set: dict[str, str]
    confidence: float
    source: str
    file: str


@dataclass(frozen=True, slots=True)
class Claim:
    """One rule's claim about one attribute of one device."""

    attribute: str
    value: str
    confidence: float
    source: str  # the observation key of the rule's first condition
    rule: str
    observed: str
    ts_ns: int | None


@dataclass
class Library:
    rules: list[Rule]
    files: list[str]
    # first-condition index: exact values, domain names, and the rest scanned linearly
    _exact: dict[str, dict[str, list[Rule]]] = field(default_factory=dict)
    _domain: dict[str, dict[str, list[Rule]]] = field(default_factory=dict)
    _scan: dict[str, list[Rule]] = field(default_factory=dict)
    # (key, value) -> rules whose first condition matched, with their groups: values repeat
    # across devices (OUI organizations, vendor classes, application names), so each is tried once
    _first: dict[tuple[str, str], tuple[tuple[Rule, dict[str, str]], ...]] = field(
        default_factory=dict
    )
    # observation keys a rule tests after its first condition: all their values matter
    later_keys: frozenset[str] = frozenset()
    # identity signature -> identified attributes (see `medsentry.inventory.identify`)
    fleet: dict[tuple, Any] = field(default_factory=dict)
    # observation key -> the rule keys it is matched under that some first condition tests
    indexed_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # observation key -> value -> whether some first condition matches it (fleet signatures)
    claims_any: dict[str, dict[str, bool]] = field(default_factory=dict)
    # vendor key -> the rules' names for that company (`identify.rule_vendor_names`)
    vendor_names: dict[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        later = {c.key for r in self.rules for c in r.conditions[1:]}
        if "product" in later:
            later.update(PRODUCT_KEYS)
        self.later_keys = frozenset(later)
        for r in self.rules:
            c = r.conditions[0]
            if c.kind == "equals":
                self._exact.setdefault(c.key, {}).setdefault(c.arg, []).append(r)
            elif c.kind == "in":
                for a in c.arg:
                    self._exact.setdefault(c.key, {}).setdefault(a, []).append(r)
            elif c.kind == "domain":
                self._domain.setdefault(c.key, {}).setdefault(c.arg, []).append(r)
            else:
                self._scan.setdefault(c.key, []).append(r)

    def _candidates(self, key: str, value: str) -> Iterator[Rule]:
        v = value.lower()
        exact = self._exact.get(key)
        if exact:
            yield from exact.get(v, ())
        dom = self._domain.get(key)
        if dom:
            parts = v.split(".")
            for i in range(len(parts)):
                yield from dom.get(".".join(parts[i:]), ())
        yield from self._scan.get(key, ())

    def indexed(self, key: str) -> bool:
        """Some rule's first condition tests this observation key."""
        return key in self._exact or key in self._domain or key in self._scan

    def first_hits(self, rkey: str, value: str) -> tuple[tuple[Rule, dict[str, str]], ...]:
        """The rules whose first condition (on key `rkey`) matches `value`, with their groups."""
        first = self._first
        hits = first.get((rkey, value))
        if hits is None:
            hits = tuple(
                (rule, g)
                for rule in self._candidates(rkey, value)
                if (g := rule.conditions[0].match(value)) is not None
            )
            if len(first) > 500_000:
                first.clear()
            first[(rkey, value)] = hits
        return hits

    def match(self, observations: dict[str, dict[str, int]]) -> list[Claim]:
        """Every claim the rules make about a device with these observations."""
        out: list[Claim] = []
        for key, values in observations.items():
            for rkey in (key, "product") if key in _PRODUCT_SET else (key,):
                if self.indexed(rkey):
                    self._match_key(rkey, key, values, observations, out)
        return out

    def _match_key(
        self,
        rkey: str,
        key: str,
        values: dict[str, int],
        observations: dict[str, dict[str, int]],
        out: list[Claim],
    ) -> None:
        first = self._first
        for value, ts in values.items():
            hits = first.get((rkey, value))
            if hits is None:
                hits = self.first_hits(rkey, value)
            for rule, g in hits:
                groups = dict(g)
                if len(rule.conditions) > 1 and not _rest_hold(rule, observations, groups):
                    continue
                groups.setdefault("value", value)
                for attr, template in rule.set.items():
                    try:
                        val = template.format_map(groups).strip()
                    except (KeyError, IndexError, ValueError):
                        continue
                    if val:
                        out.append(Claim(attr, val, rule.confidence, key, rule.id, value[:200], ts))


def _rest_hold(rule: Rule, observations: dict[str, dict[str, int]], groups: dict) -> bool:
    for cond in rule.conditions[1:]:
        vals = _values(observations, cond.key)
        if cond.negated:
            if any(cond.match(v) is not None for v in vals):
                return False
            continue
        if not vals:
            return False
        for v in vals:
            g = cond.match(v)
            if g is not None:
                for n, x in g.items():
                    groups.setdefault(n, x)
                break
        else:
            return False
    return True


def _values(observations: dict[str, dict[str, int]], key: str) -> list[str]:
    if key == "product":
        return [v for k in PRODUCT_KEYS for v in observations.get(k, ())]
    return list(observations.get(key, ()))


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    """A rule's pattern compiled (once per process): matching is case-insensitive."""
    return re.compile(pattern, re.IGNORECASE)


def _condition(key: str, spec: Any, where: str, compile_now: bool = True) -> Condition:
    c = _condition_of(key.lstrip("!"), spec, where, compile_now)
    if key.startswith("!"):
        return Condition(c.key, c.kind, c.arg, negated=True)
    return c


def _condition_of(key: str, spec: Any, where: str, compile_now: bool) -> Condition:
    if isinstance(spec, str | int | float):
        return Condition(key, "equals", str(spec).lower())
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: condition {key!r} must be a string or one of {MATCHERS}")
    ((kind, arg),) = spec.items()
    if kind not in MATCHERS:
        raise ConfigError(f"{where}: condition {key!r}: unknown matcher {kind!r} ({MATCHERS})")
    if kind == "in":
        if not isinstance(arg, list) or not arg:
            raise ConfigError(f"{where}: condition {key!r}: 'in' needs a non-empty list")
        return Condition(key, kind, frozenset(str(a).lower() for a in arg))
    if not isinstance(arg, str | int) or str(arg) == "":
        raise ConfigError(f"{where}: condition {key!r}: {kind} needs a non-empty string")
    if kind == "regex":
        if compile_now:
            try:
                _regex(str(arg))
            except re.error as exc:
                raise ConfigError(f"{where}: condition {key!r}: bad regex: {exc}") from None
        return Condition(key, kind, str(arg))
    return Condition(key, kind, str(arg).lower())


def _rules_of(
    doc: Any, name: str, categories: frozenset[str] | None, compile_now: bool = True
) -> list[Rule]:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ConfigError(f"{name}: expected a mapping with a 'rules' list")
    default_source = doc.get("source")
    out = []
    for i, r in enumerate(doc["rules"]):
        where = f"{name}: rule #{i + 1}"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: not a mapping")
        rid = r.get("id")
        if not isinstance(rid, str) or not rid:
            raise ConfigError(f"{where}: missing 'id'")
        where = f"{name}: rule {rid!r}"
        unknown = set(r) - {"id", "when", "set", "confidence", "source", "note"}
        if unknown:
            raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        when = r.get("when")
        if not isinstance(when, dict) or not when:
            raise ConfigError(f"{where}: 'when' must map observation keys to matchers")
        conds = tuple(_condition(str(k), v, where, compile_now) for k, v in when.items())
        if conds[0].negated:
            raise ConfigError(f"{where}: the first condition cannot be negated")
        sets = r.get("set")
        if not isinstance(sets, dict) or not sets:
            raise ConfigError(f"{where}: 'set' must name at least one attribute")
        for attr, val in sets.items():
            if attr not in ATTRIBUTES:
                raise ConfigError(f"{where}: cannot set {attr!r} (one of {ATTRIBUTES})")
            if not isinstance(val, str) or not val.strip():
                raise ConfigError(f"{where}: {attr} must be a non-empty string")
            if (
                attr == "category"
                and categories is not None
                and "{" not in val
                and (val not in categories)
            ):
                raise ConfigError(f"{where}: category {val!r} is not in the taxonomy")
        conf = r.get("confidence")
        if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 < conf <= 1:
            raise ConfigError(f"{where}: confidence must be a number in (0, 1]")
        source = r.get("source", default_source)
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"{where}: every rule needs a 'source' (or a file-level one)")
        sets = {k: str(v) for k, v in sets.items()}
        out.append(Rule(rid, conds, sets, float(conf), source, name))
    return out


def _read(
    path_or_name: str, text: str, categories: frozenset[str] | None, compile_now: bool = True
) -> list[Rule]:
    try:
        doc = yamlfile.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path_or_name}:{at} not valid YAML") from None
    return _rules_of(doc, path_or_name, categories, compile_now)


def user_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """Directories of the user's own rules: given ones, $MEDSENTRY_FINGERPRINTS, data dir."""
    from medsentry.paths import data_dir

    dirs = [Path(d) for d in extra]
    env = os.environ.get(ENV_FINGERPRINTS)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    home = data_dir() / "fingerprints"
    if home.is_dir():
        dirs.append(home)
    return dirs


def load_library(extra_dirs: Iterable[str | Path] = (), *, package: bool = True) -> Library:
    """The shipped rules plus the user's; rule ids must be unique (a user rule cannot silently
    shadow a shipped one: give it its own id)."""
    from medsentry.inventory.taxonomy import taxonomy

    cats = frozenset(taxonomy().categories)
    rules: list[Rule] = []
    files: list[str] = []
    if package:
        for entry in sorted(resources.files("medsentry").joinpath("data").iterdir(), key=str):
            if entry.name.startswith(PACKAGE_FILES) and entry.name.endswith(".yaml"):
                text = entry.read_text(encoding="utf-8")
                rules += _read(f"data/{entry.name}", text, cats, compile_now=False)
                files.append(f"data/{entry.name}")
    for d in user_dirs(extra_dirs):
        if not d.is_dir():
            raise ConfigError(f"{d}: fingerprint directory does not exist")
        for p in sorted(d.glob("*.y*ml")):
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{p}: cannot read: {exc}") from None
            rules += _read(str(p), text, cats)
            files.append(str(p))
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            raise ConfigError(f"{r.file}: rule id {r.id!r} already defined in {seen[r.id]}")
        seen[r.id] = r.file
    return Library(rules, files)


@functools.cache
def default_library() -> Library:
    return load_library()
