#!/usr/bin/env python3
"""Generate the compact IEEE OUI extract the inventory ships (data/inventory_oui.tsv.gz).

Source: Wireshark's `manuf` file (Debian package wireshark-common, /usr/share/wireshark/manuf),
itself generated from the IEEE Registration Authority's MA-L, MA-M, MA-S and IAB registries
(https://standards-oui.ieee.org/), or Debian's ieee-data oui.csv (MA-L only). Run again when the
package is upgraded; nothing is fetched at run time.

Output: gzip'd UTF-8 TSV, `#` header lines (source, package version, date), then one line per
assignment: `<prefix hex>/<bits>\t<organization>`, e.g. `00095C/24\tPhilips Medical Systems ...`.

    python scripts/gen_oui.py [--manuf /usr/share/wireshark/manuf | --ieee-csv oui.csv]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import re
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "medsentry" / "data" / "inventory_oui.tsv.gz"
_PREFIX = re.compile(r"^([0-9A-Fa-f]{2}(?:[:\-.][0-9A-Fa-f]{2}){2,5})(?:/(\d+))?$")


def _package_version(name: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def from_manuf(path: Path) -> list[tuple[str, int, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        m = _PREFIX.match(parts[0].strip())
        if not m or len(parts) < 2:
            continue
        hexes = re.sub(r"[:\-.]", "", m.group(1)).upper()
        bits = int(m.group(2)) if m.group(2) else len(hexes) * 4
        if bits not in (24, 28, 36):  # MA-L, MA-M, MA-S/IAB; skip well-known multicast ranges
            continue
        name = (parts[2] if len(parts) > 2 and parts[2].strip() else parts[1]).strip()
        rows.append((hexes[: (bits + 3) // 4], bits, name))
    return rows


def from_ieee_csv(path: Path) -> list[tuple[str, int, str]]:
    # Registry,Assignment,Organization Name,Organization Address
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return [
            (r["Assignment"].upper(), len(r["Assignment"]) * 4, r["Organization Name"].strip())
            for r in csv.DictReader(f)
        ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manuf", type=Path, default=Path("/usr/share/wireshark/manuf"))
    ap.add_argument("--ieee-csv", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.ieee_csv:
        rows, source = (
            from_ieee_csv(args.ieee_csv),
            f"Debian ieee-data {_package_version('ieee-data')} ({args.ieee_csv})",
        )
    else:
        rows = from_manuf(args.manuf)
        version = _package_version("wireshark-common")
        source = f"Wireshark manuf, Debian wireshark-common {version} ({args.manuf})"
    rows = sorted(set(rows))
    header = [
        "# IEEE Registration Authority assignments (MA-L /24, MA-M /28, MA-S and IAB /36)",
        f"# source: {source}",
        f"# generated: {dt.date.today().isoformat()} by scripts/gen_oui.py",
        f"# entries: {len(rows)}",
    ]
    body = "\n".join(header + [f"{p}/{b}\t{n.replace(chr(9), ' ')}" for p, b, n in rows]) + "\n"
    args.out.write_bytes(gzip.compress(body.encode(), compresslevel=9, mtime=0))
    print(f"{args.out}: {len(rows)} assignments from {source}")


if __name__ == "__main__":
    main()
