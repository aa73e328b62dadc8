"""CSAF provider sync against a provider served over HTTPS on loopback (self-made CA) from the
144 real CISA advisories: discovery, ROLIE and directory distributions, hash and OpenPGP
signature checks (GnuPG), incremental sync, and refusal of tampered documents."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medsentry.cli import main
from medsentry.errors import InputError
from medsentry.intel.provider import sync_provider
from medsentry.intel.store import load_advisories
from medsentry.store import open_store

GPG = shutil.which("gpg")
pytestmark = pytest.mark.skipif(GPG is None, reason="gpg (GnuPG) is not installed")


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medsentry test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, crt, kp = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, crt, kp


class _Gpg:
    def __init__(self, home: Path, uid: str):
        self.home = home
        home.mkdir(mode=0o700)
        self.run("--quick-gen-key", uid, "ed25519", "sign", "never")
        out = self.run("--list-keys", "--with-colons").stdout
        self.fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                GPG or "gpg",
                "--homedir",
                str(self.home),
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                *args,
            ],
            check=True,
            capture_output=True,
            text=True,
        )

    def export(self, path: Path) -> Path:
        path.write_text(self.run("--armor", "--export", self.fpr).stdout)
        return path

    def sign(self, path: Path) -> None:
        self.run("--armor", "--detach-sign", "--output", str(path) + ".asc", str(path))


@dataclass
class Provider:
    root: Path
    base: str
    ca: Path
    key: Path
    gpg: _Gpg
    requests: list[str] = field(default_factory=list)

    @property
    def white(self) -> Path:
        return self.root / ".well-known" / "csaf" / "white"

    def publish(self, path: Path, data: bytes, updated: str, *, sign: bool = True) -> None:
        """(Re)publish one document: bytes, hash files, signature, feed entry, changes.csv."""
        path.write_bytes(data)
        for algo in ("sha256", "sha512"):
            digest = hashlib.new(algo, data).hexdigest()
            Path(f"{path}.{algo}").write_text(f"{digest}  {path.name}\n")
        if sign:
            self.gpg.sign(path)
        rel = path.relative_to(self.white).as_posix()
        feed_path = self.white / "feed-tlp-white.json"
        feed = json.loads(feed_path.read_text())
        for e in feed["feed"]["entry"]:
            if e["link"][0]["href"].endswith(rel):
                e["updated"] = updated
        feed_path.write_text(json.dumps(feed))
        lines = (self.white / "changes.csv").read_text().splitlines()
        lines = [f'"{rel}","{updated}"' if ln.startswith(f'"{rel}"') else ln for ln in lines]
        (self.white / "changes.csv").write_text("\n".join(lines) + "\n")


def _build(root: Path, csaf_files: list[Path], gpg: _Gpg, base: str) -> None:
    white = root / ".well-known" / "csaf" / "white"
    entries, changes = [], []
    for f in csaf_files:
        year = f.parent.name
        (white / year).mkdir(parents=True, exist_ok=True)
        dest = white / year / f.name
        data = f.read_bytes()
        dest.write_bytes(data)
        for algo in ("sha256", "sha512"):
            Path(f"{dest}.{algo}").write_text(f"{hashlib.new(algo, data).hexdigest()}  {f.name}\n")
        gpg.sign(dest)
        doc = json.loads(data)
        updated = doc["document"]["tracking"]["current_release_date"]
        url = f"{base}/.well-known/csaf/white/{year}/{f.name}"
        entries.append(
            {
                "id": doc["document"]["tracking"]["id"],
                "title": doc["document"]["title"],
                "link": [
                    {"rel": "self", "href": url},
                    {"rel": "hash", "href": url + ".sha512"},
                    {"rel": "signature", "href": url + ".asc"},
                ],
                "published": doc["document"]["tracking"]["initial_release_date"],
                "updated": updated,
                "content": {"type": "application/json", "src": url},
                "format": {
                    "schema": "https://docs.oasis-open.org/csaf/csaf/v2.0/csaf_json_schema.json",
                    "version": "2.0",
                },
            }
        )
        changes.append(f'"{year}/{f.name}","{updated}"')
    (white / "feed-tlp-white.json").write_text(
        json.dumps(
            {
                "feed": {
                    "id": "test-white",
                    "title": "test provider TLP:WHITE",
                    "link": [
                        {
                            "rel": "self",
                            "href": f"{base}/.well-known/csaf/white/feed-tlp-white.json",
                        }
                    ],
                    "category": [
                        {
                            "scheme": "urn:ietf:params:rolie:category:information-type",
                            "term": "csaf",
                        }
                    ],
                    "updated": "2024-10-24T00:00:00Z",
                    "entry": entries,
                }
            }
        )
    )
    (white / "changes.csv").write_text("\n".join(changes) + "\n")
    (white / "index.txt").write_text("\n".join(c.split(",")[0].strip('"') for c in changes))
    (root / ".well-known" / "csaf" / "provider-metadata.json").write_text(
        json.dumps(
            {
                "canonical_url": f"{base}/.well-known/csaf/provider-metadata.json",
                "distributions": [
                    {
                        "rolie": {
                            "feeds": [
                                {
                                    "summary": "TLP:WHITE advisories",
                                    "tlp_label": "WHITE",
                                    "url": f"{base}/.well-known/csaf/white/feed-tlp-white.json",
                                }
                            ]
                        }
                    }
                ],
                "last_updated": "2024-10-24T00:00:00Z",
                "list_on_CSAF_aggregators": True,
                "metadata_version": "2.0",
                "mirror_on_CSAF_aggregators": True,
                "public_openpgp_keys": [{"fingerprint": gpg.fpr, "url": f"{base}/openpgp/key.asc"}],
                "publisher": {
                    "category": "coordinator",
                    "name": "Test",
                    "namespace": "https://t.test",
                },
                "role": "csaf_trusted_provider",
            }
        )
    )


@pytest.fixture(scope="module")
def provider(tmp_path_factory, csaf_files: list[Path]) -> Iterator[Provider]:
    tmp = tmp_path_factory.mktemp("provider")
    root = tmp / "www"
    root.mkdir()
    gpg = _Gpg(tmp / "gnupg", "Test CSAF Provider <csaf@provider.test>")
    ca, crt, key = _cert(tmp)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        """Static files with an ETag (RFC 9110 §8.8.3) and If-None-Match (§13.1.2); the base
        class already answers If-Modified-Since."""

        _etag: str | None = None

        def log_message(self, *args) -> None:
            requests.append(self.path)

        def send_head(self):  # type: ignore[override]
            path = Path(self.translate_path(self.path))
            self._etag = None
            if path.is_file():
                self._etag = '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == self._etag:
                    self.send_response(304)
                    self.end_headers()
                    return None
            return super().send_head()

        def end_headers(self) -> None:
            if self._etag:
                self.send_header("ETag", self._etag)
            super().end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    base = f"https://127.0.0.1:{server.server_address[1]}"
    _build(root, csaf_files, gpg, base)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield Provider(root, base, ca, gpg.export(tmp / "provider-key.asc"), gpg, requests)
    finally:
        server.shutdown()
        server.server_close()


def _doc_gets(p: Provider) -> list[str]:
    return [r for r in p.requests if r.endswith(".json") and "/20" in r]


def test_rolie_sync_verifies_and_is_incremental(provider: Provider, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        r = sync_provider(
            store, provider.base + "/", mirror=mirror, keys=[provider.key], cafile=provider.ca
        )
        assert (r.documents, r.fetched, r.added) == (144, 144, 144)
        assert r.signatures_verified == 144 and r.hashes_checked == 144  # rel=hash: .sha512
        assert len(load_advisories(store)) == 144
        provider.requests.clear()
        r = sync_provider(
            store, provider.base + "/", mirror=mirror, keys=[provider.key], cafile=provider.ca
        )
        assert (r.fetched, r.unchanged, r.added, r.updated) == (0, 144, 0, 0)
        assert _doc_gets(provider) == []  # nothing re-downloaded
        # the provider revises one advisory
        target = sorted(provider.white.glob("2020/*.json"))[0]
        doc = json.loads(target.read_bytes())
        doc["document"]["tracking"]["version"] = "7"
        provider.publish(target, json.dumps(doc).encode(), "2030-01-01T00:00:00Z")
        provider.requests.clear()
        r = sync_provider(
            store, provider.base + "/", mirror=mirror, keys=[provider.key], cafile=provider.ca
        )
        assert (r.fetched, r.updated, r.unchanged) == (1, 1, 143)
        assert _doc_gets(provider) == [f"/.well-known/csaf/white/2020/{target.name}"]
        assert (mirror / ".well-known/csaf/white/2020" / target.name).read_bytes() == (
            target.read_bytes()
        )


def test_directory_distribution_and_not_modified(provider: Provider, tmp_path: Path) -> None:
    url = provider.base + "/.well-known/csaf/white/"
    mirror = tmp_path / "m"
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        r = sync_provider(store, url, mirror=mirror, cafile=provider.ca)
        assert (r.fetched, r.added, r.hashes_checked) == (144, 144, 288)  # .sha512 + .sha256
        assert r.signatures_unverified == 144  # .asc present, no key given
        # changes.csv says one document changed, but its bytes did not: conditional GET -> 304
        state = json.loads((mirror / ".medsentry-mirror.json").read_text())
        some = next(iter(state))
        state[some]["updated"] = "stale"
        (mirror / ".medsentry-mirror.json").write_text(json.dumps(state))
        r = sync_provider(store, url, mirror=mirror, cafile=provider.ca)
        assert (r.fetched, r.not_modified, r.unchanged) == (0, 1, 143)
        # the same with only the ETag remembered: If-None-Match alone gets the 304
        state = json.loads((mirror / ".medsentry-mirror.json").read_text())
        assert state[some]["etag"].startswith('"')
        state[some]["updated"], state[some]["last_modified"] = "stale", ""
        (mirror / ".medsentry-mirror.json").write_text(json.dumps(state))
        r = sync_provider(store, url, mirror=mirror, cafile=provider.ca)
        assert (r.fetched, r.not_modified, r.unchanged) == (0, 1, 143)


def test_tampered_document_refused_and_store_kept(provider: Provider, tmp_path: Path) -> None:
    url = provider.base + "/.well-known/csaf/provider-metadata.json"
    mirror = tmp_path / "m"
    target = sorted(provider.white.glob("2021/*.json"))[1]
    original = target.read_bytes()
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        sync_provider(store, url, mirror=mirror, keys=[provider.key], cafile=provider.ca)
        # bytes changed after hashing and signing (a compromised mirror)
        provider.publish(target, original, "2031-01-01T00:00:00Z")
        target.write_bytes(original.replace(b'"Critical"', b'"Low"', 1) + b" ")
        with pytest.raises(InputError, match=rf"{target.name}: sha512 checksum mismatch"):
            sync_provider(store, url, mirror=mirror, keys=[provider.key], cafile=provider.ca)
        # correct hashes but signed by someone else
        other = _Gpg(tmp_path / "other", "Mallory <m@evil.test>")
        provider.publish(target, original + b"\n", "2031-01-02T00:00:00Z", sign=False)
        other.sign(target)
        with pytest.raises(InputError, match=rf"{target.name}: OpenPGP signature does not verify"):
            sync_provider(store, url, mirror=mirror, keys=[provider.key], cafile=provider.ca)
        assert len(load_advisories(store)) == 144
    provider.publish(target, original, "2031-01-03T00:00:00Z")


def test_sync_cli_and_tls_errors(provider: Provider, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "intel",
            "sync",
            "--db",
            db,
            provider.base + "/",
            "--cafile",
            str(provider.ca),
            "--key",
            str(provider.key),
            "--require-signature",
            "--mirror",
            str(tmp_path / "m"),
            "--format",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["added"] == 144 and row["signatures_verified"] == 144
    # without the CA the server's certificate is not trusted: one line, exit 2
    res = runner.invoke(
        main, ["intel", "sync", "--db", db, provider.base + "/", "--mirror", str(tmp_path / "m2")]
    )
    assert res.exit_code == 2 and "CERTIFICATE_VERIFY_FAILED" in res.output
    # signatures required but no key given
    res = runner.invoke(
        main,
        [
            "intel",
            "sync",
            "--db",
            db,
            provider.base + "/",
            "--cafile",
            str(provider.ca),
            "--require-signature",
            "--mirror",
            str(tmp_path / "m3"),
        ],
    )
    assert res.exit_code == 2 and "signature required: no --key" in res.output


def test_aggregator_lists_the_provider(provider: Provider, tmp_path: Path) -> None:
    """CSAF 2.0 §7.1.21 aggregator.json: each listed provider's metadata is followed."""
    agg = provider.root / ".well-known" / "csaf-aggregator"
    agg.mkdir(parents=True, exist_ok=True)
    (agg / "aggregator.json").write_text(
        json.dumps(
            {
                "aggregator": {
                    "category": "lister",
                    "name": "Test lister",
                    "namespace": "https://lister.test",
                },
                "aggregator_version": "2.0",
                "canonical_url": f"{provider.base}/.well-known/csaf-aggregator/aggregator.json",
                "csaf_providers": [
                    {
                        "metadata": {
                            "last_updated": "2024-10-24T00:00:00Z",
                            "publisher": {
                                "category": "coordinator",
                                "name": "Test",
                                "namespace": "https://t.test",
                            },
                            "role": "csaf_trusted_provider",
                            "url": f"{provider.base}/.well-known/csaf/provider-metadata.json",
                        }
                    }
                ],
                "last_updated": "2024-10-24T00:00:00Z",
            }
        )
    )
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        r = sync_provider(
            store,
            f"{provider.base}/.well-known/csaf-aggregator/aggregator.json",
            mirror=tmp_path / "m",
            keys=[provider.key],
            cafile=provider.ca,
        )
        assert (r.documents, r.added, r.signatures_verified) == (144, 144, 144)


def test_cisa_directory_layout_served_as_published(shared_data: Path, tmp_path: Path) -> None:
    """CISA's own index files, unchanged: changes.csv lists all 2,379 OT advisories with paths
    from the repository root; the 144 medical ones are present, the others are not (404)."""
    root = shared_data / "cisa_csaf_icsma"
    if not (root / "csaf_files/OT/white/changes.csv").is_file():
        pytest.skip("CISA CSAF directory not found")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/csaf_files/OT/white/"
        with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
            r = sync_provider(store, url, mirror=tmp_path / "m")
            assert (r.documents, r.fetched, r.missing, r.added) == (2379, 144, 2235, 144)
            assert r.hashes_checked == 0  # CISA's repository has no hash files
            r = sync_provider(store, url, mirror=tmp_path / "m")
            assert (r.fetched, r.unchanged, r.missing, r.added) == (0, 144, 2235, 0)
    finally:
        server.shutdown()
        server.server_close()
