"""The engine: aggregation, persistence across a restart (SQLite and PostgreSQL), lifecycle and
ledger, baseline acceptance, device context from the inventory's Device records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from detect_build import T0, S, arp_event, flow

from medsentry.cli import main
from medsentry.detect.base import MAX_EVIDENCE
from medsentry.detect.baseline import BaselineDetector
from medsentry.detect.engine import DetectionEngine, context_from_devices
from medsentry.detect.registry import default_detectors
from medsentry.detect.rules import build_rules, load_rule_specs
from medsentry.detect.store import AlertFilter, list_alerts, load_states
from medsentry.errors import ConfigError
from medsentry.inventory.model import Attribute, Device
from medsentry.ledger import ledger
from medsentry.store import open_store


def _ledger_kinds() -> list[tuple[str, dict]]:
    return [(e["kind"], e["data"]) for e in ledger().entries()]


def test_repeats_aggregate_into_one_alert_with_bounded_evidence() -> None:
    engine = DetectionEngine(build_rules())
    events = [arp_event(0, "10.0.0.1", "02:00:00:00:00:01")]
    # an attacker and the real gateway keep re-announcing the same address (ARP poisoning)
    for i in range(1, 61):
        mac = "02:66:66:66:66:66" if i % 2 else "02:00:00:00:00:01"
        events.append(arp_event(i, "10.0.0.1", mac, gratuitous=True))
    alerts = engine.process(events)
    spoof = [a for a in alerts if a.rule_id == "arp.binding_change"]
    assert len(spoof) == 1
    a = spoof[0]
    assert a.count == 60 and a.severity == "critical"
    assert a.first_seen_ns == T0 + S and a.last_seen_ns == T0 + 60 * S
    assert len(a.evidence) == MAX_EVIDENCE
    assert a.evidence[0].ts_ns == T0 + S and a.evidence[-1].ts_ns == T0 + 60 * S
    assert a.technique_id == "T0830" and a.device_id == "ip:10.0.0.1"
    assert {a.rule_id for a in alerts} == {"arp.binding_change", "arp.gratuitous_flood"}
    raised = [d for k, d in _ledger_kinds() if k == "alert.raised"]
    assert [d["alert_id"] for d in raised] == [a.alert_id for a in alerts]


def test_baseline_state_survives_a_restart(db_url: str) -> None:
    learn = [flow(i, server="10.0.1.9") for i in range(20)]  # learning: 10.0.0.5 -> PACS only
    with open_store(db_url) as store:
        e1 = DetectionEngine([BaselineDetector()], store, learning_ns=60 * S)
        assert e1.process(learn) == []
        e1.commit()
    with open_store(db_url) as store:  # a new process: nothing relearned, baseline loaded
        e2 = DetectionEngine([BaselineDetector()], store, learning_ns=60 * S)
        assert e2.ctx.start_ns == T0
        assert e2.process([flow(100, server="10.0.1.9")]) == []  # known peer, after learning
        new = e2.process([flow(101, server="10.0.9.9"), flow(102, server="10.0.9.8")])
        peers = [a for a in new if a.rule_id == "baseline.peers" and a.device_id == "ip:10.0.0.5"]
        assert len(peers) == 1 and peers[0].count == 2
        e2.commit()
    with open_store(db_url) as store:  # the open alert continues across a restart
        e3 = DetectionEngine([BaselineDetector()], store, learning_ns=60 * S)
        again = e3.process([flow(103, server="10.0.9.7")])
        same = [a for a in again if a.rule_id == "baseline.peers" and a.device_id == "ip:10.0.0.5"]
        assert same[0].alert_id == peers[0].alert_id and same[0].count == 3
        e3.commit()
        stored = list_alerts(store, AlertFilter(rule="baseline.peers", device="ip:10.0.0.5"))
        assert [a.count for a in stored] == [3]


def test_lifecycle_ack_close_with_who_why_and_ledger(db_url: str) -> None:
    with open_store(db_url) as store:
        engine = DetectionEngine(build_rules(), store)
        engine.process([arp_event(0, "10.0.0.1", "02:00:00:00:00:01")])
        engine.process([arp_event(1, "10.0.0.1", "02:66:66:66:66:66")])
        engine.commit()
    r = CliRunner()
    out = r.invoke(main, ["alerts", "--db", db_url, "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == 1 and rows[0]["status"] == "new" and rows[0]["technique_id"] == "T0830"
    aid = rows[0]["alert_id"]
    out = r.invoke(main, ["alerts", "ack", aid, "--by", "j.doe", "--reason", "checking switch"])
    assert out.exit_code == 2  # not in the default database: one line, exit 2
    args = ["--db", db_url, "--by", "j.doe", "--reason", "checking the switch port"]
    out = r.invoke(main, ["alerts", "ack", aid[:8], *args])
    assert out.exit_code == 0, out.output
    out = r.invoke(
        main,
        [
            "alerts",
            "close",
            aid,
            "--db",
            db_url,
            "--by",
            "a.roe",
            "--reason",
            "new gateway NIC, change CHG-1182",
        ],
    )
    assert out.exit_code == 0, out.output
    out = r.invoke(main, ["alerts", "close", aid, "--db", db_url, "--by", "x", "--reason", "y"])
    assert out.exit_code == 2 and "already closed" in out.output
    out = r.invoke(main, ["alerts", "show", aid, "--db", db_url, "--format", "json"])
    rec = json.loads(out.output)[0]
    assert rec["status"] == "closed" and rec["status_by"] == "a.roe"
    assert [(h["action"], h["actor"]) for h in rec["history"]] == [
        ("raised", "detect"),
        ("acknowledged", "j.doe"),
        ("closed", "a.roe"),
    ]
    kinds = [(k, d.get("by")) for k, d in _ledger_kinds() if d.get("alert_id") == aid]
    assert kinds == [
        ("alert.raised", None),
        ("alert.acknowledged", "j.doe"),
        ("alert.closed", "a.roe"),
    ]
    # filters
    for flt, n in (
        (["--status", "closed"], 1),
        (["--status", "open"], 0),
        (["--severity", "critical"], 0),
        (["--rule", "arp."], 1),
        (["--device", "10.0.0.1"], 1),
        (["--since", "2099-01-01T00:00:00"], 0),
    ):
        out = r.invoke(main, ["alerts", "--db", db_url, "--format", "json", *flt])
        assert out.exit_code == 0, out.output
        assert len(json.loads(out.output)) == n, flt
    # closed: a repeat raises a new alert instead of reopening the closed one
    with open_store(db_url) as store:
        engine = DetectionEngine(build_rules(), store)
        again = engine.process([arp_event(2, "10.0.0.1", "02:00:00:00:00:01")])
        assert len(again) == 1 and again[0].alert_id != aid and again[0].status == "new"


def test_baseline_accept_takes_the_change_in(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        e = DetectionEngine([BaselineDetector()], store, learning_ns=60 * S)
        e.process([flow(i) for i in range(10)])
        a = e.process([flow(100, server="10.0.7.7")])
        e.commit()
    aid = next(x.alert_id for x in a if x.device_id == "ip:10.0.0.5")
    running = open_store(sqlite_url)  # a monitor that loaded its state before the acceptance
    live = DetectionEngine([BaselineDetector()], running, learning_ns=60 * S)
    out = CliRunner().invoke(
        main, ["baseline", "accept", aid, "--db", sqlite_url, "--by", "biomed", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["values"] == 1
    with open_store(sqlite_url) as store:
        e = DetectionEngine([BaselineDetector()], store, learning_ns=60 * S)
        assert [
            x for x in e.process([flow(101, server="10.0.7.7")]) if x.device_id == "ip:10.0.0.5"
        ] == []  # accepted: no longer a departure
        (closed,) = list_alerts(store, AlertFilter(status="closed"))
        assert closed.alert_id == aid and closed.status_by == "biomed"
    assert ("baseline.accepted", "biomed") in [(k, d.get("by")) for k, d in _ledger_kinds()]
    live.commit()  # the running engine folds the acceptance in instead of overwriting it
    running.close()
    with open_store(sqlite_url) as store:
        b = BaselineDetector()
        b.load_state(load_states(store)["baseline"])
        prof = b.profiles["ip:10.0.0.5"]
        assert "ip:10.0.7.7" in prof.known["peers"] and not prof.pending.get("peers")
    out = CliRunner().invoke(
        main, ["baseline", "accept", "--device", "ip:10.9.9.9", "--db", sqlite_url]
    )
    assert out.exit_code == 2 and "nothing pending" in out.output


def test_inventory_devices_give_context() -> None:
    pump = Device(
        device_id="mac:00:09:fb:11:22:33",
        mac="00:09:fb:11:22:33",
        ips=["10.20.0.7"],
        category=Attribute(value="infusion-pump", confidence=0.9),
        medical=True,
        criticality="life-sustaining",
    )
    ctx = context_from_devices([pump])
    engine = DetectionEngine(default_detectors(models=False), context=ctx)
    out = engine.process(
        [flow(0, client="10.20.0.7", server="93.184.216.34", server_port=443, app_protocol="tls")]
    )
    (a,) = [x for x in out if x.rule_id == "net.medical_internet"]
    assert a.device_id == "mac:00:09:fb:11:22:33" and a.technique_id == "T0883"
    assert a.detail["category"] == "infusion-pump" and a.detail["direction"] == "outbound"
    inbound = engine.process(
        [flow(1, client="93.184.216.34", server="10.20.0.7", server_port=23, app_protocol="telnet")]
    )
    assert [x.severity for x in inbound if x.rule_id == "net.medical_internet"] == ["critical"]


def test_malformed_rule_file_is_a_config_error(tmp_path: Path) -> None:
    from medsentry.detect.rules import DATA

    good = DATA.read_text()
    bad = tmp_path / "rules.yaml"
    bad.write_text(good.replace("technique: [T0846,", "technique: [X0846,", 1))
    with pytest.raises(ConfigError, match=r"rule 'net.port_scan': technique id 'X0846'"):
        load_rule_specs(bad)
    bad.write_text(good.replace("{window_s: 60, threshold: 15}", "{window_s: 60, thresh: 15}", 1))
    with pytest.raises(ConfigError, match=r"unknown params \['thresh'\]"):
        load_rule_specs(bad)
    bad.write_text(good + "  - id: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rule_specs(bad)
    bad.write_bytes(good.encode().replace(b"net.port_scan", b"net.port_sc\xe4n", 1))  # Latin-1
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rule_specs(bad)
    specs = load_rule_specs()
    assert all(s.rationale and s.sources and s.technique[0].startswith("T0") for s in specs)


def test_category_norm_and_volume_departures() -> None:
    """Two infusion pumps learn their category's norm; after learning, one speaks SSH (outside
    the norm) and another sends a hundred times its hourly volume."""
    pumps = [
        Device(
            device_id=f"mac:00:09:fb:00:00:0{i}",
            mac=f"00:09:fb:00:00:0{i}",
            ips=[f"10.30.0.{i}"],
            category=Attribute(value="infusion-pump", confidence=0.9),
            medical=True,
        )
        for i in (1, 2)
    ]
    hour = 3600 * S
    ctx = context_from_devices(pumps)
    engine = DetectionEngine([BaselineDetector()], context=ctx, learning_ns=5 * hour)
    learn = []
    for h in range(5):  # five hours of ordinary HTTPS to the pump server, ~50 kB an hour
        for i in (1, 2):
            learn.append(
                flow(
                    h * 3600 + i,
                    client=f"10.30.0.{i}",
                    server="10.30.9.9",
                    server_port=443,
                    app_protocol="tls",
                    bytes_c2s=50_000 + h * 100,
                )
            )
    learn.sort(key=lambda e: e.ts_ns)
    assert engine.process(learn) == []
    after = [
        flow(
            5 * 3600 + 10,
            client="10.30.0.1",
            server="10.30.9.9",
            server_port=22,
            app_protocol="ssh",
        ),
        flow(
            5 * 3600 + 20,
            client="10.30.0.2",
            server="10.30.9.9",
            server_port=443,
            app_protocol="tls",
            bytes_c2s=20_000_000,
        ),
    ]
    got = {(a.rule_id, a.device_id) for a in engine.process(after)}
    assert ("baseline.category", "mac:00:09:fb:00:00:01") in got
    assert ("baseline.volume", "mac:00:09:fb:00:00:02") in got
    assert ("baseline.category", "mac:00:09:fb:00:00:02") not in got  # TLS/443: the norm


def test_scanners_seen_during_learning_are_the_networks_own() -> None:
    """The NMS sweeps every device during learning: alerted then, remembered, silent after;
    a new source sweeping after learning alerts."""
    engine = DetectionEngine(build_rules(), learning_ns=3600 * S)

    def sweep(src: str, t0: int) -> list:
        return [
            flow(
                t0 + i,
                client=src,
                server=f"10.40.0.{i + 1}",
                server_port=0,
                transport="icmp",
                packets_c2s=1,
                packets_s2c=0,
                payload_c2s=0,
                payload_s2c=0,
                tcp_flags_c2s=0,
                tcp_flags_s2c=0,
                app_protocol=None,
            )
            for i in range(20)
        ]

    during = engine.process(sweep("10.0.0.250", 0))
    assert [a.rule_id for a in during] == ["net.host_sweep"]
    assert engine.process(sweep("10.0.0.250", 7200)) == []  # after learning: known NMS
    after = engine.process(sweep("10.66.6.6", 7300))
    assert [(a.rule_id, a.device_id) for a in after] == [("net.host_sweep", "ip:10.66.6.6")]


def test_close_while_an_engine_runs_is_not_undone(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    live = DetectionEngine(build_rules(), store)
    live.process([arp_event(0, "10.0.0.1", "02:00:00:00:00:01")])
    (a,) = live.process([arp_event(1, "10.0.0.1", "02:66:66:66:66:66")])
    live.commit()
    out = CliRunner().invoke(
        main,
        [
            "alerts",
            "close",
            a.alert_id,
            "--db",
            sqlite_url,
            "--by",
            "soc",
            "--reason",
            "known maintenance",
        ],
    )
    assert out.exit_code == 0, out.output
    live.process([arp_event(2, "10.0.0.1", "02:00:00:00:00:01")])  # a repeat, in memory
    live.commit()
    with open_store(sqlite_url) as s2:
        (closed,) = list_alerts(s2, AlertFilter(status="closed"))
        assert closed.alert_id == a.alert_id and closed.status_by == "soc"
    (new,) = live.process([arp_event(3, "10.0.0.1", "02:66:66:66:66:66")])
    assert new.alert_id != a.alert_id and new.status == "new"
    store.close()
