"""`medsentry policy`: check observed flows against a zone policy; recommend one."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from medsentry.cli.flows import DB_OPTION
from medsentry.cli.output import FORMAT_OPTION, emit
from medsentry.controls.devices import load_inventory
from medsentry.controls.engine import FindingBuilder
from medsentry.controls.firewall import render
from medsentry.controls.knowledge import knowledge
from medsentry.controls.segmentation import check, load_policy, recommend, stored_conversations
from medsentry.controls.store import upsert_findings
from medsentry.errors import InputError
from medsentry.store import ns_to_iso, open_store

EXIT_VIOLATIONS = 1


@click.group("policy")
def policy_cmd() -> None:
    """Zone segmentation policy: check observed flows, recommend least privilege."""


@policy_cmd.command("check")
@click.argument("policy_file", type=click.Path(dir_okay=False, path_type=Path))
@DB_OPTION
@click.option("--no-store", is_flag=True, help="Do not record violations as findings.")
@FORMAT_OPTION
def check_cmd(policy_file: Path, db_url: str | None, no_store: bool, fmt: str) -> None:
    """Check every stored flow against POLICY_FILE; violations become findings.

    Exit code 1 when there are violations (0 when none), 2 when the policy is malformed.
    """
    policy = load_policy(policy_file)
    with open_store(db_url) as store:
        devices = load_inventory(store)
        by_ip = {ip: d for d in devices for ip in d.ips}
        violations = check(policy, stored_conversations(store), by_ip)
        if not no_store and violations:
            b = FindingBuilder(knowledge(), devices, None)
            b.segmentation(violations)
            upsert_findings(store, b.out.values(), actor="policy-check")
    rows = [
        {
            "client": v.client,
            "server": v.server,
            "from_zone": v.client_zone,
            "to_zone": v.server_zone,
            "transport": v.transport,
            "port": v.port,
            "protocol": v.protocol,
            "flows": v.flows,
            "first_seen": ns_to_iso(v.first_ns),
            "last_seen": ns_to_iso(v.last_ns),
        }
        for v in violations
    ]
    emit(
        rows,
        ["client", "server", "from_zone", "to_zone", "transport", "port", "protocol", "flows"],
        fmt,
        title=f"zone policy violations ({len(rows)})",
    )
    if violations:
        sys.exit(EXIT_VIOLATIONS)


@policy_cmd.command("recommend")
@DB_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "nftables", "iptables", "acl"]),
    default="yaml",
    show_default=True,
    help="The policy file (yaml) or firewall rule text.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def recommend_cmd(db_url: str | None, fmt: str, out: Path | None) -> None:
    """A least-privilege zone policy from each device category's observed communication."""
    with open_store(db_url) as store:
        convs = stored_conversations(store)
        if not convs:
            raise InputError("no flows stored to derive a policy from (scan captures first)")
        policy = recommend(convs, load_inventory(store))
    if fmt == "yaml":
        head = (
            "# medsentry recommended zone policy: one zone per device category, allowing only\n"
            "# the flows observed (review before enforcing; 'external' = public addresses)\n"
        )
        text = head + yaml.safe_dump(policy.as_dict(), sort_keys=False, width=100)
    else:
        text = render(policy, fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, "utf-8")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", str(out)) from None
    click.echo(f"wrote {out} ({len(policy.zones)} zones, {len(policy.rules)} rules)", err=True)
