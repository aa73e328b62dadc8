"""`medsentry demo`: write a small hospital capture, scan it like `medsentry scan`, summarize."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.table import Table

from medsentry import startup
from medsentry.analysis import load_analyzers
from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION
from medsentry.cli.scan import (
    ScanTally,
    engines_closed,
    make_pipeline,
    make_progress,
    print_summary,
    scan_one,
    warning_text,
)
from medsentry.cli.terminal import console, warn_line
from medsentry.errors import InputError
from medsentry.events import DecodeWarning
from medsentry.paths import data_dir
from medsentry.store import FlowFilter, list_flows, open_store


def protocol_table(flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flows, packets and bytes per (application protocol, transport), most flows first."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for f in flows:
        key = (f["protocol"] or "unknown", f["transport"])
        row = acc.setdefault(
            key,
            {
                "protocol": key[0],
                "transport": key[1],
                "flows": 0,
                "packets": 0,
                "bytes": 0,
                "server_ports": set(),
            },
        )
        row["flows"] += 1
        row["packets"] += f["packets"]
        row["bytes"] += f["bytes"]
        row["server_ports"].add(f["server_port"])
    out = sorted(acc.values(), key=lambda r: (-r["flows"], r["protocol"], r["transport"]))
    for r in out:
        r["server_ports"] = ",".join(str(p) for p in sorted(r["server_ports"]))
    return out


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write demo-hospital.pcap (default: the data directory's demo/).",
)
@DB_OPTION
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same capture.")
@FORMAT_OPTION
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def demo_cmd(out_dir: str | None, db_url: str | None, seed: int, fmt: str, quiet: bool) -> None:
    """Build a small, realistic hospital capture and scan it.

    CT scanner, PACS and worklist (DICOM), HL7 engine and bedside monitors (HL7 over MLLP),
    infusion pumps (HTTPS), DHCP, DNS, NTP, SNMP, syslog, SSH, RDP and office browsing on three
    VLANs; synthetic patients only. The capture is scanned exactly as `medsentry scan` does.
    """
    from medsentry.demo.hospital import build  # pydicom/pynetdicom/hl7apy: only when asked

    folder = Path(out_dir) if out_dir else data_dir() / "demo"
    path = folder / "demo-hospital.pcap"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cap = build(path, seed)
    except OSError as exc:
        msg = f"cannot write the demo capture: {exc.strerror or exc}"
        raise InputError(msg, source=str(path)) from None
    out = console()
    if fmt != "json":
        out.print(f"wrote {cap.packets:,} packets ({path.stat().st_size:,} bytes) to {path}")
    started = time.perf_counter()
    tally = ScanTally()
    with startup.loading():
        from medsentry.pipeline import Pipeline, ScanConfig  # heavy (numba): only when scanning

    with open_store(db_url) as store, make_progress(quiet) as bar:
        with startup.loading():  # dissectors' and engines' knowledge
            pipeline = make_pipeline(Pipeline, ScanConfig)
            analyzers = load_analyzers(store)  # inventory, controls, detection: as `scan` runs them
        task = bar.add_task(path.name, total=path.stat().st_size)

        def progress(done: int, _total: int, _packets: int) -> None:
            bar.update(task, completed=done)

        def warn(w: DecodeWarning) -> None:
            warn_line(bar.console, warning_text(w))

        with engines_closed(analyzers, bar.console, tally):
            scan_one(store, pipeline, path, tally, progress, warn, analyzers)  # as `scan` does
        capture_id = tally.captures[-1]["capture_id"]
        per_protocol = protocol_table(list_flows(store, FlowFilter(capture=capture_id)))
        database = store.url
    summary = tally.summary(time.perf_counter() - started, database)
    summary["demo"] = {"capture": str(path), "seed": seed, "written_packets": cap.packets}
    summary["flows_per_protocol"] = per_protocol
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(summary), indent=2).decode())
        return
    print_summary(summary, fmt, out)
    table = Table(title="flows per protocol")
    for col, justify in (
        ("protocol", "left"),
        ("transport", "left"),
        ("flows", "right"),
        ("packets", "right"),
        ("bytes", "right"),
        ("server ports", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in per_protocol:
        table.add_row(
            r["protocol"],
            r["transport"],
            f"{r['flows']:,}",
            f"{r['packets']:,}",
            f"{r['bytes']:,}",
            r["server_ports"],
        )
    out.print(table)
