"""The `medsentry` command: thin; parses arguments, calls the library, prints.

Each command group lives in its own module and is registered in `_COMMANDS` with the first
sentence of its help; a command's module is imported when the command is named, so `medsentry
devices` does not load the scanning pipeline's libraries, and `medsentry --help` lists every
command from those summaries without importing any (the database and analysis libraries are
most of a command's start-up). `tests/cli/test_cli_startup.py` checks that the summaries are
the commands' own. Errors that are the user's to fix
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
# command name -> the first sentence of its help, which `--help` shortens as click would
_SUMMARIES: dict[str, str] = {}


# click >= 8.2 raises this UsageError to print a group's help when no subcommand is given
_HELP_NOT_ERROR: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if c is not None
)


class _Group(click.Group):
    _listing = False  # format_commands is running: unloaded commands answer with a summary

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            if self._listing:
                # click asks only for the short help (get_short_help_str), which it makes from
                # the help's first sentence at most: this stand-in holds just that sentence
                return click.Command(cmd_name, help=_SUMMARIES[cmd_name])
            _load_one(cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

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


def register(module: str, attr: str, summary: str) -> None:
    """Command `module` is `medsentry.cli.<module>.<attr>`; `summary`: its help's first
    sentence, word for word."""
    _COMMANDS[module] = attr
    _SUMMARIES[module] = summary


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


# Registration: one call per command module, with the first sentence of its help (click's
# short help never goes past it: click.utils.make_default_short_help).
register("scan", "scan_cmd", "Read pcap/pcapng capture files into the store and print a summary.")
register("flows", "flows_cmd", "List the flows stored by `scan` and `monitor`.")
register(
    "monitor",
    "monitor_cmd",
    "Capture live from an interface into the store until Ctrl-C or --duration.",
)
register(
    "audit",
    "audit",
    "The tamper-evident audit ledger (RFC 9162 Merkle log, C2SP signed checkpoints).",
)
register("demo", "demo_cmd", "Build a small, realistic hospital capture and scan it.")
register("intel", "intel_cmd", "Vulnerability intelligence: CSAF advisories, KEV, EPSS, OSV, NVD.")
register("vulns", "vulns_cmd", "Known vulnerabilities of the devices (inventory or --devices CSV).")
register("findings", "findings_cmd", "Findings of the security-controls audit.")
register(
    "policy",
    "policy_cmd",
    "Zone segmentation policy: check observed flows, recommend least privilege.",
)
register(
    "report",
    "report_cmd",
    "Executive summary, device risk, findings by framework and device, vulnerable devices "
    "(KEV first), segmentation, alerts and the audit ledger's checkpoint at report time.",
)
register(
    "alerts", "alerts_cmd", "List alerts, most recent first; `ack` / `close` / `show` manage one."
)
register("baseline", "baseline_cmd", "Behavioural baselines of devices.")
register(
    "detect",
    "detect_cmd",
    "Replay capture files through the detection engine and list the alerts they raise.",
)
register(
    "logs", "logs_cmd", "Device logs (syslog RFC 5424 / RFC 3164): receive or import, then detect."
)
register(
    "sbom", "sbom_cmd", "Software bills of materials (CycloneDX 1.2-1.6 JSON/XML, SPDX 2.3 JSON)."
)
register(
    "vex", "vex_cmd", "Vulnerability Exploitability eXchange: import statements, export device VEX."
)
register(
    "risk",
    "risk_cmd",
    "Rank devices by risk (0-100 = sqrt(likelihood x impact); see docs/risk.md), or explain "
    "one DEVICE (id, MAC, IP or hostname).",
)
register(
    "devices",
    "devices_cmd",
    "List the devices the inventory knows, with what they are and how critical.",
)
register(
    "device",
    "device_cmd",
    "Show one device (by id, MAC, IP or host name): identity with evidence and conflicts, "
    "roles, services, peers, address history, CMMS facts and changes.",
)
register(
    "inventory",
    "inventory_grp",
    "The device inventory: CMMS import/export, reconciliation, fingerprints, changes.",
)
