"""The fingerprint library, the taxonomy and the OUI extract: loading, validation, user rules,
matching, and the documented rule for combining evidence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.errors import ConfigError
from medsentry.inventory import oui
from medsentry.inventory.combine import combine, noisy_or
from medsentry.inventory.fingerprints import Claim, load_library
from medsentry.inventory.identify import identify, vendor_key
from medsentry.inventory.state import DeviceState
from medsentry.inventory.taxonomy import parse_taxonomy, taxonomy


def claim(attr, value, conf, source="x", rule=None, observed="o") -> Claim:
    return Claim(attr, value, conf, source, rule or f"{source}.{value}", observed, None)


def test_shipped_library_loads_and_every_rule_has_a_source() -> None:
    lib = load_library()
    assert len(lib.rules) > 250
    assert all(r.source.strip() for r in lib.rules)
    ids = [r.id for r in lib.rules]
    assert len(ids) == len(set(ids))
    cats = set(taxonomy().categories)
    for r in lib.rules:
        c = r.set.get("category")
        assert c is None or c in cats, r.id


def test_every_shipped_regex_compiles() -> None:
    """The shipped library's patterns are compiled when first used, not at load: none is bad."""
    patterns = [c.arg for r in load_library().rules for c in r.conditions if c.kind == "regex"]
    assert len(patterns) > 300
    for pattern in patterns:
        re.compile(pattern, re.IGNORECASE)


def test_taxonomy_has_the_issue_categories_with_classes() -> None:
    tax = taxonomy()
    for key in (
        "infusion-pump", "patient-monitor", "patient-monitor.central-station", "ventilator",
        "anaesthesia", "imaging.ct", "imaging.mr", "imaging.us", "imaging.cr-dx", "imaging.mg",
        "imaging.nm", "imaging.pt", "imaging.xa", "pacs", "imaging-workstation", "lab-analyzer",
        "point-of-care", "medication-dispensing", "telemetry", "remote-monitoring",
        "interface-engine", "ehr", "it", "iot.building",
    ):  # fmt: skip
        assert key in tax.categories, key
    ct = tax.categories["imaging.ct"]
    assert ct.fda_class == "II" and "892.1750" in ct.regulation
    assert tax.categories["ventilator"].criticality == "life-sustaining"
    assert tax.categories["ehr"].fda_class is None and not tax.categories["ehr"].medical
    assert tax.ancestors("remote-monitoring.cgm") == ("remote-monitoring",)
    with pytest.raises(ConfigError, match="criticality"):
        parse_taxonomy({"source": "s", "categories": {"x": {"name": "X", "medical": False,
                                                             "criticality": "high"}}})  # fmt: skip
    with pytest.raises(ConfigError, match="regulation"):
        parse_taxonomy({"source": "s", "categories": {"x": {"name": "X", "medical": True,
                        "criticality": "support", "fda_class": "II"}}})  # fmt: skip


def test_oui_extract() -> None:
    assert oui.lookup("00:09:5c:20:01:00")[0].startswith("Philips Medical Systems")
    assert oui.lookup("44:4b:5d:00:00:01") == ("GE Healthcare", "444B5D/24")
    assert oui.lookup("02:00:00:00:00:01") is None  # locally administered
    assert "wireshark" in oui.source().lower() or "ieee-data" in oui.source().lower()
    # longest assigned prefix first: MA-S/IAB (/36) and MA-M (/28) blocks inside MA-L ranges
    assert oui.lookup("00:1b:c5:00:00:01") == ("Converging Systems Inc.", "001BC5000/36")
    assert oui.lookup("00-55-DA-00-00-01") == ("Shinko Technos co.,ltd.", "0055DA0/28")
    for bad in ("", "1:2", "zz:zz:zz:zz:zz:zz", "00:09:5c:20:01", "00:09:5c:20:01:00:00"):
        assert oui.lookup(bad) is None


def test_oui_lookup_agrees_with_a_dictionary_of_the_extract() -> None:
    """Every assignment in the shipped extract is found under its own prefix (bisection over
    the sorted lines gives what a dictionary of all of them would)."""
    import gzip
    from importlib import resources

    text = gzip.decompress(
        resources.files("medsentry").joinpath("data", "inventory_oui.tsv.gz").read_bytes()
    ).decode()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == sorted(body)  # a lookup bisects the text itself
    table = {}
    for line in body:
        prefix, org = line.split("\t", 1)
        table[prefix] = org
    for prefix, org in list(table.items())[::97]:
        hexpart, bits = prefix.split("/")
        value = int(hexpart, 16) << (48 - int(bits))
        if value >> 40 & 0x02:
            continue  # a locally administered block: never looked up
        mac = ":".join(f"{value:012x}"[i : i + 2] for i in range(0, 12, 2))
        got = oui.lookup(mac)
        longer = [p for p in table if p != prefix and int(p.split("/")[1]) > int(bits)
                  and mac.replace(":", "").upper().startswith(p.split("/")[0])]  # fmt: skip
        assert got == (table[longer[0]], longer[0]) if longer else got == (org, prefix)


def _write(d: Path, name: str, doc) -> Path:
    p = d / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return p


def test_user_rules_extend_the_library(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path, "site.yaml", {
        "source": "our clinical engineering naming standard",
        "rules": [{
            "id": "site.pump-hostnames",
            "when": {"hostname": {"regex": "^icu-pump-(?P<n>\\d+)$"}, "!role": "dicom-scu"},
            "set": {"category": "infusion-pump", "model": "Site pump {n}"},
            "confidence": 0.7,
        }],
    })  # fmt: skip
    monkeypatch.setenv("MEDSENTRY_FINGERPRINTS", str(tmp_path))
    lib = load_library()
    assert any(r.id == "site.pump-hostnames" and r.file.endswith("site.yaml") for r in lib.rules)
    st = DeviceState(device_id="mac:02:00:00:00:00:07", mac="02:00:00:00:00:07")
    st.observe("hostname", "icu-pump-12", 1)
    dev = identify(st, lib, taxonomy())
    assert dev.category.value == "infusion-pump" and dev.model.value == "Site pump 12"
    assert dev.category.evidence[0].rule == "site.pump-hostnames"
    st.roles["dicom-scu"] = 1  # the negated condition now fails
    assert identify(st, lib, taxonomy()).model is None
    r = CliRunner().invoke(main, ["inventory", "fingerprints", "--format", "json"])
    assert r.exit_code == 0 and "site.pump-hostnames" in r.output


@pytest.mark.parametrize(
    "doc, message",
    [
        ("rules: [\n  - id: a\n    when: {x: [\n", "not valid YAML"),
        ({"rules": [{"id": "a", "when": {"x": "y"}, "set": {"colour": "red"},
                     "confidence": 0.5, "source": "s"}]}, "cannot set 'colour'"),
        ({"rules": [{"id": "a", "when": {"x": "y"}, "set": {"category": "toaster"},
                     "confidence": 0.5, "source": "s"}]}, "not in the taxonomy"),
        ({"rules": [{"id": "a", "when": {"x": {"regex": "("}}, "set": {"vendor": "v"},
                     "confidence": 0.5, "source": "s"}]}, "bad regex"),
        ({"rules": [{"id": "a", "when": {"x": "y"}, "set": {"vendor": "v"},
                     "confidence": 1.5, "source": "s"}]}, "confidence"),
        ({"rules": [{"id": "a", "when": {"x": "y"}, "set": {"vendor": "v"},
                     "confidence": 0.5}]}, "source"),
        ({"rules": [{"id": "a", "when": {"!x": "y"}, "set": {"vendor": "v"},
                     "confidence": 0.5, "source": "s"}]}, "cannot be negated"),
        ({"rules": [{"id": "oui.vendor", "when": {"x": "y"}, "set": {"vendor": "v"},
                     "confidence": 0.5, "source": "s"}]}, "already defined"),
    ],
)  # fmt: skip
def test_malformed_user_rules_are_config_errors(tmp_path: Path, doc, message: str) -> None:
    p = _write(tmp_path, "bad.yaml", doc)
    with pytest.raises(ConfigError, match=message) as exc:
        load_library([tmp_path])
    assert str(p) in str(exc.value)
    r = CliRunner().invoke(main, ["inventory", "fingerprints", "--fingerprints", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_noisy_or_across_channels_max_within() -> None:
    # two different observation keys agree: independent evidence
    assert noisy_or([claim("v", "a", 0.5, "dhcp"), claim("v", "a", 0.6, "hl7")]) == pytest.approx(
        0.8
    )
    # thirty names of one cloud are one channel
    same = [claim("v", "a", 0.5, "domain", observed=f"n{i}") for i in range(30)]
    assert noisy_or(same) == pytest.approx(0.5)


def test_conflicting_evidence_lowers_confidence_and_is_kept() -> None:
    a = combine([claim("vendor", "Philips", 0.8, "dicom"), claim("vendor", "GE", 0.4, "oui")])
    assert a.value == "Philips"
    assert a.confidence == pytest.approx(0.8 - 0.5 * 0.4)
    assert [e.value for e in a.conflicts] == ["GE"]
    tie = combine([claim("v", "x", 0.6, "a"), claim("v", "y", 0.6, "b")])
    assert tie.confidence == pytest.approx(0.3)


def test_vendor_spellings_agree_and_parents_support_children() -> None:
    a = combine(
        [claim("vendor", "GE MEDICAL SYSTEMS", 0.85, "dicom"),
         claim("vendor", "GE Healthcare", 0.5, "mac.oui")],
        key=vendor_key,
    )  # fmt: skip
    assert a.confidence == pytest.approx(1 - 0.15 * 0.5) and not a.conflicts
    tax = taxonomy()
    c = combine(
        [claim("c", "imaging", 0.6, "dicom.service.scu"), claim("c", "imaging.ct", 0.5, "host")],
        key=lambda v: v,
        ancestors=tax.ancestors,
    )
    assert c.value == "imaging.ct" and c.confidence == pytest.approx(0.8) and not c.conflicts


@pytest.mark.parametrize(
    ("rule", "registry"),
    [
        ("Mindray", "Shenzhen Mindray Bio-Medical Electronics Co., Ltd."),
        ("bioMérieux", "BIOMERIEUX SA"),
        ("Radiometer", "Radiometer Medical ApS"),
        ("Canon", "Canon Medical Systems Corporation"),
        ("Carestream", "Carestream Health, Inc."),
        ("Nihon Kohden", "NIHON KOHDEN CORPORATION"),
        ("HP", "Hewlett Packard"),
        ("Aruba", "Aruba, a Hewlett Packard Enterprise Company"),
        ("Nordic Semiconductor", "Nordic Semiconductor ASA"),
    ],
)
def test_a_registry_name_and_a_rule_name_of_one_company_agree(rule: str, registry: str) -> None:
    a = combine(
        [claim("vendor", rule, 0.8, "dicom"), claim("vendor", registry, 0.6, "mac.oui")],
        key=vendor_key,
    )
    assert not a.conflicts and a.confidence == pytest.approx(1 - 0.2 * 0.4)
    assert vendor_key("Shenzhen Inc") != vendor_key("Inc")  # a company named after its city
    assert vendor_key("GE Healthcare") != vendor_key("Philips Healthcare")


def test_a_rival_company_is_named_once_whatever_its_spellings() -> None:
    a = combine(
        [
            claim("vendor", "GE Healthcare", 0.9, "dicom"),
            claim("vendor", "Philips Medical Systems Nederland B.V.", 0.5, "mac.oui", observed="a"),
            claim("vendor", "Philips", 0.4, "hl7", observed="b"),
        ],
        key=vendor_key,
    )
    assert a.value == "GE Healthcare"
    # both claims shown, under one name: the group's (its strongest claim's, without `display`)
    assert [e.value for e in a.conflicts] == ["Philips Medical Systems Nederland B.V."] * 2
    assert [e.observed for e in a.conflicts] == ["a", "b"]


def test_a_makers_cloud_names_the_device_unless_it_is_a_phone_or_computer() -> None:
    lib, tax = load_library(), taxonomy()
    uploader = DeviceState(device_id="mac:00:1a:2b:00:00:09", mac="00:1a:2b:00:00:09")
    uploader.observe("domain", "share2.dexcom.com", 1)
    dev = identify(uploader, lib, tax)
    assert dev.category.value == "remote-monitoring.cgm" and dev.vendor.value == "Dexcom"
    # a randomized MAC (a phone's privacy address) talking to the same cloud: the app's host
    phone = DeviceState(device_id="mac:9a:1a:2b:00:00:09", mac="9a:1a:2b:00:00:09")
    phone.observe("domain", "share2.dexcom.com", 1)
    dev = identify(phone, lib, tax)
    assert dev.category.value == "remote-monitoring.companion-app" and dev.vendor is None
    # a Windows PC opening the maker's web portal is no CGM either
    pc = DeviceState(device_id="mac:00:08:74:00:00:01", mac="00:08:74:00:00:01")
    pc.observe("domain", "clarity.dexcom.com", 1)
    pc.observe("dhcp.vendor_class", "MSFT 5.0", 1)
    dev = identify(pc, lib, tax)
    assert dev.category.value == "remote-monitoring.companion-app" and dev.os.value == "Windows"


def test_an_agents_os_version_never_contradicts_its_applications() -> None:
    """SNMP sysDescr (Net-SNMP's uname default, the Windows SNMP Service): the OS, and its
    release as the software version only when the device names no software of its own."""
    lib, tax = load_library(), taxonomy()
    descr = "Linux pacs 5.10.0-28-amd64 #1 SMP Debian 5.10.209-2 (2024-01-31) x86_64"
    server = DeviceState(device_id="ip:10.0.0.5")
    server.observe("snmp.sys_descr", descr, 1)
    dev = identify(server, lib, tax)
    assert (dev.os.value, dev.software_version.value) == ("Linux", "Linux 5.10.0-28-amd64")
    server.observe("dicom.implementation_version_name", "dcm4che-5.31.0", 2)
    dev = identify(server, lib, tax)
    assert dev.os.value == "Linux" and dev.software_version.value == "dcm4che 5.31.0"
    assert dev.software_version.conflicts == []
    win = DeviceState(device_id="ip:10.0.0.6")
    win.observe(
        "snmp.sys_descr",
        "Hardware: Intel64 Family 6 Model 85 Stepping 7 AT/AT COMPATIBLE - Software: Windows "
        "Version 6.3 (Build 17763 Multiprocessor Free)",
        1,
    )
    win.observe("snmp.sys_object_id", "1.3.6.1.4.1.311.1.1.3.1.2", 1)
    win.observe("snmp.enterprise", "311", 1)
    dev = identify(win, lib, tax)
    assert (dev.os.value, dev.category.value) == ("Windows", "it.server")
    assert dev.software_version.value == "Windows NT 6.3 build 17763" and dev.vendor is None


def _pump(n: int, ts: int, hl7_app: str = "ALARIS_GW", extra_domain: str | None = None):
    st = DeviceState(device_id=f"mac:00:12:21:00:00:{n:02x}", mac=f"00:12:21:00:00:{n:02x}")
    st.first_ns = ts
    st.observe("hl7.application", hl7_app, ts + 5)
    st.observe("dhcp.vendor_class", "MSFT 5.0", ts + 7)
    st.observe("domain", f"host{n}.hospital.example", ts + 9)  # no rule: not in the signature
    if extra_domain:
        st.observe("domain", extra_domain, ts + 11)
    return st


def test_a_fleet_is_identified_once_with_each_devices_own_evidence_times() -> None:
    import msgspec

    from medsentry.inventory import identify as ident

    lib, tax = load_library(), taxonomy()
    devices = [_pump(1, 1_000), _pump(2, 2_000), _pump(3, 3_000, extra_domain="share2.dexcom.com")]
    cached = [identify(st, lib, tax) for st in devices]
    assert len(lib.fleet) == 2  # pumps 1 and 2 share one; the third talks to a maker's cloud
    # the same records as identifying each device on its own, times included
    fresh = load_library()
    original = ident._fleet_attributes
    try:
        ident._fleet_attributes = lambda *a, **k: None
        plain = [identify(st, fresh, tax) for st in devices]
    finally:
        ident._fleet_attributes = original
    enc = msgspec.json.encode
    assert [enc(d) for d in cached] == [enc(d) for d in plain]
    assert cached[1].os.evidence[0].ts_ns == 2_007 and cached[0].os.evidence[0].ts_ns == 1_007
    # the cache hands out objects of their own: changing one device leaves the next untouched
    cached[0].os.evidence.clear()
    again = identify(_pump(4, 4_000), lib, tax)
    assert again.os.evidence and again.os.evidence[0].ts_ns == 4_007


def test_one_company_shows_one_vendor_name_whatever_the_registry_spelling() -> None:
    """A hospital's device list counts makers: the IEEE registry's "B.Braun Melsungen AG" and
    "Draeger Medical Systems, Inc." show as the names the rules give those companies, while a
    brand bought by another company (Smiths Medical, now ICU Medical's) keeps its own name."""
    lib, tax = load_library(), taxonomy()

    def vendor_of(mac: str, **obs: str) -> str:
        st = DeviceState(device_id=f"mac:{mac}", mac=mac)
        for key, value in obs.items():
            st.observe(key.replace("_", "."), value, 1)
        dev = identify(st, lib, tax)
        assert dev.vendor is not None
        return dev.vendor.value

    assert vendor_of("00:12:21:00:00:01") == "B. Braun"  # OUI 00:12:21 B.Braun Melsungen AG
    assert vendor_of("00:10:5d:00:00:01") == vendor_of("00:30:e6:00:00:01") == "Dräger"
    assert vendor_of("44:4b:5d:00:00:01") == "GE HealthCare"  # registry: "GE Healthcare"
    smiths = vendor_of("00:1a:01:00:00:01")  # OUI 00:1A:01 Smiths Medical
    assert smiths == "Smiths Medical" and vendor_key(smiths) == vendor_key("ICU Medical")
    # a rule's own clean name is kept as the rule wrote it
    assert vendor_of("00:1a:2b:00:00:09", domain="carelink.minimed.com") == "Medtronic"


@pytest.mark.parametrize(
    ("agent", "model"),
    [
        ("Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36", "SM-G973F"),
        ("Dalvik/2.1.0 (Linux; U; Android 11; Pixel 5 Build/RQ3A.210805.001.A1)", "Pixel 5"),
        (
            "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit",
            "LG-L160L",
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; SM-G973F Build/QP1A.190711.020; wv) AppleWebKit",
            "SM-G973F",
        ),
        ("Chrome/74.0.3729.157 Android 8.0.0; BND-L21", "BND-L21"),  # Google QUIC's UAID
        ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36", None),  # Chrome's reduced UA
        ("okhttp/4.9.0", None),
    ],
)
def test_an_android_user_agent_names_the_handset_model(agent: str, model: str | None) -> None:
    phone = DeviceState(device_id="mac:9a:00:00:00:00:01", mac="9a:00:00:00:00:01")
    phone.observe("http.user_agent", agent, 1)
    dev = identify(phone, load_library(), taxonomy())
    assert (dev.model.value if dev.model else None) == model


def test_an_upgrade_supersedes_the_old_version_whatever_the_scan_order() -> None:
    """Software Versions VA10 then VA20 from one modality: it runs VA20 now, not a conflict."""
    lib, tax = load_library(), taxonomy()
    day = 86_400 * 10**9
    for seen in ([("VA10", 1), ("VA20", 2)], [("VA20", 2), ("VA10", 1)]):  # any fold order
        st = DeviceState(device_id="mac:00:00:00:00:00:01", mac="00:00:00:00:00:01")
        for value, t in seen:
            st.observe("dicom.software_version", value, t * day)
        sw = identify(st, lib, tax).software_version
        assert sw.value == "VA20" and not sw.conflicts and sw.confidence == pytest.approx(0.8)
    both = DeviceState(device_id="mac:00:00:00:00:00:02", mac="00:00:00:00:00:02")
    both.observe("dicom.software_version", "VA20", day)  # two values in one dataset: both stand
    both.observe("dicom.software_version", "SP3", day)
    sw = identify(both, lib, tax).software_version
    assert {sw.value, *(c.value for c in sw.conflicts)} == {"VA20", "SP3"}


@pytest.mark.parametrize(
    ("hostname", "category"),
    [
        ("lab-analyzer-2", "lab-analyzer"),  # was the LIS, from "lab-"
        ("LAB-ANALYSER01", "lab-analyzer"),
        ("hematology-3", "lab-analyzer"),
        ("lis01", "lis"),
        ("lab-ws-01", "lis"),
        ("colab-1", None),
    ],
)
def test_a_host_name_names_an_analyzer_apart_from_the_lis(hostname: str, category) -> None:
    st = DeviceState(device_id="mac:00:00:00:00:00:01", mac="00:00:00:00:00:01")
    st.observe("hostname", hostname, 1)
    dev = identify(st, load_library(), taxonomy())
    assert (dev.category.value if dev.category else None) == category
