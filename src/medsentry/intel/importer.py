"""`medsentry intel import`: files and directories of intelligence, kind detected from content.

- CSAF 2.0 documents (`document.csaf_version`), CISA KEV (`catalogVersion`), NVD CVE API 2.0
  (`format: NVD_CVE`), OSV records (one, an array, `{"vulns": [...]}`, or a zip export) and
  FIRST EPSS CSV (`#model_version` header line, optionally gzipped).
- A directory is walked (JSON, CSV, CSV.gz, zip); JSON files of no known kind (CSAF ROLIE
  feeds, provider-metadata.json) and files that are not JSON and not named .json (a mirror's
  LICENSE or README) are skipped and counted. A file named on the command line must be one.

All files of one run are parsed before anything is written: a malformed file stops the run with
one line naming the file and the field, and the store keeps exactly what it had. Each kind is
then saved in one transaction and recorded in the ledger (`intel.imported`).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsentry.errors import InputError
from medsentry.intel import csaf, epss, kev, nvd, osv
from medsentry.intel.model import Advisory, EpssScore, KevEntry, PackageVuln
from medsentry.intel.store import ImportCounts, save_epss, save_kev, save_records
from medsentry.store.db import Store

KINDS = ("csaf", "kev", "epss", "osv", "nvd")
_SKIP_SUFFIXES = (".sha256", ".sha512", ".asc", ".txt", ".md", ".html")


@dataclass
class Parsed:
    records: list[tuple[Advisory | PackageVuln, str]] = field(default_factory=list)
    kev: list[tuple[str, list[KevEntry], str, str]] = field(default_factory=list)
    epss: list[tuple[dict[str, str], list[EpssScore], str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + n


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc


def detect(data: bytes, name: str, *, strict: bool = True) -> tuple[str | None, Any]:
    """(kind, decoded JSON or None) from a file's bytes and name.

    A CSV named on the command line is EPSS (so its errors are EPSS errors); in a directory
    only a CSV with the EPSS header is (a CSAF directory's changes.csv is not).
    """
    low = name.lower()
    if epss.is_epss(data):
        return "epss", None
    if low.endswith((".csv", ".csv.gz")):
        return ("epss" if strict else None), None
    if low.endswith(".zip"):
        return "osv", None
    if not strict and not low.endswith(".json") and data.lstrip()[:1] not in (b"{", b"["):
        return None, None  # in a directory: a LICENSE or a key file is no document, skipped
    doc = csaf.decode_json(data, name)
    if csaf.is_csaf(doc):
        return "csaf", doc
    if kev.is_kev(doc):
        return "kev", doc
    if nvd.is_nvd(doc):
        return "nvd", doc
    if osv.osv_records(doc) is not None:
        return "osv", doc
    return None, doc


def _osv_zip(data: bytes, source: str) -> list[PackageVuln]:
    import io

    out: list[PackageVuln] = []
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError(f"not a zip archive ({exc})", source) from exc
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".json"):
                continue
            member = f"{source}!{info.filename}"
            doc = csaf.decode_json(zf.read(info), member)
            out.append(osv.parse_osv(doc, member))
    return out


def parse_file(path: Path, kind: str | None, parsed: Parsed, *, strict: bool) -> None:
    try:
        _parse_file(path, kind, parsed, strict=strict)
    except RecursionError:  # a parser that walks the document recursively
        raise InputError("document nested too deep to read", str(path)) from None


def _parse_file(path: Path, kind: str | None, parsed: Parsed, *, strict: bool) -> None:
    data = _read(path)
    source = str(path)
    found, doc = (kind, None) if kind else detect(data, path.name, strict=strict)
    if found is None:
        if strict:
            raise InputError(
                "not a CSAF, KEV, EPSS, OSV or NVD document (use --type to force one)", source
            )
        parsed.skipped.append(source)
        return
    if found == "epss":
        meta, scores = epss.parse_epss(data, source)
        parsed.epss.append((meta, scores, source, hashlib.sha256(data).hexdigest()))
        parsed.count("epss", len(scores))
        return
    if found == "osv" and path.name.lower().endswith(".zip"):
        recs = _osv_zip(data, source)
        parsed.records.extend((r, source) for r in recs)
        parsed.count("osv", len(recs))
        return
    if doc is None:
        doc = csaf.decode_json(data, source)
    if found == "csaf":
        adv = csaf.advisory_from_json(doc, source, hashlib.sha256(data).hexdigest())
        parsed.records.append((adv, source))
        parsed.count("csaf")
    elif found == "kev":
        version, entries = kev.parse_kev(doc, source)
        parsed.kev.append((version, entries, source, hashlib.sha256(data).hexdigest()))
        parsed.count("kev", len(entries))
    elif found == "nvd":
        recs = nvd.parse_nvd(doc, source)
        parsed.records.extend((r, source) for r in recs)
        parsed.count("nvd", len(recs))
    elif found == "osv":
        items = osv.osv_records(doc)
        if items is None:
            raise InputError("OSV field $.id: is required (not an OSV record)", source)
        recs = [
            osv.parse_osv(d, source, "$" if len(items) == 1 and d is doc else f"$[{i}]")
            for i, d in enumerate(items)
        ]
        parsed.records.extend((r, source) for r in recs)
        parsed.count("osv", len(recs))
    else:
        raise InputError(f"unknown intelligence type {found!r}", source)


def iter_files(paths: Iterable[Path]) -> Iterable[tuple[Path, bool]]:
    """(file, named explicitly) for files and the files under directories, sorted."""
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if (
                    f.is_file()
                    and not f.name.startswith(".")
                    and not f.name.endswith(_SKIP_SUFFIXES)
                ):
                    yield f, False
        elif p.exists():
            yield p, True
        else:
            raise InputError("no such file or directory", str(p))


def parse_paths(
    paths: Iterable[Path],
    kind: str | None = None,
    progress: Callable[[Path], None] | None = None,
) -> Parsed:
    parsed = Parsed()
    for f, explicit in iter_files(paths):
        if progress:
            progress(f)
        parse_file(f, kind, parsed, strict=explicit)
    return parsed


def _top(file_origin: str, origin: str) -> str:
    """The path given on the command line that `file_origin` was found under."""
    for top in origin.split(", "):
        if file_origin == top or file_origin.startswith(top.rstrip("/") + "/"):
            return top
    return file_origin


def save_parsed(
    store: Store, parsed: Parsed, origin: str, actor: str = "intel"
) -> list[ImportCounts]:
    """Write what `parse_paths` found; one ledger entry per kind imported."""
    from medsentry.ledger import record

    results: list[ImportCounts] = []
    by_source: dict[str, list[tuple[Advisory | PackageVuln, str]]] = {}
    for rec, o in parsed.records:
        src = "csaf" if isinstance(rec, Advisory) else rec.source
        by_source.setdefault(src, []).append((rec, o))
    for src, recs in by_source.items():
        tops = dict.fromkeys(_top(o, origin) for _, o in recs)
        counts = save_records(store, recs, ImportCounts(src, ", ".join(tops)))
        results.append(counts)
    for version, entries, source, sha in parsed.kev:
        counts = save_kev(store, version, entries, source, sha)
        results.append(counts)
    for meta, scores, source, sha in parsed.epss:
        counts = save_epss(store, meta, scores, source, sha)
        results.append(counts)
    for counts in results:
        data = counts.as_dict()
        data["ids"] = counts.ids[:20]
        record("intel.imported", data, actor=actor)
    return results


def import_paths(
    store: Store,
    paths: Iterable[Path],
    kind: str | None = None,
    actor: str = "intel",
    progress: Callable[[Path], None] | None = None,
) -> tuple[list[ImportCounts], Parsed]:
    paths = list(paths)
    parsed = parse_paths(paths, kind, progress)
    origin = ", ".join(str(p) for p in paths)
    return save_parsed(store, parsed, origin, actor), parsed
