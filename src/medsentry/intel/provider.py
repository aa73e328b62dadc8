"""Mirroring a CSAF provider or aggregator (CSAF 2.0 §7: distribution).

`sync_provider(store, url)` accepts:

- a `provider-metadata.json` URL (§7.1.7), or a site whose
  `/.well-known/csaf/provider-metadata.json` (§7.1.8) or `security.txt` CSAF field (§7.1.9)
  names one;
- an `aggregator.json` (§7.1.21): each listed provider is mirrored in turn;
- a ROLIE feed (§7.1.23: `{"feed": {"entry": [...]}}`) or a directory URL ending in `/` with
  `changes.csv` / `index.txt` (§7.1.13-7.1.15).

Each document is fetched only when it changed since the last sync: a ROLIE entry's `updated`
or a `changes.csv` timestamp differs from the mirror's record, and then the request is
conditional (If-None-Match / If-Modified-Since from the stored ETag / Last-Modified, RFC 9110
§13.1). Hash files (`.sha256`, `.sha512`, §7.1.18) are checked where the provider has them;
`.asc` signatures (§7.1.19) are verified with the OpenPGP keys the user gives (`--key`), using
GnuPG through python-gnupg in a throw-away keyring. A mismatch stops the sync with one line
naming the document; the documents already stored stay. The mirror (documents plus
`.medsentry-mirror.json`, the per-URL state) lives under the data directory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from medsentry.errors import InputError
from medsentry.intel import csaf
from medsentry.intel.model import Advisory
from medsentry.intel.store import ImportCounts, save_records
from medsentry.store.db import Store

STATE_FILE = ".medsentry-mirror.json"
USER_AGENT = "medsentry-csaf-sync"
TIMEOUT_S = 30


@dataclass
class SyncReport:
    url: str
    documents: int = 0  # listed by the provider
    fetched: int = 0  # downloaded (new or changed)
    not_modified: int = 0  # conditional request answered 304
    unchanged: int = 0  # same timestamp as the mirror: not requested at all
    missing: int = 0  # listed by the provider but not there (HTTP 404/410): skipped
    hashes_checked: int = 0
    signatures_verified: int = 0
    signatures_unverified: int = 0  # .asc present but no key given
    added: int = 0
    updated: int = 0
    mirror: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Doc:
    url: str
    updated: str = ""
    hash_urls: list[str] = field(default_factory=list)
    signature_url: str = ""


class _Fetcher:
    def __init__(self, cafile: Path | None):
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))

    def get(
        self, url: str, headers: dict[str, str] | None = None, *, optional: bool = False
    ) -> tuple[int, bytes, dict[str, str]]:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        except ValueError:  # "unknown url type": no scheme, or one urllib cannot open
            raise InputError("not a URL (expected https://...)", url) from None
        try:
            with self.opener.open(req, timeout=TIMEOUT_S) as resp:
                return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return 304, b"", {}
            if optional and exc.code in (403, 404, 410):
                return exc.code, b"", {}
            raise InputError(f"HTTP {exc.code} {exc.reason}", url) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"cannot fetch: {reason}", url) from exc


def _json(data: bytes, url: str) -> Any:
    return csaf.decode_json(data, url)


def _state_path(mirror: Path) -> Path:
    return mirror / STATE_FILE


def _load_state(mirror: Path) -> dict[str, dict[str, str]]:
    p = _state_path(mirror)
    if not p.is_file():
        return {}
    try:
        return msgspec.json.decode(p.read_bytes())
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return {}  # a damaged state file only costs a full re-fetch


def _save_state(mirror: Path, state: dict[str, dict[str, str]]) -> None:
    tmp = _state_path(mirror).with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(state), indent=1))
    os.replace(tmp, _state_path(mirror))


def _local(mirror: Path, url: str) -> Path:
    parsed = urllib.parse.urlsplit(url)
    rel = parsed.path.lstrip("/") or "index"
    return mirror / rel


# -- discovery -------------------------------------------------------------------------------


def _discover(f: _Fetcher, url: str) -> tuple[str, Any]:
    """(kind, document): kind is provider, aggregator, rolie or directory."""
    if url.endswith("/"):
        status, _, _ = f.get(urllib.parse.urljoin(url, "changes.csv"), optional=True)
        if status == 200:
            return "directory", None
        for candidate in (".well-known/csaf/provider-metadata.json",):
            status, data, _ = f.get(urllib.parse.urljoin(url, candidate), optional=True)
            if status == 200:
                return "provider", (urllib.parse.urljoin(url, candidate), _json(data, url))
        status, data, _ = f.get(
            urllib.parse.urljoin(url, ".well-known/security.txt"), optional=True
        )
        if status == 200:
            for line in data.decode("utf-8", "replace").splitlines():
                if line.lower().startswith("csaf:"):  # §7.1.9
                    meta = line.split(":", 1)[1].strip()
                    _, mdata, _ = f.get(meta)
                    return "provider", (meta, _json(mdata, meta))
        raise InputError("no changes.csv, provider-metadata.json or security.txt CSAF field", url)
    _, data, _ = f.get(url)
    doc = _json(data, url)
    if isinstance(doc, dict) and "feed" in doc:
        return "rolie", doc
    if isinstance(doc, dict) and "aggregator" in doc and "csaf_providers" in doc:
        return "aggregator", doc
    if (isinstance(doc, dict) and "distributions" in doc) or "canonical_url" in doc:
        return "provider", (url, doc)
    raise InputError(
        "not a CSAF provider-metadata.json, aggregator.json, ROLIE feed or directory", url
    )


def _rolie_docs(feed: Any, url: str) -> list[_Doc]:
    entries = feed.get("feed", {}).get("entry", []) if isinstance(feed, dict) else None
    if not isinstance(entries, list):
        raise InputError("ROLIE field $.feed.entry: must be an array", url)
    docs: list[_Doc] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"ROLIE field $.feed.entry[{i}]: must be an object", url)
        d = _Doc(url="", updated=str(e.get("updated", "")))
        for link in e.get("link") or []:
            href, rel = link.get("href", ""), link.get("rel", "")
            href = urllib.parse.urljoin(url, href)
            if rel == "self":
                d.url = href
            elif rel == "hash":
                d.hash_urls.append(href)
            elif rel == "signature":
                d.signature_url = href
        if not d.url and isinstance(e.get("content"), dict):
            d.url = urllib.parse.urljoin(url, e["content"].get("src", ""))
        if not d.url:
            raise InputError(f"ROLIE field $.feed.entry[{i}].link: no rel=self document", url)
        docs.append(d)
    return docs


def _directory_docs(f: _Fetcher, base: str) -> list[_Doc]:
    # §7.1.14 changes.csv: "<path relative to the directory>","<current_release_date>"
    _, data, _ = f.get(urllib.parse.urljoin(base, "changes.csv"))
    docs: list[_Doc] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(data.decode("utf-8"))), 1):
        if not row:
            continue
        if len(row) != 2:
            raise InputError(f"changes.csv line {lineno}: expected 'path,timestamp'", base)
        docs.append(_Doc(url=urllib.parse.urljoin(base, _relative(base, row[0])), updated=row[1]))
    return docs


def _relative(base: str, path: str) -> str:
    """A changes.csv path relative to the directory. Some providers write it from their
    repository root ("csaf_files/OT/white/2024/x.json" in .../csaf_files/OT/white/): the
    segments the directory URL already ends with are dropped."""
    base_parts = [p for p in urllib.parse.urlsplit(base).path.split("/") if p]
    parts = path.split("/")
    for k in range(min(len(base_parts), len(parts) - 1), 0, -1):
        if base_parts[-k:] == parts[:k]:
            return "/".join(parts[k:])
    return path


def _provider_feeds(f: _Fetcher, meta_url: str, meta: Any) -> list[_Doc]:
    if not isinstance(meta, dict) or not isinstance(meta.get("distributions", []), list):
        raise InputError("provider-metadata field $.distributions: must be an array", meta_url)
    docs: list[_Doc] = []
    for i, dist in enumerate(meta.get("distributions", [])):
        if not isinstance(dist, dict):
            raise InputError(
                f"provider-metadata field $.distributions[{i}]: not an object", meta_url
            )
        rolie = dist.get("rolie")
        if isinstance(rolie, dict):
            for feed in rolie.get("feeds") or []:
                furl = urllib.parse.urljoin(meta_url, feed.get("url", ""))
                _, data, _ = f.get(furl)
                docs.extend(_rolie_docs(_json(data, furl), furl))
        elif dist.get("directory_url"):
            base = str(dist["directory_url"])
            base = base if base.endswith("/") else base + "/"
            docs.extend(_directory_docs(f, urllib.parse.urljoin(meta_url, base)))
    return docs


# -- verification ----------------------------------------------------------------------------


class _Verifier:
    """OpenPGP signature checks against the given public keys only (throw-away keyring)."""

    def __init__(self, keys: Iterable[Path]):
        self.keys = list(keys)
        self._home: tempfile.TemporaryDirectory[str] | None = None
        self.gpg: Any = None
        self.fingerprints: set[str] = set()
        if self.keys:
            import gnupg

            self._home = tempfile.TemporaryDirectory(prefix="medsentry-gpg-")
            self.gpg = gnupg.GPG(gnupghome=self._home.name)
            for k in self.keys:
                res = self.gpg.import_keys(Path(k).read_bytes())
                if not res.fingerprints:
                    raise InputError("no OpenPGP public key found", str(k))
                self.fingerprints.update(res.fingerprints)

    def verify(self, data: bytes, signature: bytes, url: str) -> None:
        with tempfile.NamedTemporaryFile(suffix=".asc", delete=False) as sig:
            sig.write(signature)
        try:
            v = self.gpg.verify_data(sig.name, data)
        finally:
            os.unlink(sig.name)
        if not v.valid or (v.pubkey_fingerprint or v.fingerprint) not in self.fingerprints:
            raise InputError(f"OpenPGP signature does not verify ({v.status or 'invalid'})", url)

    def close(self) -> None:
        if self._home is not None:
            self._home.cleanup()


def _check_hash(f: _Fetcher, d: _Doc, data: bytes) -> int:
    urls = d.hash_urls or [d.url + ".sha512", d.url + ".sha256"]
    checked = 0
    for hurl in urls:
        status, body, _ = f.get(hurl, optional=True)
        if status != 200:
            continue
        algo = "sha512" if hurl.endswith(".sha512") else "sha256"
        # §7.1.18: "<hex digest> <file name>" (sha256sum / sha512sum output)
        expected = body.decode("ascii", "replace").split()[0].lower() if body.strip() else ""
        if hashlib.new(algo, data).hexdigest() != expected:
            raise InputError(f"{algo} checksum mismatch ({hurl})", d.url)
        checked += 1
    return checked


# -- sync ------------------------------------------------------------------------------------


def default_mirror(url: str) -> Path:
    from medsentry.paths import data_dir

    host = urllib.parse.urlsplit(url).netloc.replace(":", "_") or "local"
    return Path(data_dir()) / "csaf-mirror" / host


def sync_provider(
    store: Store,
    url: str,
    *,
    mirror: Path | None = None,
    keys: Iterable[Path] = (),
    require_signature: bool = False,
    cafile: Path | None = None,
    actor: str = "intel",
) -> SyncReport:
    from medsentry.ledger import record

    f = _Fetcher(cafile)
    mirror = Path(mirror) if mirror else default_mirror(url)
    mirror.mkdir(parents=True, exist_ok=True)
    report = SyncReport(url=url, mirror=str(mirror))
    kind, doc = _discover(f, url)
    if kind == "aggregator":
        docs: list[_Doc] = []
        for i, prov in enumerate(doc.get("csaf_providers") or []):
            meta = (prov or {}).get("metadata", {}) if isinstance(prov, dict) else {}
            murl = meta.get("url") if isinstance(meta, dict) else None
            if not murl:
                raise InputError(
                    f"aggregator field $.csaf_providers[{i}].metadata.url: required", url
                )
            _, data, _ = f.get(murl)
            docs.extend(_provider_feeds(f, murl, _json(data, murl)))
    elif kind == "provider":
        docs = _provider_feeds(f, doc[0], doc[1])
    elif kind == "rolie":
        docs = _rolie_docs(doc, url)
    else:
        docs = _directory_docs(f, url)
    report.documents = len(docs)
    state = _load_state(mirror)
    verifier = _Verifier(keys)
    fetched: list[tuple[Advisory, str]] = []
    new_state = dict(state)
    try:
        for d in docs:
            prev = state.get(d.url, {})
            local = _local(mirror, d.url)
            if prev.get("missing") and d.updated and prev.get("updated") == d.updated:
                report.missing += 1  # was not there at this timestamp: not asked again
                continue
            if prev and d.updated and prev.get("updated") == d.updated and local.is_file():
                report.unchanged += 1
                continue
            headers = {}
            if prev.get("etag") and local.is_file():
                headers["If-None-Match"] = prev["etag"]
            if prev.get("last_modified") and local.is_file():
                headers["If-Modified-Since"] = prev["last_modified"]
            status, data, resp_headers = f.get(d.url, headers, optional=True)
            if status == 403:  # e.g. a TLP:AMBER document behind access control
                raise InputError("HTTP 403 Forbidden", d.url)
            if status in (404, 410):
                report.missing += 1
                new_state[d.url] = {"updated": d.updated, "missing": "1"}
                continue
            if status == 304:
                report.not_modified += 1
                new_state[d.url] = {**prev, "updated": d.updated}
                continue
            report.fetched += 1
            report.hashes_checked += _check_hash(f, d, data)
            sig_url = d.signature_url or d.url + ".asc"
            sstatus, sig, _ = f.get(sig_url, optional=True)
            if sstatus == 200 and verifier.gpg is not None:
                verifier.verify(data, sig, d.url)
                report.signatures_verified += 1
            elif require_signature:
                why = "no .asc signature" if sstatus != 200 else "no --key to verify it with"
                raise InputError(f"signature required: {why}", d.url)
            elif sstatus == 200:
                report.signatures_unverified += 1
            adv = csaf.parse_csaf(data, d.url)
            fetched.append((adv, d.url))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
            new_state[d.url] = {
                "updated": d.updated,
                "etag": resp_headers.get("etag", ""),
                "last_modified": resp_headers.get("last-modified", ""),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    finally:
        verifier.close()
    counts = save_records(store, fetched, ImportCounts("csaf", url))
    report.added, report.updated = counts.added, counts.updated
    _save_state(mirror, new_state)  # only after the store has the documents
    data = counts.as_dict()
    data.update(
        {
            "ids": counts.ids[:20],
            "fetched": report.fetched,
            "documents": report.documents,
            "signatures_verified": report.signatures_verified,
            "hashes_checked": report.hashes_checked,
        }
    )
    record("intel.imported", data, actor=actor)
    return report
