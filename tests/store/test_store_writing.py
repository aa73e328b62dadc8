"""Read-merge-write transactions (Store.writing) from two processes at once: the second waits
for the first, so the same new rows are inserted once, never twice (a UNIQUE failure)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from medsentry.controls.tables import finding_history, findings
from medsentry.store import open_store

# Each round stores the same 40 new findings as the other process; both start together.
_WORKER = """
import sys, time
from medsentry.controls.model import Finding, finding_id
from medsentry.controls.store import upsert_findings
from medsentry.store import open_store

url, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
with open_store(url) as store:
    while time.time() < start:
        time.sleep(0.001)
    for r in range(rounds):
        found = [
            Finding(finding_id=finding_id("telnet-service", f"mac:{r:03d}{i:03d}", "tcp/23"),
                    type="telnet-service", severity="high", device_id=f"mac:{r:03d}{i:03d}",
                    subject="tcp/23", title="telnet", detail="telnet service on tcp/23",
                    first_seen_ns=1, last_seen_ns=2, evidence_count=1)
            for i in range(40)
        ]
        upsert_findings(store, found, ledger=False)
"""


def test_two_processes_storing_the_same_new_findings_store_each_once(db_url: str) -> None:
    open_store(db_url).close()  # the schema first, so both workers go straight to the race
    rounds = 30
    start = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, str(start), str(rounds)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with open_store(db_url) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(findings)).scalar() == rounds * 40
        opened = conn.execute(
            select(func.count())
            .select_from(finding_history)
            .where(finding_history.c.action == "opened")
        ).scalar()
        assert opened == rounds * 40  # opened once each: the second process found them stored
