"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
NDPI_PCAPS = SHARED_DATA / "ndpi_pcaps" / "tests" / "cfgs" / "default" / "pcap"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own MEDSENTRY_HOME: nothing is written to the real user's data dir."""
    monkeypatch.setenv("MEDSENTRY_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("MEDSENTRY_DB", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the checkout (real third-party data); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ndpi_pcaps(shared_data: Path) -> Path:
    if not NDPI_PCAPS.is_dir():
        pytest.skip(f"nDPI captures not found at {NDPI_PCAPS}")
    return NDPI_PCAPS
