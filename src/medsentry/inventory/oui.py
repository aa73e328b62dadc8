"""IEEE OUI registry lookups (MA-L /24, MA-M /28, MA-S and IAB /36), longest prefix first.

The data is a compact extract shipped in the package (`data/inventory_oui.tsv.gz`, made by
`scripts/gen_oui.py` from Wireshark's manuf / Debian ieee-data; its header names the source and
date). Nothing is fetched at run time.
"""

from __future__ import annotations

import bisect
import functools
import gzip
from importlib import resources

from medsentry.errors import ConfigError

_FILE = "inventory_oui.tsv.gz"
_BITS = (36, 28, 24)  # longest prefix first: MA-S/IAB inside MA-M inside MA-L


@functools.cache
def _registry() -> tuple[list[str], str]:
    """The assignment lines ("<hex prefix>/<bits>\t<organization>"), sorted for bisection,
    and the source named in the header. Lines are parsed when a lookup reaches them: building
    52,000 dictionary entries at start-up cost more than all the lookups of a scan."""
    path = resources.files("medsentry").joinpath("data", _FILE)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"data/{_FILE}: unreadable OUI extract: {exc}") from None
    lines = text.splitlines()
    source, entries = "", None
    for line in lines[:8]:
        if line.startswith("# source:"):
            source = line[len("# source:") :].strip()
        elif line.startswith("# entries:"):
            entries = line[len("# entries:") :].strip()
    body = [line for line in lines if line[:1] != "#"]
    if not body or entries != str(len(body)):  # the header counts the assignments
        raise ConfigError(f"data/{_FILE}: {len(body)} assignments, header says {entries}")
    body.sort()  # already sorted by scripts/gen_oui.py: a linear pass
    return body, source


def source() -> str:
    return _registry()[1]


@functools.lru_cache(maxsize=65536)
def _lookup36(value36: int) -> tuple[str, str] | None:
    lines = _registry()[0]
    for bits in _BITS:
        prefix = f"{value36 >> (36 - bits):0{(bits + 3) // 4}X}/{bits}"
        key = prefix + "\t"
        i = bisect.bisect_left(lines, key)
        if i < len(lines) and lines[i].startswith(key):
            return lines[i][len(key) :], prefix
    return None


def lookup(mac: str) -> tuple[str, str] | None:
    """(organization, assigned prefix) for a MAC, or None (unassigned or locally administered)."""
    digits = mac.replace(":", "").replace("-", "")
    if len(digits) != 12:
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    if value >> 40 & 0x02:  # U/L bit set: locally administered (IEEE 802 §8.2)
        return None
    return _lookup36(value >> 12)
