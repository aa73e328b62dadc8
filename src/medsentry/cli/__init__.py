"""The `medsentry` command: thin; parses arguments, calls the library, prints.

Each command group lives in its own module and is registered in `_COMMANDS`; a command's
module is imported when the command is named (or help lists them all), so `medsentry devices`
does not load the scanning pipeline's libraries. Errors that are the user's to fix
(`MedsentryError`) print as one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from typing import NoReturn

import click

from medsentry import __version__, startup
from medsentry.cli import interrupt
from medsentry.cli.terminal import echo
from medsentry.errors import MedsentryError

# command (and module) name -> attribute holding a click command or group
_COMMANDS: dict[str, str] = {}


# click >= 8.2 raises this UsageError to print a group's help when no subcommand is given
_HELP_NOT_ERROR: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if c is not None
)


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            _load_one(cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        damage = sys.modules.get("medsentry.store.damage")
        if damage is not None:  # a command before this one, in this process, opened databases
            damage.forget_opened()
        _tolerant_streams()
        interrupt.install()
        try:
            return super().invoke(ctx)
        except MedsentryError as exc:
            echo(f"medsentry: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:
            _reader_gone()
        except _HELP_NOT_ERROR:
            raise  # a group named without its subcommand: click shows the group's help
        except click.exceptions.UsageError as exc:
            # a wrong option value or a missing argument: one line, like every other error
            where = exc.ctx.command_path if exc.ctx is not None else "medsentry"
            said = exc.format_message().rstrip(".")
            echo(f"medsentry: error: {said} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from medsentry.errors import raised_from
            from medsentry.store.damage import damage_of, diagnose_opened

            if any(isinstance(e, KeyboardInterrupt) for e in raised_from(exc)):
                sys.exit(130)  # Ctrl-C, wrapped by Python (cli/interrupt.py)
            debug = os.environ.get("MEDSENTRY_DEBUG", "") not in ("", "0")
            # a damaged database is the user's to repair, not a bug: said by the database
            # itself, or (looked for after anything else) a wrong kind of value stored
            damage = damage_of(exc) or (None if debug else diagnose_opened(exc))
            if damage is not None:
                echo(f"medsentry: error: {damage}", err=True)
                sys.exit(damage.exit_code)
            if debug:
                raise
            from medsentry.store.environment import environment_of

            failure = environment_of(exc)  # a full disk, a read-only or locked database
            if failure is not None:
                echo(f"medsentry: error: {failure}", err=True)
                sys.exit(failure.exit_code)
            first = (str(exc).splitlines() or [""])[0][:200]
            echo(
                f"medsentry: internal error: {type(exc).__name__}: {first}"
                " (a bug; rerun with MEDSENTRY_DEBUG=1 to see the traceback)",
                err=True,
            )
            sys.exit(1)


def _reader_gone() -> NoReturn:
    """stdout's reader closed the pipe (`medsentry risk | head -1`): stop quietly with the
    status a program killed by SIGPIPE has (128 + 13), as `cat` and `grep` do; the rest of the
    output goes to /dev/null so the interpreter's last flush does not complain
    (docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


def _tolerant_streams() -> None:
    """A terminal or pipe that cannot show a character (PYTHONIOENCODING=ascii, a POSIX locale
    without UTF-8) gets it as an escape ("Dr\\xe4ger"), not an internal error after the work is
    done and stored."""
    for stream in (sys.stdout, sys.stderr):
        # "strict", or "surrogateescape" (stdout in a POSIX locale with PYTHONUTF8=0)
        if getattr(stream, "errors", "replace") in ("strict", "surrogateescape"):
            with contextlib.suppress(AttributeError, ValueError, OSError):  # left as it is
                stream.reconfigure(errors="backslashreplace")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medsentry")
def main() -> None:
    """medsentry: find, assess and watch the connected medical devices on a network."""


def register(module: str, attr: str) -> None:
    _COMMANDS[module] = attr


def _load_one(module: str) -> None:
    """Import one command's module and add its command; Ctrl-C meanwhile ends with 130."""
    try:
        with startup.loading():
            cmd = getattr(importlib.import_module(f"medsentry.cli.{module}"), _COMMANDS[module])
    except KeyboardInterrupt:
        sys.exit(130)
    main.add_command(cmd)


def _load() -> None:
    """Every registered command, loaded now (tests that read `main.commands`)."""
    for module in _COMMANDS:
        _load_one(module)


# Registration: one line per command module.
register("scan", "scan_cmd")
register("flows", "flows_cmd")
register("monitor", "monitor_cmd")
register("audit", "audit")
register("demo", "demo_cmd")
register("intel", "intel_cmd")
register("vulns", "vulns_cmd")
register("findings", "findings_cmd")
register("policy", "policy_cmd")
register("report", "report_cmd")
register("alerts", "alerts_cmd")
register("baseline", "baseline_cmd")
register("detect", "detect_cmd")
register("logs", "logs_cmd")
register("sbom", "sbom_cmd")
register("vex", "vex_cmd")
register("risk", "risk_cmd")
register("devices", "devices_cmd")
register("device", "device_cmd")
register("inventory", "inventory_grp")
