"""IEEE OUI registry lookups (MA-L /24, MA-M /28, MA-S and IAB /36), longest prefix first.

The data is a compact extract shipped in the package (`data/inventory_oui.tsv.gz`, made by
`scripts/gen_oui.py` from Wireshark's manuf / Debian ieee-data; its header names the source and
date). Nothing is fetched at run time.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from medsentry.errors import ConfigError

_FILE = "inventory_oui.tsv.gz"
_BITS = (36, 28, 24)  # longest prefix first: MA-S/IAB inside MA-M inside MA-L


@functools.cache
def _registry() -> tuple[bytes, int, str]:
    """The extract's UTF-8 text, where its assignment lines begin ("<hex prefix>/<bits>\t
    <organization>", after the `#` header), and the source named in the header.

    scripts/gen_oui.py writes the assignments sorted (a test checks the shipped file), so a
    lookup bisects the text itself: a scan makes a few dozen lookups, and even splitting the
    text into its 52,000 lines cost more at start-up than all of them."""
    path = resources.files("medsentry").joinpath("data", _FILE)
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise ConfigError(f"data/{_FILE}: unreadable OUI extract: {exc}") from None
    source, entries, start = "", None, 0
    while data.startswith(b"#", start):
        end = _line_end(data, start, len(data))
        try:
            line = data[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"data/{_FILE}: unreadable OUI extract: {exc}") from None
        if line.startswith("# source:"):
            source = line[len("# source:") :].strip()
        elif line.startswith("# entries:"):
            entries = line[len("# entries:") :].strip()
        start = end + 1
    start = min(start, len(data))
    count = data.count(b"\n", start) + (0 if data.endswith(b"\n") or start == len(data) else 1)
    if not count or entries != str(count):  # the header counts the assignments
        raise ConfigError(f"data/{_FILE}: {count} assignments, header says {entries}")
    return data, start, source


def _line_end(data: bytes, start: int, stop: int) -> int:
    """Where the line beginning at `start` ends (its newline, or `stop`)."""
    end = data.find(b"\n", start, stop)
    return stop if end < 0 else end


def _bisect(data: bytes, lo: int, key: bytes) -> int:
    """Where the first line of the sorted lines data[lo:] that is not less than `key` begins
    (`bisect.bisect_left` over the lines). `lo` and `hi` stay line starts."""
    hi = len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        newline = data.rfind(b"\n", lo, mid)
        start = lo if newline < 0 else newline + 1  # the line `mid` is in
        end = _line_end(data, start, hi)
        if data[start:end] < key:
            lo = min(end + 1, hi)
        else:
            hi = start
    return lo


def source() -> str:
    return _registry()[2]


@functools.lru_cache(maxsize=65536)
def _lookup36(value36: int) -> tuple[str, str] | None:
    data, start, _ = _registry()
    for bits in _BITS:
        prefix = f"{value36 >> (36 - bits):0{(bits + 3) // 4}X}/{bits}"
        key = f"{prefix}\t".encode()
        i = _bisect(data, start, key)
        if data.startswith(key, i):
            org = data[i + len(key) : _line_end(data, i, len(data))]
            return org.decode("utf-8", "replace"), prefix
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
