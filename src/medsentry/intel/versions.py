"""Version semantics for device firmware and software as advisories write them.

Versions are split into segments of digits and letters ("B.06.18" -> b, 6, 18; "22D24" -> 22,
d, 24; "12.1.2 Build 7" -> 12, 1, 2, 7). Two versions compare segment by segment; numbers
against numbers, letters against letters. A number against a letter has no order (a vendor
changed scheme, or the two strings are not versions of the same thing): `compare` returns None
and the matcher reports "potentially affected" rather than guessing. Trailing zero segments are
dropped so "1.0" == "1" and "Rev M.00" == "M".

A `VersionSpec` is what an advisory says about affected versions:

- vers ranges (https://github.com/package-url/purl-spec VERSION-RANGE-SPEC.rst): "vers:all/*",
  "vers:generic/>=1.0|<2.0";
- CISA's prose ranges: "<= 2.3.6", ">= 1.3.4 | < 1.5.3" (a lower bound followed by an upper
  bound is one interval; other items are alternatives), "A10 < A11", "Rev B-M", "2.X" (a release
  line), "2.3.6 and below", "prior to 3.0";
- date-based statements ("< July 1 2017", "shipped between ...") which no software version can
  answer: the spec is `kind == "date"` and every device is "potentially affected".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Segment = int | str
Verdict = Literal["affected", "not_affected", "unknown"]

_SEG = re.compile(r"\d+|[a-z]+|\*")
_LEADING_WORDS = re.compile(
    r"^(?:version|ver\.?|rev(?:ision)?\.?|release|firmware|fw|software|sw|build)\s*[:.]?\s*"
)
_V_PREFIX = re.compile(r"^v(?=\d)")
_BUILD = re.compile(r"\bbuild\s*[_\-.]?\s*(\d+)\b")
_SERVICE_PACK = re.compile(r"\b(?:service\s+pack|sp)\s*(\d+)\b")
# A token that reads as a version: digit-led (12.1.2, 2.4a, 22d24, 1.4.2.0-9d9eff4), a short
# letter prefix then a digit (b.02, bt03, sv20.1, l81, vm5.0, r4.1l1), a single revision letter,
# or a release line with wildcards (2.x, 12.2.x.x).
_VERSION_TOKEN = re.compile(
    r"^(?:v?\d[0-9a-z]*(?:[._\-][0-9a-z*]+)*|[a-z]{1,3}\.?\d[0-9a-z]*(?:\.[0-9a-z]+)*|[a-z])$"
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(
    rf"\b(?:{_MONTHS})\b|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b|\bshipped\b|\bdistributed\b|\bmanufactured\b"
)


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version: comparable segments, and whether it ends in a wildcard (2.x)."""

    text: str = field(compare=False)
    segments: tuple[Segment, ...]
    wildcard: bool = False
    width: int = field(default=0, compare=False)  # segments as written, before trailing zeros

    def __str__(self) -> str:
        return self.text


def _segments(text: str) -> tuple[tuple[Segment, ...], bool, int]:
    segs: list[Segment] = []
    wildcard = False
    for part in re.split(r"[.\-_/ ]+", text):
        if part in ("x", "*"):
            wildcard = True
            break
        for s in _SEG.findall(part):
            if s == "*":
                wildcard = True
                break
            segs.append(int(s) if s.isdigit() else s)
        if wildcard:
            break
    width = len(segs)
    while segs and segs[-1] == 0:  # 1.0 == 1; M.00 == M
        segs.pop()
    return tuple(segs), wildcard, width


def parse_version(text: str | None) -> Version | None:
    """A device or advisory version string -> Version, or None when it holds no version."""
    if not text:
        return None
    t = " ".join(text.strip().lower().split())
    t = _LEADING_WORDS.sub("", t)
    t = _V_PREFIX.sub("", t)
    if not t:
        return None
    extra: list[int] = []
    m = _BUILD.search(t)
    if m and m.start() > 0:
        extra.append(int(m.group(1)))
        t = t[: m.start()].strip()
    m = _SERVICE_PACK.search(t)
    if m and m.start() > 0:
        extra.insert(0, int(m.group(1)))
        t = t[: m.start()].strip()
    head = t.split(" ")[0]
    if not _VERSION_TOKEN.match(head):
        return None
    segs, wildcard, width = _segments(_V_PREFIX.sub("", head))
    if extra and not wildcard:
        segs = segs + tuple(extra)
        width += len(extra)
    if not segs:
        if wildcard:
            return None
        segs = (0,)
    return Version(text.strip(), segs, wildcard, max(width, len(segs)))


def _later_build(v: Version, listed: Version) -> bool:
    """`v` extends `listed` with more segments ("12.1.2" after a listed "12.1", not "1.4.0")."""
    return v.width > listed.width and compare(v, listed, prefix=len(listed.segments)) == 0


def compare(a: Version, b: Version, prefix: int | None = None) -> int | None:
    """-1, 0, 1 like cmp(); None when the two have no common order (number vs letter).

    With `prefix`, only the first `prefix` segments of `a` take part (release lines: 2.x).
    """
    sa = a.segments if prefix is None else a.segments[:prefix]
    sb = b.segments
    for x, y in zip(sa, sb, strict=False):
        if isinstance(x, int) != isinstance(y, int):
            return None
        if x != y:
            return -1 if x < y else 1  # type: ignore[operator]
    if len(sa) == len(sb):
        return 0
    return -1 if len(sa) < len(sb) else 1


@dataclass(frozen=True, slots=True)
class Interval:
    """One alternative of a spec: [lo, hi] with inclusivity, or one exact version."""

    lo: Version | None = None
    lo_incl: bool = True
    hi: Version | None = None
    hi_incl: bool = True
    exact: Version | None = None
    exclude: bool = False  # vers "!="

    def describe(self) -> str:
        if self.exact is not None:
            return ("!= " if self.exclude else "") + self.exact.text
        parts = []
        if self.lo is not None:
            parts.append((">= " if self.lo_incl else "> ") + self.lo.text)
        if self.hi is not None:
            parts.append(("<= " if self.hi_incl else "< ") + self.hi.text)
        return " and ".join(parts) or "*"

    def test(self, v: Version) -> tuple[Verdict, str]:
        if self.exact is not None:
            e = self.exact
            if e.wildcard:
                c = compare(v, e, prefix=len(e.segments))
                if c is None:
                    return "unknown", f"{v} and {e.text} are not comparable"
                return (
                    ("affected", f"{v} is in release line {e.text}")
                    if c == 0
                    else (
                        "not_affected",
                        f"{v} is not in {e.text}",
                    )
                )
            c = compare(v, e)
            if c is None:
                return "unknown", f"{v} and {e.text} are not comparable"
            if c == 0:
                return "affected", f"{v} equals listed version {e.text}"
            if _later_build(v, e):
                return "unknown", f"{v} is a later build of listed version {e.text}"
            return "not_affected", f"{v} is not a listed version ({e.text})"
        if self.lo is not None:
            c = compare(v, self.lo, prefix=len(self.lo.segments) if self.lo.wildcard else None)
            if c is None:
                return "unknown", f"{v} and {self.lo.text} are not comparable"
            if c < 0 or (c == 0 and not self.lo_incl):
                return "not_affected", f"{v} is below {self.describe()}"
        if self.hi is not None:
            h = self.hi
            c = compare(v, h, prefix=len(h.segments) if h.wildcard else None)
            if c is None:
                return "unknown", f"{v} and {h.text} are not comparable"
            if c > 0 or (c == 0 and not self.hi_incl):
                if self.hi_incl and not h.wildcard and _later_build(v, h):
                    return "unknown", f"{v} is a later build of the last affected {h.text}"
                return "not_affected", f"{v} is above {self.describe()}"
        return "affected", f"{v} is within {self.describe()}"


SpecKind = Literal["all", "versions", "date", "qualifier", "unknown"]


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """An advisory's statement of affected versions, parsed."""

    text: str
    kind: SpecKind
    intervals: tuple[Interval, ...] = ()
    qualifiers: tuple[str, ...] = ()  # non-version words found (model numbers, options)
    notes: tuple[str, ...] = field(default=())
    # vers with an ecosystem scheme univers knows (vers:pypi/..., vers:maven/...): compared by
    # that ecosystem's rules instead of the vendor-segment rules
    scheme: str = ""
    # the range is a module's firmware ("Version A, Firmware A.03.09" of a WLAN card), which an
    # inventory's software version of the host device does not tell: it can confirm, not clear
    module: bool = False

    def test(self, v: Version | None) -> tuple[Verdict, str]:
        verdict, why = self._test(v)
        if self.module and verdict == "not_affected":
            return "unknown", f"{why}; the range is a module's firmware, not the device's version"
        return verdict, why

    def _test(self, v: Version | None) -> tuple[Verdict, str]:
        """Is version `v` covered? With a one-line reason."""
        if self.kind == "all":
            return "affected", "all versions are affected"
        if self.scheme and v is not None:
            found = _univers_test(self.text, v.text)
            if found is not None:
                return found
        if self.kind == "date":
            return "unknown", f"affected by date ({self.text!r}), not by version"
        if self.kind in ("qualifier", "unknown") or not self.intervals:
            return "unknown", f"advisory version text {self.text!r} is not a version range"
        if v is None:
            return "unknown", f"device version unknown; affected: {self.describe()}"
        unknown: str | None = None
        excluded = [i for i in self.intervals if i.exclude]
        for iv in excluded:
            if iv.exact is not None and compare(v, iv.exact) == 0:
                return "not_affected", f"{v} is excluded ({iv.describe()})"
        for iv in self.intervals:
            if iv.exclude:
                continue
            verdict, why = iv.test(v)
            if verdict == "affected":
                return verdict, why
            if verdict == "unknown" and unknown is None:
                unknown = why
        if unknown is not None:
            return "unknown", unknown
        return "not_affected", f"{v} is outside {self.describe()}"

    def describe(self) -> str:
        if self.kind == "all":
            return "all versions"
        if not self.intervals:
            return self.text
        return " | ".join(i.describe() for i in self.intervals)


_OPS = ("<=", ">=", "!=", "<", ">", "=")
_ITEM = re.compile(r"^(<=|>=|!=|<|>|=)?\s*(.+)$")
_PAIR = re.compile(r"^(\S+)\s*(<=|<)\s*(\S+)$")  # "A10 < A11", "A.01 <= C.0x"
_LETTER_RANGE = re.compile(r"^(?:rev\.?\s*)?([a-z])\s*-\s*([a-z])$")  # "Rev B-M"
_PARENS = re.compile(r"\(([^()]*)\)")
_MODEL_NUMBER = re.compile(r"^\d{4,}[a-z]?$")  # bare 4+ digit integers are model numbers


def _version_of(token: str) -> Version | None:
    token = token.strip().lower()
    if not token or (
        not _VERSION_TOKEN.match(_V_PREFIX.sub("", token)) and not _VERSION_TOKEN.match(token)
    ):
        return None
    return parse_version(token)


def _split_item(item: str) -> tuple[Version | None, str]:
    """The leading version of an item and the words after it (a qualifier or a note)."""
    words = item.split()
    if not words:
        return None, ""
    rest_words = words[1:]
    m = _BUILD.search(item) or _SERVICE_PACK.search(item)
    if m:
        v = parse_version(item[: m.end()])
        rest = item[m.end() :].strip()
        return v, rest
    head = words[0]
    if head in ("rev", "revision", "version", "release", "firmware", "fw") and rest_words:
        head, rest_words = rest_words[0], rest_words[1:]
    v = _version_of(head)
    if v is not None and rest_words and rest_words[0] == "model":
        rest_words = rest_words[1:]
    return v, " ".join(rest_words)


def _vers(text: str) -> VersionSpec:
    # VERSION-RANGE-SPEC: vers:<versioning-scheme>/<version-constraint>|...
    body = text[5:]
    scheme, _, constraints = body.partition("/")
    if scheme == "all" or constraints.strip() == "*":
        return VersionSpec(text, "all")
    spec = _constraints(text, [c for c in constraints.split("|") if c.strip()], vers=True)
    if scheme not in ("generic", "") and _univers_range(text) is not None:
        spec = VersionSpec(
            spec.text, spec.kind, spec.intervals, spec.qualifiers, spec.notes, scheme=scheme
        )
    return spec


def _univers_range(text: str):  # -> univers VersionRange | None
    from univers.version_range import VersionRange

    try:
        return VersionRange.from_string(text)
    except Exception:  # univers raises several types for schemes/constraints it cannot read
        return None


def _univers_test(text: str, version: str) -> tuple[Verdict, str] | None:
    """The verdict of univers for a vers range of a known ecosystem; None when it cannot tell."""
    rng = _univers_range(text)
    if rng is None:
        return None
    try:
        inside = rng.version_class(version.strip().lstrip("vV")) in rng
    except Exception:  # a version the ecosystem's scheme cannot parse
        return None
    if inside:
        return "affected", f"{version} is within {text} ({rng.scheme} ordering)"
    return "not_affected", f"{version} is outside {text} ({rng.scheme} ordering)"


def _constraints(text: str, items: list[str], *, vers: bool) -> VersionSpec:
    intervals: list[Interval] = []
    qualifiers: list[str] = []
    pending_lo: tuple[Version, bool] | None = None
    for raw in items:
        item = raw.strip().lower()
        if not item:
            continue
        lr = _LETTER_RANGE.match(item)
        if lr:
            lo, hi = parse_version(lr.group(1)), parse_version(lr.group(2))
            intervals.append(Interval(lo=lo, hi=hi))
            continue
        pr = _PAIR.match(item)
        if pr and not item.startswith(_OPS):
            lo, hi = _version_of(pr.group(1)), _version_of(pr.group(3))
            if lo is not None and hi is not None:
                intervals.append(Interval(lo=lo, hi=hi, hi_incl=pr.group(2) == "<="))
                continue
        m = _ITEM.match(item)
        op, rest = (m.group(1) or "=", m.group(2)) if m else ("=", item)
        v, tail = _split_item(rest)
        head = rest.split()[0] if rest.split() else ""
        if v is None or (op == "=" and not vers and _MODEL_NUMBER.match(head)):
            qualifiers.append(raw.strip())
            continue
        if tail:
            qualifiers.append(tail)
        if op in (">", ">="):
            if pending_lo is not None:
                intervals.append(Interval(lo=pending_lo[0], lo_incl=pending_lo[1]))
            pending_lo = (v, op == ">=")
            continue
        if op in ("<", "<="):
            if pending_lo is not None:
                lo, lo_incl = pending_lo
                intervals.append(Interval(lo=lo, lo_incl=lo_incl, hi=v, hi_incl=op == "<="))
                pending_lo = None
            else:
                intervals.append(Interval(hi=v, hi_incl=op == "<="))
            continue
        if pending_lo is not None:
            intervals.append(Interval(lo=pending_lo[0], lo_incl=pending_lo[1]))
            pending_lo = None
        intervals.append(Interval(exact=v, exclude=op == "!="))
    if pending_lo is not None:
        intervals.append(Interval(lo=pending_lo[0], lo_incl=pending_lo[1]))
    if not intervals:
        return VersionSpec(text, "qualifier", (), tuple(qualifiers))
    return VersionSpec(text, "versions", tuple(intervals), tuple(qualifiers))


def parse_spec(text: str) -> VersionSpec:
    """Parse an advisory's version or version-range text (see the module docstring)."""
    raw = text
    t = " ".join(text.strip().split())
    low = t.lower()
    if not low:
        return VersionSpec(raw, "all")
    if low.startswith("vers:"):
        return _vers(low)
    if low == "*" or low.startswith("* "):
        return VersionSpec(raw, "all", notes=(t[1:].strip(),) if len(t) > 1 else ())
    if low.startswith("(") and low.endswith(")") and low.count("(") == 1:
        low = low[1:-1].strip()
    notes = tuple(n.strip() for n in _PARENS.findall(low) if n.strip())
    body = _PARENS.sub(" ", low)
    body = " ".join(body.split())
    if _DATE.search(body):
        return VersionSpec(raw, "date", notes=notes)
    body = re.sub(r"^release\s+", "", body)
    fw = re.search(r"\bfirmware\s+([0-9a-z][\w.]*)", body)  # "Version A, Firmware A.03.09"
    if fw:
        body = fw.group(1)
    m = re.match(r"^(.+?)\s+(?:and|or)\s+(?:below|earlier|lower|prior)$", body)
    if m:
        body = "<= " + m.group(1)
    m = re.match(r"^(.+?)\s+(?:and|or)\s+(?:newer|later|above|higher)$", body)
    if m:
        body = ">= " + m.group(1)
    m = re.match(r"^(?:prior to|before|earlier than)\s+(.+)$", body)
    if m:
        body = "< " + m.group(1)
    if "|" in body:
        items = body.split("|")
    elif re.fullmatch(r"(?:v?\d[\w.]*\s+){1,}v?\d[\w.]*", body):
        items = body.split()  # "1.3.2 1.4.0 1.4.1": a space-separated list of releases
    else:
        items = [body]
    spec = _constraints(raw, items, vers=False)
    if notes or fw:
        spec = VersionSpec(
            spec.text, spec.kind, spec.intervals, spec.qualifiers, notes, module=bool(fw)
        )
    return spec
