"""Findings on real third-party traffic: nDPI's protocol test captures (../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main

CASES = {
    "telnet.pcap": {"telnet-service", "cleartext-credentials"},
    "hl7.pcap": {"phi-cleartext", "cleartext-medical-protocol"},
    "ftp.pcap": {"ftp-service", "default-credentials"},  # anonymous FTP
    # v3 agents answering and notifying at noAuthNoPriv and authNoPriv (tshark: msgFlags 0, 1)
    "snmp.pcap": {"snmp-v1v2c", "snmp-default-community", "snmp-v3-noauth", "snmp-v3-nopriv"},
    "smbv1.pcap": {"smbv1"},
    "ssl-cert-name-mismatch.pcap": {"tls-cert-name-mismatch"},
    "tftp.pcap": {"tftp-service"},
    "http_auth.pcap": {"http-basic-cleartext", "cleartext-credentials"},
}


@pytest.mark.parametrize(("capture", "expected"), sorted(CASES.items()))
def test_findings_on_ndpi_capture(
    ndpi_pcaps: Path, tmp_path: Path, capture: str, expected: set[str]
) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    res = runner.invoke(main, ["scan", "--db", db, "--engines", "controls", "-q",
                               str(ndpi_pcaps / capture)])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["findings", "--db", db, "--format", "json"])
    got = {r["type"] for r in json.loads(res.output)}
    assert got == expected
