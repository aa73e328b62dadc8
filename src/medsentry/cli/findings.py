"""`medsentry findings`: the security-controls audit's findings; close one with who and why."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, LIMIT, emit
from medsentry.cli.terminal import echo
from medsentry.controls.knowledge import SEVERITIES, knowledge
from medsentry.controls.model import Finding
from medsentry.controls.store import FindingFilter, close_finding, list_findings
from medsentry.store import ns_to_iso, open_store


def finding_record(f: Finding, with_controls: bool = True) -> dict[str, Any]:
    rec = msgspec.to_builtins(f)
    rec["first_seen"] = ns_to_iso(f.first_seen_ns)
    rec["last_seen"] = ns_to_iso(f.last_seen_ns)
    if with_controls:
        kn = knowledge()
        rec["remediation"] = kn.types[f.type].remediation
        rec["controls"] = {
            fw: [r.control for r in refs] for fw, refs in kn.controls_for(f.type).items()
        }
    return rec


class _Group(click.Group):
    """`medsentry findings [filters]` lists; `medsentry findings close ID` closes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and (args[0] in self.commands or args[0] in ("-h", "--help")):
            return super().parse_args(ctx, args)
        ctx.ensure_object(dict)["_list_args"] = list(args)
        return super().parse_args(ctx, ["list", *args])


@click.group("findings", cls=_Group, invoke_without_command=False)
def findings_cmd() -> None:
    """Findings of the security-controls audit. Without a subcommand: `list` (open findings;
    filters --status, --type, --severity, --device, --format json)."""


@findings_cmd.command("list")
@DB_OPTION
@click.option(
    "--status",
    type=click.Choice(["open", "closed", "all"]),
    default="open",
    show_default=True,
)
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Finding type (repeatable).")
@click.option(
    "--severity", type=click.Choice(SEVERITIES), help="At least this severity (e.g. high)."
)
@click.option("--device", metavar="ID", help="Device id, e.g. ip:10.0.0.5 or mac:...")
@click.option("--limit", type=LIMIT, help="At most N findings.")
@FORMAT_OPTION
def list_cmd(
    db_url: str | None,
    status: str,
    types: tuple[str, ...],
    severity: str | None,
    device: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List findings, most severe first."""
    kn = knowledge()
    unknown = [t for t in types if t not in kn.types]
    if unknown:
        from medsentry.errors import InputError

        raise InputError(
            f"--type: unknown finding type {unknown[0]!r} (see `medsentry findings types`)"
        )
    flt = FindingFilter(
        status=None if status == "all" else status,
        types=types,
        min_severity=severity,
        device=device,
        limit=limit,
    )
    with open_store(db_url) as store:
        rows = [finding_record(f, with_controls=fmt == "json") for f in list_findings(store, flt)]
    if fmt == "table":
        for r in rows:
            r["id"] = r["finding_id"][:12]
    emit(
        rows,
        ["id", "severity", "type", "device_id", "subject", "status", "evidence_count", "last_seen"],
        fmt,
        title="findings",
        narrow=("last_seen", "evidence_count", "status"),
    )


@findings_cmd.command("close")
@click.argument("finding_id")
@click.option("--by", "by", required=True, help="Who closes it (recorded in the audit ledger).")
@click.option("--reason", required=True, help="Why (fixed, accepted risk, false positive...).")
@DB_OPTION
@FORMAT_OPTION
def close_cmd(finding_id: str, by: str, reason: str, db_url: str | None, fmt: str) -> None:
    """Close FINDING_ID (a unique prefix is enough); newer evidence reopens it."""
    with open_store(db_url) as store:
        f = close_finding(store, finding_id, by, reason)
    rec = finding_record(f, with_controls=False)
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(rec), indent=2).decode())
    else:
        echo(f"closed {f.finding_id} ({f.type} on {f.device_id}) by {by}: {reason}")


@findings_cmd.command("types")
@FORMAT_OPTION
def types_cmd(fmt: str) -> None:
    """The finding types, their default severity and the controls they map to."""
    kn = knowledge()
    rows = []
    for t in kn.types.values():
        maps = kn.controls_for(t.id)
        rows.append(
            {
                "type": t.id,
                "severity": t.severity,
                "title": t.title,
                "source": t.source,
                "controls": {fw: [r.control for r in refs] for fw, refs in maps.items()},
                "not_applicable": kn.not_applicable.get(t.id, {}),
                "frameworks": ", ".join(sorted(maps)),
            }
        )
    emit(rows, ["type", "severity", "title", "frameworks"], fmt, title="finding types")


@findings_cmd.command("show")
@click.argument("finding_id")
@DB_OPTION
@FORMAT_OPTION
def show_cmd(finding_id: str, db_url: str | None, fmt: str) -> None:
    """One finding in full: evidence, remediation, controls per framework, lifecycle history."""
    from medsentry.controls.store import find_finding, finding_history_rows

    with open_store(db_url) as store:
        f = find_finding(store, finding_id)
        history = finding_history_rows(store, f.finding_id)
    rec = finding_record(f)
    rec["history"] = [
        {k: (ns_to_iso(v) if k == "at_ns" else v) for k, v in h.items() if k != "id"}
        for h in history
    ]
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(rec), indent=2).decode())
        return
    echo(f"{f.finding_id}  {f.severity.upper()}  {f.title}  [{f.status}]")
    echo(f"device    {f.device_id}   subject {f.subject}")
    echo(f"detail    {f.detail}")
    echo(f"seen      {rec['first_seen']} .. {rec['last_seen']}  ({f.evidence_count} times)")
    if f.peers:
        echo(f"peers     {', '.join(f.peers[:10])}")
    echo("evidence")
    for e in f.evidence:
        where = f"{e.client or ''} -> {e.server or ''}:{e.server_port or ''}".strip(" ->:")
        app = f"  [app: {e.app}]" if e.app else ""
        echo(f"  {ns_to_iso(e.ts_ns)}  {e.kind:14} {e.flow_id or '':20} {where}  {e.note}{app}")
    echo(f"remedy    {rec['remediation']}")
    echo("controls")
    for fw, ids in rec["controls"].items():
        echo(f"  {fw:15} {', '.join(ids)}")
    echo("history")
    for h in rec["history"]:
        why = f": {h['reason']}" if h.get("reason") else ""
        echo(f"  {h['at_ns']}  {h['action']} by {h['actor']}{why}")
