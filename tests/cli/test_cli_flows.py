"""`medsentry flows`: table and JSON agree, filters select the right rows, bad values exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from medsentry.cli import main
from medsentry.events import FlowRecord
from medsentry.store import FLOW_TABLE_COLUMNS, CaptureInfo, CaptureWriter, open_store

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
CAP_A = "a1" * 32
CAP_B = "b2" * 32


def _populate(url: str, make_flow) -> list[FlowRecord]:
    a = [make_flow(i) for i in range(6)]
    a[1] = make_flow(1, app_protocol="hl7", server_port=2575, bytes_c2s=99_999)
    a[2] = make_flow(2, transport="udp", app_protocol=None, server="10.0.9.9", server_port=53)
    a[3] = make_flow(3, ip_version=6, client="2001:db8::1", server="2001:db8::2")
    a[4] = make_flow(4, app_protocol="hl7-mllp")
    b = [make_flow(i) for i in range(100, 103)]
    with open_store(url) as store:
        for cid, batch in ((CAP_A, a), (CAP_B, b)):
            with CaptureWriter(store, CaptureInfo(cid, f"{cid[:2]}.pcap", "pcap", 1)) as w:
                w.write(batch)
                w.finish(packets=10)
    return a + b


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    return result.exit_code, result.stdout, result.stderr


def _json(url: str, *args: str) -> list[dict]:
    code, out, err = _run("flows", "--db", url, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def _table_rows(out: str) -> list[list[str]]:
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == len(FLOW_TABLE_COLUMNS) and cells[0] != "start":
            rows.append(cells)
    return rows


def test_table_and_json_show_the_same_flows(db_url, make_flow) -> None:
    _populate(db_url, make_flow)
    code, out, err = _run("flows", "--db", db_url)
    assert code == 0, err
    table = _table_rows(out)
    records = _json(db_url)
    assert len(table) == len(records) == 9
    for row, rec in zip(table, records, strict=True):
        assert row == ["" if rec[c] is None else str(rec[c]) for c in FLOW_TABLE_COLUMNS]
    first = records[0]
    assert first["start"] == "2023-11-14T22:13:20.000000Z"
    assert first["duration_s"] == 0.25
    assert first["packets"] == first["packets_c2s"] + first["packets_s2c"]
    assert first["capture_id"] == CAP_A and first["capture"] == CAP_A[:12]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--protocol", "HL7"], {1, 4}),  # a protocol name matches its variants
        (["--protocol", "hl7-mllp"], {4}),
        (["--protocol", "hl7-m"], set()),
        (["--protocol", "unknown"], {2}),
        (["--transport", "udp"], {2}),
        (["--port", "2575"], {1}),
        (["--port", "40003"], {3}),
        (["--host", "10.0.9.9"], {2}),
        (["--host", "2001:DB8:0::2"], {3}),  # normalized before matching
        (["--capture", "B2B2"], {100, 101, 102}),
        (["--since", "2023-11-14T22:13:24.1Z", "--until", "2023-11-14T22:13:25"], {4, 5}),
        (["--since", "2023-11-14T22:13:24.3+00:00", "--until", "2023-11-14T23:13:25+01:00"], {5}),
        (["--protocol", "dicom", "--capture", "a1", "--limit", "2"], {0, 3}),
    ],
)
def test_filters(db_url, make_flow, args, expected) -> None:
    flows = _populate(db_url, make_flow)
    ids = {f.flow_id: i for i, f in zip([*range(6), 100, 101, 102], flows, strict=True)}
    got = {ids[r["flow_id"]] for r in _json(db_url, *args)}
    assert got == expected


def test_sort_and_limit(db_url, make_flow) -> None:
    _populate(db_url, make_flow)
    recs = _json(db_url, "--sort", "-bytes", "--limit", "3")
    assert [r["bytes"] for r in recs] == sorted((r["bytes"] for r in recs), reverse=True)
    assert recs[0]["protocol"] == "hl7" and len(recs) == 3
    recs = _json(db_url, "--sort", "server_port")
    assert [r["server_port"] for r in recs] == sorted(r["server_port"] for r in recs)


def test_empty_database_lists_nothing(tmp_path) -> None:
    assert _json(f"sqlite:///{tmp_path / 'e.db'}") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "not-an-ip"], "--host 'not-an-ip' is not an IPv4 or IPv6 address"),
        (["--port", "70000"], "--port 70000 is outside 0-65535"),
        (["--transport", "sctpx"], "--transport 'sctpx' is not one of"),
        (["--capture", "xyz"], "--capture 'xyz' is not a capture id prefix"),
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO 8601 time"),
        (["--since", "2024-02-01", "--until", "2024-01-01"], "is after --until"),
        (["--sort", "colour"], "--sort 'colour' is not one of"),
        (["--limit", "-1"], "Invalid value for '--limit': -1 rows: give at least 1"),
        (["--db", "postgresql+psycopg://postgres@127.0.0.1:1/x"], "cannot open database"),
        (["--db", "sqlite:////nonexistent-dir/x.db"], "/nonexistent-dir does not exist"),
        (["--db", "mongodb://x"], "unsupported database URL"),
    ],
)
def test_bad_values_are_one_line_exit_2(args, message) -> None:
    code, out, err = _run("flows", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("medsentry: error: ")
    assert message in err
    assert "Traceback" not in out + err


def test_medsentry_db_env(tmp_path, make_flow, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    _populate(url, make_flow)
    monkeypatch.setenv("MEDSENTRY_DB", url)
    result = CliRunner().invoke(main, ["flows", "--format", "json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 9


def test_internal_error_is_one_line_unless_debug(tmp_path, monkeypatch) -> None:
    """An unexpected exception (a bug, simulated here) shows no traceback by default."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(url).close()
    import medsentry.cli.flows as flows_mod

    def boom(*_a, **_k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(flows_mod, "list_flows", boom)
    code, out, err = _run("flows", "--db", url)
    assert code == 1
    assert err.startswith("medsentry: internal error: ZeroDivisionError: division by zero")
    assert "MEDSENTRY_DEBUG=1" in err and "Traceback" not in out + err
    result = CliRunner().invoke(main, ["flows", "--db", url], env={"MEDSENTRY_DEBUG": "1"})
    assert isinstance(result.exception, ZeroDivisionError)
