"""Fixtures for the risk tests: the inputs of tests/sbom, database URLs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "sbom" / "data"


@pytest.fixture(scope="session")
def sbom_dir(shared_data: Path) -> Path:
    path = shared_data / "sbom"
    if not path.is_dir():
        pytest.skip(f"real SBOMs not found at {path}")
    return path


@pytest.fixture(scope="session")
def medical_sbom(sbom_dir: Path) -> Path:
    return sbom_dir / "medical_device_case_study" / "sboms" / "case-study" / "extended.sbom.json"


@pytest.fixture(scope="session")
def osv_records():
    from medsentry.intel.osv import parse_osv

    docs = json.loads((DATA / "osv_medical_sbom.json").read_text())
    return [parse_osv(d, "osv_medical_sbom.json") for d in docs]


@pytest.fixture
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        admin = psycopg.connect(
            host="127.0.0.1",
            port=5432,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}".splitlines()[0])
    name = f"medsentry_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
