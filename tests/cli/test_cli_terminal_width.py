"""Tables on a real terminal (a pseudo-terminal of a given size): whole columns are left out
rather than every value cut to "10.…", and stderr says which."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from rich.cells import cell_len

_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(cols: int, *args: str) -> tuple[list[str], str]:
    """Run medsentry with stdout on a pseudo-terminal `cols` wide: (screen lines, stderr)."""
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
        "TERM": "xterm",
        "NO_COLOR": "1",
    }
    env.pop("COLUMNS", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "medsentry", *args], stdout=sub, stderr=subprocess.PIPE, env=env
    )
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, err = p.communicate(timeout=120)
    os.close(main)
    assert p.returncode == 0, err
    lines = _ESC.sub("", out.decode()).replace("\r", "").splitlines()
    return lines, err.decode()


@pytest.fixture
def db(scanned_demo) -> str:
    return f"sqlite:///{scanned_demo[1]}"


def test_devices_on_80_columns_keep_addresses_whole(db: str) -> None:
    lines, err = on_terminal(80, "devices", "--db", db)
    assert all(cell_len(line) <= 80 for line in lines)
    header = next(line for line in lines if "device_id" in line)
    assert [h.strip() for h in header.strip("┃ ").split("┃")] == [
        "device_id",
        "ip",
        "category",
        "vendor",
        "criticality",
    ]
    assert any(" 10.20.0.103 " in line for line in lines)  # a whole address, not "10.…"
    assert not any("…" in line for line in lines)
    assert "80 columns show 5 of 12 fields" in err and "hostname" in err and "last_seen" in err


def test_a_wide_terminal_shows_every_column_and_says_nothing(db: str) -> None:
    lines, err = on_terminal(250, "devices", "--db", db)
    header = next(line for line in lines if "device_id" in line)
    assert "last_seen" in header and "roles" in header and not err.strip()


def test_alerts_keep_their_title_before_their_times(db: str) -> None:
    lines, err = on_terminal(80, "findings", "--db", db)
    assert all(cell_len(line) <= 80 for line in lines)
    header = next(line for line in lines if "severity" in line)
    assert "type" in header and "last_seen" not in header and "last_seen" in err
