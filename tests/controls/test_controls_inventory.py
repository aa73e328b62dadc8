"""Checks that need the inventory (built here as `Device` structs, the inventory's contract):
KEV vulnerabilities through the intel engine and real CISA data, end-of-life systems,
severity raised on patient-affecting devices, medical-only checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from medsentry.controls.engine import build_findings
from medsentry.controls.rules import Collector
from medsentry.controls.vulns import device_matches, intel_available
from medsentry.events import FlowRecord
from medsentry.events.base import Endpoints
from medsentry.events.http import HttpRequest
from medsentry.inventory.model import Attribute, Device
from medsentry.store import open_store

T0 = 1_700_000_000_000_000_000


def _flow(client: str, server: str, port: int, proto: str | None, i: int = 0) -> FlowRecord:
    return FlowRecord(
        ts_ns=T0 + i,
        flow_id=f"f{i}",
        last_ns=T0 + i + 1000,
        transport="tcp",
        ip_version=4,
        client=client,
        server=server,
        client_port=40000 + i,
        server_port=port,
        packets_c2s=3,
        packets_s2c=3,
        app_protocol=proto,
    )


def _dev(ip: str, **kw) -> Device:
    return Device(device_id=f"ip:{ip}", ips=[ip], **kw)


def test_kev_vulnerability_from_real_cisa_data(tmp_path: Path, shared_data: Path) -> None:
    from click.testing import CliRunner

    from medsentry.cli import main

    db = f"sqlite:///{tmp_path / 's.db'}"
    adv = shared_data / "cisa_csaf_icsma"
    (csaf,) = list(adv.rglob("icsma-18-058-02.json"))
    kev = shared_data / "kev" / "known_exploited_vulnerabilities.json"
    res = CliRunner().invoke(main, ["intel", "import", "--db", db, str(csaf), str(kev)])
    assert res.exit_code == 0, res.output
    portal = _dev(
        "10.1.1.5",
        vendor=Attribute(value="Philips", confidence=0.9),
        model=Attribute(value="IntelliSpace Portal", confidence=0.9),
        software_version=Attribute(value="8.0.2", confidence=0.8),
        medical=True,
        criticality="support",
        last_seen_ns=T0,
    )
    with open_store(db) as store:
        assert intel_available(store)
        matches = device_matches(store, [portal])
    assert matches is not None
    found = build_findings(Collector(None), [portal], matches=matches)
    kev_f = [f for f in found if f.type == "kev-vulnerability"]
    assert kev_f and kev_f[0].device_id == "ip:10.1.1.5"
    assert "CVE-2017-0143" in kev_f[0].detail and kev_f[0].subject.upper().startswith("ICSMA")


def test_no_intel_means_no_kev_and_none(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        assert not intel_available(store)
        assert device_matches(store, [_dev("10.0.0.1")]) is None


def test_eol_from_inventory_os_and_severity_raised() -> None:
    pump = _dev(
        "10.2.0.9",
        os=Attribute(value="Windows XP Embedded SP3", confidence=0.8),
        medical=True,
        criticality="life-sustaining",
        last_seen_ns=T0,
    )
    col = Collector(None)
    col.feed([_flow("10.2.0.50", "10.2.0.9", 23, "telnet")])
    found = {f.type: f for f in build_findings(col, [pump], today=dt.date(2026, 1, 1))}
    assert found["eol-os"].subject == "Windows XP Embedded"
    assert "2016-01-12" in found["eol-os"].detail
    # telnet is "high" by default: one step up on a life-sustaining device
    assert found["telnet-service"].severity == "critical"
    assert found["telnet-service"].device_id == "ip:10.2.0.9"


def test_eol_date_not_yet_reached_is_no_finding() -> None:
    dev = _dev("10.2.0.8", os=Attribute(value="CentOS Linux release 7.9", confidence=0.8))
    assert [f.type for f in build_findings(Collector(None), [dev], today=dt.date(2024, 1, 1))] == []
    got = [f.type for f in build_findings(Collector(None), [dev], today=dt.date(2025, 1, 1))]
    assert got == ["eol-os"]


def test_plain_http_is_a_finding_only_on_medical_devices() -> None:
    ep = Endpoints(client="10.3.0.2", server="10.3.0.7", client_port=5555, server_port=80)
    col = Collector(None)
    col.feed([HttpRequest(ts_ns=T0, flow_id="h", endpoints=ep, method="GET", path="/")])
    assert build_findings(col, [_dev("10.3.0.7", medical=False)]) == []
    (f,) = build_findings(col, [_dev("10.3.0.7", medical=True)])
    assert f.type == "cleartext-medical-protocol" and f.subject == "http tcp/80"


def test_internet_exposure_only_for_medical_devices() -> None:
    col = Collector(None)
    col.feed(
        [_flow("10.4.0.5", "52.1.2.3", 443, "tls"), _flow("10.4.0.6", "52.1.2.3", 443, "tls", 1)]
    )
    devs = [_dev("10.4.0.5", medical=True), _dev("10.4.0.6", medical=False)]
    found = build_findings(col, devs)
    assert [(f.type, f.device_id, f.subject) for f in found] == [
        ("internet-exposure", "ip:10.4.0.5", "outbound")
    ]
    col.feed([_flow("52.9.9.9", "10.4.0.5", 104, "dicom", 2)])
    inbound = [f for f in build_findings(col, devs) if f.subject == "inbound"]
    assert inbound and inbound[0].peers == ["52.9.9.9"]


def test_device_resolution_prefers_inventory_ids() -> None:
    dev = Device(device_id="mac:00:09:fb:01:02:03", mac="00:09:fb:01:02:03", ips=["10.5.0.3"])
    col = Collector(None)
    col.feed([_flow("10.5.0.9", "10.5.0.3", 21, "ftp")])
    (f,) = build_findings(col, [dev])
    assert f.device_id == "mac:00:09:fb:01:02:03" and f.peers == ["ip:10.5.0.9"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_store_lifecycle_on_both_databases(kind: str, request, tmp_path: Path) -> None:
    from medsentry.controls.store import (
        FindingFilter,
        close_finding,
        list_findings,
        upsert_findings,
    )

    if kind == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 's.db'}"
    col = Collector(None)
    col.feed([_flow("10.6.0.1", "10.6.0.2", 23, "telnet")])
    with open_store(url) as store:
        found = build_findings(col, [])
        assert len(upsert_findings(store, found).opened) == 1
        (f,) = list_findings(store)
        close_finding(store, f.finding_id, "bob", "replaced by SSH")
        assert list_findings(store) == []
        # same evidence again: stays closed; newer evidence: reopens
        assert upsert_findings(store, build_findings(col, [])).reopened == []
        col.drain()
        col.feed([_flow("10.6.0.1", "10.6.0.2", 23, "telnet", 10**9)])
        res = upsert_findings(store, build_findings(col, []))
        assert [r.finding_id for r in res.reopened] == [f.finding_id]
        (again,) = list_findings(store, FindingFilter(status="open"))
        assert again.evidence_count == 2


def test_default_community_by_keyed_hash_and_account_protocols() -> None:
    from medsentry.controls.rules import keyed_hash
    from medsentry.events.credentials import CleartextCredentials

    key = b"s" * 32
    ep = Endpoints(client="10.7.0.2", server="10.7.0.9", client_port=5000, server_port=161,
                   transport="udp")  # fmt: skip
    col = Collector(key)
    col.feed(
        [
            CleartextCredentials(ts_ns=T0, flow_id="s", endpoints=ep, protocol="snmp",
                                 mechanism="community", username_hash=keyed_hash(key, "admin"),
                                 password_sent=True),
            # "pi" is a default account for ssh/telnet/ftp, not for IMAP: no finding there
            CleartextCredentials(ts_ns=T0, flow_id="i", endpoints=ep, protocol="imap",
                                 mechanism="login", username_hash=keyed_hash(key, "pi"),
                                 password_sent=True, accepted=True),
            # a rejected default login is not "default credentials observed"
            CleartextCredentials(ts_ns=T0, flow_id="f", endpoints=ep, protocol="ftp",
                                 mechanism="user-pass", username_hash=keyed_hash(key, "pi"),
                                 password_sent=True, accepted=False),
        ]
    )  # fmt: skip
    found = {(f.type, f.subject): f for f in build_findings(col, [])}
    assert "'admin'" in found[("snmp-default-community", "udp/161")].detail
    assert not [k for k in found if k[0] == "default-credentials"]
    assert ("cleartext-credentials", "imap udp/161") in found


def test_zone_policy_configured_for_scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medsentry.controls.engine import ControlsAnalyzer
    from medsentry.controls.store import FindingFilter, list_findings
    from medsentry.errors import InputError

    pol = tmp_path / "zones.yaml"
    pol.write_text("zones:\n  - {name: icu, subnets: [10.8.1.0/24]}\n"
                   "  - {name: office, subnets: [10.8.2.0/24]}\nallow: []\n")  # fmt: skip
    monkeypatch.setenv("MEDSENTRY_ZONE_POLICY", str(pol))
    an = ControlsAnalyzer(phi_key=b"k" * 32)
    an.feed(
        [_flow("10.8.2.5", "10.8.1.7", 3389, "rdp"), _flow("10.8.1.7", "10.8.1.8", 104, "dicom", 1)]
    )
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        counts = an.finish(store, None)
        assert counts["opened"] == 1
        (f,) = list_findings(store, FindingFilter(types=("segmentation-violation",)))
    assert f.subject == "office -> icu tcp/3389" and f.device_id == "ip:10.8.2.5"
    pol.write_text("zones: [{name: icu}]\n")
    with pytest.raises(InputError, match="zones\\[0\\]"):
        ControlsAnalyzer(phi_key=b"k" * 32)
