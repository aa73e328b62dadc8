"""`medsentry intel import|sync|status`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.cli.terminal import console
from medsentry.store import open_store


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[Path], None] | None]:
    """A spinner with the file being read, on a terminal only (stderr)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None)
        n = 0

        def tick(path: Path) -> None:
            nonlocal n
            n += 1
            bar.update(task, description=f"reading {n}: {path.name}")

        yield tick


@click.group("intel")
def intel_cmd() -> None:
    """Vulnerability intelligence: CSAF advisories, KEV, EPSS, OSV, NVD."""


@intel_cmd.command("import")
@DB_OPTION
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--type",
    "kind",
    type=click.Choice(["csaf", "kev", "epss", "osv", "nvd"]),
    help="Force the kind instead of detecting it from the content.",
)
@FORMAT_OPTION
def import_cmd(db_url: str | None, paths: tuple[Path, ...], kind: str | None, fmt: str) -> None:
    """Import files or directories (CSAF 2.0, CISA KEV JSON, EPSS CSV, OSV JSON/zip, NVD 2.0)."""
    from medsentry.intel.importer import import_paths

    with open_store(db_url) as store, _progress() as tick:
        results, parsed = import_paths(store, paths, kind, progress=tick)
    rows = [r.as_dict() for r in results]
    emit(rows, ["kind", "added", "updated", "unchanged", "origin"], fmt, title="intel import")
    if parsed.skipped and fmt == "table":
        click.echo(
            f"skipped {len(parsed.skipped)} file(s) of no known kind (not CSAF, KEV, EPSS, OSV"
            " or NVD)",
            err=True,
        )


@intel_cmd.command("sync")
@DB_OPTION
@click.argument("url")
@click.option(
    "--mirror",
    type=click.Path(path_type=Path, file_okay=False),
    help="Local mirror directory (default: <data dir>/csaf-mirror/<host>).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="OpenPGP public key (ASCII-armored) to verify .asc signatures with; repeatable.",
)
@click.option(
    "--require-signature",
    is_flag=True,
    help="Refuse documents without a valid signature (default: verify where present).",
)
@click.option("--cafile", type=click.Path(exists=True, path_type=Path), help="CA bundle for TLS.")
@FORMAT_OPTION
def sync_cmd(
    db_url: str | None,
    url: str,
    mirror: Path | None,
    keys: tuple[Path, ...],
    require_signature: bool,
    cafile: Path | None,
    fmt: str,
) -> None:
    """Mirror a CSAF provider or aggregator (provider-metadata.json, ROLIE or directory feeds)
    and import what changed."""
    from medsentry.intel.provider import sync_provider

    with open_store(db_url) as store:
        report = sync_provider(
            store,
            url,
            mirror=mirror,
            keys=list(keys),
            require_signature=require_signature,
            cafile=cafile,
        )
    emit([report.as_dict()], list(report.as_dict()), fmt, title="intel sync")


@intel_cmd.command("status")
@DB_OPTION
@FORMAT_OPTION
def status_cmd(db_url: str | None, fmt: str) -> None:
    """What intelligence is stored, and when each source was last imported."""
    from medsentry.intel.store import status

    with open_store(db_url) as store:
        rows = status(store)
    emit(rows, ["source", "records", "version", "last_import", "last_origin"], fmt, title="intel")
