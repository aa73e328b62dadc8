"""`medsentry scan FILE...`: read captures through the pipeline into the store, then summarize.

Each file is one capture and one database transaction (see `medsentry.store.writer`): when a
file turns out to be unreadable midway through a multi-file scan, the files before it stay
stored, nothing of the bad one is, and the error names the file and byte offset. Damage the
reader can step over (a truncated last record, a bad block after good ones) keeps the packets
before it, prints a warning line per damage, marks the capture `damaged` and exits 0.

`-` is standard input (`tcpdump -w - | medsentry scan -`) and a FIFO is read as a stream: the
same pipeline, events and capture id (the SHA-256 of its bytes) as the same bytes in a file, so
a capture scanned from a pipe and from a file is stored once. Its size is unknown until its end:
the progress display then counts the packets and bytes read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from medsentry import startup
from medsentry.actor import cli_actor
from medsentry.analysis import Analyzer, analyzer_names, close_analyzers, load_analyzers
from medsentry.cli import interrupt
from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION
from medsentry.cli.terminal import console, data_console, echo, warn_line
from medsentry.errors import ConfigError, InputError
from medsentry.events import DecodeWarning, Event, FlowRecord
from medsentry.ledger import record
from medsentry.store import CaptureInfo, CaptureWriter, Store, open_store
from medsentry.store.schema import DEPTH_FLOWS, DEPTH_FULL, STATUS_COMPLETE, STATUS_DAMAGED
from medsentry.store.writer import file_sha256

if TYPE_CHECKING:
    from medsentry.capture.reader import CaptureReader
    from medsentry.pipeline import Pipeline, ScanConfig


@dataclass
class ScanTally:
    """What a scan saw, accumulated from the events it wrote (one Python step per flow)."""

    packets: int = 0
    bytes: int = 0
    flows: int = 0
    protocols: dict[str, int] = field(default_factory=dict)
    hosts: set[str] = field(default_factory=set)
    warnings: list[DecodeWarning] = field(default_factory=list)  # damage to the capture itself
    other_warnings: int = 0  # dissectors' warnings: stored as events, counted, not printed
    decode_errors: dict[str, int] = field(default_factory=dict)  # packets not decoded, by reason
    captures: list[dict[str, Any]] = field(default_factory=list)
    first_ns: int | None = None
    last_ns: int | None = None
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)  # per analyzer: its counts
    delivery: list[str] = field(default_factory=list)  # alert outputs that lost alerts
    committed: Path | None = None  # the last capture whose flows and events are stored

    def add_engine_counts(self, name: str, counts: dict[str, Any]) -> None:
        mine = self.engines.setdefault(name, {})
        for key, value in counts.items():
            if isinstance(value, int | float) and isinstance(mine.get(key, 0), int | float):
                mine[key] = mine.get(key, 0) + value
            else:
                mine[key] = value

    def see(self, batch: Iterable[Event], source: str) -> None:
        """Count a batch; `source` is the capture file or interface (its reader's warnings)."""
        for ev in batch:
            if isinstance(ev, FlowRecord):
                self.flows += 1
                proto = ev.app_protocol or "unknown"
                self.protocols[proto] = self.protocols.get(proto, 0) + 1
                self.hosts.add(ev.client)
                self.hosts.add(ev.server)
                if self.first_ns is None or ev.ts_ns < self.first_ns:
                    self.first_ns = ev.ts_ns
                if self.last_ns is None or ev.last_ns > self.last_ns:
                    self.last_ns = ev.last_ns
            elif isinstance(ev, DecodeWarning):
                if ev.source == source:
                    self.warnings.append(ev)
                else:
                    self.other_warnings += 1

    def summary(self, elapsed_s: float, database: str) -> dict[str, Any]:
        return {
            "captures": self.captures,
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "protocols": dict(sorted(self.protocols.items(), key=lambda kv: (-kv[1], kv[0]))),
            "hosts": len(self.hosts),
            "warnings": [warning_text(w) for w in self.warnings],
            "dissector_warnings": self.other_warnings,
            "decode_errors": dict(sorted(self.decode_errors.items(), key=lambda kv: -kv[1])),
            "elapsed_s": round(elapsed_s, 3),
            "packets_per_s": round(self.packets / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "database": database,
            "engines": self.engines,
            "alert_delivery_problems": self.delivery,
        }


@contextlib.contextmanager
def engines_closed(analyzers: list[Analyzer], out: Console, tally: ScanTally) -> Iterator[None]:
    """Close the analysis engines when the block ends, even by an error (the alerts they
    already raised still go out); what their alert outputs could not deliver is warned on
    `out` and kept in the summary."""
    try:
        yield
    finally:
        for line in close_analyzers(analyzers):
            warn_line(out, line)
            tally.delivery.append(line)


def warning_text(w: DecodeWarning) -> str:
    where = w.source if w.offset is None else f"{w.source} at byte {w.offset}"
    return f"{where}: {w.message}"


def print_summary(summary: dict[str, Any], fmt: str, out: Console) -> None:
    """The end-of-scan summary: JSON, or two small tables."""
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(summary), indent=2).decode())
        return
    totals = Table(title="scan summary", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    for key in ("packets", "bytes", "flows", "hosts"):
        totals.add_row(key, f"{summary[key]:,}")
    totals.add_row("warnings", str(len(summary["warnings"])))
    totals.add_row("dissector warnings", str(summary["dissector_warnings"]))
    if "kernel_drops" in summary:  # live capture: packets the kernel could not queue
        totals.add_row("kernel drops", f"{summary['kernel_drops']:,}")
    totals.add_row("elapsed", f"{summary['elapsed_s']:.2f} s")
    totals.add_row("packets/s", f"{summary['packets_per_s']:,.0f}")
    totals.add_row("database", summary["database"])
    out.print(totals)
    if summary["captures"]:
        caps = Table(title="captures")
        for col in ("capture", "file", "packets", "flows", "status", "depth"):
            caps.add_column(col)
        for c in summary["captures"]:
            caps.add_row(
                c["capture_id"][:12],
                Path(c["source"]).name,  # the full path is in the JSON
                str(c["packets"]),
                str(c["flows"]),
                c["status"],
                c["depth"],
            )
        out.print(caps)
    if summary.get("decode_errors"):  # e.g. encrypted 802.11 frames: how much was not seen
        skipped = Table(title="packets not decoded")
        skipped.add_column("reason")
        skipped.add_column("packets", justify="right")
        for reason, n in summary["decode_errors"].items():
            skipped.add_row(reason, f"{n:,}")
        out.print(skipped)
    for name, counts in summary.get("engines", {}).items():
        if counts:
            eng = Table(title=name, show_header=False)
            eng.add_column("what")
            eng.add_column("value", justify="right")
            for key, value in counts.items():
                eng.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
            out.print(eng)
    if summary["protocols"]:
        protos = Table(title="protocols (flows)")
        protos.add_column("protocol")
        protos.add_column("flows", justify="right")
        for name, n in summary["protocols"].items():
            protos.add_row(name, f"{n:,}")
        out.print(protos)


def parse_engines(value: str | None) -> list[str] | None:
    """`--engines` value: None (all registered), "none", or a comma-separated list."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


ENGINES_OPTION = click.option(
    "--engines",
    metavar="NAMES",
    help="Analysis engines to run after reading, comma-separated, or 'none'"
    f" (default: all: {', '.join(analyzer_names()) or 'none registered'}).",
)


FLOWS_ONLY_OPTION = click.option(
    "--flows-only",
    "flows_only",
    is_flag=True,
    help="Flows and protocol identification only, no dissectors: a fast first pass (large "
    "captures, busy links). Payload findings (cleartext PHI, credentials, DICOM/HL7 "
    "identities) need a full read; a full scan of the same file adds what this one left out.",
)


class ReadColumn(DownloadColumn):
    """Bytes read of the total; without a total (a stream: its size is known at its end), the
    packets and bytes read so far, from the task's `packets` field: "12,345 packets · 8.1 MB"."""

    def render(self, task: Task) -> Text:
        if task.total is not None:
            return super().render(task)
        n = int(task.fields.get("packets", 0))
        read = filesize.decimal(int(task.completed))
        return Text(f"{n:,} packet{'' if n == 1 else 's'} · {read}", style="progress.download")


def make_progress(quiet: bool) -> Progress:
    """A byte progress bar on stderr; silent when --quiet or stderr is not a terminal."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        ReadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        disable=quiet or not sys.stderr.isatty(),
        transient=True,
    )


def make_pipeline(
    pipeline_cls: type[Pipeline], config_cls: type[ScanConfig], *, dissectors: bool = True
) -> Pipeline:
    """The pipeline reads the installation's PHI key from the data directory: say so if it can't."""
    try:
        return pipeline_cls(config_cls(dissectors=dissectors))
    except OSError as exc:
        where = exc.filename or "the data directory"
        raise ConfigError(
            f"cannot read or create the PHI key in {where}: {exc.strerror or exc}"
            " (check MEDSENTRY_HOME)"
        ) from exc


def check_inputs(paths: Iterable[str], command: str) -> list[Path]:
    """Fail before any work when a file is missing or unreadable (one line, exit 2).

    `-` (standard input) may be given once, and not from a terminal: the message shows how to
    pipe a capture into `medsentry <command> -`."""
    from medsentry.capture.reader import STDIN, STDIN_SOURCE, stdin_tty

    out = []
    for p in paths:
        path = Path(p)
        if p == STDIN:
            if path in out:
                raise InputError("standard input can be read only once: '-' is given twice")
            if sys.stdin is None or sys.stdin.isatty():
                raise InputError(stdin_tty(command), source=STDIN_SOURCE)
            out.append(path)
            continue
        if not path.exists():
            raise InputError("no such file", source=p)
        if path.is_dir():
            raise InputError("is a directory, not a capture file", source=p)
        if not os.access(path, os.R_OK):
            raise InputError("permission denied", source=p)
        out.append(path)
    return out


def _capture_id_of(batch: list[Event]) -> str | None:
    """The pipeline stamps each FlowRecord with its capture's SHA-256 (hashed while reading)."""
    for ev in batch:
        if isinstance(ev, FlowRecord) and ev.capture_id:
            return ev.capture_id
    return None


def source_name(path: Path) -> str:
    """How a capture given on the command line is named: `<stdin>` for `-`."""
    from medsentry.capture.reader import STDIN, STDIN_SOURCE

    return STDIN_SOURCE if str(path) == STDIN else str(path)


def is_stream(path: Path) -> bool:
    """Standard input or a FIFO: read once, in order, its size unknown until its end."""
    from medsentry.capture.reader import STDIN

    if str(path) == STDIN:
        return True
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def scan_one(
    store: Store,
    pipeline: Pipeline,
    path: Path,
    tally: ScanTally,
    progress: Callable[[int, int, int], None],
    warn: Callable[[DecodeWarning], None],
    analyzers: list[Analyzer] | None = None,
) -> int:
    """Scan one capture (a file, `-` for standard input, a FIFO) into the store in one
    transaction, then run the analysis engines; returns its size in bytes. `progress` gets
    (bytes read, total: 0 for a stream, packets read).

    The writer opens at the first batch of events: the pipeline hands events out only once it
    knows the capture's SHA-256 (its capture id, `pipeline.capture_id`), so the capture is
    read once, also when it yields no event at all (the writer then opens after the scan).
    """
    from medsentry.capture.reader import open_capture

    # the header is read now: CaptureError before any work if it is no capture
    with open_capture(path, chunk_bytes=pipeline.config.chunk_bytes) as reader:
        _scan_reader(store, pipeline, reader, tally, progress, warn, analyzers)
        return reader.size


def _scan_reader(
    store: Store,
    pipeline: Pipeline,
    reader: CaptureReader,
    tally: ScanTally,
    progress: Callable[[int, int, int], None],
    warn: Callable[[DecodeWarning], None],
    analyzers: list[Analyzer] | None,
) -> None:
    fmt, source, path = reader.format, reader.source, reader.path
    flows_before, warnings_before = tally.flows, len(tally.warnings)
    first_before, last_before = tally.first_ns, tally.last_ns
    tally.first_ns = tally.last_ns = None
    with contextlib.ExitStack() as stack:
        writer: CaptureWriter | None = None

        depth = DEPTH_FULL if pipeline.config.dissectors else DEPTH_FLOWS

        def open_writer(capture_id: str | None) -> CaptureWriter:
            # a stream's size is known here: its id (hence its first event) comes at its end
            size = reader.size
            info = CaptureInfo(capture_id or file_sha256(path), source, fmt, size, depth)
            return stack.enter_context(CaptureWriter(store, info))

        def sink(batch: list[Event]) -> None:
            nonlocal writer
            if writer is None:
                # known before the first batch is sent: no second pass over the file
                writer = open_writer(_capture_id_of(batch) or pipeline.capture_id)
            writer.write(batch)
            for engine in analyzers or ():
                engine.feed(batch)
            n = len(tally.warnings)
            tally.see(batch, source)
            for w in tally.warnings[n:]:
                warn(w)

        def read(done: int, total: int) -> None:
            progress(done, total, reader.packets)

        stats = pipeline.scan_reader(reader, sink=sink, progress=read)
        if writer is None:
            writer = open_writer(pipeline.capture_id)
        damaged = len(tally.warnings) > warnings_before
        status = STATUS_DAMAGED if damaged else STATUS_COMPLETE
        writer.finish(
            packets=stats.packets,
            bytes=stats.bytes,
            first_ns=tally.first_ns,
            last_ns=tally.last_ns,
            link_types=stats.link_types[-1] if stats.link_types else (),
            status=status,
        )
    # stored: an interruption from here on leaves only the analysis undone
    tally.committed = Path(source)
    engine_counts: dict[str, Any] = {}
    for engine in analyzers or ():  # the capture is committed: engines store what they derived
        counts = engine.finish(store, writer.info.capture_id)
        tally.add_engine_counts(engine.name, counts)
        engine_counts[engine.name] = counts
    record(
        "scan.completed",
        {
            # the file's SHA-256 names it for good; its file name, which may say whose capture
            # it is, stays in the database (`captures.source`), never in the unerasable ledger
            "capture_id": writer.info.capture_id,
            "format": fmt,
            "status": status,
            "depth": writer.info.depth,
            "packets": stats.packets,
            "flows": tally.flows - flows_before,
            "database": store.url,
            "engines": engine_counts,
        },
        actor=cli_actor(),
    )
    tally.packets += stats.packets
    tally.bytes += stats.bytes
    for reason, n in stats.decode_errors.items():
        tally.decode_errors[reason] = tally.decode_errors.get(reason, 0) + n
    tally.captures.append(
        {
            "capture_id": writer.info.capture_id,
            "source": source,
            "format": fmt,
            "packets": stats.packets,
            "flows": tally.flows - flows_before,
            "status": status,
            "depth": writer.info.depth,
        }
    )
    firsts = [t for t in (first_before, tally.first_ns) if t is not None]
    lasts = [t for t in (last_before, tally.last_ns) if t is not None]
    tally.first_ns = min(firsts) if firsts else None
    tally.last_ns = max(lasts) if lasts else None


@click.command("scan")
@click.argument("files", nargs=-1, required=True, metavar="FILE|-...")
@DB_OPTION
@FORMAT_OPTION
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@ENGINES_OPTION
@click.option(
    "--ble-keys",
    "ble_keys",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Identity resolving keys of BLE devices, one 'IDENTITY_ADDRESS public|random IRK' "
    "per line: their rotating private addresses are resolved to one device each. Used for "
    "this scan only; never stored.",
)
@FLOWS_ONLY_OPTION
def scan_cmd(
    files: tuple[str, ...],
    db_url: str | None,
    fmt: str,
    quiet: bool,
    engines: str | None,
    ble_keys: str | None,
    flows_only: bool,
) -> None:
    """Read pcap/pcapng capture files into the store and print a summary.

    Each file is stored in one transaction; scanning a file again duplicates nothing. The
    analysis engines (inventory, detection, ...) then fold its events into what they keep.
    With --flows-only the capture is recorded at depth "flows" until a full scan reads it.

    FILE '-' reads a capture from standard input, once (tcpdump -i eth0 -w - | medsentry scan
    -); a FIFO is read the same way. A stream is stored as "<stdin>" (or the FIFO's path) under
    the SHA-256 of its bytes, as the same file would be: its events are written when it ends
    (past 200,000 they wait in a temporary file). A file named '-' is ./-.
    """
    paths = check_inputs(files, "scan")
    started = time.perf_counter()
    tally = ScanTally()
    from medsentry.protocols import ble_privacy

    with contextlib.ExitStack() as keys:
        if ble_keys is not None:
            keys.callback(ble_privacy.forget_given_keys)
            ble_privacy.load_key_file(ble_keys)  # a bad file stops the scan before any work
        _scan(paths, db_url, fmt, quiet, engines, started, tally, dissectors=not flows_only)


def _scan(
    paths: list[Path],
    db_url: str | None,
    fmt: str,
    quiet: bool,
    engines: str | None,
    started: float,
    tally: ScanTally,
    *,
    dissectors: bool = True,
) -> None:
    with startup.loading():
        from medsentry.pipeline import Pipeline, ScanConfig  # heavy (numba): only when scanning

    with open_store(db_url) as store, make_progress(quiet) as bar:
        with startup.loading():  # dissectors' and engines' knowledge
            pipeline = make_pipeline(Pipeline, ScanConfig, dissectors=dissectors)
            analyzers = load_analyzers(store, parse_engines(engines))
        with engines_closed(analyzers, bar.console, tally):
            _scan_files(store, bar, pipeline, paths, tally, analyzers)
        database = store.url
    out = data_console()
    print_summary(tally.summary(time.perf_counter() - started, database), fmt, out)


def _scan_files(
    store: Store,
    bar: Any,
    pipeline: Pipeline,
    paths: list[Path],
    tally: ScanTally,
    analyzers: list[Analyzer],
) -> None:
    """Each capture in turn into the store (one transaction each), with the progress bar.

    A stream's size is unknown until its end: the bar then has no total (`ReadColumn` shows
    the packets and bytes read so far)."""
    streams = [is_stream(p) for p in paths]
    total = None if any(streams) else sum(p.stat().st_size for p in paths)
    task = bar.add_task("scanning", total=total, packets=0)
    done_before = 0
    for path in paths:
        name = source_name(path)
        bar.update(task, description=Path(name).name)
        base, counted = done_before, tally.packets

        def progress(
            done: int, _total: int, packets: int, base: int = base, counted: int = counted
        ) -> None:
            interrupt.check()  # a Ctrl-C Python dropped (cli/interrupt.py) stops here
            bar.update(task, completed=base + done, packets=counted + packets)

        def warn(w: DecodeWarning) -> None:
            warn_line(bar.console, warning_text(w))

        try:
            done_before += scan_one(store, pipeline, path, tally, progress, warn, analyzers)
        except KeyboardInterrupt:
            bar.stop()
            n = len(tally.captures)
            before = f"{n} capture{'' if n == 1 else 's'} before it {'is' if n == 1 else 'are'}"
            if tally.committed == Path(name):  # flows and events are in; the engines are not
                echo(
                    f"medsentry: interrupted: {name} is stored ({before}), but the analysis"
                    " (inventory, controls, detection) did not finish: scan it again to"
                    " complete it",
                    err=True,
                )
            else:
                echo(f"medsentry: interrupted: {name} was not stored ({before})", err=True)
            raise
        bar.update(task, completed=done_before)
