"""`medsentry detect FILE...`: replay captures through the detection engine.

`-` is standard input and a FIFO is read as a stream, through the reader and checks `scan` uses
(`check_inputs`, `open_capture`): a terminal or a bad stream is one error line, exit 2.

Events are not stored (use `scan` for that; it runs the same engine as an analysis engine):
the engine's state and the alerts go to the store, so replays continue the learned baselines.
`--ephemeral` runs with a fresh, unstored state (alerts printed, nothing written).
"""

from __future__ import annotations

import click

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit

OUTPUT_OPTIONS = [
    click.option("--jsonl", multiple=True, metavar="PATH", help="Append alerts as JSON lines."),
    click.option("--syslog", multiple=True, metavar="URL", help="udp://HOST:PORT or tcp://..."),
    click.option("--cef", multiple=True, metavar="URL", help="CEF over syslog: udp:// or tcp://"),
    click.option("--webhook", multiple=True, metavar="URL", help="POST each alert as JSON."),
]


def output_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(OUTPUT_OPTIONS):
        f = opt(f)
    return f


@click.command("detect")
@click.argument("files", nargs=-1, required=True, metavar="FILE|-...")
@DB_OPTION
@click.option(
    "--learning",
    type=float,
    metavar="SECONDS",
    help="Learning period in capture time (default: detect.yaml, else 3600).",
)
@click.option("--ephemeral", is_flag=True, help="Fresh state, nothing stored: alerts printed.")
@click.option("--no-models", is_flag=True, help="Rules and baselines only.")
@output_options
@FORMAT_OPTION
def detect_cmd(
    files: tuple[str, ...],
    db_url: str | None,
    learning: float | None,
    ephemeral: bool,
    no_models: bool,
    jsonl: tuple[str, ...],
    syslog: tuple[str, ...],
    cef: tuple[str, ...],
    webhook: tuple[str, ...],
    fmt: str,
) -> None:
    """Replay capture files through the detection engine and list the alerts they raise.

    FILE '-' reads a capture from standard input, once (tcpdump -i eth0 -w - | medsentry detect
    -); a FIFO is read the same way. A file named '-' is ./-.
    """
    from medsentry.cli.alerts import ALERT_COLUMNS, alert_record
    from medsentry.cli.scan import check_inputs, make_pipeline, source_name, warning_text
    from medsentry.cli.terminal import console, warn_line
    from medsentry.detect.engine import DetectionEngine
    from medsentry.detect.outputs import build_sinks
    from medsentry.detect.registry import default_detectors, detect_config, learning_ns
    from medsentry.events import DecodeWarning
    from medsentry.pipeline import Pipeline, ScanConfig
    from medsentry.store import open_store

    paths = check_inputs(files, "detect")
    cfg = detect_config()
    sinks = build_sinks(
        jsonl=list(jsonl), syslog=list(syslog), cef=list(cef), webhook=list(webhook)
    )
    pipeline = make_pipeline(Pipeline, ScanConfig)
    touched: dict[str, object] = {}

    def run(store) -> None:  # type: ignore[no-untyped-def]
        engine = DetectionEngine(
            default_detectors(models=not no_models),
            store,
            learning_ns=learning_ns(cfg, learning),
            sinks=sinks,
        )
        try:
            for path in paths:
                batch_all: list = []
                pipeline.scan_files([path], sink=batch_all.extend)
                for ev in batch_all:  # damage the reader stepped over, as `scan` warns it
                    if isinstance(ev, DecodeWarning) and ev.source == source_name(path):
                        warn_line(console(stderr=True), warning_text(ev))
                batch_all.sort(key=lambda e: e.ts_ns)
                for a in engine.process(batch_all):
                    touched[a.alert_id] = a
                engine.commit()
        finally:  # even after an error: the alerts already raised still go out, or are told
            for line in engine.close():
                warn_line(console(stderr=True), line)

    if ephemeral:
        run(None)
    else:
        with open_store(db_url) as store:
            run(store)
    rows = [alert_record(a) for a in touched.values()]
    emit(rows, ALERT_COLUMNS, fmt, title=f"{len(rows)} alert{'' if len(rows) == 1 else 's'}")
