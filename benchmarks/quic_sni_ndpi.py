"""QUIC server names and user agents: medsentry's QUIC Initial dissector against nDPI on nDPI's
own QUIC captures.

    python benchmarks/quic_sni_ndpi.py

For every `*quic*` capture in ../shared/data/ndpi_pcaps (IETF QUIC v1, v2, drafts 23-34, mvfst,
version negotiation, split and reordered ClientHellos, and Google QUIC), the server names
(TLS SNI, and the SNI tag of Google QUIC's CHLO) medsentry reads from the captures' client
hellos are compared with the
`Hostname/SNI` nDPI's expected results (`result/<capture>.out`) list for its QUIC flows. Then
the user agents: on every capture whose expected results list a `User-Agent` for a QUIC flow,
those (Google QUIC's UAID tag; Chromium's google_user_agent transport parameter in IETF QUIC
and T05x) against the ones medsentry reads.
Writes benchmarks/quic_sni_ndpi.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "ndpi_pcaps" / "tests" / "cfgs" / "default"
_SNI = re.compile(r"Hostname/SNI: ([^\]]*)\]")
_VERSION = re.compile(r"QUIC ver: ([^\]]*)\]")
_USER_AGENT = re.compile(r"\[User-Agent: ([^\]]*)\]")


def ndpi_user_agents(result: Path) -> tuple[set[str], set[str]]:
    """(user agents, QUIC versions) of the QUIC flows in one expected-results file."""
    agents: set[str] = set()
    versions: set[str] = set()
    for line in result.read_text(errors="replace").splitlines():
        if "QUIC ver: " not in line:
            continue
        if m := _USER_AGENT.search(line):
            agents.add(m.group(1))
            versions.add(_VERSION.search(line).group(1))  # type: ignore[union-attr]
    return agents, versions


def user_agent_rows(pipeline_cls, config_cls, hellos) -> tuple[list[str], int, int]:
    """Markdown rows of the user-agent comparison, nDPI's count, and how many medsentry reads."""
    rows, total, both = [], 0, 0
    for result in sorted((DATA / "result").glob("*.out")):
        theirs, versions = ndpi_user_agents(result)
        cap = DATA / "pcap" / result.name[: -len(".out")]
        if not theirs or not cap.exists():
            continue
        events: list = []
        pipeline_cls(config_cls()).scan_files([cap], events.extend)
        ours = {e.user_agent for e in events if isinstance(e, hellos) and e.user_agent}
        total += len(theirs)
        both += len(theirs & ours)
        rows.append(
            f"| {cap.name} | {', '.join(sorted(versions))} | {len(theirs)} | "
            f"{len(theirs & ours)} | {'; '.join(sorted(ours - theirs)[:3])} | "
            f"{'; '.join(sorted(theirs - ours)[:3])} |"
        )
    return rows, total, both


def ndpi_expected(capture: Path) -> tuple[set[str], set[str]]:
    """(server names, QUIC versions) of the QUIC flows in nDPI's expected output."""
    names: set[str] = set()
    versions: set[str] = set()
    for line in (DATA / "result" / f"{capture.name}.out").read_text().splitlines():
        if "[proto: " not in line or "QUIC" not in line:
            continue
        if m := _SNI.search(line):
            names.add(m.group(1))
        if m := _VERSION.search(line):
            versions.add(m.group(1))
    return names, versions


def tshark_names(capture: Path) -> set[str] | None:
    """Server names of the client hellos tshark finds (it decrypts Initial packets too, and
    reads Google QUIC's CHLO)."""
    if shutil.which("tshark") is None:
        return None
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-T", "fields", "-E", "separator=\n",
         "-e", "tls.handshake.extensions_server_name", "-e", "gquic.tag.sni",
         "-Y", "tls.handshake.type == 1 or gquic.tag.sni"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return {line for line in out.splitlines() if line}


def main() -> None:
    os.environ.setdefault("MEDSENTRY_HOME", tempfile.mkdtemp(prefix="quic-bench-"))
    from medsentry.events.tls import QuicCryptoClientHello, TlsClientHello
    from medsentry.pipeline import Pipeline, ScanConfig

    rows = []
    keys = ("ndpi", "both", "ours_only", "ours_only_tshark", "ietf_ndpi", "ietf_both",
            "google_ndpi", "google_both")  # fmt: skip
    tot = dict.fromkeys(keys, 0)
    for cap in sorted((DATA / "pcap").glob("*quic*")):
        events: list = []
        Pipeline(ScanConfig()).scan_files([cap], events.extend)
        hellos = (TlsClientHello, QuicCryptoClientHello)
        ours = {e.server_name for e in events if isinstance(e, hellos) and e.server_name}
        theirs, versions = ndpi_expected(cap)
        google = bool(versions) and all(v[:1] in ("Q", "T") for v in versions)
        tot["ndpi"] += len(theirs)
        tot["both"] += len(theirs & ours)
        tot["ours_only"] += len(ours - theirs)
        if ours - theirs:
            shark = tshark_names(cap)
            tot["ours_only_tshark"] += len((ours - theirs) & shark) if shark is not None else 0
        kind = "google" if google else "ietf"
        tot[f"{kind}_ndpi"] += len(theirs)
        tot[f"{kind}_both"] += len(theirs & ours)
        rows.append((cap.name, ", ".join(sorted(versions)) or "-", len(theirs), len(theirs & ours),
                     sorted(ours - theirs), sorted(theirs - ours)))  # fmt: skip
    lines = [
        "# QUIC server names and user agents: medsentry against nDPI on nDPI's QUIC captures",
        "",
        "Server names (TLS SNI) in the ClientHellos of QUIC Initial packets, per capture: those "
        "nDPI's expected results list, those medsentry also reads, and the differences. "
        "Generated by `quic_sni_ndpi.py`.",
        "",
        "| capture | QUIC versions (nDPI) | nDPI names | also medsentry | medsentry only | "
        "nDPI only |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, vers, n, both, only_ours, only_theirs in rows:
        lines.append(
            f"| {name} | {vers} | {n} | {both} | {', '.join(only_ours[:4])} | "
            f"{', '.join(only_theirs[:4])} |"
        )
    ietf = tot["ietf_both"] / tot["ietf_ndpi"] if tot["ietf_ndpi"] else 0.0
    google = tot["google_both"] / tot["google_ndpi"] if tot["google_ndpi"] else 0.0
    lines += [
        "",
        f"**IETF QUIC (v1, v2, drafts, mvfst): medsentry reads {tot['ietf_both']} of the "
        f"{tot['ietf_ndpi']} server names nDPI lists ({ietf:.0%}). Google QUIC (Q024-Q050, "
        f"T050, T051): {tot['google_both']} of {tot['google_ndpi']} ({google:.0%}).** "
        "All captures: "
        f"{tot['both']} of {tot['ndpi']}. {tot['ours_only']} names only medsentry reads, "
        f"{tot['ours_only_tshark']} of them also in tshark's decryption of the same packets "
        "(quic_interop_V: a reserved version that forces version negotiation, which nDPI does "
        "not decrypt).",
    ]
    ua_rows, ua_total, ua_both = user_agent_rows(Pipeline, ScanConfig, hellos)
    lines += [
        "",
        "## User agents",
        "",
        "The browser or app, its version and platform, as the client hello carries it: Google "
        "QUIC's UAID tag, and in IETF QUIC and T050/T051 Chromium's google_user_agent transport "
        "parameter (0x3129). Every capture whose nDPI expected results list a user agent for a "
        "QUIC flow.",
        "",
        "| capture | QUIC versions (nDPI) | nDPI user agents | also medsentry | medsentry only | "
        "nDPI only |",
        "|---|---|---:|---:|---|---|",
        *ua_rows,
        "",
        f"**User agents: medsentry reads {ua_both} of the {ua_total} nDPI lists, over "
        f"{len(ua_rows)} captures.**",
    ]
    (HERE / "quic_sni_ndpi.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
