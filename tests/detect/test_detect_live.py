"""The same engine on a live interface: `medsentry monitor -i lo` sees a port scan made with
real sockets and the alert is in the store when it stops."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import main

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="live capture on lo needs Linux and root (CAP_NET_RAW)",
)


def test_monitor_raises_a_port_scan_alert_live(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    exe = shutil.which("medsentry") or "medsentry"
    proc = subprocess.Popen(
        [
            exe,
            "monitor",
            "-i",
            "lo",
            "--duration",
            "8",
            "--bpf",
            "host 127.0.9.1",
            "--db",
            db,
            "--engines",
            "detect",
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")},
    )
    deadline = time.monotonic() + 60
    line = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            line = proc.stderr.readline()
            if b"capturing on lo" in line or not line:
                break
    assert b"capturing on lo" in line, line
    for port in range(3000, 3030):  # a connect scan of 30 closed ports
        s = socket.socket()
        s.bind(("127.0.9.1", 0))
        s.settimeout(0.5)
        with contextlib.suppress(OSError):
            s.connect(("127.0.9.2", port))
        s.close()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["engines"]["detect"]["alerts"] >= 1
    rows = json.loads(
        CliRunner()
        .invoke(main, ["alerts", "--db", db, "--rule", "net.port_scan", "--format", "json"])
        .stdout
    )
    assert [(a["device_id"], a["detail"]["target"]) for a in rows] == [
        ("ip:127.0.9.1", "127.0.9.2")
    ]
    assert rows[0]["capture_id"] == summary["captures"][0]["capture_id"]
