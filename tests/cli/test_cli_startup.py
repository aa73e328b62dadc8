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
