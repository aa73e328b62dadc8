"""The bulk write path: event keys as the documented formula, SQLite's deferred index builds
(same schema after the commit, nothing lost on failure), page size of new files, migrations
0003 and 0004."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from sqlalchemy import create_engine, insert, text

from medsentry.events import DecodeWarning, ProtocolDetected, encode_json
from medsentry.store import (
    CaptureInfo,
    CaptureWriter,
    count_rows,
    iter_events,
    list_captures,
    open_store,
)
from medsentry.store.db import SQLITE_PAGE_SIZE, alembic_config
from medsentry.store.schema import events
from medsentry.store.writer import event_key, event_row

T0 = 1_700_000_000_000_000_000


def _info(cid: str = "a" * 64, source: str = "one.pcap") -> CaptureInfo:
    return CaptureInfo(capture_id=cid, source=source, format="pcap", size_bytes=1)


def _detected(i: int, flow_id: str = "f" * 32) -> ProtocolDetected:
    return ProtocolDetected(
        ts_ns=T0 + i, flow_id=flow_id, protocol="hl7", method="signature", confidence=0.9
    )


def _index_ddl(path) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        return dict(
            con.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name IN ('flows', 'events') AND sql IS NOT NULL"
            ).fetchall()
        )
    finally:
        con.close()


def _stored_keys(store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT event_key, payload FROM events"))]


def test_event_keys_follow_the_formula_with_repeats_numbered(db_url, make_flow) -> None:
    """Keys are BLAKE2b(capture, JSON, occurrence) as `event_key` computes them one by one:
    repeats within a batch and across batches are numbered in arrival order."""
    f = make_flow(1)
    a, b = _detected(1, f.flow_id), _detected(2, f.flow_id)
    batches = [[f, a, b, a], [a, b, DecodeWarning(ts_ns=T0, source="x", offset=1, message="m")]]
    cid = "c" * 64
    expected: list[str] = []
    seen: dict[bytes, int] = {}
    for batch in batches:
        for ev in batch[1:] if batch[0] is f else batch:
            payload = encode_json(ev)
            expected.append(event_key(cid, payload, seen.get(payload, 0)))
            seen[payload] = seen.get(payload, 0) + 1
    with open_store(db_url) as store:
        for _ in range(2):  # the rescan finds the same keys: nothing added
            with CaptureWriter(store, _info(cid)) as w:
                for batch in batches:
                    w.write(batch)
                w.finish()
            assert sorted(k for k, _ in _stored_keys(store)) == sorted(expected)
        assert w.totals.kinds == {"protocol": 5, "warning": 1} and w.totals.warnings == 1
        assert list(iter_events(store, kinds=["protocol"])) == [a, a, a, b, b]


def test_live_keys_follow_the_formula(db_url) -> None:
    from medsentry.store import live_capture_info

    info = live_capture_info("lo")
    evs = [_detected(1), _detected(1), _detected(2)]
    with open_store(db_url) as store:
        with CaptureWriter(store, info, commit_each_batch=True) as w:
            w.write(evs[:2])
            w.write(evs[2:])
            w.finish()
        want = {event_key(info.capture_id, encode_json(ev), n) for n, ev in enumerate(evs, start=1)}
        assert {k for k, _ in _stored_keys(store)} == want


def test_payloads_are_the_events_json(db_url) -> None:
    evs = [_detected(i) for i in range(5)] + [
        DecodeWarning(ts_ns=T0, source="a\nb\u2028", offset=0, message='line\r\n"x"\\')
    ]
    with open_store(db_url) as store:
        with CaptureWriter(store, _info()) as w:
            w.write(evs)
            w.finish()
        assert sorted(p for _, p in _stored_keys(store)) == sorted(
            encode_json(ev).decode() for ev in evs
        )


def test_bulk_load_into_empty_sqlite_keeps_the_schema(tmp_path, make_flow) -> None:
    """Indexes dropped for the bulk load of an empty table are back, identical, at the commit;
    the unique event key is enforced again afterwards."""
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    open_store(url).close()
    before = _index_ddl(path)
    assert "ix_events_event_key" in before and "ix_flows_ts_ns" in before
    batch = [make_flow(i) for i in range(20)] + [_detected(i) for i in range(30)]
    with open_store(url) as store:
        with CaptureWriter(store, _info()) as w:
            w.write(batch[:25])
            assert w._deferred["events"] and w._deferred["flows"]  # the bulk path was taken
            w.write(batch[25:])
            w.finish()
        assert _index_ddl(path) == before
        assert count_rows(store) == {"captures": 1, "flows": 20, "events": 30}
        with store.engine.begin() as conn, pytest.raises(Exception, match=r"(?i)unique"):
            conn.execute(
                text(
                    "INSERT INTO events (event_key, kind, ts_ns, capture_id, payload)"
                    " SELECT event_key, kind, ts_ns, capture_id, payload FROM events LIMIT 1"
                )
            )
        # a second capture goes into non-empty tables: indexes maintained row by row
        with CaptureWriter(store, _info("b" * 64, "two.pcap")) as w:
            w.write([make_flow(i) for i in range(20, 25)] + [_detected(100)])
            assert not any(w._deferred.values())
            w.finish()
        assert _index_ddl(path) == before
        assert count_rows(store) == {"captures": 2, "flows": 25, "events": 31}


def test_failed_bulk_load_restores_indexes_and_stores_nothing(tmp_path, make_flow) -> None:
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    open_store(url).close()
    before = _index_ddl(path)
    with open_store(url) as store:
        with pytest.raises(RuntimeError), CaptureWriter(store, _info()) as w:
            w.write([make_flow(1), _detected(1)])
            raise RuntimeError("reader died")
        assert _index_ddl(path) == before
        assert count_rows(store) == {"captures": 0, "flows": 0, "events": 0}
        with CaptureWriter(store, _info()) as w:  # and the next scan works as usual
            w.write([make_flow(1), _detected(1)])
            w.finish()
        assert count_rows(store) == {"captures": 1, "flows": 1, "events": 1}


def _at_revision(engine, revision: str) -> None:
    """The schema of an earlier revision, made by alembic (then the engine is released)."""
    with engine.connect() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    engine.dispose()


def test_new_sqlite_file_gets_the_larger_page_size(tmp_path) -> None:
    new = tmp_path / "new.db"
    open_store(f"sqlite:///{new}").close()
    old = tmp_path / "old.db"  # a medsentry file made with SQLite's default page size keeps it
    _at_revision(create_engine(f"sqlite:///{old}"), "sbom_1")  # SQLite's defaults: no pragmas
    open_store(f"sqlite:///{old}").close()
    sizes = {}
    for p in (new, old):
        con = sqlite3.connect(p)
        sizes[p.name] = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
    assert sizes == {"new.db": SQLITE_PAGE_SIZE, "old.db": 4096}


def test_upgrade_to_event_key_index_keeps_rows_and_uniqueness(db_url) -> None:
    """A database at the revision before 0003 (unique constraint) upgrades with its events, and
    event keys stay unique (rescans still add nothing); its capture reads as depth "full"."""
    engine = create_engine(db_url)
    _at_revision(engine, "sbom_1")
    cid = "d" * 64
    evs = [_detected(i) for i in range(4)]
    # rows as the code of that revision wrote them (today's writer knows later columns)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO captures (capture_id, source, format, packets, bytes, flows,"
                " warnings, scanned_at, status) VALUES (:c, 'one.pcap', 'pcap', 0, 0, 0, 0,"
                " '2026-11-20 10:00:00', 'complete')"
            ),
            {"c": cid},
        )
        conn.execute(insert(events), [event_row(e, cid) for e in evs])
    engine.dispose()
    with open_store(db_url) as store:  # upgrades to head
        assert count_rows(store)["events"] == 4
        [cap] = list_captures(store)
        assert cap["depth"] == "full"  # 0004: captures stored before it were read fully
        with CaptureWriter(store, _info(cid)) as w:  # rescan after the upgrade
            w.write(evs)
            w.finish()
        assert count_rows(store)["events"] == 4
        with store.engine.begin() as conn, pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            conn.execute(
                text(
                    "INSERT INTO events (event_key, kind, ts_ns, capture_id, payload)"
                    " SELECT event_key, kind, ts_ns, capture_id, payload FROM events LIMIT 1"
                )
            )
