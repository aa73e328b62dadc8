"""Names as inventories and advisories write them -> comparable features.

Knowledge lives in `data/vendor_aliases.yaml` (companies, their aliases, renames and
acquisitions, each with its source) and `data/match_vocabulary.yaml` (generic words, phrase
spellings). Both are loaded and validated once (`vocabulary()`).

`features(text)` turns a product or device name into:

- `words`: distinctive alphabetic tokens (generic device-class words removed);
- `models`: model codes, written any way ("MX800", "MX 800", "mx-800" -> "mx800", plus the bare
  number "800"), lists expanded ("MX700/800" -> mx700, mx800; "522/722" -> 522, 722);
- `ranges`: model ranges ("MX400-MX850", "MP20-MP90") as (prefix, low, high).

`find_vendors(text)` finds vendor aliases in free text and returns the vendor keys and the text
with the aliases removed. `split_descriptor(text)` takes a version off a free-text descriptor.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medsentry import yamlfile
from medsentry.errors import ConfigError

_LEGAL = re.compile(
    r"\b(?:inc|ltd|co|corp|corporation|company|ag|gmbh|llc|oy|n\s?v|plc|s\s?a|se|kg|kgaa|limited)\b"
)


def fold(text: str) -> str:
    """Lower case, accents off (Dräger -> drager), mojibake of ä repaired, spaces collapsed."""
    text = text.replace("Ã¤", "ä").replace("Ã¶", "ö").replace("Ã¼", "ü")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(text.split())


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", fold(text).replace("&", " and ")))


@dataclass(frozen=True)
class VendorInfo:
    key: str
    name: str
    aliases: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    vendors: dict[str, VendorInfo]
    # alias as a word tuple -> vendor keys (more than one: ambiguous alias)
    alias_index: dict[tuple[str, ...], frozenset[str]]
    generic: frozenset[str]
    phrases: tuple[tuple[re.Pattern[str], str], ...]
    version_words: frozenset[str]
    source: str
    supplier_noise: frozenset[str] = frozenset()
    alias_regex: re.Pattern[str] | None = None


def _load_yaml(name: str, path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        source = f"medsentry/data/{name}"
        text = (resources.files("medsentry") / "data" / name).read_bytes()
    else:
        source = str(path)
        try:
            text = Path(path).read_bytes()  # bad UTF-8: a YAMLError below
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        doc = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), str):
        raise ConfigError(f"{source}: must be a mapping with a 'source' string")
    return doc, source


def load_vocabulary(vendors_path: Path | None = None, vocab_path: Path | None = None) -> Vocabulary:
    doc, source = _load_yaml("vendor_aliases.yaml", vendors_path)
    raw = doc.get("vendors")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'vendors' must be a non-empty list")
    vendors: dict[str, VendorInfo] = {}
    index: dict[tuple[str, ...], set[str]] = {}
    for i, entry in enumerate(raw):
        where = f"{source}: vendors[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping")
        key, name = entry.get("key"), entry.get("name")
        aliases = entry.get("aliases", [])
        ambiguous = entry.get("ambiguous", [])
        sources = entry.get("sources")
        if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9_]+", key):
            raise ConfigError(f"{where}: 'key' must be a lower-case identifier")
        if key in vendors:
            raise ConfigError(f"{where}: vendor key {key!r} is defined twice")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' must be a string")
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"{where}: 'aliases' must be a list of strings")
        if not isinstance(ambiguous, list) or not all(isinstance(a, str) for a in ambiguous):
            raise ConfigError(f"{where}: 'ambiguous' must be a list of strings")
        if (
            not isinstance(sources, list)
            or not sources
            or not all(isinstance(s, str) and s for s in sources)
        ):
            raise ConfigError(f"{where} ({key}): 'sources' must list at least one public source")
        vendors[key] = VendorInfo(key, name, tuple(aliases), tuple(sources))
        for alias in (name, *aliases, *ambiguous):
            words = tuple(w for w in _words(_LEGAL.sub(" ", fold(alias))) if w)
            if not words:
                continue
            owners = index.setdefault(words, set())
            if alias not in ambiguous and owners and alias in aliases:
                other = sorted(owners - {key})
                if other:
                    raise ConfigError(
                        f"{where} ({key}): alias {alias!r} also belongs to {other[0]};"
                        " list it under 'ambiguous' in both"
                    )
            owners.add(key)
    vdoc, vsource = _load_yaml("match_vocabulary.yaml", vocab_path)
    generic = vdoc.get("generic")
    phrases = vdoc.get("phrases")
    version_words = vdoc.get("version_words")
    if not isinstance(generic, list) or not all(isinstance(g, str) for g in generic):
        raise ConfigError(f"{vsource}: 'generic' must be a list of words")
    if not isinstance(phrases, dict):
        raise ConfigError(f"{vsource}: 'phrases' must map a token to its spellings")
    if not isinstance(version_words, list):
        raise ConfigError(f"{vsource}: 'version_words' must be a list")
    noise = vdoc.get("supplier_noise", [])
    if not isinstance(noise, list) or not all(isinstance(w, str) for w in noise):
        raise ConfigError(f"{vsource}: 'supplier_noise' must be a list of words")
    rewrites: list[tuple[str, str]] = []
    for token, spellings in phrases.items():
        if not isinstance(spellings, list) or not all(isinstance(s, str) for s in spellings):
            raise ConfigError(f"{vsource}: phrases.{token} must be a list of strings")
        rewrites.extend((fold(s), str(token)) for s in spellings)
    rewrites.sort(key=lambda r: -len(r[0]))
    compiled = tuple(
        (re.compile(r"(?<![a-z0-9])" + re.escape(s) + r"(?![a-z0-9])"), t) for s, t in rewrites
    )
    vocab = Vocabulary(
        vendors=vendors,
        alias_index={k: frozenset(v) for k, v in index.items()},
        generic=frozenset(fold(g) for g in generic),
        phrases=compiled,
        version_words=frozenset(fold(w) for w in version_words),
        source=f"{source}, {vsource}",
        supplier_noise=frozenset(fold(w) for w in noise),
    )
    object.__setattr__(vocab, "alias_regex", _alias_regex(vocab))
    return vocab


@cache
def vocabulary() -> Vocabulary:
    """The packaged knowledge files, loaded and validated once."""
    return load_vocabulary()


@dataclass(frozen=True, slots=True)
class VendorHit:
    keys: frozenset[str]
    alias: str  # as found in the text
    ambiguous: bool


def _alias_regex(vocab: Vocabulary) -> re.Pattern[str]:
    alts = sorted(vocab.alias_index, key=lambda words: (-len(words), -len("".join(words))))
    body = "|".join(r"[^a-z0-9]+".join(re.escape(w) for w in words) for words in alts)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")


def find_vendors(text: str, vocab: Vocabulary | None = None) -> tuple[list[VendorHit], str]:
    """Vendor aliases found in `text` (longest first) and the folded text without them."""
    vocab = vocab or vocabulary()
    rx = vocab.alias_regex or _alias_regex(vocab)
    low = fold(text).replace("&", " and ")
    hits: list[VendorHit] = []

    def take(m: re.Match[str]) -> str:
        words = tuple(re.findall(r"[a-z0-9]+", m.group(0)))
        owners = vocab.alias_index.get(words, frozenset())
        hits.append(VendorHit(owners, m.group(0), len(owners) > 1))
        return " "

    rest = rx.sub(take, low)
    return hits, " ".join(rest.split())


def vendor_keys(name: str, vocab: Vocabulary | None = None) -> frozenset[str]:
    """All vendor keys named in a vendor string ("Silex Technology and GE Healthcare")."""
    hits, rest = find_vendors(name, vocab)
    keys: set[str] = set()
    for h in hits:
        keys |= h.keys
    if not keys and rest.strip():
        keys.add("unknown:" + "_".join(rest.split()))
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class Features:
    words: frozenset[str]
    models: frozenset[str]  # as written (compacted): "mx800", "8015", "670g"
    ranges: tuple[tuple[str, int, int], ...] = ()
    numbers: frozenset[str] = frozenset()  # bare numbers taken out of codes: "mx800" -> "800"

    def model_hits(self, other: Features) -> set[str]:
        """Model codes in common, counting `other`'s codes that fall in this one's ranges."""
        hits = set(self.models & other.models)
        for prefix, lo, hi in self.ranges:
            for m in other.models:
                mm = re.fullmatch(r"([a-z]*)(\d+)", m)
                if mm and mm.group(1) == prefix and lo <= int(mm.group(2)) <= hi:
                    hits.add(m)
        for prefix, lo, hi in other.ranges:
            for m in self.models:
                mm = re.fullmatch(r"([a-z]*)(\d+)", m)
                if mm and mm.group(1) == prefix and lo <= int(mm.group(2)) <= hi:
                    hits.add(m)
        return hits


_RANGE = re.compile(
    r"(?<![a-z0-9])([a-z]{1,4})[ \-]?(\d+)\s*-\s*(?:([a-z]{1,4})[ \-]?)?(\d+)(?![a-z0-9])"
)
_LIST = re.compile(
    r"(?<![a-z0-9])([a-z]{0,4})[ \-]?(\d+[a-z]{0,2})((?:\s*/\s*\d+[a-z]{0,2}(?![a-z0-9]))+)"
)
_COMPACT = re.compile(r"(?<![a-z0-9])([a-z]{1,4})[ \-](\d+[a-z0-9]*)(?![a-z0-9])")


def _compact(m: re.Match[str], generic: frozenset[str]) -> str:
    """Compact a code: MX 800 -> mx800; a 4-letter name stays a word too (EPIQ 7 -> epiq, epiq7)."""
    prefix, code = m.group(1), m.group(2)
    if prefix in generic:
        return m.group(0)
    return f"{prefix} {prefix}{code}" if len(prefix) >= 4 else prefix + code


def features(text: str, vocab: Vocabulary | None = None) -> Features:
    vocab = vocab or vocabulary()
    t = fold(text).replace("&", " and ")
    t = re.sub(r"\(([a-z]?)\)", r"\1", t)  # "MMT-522(K)" -> "MMT-522K"
    t = re.sub(r"\bincluding(?=[a-z0-9])", "including ", t)
    for pattern, token in vocab.phrases:
        t = pattern.sub(f" {token} ", t)
    ranges: list[tuple[str, int, int]] = []
    for m in _RANGE.finditer(t):
        p1, lo, p2, hi = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
        if (p2 is None or p2 == p1) and lo < hi and p1 not in vocab.generic | {"rev"}:
            ranges.append((p1, lo, hi))
    models: set[str] = set()
    for m in _LIST.finditer(t):  # MX700/800, 522/722, MMT-512 / MMT-712
        prefix = m.group(1) if m.group(1) not in vocab.generic else ""
        for num in [m.group(2), *re.findall(r"\d+[a-z]{0,2}", m.group(3))]:
            models.add(prefix + num)
            models.add(re.sub(r"[a-z]+$", "", num))
    t = _COMPACT.sub(lambda m: _compact(m, vocab.generic), t)
    words: set[str] = set()
    numbers: set[str] = set()
    for tok in re.findall(r"[a-z0-9]+(?:\.[0-9]+)*", t):
        if any(c.isdigit() for c in tok):
            models.add(tok)
            digits = re.match(r"^[a-z]*(\d+)", tok)
            if digits and digits.group(1) != tok and len(digits.group(1)) >= 3:
                numbers.add(digits.group(1))  # "spot4400" also matches a bare "4400"
        elif len(tok) >= 2 and tok not in vocab.generic:
            words.add(tok)
    return Features(frozenset(words), frozenset(models), tuple(ranges), frozenset(numbers - models))


_VERSION_AFTER_WORD = re.compile(
    r"(?<![a-z0-9])(?:(?:ver|version|rev|revision|fw|firmware|sw|software|release)\.?\s*[:#]?\s*"
    r"|[vr](?=\d))"
    r"((?:\d[0-9a-z]*|[a-z]{1,3}\.?\d[0-9a-z]*|[a-z])(?:[._\-][0-9a-z]+)*)(?![0-9a-z])"
)
_DOTTED = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)+[a-z]?(?:[._\-][0-9a-z]+)*)(?![0-9a-z.])")


def split_descriptor(text: str) -> tuple[str, str]:
    """Free text "BD Alaris 8015 PC Unit v12.1.2" -> ("BD Alaris 8015 PC Unit", "12.1.2")."""
    low = fold(text)
    matches = list(_VERSION_AFTER_WORD.finditer(low))
    if matches:
        m = matches[-1]
        return (low[: m.start()] + " " + low[m.end() :]).strip(), m.group(1)
    dotted = list(_DOTTED.finditer(low))
    if dotted:
        m = dotted[-1]
        return (low[: m.start()] + " " + low[m.end() :]).strip(), m.group(1)
    return low, ""
