"""`medsentry baseline accept` takes an IP-to-MAC binding change into the flow model's state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from detect_models_streams import ATTACKER_MAC, MONITOR_IP, flow

from medsentry.cli import main
from medsentry.detect.engine import DetectionEngine
from medsentry.detect.models.flow import FlowAnomalyDetector
from medsentry.detect.store import get_alert, load_states
from medsentry.store import open_store


def _engine(store) -> DetectionEngine:
    return DetectionEngine([FlowAnomalyDetector(window_size=100)], store=store, ledger=True)


def test_accepting_a_binding_change_closes_the_alert_and_rebinds(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'd.sqlite'}"
    rng = np.random.default_rng(0)
    with open_store(url) as store:
        engine = _engine(store)
        engine.ctx.forced_learning = True
        engine.process([flow(i, rng=rng) for i in range(400)])
        engine.ctx.forced_learning = False
        (alert,) = engine.process([flow(500, rng=rng, mac=ATTACKER_MAC)])
        assert alert.rule_id == "net.flow_binding_mismatch"
        engine.commit()

    r = CliRunner()
    out = r.invoke(
        main,
        ["baseline", "accept", alert.alert_id, "--by", "alice", "--reason", "NIC replaced",
         "--db", url, "--format", "json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)
    assert row["dimension"] == "ip_mac_binding" and row["status"] == "closed"

    with open_store(url) as store:
        closed = get_alert(store, alert.alert_id)
        assert closed is not None and closed.status == "closed" and closed.status_by == "alice"
        state = load_states(store)["model.flow_hst"]
        assert state["bindings"][MONITOR_IP] == ATTACKER_MAC
        restarted = _engine(store)
        restarted.ctx.forced_learning = False
        assert restarted.process([flow(600, rng=rng, mac=ATTACKER_MAC)]) == []
        # the old card is now the stranger
        (again,) = restarted.process([flow(601, rng=rng)])
        assert again.rule_id == "net.flow_binding_mismatch"

    # accepting again is idempotent: same binding, the alert stays closed
    out = r.invoke(
        main,
        ["baseline", "accept", alert.alert_id, "--by", "bob", "--reason", "again", "--db", url],
    )
    assert out.exit_code == 0, out.output
    with open_store(url) as store:
        assert load_states(store)["model.flow_hst"]["bindings"][MONITOR_IP] == ATTACKER_MAC
        closed = get_alert(store, alert.alert_id)
        assert closed is not None and closed.status_by == "alice"
