"""LLDP and CDP from a real stack: lldpd (Debian package) advertises on one end of a veth pair
inside a network namespace made for the test, tcpdump captures the other end; every field of
our LldpNeighbor / CdpNeighbor events is cross-checked with tshark's lldp and cdp dissectors,
and the capture goes through `medsentry scan` into the store.

lldpd runs with LLDP and CDPv2 forced (`-l -ccc`), a system description set on its command
line (`-S`) and, once running, a host name set with lldpcli (which makes it advertise again),
so the capture holds frames before and after a change of system name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
from netcap import tshark

from medsentry.events.identity import CdpNeighbor, LldpNeighbor
from medsentry.protocols import lldp
from medsentry.store import iter_events, open_store

# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = pytest.mark.xdist_group("test_frames_lldpd")

DESCRIPTION = "IntelliVue MX800 Rev M.00.03"
HOSTNAME = "ICU-MON-07"
ADDRESS = "10.77.0.1"
FILTER = ["ether proto 0x88cc or ether dst 01:00:0c:cc:cc:cc"]  # LLDP, CDP


def _need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if os.access(f"/usr/sbin/{tool}", os.X_OK) else None
    )
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool})")
    return path


@contextlib.contextmanager
def netns() -> Iterator[str]:
    """A network namespace with a veth pair ms0 <-> ms1 (both up, ms0 addressed)."""
    ip = _need("ip")
    name = f"ms-lldp-{uuid.uuid4().hex[:8]}"
    if subprocess.run([ip, "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for args in (
            ["link", "add", "ms0", "type", "veth", "peer", "name", "ms1"],
            ["link", "set", "ms0", "up"],
            ["link", "set", "ms1", "up"],
            ["addr", "add", f"{ADDRESS}/24", "dev", "ms0"],
        ):
            subprocess.run([ip, "-n", name, *args], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def lldpd_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lldpd, lldpcli, tcpdump = _need("lldpd"), _need("lldpcli"), _need("tcpdump")
    tmp = tmp_path_factory.mktemp("lldpd")
    pcap = tmp / "lldpd.pcap"
    # lldpcli drops root for lldpd's own user: the socket lives where that user can reach it
    sock = Path(f"/tmp/medsentry-lldpd-{uuid.uuid4().hex[:8]}.socket")
    with netns() as ns:
        run = ["ip", "netns", "exec", ns]
        cap = subprocess.Popen(
            [*run, tcpdump, "-i", "ms1", "-U", "-n", "-w", str(pcap), *FILTER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert cap.stderr is not None
        assert b"listening" in cap.stderr.readline()
        daemon = subprocess.Popen(
            [*run, lldpd, "-d", "-l", "-ccc", "-I", "ms0", "-u", str(sock), "-S", DESCRIPTION],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)  # the first advertisement, with the namespace's host name
            for args in (["configure", "system", "hostname", HOSTNAME], ["update"]):
                subprocess.run([*run, lldpcli, "-u", str(sock), *args], check=True, timeout=10)
            time.sleep(1.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
            sock.unlink(missing_ok=True)
            time.sleep(0.3)
            cap.send_signal(signal.SIGINT)
            cap.wait(10)
    return pcap


def _events(pcap: Path) -> list:
    out = []
    with pcap.open("rb") as fh:
        for ts, frame in dpkt.pcap.Reader(fh):
            out += lldp.dissect(1, 0, bytes(frame), int(ts * 1e9), 0)
    return out


def _mask(names: list[str], table: tuple[str, ...]) -> int:
    return sum(1 << table.index(n) for n in names)


def test_lldp_from_lldpd_matches_tshark(lldpd_capture: Path) -> None:
    ev = [e for e in _events(lldpd_capture) if isinstance(e, LldpNeighbor)]
    rows = tshark(
        lldpd_capture,
        "lldp",
        "lldp.chassis.id.mac",
        "lldp.port.id.mac",
        "lldp.time_to_live",
        "lldp.port.desc",
        "lldp.tlv.system.name",
        "lldp.tlv.system.desc",
        "lldp.tlv.system_cap",
        "lldp.tlv.enable_system_cap",
        "lldp.mgn.addr.ip4",
        "lldp.mgn.addr.ip6",
    )
    assert len(ev) == len(rows) >= 2
    for e, row in zip(ev, rows, strict=True):
        chassis, port, ttl, pdesc, name, desc, caps, enabled, ip4, ip6 = row
        assert (e.chassis_id, e.chassis_id_subtype) == (chassis, 4)  # MAC address
        assert (e.port_id, e.port_id_subtype) == (port, 3)
        assert (str(e.ttl), e.port_description) == (ttl, pdesc) == ("120", "ms0")
        assert (e.system_name, e.system_description) == (name, desc)
        assert _mask(e.capabilities, lldp.LLDP_CAPABILITIES) == int(caps, 16)
        assert _mask(e.enabled_capabilities, lldp.LLDP_CAPABILITIES) == int(enabled, 16)
        assert e.management_addresses == [ip4, ip6]
        assert e.source_mac == chassis
    assert ev[0].system_description == DESCRIPTION and ev[0].management_addresses[0] == ADDRESS
    assert ev[-1].system_name == HOSTNAME != ev[0].system_name


def test_cdp_from_lldpd_matches_tshark(lldpd_capture: Path) -> None:
    ev = [e for e in _events(lldpd_capture) if isinstance(e, CdpNeighbor)]
    rows = tshark(
        lldpd_capture,
        "cdp",
        "cdp.version",
        "cdp.ttl",
        "cdp.deviceid",
        "cdp.platform",
        "cdp.software_version",
        "cdp.portid",
        "cdp.capabilities",
        "cdp.nrgyz.ip_address",
        "cdp.checksum.status",
    )
    assert len(ev) == len(rows) >= 2
    for e, row in zip(ev, rows, strict=True):
        version, ttl, dev, platform, software, port, caps, addr, checksum = row
        assert (str(e.version), str(e.ttl)) == (version, ttl)
        assert (e.device_id, e.platform, e.software_version, e.port_id) == (
            dev,
            platform,
            software,
            port,
        )
        assert _mask(e.capabilities, lldp.CDP_CAPABILITY_BITS) == int(caps, 16)
        assert e.addresses == [addr]
        assert checksum == "1"  # tshark: checksum good
    assert ev[0].software_version == DESCRIPTION and ev[-1].device_id == HOSTNAME


def test_lldpd_capture_through_medsentry_scan(lldpd_capture: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from medsentry.cli import main

    db = tmp_path / "lldp.db"
    res = CliRunner().invoke(main, ["scan", str(lldpd_capture), "--db", f"sqlite:///{db}", "-q"])
    assert res.exit_code == 0, res.output
    with open_store(f"sqlite:///{db}") as store:
        stored = list(iter_events(store, kinds=["lldp", "cdp"]))
    assert sorted(type(e).__name__ for e in stored) == sorted(
        type(e).__name__ for e in _events(lldpd_capture)
    )
    assert {e.system_name for e in stored if isinstance(e, LldpNeighbor)} >= {HOSTNAME}
