"""Capture real loopback traffic with tcpdump and scan it with the real pipeline (for tests)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsentry.events import encode_json
from medsentry.events.base import Event
from medsentry.pipeline import Pipeline, ScanConfig

KEY = b"k" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def dcmtk(tool: str) -> str:
    """The dcmtk binary (pynetdicom installs Python apps of the same names earlier on PATH)."""
    for path in (f"/usr/bin/{tool}", shutil.which(tool)):
        if path and os.access(path, os.X_OK):
            out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            if "dcmtk" in out.lower():
                return path
    pytest.skip(f"dcmtk's {tool} is not installed (Debian package dcmtk)")


@contextlib.contextmanager
def capture_lo(path: Path, ports: list[int]) -> Iterator[Path]:
    """tcpdump on lo for the given TCP ports while the block runs; the pcap is at `path`."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed")
    expr = " or ".join(f"tcp port {p}" for p in ports)
    proc = subprocess.Popen(
        [tcpdump, "-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(path), expr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline() if proc.stderr else ""
    if "listening" not in line:
        proc.kill()
        proc.wait()
        pytest.skip(f"cannot capture on lo: {line.strip()}")
    try:
        yield path
    finally:
        time.sleep(0.5)  # let the last segments reach the capture
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def scan(pcap: Path) -> list[Event]:
    events: list[Event] = []
    Pipeline(ScanConfig(phi_key=KEY)).scan_files([pcap], events.extend)
    return events


def all_json(events: list[Event]) -> str:
    return "\n".join(encode_json(e).decode() for e in events)


def tshark_fields(pcap: Path, decode_as: str, fields: list[str], filt: str) -> list[list[str]]:
    """tshark's own dissector on the same capture: one row per matching packet."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    cmd = [tshark, "-r", str(pcap), "-n", "-d", decode_as, "-Y", filt, "-T", "fields"]
    cmd += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]
