"""What the `medsentry` command loads before it works: `--help` lists every command from the
summaries registered with them (medsentry.cli) without importing a command module, and a
command imports the heavy libraries (numba, SQLAlchemy, alembic, NumPy) only when it uses them.
Each check runs in a fresh interpreter and reads its `sys.modules`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from medsentry.cli import _COMMANDS, _SUMMARIES, _load, main

_HEAVY = ("numba", "sqlalchemy", "alembic", "numpy", "medsentry.pipeline")

# runs the command in this interpreter, then prints which heavy modules it had imported
_PROBE = (
    "import sys\n"
    "from medsentry.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='medsentry')\n"
    "except SystemExit as e:\n"
    "    assert not e.code, e.code\n"
    "heavy = {heavy!r} + tuple('medsentry.cli.' + c for c in {commands!r})\n"
    "print('imported:', *[m for m in heavy if m in sys.modules])\n"
)


def _imported(tmp_path: Path, *args: str) -> list[str]:
    code = _PROBE.format(heavy=_HEAVY, commands=sorted(_COMMANDS))
    env = {**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[0] == "imported:"
    return last[1:]


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = f"import sys, medsentry.cli; print(*[m for m in {_HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    assert _imported(tmp_path, "--help") == []


def test_devices_on_an_empty_store_needs_no_numba_alembic_or_pipeline(tmp_path: Path) -> None:
    got = _imported(tmp_path, "devices", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert "sqlalchemy" in got and "medsentry.cli.devices" in got
    assert not {"numba", "alembic", "medsentry.pipeline", "medsentry.cli.scan"} & set(got)


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_each_registered_summary_is_the_commands_own(name: str) -> None:
    """The stand-in `--help` lists gives the short help the command itself gives, at every
    width click may ask for."""
    _load()
    real = main.commands[name]
    assert not (real.short_help or real.hidden or real.deprecated)  # help made from `help`
    stand_in = click.Command(name, help=_SUMMARIES[name])
    for limit in range(1, 240):
        assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit), limit


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_help_is_the_same_as_with_every_command_loaded(tmp_path: Path, columns: str) -> None:
    env = {**os.environ, "COLUMNS": columns, "MEDSENTRY_HOME": str(tmp_path / "home")}
    runs = []
    for load in ("", "from medsentry.cli import _load; _load()\n"):
        code = f"{load}from medsentry.cli import main\nmain(['--help'], prog_name='medsentry')"
        runs.append(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        )
    lazy, loaded = runs
    assert lazy.returncode == loaded.returncode == 0
    assert "scan" in lazy.stdout and "inventory" in lazy.stdout
    assert lazy.stdout == loaded.stdout


def _one_udp_packet(path: Path) -> None:
    """A pcap (microsecond, Ethernet) holding one IPv4/UDP datagram, 10.0.0.1 -> 10.0.0.2:514."""
    import struct

    payload = b"<13>hello"
    udp = struct.pack(">HHHH", 40000, 514, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    frame = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00" + ip + udp
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)


def test_scan_of_a_capture_without_certificates_loads_no_x509_nor_alembic(
    tmp_path: Path,
) -> None:
    """The second scan (the database is at head) opens it without alembic; no certificate
    in the capture, no X.509 decoder."""
    pcap = tmp_path / "one.pcap"
    _one_udp_packet(pcap)
    args = ("scan", str(pcap), "--db", f"sqlite:///{tmp_path / 's.db'}", "--engines", "none")
    code = _PROBE.format(heavy=("cryptography.x509", "alembic", "numba"), commands=[])
    env = {**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")}
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        assert "│ flows " in out.stdout and "1 │" in out.stdout
        assert out.stdout.strip().splitlines()[-1].split() == ["imported:", "numba"]
