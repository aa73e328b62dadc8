"""Writing captures: round trip, idempotent rescans, atomic captures, live per-batch commits."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy import text

from medsentry.errors import InputError, StoreError
from medsentry.events import ArpObserved, DecodeWarning, FlowRecord, ProtocolDetected
from medsentry.store import (
    CaptureInfo,
    CaptureWriter,
    count_rows,
    file_capture_info,
    iter_events,
    iter_flow_records,
    list_captures,
    live_capture_info,
    open_store,
)
from medsentry.store.schema import STREAM_FIELDS, flows
from medsentry.store.writer import flow_row, insert_portable

T0 = 1_700_000_000_000_000_000


def _events(make_flow, n: int = 50):
    out = []
    for i in range(n):
        f = make_flow(i)
        out.append(f)
        out.append(
            ProtocolDetected(
                ts_ns=f.ts_ns,
                flow_id=f.flow_id,
                protocol="dicom",
                method="signature",
                confidence=1.0,
            )
        )
    out.append(
        ArpObserved(
            ts_ns=T0,
            op=2,
            sender_mac="02:00:00:00:00:02",
            sender_ip="10.0.1.5",
            target_mac="02:00:00:00:00:01",
            target_ip="10.0.0.1",
            count=3,
        )
    )
    return out


def _info(cid: str = "a" * 64, source: str = "one.pcap") -> CaptureInfo:
    return CaptureInfo(capture_id=cid, source=source, format="pcap", size_bytes=1234)


def _scan(store, info, batch, **finish):
    with CaptureWriter(store, info) as w:
        half = len(batch) // 2
        w.write(batch[:half])
        w.write(batch[half:])
        w.finish(packets=900, bytes=123456, first_ns=T0, last_ns=T0 + 10**10, link_types=[1])
    return w


def test_every_flow_field_has_a_column(make_flow) -> None:
    row = flow_row(make_flow(1), "c" * 64)
    assert set(row) == {c.name for c in flows.columns}
    expected = {f for f in FlowRecord.__struct_fields__ if not f.startswith("stream_")}
    expected |= {f"stream_{d}_{n}" for d in ("c2s", "s2c") for n in STREAM_FIELDS}
    assert expected == set(row)


def test_round_trip(db_url, make_flow) -> None:
    batch = _events(make_flow)
    with open_store(db_url) as store:
        w = _scan(store, _info(), batch)
        assert w.totals.flows == 50 and w.totals.events == 51
        got = sorted(iter_flow_records(store), key=lambda f: f.flow_id)
        want = sorted(
            (
                msgspec.structs.replace(e, capture_id="a" * 64)
                for e in batch
                if isinstance(e, FlowRecord)
            ),
            key=lambda f: f.flow_id,
        )
        assert got == want
        evs = list(iter_events(store))
        assert evs == sorted(
            (e for e in batch if not isinstance(e, FlowRecord)), key=lambda e: e.ts_ns
        )  # stable: ARP first at T0 ties
        [cap] = list_captures(store)
        assert cap["status"] == "complete"
        assert (cap["packets"], cap["bytes"], cap["flows"], cap["link_types"]) == (
            900,
            123456,
            50,
            "1",
        )


def test_rescan_duplicates_nothing(db_url, make_flow) -> None:
    batch = _events(make_flow)
    with open_store(db_url) as store:
        _scan(store, _info(), batch)
        first = count_rows(store)
        _scan(store, _info(), batch)
        assert count_rows(store) == first == {"captures": 1, "flows": 50, "events": 51}


def test_identical_events_of_one_capture_are_all_kept(db_url, make_flow) -> None:
    """Two DIMSE messages can encode identically (same flow, same timestamp): both are events;
    a rescan of the capture must still add nothing."""
    f = make_flow(1)
    same = ProtocolDetected(
        ts_ns=f.ts_ns, flow_id=f.flow_id, protocol="dicom", method="port", confidence=0.5
    )
    with open_store(db_url) as store:
        for _ in range(2):
            with CaptureWriter(store, _info()) as w:
                w.write([f, same, same])
                w.write([same])
                w.finish()
            assert count_rows(store) == {"captures": 1, "flows": 1, "events": 3}
        assert list(iter_events(store)) == [same, same, same]


def test_same_event_in_two_captures_is_kept_per_capture(db_url, make_flow) -> None:
    batch = _events(make_flow, 3)
    with open_store(db_url) as store:
        _scan(store, _info("a" * 64), batch)
        _scan(store, _info("b" * 64, "two.pcap"), batch)
        counts = count_rows(store)
        # flows are unique by flow_id (kept by the first capture); events per capture
        assert counts == {"captures": 2, "flows": 3, "events": 8}
        assert len(list(iter_events(store, capture="bbbb"))) == 4


def test_failure_midway_keeps_earlier_captures_and_nothing_of_the_failed_one(
    db_url, make_flow
) -> None:
    with open_store(db_url) as store:
        _scan(store, _info("a" * 64), _events(make_flow, 10))
        before = count_rows(store)
        with (
            pytest.raises(RuntimeError, match="reader died"),
            CaptureWriter(store, _info("b" * 64, "two.pcap")) as w,
        ):
            w.write([make_flow(i) for i in range(100, 140)])
            w.write([DecodeWarning(ts_ns=T0, source="two.pcap", offset=4096, message="bad")])
            raise RuntimeError("reader died")
        assert count_rows(store) == before
        assert [c["capture_id"] for c in list_captures(store)] == ["a" * 64]


def test_failed_rescan_leaves_previous_scan_intact(db_url, make_flow) -> None:
    with open_store(db_url) as store:
        _scan(store, _info(), _events(make_flow, 5))
        before = list_captures(store)
        with pytest.raises(KeyboardInterrupt), CaptureWriter(store, _info()) as w:
            w.write([make_flow(i) for i in range(5, 9)])
            raise KeyboardInterrupt
        assert list_captures(store) == before
        assert count_rows(store)["flows"] == 5


def test_live_session_commits_each_batch(db_url, make_flow) -> None:
    info = live_capture_info("lo")
    assert info.format == "live" and len(info.capture_id) == 64
    with open_store(db_url) as store:
        with pytest.raises(RuntimeError), CaptureWriter(store, info, commit_each_batch=True) as w:
            w.write([make_flow(1), make_flow(2)])
            [cap] = list_captures(open_store(db_url))  # another connection sees the batch
            assert cap["status"] == "running" and cap["flows"] == 2
            w.write([make_flow(3)])
            raise RuntimeError("interface went away")
        [cap] = list_captures(store)
        assert cap["status"] == "interrupted" and cap["flows"] == 3
        assert count_rows(store)["flows"] == 3

        info2 = live_capture_info("lo")
        with CaptureWriter(store, info2, commit_each_batch=True) as w:
            w.write([make_flow(4)])
            w.finish(packets=7)
        assert list_captures(store, info2.capture_id[:10])[0]["status"] == "stopped"


def test_foreign_key_enforced(db_url, make_flow) -> None:
    """A flow row cannot point at a capture that does not exist (FKs are on in SQLite too)."""
    with (
        open_store(db_url) as store,
        pytest.raises(Exception, match=r"(?i)foreign"),
        store.engine.begin() as conn,
    ):
        conn.execute(flows.insert(), [flow_row(make_flow(1), "f" * 64)])


def test_write_error_is_a_store_error(db_url, make_flow) -> None:
    with open_store(db_url) as store:
        with store.engine.begin() as conn:  # sabotage: the events table is gone
            conn.execute(text("DROP TABLE events"))
        ev = ProtocolDetected(ts_ns=1, flow_id="x", protocol="p", method="port", confidence=0.5)
        with (
            CaptureWriter(store, _info()) as w,
            pytest.raises(StoreError, match=r"cannot write capture one\.pcap to "),
        ):
            w.write([ev])
        assert list_captures(store) == []


def test_portable_insert_path(tmp_path, make_flow) -> None:
    """The fallback used for dialects without ON CONFLICT skips stored and repeated keys."""
    with open_store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        _scan(store, _info(), [make_flow(1), make_flow(2)])
        with store.engine.begin() as conn:
            rows = [flow_row(make_flow(i), "a" * 64) for i in (1, 2, 3, 3, 4)]
            insert_portable(conn, flows, rows, "flow_id")
        assert count_rows(store)["flows"] == 4


def test_file_capture_info(tmp_path) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
    info = file_capture_info(p)
    assert info.format == "pcap" and info.size_bytes == 24
    assert info.capture_id == __import__("hashlib").sha256(p.read_bytes()).hexdigest()
    p.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 20)
    assert file_capture_info(p).format == "pcapng"
    with pytest.raises(InputError, match="no such file"):
        file_capture_info(tmp_path / "missing.pcap")
    with pytest.raises(InputError, match="directory"):
        file_capture_info(tmp_path)


def test_sqlite_writers_wait_for_each_other(tmp_path, make_flow) -> None:
    """A scan and a monitor writing one SQLite file: the second waits (busy timeout), then
    commits; readers are never blocked (WAL)."""
    import threading

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = open_store(url)
    done = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with open_store(url) as other, CaptureWriter(other, _info("b" * 64, "b.pcap")) as w:
                w.write([make_flow(2)])
                w.finish()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    with CaptureWriter(store, _info("a" * 64)) as w:
        w.write([make_flow(1)])
        t = threading.Thread(target=second_writer)
        t.start()
        assert not done.wait(1.0)  # blocked behind our open write transaction
        assert count_rows(open_store(url))["flows"] == 0  # a reader sees the last commit
        w.finish()
    t.join(30)
    assert done.is_set() and not errors
    assert count_rows(store) == {"captures": 2, "flows": 2, "events": 0}
