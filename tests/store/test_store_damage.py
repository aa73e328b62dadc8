"""A damaged database: one clear error naming what is damaged (exit 2), never a traceback, the
stored value never echoed, and nothing else in the database changed by the failed command.

The database is the demo hospital's, scanned for real (SQLite and PostgreSQL); the damage is
done the ways disks and other programs do it: a page overwritten, a JSON value cut short, bytes
that are not UTF-8 in a text column, a schema version that is no revision.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from medsentry.cli import main
from medsentry.demo.hospital import build


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    build(path, seed=0)
    return path


@pytest.fixture(scope="module")
def other_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """More of the same hospital, another day: a rescan with new traffic to fold in."""
    path = tmp_path_factory.mktemp("demo") / "other.pcap"
    build(path, seed=1)
    return path


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def scanned(demo_pcap: Path, url: str) -> str:
    code, _, err = run("scan", str(demo_pcap), "--db", url, "-q")
    assert code == 0, err
    return url


def execute(url: str, sql: str, **params) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text(sql), params)
    engine.dispose()


def one_damage_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsentry: error: the database is damaged: ")
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


def pages_of(db: Path, name: str) -> tuple[list[int], int]:
    """The pages of table or index `name` in the file itself (WAL checkpointed), and the page
    size: where to overwrite bytes."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = [p for (p,) in con.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,))]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return pages, size


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        out = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("devices", "flows", "events", "findings", "device_changes")
        }
    engine.dispose()
    return out


def test_a_record_cut_short_is_named(demo_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    execute(
        url,
        "UPDATE devices SET record = substr(record, 1, 40) WHERE device_id = :d",
        d="mac:00:00:0c:07:ac:0a",
    )
    before = counts(url)
    for args in (["devices"], ["risk"], ["inventory", "reconcile"], ["device", "10.10.0.1"]):
        code, _, err = run(*args, "--db", url)
        assert code == 2, err
        line = one_damage_line(err)
        assert "devices.record of mac:00:00:0c:07:ac:0a does not decode" in line
    # a rescan folds new evidence into stored devices: it stops before writing anything
    code, _, err = run("scan", str(demo_pcap), "--db", url, "-q")
    assert code == 2 and "devices.record" in one_damage_line(err)
    assert counts(url) == before


def test_finding_evidence_damaged_in_the_bulk_path(demo_pcap: Path, db_url: str, tmp_path):
    """Reports decode every finding's evidence as one array: a value that splits in two (or
    is cut) is found row by row and named, not zipped against the wrong finding."""
    url = scanned(demo_pcap, db_url)
    execute(
        url,
        "UPDATE findings SET evidence = '[],[]' WHERE finding_id ="
        " (SELECT min(finding_id) FROM findings)",
    )
    code, _, err = run("report", "--db", url, "--out", str(tmp_path), "--formats", "json")
    assert code == 2 and "findings.evidence of" in one_damage_line(err)


def test_text_that_is_not_utf8_is_not_echoed(demo_pcap: Path, tmp_path: Path):
    url = scanned(demo_pcap, f"sqlite:///{tmp_path / 'm.db'}")
    execute(
        url,
        "UPDATE devices SET hostname = CAST(x'5345435245542dff' AS TEXT),"
        " record = CAST(x'7b2253454352455422ff' AS TEXT)",
    )
    code, _, err = run("devices", "--db", url)
    assert code == 2
    line = one_damage_line(err)
    assert "not UTF-8" in line and "SECRET" not in line


def test_overwritten_pages_are_reported_by_sqlite(demo_pcap: Path, tmp_path: Path):
    db = tmp_path / "m.db"
    url = scanned(demo_pcap, f"sqlite:///{db}")
    pages, size = pages_of(db, "devices")
    assert len(pages) > 1
    with db.open("r+b") as f:  # the devices table's pages after its root: zeroed
        for page in pages[1:]:
            f.seek((page - 1) * size + 8)
            f.write(bytes(size - 8))
    code, _, err = run("devices", "--db", url)
    assert code == 2
    line = one_damage_line(err)
    assert "SQLite says" in line or "does not decode" in line


def test_unknown_schema_revision(demo_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    for version in ("", "0"):  # "" made alembic assert; a prefix of a real revision matched it
        execute(url, "UPDATE alembic_version SET version_num = :v", v=version)
        code, _, err = run("devices", "--db", url)
        assert code == 2 and "unknown to this medsentry" in err and "internal" not in err


def test_a_state_naming_another_device_stops_the_rescan(demo_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    execute(
        url,
        "UPDATE devices SET state = replace(state, :a, :b) WHERE device_id = :d",
        a='"device_id":"mac:00:00:0c:07:ac:0a"',
        b='"device_id":"mac:00:00:0c:07:ac:0b"',
        d="mac:00:00:0c:07:ac:0a",
    )
    before = counts(url)
    code, _, err = run("scan", str(demo_pcap), "--db", url, "-q")
    assert code == 2
    assert "devices.state of mac:00:00:0c:07:ac:0a names another device" in one_damage_line(err)
    assert counts(url) == before


def test_detector_state_damaged(demo_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    execute(url, "UPDATE detect_state SET state = '{\"cut'")
    code, _, err = run("scan", str(demo_pcap), "--db", url, "-q")
    assert code == 2 and "detect_state.state of" in one_damage_line(err)


@pytest.mark.parametrize(
    ("sql", "command", "named"),
    [
        (  # text where an integer belongs: SQLite keeps it (type affinity), readers fail
            "UPDATE flows SET last_ns = '{}' WHERE rowid = (SELECT min(rowid) FROM flows)",
            ["flows"],
            "flows.last_ns of row 1 holds a value that is not an integer",
        ),
        (
            "UPDATE alerts SET updated_at = 'null'",
            ["alerts"],
            "alerts.updated_at of row 1 holds a value that is not a date and time",
        ),
        (
            "UPDATE findings SET last_seen_ns = 'x'",
            ["findings", "list"],
            "findings.last_seen_ns of row 1 holds a value that is not an integer",
        ),
        (
            "UPDATE flows SET server = '10.' WHERE rowid = (SELECT min(rowid) FROM flows)",
            ["report", "--formats", "json", "--out", "OUT"],
            "flows.server of row 1 holds a value that is not an IP address",
        ),
        (  # the row's id no longer the device its state describes: a rescan cannot fold it
            "UPDATE devices SET device_id = 'mac:00:00:0c:07:ac:99'"
            " WHERE device_id = 'mac:00:00:0c:07:ac:0a'",
            ["scan", "PCAP", "-q"],
            "holds a value that is not the id its stored state names",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_found_after_the_failure(
    demo_pcap: Path, tmp_path: Path, sql: str, command: list[str], named: str
):
    """The failure path looks at the database it used: a wrong kind of value is reported as
    damage (the row named), where it was an internal error naming a ValueError."""
    url = scanned(demo_pcap, f"sqlite:///{tmp_path / 'm.db'}")
    execute(url, sql)
    before = counts(url)
    args = [a.replace("OUT", str(tmp_path)).replace("PCAP", str(demo_pcap)) for a in command]
    code, _, err = run(*args, "--db", url)
    assert code == 2, err
    assert named in one_damage_line(err)
    assert counts(url) == before


def test_a_detector_state_of_another_shape(demo_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    execute(url, "UPDATE detect_state SET state = '[]' WHERE detector_id <> '_engine'")
    code, _, err = run("scan", str(demo_pcap), "--db", url, "-q")
    assert code == 2 and "is not the state it keeps" in one_damage_line(err)


def test_a_healthy_database_shows_no_damage(demo_pcap: Path, tmp_path: Path):
    """No false alarm: on the demo hospital's database every check passes (a real bug must stay
    an internal error, not be blamed on the data)."""
    from medsentry.store.damage import _diagnose

    url = scanned(demo_pcap, f"sqlite:///{tmp_path / 'm.db'}")
    assert _diagnose(url) is None


def test_a_value_outside_its_closed_set(demo_pcap: Path, other_pcap: Path, tmp_path: Path):
    url = scanned(demo_pcap, f"sqlite:///{tmp_path / 'm.db'}")
    execute(url, "UPDATE alerts SET severity = '{'")  # KeyError in severity ranking before
    code, _, err = run("scan", str(other_pcap), "--db", url, "-q")
    assert code == 2
    assert "alerts.severity of row 1 holds a value that is not one of info, low" in (
        one_damage_line(err)
    )


def test_a_constraint_failure_checks_that_tables_indexes(demo_pcap: Path, tmp_path: Path):
    """Writes delete before they insert, so a UNIQUE failure means an index that no longer
    agrees with its table; the failure path runs SQLite's integrity check on the table named."""
    from medsentry.store.damage import _constraint_table, _integrity

    db = tmp_path / "m.db"
    url = scanned(demo_pcap, f"sqlite:///{db}")
    con = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError) as failed:
        con.execute("INSERT INTO detect_state SELECT * FROM detect_state LIMIT 1")
    assert _constraint_table(failed.value) == "detect_state"
    assert _integrity(url, "detect_state") is None  # healthy: no false alarm
    (index,) = con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'detect_state'"
    ).fetchone()
    con.close()
    (page, *_), size = pages_of(db, index)
    with db.open("r+b") as f:  # a key in the index changed: the table's row no longer found
        f.seek((page - 1) * size)
        data = bytearray(f.read(size))
        at = data.find(b"model.")
        assert at > 0
        data[at] = ord("n")
        f.seek((page - 1) * size)
        f.write(data)
    found = _integrity(url, "detect_state")
    assert found is not None and "detect_state and its indexes disagree" in str(found)


def test_an_alert_detail_that_is_not_an_object(demo_pcap: Path, other_pcap: Path, db_url: str):
    url = scanned(demo_pcap, db_url)
    execute(url, "UPDATE alerts SET detail = 'null'")  # None.update() in aggregation before
    code, _, err = run("scan", str(other_pcap), "--db", url, "-q")
    assert code == 2 and "alerts.detail of" in one_damage_line(err)
