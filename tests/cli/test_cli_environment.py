"""When the machine, not medsentry, is at fault: a full disk, a read-only or locked database,
somebody else's SQLite file, a terminal that cannot show a character, two scans of one
capture at once, values out of any range. Each is one line and exit code 2 (or simply works),
never "internal error (a bug)", and nothing stored is lost or changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from medsentry.cli import main
from medsentry.store.environment import environment_of


def cli(*args: str, code: int = 0):
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})
    assert r.exit_code == code, r.output
    return r


def medsentry(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "medsentry", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def _one_line_exit_2(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "internal error" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.fixture
def demo(scanned_demo) -> tuple[Path, Path]:
    return scanned_demo


def test_somebody_elses_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.db"
    con = sqlite3.connect(theirs)
    with con:
        con.execute("CREATE TABLE flows (a TEXT)")
        con.execute("INSERT INTO flows VALUES ('mine')")
    con.close()
    before = hashlib.sha256(theirs.read_bytes()).hexdigest()
    for args in (["flows"], ["devices"], ["inventory", "reconcile"]):
        r = medsentry(*args, "--db", f"sqlite:///{theirs}")
        _one_line_exit_2(r, "is not a medsentry database", "tables (flows)", "nothing was changed")
    assert hashlib.sha256(theirs.read_bytes()).hexdigest() == before


def test_a_read_only_database_is_one_line(demo, tmp_path: Path) -> None:
    ro = tmp_path / "ro.db"
    shutil.copy(demo[1], ro)
    ro.chmod(0o444)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes through file permissions: drop that capability
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                  "--inh-caps", "-all", "--")  # fmt: skip
    url = f"sqlite:///{ro}"
    r = medsentry("inventory", "reidentify", "--db", url, prefix=prefix)
    _one_line_exit_2(r, "the database is read-only (SQLITE_READONLY)")
    listed = medsentry("devices", "--db", url, "--format", "json", prefix=prefix)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 25  # reading still works


def test_the_machine_failures_sqlite_and_the_os_report(tmp_path: Path) -> None:
    """environment_of on real failures: SQLite's own result codes, through SQLAlchemy too."""
    db = tmp_path / "full.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x BLOB)")
    con.execute("PRAGMA max_page_count = 8")  # a database that fills up (SQLITE_FULL)
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(100):
            con.execute("INSERT INTO t VALUES (randomblob(4000))")
    con.rollback()
    assert "SQLITE_FULL" in str(environment_of(full.value))
    # SQLITE_BUSY through SQLAlchemy: another connection holds the write lock
    con.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{db}", connect_args={"timeout": 0})
    with pytest.raises(OperationalError) as busy, engine.connect() as c:
        c.execute(text("INSERT INTO t VALUES (x'00')"))
    assert "SQLITE_BUSY" in str(environment_of(busy.value))
    con.rollback()
    con.close()
    engine.dispose()
    with pytest.raises(OSError) as nospace, open("/dev/full", "w") as f:
        f.write("x")
        f.flush()
    assert "No space left on device" in str(environment_of(nospace.value))
    assert environment_of(ValueError("a bug")) is None


def test_an_export_to_a_full_disk_or_a_missing_directory_is_one_line(demo) -> None:
    url = f"sqlite:///{demo[1]}"
    _one_line_exit_2(
        medsentry("inventory", "export", "--db", url, "-o", "/dev/full"),
        "/dev/full: cannot write: No space left on device",
    )
    _one_line_exit_2(
        medsentry("inventory", "export", "--db", url, "-o", "/nonexistent/x.csv"),
        "/nonexistent/x.csv: cannot write",
    )


@pytest.mark.parametrize(
    "env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "POSIX", "LANG": "", "PYTHONUTF8": "0"}]
)
def test_a_terminal_that_cannot_show_a_character_gets_an_escape(demo, env) -> None:
    url = f"sqlite:///{demo[1]}"
    r = medsentry("devices", "--db", url, "--vendor", "drager", env=env)
    assert r.returncode == 0, r.stderr
    assert "Dr\\xe4ger" in r.stdout
    r = medsentry("device", "--db", url, "10.20.0.103", env=env)
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr


def test_two_scans_of_one_capture_at_once_both_succeed(demo, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'same.db'}"
    env = {**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "medsentry", "scan", str(demo[0]), "--db", url, "-q"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    once = f"sqlite:///{tmp_path / 'once.db'}"
    cli("scan", str(demo[0]), "--db", once, "-q")

    def counts(u: str) -> list[int]:
        con = sqlite3.connect(u.removeprefix("sqlite:///"))
        try:
            return [
                con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("captures", "flows", "devices", "findings", "alerts")
            ]
        finally:
            con.close()

    assert counts(url) == counts(once)


@pytest.mark.parametrize(
    "args, words",
    [
        (["flows", "--until", "9999-12-31T23:59:59"], None),
        (["alerts", "--since", "0001-01-01"], None),
        (["flows", "--limit", "99999999999999999999"], "give at least 1 (and fewer than 2^63)"),
        (["devices", "--limit", "-1"], "-1 rows: give at least 1"),
        (["risk", "--limit", "0"], "0 rows: give at least 1"),
        (["alerts", "--limit", "1.5"], "'1.5' is not a whole number of rows"),
        (["logs", "listen", "--port", "99999"], "is not in the range"),
        (["monitor", "-i", "lo", "--duration", "-5"], "must be a positive number of seconds"),
        (["logs", "listen", "--duration", "-5"], "is not in the range"),
        (["intel", "sync", "notaurl"], "notaurl: not a URL"),
    ],
)
def test_values_out_of_any_range(demo, args: list[str], words: str | None) -> None:
    r = CliRunner().invoke(main, [*args, "--db", f"sqlite:///{demo[1]}"])
    if words is None:
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 2 and words in r.output, r.output
        assert "internal error" not in r.output


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://postgres@[::1:5432/x", "postgresql+psycopg://u@127.0.0.1:abc/x"]
)
def test_a_malformed_database_url_is_one_line(url: str) -> None:
    _one_line_exit_2(medsentry("flows", "--db", url), "invalid database URL")


def test_ctrl_c_after_the_capture_is_stored_says_so(demo, tmp_path: Path, monkeypatch) -> None:
    """A real SIGINT delivered once the capture is committed, as the inventory starts: the
    message says the capture is stored and the analysis is not, and a rescan completes it."""
    import signal

    from medsentry.inventory.engine import InventoryEngine

    real = InventoryEngine.finish

    def interrupted(self, store, capture_id):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, arriving now
        return real(self, store, capture_id)

    url = f"sqlite:///{tmp_path / 'cut.db'}"
    with monkeypatch.context() as m:
        m.setattr(InventoryEngine, "finish", interrupted)
        r = CliRunner().invoke(main, ["scan", str(demo[0]), "--db", url, "-q"])
    assert r.exit_code == 130
    assert f"interrupted: {demo[0]} is stored (0 captures before it are)" in r.output
    assert "scan it again to complete it" in r.output
    assert json.loads(cli("flows", "--db", url, "--format", "json").output)
    assert json.loads(cli("devices", "--db", url, "--format", "json").output) == []
    cli("scan", str(demo[0]), "--db", url, "-q")
    assert len(json.loads(cli("devices", "--db", url, "--format", "json").output)) == 25


def test_a_group_without_its_subcommand_shows_its_help() -> None:
    r = medsentry("inventory")
    assert "medsentry: error" not in r.stdout + r.stderr
    assert "Usage: medsentry inventory" in r.stdout + r.stderr and "import" in r.stdout + r.stderr


def test_a_reader_that_stops_early_ends_the_command_as_sigpipe_would(demo) -> None:
    """`medsentry risk | head -1` (tables, printed by rich): no message, exit 141 (128 +
    SIGPIPE) as cat or grep, not rich's exit 1, which `set -o pipefail` reads as a failure."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [
        sys.executable,
        "-m",
        "medsentry",
        "risk",
        "--limit",
        "1000",
        "--db",
        f"sqlite:///{demo[1]}",
    ]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()  # the reader goes away, most of 166 kB (every breakdown) unread
    _, err = p.communicate(timeout=120)
    assert p.returncode == 141 and not err.strip(), err


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--db", "sqlite://"), {}),
        (("--db", "sqlite:///:memory:"), {}),
        ((), {"MEDSENTRY_DB": "sqlite:///file::memory:?cache=shared"}),
    ],
)
def test_an_in_memory_database_is_refused_before_any_work(demo, args, env) -> None:
    """A scan into SQLite in memory would be dropped at exit: one line, exit 2, nothing read."""
    r = medsentry("scan", str(demo[0]), *args, "-q", env=env)
    _one_line_exit_2(r, "in-memory database", "give a file")
