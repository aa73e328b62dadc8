"""`medsentry monitor`: capture live from an interface through the scan pipeline into the store.

A live session commits after every batch of events (its `captures` row says `running` until it
stops): a session killed outright keeps what it had committed. Ctrl-C, SIGTERM or `--duration`
stop it cleanly: open flows are ended and stored, the row becomes `stopped`, and the same
summary as `scan` is printed. A second Ctrl-C aborts at once (the row says `interrupted`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from medsentry import startup
from medsentry.actor import cli_actor
from medsentry.analysis import load_analyzers
from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION
from medsentry.cli.scan import (
    ENGINES_OPTION,
    FLOWS_ONLY_OPTION,
    ScanTally,
    engines_closed,
    make_pipeline,
    parse_engines,
    print_summary,
    warning_text,
)
from medsentry.cli.terminal import console, data_console
from medsentry.errors import InputError
from medsentry.events import DecodeWarning, Event
from medsentry.ledger import record
from medsentry.store import CaptureWriter, live_capture_info, open_store
from medsentry.store.schema import DEPTH_FLOWS, DEPTH_FULL, STATUS_STOPPED


@contextlib.contextmanager
def stop_on_signals(source: Any) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM) asks the source to stop; a second Ctrl-C aborts."""
    hits = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal hits
        hits += 1
        if hits > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        source.stop()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@click.command("monitor")
@click.option("-i", "--interface", required=True, metavar="IFACE", help="Interface to capture.")
@DB_OPTION
@click.option("--duration", type=float, metavar="S", help="Stop after S seconds (default: Ctrl-C).")
@click.option("--bpf", metavar="FILTER", help="tcpdump filter expression, e.g. 'tcp port 104'.")
@click.option("--promisc", is_flag=True, help="Put the interface in promiscuous mode.")
@FORMAT_OPTION
@click.option("-q", "--quiet", is_flag=True, help="No live status line.")
@ENGINES_OPTION
@FLOWS_ONLY_OPTION
def monitor_cmd(
    interface: str,
    db_url: str | None,
    duration: float | None,
    bpf: str | None,
    promisc: bool,
    fmt: str,
    quiet: bool,
    engines: str | None,
    flows_only: bool,
) -> None:
    """Capture live from an interface into the store until Ctrl-C or --duration."""
    if duration is not None and not duration > 0:
        raise InputError(f"--duration {duration} must be a positive number of seconds")
    with startup.loading():
        from medsentry.capture.live import LiveSource  # heavy (numba): only when capturing
        from medsentry.pipeline import Pipeline, ScanConfig

    started = time.perf_counter()
    tally = ScanTally()
    err = console(stderr=True)
    with open_store(db_url) as store:
        with startup.loading():  # dissectors' and engines' knowledge
            pipeline = make_pipeline(Pipeline, ScanConfig, dissectors=not flows_only)
            analyzers = load_analyzers(store, parse_engines(engines))
        source = LiveSource(interface, bpf=bpf, duration=duration, promisc=promisc)
        info = live_capture_info(interface, depth=DEPTH_FLOWS if flows_only else DEPTH_FULL)
        status = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=quiet or not sys.stderr.isatty(),
            transient=True,
        )
        try:
            with (
                engines_closed(analyzers, err, tally),
                CaptureWriter(store, info, commit_each_batch=True) as writer,
                stop_on_signals(source),
                status,
            ):
                task = status.add_task(f"capturing on {interface} (Ctrl-C to stop)", total=None)
                # Said on stderr even without a terminal: scripts wait for it before sending.
                if not quiet:
                    err.print(
                        f"medsentry: capturing on {interface}"
                        f"{f' ({bpf})' if bpf else ''}; Ctrl-C to stop",
                        markup=False,
                        highlight=False,
                        soft_wrap=True,
                    )

                def sink(batch: list[Event]) -> None:
                    writer.write(batch)  # committed per batch: engines store what they derived
                    for engine in analyzers:
                        engine.feed(batch)
                        tally.add_engine_counts(engine.name, engine.finish(store, info.capture_id))
                    n = len(tally.warnings)
                    tally.see(batch, interface)
                    for w in tally.warnings[n:]:
                        status.console.print(
                            f"medsentry: warning: {warning_text(w)}",
                            markup=False,
                            highlight=False,
                            soft_wrap=True,
                        )

                def progress(seen: int, _total: int) -> None:
                    status.update(task, completed=seen)

                stats = pipeline.run_source(
                    source, sink=sink, progress=progress, capture_id=info.capture_id
                )
                if source.warnings:
                    sink([w for w in source.warnings if isinstance(w, DecodeWarning)])
                writer.finish(
                    packets=stats.packets,
                    bytes=stats.bytes,
                    first_ns=tally.first_ns,
                    last_ns=tally.last_ns,
                    link_types=source.linktypes,
                    status=STATUS_STOPPED,
                )
        finally:
            source.close()
        tally.packets, tally.bytes = stats.packets, stats.bytes
        tally.captures.append(
            {
                "capture_id": info.capture_id,
                "source": info.source,
                "format": "live",
                "packets": stats.packets,
                "flows": tally.flows,
                "status": STATUS_STOPPED,
                "depth": info.depth,
            }
        )
        database = store.url
        record(
            "scan.completed",
            {
                "capture_id": info.capture_id,
                "source": info.source,
                "format": "live",
                "status": STATUS_STOPPED,
                "packets": stats.packets,
                "flows": tally.flows,
                "kernel_drops": source.drops,
                "database": database,
                "engines": tally.engines,
            },
            actor=cli_actor(),
        )
    summary = tally.summary(time.perf_counter() - started, database)
    summary["kernel_drops"] = source.drops
    out = data_console()
    print_summary(summary, fmt, out)
