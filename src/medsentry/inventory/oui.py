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
from medsentry.inventory.addresses import is_local_admin_mac

_FILE = "inventory_oui.tsv.gz"


@functools.cache
def _registry() -> tuple[dict[int, dict[int, str]], str]:
    path = resources.files("medsentry").joinpath("data", _FILE)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"data/{_FILE}: unreadable OUI extract: {exc}") from None
    by_bits: dict[int, dict[int, str]] = {24: {}, 28: {}, 36: {}}
    source = ""
    lines = text.splitlines()
    for line in lines[:8]:
        if line.startswith("# source:"):
            source = line[len("# source:") :].strip()
    try:
        for line in lines:
            if line[:1] == "#":
                continue
            prefix, org = line.split("\t", 1)
            by_bits[int(prefix[-2:])][int(prefix[:-3], 16)] = org
    except (ValueError, KeyError):
        n = lines.index(line) + 1
        raise ConfigError(f"data/{_FILE}: line {n}: expected '<hex>/<bits>\\t<name>'") from None
    if not by_bits[24]:
        raise ConfigError(f"data/{_FILE}: no assignments")
    return by_bits, source


def source() -> str:
    return _registry()[1]


def lookup(mac: str) -> tuple[str, str] | None:
    """(organization, assigned prefix) for a MAC, or None (unassigned or locally administered)."""
    try:
        value = int(mac.replace(":", "").replace("-", ""), 16)
    except ValueError:
        return None
    if is_local_admin_mac(mac):
        return None
    by_bits = _registry()[0]
    for bits in (36, 28, 24):
        org = by_bits[bits].get(value >> (48 - bits))
        if org is not None:
            return org, f"{value >> (48 - bits):0{(bits + 3) // 4}X}/{bits}"
    return None
