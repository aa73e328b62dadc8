"""Opening the database: URL resolution, SQLite settings, every user-fixable failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from medsentry.errors import StoreError
from medsentry.store import open_store, redact, resolve_url


def test_default_is_sqlite_in_medsentry_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSENTRY_HOME", str(tmp_path / "home"))
    assert resolve_url() == f"sqlite:///{tmp_path / 'home' / 'medsentry.db'}"
    with open_store() as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "home" / "medsentry.db").is_file()


def test_env_and_argument_override(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDSENTRY_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert resolve_url().endswith("env.db")
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_pragmas(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL"),
        ("nosuchdb://x/y", "unsupported database URL"),
        ("postgresql+psycopg://postgres:secret@127.0.0.1:1/x", "cannot open database"),
    ],
)
def test_bad_urls(url, message) -> None:
    with pytest.raises(StoreError, match=message) as err:
        open_store(url)
    assert "secret" not in str(err.value)  # passwords are never printed
    assert "\n" not in str(err.value)


def test_bare_postgresql_scheme_uses_psycopg(pg_url) -> None:
    with open_store(pg_url.replace("postgresql+psycopg://", "postgresql://")) as store:
        assert store.engine.dialect.driver == "psycopg"


def test_missing_and_unwritable_directories(tmp_path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if os.access(ro, os.W_OK):  # root ignores mode bits; make it a file-as-parent instead
        ro = tmp_path / "file"
        ro.write_text("")
        with pytest.raises(StoreError, match="does not exist"):
            open_store(f"sqlite:///{ro / 'x.db'}")
    else:
        with pytest.raises(StoreError, match="not writable"):
            open_store(f"sqlite:///{ro / 'x.db'}")


def test_unwritable_data_dir(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the data directory should be")
    monkeypatch.setenv("MEDSENTRY_HOME", str(blocker / "home"))
    with pytest.raises(StoreError, match="cannot create data directory"):
        open_store()


def test_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        open_store(f"sqlite:///{bogus}")


def test_redact() -> None:
    assert "pw" not in redact("postgresql://u:pw@h/db")
