"""The `medsentry` console script and `python -m medsentry`: the CLI, with Ctrl-C during its
start (loading the command modules takes a moment) ending quietly with exit code 130, not a
traceback of whatever import it interrupted. The garbage collector stays out of the start-up's
way (medsentry.startup)."""

from __future__ import annotations

import sys


def run() -> None:
    from medsentry import startup

    startup.enable()
    try:
        with startup.loading():
            from medsentry.cli import main
    except KeyboardInterrupt:
        sys.exit(130)
    main(prog_name="medsentry")
