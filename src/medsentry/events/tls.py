"""TLS handshake events (RFC 8446, RFC 5246): what is visible before encryption starts."""

from __future__ import annotations

from datetime import datetime

import msgspec

from medsentry.events.base import Endpoints, Event


class TlsClientHello(Event, tag="tls_client_hello", frozen=True, kw_only=True):
    """A ClientHello (RFC 8446 §4.1.2). GREASE values (RFC 8701) are kept in the lists
    as sent; `ja4` follows the FoxIO JA4 specification (GREASE ignored)."""

    flow_id: str
    endpoints: Endpoints
    record_version: int  # the first record's version; 0 without a record layer (QUIC, RFC 9001 §4)
    legacy_version: int
    supported_versions: list[int] = msgspec.field(default_factory=list)
    max_version: str  # "TLS 1.3", "TLS 1.2", ...
    server_name: str | None = None
    cipher_suites: list[int] = msgspec.field(default_factory=list)
    extensions: list[int] = msgspec.field(default_factory=list)
    alpn: list[str] = msgspec.field(default_factory=list)
    signature_algorithms: list[int] = msgspec.field(default_factory=list)
    supported_groups: list[int] = msgspec.field(default_factory=list)
    ja4: str
    ja4_r: str
    # QUIC only: Chromium's google_user_agent transport parameter (browser or app, platform)
    user_agent: str | None = None


class QuicCryptoClientHello(Event, tag="quic_crypto_client_hello", frozen=True, kw_only=True):
    """A Google QUIC client hello (CHLO, the "QUIC Crypto" handshake of gQUIC Q024-Q050), sent
    in clear or under Initial keys anyone can derive: its tag-value map's names and values."""

    flow_id: str
    endpoints: Endpoints
    version: str  # "Q043", "Q046", "Q050" (the packet's version tag)
    server_name: str | None = None  # tag SNI
    user_agent: str | None = None  # tag UAID: browser or app, version and platform
    aead: list[str] = msgspec.field(default_factory=list)  # tag AEAD (e.g. "AESG", "CC20")
    key_exchange: list[str] = msgspec.field(default_factory=list)  # tag KEXS ("C255", "P256")
    tags: list[str] = msgspec.field(default_factory=list)  # every tag, in the order sent


class TlsServerHello(Event, tag="tls_server_hello", frozen=True, kw_only=True):
    """A ServerHello (RFC 8446 §4.1.3); `version` is the negotiated one."""

    flow_id: str
    endpoints: Endpoints
    legacy_version: int
    version: str
    selected_version: int
    cipher_suite: int
    cipher_name: str | None = None
    extensions: list[int] = msgspec.field(default_factory=list)
    alpn: str | None = None
    hello_retry_request: bool = False
    ja4s: str


class TlsCertificate(Event, tag="tls_certificate", frozen=True, kw_only=True):
    """One certificate of the server's chain in clear (TLS <= 1.2, RFC 5246 §7.4.2)."""

    flow_id: str
    endpoints: Endpoints
    chain_index: int  # 0 = the server's own certificate
    subject: str
    issuer: str
    subject_cn: str | None = None
    subject_o: str | None = None
    issuer_cn: str | None = None
    issuer_o: str | None = None
    not_before: datetime
    not_after: datetime
    self_signed: bool = False
    san_dns: list[str] = msgspec.field(default_factory=list)
    san_ip: list[str] = msgspec.field(default_factory=list)
    serial: str
    sha256: str
    signature_algorithm: str | None = None
    public_key: str | None = None  # "RSA-2048", "EC-secp256r1", ...
