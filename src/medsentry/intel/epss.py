"""FIRST EPSS scores, CSV as published (https://www.first.org/epss/data_stats):

    #model_version:v2023.03.01,score_date:2024-01-15T00:00:00+0000
    cve,epss,percentile
    CVE-1999-0001,0.01025,0.83507

Gzipped files (epss_scores-YYYY-MM-DD.csv.gz) are read as well.
"""

from __future__ import annotations

import gzip
import re

from medsentry.errors import InputError
from medsentry.intel.model import EpssScore

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")


def is_epss(data: bytes) -> bool:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)[:512]
        except (OSError, EOFError):
            return False
    head = data[:512].decode("utf-8", "replace").lower()
    return head.startswith("#model_version") or head.startswith("cve,epss")


def parse_epss(data: bytes, source: str) -> tuple[dict[str, str], list[EpssScore]]:
    """The header metadata (model_version, score_date) and the scores."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"not a readable gzip file ({exc})", source) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("EPSS CSV is not UTF-8", source, exc.start) from exc
    meta: dict[str, str] = {}
    out: list[EpssScore] = []
    header_seen = False
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):  # "#model_version:v2023.03.01,score_date:2024-01-15T..."
            for item in line[1:].split(","):
                key, _, value = item.partition(":")
                if key.strip():
                    meta[key.strip()] = value.strip()
            continue
        cells = [c.strip() for c in line.split(",")]
        if not header_seen:
            if [c.lower() for c in cells[:3]] != ["cve", "epss", "percentile"]:
                raise InputError(
                    f"EPSS CSV line {lineno}: header must be 'cve,epss,percentile'", source
                )
            header_seen = True
            continue
        if len(cells) < 3 or not _CVE.match(cells[0]):
            raise InputError(f"EPSS CSV line {lineno}, column cve: {cells[0]!r}", source)
        try:
            epss, pct = float(cells[1]), float(cells[2])
        except ValueError:
            raise InputError(
                f"EPSS CSV line {lineno}, column epss/percentile: not a number", source
            ) from None
        if not (0.0 <= epss <= 1.0 and 0.0 <= pct <= 1.0):
            raise InputError(f"EPSS CSV line {lineno}: epss/percentile outside 0..1", source)
        out.append(EpssScore(cells[0], epss, pct))
    if not header_seen:
        raise InputError("EPSS CSV: no 'cve,epss,percentile' header", source)
    return meta, out
