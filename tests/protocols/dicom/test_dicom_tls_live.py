"""DICOM over TLS: a pynetdicom association inside TLS on port 2762, captured on lo; the pipeline
must call it encrypted DICOM and must not pretend to see the association inside."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from loopcap import capture_lo, scan

from medsentry.events.dicom import DicomAssociateRequest, DicomOverTls
from medsentry.events.flow import ProtocolDetected
from medsentry.events.tls import TlsClientHello
from medsentry.protocols.dicom.tls import DICOM_TLS_PORT, DicomTlsDissector
from medsentry.protocols.registry import stream_dissector

pytestmark = pytest.mark.slow


def test_registered() -> None:
    assert stream_dissector("dicom-tls") is DicomTlsDissector


def test_pynetdicom_association_over_tls(tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pynetdicom's server
        try:
            probe.bind(("127.0.0.1", DICOM_TLS_PORT))
        except OSError:
            pytest.skip(f"port {DICOM_TLS_PORT} is busy on 127.0.0.1")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=pacs.example", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))

    scp = AE(ae_title="TLS_PACS")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", DICOM_TLS_PORT), block=False, ssl_context=server_ctx)
    try:
        with capture_lo(tmp_path / "tls.pcap", [DICOM_TLS_PORT]) as pcap:
            scu = AE(ae_title="TLS_SCU")
            scu.add_requested_context(Verification)
            assoc = scu.associate(
                "127.0.0.1", DICOM_TLS_PORT, ae_title="TLS_PACS",
                tls_args=(client_ctx, "pacs.example"),
            )  # fmt: skip
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()
    finally:
        with contextlib.suppress(Exception):
            server.shutdown()

    events = scan(pcap)
    (proto,) = [e for e in events if isinstance(e, ProtocolDetected)]
    assert proto.protocol == "dicom-tls"
    (tls,) = [e for e in events if isinstance(e, DicomOverTls)]
    assert tls.endpoints.server_port == DICOM_TLS_PORT
    assert tls.bytes_c2s > 0 and tls.bytes_s2c > 0
    assert not [e for e in events if isinstance(e, DicomAssociateRequest)]
    # the handshake itself still reaches the TLS dissector (when one is registered)
    if stream_dissector("tls") is not None:
        (hello,) = [e for e in events if isinstance(e, TlsClientHello)]
        assert hello.flow_id == tls.flow_id and hello.server_name == "pacs.example"
