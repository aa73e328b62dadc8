"""Tamper-evident audit ledger: an RFC 9162 Merkle tree log with C2SP signed checkpoints.

Other parts of medsentry record what happens with one call:

    from medsentry.ledger import record
    record("scan.completed", {"capture_id": "9f2c...", "devices": 12}, actor="cli")

Entry kinds in use (area.event, lowercase): `scan.completed`, `intel.imported`,
`config.changed`, `alert.raised` / `alert.acknowledged` / `alert.resolved` (`alert.*`),
`finding.opened` / `finding.closed` (`finding.*`), `inventory.device_added` /
`inventory.device_changed` (`inventory.*`), `user.login` / `user.action`, and the ledger's own
`ledger.checkpoint` and `ledger.torn_tail`. Data is canonical JSON and never holds PHI.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from medsentry.ledger.log import ConsistencyProof, InclusionProof, Ledger, LedgerError
from medsentry.ledger.verify import Report, verify_ledger

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "Ledger",
    "LedgerError",
    "Report",
    "ledger",
    "record",
    "verify_ledger",
]

_open: dict[Path, Ledger] = {}
_guard = threading.Lock()


def ledger() -> Ledger:
    """The installation's ledger (opened once per process and data directory)."""
    from medsentry.ledger.log import default_directory

    directory = default_directory()
    with _guard:
        led = _open.get(directory)
        if led is None:
            led = _open[directory] = Ledger(directory)
        return led


def record(kind: str, data: dict[str, Any], actor: str = "system") -> int:
    """Append one entry durably to the installation's ledger; returns its sequence number."""
    return ledger().append(kind, data, actor)
