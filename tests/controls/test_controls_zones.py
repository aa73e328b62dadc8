"""Zone policy semantics: placement by category, VLAN, longest subnet; port lists and ranges;
intra-zone; firewall text for IPv4 and IPv6 zones."""

from __future__ import annotations

import pytest

from medsentry.controls.firewall import to_acl, to_iptables, to_nftables
from medsentry.controls.rules import FlowSummary
from medsentry.controls.segmentation import check, parse_policy
from medsentry.errors import InputError
from medsentry.inventory.model import Attribute, Device

POLICY = {
    "zones": [
        {"name": "pumps", "categories": ["infusion-pump*"]},
        {"name": "imaging", "vlans": [20], "subnets": ["10.20.0.0/16", "fd00:21::/64"]},
        {"name": "pacs", "subnets": ["10.20.5.0/24", "fd00:20::/64"]},
        {"name": "it", "subnets": ["10.0.0.0/8"]},
    ],
    "intra_zone": "check",
    "allow": [
        {"from": "imaging", "to": "pacs", "transport": "tcp", "port": [104, "11112-11113"]},
        {"from": "pumps", "to": "it", "transport": "tcp", "port": 443, "protocol": "tls"},
        {"from": "it", "to": "it", "transport": "udp", "port": 53},
    ],
}


def _conv(c: str, s: str, port: int, proto: str | None = None, vlan: int | None = None,
          transport: str = "tcp") -> FlowSummary:  # fmt: skip
    return FlowSummary(c, s, transport, port, proto, vlan, None, None, 1, 2, flows=1)


def test_placement_precedence() -> None:
    p = parse_policy(POLICY, "t.yaml")
    pump = Device(device_id="ip:10.9.0.4", ips=["10.9.0.4"],
                  category=Attribute(value="infusion-pump.insulin", confidence=0.9))  # fmt: skip
    assert p.zone_of("10.9.0.4", None, pump) == "pumps"  # category beats subnet
    assert p.zone_of("10.9.0.4") == "it"
    assert p.zone_of("10.9.0.4", 20) == "imaging"  # VLAN beats subnet
    assert p.zone_of("10.20.5.9") == "pacs"  # longest prefix
    assert p.zone_of("10.20.6.9") == "imaging"
    assert p.zone_of("fd00:20::5") == "pacs"
    assert p.zone_of("192.168.1.1") == "unassigned"
    assert p.zone_of("8.8.8.8") == "external"


def test_rules_ports_protocols_and_intra_zone() -> None:
    p = parse_policy(POLICY, "t.yaml")
    convs = [
        _conv("10.20.6.1", "10.20.5.9", 104, "dicom"),  # allowed
        _conv("10.20.6.1", "10.20.5.9", 11113, "dicom"),  # allowed by the range
        _conv("10.20.6.1", "10.20.5.9", 11114, "dicom"),  # outside the range
        _conv("10.1.1.1", "10.1.1.2", 53, "dns", transport="udp"),  # it -> it allowed
        _conv("10.1.1.1", "10.1.1.2", 445, "smb"),  # intra-zone, checked, not allowed
        _conv("10.20.6.1", "10.20.6.2", 22, "ssh"),  # intra imaging, not allowed
    ]
    bad = {(v.server_zone, v.port) for v in check(p, convs)}
    assert bad == {("pacs", 11114), ("it", 445), ("imaging", 22)}
    pump = Device(device_id="ip:10.9.0.4", ips=["10.9.0.4"],
                  category=Attribute(value="infusion-pump", confidence=0.9))  # fmt: skip
    tls = [_conv("10.9.0.4", "10.3.3.3", 443, "tls"), _conv("10.9.0.4", "10.3.3.3", 443, "http")]
    assert [v.protocol for v in check(p, tls, {"10.9.0.4": pump})] == ["http"]


def test_firewall_text_covers_both_ip_versions() -> None:
    p = parse_policy(POLICY, "t.yaml")
    nft = to_nftables(p)
    assert "set z_pacs_v6" in nft and "fd00:20::/64" in nft
    assert "tcp dport { 104, 11112-11113 }" in nft
    ipt = to_iptables(p)
    assert "-m multiport --dports 104,11112:11113" in ipt
    assert "# ip6tables-restore:" in ipt
    acl = to_acl(p)
    assert acl.strip().endswith("deny any any any any  # default deny between zones")
    # zones known only by category have no addresses: their rules cannot be written as text
    assert "pumps -> it" not in nft


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"zones": []}, "zones"),
        ({"zones": [{"name": "a"}]}, "zones[0]"),
        ({"zones": [{"name": "a", "vlans": [5000]}]}, "zones[0].vlans"),
        ({"zones": [{"name": "any", "subnets": ["10.0.0.0/8"]}]}, "zones[0].name"),
        ({"zones": [{"name": "a", "subnets": ["10.0.0.0/8"]}],
          "allow": [{"from": "a", "to": "a", "port": "70000"}]}, "allow[0].port"),
        ({"zones": [{"name": "a", "subnets": ["10.0.0.0/8"]}],
          "allow": [{"from": "a", "to": "a", "transport": "gre"}]}, "allow[0].transport"),
        ({"zones": [{"name": "a", "subnets": ["10.0.0.0/8"]}], "intra_zone": "deny"}, "intra_zone"),
        # wrong types (found by mutation fuzzing: TypeError, an internal error, before)
        ({"zones": [{"name": "a", "subnets": 10.5}]}, "zones[0].subnets"),
        ({"zones": [{"name": "a", "vlans": 7}]}, "zones[0].vlans"),
        ({"zones": [{"name": "a", "vlans": [True]}]}, "zones[0].vlans"),
        ({"zones": [{"name": "a", "categories": 3}]}, "zones[0].categories"),
        ({"zones": [{"name": "a", "subnets": ["10.0.0.0/8"]}],
          "allow": [{"from": ["a"], "to": "a"}]}, "allow[0].from"),
        ({"zones": [{"name": "a", "subnets": ["10.0.0.0/8"]}], "allow": 5}, "allow"),
    ],
)  # fmt: skip
def test_malformed_policies(doc: dict, where: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_policy(doc, "zones.yaml")
    assert where in str(exc.value) and "zones.yaml" in str(exc.value)


def test_firewall_text_loads_in_the_kernel(tmp_path) -> None:
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, nftables and iproute2")
    p = parse_policy(POLICY, "t.yaml")
    ns = f"mszones{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        nft = tmp_path / "r.nft"
        nft.write_text(to_nftables(p))
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", str(nft)],
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr
        if shutil.which("iptables-restore") and shutil.which("ip6tables-restore"):
            text = to_iptables(p)
            v4, _, v6 = text.partition("# ip6tables-restore:")
            (tmp_path / "v4").write_text(v4)
            (tmp_path / "v6").write_text("\n".join(line[2:] for line in v6.splitlines() if line))
            for tool, f in (("iptables-restore", "v4"), ("ip6tables-restore", "v6")):
                r = subprocess.run(["ip", "netns", "exec", ns, tool, "--test", str(tmp_path / f)],
                                   capture_output=True, text=True)  # fmt: skip
                assert r.returncode == 0, (tool, r.stderr)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_recommend_without_flows_is_a_clear_error(tmp_path) -> None:
    from click.testing import CliRunner

    from medsentry.cli import main

    res = CliRunner().invoke(
        main, ["policy", "recommend", "--db", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert res.exit_code == 2 and "no flows stored" in res.output


def test_eol_banner_patterns_are_word_bounded() -> None:
    from medsentry.controls.knowledge import knowledge

    def systems(banner: str) -> list[str]:
        return [s.name for s in knowledge().eol if any(p.search(banner) for p in s.patterns)]

    assert systems("Stretcher bed controller 2.1") == []
    assert systems("Apache/2.4.25 (Debian) deb9u3")[0] == "Debian 9 (stretch)"
    assert systems("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)")[0] == "Windows XP"
