"""`medsentry scan` runs the engine as the "detect" analyzer; `medsentry detect` replays files."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from detect_build import T0, S, arp_frame

from medsentry.capture.writer import write_pcap
from medsentry.cli import main


def _spoof_pcap(path: Path) -> Path:
    gw, gw_mac, evil = "10.60.0.1", "00:1b:21:0a:0b:01", "02:de:ad:be:ef:02"
    frames = [(T0, arp_frame(2, gw_mac, gw, "00:09:fb:00:00:09", "10.60.0.9"))]
    frames += [
        (T0 + (i + 1) * S, arp_frame(2, evil, gw, "00:09:fb:00:00:09", "10.60.0.9"))
        for i in range(3)
    ]
    write_pcap(path, frames)
    return path


def test_scan_runs_detection_and_a_rescan_does_not_double_count(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    pcap = _spoof_pcap(tmp_path / "spoof.pcap")
    r = CliRunner()
    out = r.invoke(main, ["scan", str(pcap), "--db", db, "--format", "json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["engines"]["detect"]["alerts"] >= 1
    rows = json.loads(r.invoke(main, ["alerts", "--db", db, "--format", "json"]).stdout)
    (spoof,) = [a for a in rows if a["rule_id"] == "arp.binding_change"]
    assert spoof["count"] == 1 and spoof["capture_id"]
    out = r.invoke(main, ["scan", str(pcap), "--db", db, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["engines"]["detect"]["alerts"] == 0
    rows = json.loads(r.invoke(main, ["alerts", "--db", db, "--format", "json"]).stdout)
    assert [a["count"] for a in rows if a["rule_id"] == "arp.binding_change"] == [1]
    table = r.invoke(main, ["alerts", "--db", db]).stdout
    assert "arp.binding_change" in table and "T0830" in table


def test_detect_command_replays_files(tmp_path: Path) -> None:
    pcap = _spoof_pcap(tmp_path / "spoof.pcap")
    r = CliRunner()
    out = r.invoke(main, ["detect", str(pcap), "--ephemeral", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert "arp.binding_change" in {a["rule_id"] for a in json.loads(out.stdout)}
    jl = tmp_path / "alerts.jsonl"
    db = f"sqlite:///{tmp_path / 's.db'}"
    out = r.invoke(main, ["detect", str(pcap), "--db", db, "--jsonl", str(jl)])
    assert out.exit_code == 0, out.output
    assert json.loads(jl.read_text().splitlines()[0])["rule_id"] == "arp.binding_change"
    for bad in (tmp_path / "missing.pcap", tmp_path / "text.pcap"):
        if bad.name == "text.pcap":
            bad.write_text("not a capture\n")
        out = r.invoke(main, ["detect", str(bad), "--ephemeral"])
        assert out.exit_code == 2 and "Traceback" not in out.output, out.output
        assert bad.name in out.output
