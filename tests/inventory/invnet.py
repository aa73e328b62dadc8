"""A small Ethernet LAN of network namespaces for inventory tests.

Each host is a namespace with one veth interface (`eth0`, the MAC and address we choose) plugged
into a Linux bridge in a switch namespace; tcpdump on the bridge captures every frame, so real
stacks (dcmtk, pynetdicom, hl7apy, BusyBox udhcpc/udhcpd, curl, openssl) talk over a real L2
network with distinct MACs, the way devices on a hospital VLAN do. Needs root (tests skip
otherwise).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medsentry.events.base import Event
from medsentry.pipeline import Pipeline, ScanConfig

KEY = b"k" * 32
_seq = itertools.count()


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@dataclass
class Lan:
    tag: str
    pcap: Path
    hosts: dict[str, str] = field(default_factory=dict)  # name -> namespace
    procs: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return self.hosts[host]

    def run(self, host: str, *cmd: str, timeout: float = 60, check: bool = True, env=None):
        res = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-2000:]}")
        return res

    def start(self, host: str, *cmd: str, env=None) -> subprocess.Popen:
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_port(lan: Lan, host: str, port: int, timeout: float = 15.0) -> None:
    """Until something listens on TCP `port` in `host`'s namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lan.run(host, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
        if out.strip():
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {host}:{port}")


@contextlib.contextmanager
def lan(
    tmp_path: Path, hosts: dict[str, tuple[str, str | tuple[str, ...] | None]], ipv6: bool = False
) -> Iterator[Lan]:
    """Hosts: name -> (MAC, "ip/prefix", several, or None for a DHCP client). Captures into
    lan.pcap. IPv6 is off unless `ipv6`: then each interface also has its link-local address
    and the kernel runs Neighbor Discovery (DAD for every address, RFC 4862 §5.4)."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tcpdump") is None:
        pytest.skip("network namespace tests need root, iproute2 and tcpdump")
    tag = f"mi{os.getpid() % 10000}{next(_seq)}"
    sw = f"{tag}sw"
    net = Lan(tag, tmp_path / f"{tag}.pcap")
    made: list[str] = []
    try:
        _run("ip", "netns", "add", sw)
        made.append(sw)
        if ipv6:  # the switch is no IPv6 host: no Neighbor Discovery of its own
            for k in ("all", "default"):
                sysctl = f"net.ipv6.conf.{k}.disable_ipv6=1"
                _run("ip", "netns", "exec", sw, "sysctl", "-qw", sysctl)
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        for i, (name, (mac, addr)) in enumerate(hosts.items()):
            ns = f"{tag}h{i}"
            _run("ip", "netns", "add", ns)
            made.append(ns)
            net.hosts[name] = ns
            _run("ip", "link", "add", f"{tag}a{i}", "type", "veth", "peer", "name", f"{tag}b{i}")
            _run("ip", "link", "set", f"{tag}a{i}", "netns", ns)
            _run("ip", "link", "set", f"{tag}b{i}", "netns", sw)
            _run("ip", "-n", ns, "link", "set", f"{tag}a{i}", "name", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "address", mac)
            for k in ("all", "default", "eth0"):
                _run(
                    "ip", "netns", "exec", ns, "sysctl", "-qw",
                    f"net.ipv6.conf.{k}.disable_ipv6={0 if ipv6 else 1}",
                )  # fmt: skip
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            if not ipv6:
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
            for a in (addr,) if isinstance(addr, str) else addr or ():
                _run("ip", "-n", ns, "addr", "add", a, "dev", "eth0")
            if ipv6:  # made in the root namespace: its IPv6 came along
                sysctl = f"net.ipv6.conf.{tag}b{i}.disable_ipv6=1"
                _run("ip", "netns", "exec", sw, "sysctl", "-qw", sysctl)
            _run("ip", "-n", sw, "link", "set", f"{tag}b{i}", "master", "br0")
            _run("ip", "-n", sw, "link", "set", f"{tag}b{i}", "up")
        dump = subprocess.Popen(
            ["ip", "netns", "exec", sw, "tcpdump", "-i", "br0", "-n", "-U", "--immediate-mode",
             "-s", "0", "-w", str(net.pcap)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        line = dump.stderr.readline() if dump.stderr else ""
        if "listening" not in line:
            dump.kill()
            pytest.skip(f"cannot capture on the test bridge: {line.strip()}")
        time.sleep(0.3)  # let the bridge ports leave the listening state
        if ipv6:  # up once captured: the capture sees each address's DAD
            for ns in net.hosts.values():
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
        try:
            yield net
        finally:
            for p in net.procs:
                net.stop(p)
            time.sleep(0.4)
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=10)
    finally:
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def scan(pcap: Path) -> list[Event]:
    events: list[Event] = []
    Pipeline(ScanConfig(phi_key=KEY)).scan_files([pcap], events.extend)
    return events
