"""The server's certificates of a TLS handshake (RFC 5246 §7.4.2) as `TlsCertificate` events:
X.509 (RFC 5280) decoded by cryptography. Imported by `medsentry.protocols.tls` with the first
certificate it meets, so a scan without one never loads cryptography's X.509 support."""

from __future__ import annotations

import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from medsentry.events.tls import TlsCertificate
from medsentry.protocols.base import FlowContext
from medsentry.protocols.streamkit import text

_SIG_NAMES = {
    v.dotted_string: k.lower()
    for k, v in vars(SignatureAlgorithmOID).items()
    if isinstance(v, x509.ObjectIdentifier)
}


def certificate_event(
    der: bytes, index: int, ts_ns: int, ctx: FlowContext
) -> TlsCertificate | None:
    """The event of one DER certificate at `index` in the chain; None when it does not decode."""
    try:
        with warnings.catch_warnings():  # e.g. a non-positive serial (RFC 5280 §4.1.2.2)
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
            return _cert_event(cert, der, index, ts_ns, ctx)
    except Exception:  # malformed DER surfaces as many exception types
        return None


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    vals = name.get_attributes_for_oid(oid)
    if not vals:
        return None
    v = vals[0].value
    return text(v if isinstance(v, bytes) else v.encode("utf-8", "replace"), 255)


def _key(cert: x509.Certificate) -> str | None:
    k = cert.public_key()
    if isinstance(k, rsa.RSAPublicKey):
        return f"RSA-{k.key_size}"
    if isinstance(k, ec.EllipticCurvePublicKey):
        return f"EC-{k.curve.name}"
    if isinstance(k, dsa.DSAPublicKey):
        return f"DSA-{k.key_size}"
    if isinstance(k, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(k, ed448.Ed448PublicKey):
        return "Ed448"
    return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, ValueError, TypeError, unsupported
        return False
    return True


def _cert_event(
    cert: x509.Certificate, der: bytes, index: int, ts_ns: int, ctx: FlowContext
) -> TlsCertificate:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [text(n.encode(), 255) for n in san.get_values_for_type(x509.DNSName)][:32]
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)][:32]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        key = _key(cert)
    except Exception:  # unsupported key algorithms
        key = None
    return TlsCertificate(
        ts_ns=ts_ns,
        flow_id=ctx.flow_id,
        endpoints=ctx.endpoints,
        chain_index=index,
        subject=text(cert.subject.rfc4514_string().encode(), 512),
        issuer=text(cert.issuer.rfc4514_string().encode(), 512),
        subject_cn=_attr(cert.subject, NameOID.COMMON_NAME),
        subject_o=_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        issuer_cn=_attr(cert.issuer, NameOID.COMMON_NAME),
        issuer_o=_attr(cert.issuer, NameOID.ORGANIZATION_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=_self_signed(cert),
        san_dns=dns,
        san_ip=ips,
        serial=f"{cert.serial_number:x}",
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        signature_algorithm=_SIG_NAMES.get(
            cert.signature_algorithm_oid.dotted_string, cert.signature_algorithm_oid.dotted_string
        ),
        public_key=key,
    )
