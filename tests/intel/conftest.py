"""Fixtures for the intel tests: the real CISA ICSMA CSAF advisories and KEV catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsentry.intel.csaf import read_csaf
from medsentry.intel.model import Advisory

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def csaf_dir(shared_data: Path) -> Path:
    path = shared_data / "cisa_csaf_icsma" / "csaf_files" / "OT" / "white"
    if not path.is_dir():
        pytest.skip(f"CISA CSAF advisories not found at {path}")
    return path


@pytest.fixture(scope="session")
def csaf_files(csaf_dir: Path) -> list[Path]:
    return sorted(csaf_dir.glob("20*/*.json"))


@pytest.fixture(scope="session")
def advisories(csaf_files: list[Path]) -> list[Advisory]:
    return [read_csaf(p) for p in csaf_files]


@pytest.fixture(scope="session")
def kev_file(shared_data: Path) -> Path:
    path = shared_data / "kev" / "known_exploited_vulnerabilities.json"
    if not path.is_file():
        pytest.skip(f"KEV catalog not found at {path}")
    return path
