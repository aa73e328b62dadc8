"""WUSTL-EHMS-2020 (real data): a slice replayed through the engine as the benchmark does it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "wustl_ehms.py"


@pytest.fixture(scope="module")
def wustl(shared_data: Path):
    csv_path = shared_data / "wustl_ehms_2020" / "wustl-ehms-2020_with_attacks_categories.csv"
    if not csv_path.is_file():
        pytest.skip(f"WUSTL-EHMS-2020 not found at {csv_path}")
    spec = importlib.util.spec_from_file_location("wustl_ehms_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wustl_ehms_bench"] = mod
    spec.loader.exec_module(mod)
    return mod, csv_path


def test_wustl_records_become_monitored_flow_events(wustl):
    mod, csv_path = wustl
    rows = mod.read_rows(csv_path, limit=5)
    events = list(mod.to_events(rows))
    assert [e.flow_id for e in events] == [f"wustl-{i}" for i in range(5)]
    first = events[0]
    assert first.client == "10.0.1.172" and first.server_port == 1111
    assert first.vitals is not None and first.vitals.temperature_c == 28.9
    # the clock advances by each flow's duration (the dataset has no timestamps)
    assert events[1].ts_ns - first.ts_ns == int(float(rows[0]["Dur"]) * 1e9)


def test_wustl_slice_replays_through_the_engine_and_its_store(wustl, tmp_path: Path):
    mod, csv_path = wustl
    rows = mod.read_rows(csv_path, limit=3000)
    db = tmp_path / "detect.sqlite"
    run = mod.replay(rows, 2000, db)
    y, pred = run["y"], run["pred"]
    assert len(y) == len(pred) == 1000
    assert run["learn_withheld"] > 0  # attacks inside the learning period were not learned
    s = mod.scores(y, pred)
    assert s["binary"]["recall"] == 1.0
    assert s["false_alert_rate"] < 0.01
    assert s["per_class"]["data alteration"]["recall"] > 0.9
    assert s["per_class"]["spoofing"]["recall"] > 0.9
    fired = {rid for ids in run["fired"] for rid in ids}
    assert {"net.flow_binding_mismatch", "model.relay_mitm"} <= fired
    # what the store kept: thresholds and trees, never a vital-sign value
    import sqlite3

    con = sqlite3.connect(db)
    states = dict(con.execute("select detector_id, state from detect_state"))
    assert "model.flow_hst" in states and "model.vitals_jump" in states
    assert '"sumsq"' in states["model.vitals_jump"]
    assert "temperature" not in " ".join(r[0] for r in con.execute("select detail from alerts"))
    con.close()


def test_wustl_metrics_helpers_count_episodes_and_latency(wustl):
    mod, _ = wustl
    y = [0, 1, 1, 0, 2, 2, 2, 0]
    p = [0, 0, 1, 0, 2, 0, 2, 1]
    lat = mod.latency(y, p, [1.0] * 8)
    assert lat["episodes"] == 2 and lat["detected"] == 2
    assert lat["records_max"] == 1 and lat["flowtime_s_max"] == 1.0
    s = mod.scores(y, p)
    assert s["false_alert_rate"] == pytest.approx(1 / 3)
    assert s["confusion"][1] == [1, 1, 0]
