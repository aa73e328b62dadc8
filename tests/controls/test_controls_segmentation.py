"""Zone segmentation on a routed multi-subnet network built in network namespaces.

Three subnets (imaging, clinical, IT) and an "internet" host hang off a router namespace with
ip_forward; real traffic (dcmtk DICOM, TCP and UDP from Python sockets) is captured on the
router (tcpdump -i any -Q in: each routed packet once). The capture is scanned by the real
`medsentry scan`; `medsentry policy check` must name exactly the flows the zone policy does
not allow; the recommended policy, exported as nftables and iptables rules, must load in the
kernel, and once applied on the router must let the observed flows through and stop others.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.controls.segmentation import load_policy, recommend, stored_conversations
from medsentry.inventory.model import Attribute, Device
from medsentry.store import open_store

# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("test_controls_segmentation"),
]

TAG = f"ms{os.getpid() % 100000}"
NS = {k: f"{TAG}{k}" for k in ("r", "img", "cli", "it", "net")}
SUBNETS = {"img": "10.71.1", "cli": "10.71.2", "it": "10.71.3", "net": "8.8.4"}
HOST = {"img": "10.71.1.10", "cli": "10.71.2.20", "it": "10.71.3.30", "net": "8.8.4.4"}

SERVER = """
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept()
        data = c.recv(4096); c.sendall(b"ok " + data); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(4096); s.sendto(b"ok", peer)
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True).start()
threading.Event().wait()
"""

CLIENT = """
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    c = socket.create_connection((host, port), timeout=3)
    c.sendall(b"hello"); c.recv(100); c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.sendto(b"hello", (host, port)); s.recvfrom(100)
"""

POLICY = """
zones:
  - {name: imaging, subnets: [10.71.1.0/24]}
  - {name: clinical, subnets: [10.71.2.0/24]}
  - {name: it, subnets: [10.71.3.0/24]}
allow:
  - {from: imaging, to: clinical, transport: tcp, port: 104, protocol: dicom}
  - {from: it, to: clinical, transport: tcp, port: [8080, "9000-9010"]}
  - {from: any, to: clinical, transport: udp, port: 514}
"""


def sh(*cmd: str, ns: str | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def network():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for network namespaces")
    try:
        for ns in NS.values():
            sh("ip", "netns", "add", ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS["r"])
        sh("ip", "link", "set", "lo", "up", ns=NS["r"])
        for k, net in SUBNETS.items():
            a, b = f"{TAG}{k}R", f"{TAG}{k}H"
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", NS["r"])
            sh("ip", "link", "set", b, "netns", NS[k])
            sh("ip", "addr", "add", f"{net}.1/24", "dev", a, ns=NS["r"])
            sh("ip", "link", "set", a, "up", ns=NS["r"])
            sh("ip", "addr", "add", f"{HOST[k]}/24", "dev", b, ns=NS[k])
            sh("ip", "link", "set", b, "up", ns=NS[k])
            sh("ip", "link", "set", "lo", "up", ns=NS[k])
            sh("ip", "route", "add", "default", "via", f"{net}.1", ns=NS[k])
        yield
    finally:
        for ns in NS.values():
            sh("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def servers(ns: str, *specs: str):
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, *specs])
    time.sleep(0.4)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def client(ns: str, proto: str, host: str, port: int, check: bool = True) -> bool:
    r = sh(sys.executable, "-c", CLIENT, proto, host, str(port), ns=ns, check=False, timeout=20)
    if check:
        assert r.returncode == 0, r.stderr
    return r.returncode == 0


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory):
    import ctl_stacks
    from loopcap import dcmtk
    from pydicom.data import get_testdata_file

    tmp = tmp_path_factory.mktemp("netns")
    storescp, storescu = dcmtk("storescp"), dcmtk("storescu")
    with network():
        pcap = tmp / "routed.pcap"
        scp = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NS["cli"],
                storescp,
                "-dhl",
                "-aet",
                "PACS",
                "-od",
                str(tmp),
                "104",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with (
                ctl_stacks.tcpdump(pcap, "ip", iface="any", netns=NS["r"]),
                servers(NS["cli"], "tcp/8080", "tcp/9005", "udp/514"),
                servers(NS["img"], "tcp/23", "tcp/2323"),
                servers(NS["net"], "tcp/443"),
            ):
                time.sleep(0.3)
                ct = get_testdata_file("CT_small.dcm")
                sh(storescu, "-aet", "CT01", "-aec", "PACS", HOST["cli"], "104", ct, ns=NS["img"])
                client(NS["it"], "tcp", HOST["cli"], 8080)  # allowed
                client(NS["it"], "tcp", HOST["cli"], 9005)  # allowed (range)
                client(NS["it"], "udp", HOST["cli"], 514)  # allowed (any -> clinical udp/514)
                client(NS["img"], "udp", HOST["cli"], 514)  # allowed
                client(NS["it"], "tcp", HOST["img"], 23)  # violation: it -> imaging
                client(NS["img"], "tcp", HOST["net"], 443)  # violation + internet exposure
            policy = tmp / "zones.yaml"
            policy.write_text(POLICY)
            db = f"sqlite:///{tmp / 'store.db'}"
            runner = CliRunner(env={"MEDSENTRY_HOME": str(tmp / "home")})
            res = runner.invoke(
                main, ["scan", "--db", db, "--engines", "controls", "-q", str(pcap)]
            )
            assert res.exit_code == 0, res.output
            yield {"db": db, "runner": runner, "policy": policy, "tmp": tmp}
        finally:
            scp.kill()
            scp.wait()


def test_policy_check_names_exactly_the_violations(routed) -> None:
    runner, db = routed["runner"], routed["db"]
    res = runner.invoke(
        main, ["policy", "check", str(routed["policy"]), "--db", db, "--format", "json"]
    )
    assert res.exit_code == 1, res.output
    got = {(v["client"], v["server"], v["from_zone"], v["to_zone"], v["transport"], v["port"])
           for v in json.loads(res.output)}  # fmt: skip
    assert got == {
        (HOST["it"], HOST["img"], "it", "imaging", "tcp", 23),
        (HOST["img"], HOST["net"], "imaging", "external", "tcp", 443),
    }
    res = runner.invoke(
        main, ["findings", "--db", db, "--type", "segmentation-violation", "--format", "json"]
    )
    rows = json.loads(res.output)
    assert {(r["device_id"], r["subject"]) for r in rows} == {
        (f"ip:{HOST['it']}", "it -> imaging tcp/23"),
        (f"ip:{HOST['img']}", "imaging -> external tcp/443"),
    }
    assert all(r["evidence"][0]["flow_id"] for r in rows)


def test_internet_exposure_of_a_medical_device(routed) -> None:
    res = routed["runner"].invoke(
        main, ["findings", "--db", routed["db"], "--type", "internet-exposure", "--format", "json"]
    )
    (f,) = json.loads(res.output)
    assert f["device_id"] == f"ip:{HOST['img']}" and f["subject"] == "outbound"
    assert HOST["net"] in f["peers"]  # a public address, not an inventory device


def test_malformed_policy_is_one_line_exit_2(routed) -> None:
    bad = routed["tmp"] / "bad.yaml"
    bad.write_text("zones:\n  - {name: a, subnets: [10.0.0.0/33]}\n")
    res = routed["runner"].invoke(main, ["policy", "check", str(bad), "--db", routed["db"]])
    assert res.exit_code == 2 and "zones[0].subnets" in res.output and str(bad) in res.output
    bad.write_text(
        "zones:\n  - {name: a, subnets: [10.0.0.0/8]}\nallow:\n  - {from: a, to: nowhere}\n"
    )
    res = routed["runner"].invoke(main, ["policy", "check", str(bad), "--db", routed["db"]])
    assert res.exit_code == 2 and "allow[0].to" in res.output


def _categorized() -> list[Device]:
    def dev(ip: str, cat: str, medical: bool) -> Device:
        return Device(device_id=f"ip:{ip}", ips=[ip], medical=medical,
                      category=Attribute(value=cat, confidence=0.9))  # fmt: skip

    return [
        dev(HOST["img"], "imaging.ct", True),
        dev(HOST["cli"], "pacs", True),
        dev(HOST["it"], "workstation", False),
    ]


def test_recommended_policy_is_enforceable(routed) -> None:
    """Recommended from what was seen, the policy allows exactly the observed conversations:
    applied as nftables on the router it passes them and stops an unobserved one."""
    if shutil.which("nft") is None:
        pytest.skip("nftables (nft) is not installed")
    with open_store(routed["db"]) as store:
        convs = stored_conversations(store)
    policy = recommend(convs, _categorized())
    names = {z.name for z in policy.zones}
    assert {"imaging-ct", "pacs", "workstation"} <= names
    rules = {(r.src, r.dst, r.transport, r.ports[0][0]) for r in policy.rules}
    assert ("imaging-ct", "pacs", "tcp", 104) in rules
    assert ("workstation", "imaging-ct", "tcp", 23) in rules
    assert ("imaging-ct", "external", "tcp", 443) in rules
    # the YAML round-trips through the policy loader, and nothing observed violates it
    import yaml

    path = routed["tmp"] / "recommended.yaml"
    path.write_text(yaml.safe_dump(policy.as_dict(), sort_keys=False))
    from medsentry.controls.segmentation import check

    by_ip = {ip: d for d in _categorized() for ip in d.ips}
    assert check(load_policy(path), convs, by_ip) == []
    from medsentry.controls.firewall import to_iptables, to_nftables

    nft = routed["tmp"] / "rules.nft"
    nft.write_text(to_nftables(policy))
    ipt = routed["tmp"] / "rules.ipt"
    ipt.write_text(to_iptables(policy))
    if shutil.which("iptables-restore"):
        r = sh("iptables-restore", "--test", str(ipt), ns=NS["r"], check=False)
        assert r.returncode == 0, r.stderr
    sh("nft", "-f", str(nft), ns=NS["r"])  # the router of the fixture's network enforces it
    try:
        with servers(NS["img"], "tcp/23", "tcp/2323"), servers(NS["cli"], "tcp/8080"):
            assert client(NS["it"], "tcp", HOST["img"], 23, check=False)  # observed: passes
            assert client(NS["it"], "tcp", HOST["cli"], 8080, check=False)
            assert not client(NS["it"], "tcp", HOST["img"], 2323, check=False)  # never seen
            assert not client(NS["cli"], "tcp", HOST["img"], 23, check=False)  # wrong direction
    finally:
        sh("nft", "flush", "ruleset", ns=NS["r"], check=False)


def test_recommend_cli_formats(routed) -> None:
    runner, db = routed["runner"], routed["db"]
    for fmt, marker in (("yaml", "zones:"), ("nftables", "table inet medsentry_zones"),
                        ("iptables", "*filter"), ("acl", "deny any any any any")):  # fmt: skip
        res = runner.invoke(main, ["policy", "recommend", "--db", db, "--format", fmt])
        assert res.exit_code == 0, res.output
        assert marker in res.output
    out = routed["tmp"] / "rec.yaml"
    res = runner.invoke(main, ["policy", "recommend", "--db", db, "--out", str(out)])
    assert res.exit_code == 0
    assert load_policy(out).rules


def test_policy_file_not_utf8_is_one_clear_error(tmp_path) -> None:
    from medsentry.errors import InputError

    path = tmp_path / "policy.yaml"
    path.write_bytes(b"zones:\n  imaging\xff: [10.71.1.0/24]\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_policy(path)
