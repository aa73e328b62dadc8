"""`medsentry audit`: verify the ledger, prove entries, sign and export checkpoints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.cli.terminal import console, echo
from medsentry.errors import InputError
from medsentry.ledger import Ledger, verify_ledger
from medsentry.ledger.log import default_directory
from medsentry.ledger.merkle import verify_consistency, verify_inclusion
from medsentry.ledger.note import SIG_COSIGNATURE_V1, SIG_ED25519, Vkey
from medsentry.ledger.tiles import export_tiles

EXIT_TAMPERED = 1  # verification ran and found damage (2 stays "could not run")


def _open() -> Ledger:
    led = Ledger(default_directory())
    for w in led.warnings:
        echo(f"medsentry: warning: {w}", err=True)
    return led


def _json(obj: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode())


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit ledger (RFC 9162 Merkle log, C2SP signed checkpoints)."""


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check the log against this saved signed checkpoint (e.g. a witness's copy).",
)
@click.option("--canonical", is_flag=True, help="Also check each entry is RFC 8785 canonical.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Verify a copy of a ledger directory instead of this installation's.",
)
@click.option(
    "--vkey",
    "vkeys",
    multiple=True,
    help="Verifier key(s) to check checkpoints with (log, and optionally clock) instead of "
    "this installation's keys.",
)
@FORMAT_OPTION
def verify_cmd(
    checkpoint_file: Path | None,
    canonical: bool,
    directory: Path | None,
    vkeys: tuple[str, ...],
    fmt: str,
) -> None:
    """Recompute the whole tree from the entries; name the first bad entry if any."""
    keys = None
    if vkeys:
        parsed = [Vkey.parse(v) for v in vkeys]
        logs = [k for k in parsed if k.sig_type == SIG_ED25519]
        clocks = [k for k in parsed if k.sig_type == SIG_COSIGNATURE_V1]
        if len(logs) != 1 or len(clocks) > 1:
            raise InputError("--vkey: give one log key (type 0x01) and at most one clock key")
        keys = (logs[0], clocks[0] if clocks else None)
    if directory is not None and not directory.is_dir():
        raise InputError("no such ledger directory", str(directory))
    external = None
    if checkpoint_file is not None:
        try:
            external = checkpoint_file.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", str(checkpoint_file)) from None
    with Progress(
        TextColumn("verifying"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
        disable=fmt == "json" or not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("verify", total=None)
        report = verify_ledger(
            directory or default_directory(),
            external,
            str(checkpoint_file or ""),
            vkeys=keys,
            canonical=canonical,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if fmt == "json":
        _json(report.as_dict())
    else:
        for w in report.warnings:
            echo(f"warning: {w}", err=True)
        if report.ok:
            echo(
                f"OK: {report.size} entries, root {report.root}, "
                f"{report.checkpoints_verified} stored checkpoint(s) verified"
            )
            if report.external_checkpoint:
                echo(
                    f"OK: consistent with {checkpoint_file} "
                    f"(size {report.external_checkpoint['size']})"
                )
        else:
            first = report.first_problem()
            assert first is not None
            where = (
                f"first bad entry #{report.first_bad_entry}"
                if report.first_bad_entry is not None
                else "ledger damaged"
            )
            echo(f"FAILED: {where}: {first.message}")
            for p in report.problems:
                if p is not first:
                    echo(f"  also: {p.message}")
    if not report.ok:
        sys.exit(EXIT_TAMPERED)


@audit.command("prove")
@click.argument("entry", type=int)
@click.option("--size", type=int, help="Tree size to prove against (default: current).")
@FORMAT_OPTION
def prove_cmd(entry: int, size: int | None, fmt: str) -> None:
    """Inclusion proof (RFC 9162 §2.1.3) that ENTRY is in the log."""
    with _open() as led:
        proof = led.inclusion_proof(entry, size)
        verify_inclusion(proof.index, proof.size, proof.leaf_hash, proof.path, proof.root)
        record = led.entry(entry)
    out = {
        "entry": entry,
        "tree_size": proof.size,
        "leaf_hash": proof.leaf_hash.hex(),
        "root": proof.root.hex(),
        "inclusion_path": [h.hex() for h in proof.path],
        "record": record,
    }
    if fmt == "json":
        _json(out)
        return
    echo(f"entry      #{entry}  {record['kind']}  {record['time']}  actor={record['actor']}")
    echo(f"tree size  {proof.size}")
    echo(f"leaf hash  {out['leaf_hash']}")
    echo(f"root       {out['root']}")
    echo(f"path       ({len(proof.path)} hashes, verified)")
    for i, h in enumerate(out["inclusion_path"]):
        echo(f"  {i:2d} {h}")


@audit.command("consistency")
@click.argument("old", type=int)
@click.argument("new", type=int, required=False)
@FORMAT_OPTION
def consistency_cmd(old: int, new: int | None, fmt: str) -> None:
    """Consistency proof (RFC 9162 §2.1.4) that tree NEW (default: current) extends tree OLD."""
    with _open() as led:
        proof = led.consistency_proof(old, new)
    verify_consistency(proof.old, proof.new, proof.old_root, proof.new_root, proof.path)
    out = {
        "old_size": proof.old,
        "new_size": proof.new,
        "old_root": proof.old_root.hex(),
        "new_root": proof.new_root.hex(),
        "consistency_path": [h.hex() for h in proof.path],
    }
    if fmt == "json":
        _json(out)
        return
    echo(f"old  size {proof.old:>10}  root {out['old_root']}")
    echo(f"new  size {proof.new:>10}  root {out['new_root']}")
    echo(f"path ({len(proof.path)} hashes, verified)")
    for i, h in enumerate(out["consistency_path"]):
        echo(f"  {i:2d} {h}")


def _export(note: bytes, target: Path, origin: str, size: int) -> Path:
    """Write a checkpoint once: never overwrite, read-only afterwards (a write-once drop)."""
    if target.is_dir():
        target = target / f"{origin.replace('/', '_')}.{size}.checkpoint"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        raise InputError("already exists; checkpoints are written once", str(target)) from None
    except OSError as exc:
        raise InputError(f"cannot create: {exc.strerror}", str(target)) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(note)
        fh.flush()
        os.fsync(fh.fileno())
    return target


@audit.command("checkpoint")
@click.option(
    "--export",
    "export",
    type=click.Path(path_type=Path),
    help="Also write the signed note to this file, or into this directory, for a witness.",
)
def checkpoint_cmd(export: Path | None) -> None:
    """Sign the current tree head (C2SP tlog-checkpoint) and store it; print the note."""
    with _open() as led:
        signed = led.checkpoint()
    note = str(signed).encode()
    click.echo(note.decode(), nl=False)
    if export is not None:
        path = _export(note, export, signed.checkpoint.origin, signed.checkpoint.size)
        echo(f"exported to {path}", err=True)


@audit.command("export-tiles")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_tiles_cmd(directory: Path) -> None:
    """Sign a checkpoint and export the log as C2SP tlog-tiles into DIRECTORY (incremental)."""
    with _open() as led:
        signed = led.checkpoint()
        size = signed.checkpoint.size
        try:
            written = export_tiles(led, directory, str(signed).encode(), size)
        except OSError as exc:
            raise InputError(f"cannot write tiles: {exc.strerror}", str(directory)) from None
    echo(f"exported tree size {size} to {directory} ({written} files written)")


@audit.command("vkey")
def vkey_cmd() -> None:
    """Print the verifier keys (C2SP signed-note vkey format) a witness needs."""
    with _open() as led:
        keys = led.keys()
    echo(f"log    {keys.log.vkey}")
    echo(f"clock  {keys.clock.vkey}")


@audit.command("log")
@click.option("--kind", help="Only entries of this kind, or of this area (e.g. 'alert').")
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@FORMAT_OPTION
def log_cmd(kind: str | None, limit: int, fmt: str) -> None:
    """The most recent ledger entries, newest last."""
    with _open() as led:
        rows: list[dict[str, Any]] = []
        seq = led.size - 1
        while seq >= 0 and len(rows) < limit:
            rec = led.entry(seq)
            k = rec["kind"]
            if kind is None or k == kind or k.startswith(kind + "."):
                rows.append(rec)
            seq -= 1
    rows.reverse()
    if fmt == "table":
        for r in rows:
            r["data"] = msgspec.json.encode(r["data"]).decode()
    emit(rows, ["seq", "time", "kind", "actor", "data"], fmt, title="audit ledger")
