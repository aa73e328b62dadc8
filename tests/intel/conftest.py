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


PG_HOST = "127.0.0.1"
PG_PORT = 5432


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database, dropped after the test (pattern of tests/store)."""
    import secrets

    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        admin = psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {exc}".splitlines()[0])
    name = f"medsentry_intel_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
