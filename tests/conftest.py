"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_HOST = "127.0.0.1"
PG_PORT = 5432
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


# -- databases: every store-backed test runs on SQLite and on a real, throwaway PostgreSQL -----


def _pg_admin():
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user="postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {exc}".splitlines()[0])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    admin = _pg_admin()
    name = f"medsentry_test_{secrets.token_hex(6)}"
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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


# -- stored flow records ------------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def flow(i: int, **over):
    """A plausible FlowRecord number i (distinct flow_id, times, ports)."""
    from medsentry.events import FlowRecord, StreamStats

    fields = dict(
        ts_ns=T0 + i * 1_000_000_000,
        flow_id=f"{i:016x}",
        last_ns=T0 + i * 1_000_000_000 + 250_000_000,
        transport="tcp",
        ip_version=4,
        client=f"10.0.0.{i % 200 + 1}",
        server="10.0.1.5",
        client_port=40000 + i,
        server_port=104,
        client_mac="02:00:00:00:00:01",
        server_mac="02:00:00:00:00:02",
        packets_c2s=10 + i,
        packets_s2c=8,
        bytes_c2s=1000 + i,
        bytes_s2c=600,
        payload_c2s=500,
        payload_s2c=200,
        tcp_flags_c2s=0x1B,
        tcp_flags_s2c=0x1B,
        iat_mean_us=12.5,
        iat_std_us=3.25,
        iat_min_us=1.0,
        iat_max_us=40.0,
        end_reason="fin",
        app_protocol="dicom",
        app_method="signature",
        app_confidence=1.0,
        stream_c2s=StreamStats(bytes_in_order=500, retransmitted_segments=1),
        stream_s2c=StreamStats(bytes_in_order=200, gaps=1, gap_bytes=12),
    )
    fields.update(over)
    return FlowRecord(**fields)


@pytest.fixture
def make_flow():
    return flow


# -- the real SBOMs and the OSV records written for the medical case-study SBOM ---------------

SBOM_TEST_DATA = Path(__file__).resolve().parent / "sbom" / "data"


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

    docs = json.loads((SBOM_TEST_DATA / "osv_medical_sbom.json").read_text())
    return [parse_osv(d, "osv_medical_sbom.json") for d in docs]


@pytest.fixture(scope="session")
def scanned_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo hospital capture (seed 0) and a SQLite file of its inventory scan: read it, or
    copy it before writing."""
    from click.testing import CliRunner

    from medsentry.cli import main
    from medsentry.demo.hospital import build

    d = tmp_path_factory.mktemp("scanned_demo")
    pcap = d / "demo.pcap"
    build(pcap, seed=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDSENTRY_HOME", str(d / "home"))
    try:
        url = f"sqlite:///{d / 'demo.db'}"
        r = CliRunner().invoke(main, ["scan", str(pcap), "--db", url, "--engines", "inventory"])
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    return pcap, d / "demo.db"
