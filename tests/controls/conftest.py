"""Controls tests: the helpers of the DICOM/HL7 loopback tests are importable here; a throwaway
PostgreSQL database as in tests/store."""

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for sub in ("protocols/dicom", "protocols/hl7", "controls"):
    p = str(_TESTS / sub)
    if p not in sys.path:
        sys.path.insert(0, p)


@pytest.fixture
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        admin = psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True,
            connect_timeout=3,
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {exc}".splitlines()[0])
    name = f"medsentry_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
