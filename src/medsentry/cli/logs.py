"""`medsentry logs listen|import`: device syslog as a second input beside traffic.

Messages become `SyslogMessage` events (stored like any event, under a capture named
"syslog:..."), run through the detection engine, and are attached to devices by source address
or hostname. The message text is matched against the log patterns and never stored.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from pathlib import Path

import click

from medsentry.cli.detect import output_options
from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.cli.terminal import console, echo, warn_line


@click.group("logs")
def logs_cmd() -> None:
    """Device logs (syslog RFC 5424 / RFC 3164): receive or import, then detect."""


def _engine(store, sinks):  # type: ignore[no-untyped-def]
    from medsentry.detect.engine import DetectionEngine
    from medsentry.detect.registry import default_detectors, learning_ns

    return DetectionEngine(default_detectors(), store, learning_ns=learning_ns(), sinks=sinks)


@logs_cmd.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@DB_OPTION
@output_options
@FORMAT_OPTION
def import_cmd(
    files: tuple[str, ...],
    db_url: str | None,
    jsonl: tuple[str, ...],
    syslog: tuple[str, ...],
    cef: tuple[str, ...],
    webhook: tuple[str, ...],
    fmt: str,
) -> None:
    """Read syslog files (one message per line), store their events, run detection."""
    from medsentry.cli.alerts import ALERT_COLUMNS, alert_record
    from medsentry.detect.logs import read_log_file
    from medsentry.detect.outputs import build_sinks
    from medsentry.errors import InputError
    from medsentry.store import CaptureWriter, open_store
    from medsentry.store.writer import CaptureInfo

    parsed = []
    for f in files:  # parse everything first: a bad line stores nothing
        p = Path(f)
        if not p.is_file():
            raise InputError(f"{f}: no such file")
        parsed.append((p, read_log_file(p)))
    sinks = build_sinks(
        jsonl=list(jsonl), syslog=list(syslog), cef=list(cef), webhook=list(webhook)
    )
    touched: dict[str, object] = {}
    summary = []
    with open_store(db_url) as store:
        engine = _engine(store, sinks)
        try:
            for p, events in parsed:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                info = CaptureInfo(digest, f"syslog:{p}", "syslog", p.stat().st_size)
                with CaptureWriter(store, info) as w:
                    w.write(events)
                    w.finish(
                        first_ns=min((e.ts_ns for e in events), default=None),
                        last_ns=max((e.ts_ns for e in events), default=None),
                    )
                engine.ctx.capture_id = digest
                events.sort(key=lambda e: e.ts_ns)
                for a in engine.process(events):
                    touched[a.alert_id] = a
                engine.commit()
                summary.append((p, len(events), sum(1 for e in events if e.matches)))
        finally:  # the alerts already raised still go out, or are told
            for line in engine.close():
                warn_line(console(stderr=True), line)
    for p, n, m in summary:
        echo(f"{p}: {n} messages, {m} matched a log pattern", err=True)
    rows = [alert_record(a) for a in touched.values()]
    emit(rows, ALERT_COLUMNS, fmt, title=f"{len(rows)} alert{'' if len(rows) == 1 else 's'}")


@logs_cmd.command("listen")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=514, show_default=True, help="UDP and TCP port"
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--udp/--no-udp", default=True, show_default=True)
@click.option("--tcp/--no-tcp", default=True, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="Stop after this long.",
)
@click.option("--count", type=click.IntRange(1), metavar="N", help="Stop after N messages.")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between store commits."
)
@DB_OPTION
@output_options
def listen_cmd(
    port: int,
    host: str,
    udp: bool,
    tcp: bool,
    duration: float | None,
    count: int | None,
    interval: float,
    db_url: str | None,
    jsonl: tuple[str, ...],
    syslog: tuple[str, ...],
    cef: tuple[str, ...],
    webhook: tuple[str, ...],
) -> None:
    """Receive syslog from devices, store the events, raise alerts as they come (Ctrl-C stops)."""
    import signal

    from medsentry.detect.logs import SyslogReceiver
    from medsentry.detect.outputs import build_sinks
    from medsentry.store import CaptureWriter, live_capture_info, open_store

    q: queue.Queue = queue.Queue()
    sinks = build_sinks(
        jsonl=list(jsonl), syslog=list(syslog), cef=list(cef), webhook=list(webhook)
    )
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # service stop: finish cleanly
    received = 0
    with open_store(db_url) as store:
        engine = _engine(store, sinks)
        info = live_capture_info(f"syslog:{port}")
        receiver = SyslogReceiver(q.put, host=host, port=port, udp=udp, tcp=tcp).start()
        echo(
            f"medsentry: listening for syslog on {host}:{port}"
            f"{' udp' if udp else ''}{' tcp' if tcp else ''}; Ctrl-C to stop",
            err=True,
        )
        t0 = time.monotonic()
        try:
            with CaptureWriter(store, info, commit_each_batch=True) as w:
                while not stop.is_set():
                    time.sleep(interval if q.empty() else 0)
                    batch = []
                    while not q.empty():
                        batch.append(q.get_nowait())
                    if batch:
                        received += len(batch)
                        w.write(batch)
                        engine.ctx.capture_id = info.capture_id
                        for a in engine.process(batch):
                            echo(
                                f"alert {a.alert_id} {a.severity} {a.rule_id} "
                                f"{a.device_id or '-'} x{a.count}: {a.title}"
                            )
                        engine.commit()
                    if duration is not None and time.monotonic() - t0 >= duration:
                        break
                    if count is not None and received >= count:
                        break
                w.finish(status="stopped")
        except KeyboardInterrupt:
            pass
        finally:
            receiver.close()
            engine.commit()
            for line in engine.close():
                warn_line(console(stderr=True), line)
    echo(f"medsentry: {received} messages received, {receiver.rejected} rejected", err=True)
