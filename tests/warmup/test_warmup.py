"""scripts/install.sh's warm-up (medsentry.warmup) leaves nothing for a user's first commands
to compile: scans of real captures (pcap and pcapng), a capture long enough for the flow models
to learn and then score, BLE HCI logs, a live capture.

Both processes use a numba cache of their own (NUMBA_CACHE_DIR): the warm-up starts from nothing
and must compile; the user's commands afterwards must find every kernel in that cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medsentry.warmup import _btsnoop, _pklg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
pytestmark = pytest.mark.xdist_group("warmup")  # two processes that compile: keep them apart


def _real_captures(shared_data: Path) -> list[Path]:
    pcaps = shared_data / "ndpi_pcaps" / "tests" / "cfgs" / "default" / "pcap"
    names = ["hl7.pcap", "dns_long_domainname.pcap", "anydesk.pcapng", "bfcp.pcapng"]
    got = [pcaps / n for n in names if (pcaps / n).exists()]
    assert len(got) >= 3, f"expected nDPI's captures in {pcaps}"
    return got


def test_after_the_warm_up_a_users_first_commands_compile_nothing(
    tmp_path: Path, shared_data: Path
) -> None:
    home = tmp_path / "user-home"
    home.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), MEDSENTRY_HOME=str(home))
    warm = subprocess.run(
        [sys.executable, "-m", "medsentry.warmup", str(tmp_path / "warm")],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    summary = warm.stdout.strip().splitlines()[-1]
    compiled_by_warmup = int(summary.split()[1])
    assert compiled_by_warmup > 0, warm.stdout  # from an empty cache: the counting works
    # the data files it parsed are the user's too (medsentry.yamlcache), its own home is not
    assert len(list((home / "cache" / "yaml").glob("*.marshal"))) >= 20
    assert not (home / "medsentry.db").exists()

    # learning for the first 30 s of traffic (of the 62 s capture below), then scoring
    (home / "detect.yaml").write_text("learning_period_s: 30\n")
    user_env = env
    flows = tmp_path / "hospital.pcap"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), "--packets", "40000",
         "--out", str(flows), "-q"],
        check=True, env=user_env, timeout=300,
    )  # fmt: skip
    ble = (tmp_path / "hci.btsnoop", tmp_path / "hci.pklg")
    ble[0].write_bytes(_btsnoop())
    ble[1].write_bytes(_pklg())
    db = ["--db", f"sqlite:///{tmp_path / 'user.db'}", "-q"]
    # a database of its own: the learning period starts at the first event it ever stored
    flows_db = f"sqlite:///{tmp_path / 'flows.db'}"
    commands = [
        ["scan", str(flows), "--db", flows_db, "-q"],
        ["demo", "--out", str(tmp_path / "demo"), *db],
        ["scan", *map(str, _real_captures(shared_data)), *db],
        ["scan", str(ble[0]), str(ble[1]), *db],
    ]
    if os.geteuid() == 0:
        commands.append(["monitor", "--interface", "lo", "--duration", "2", *db])
    spec = tmp_path / "commands.json"
    spec.write_text(json.dumps(commands))
    probe = subprocess.run(
        [sys.executable, str(HERE / "warmup_probe.py"), str(spec)],
        env=user_env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == {}
    # the flow models did learn, then score: some flows scored above their threshold
    alerts = subprocess.run(
        [sys.executable, "-m", "medsentry", "alerts", "--db", flows_db, "--format", "json"],
        env=user_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert any(a["rule_id"] == "model.flow_record_hst" for a in json.loads(alerts))
