"""What SNMP reveals of a device, end to end with real stacks: three Net-SNMP agents (snmpd) on
loopback answer snmpget/snmpwalk (v1, v2c) and an SNMPv3 noAuthNoPriv get, captured by tcpdump;
`medsentry scan` (the command, a subprocess) stores the capture in SQLite and the devices' stored
observations, host names and identification are checked, the values against tshark's reading of
the same capture. The nDPI corpus's snmp.pcap is scanned too.

Agents: 127.0.0.2 a test-configured sysDescr/sysObjectID of a Cisco IOS switch (the format of
Cisco's sysDescr), 127.0.0.3 Net-SNMP's defaults (sysDescr from uname), 127.0.0.4 a sysDescr
with person data (withheld). sysContact and sysLocation name a person and a bed: they must be
nowhere in the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_NET = str(Path(__file__).resolve().parents[1] / "protocols" / "net")
if _NET not in sys.path:
    sys.path.insert(0, _NET)

from netcap import tcpdump  # noqa: E402

from freeport import free_port  # noqa: E402
from medsentry.events.identity import SnmpSystem  # noqa: E402
from medsentry.inventory.state import decode_state  # noqa: E402
from medsentry.inventory.store import load_devices, load_states  # noqa: E402
from medsentry.store import iter_events, open_store  # noqa: E402

pytestmark = pytest.mark.xdist_group("net_live_captures")  # loopback captures, one worker

SYS_DESCR, SYS_OBJECT_ID, SYS_NAME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0"
SYSTEM = "1.3.6.1.2.1.1"
SWITCH, LINUX, PUMP, MANAGER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"
CISCO_DESCR = (
    "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(4)E10, "
    "RELEASE SOFTWARE (fc1)"
)
PERSON_DESCR = "Infusion pump on loan to Mrs Quintessa Zorblatt"
# what must never be stored: sysContact, sysLocation, the withheld sysDescr, the communities
NEVER = ("Nurse Jane Doe", "Bed 12, Ward 3", "Quintessa", "Zorblatt", "medsentry-ro")
COMMUNITY = "medsentry-ro"


def _tool(name: str) -> str:
    for path in (f"/usr/sbin/{name}", f"/usr/bin/{name}", shutil.which(name)):
        if path and Path(path).exists():
            return path
    pytest.skip(f"{name} is not installed (Debian snmpd, snmp, tcpdump, tshark)")


@dataclass
class SnmpCapture:
    pcap: Path
    ports: dict[str, int]  # agent address -> UDP port
    db: str  # SQLite URL the capture was scanned into
    home: Path


def _config(addr: str, port: int, lines: list[str]) -> str:
    return "\n".join([f"agentaddress udp:{addr}:{port}", *lines]) + "\n"


@contextlib.contextmanager
def _agent(snmpd: str, conf: Path, env: dict[str, str]) -> Iterator[None]:
    proc = subprocess.Popen(
        [snmpd, "-f", "-Lf", str(conf.with_suffix(".log")), "-C", "-c", str(conf), "-p",
         str(conf.with_suffix(".pid"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _snmp(tool: str, env: dict[str, str], *args: str) -> str:
    """Run a Net-SNMP command until the agent answers (it may still be starting)."""
    out = None
    for _ in range(20):
        out = subprocess.run(
            [tool, "-On", "-t", "1", "-r", "1", *args], capture_output=True, text=True, env=env
        )
        if out.returncode == 0:
            return out.stdout
        time.sleep(0.25)
    raise AssertionError(f"{tool} {' '.join(args)} failed: {out.stderr if out else ''}")


@pytest.fixture(scope="module")
def snmp_capture(tmp_path_factory: pytest.TempPathFactory) -> SnmpCapture:
    snmpd, snmpget, snmpwalk = _tool("snmpd"), _tool("snmpget"), _tool("snmpwalk")
    _tool("tshark")
    tmp = tmp_path_factory.mktemp("snmp")
    ports = {a: free_port(socket.SOCK_DGRAM) for a in (SWITCH, LINUX, PUMP)}
    # MIBS empty: numeric OIDs only; a throw-away persistent directory (engine ID, v3 users)
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "persist"), "MIBS": ""}
    confs = {
        SWITCH: [
            f"rocommunity {COMMUNITY} 127.0.0.0/8",
            "sysName sw-icu-01.example",
            f"sysDescr {CISCO_DESCR}",
            "sysObjectID 1.3.6.1.4.1.9.1.1208",
            "sysContact Nurse Jane Doe",
            "sysLocation Bed 12, Ward 3",
            "createUser v3open",  # a USM user without authentication (RFC 3414)
            "rouser v3open noauth",
        ],
        LINUX: ["rocommunity public 127.0.0.0/8"],  # Net-SNMP's own sysDescr, sysName, OID
        PUMP: [
            f"rocommunity {COMMUNITY} 127.0.0.0/8",
            "sysName pump-0042",
            f"sysDescr {PERSON_DESCR}",
            "sysContact Nurse Jane Doe",
        ],
    }
    pcap = tmp / "snmp.pcap"
    bpf = "udp and (" + " or ".join(f"port {p}" for p in ports.values()) + ")"
    with contextlib.ExitStack() as stack:
        for addr, lines in confs.items():
            conf = tmp / f"snmpd-{addr}.conf"
            conf.write_text(_config(addr, ports[addr], lines))
            stack.enter_context(_agent(snmpd, conf, env))
        with tcpdump(pcap, bpf):
            sw = f"{SWITCH}:{ports[SWITCH]}"
            _snmp(snmpget, env, "-v2c", "-c", COMMUNITY, sw, SYS_DESCR, SYS_OBJECT_ID, SYS_NAME)
            _snmp(snmpwalk, env, "-v2c", "-c", COMMUNITY, sw, SYSTEM)
            _snmp(snmpget, env, "-v3", "-l", "noAuthNoPriv", "-u", "v3open", sw, SYS_NAME)
            _snmp(snmpwalk, env, "-v2c", "-c", "public", f"{LINUX}:{ports[LINUX]}", SYSTEM)
            pump = f"{PUMP}:{ports[PUMP]}"
            _snmp(snmpget, env, "-v1", "-c", COMMUNITY, pump, SYS_DESCR, SYS_NAME)
    home = tmp / "home"
    db = f"sqlite:///{tmp / 'inv.db'}"
    res = subprocess.run(
        [sys.executable, "-m", "medsentry", "scan", "-q", "--db", db, str(pcap)],
        env={**os.environ, "MEDSENTRY_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return SnmpCapture(pcap, ports, db, home)


def _tshark_system(cap: SnmpCapture) -> dict[str, dict[str, set[str]]]:
    """agent -> system object -> values, as tshark decodes the capture's responses."""
    args = ["tshark", "-r", str(cap.pcap), "-Y", "snmp.data == 2"]
    for port in cap.ports.values():
        args += ["-d", f"udp.port=={port},snmp"]
    args += ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    args += ["-e", "ip.src", "-e", "snmp.name", "-e", "snmp.value.octets", "-e", "snmp.value.oid"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    out: dict[str, dict[str, set[str]]] = {}
    for line in res.stdout.splitlines():
        src, names, octets, oids = [*line.split("\t"), "", "", ""][:4]
        names_l, octets_l = names.split("|"), octets.split("|") if octets else []
        agent = out.setdefault(src, {})
        if names_l == [SYS_OBJECT_ID] and oids:  # one varbind: no ambiguity between fields
            agent.setdefault(SYS_OBJECT_ID, set()).add(oids)
        elif len(names_l) == len(octets_l):  # every value an OCTET STRING: aligned
            for n, v in zip(names_l, octets_l, strict=True):
                agent.setdefault(n, set()).add(bytes.fromhex(v).decode())
    return out


def _states(db: str) -> dict[str, object]:
    with open_store(db) as store, store.engine.connect() as conn:
        return {k: decode_state(v, k) for k, v in load_states(conn).items()}


def _devices(db: str) -> dict[str, object]:
    with open_store(db) as store:
        return {d.device_id: d for d in load_devices(store)}


def test_agents_observations_and_identity(snmp_capture: SnmpCapture) -> None:
    seen = _tshark_system(snmp_capture)
    states, devices = _states(snmp_capture.db), _devices(snmp_capture.db)
    sw, lin, pump = (states[f"ip:{a}"] for a in (SWITCH, LINUX, PUMP))
    obs = sw.observations
    # the values stored are the values tshark reads from the agents' responses
    assert set(obs["snmp.sys_descr"]) == seen[SWITCH][SYS_DESCR] == {CISCO_DESCR}
    assert set(obs["snmp.sys_object_id"]) == seen[SWITCH][SYS_OBJECT_ID]
    assert set(obs["snmp.sys_object_id"]) == {"1.3.6.1.4.1.9.1.1208"}
    assert set(obs["snmp.sys_name"]) == seen[SWITCH][SYS_NAME] == {"sw-icu-01.example"}
    assert set(obs["snmp.enterprise"]) == {"9"}
    # the v3 get was answered without authentication (the discovery Report does not count)
    assert set(obs["snmp.v3.security_level"]) == {"noAuthNoPriv"}
    dev = devices[f"ip:{SWITCH}"]
    assert dev.hostname == "sw-icu-01.example" and "snmp-agent" in dev.roles
    assert (dev.vendor.value, dev.os.value) == ("Cisco", "Cisco IOS")
    assert dev.software_version.value == "IOS 15.2(4)E10"
    assert dev.category.value == "it.network"
    assert {e.rule for e in dev.vendor.evidence} >= {"snmp.cisco-ios", "snmp.pen.cisco"}

    # Net-SNMP's defaults: sysDescr is uname's "sysname nodename release version machine"
    u = os.uname()
    default_descr = f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"
    assert set(lin.observations["snmp.sys_descr"]) == seen[LINUX][SYS_DESCR] == {default_descr}
    assert set(lin.observations["snmp.sys_object_id"]) == {"1.3.6.1.4.1.8072.3.2.10"}
    assert set(lin.observations["snmp.sys_name"]) == seen[LINUX][SYS_NAME]
    ldev = devices[f"ip:{LINUX}"]
    assert ldev.hostname == next(iter(seen[LINUX][SYS_NAME])).removesuffix(".local")
    assert ldev.os.value == "Linux" and ldev.software_version.value == f"Linux {u.release}"
    assert {e.rule for e in ldev.os.evidence} == {
        "snmp.net-snmp.linux", "snmp.net-snmp.linux-oid"
    }  # fmt: skip

    # a sysDescr that reads as person data is withheld; the agent's name stays
    assert seen[PUMP][SYS_DESCR] == {PERSON_DESCR}  # it was on the wire
    assert "snmp.sys_descr" not in pump.observations
    assert devices[f"ip:{PUMP}"].hostname == "pump-0042"
    with open_store(snmp_capture.db) as store:
        events = list(iter_events(store, kinds=["snmp_system"]))
    withheld = {e.endpoints.server: e.withheld for e in events if isinstance(e, SnmpSystem)}
    assert withheld[PUMP] == ["sysDescr"] and withheld[SWITCH] == []

    # the manager says nothing of itself
    mgr = states[f"ip:{MANAGER}"]
    assert not [k for k in mgr.observations if k.startswith("snmp.")]
    assert "snmp-agent" not in mgr.roles


def test_nothing_about_people_is_stored(snmp_capture: SnmpCapture) -> None:
    """sysContact, sysLocation and the withheld sysDescr were sent (tshark), and are in no byte
    of the database (nor its WAL) or the installation's files."""
    args = ["tshark", "-r", str(snmp_capture.pcap), "-T", "fields", "-e", "snmp.value.octets"]
    for p in snmp_capture.ports.values():
        args += ["-d", f"udp.port=={p},snmp"]
    wire = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    for never in NEVER[:3]:  # sysContact, sysLocation, the person's sysDescr: all were sent
        assert never.encode().hex() in wire.replace(",", "")
    db_file = Path(snmp_capture.db.removeprefix("sqlite:///"))
    files = [p for p in db_file.parent.glob(db_file.name + "*")]
    files += [p for p in snmp_capture.home.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for never in NEVER:
            assert never.encode() not in data, (path.name, never)


def test_device_found_by_its_snmp_name(snmp_capture: SnmpCapture) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "medsentry", "device", "sw-icu-01.example", "--db",
         snmp_capture.db, "--format", "json"],
        env={**os.environ, "MEDSENTRY_HOME": str(snmp_capture.home)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["device_id"] == f"ip:{SWITCH}"


def test_ndpi_snmp_pcap_sysname(ndpi_pcaps: Path, tmp_path: Path) -> None:
    """The nDPI corpus's snmp.pcap: the agents that answered with sysName.0 (tshark) get it as
    observation and host name (".local" dropped, as for every source: RFC 6762 §3)."""
    pcap = ndpi_pcaps / "snmp.pcap"
    res = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "snmp.version <= 1 && snmp.data == 2", "-T", "fields",
         "-e", "ip.src", "-e", "eth.src", "-e", "snmp.name", "-e", "snmp.value.octets"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )  # fmt: skip
    named: dict[str, set[str]] = {}  # agent MAC -> sysName values
    for line in res.stdout.splitlines():
        _src, mac, name, octets = line.split("\t")
        if name == SYS_NAME and octets:
            named.setdefault(mac, set()).add(bytes.fromhex(octets).decode())
    assert named == {
        "00:00:00:99:da:71": {"R1.lab.local"},
        "00:00:00:97:d2:b6": {"R1.lab.local"},
    }
    db = f"sqlite:///{tmp_path / 'ndpi.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "medsentry", "scan", "-q", "--db", db, str(pcap)],
        env={**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    states, devices = _states(db), _devices(db)
    for mac, names in named.items():
        st = states[f"mac:{mac}"]
        assert set(st.observations["snmp.sys_name"]) == names
        assert devices[f"mac:{mac}"].hostname == "R1.lab"
        assert "snmp-agent" in st.roles
    # sysContact (an e-mail address) and sysLocation were answered too: never stored
    db_file = tmp_path / "ndpi.db"
    for path in db_file.parent.glob("ndpi.db*"):
        assert b"globomantics.com" not in path.read_bytes()
        assert b"GlobomanticsHQ" not in path.read_bytes()
    # v3: the agent that answered authNoPriv after a noAuthNoPriv discovery Report
    assert set(states["mac:00:00:00:f3:60:1c"].observations["snmp.v3.security_level"]) == {
        "authNoPriv"
    }
