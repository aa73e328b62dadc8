"""JA4 and JA4S TLS fingerprints, as specified by FoxIO (github.com/FoxIO-LLC/ja4,
technical_details/JA4.md and JA4S.md). GREASE values (RFC 8701) are ignored everywhere."""

from __future__ import annotations

import hashlib
from typing import Any

from medsentry.protocols.streamkit import knowledge

EXT_SERVER_NAME = 0x0000  # RFC 6066 §3
EXT_ALPN = 0x0010  # RFC 7301 §3.1
EXT_SUPPORTED_VERSIONS = 0x002B  # RFC 8446 §4.2.1


def _validate(doc: dict[str, Any]) -> None:
    grease = doc["grease"]
    if len(grease) != 16 or any((g & 0x0F0F) != 0x0A0A or (g >> 8) != (g & 0xFF) for g in grease):
        raise ValueError("grease must be the 16 values 0x?A?A of RFC 8701 §2")
    for v, pair in doc["versions"].items():
        if not (isinstance(v, int) and len(pair) == 2 and len(pair[1]) == 2):
            raise ValueError(f"bad version entry {v!r}")
    for k, name in doc["cipher_suites"].items():
        if not (isinstance(k, int) and 0 <= k <= 0xFFFF and isinstance(name, str)):
            raise ValueError(f"bad cipher suite entry {k!r}")


_DOC = knowledge("tls_registry.yaml", _validate)
GREASE: frozenset[int] = frozenset(_DOC["grease"])
VERSIONS: dict[int, tuple[str, str]] = {k: (v[0], v[1]) for k, v in _DOC["versions"].items()}
CIPHER_SUITES: dict[int, str] = dict(_DOC["cipher_suites"])


def is_grease(value: int) -> bool:
    return value in GREASE


def version_name(version: int) -> str:
    return VERSIONS.get(version, (f"0x{version:04x}", "00"))[0]


def _code(version: int) -> str:
    return VERSIONS.get(version, ("", "00"))[1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _alpn_chars(first: bytes | None) -> str:
    """First and last character of the first ALPN value (JA4 §"ALPN Extension Value")."""
    if not first:
        return "00"
    a, z = first[0], first[-1]
    if chr(a).isascii() and chr(a).isalnum() and chr(z).isascii() and chr(z).isalnum():
        return chr(a) + chr(z)
    h = first.hex()
    return h[0] + h[-1]


def ja4_version(legacy_version: int, supported_versions: list[int] | None) -> int:
    """The highest non-GREASE supported_versions value, else the ClientHello's version."""
    if supported_versions:
        real = [v for v in supported_versions if not is_grease(v)]
        if real:
            return max(real)
    return legacy_version


def ja4(
    legacy_version: int,
    ciphers: list[int],
    extensions: list[int],
    supported_versions: list[int] | None,
    first_alpn: bytes | None,
    signature_algorithms: list[int],
    transport: str = "t",
) -> tuple[str, str]:
    """(JA4, JA4_r) of a ClientHello. `transport` is "t" (TCP), "q" (QUIC) or "d" (DTLS)."""
    cs = [c for c in ciphers if not is_grease(c)]
    ex = [e for e in extensions if not is_grease(e)]
    sig = [s for s in signature_algorithms if not is_grease(s)]
    sv = supported_versions if EXT_SUPPORTED_VERSIONS in ex else None
    version = _code(ja4_version(legacy_version, sv))
    sni = "d" if EXT_SERVER_NAME in ex else "i"
    alpn = _alpn_chars(first_alpn) if EXT_ALPN in ex else "00"
    a = f"{transport}{version}{sni}{min(len(cs), 99):02d}{min(len(ex), 99):02d}{alpn}"
    cipher_list = ",".join(f"{c:04x}" for c in sorted(cs))
    ext_list = ",".join(f"{e:04x}" for e in sorted(ex) if e not in (EXT_SERVER_NAME, EXT_ALPN))
    sig_list = ",".join(f"{s:04x}" for s in sig)
    b = _hash12(cipher_list) if cipher_list else "000000000000"
    c_text = f"{ext_list}_{sig_list}" if sig_list else ext_list
    c = _hash12(c_text) if ext_list else "000000000000"
    return f"{a}_{b}_{c}", f"{a}_{cipher_list}_{c_text}"


def ja4s(
    legacy_version: int,
    selected_version: int | None,
    cipher: int,
    extensions: list[int],
    alpn: bytes | None,
    transport: str = "t",
) -> str:
    """JA4S of a ServerHello: version, extension count, ALPN, cipher, hash of the extensions
    in the order seen (JA4S.md)."""
    version = _code(selected_version or legacy_version)
    ext_list = ",".join(f"{e:04x}" for e in extensions)
    h = _hash12(ext_list) if ext_list else "000000000000"
    return f"{transport}{version}{min(len(extensions), 99):02d}{_alpn_chars(alpn)}_{cipher:04x}_{h}"
