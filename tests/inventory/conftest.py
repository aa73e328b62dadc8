"""Inventory fixtures (the database URLs, pg_url/db_url/sqlite_url, are in tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_DICOM = str(Path(__file__).resolve().parents[1] / "protocols" / "dicom")
if _DICOM not in sys.path:
    sys.path.insert(0, _DICOM)  # worklist.py: the dcmtk worklist SCP's files


@pytest.fixture
def inventory_of(tmp_path: Path):
    """Scan a capture and run the inventory engine into a fresh SQLite store: id -> Device."""
    from invnet import scan

    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    url = f"sqlite:///{tmp_path / 'inv.db'}"

    def run(pcap: Path, capture_id: str = "test"):
        eng = InventoryEngine()
        eng.feed(scan(pcap))
        with open_store(url) as store:
            eng.finish(store, capture_id)
            return {d.device_id: d for d in load_devices(store)}

    run.url = url
    return run
