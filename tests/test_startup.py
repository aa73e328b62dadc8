"""medsentry.startup: in the `medsentry` command, loading runs without the cyclic garbage
collector and what it loaded is frozen after it; anywhere else nothing changes."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from medsentry import startup


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_outside_the_command_loading_changes_nothing() -> None:
    frozen = gc.get_freeze_count()
    with startup.loading():
        assert gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_in_the_command_loading_pauses_then_freezes() -> None:
    got = _run(
        "import gc; from medsentry import startup\n"
        "startup.enable(); before = gc.get_freeze_count()\n"
        "with startup.loading():\n"
        "    inside = gc.isenabled()\n"
        "    with startup.loading():\n"
        "        nested = gc.isenabled()\n"
        "    still = gc.isenabled()\n"
        "    import json\n"
        "print(inside, nested, still, gc.isenabled(), gc.get_freeze_count() > before)"
    )
    assert got == ["False", "False", "False", "True", "True"]


def test_an_error_in_loading_leaves_the_collector_on() -> None:
    got = _run(
        "import gc; from medsentry import startup; startup.enable()\n"
        "try:\n"
        "    with startup.loading():\n"
        "        raise ValueError\n"
        "except ValueError:\n"
        "    print(gc.isenabled())"
    )
    assert got == ["True"]


def test_exit_handlers_registered_later_still_run(tmp_path: Path) -> None:
    """The exit's freeze comes last: a handler the command registers runs, and its output
    (buffered, unclosed) reaches the file."""
    out = tmp_path / "out.txt"
    got = _run(
        "import atexit; from medsentry import startup; startup.enable()\n"
        f"f = open({str(out)!r}, 'w'); f.write('written')\n"
        "atexit.register(lambda: print('handler ran'))"
    )
    assert got == ["handler", "ran"] and out.read_text() == "written"
