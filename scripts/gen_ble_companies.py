#!/usr/bin/env python3
"""Generate the Bluetooth SIG company identifier extract the inventory ships
(src/medsentry/data/inventory_ble_companies.tsv.gz).

Source: the company identifier table compiled into Wireshark (Debian wireshark-common/tshark),
dumped with `tshark -G values` (field btcommon.eir_ad.entry.company_id), which Wireshark keeps
in step with the Bluetooth SIG Assigned Numbers (assigned_numbers/company_identifiers). Run
again when the package is upgraded; nothing is fetched at run time.

Output: gzip'd UTF-8 TSV, `#` header lines (source, version, date), then `C<id hex>\\t<name>`
for company identifiers and `U<uuid16 hex>\\t<company>` for member service UUIDs (0xFC00-0xFEFF).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import subprocess
from pathlib import Path

OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "medsentry"
    / "data"
    / "inventory_ble_companies.tsv.gz"
)
FIELD = "btcommon.eir_ad.entry.company_id"
UUID_FIELD = "btcommon.eir_ad.entry.uuid_16"
MEMBER_UUIDS = range(0xFC00, 0xFF00)  # 16-bit UUIDs the SIG assigns to member companies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    dump = subprocess.run(["tshark", "-G", "values"], capture_output=True, text=True, check=True)
    version = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout
    version = version.splitlines()[0] if version else "tshark"
    rows, members = {}, {}
    for line in dump.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] == FIELD:
            rows[int(parts[2])] = parts[3].strip().replace("\t", " ")
        elif (
            len(parts) == 4
            and parts[0] == "V"
            and parts[1] == UUID_FIELD
            and int(parts[2]) in MEMBER_UUIDS
        ):
            members[int(parts[2])] = parts[3].strip().replace("\t", " ")
    header = [
        "# Bluetooth SIG company identifiers (Core Supplement Part A §1.4 manufacturer data)",
        f"# source: {version}, `tshark -G values` field {FIELD}",
        f"# generated: {dt.date.today().isoformat()} by scripts/gen_ble_companies.py",
        f"# entries: {len(rows)} company identifiers (C), {len(members)} member service UUIDs (U)",
    ]
    lines = [f"C{k:04X}\t{v}" for k, v in sorted(rows.items())]
    lines += [f"U{k:04X}\t{v}" for k, v in sorted(members.items())]
    body = "\n".join(header + lines) + "\n"
    args.out.write_bytes(gzip.compress(body.encode(), compresslevel=9, mtime=0))
    print(f"{args.out}: {len(rows)} company identifiers, {len(members)} member UUIDs, {version}")


if __name__ == "__main__":
    main()
