"""A zone policy as firewall rule text: nftables, iptables-restore, and a generic ACL.

Every output is default-deny for traffic between zones, with return traffic of allowed flows
accepted by connection tracking. Zones named by device category or VLAN only (no subnets) can't
be expressed as addresses and are skipped with a comment.
"""

from __future__ import annotations

from medsentry.controls.segmentation import ANY, EXTERNAL, ZonePolicy

FORMATS = ("nftables", "iptables", "acl")


def _nets(policy: ZonePolicy, zone: str, version: int) -> list[str] | None:
    """The zone's networks of one IP version; None for "any" (no address match)."""
    if zone == ANY:
        return None
    if zone == EXTERNAL:
        return ["0.0.0.0/0"] if version == 4 else ["::/0"]
    cache = policy.__dict__.setdefault("_nets_text", {})
    if not cache:
        for z in policy.zones:
            for v in (4, 6):
                cache[(z.name, v)] = [str(n) for n in z.subnets if n.version == v]
    return cache.get((zone, version), [])


def _set_name(zone: str, version: int) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in zone)
    return f"z_{safe}_v{version}"


def _port_text(lo: int, hi: int, sep: str) -> str:
    return str(lo) if lo == hi else f"{lo}{sep}{hi}"


def _comment(rule_src: str, rule_dst: str, protocol: str, extra: str) -> str:
    text = f"{rule_src} -> {rule_dst}" + (f" {protocol}" if protocol != ANY else "")
    if extra:
        text += f" ({extra})"
    return text.replace('"', "'")[:120]


def _nft_addr(zone: str, nets: list[str], v: int) -> str:
    return nets[0] if zone == EXTERNAL else f"@{_set_name(zone, v)}"


def to_nftables(policy: ZonePolicy) -> str:
    """nftables (nft -f) ruleset: one named set per zone and IP version, a forward chain."""
    out = [
        "#!/usr/sbin/nft -f",
        "# medsentry zone policy: default deny between zones (IEC 62443-3-3 SR 5.2)",
        "table inet medsentry_zones {",
    ]
    for z in policy.zones:
        for v, typ in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            nets = [str(n) for n in z.subnets if n.version == v]
            if nets:
                out.append(f"  set {_set_name(z.name, v)} {{")
                out.append(f"    type {typ}; flags interval;")
                out.append(f"    elements = {{ {', '.join(nets)} }}")
                out.append("  }")
    out += [
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
    ]
    if policy.intra_zone == "allow":
        for z in policy.zones:
            for v, fam in ((4, "ip"), (6, "ip6")):
                if any(n.version == v for n in z.subnets):
                    s = _set_name(z.name, v)
                    rule = f"{fam} saddr @{s} {fam} daddr @{s}"
                    out.append(f'    {rule} accept comment "intra {z.name}"')
    for r in policy.rules:
        for v, fam in ((4, "ip"), (6, "ip6")):
            src, dst = _nets(policy, r.src, v), _nets(policy, r.dst, v)
            if src == [] or dst == []:
                continue  # the zone has no addresses of this version
            parts = []
            if src is not None:
                parts.append(f"{fam} saddr {_nft_addr(r.src, src, v)}")
            if dst is not None:
                parts.append(f"{fam} daddr {_nft_addr(r.dst, dst, v)}")
            if src is None and dst is None:
                parts.append(f"meta nfproto {'ipv4' if v == 4 else 'ipv6'}")
            if r.transport in ("tcp", "udp", "sctp"):
                if r.ports:
                    ports = ", ".join(_port_text(lo, hi, "-") for lo, hi in r.ports)
                    parts.append(f"{r.transport} dport {{ {ports} }}")
                else:
                    parts.append(f"meta l4proto {r.transport}")
            elif r.transport in ("icmp", "icmp6"):
                parts.append(f"meta l4proto {'icmp' if r.transport == 'icmp' else 'ipv6-icmp'}")
            comment = _comment(r.src, r.dst, r.protocol, r.comment)
            out.append(f'    {" ".join(parts)} accept comment "{comment}"')
    out += ["  }", "}", ""]
    return "\n".join(out)


def _ipt_rules(policy: ZonePolicy, v: int) -> list[str]:
    lines = []
    if policy.intra_zone == "allow":
        for z in policy.zones:
            nets = [str(n) for n in z.subnets if n.version == v]
            if nets:
                joined = ",".join(nets)
                lines.append(
                    f'-A FORWARD -s {joined} -d {joined} -m comment --comment "intra {z.name}"'
                    " -j ACCEPT"
                )
    for r in policy.rules:
        src, dst = _nets(policy, r.src, v), _nets(policy, r.dst, v)
        if src == [] or dst == []:
            continue
        parts = ["-A FORWARD"]
        if src is not None:
            parts.append(f"-s {','.join(src)}")
        if dst is not None:
            parts.append(f"-d {','.join(dst)}")
        if r.transport in ("tcp", "udp", "sctp"):
            parts.append(f"-p {r.transport}")
            if r.ports:
                ports = ",".join(_port_text(lo, hi, ":") for lo, hi in r.ports)
                parts.append(f"-m multiport --dports {ports}")
        elif r.transport in ("icmp", "icmp6"):
            parts.append("-p icmp" if v == 4 else "-p ipv6-icmp")
        parts.append(f'-m comment --comment "{_comment(r.src, r.dst, r.protocol, r.comment)}"')
        parts.append("-j ACCEPT")
        lines.append(" ".join(parts))
    return lines


def to_iptables(policy: ZonePolicy) -> str:
    """iptables-restore input (IPv4), then the ip6tables-restore part as a comment block."""
    head = [
        "# medsentry zone policy for iptables-restore (IPv4); default deny between zones",
        "*filter",
        ":FORWARD DROP [0:0]",
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
    ]
    out = head + _ipt_rules(policy, 4) + ["COMMIT"]
    v6 = _ipt_rules(policy, 6)
    if v6:
        out += ["", "# ip6tables-restore:", "# *filter", "# :FORWARD DROP [0:0]"]
        out += [f"# {line}" for line in v6] + ["# COMMIT"]
    return "\n".join(out) + "\n"


def to_acl(policy: ZonePolicy) -> str:
    """A vendor-neutral access list: numbered permit lines, then an explicit deny."""
    rows = ["# seq  action  proto  source  destination  dport  # comment"]
    seq = 10
    rows.append(f"{seq} permit any any any established  # return traffic of allowed flows")
    for r in policy.rules:
        for v in (4, 6):
            src, dst = _nets(policy, r.src, v), _nets(policy, r.dst, v)
            if src == [] or dst == []:
                continue
            if v == 6 and src is None and dst is None:
                continue  # the "any -> any" rule was written once for IPv4
            seq += 10
            ports = ",".join(_port_text(lo, hi, "-") for lo, hi in r.ports) or "any"
            rows.append(
                f"{seq} permit {r.transport} "
                f"{','.join(src) if src is not None else 'any'} "
                f"{','.join(dst) if dst is not None else 'any'} {ports}"
                f"  # {_comment(r.src, r.dst, r.protocol, r.comment)}"
            )
    rows.append(f"{seq + 10} deny any any any any  # default deny between zones")
    return "\n".join(rows) + "\n"


def render(policy: ZonePolicy, fmt: str) -> str:
    if fmt == "nftables":
        return to_nftables(policy)
    if fmt == "iptables":
        return to_iptables(policy)
    if fmt == "acl":
        return to_acl(policy)
    raise ValueError(fmt)
