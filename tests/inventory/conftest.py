"""Inventory fixtures: every store test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# The database fixtures of tests/store, shared rather than copied.
_spec = importlib.util.spec_from_file_location(
    "_store_conftest", Path(__file__).resolve().parents[1] / "store" / "conftest.py"
)
_store_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store_conftest)

pg_url = _store_conftest.pg_url
db_url = _store_conftest.db_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


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
