"""`medsentry scan` on real captures: summary, storage, idempotence, damage and failures."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from netcap import tshark

from medsentry.cli import main
from medsentry.store import count_rows, iter_events, list_captures, open_store


def pcap_records(data: bytes) -> list[int]:
    """Byte offsets of the record headers of a classic little-endian pcap (for damage tests)."""
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + incl
    return offsets


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400", **(env or {})})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _scan_json(url: str, *files: Path) -> dict:
    code, out, err = _run("scan", "--db", url, "--format", "json", *map(str, files))
    assert code == 0, err
    return json.loads(out)


def _flows(url: str, *args: str) -> list[dict]:
    code, out, err = _run("flows", "--db", url, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def _assert_one_error_line(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith("medsentry: error: "), err
    for frag in fragments:
        assert frag in lines[-1], err
    assert "Traceback" not in out + err


def test_scan_real_loopback_capture(db_url, lo_capture) -> None:
    packets = len(pcap_records(lo_capture.path.read_bytes()))
    s = _scan_json(db_url, lo_capture.path)
    assert s["packets"] == packets
    assert s["flows"] == lo_capture.tcp_flows + lo_capture.udp_flows
    assert s["hosts"] == 1  # everything is 127.0.0.1
    assert sum(s["protocols"].values()) == s["flows"]
    assert s["warnings"] == []
    assert s["elapsed_s"] > 0 and s["packets_per_s"] > 0
    [cap] = s["captures"]
    assert cap["status"] == "complete" and cap["format"] == "pcap" and cap["packets"] == packets
    assert cap["capture_id"] == hashlib.sha256(lo_capture.path.read_bytes()).hexdigest()

    flows = _flows(db_url)
    assert len(flows) == s["flows"]
    tcp = _flows(db_url, "--transport", "tcp")
    assert len(tcp) == 3 and {f["server_port"] for f in tcp} == {lo_capture.tcp_port}
    # every frame of each association, as tshark counts them (a C-ECHO association is about
    # 20 frames on lo; delayed ACKs move that by one or two)
    frames = Counter(
        sport if int(dport) == lo_capture.tcp_port else dport
        for sport, dport in tshark(
            lo_capture.path, f"tcp.port == {lo_capture.tcp_port}", "tcp.srcport", "tcp.dstport"
        )
    )
    assert {f["client_port"]: f["packets"] for f in tcp} == {
        int(port): n for port, n in frames.items()
    }
    assert all(f["packets"] >= 10 for f in tcp)  # handshake, six PDUs, FIN: at least
    [udp] = _flows(db_url, "--transport", "udp", "--port", str(lo_capture.udp_port))
    assert udp["packets"] == 8 and udp["server_port"] == lo_capture.udp_port
    assert _flows(db_url, "--capture", cap["capture_id"][:8]) == flows
    assert _flows(db_url, "--host", "127.0.0.2") == []

    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["packets"] == packets and row["flows"] == 4 and row["link_types"] == "1"
        assert row["first_ns"] <= min(f["ts_ns"] for f in flows)


def test_scan_reads_a_file_for_its_hash_once(db_url, lo_capture, tmp_path, monkeypatch) -> None:
    """The capture id is the hash taken while reading, also for a file that yields no event."""
    import medsentry.cli.scan as scan_mod

    def second_pass(path):
        raise AssertionError(f"{path} hashed in a second pass")

    monkeypatch.setattr(scan_mod, "file_sha256", second_pass)
    empty = tmp_path / "header-only.pcap"
    empty.write_bytes(lo_capture.path.read_bytes()[:24])  # a pcap with no packet: no event
    s = _scan_json(db_url, lo_capture.path, empty)
    ids = [c["capture_id"] for c in s["captures"]]
    assert ids == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (lo_capture.path, empty)]


def test_rescan_duplicates_nothing(db_url, lo_capture, tmp_path) -> None:
    _scan_json(db_url, lo_capture.path)
    with open_store(db_url) as store:
        before = count_rows(store)
    copy = tmp_path / "same-bytes-other-name.pcap"
    shutil.copy(lo_capture.path, copy)
    _scan_json(db_url, lo_capture.path, copy)
    with open_store(db_url) as store:
        assert count_rows(store) == before
        assert before["captures"] == 1 and before["flows"] == 4


def test_pcapng_copy_is_a_new_capture_with_the_same_flows(db_url, lo_capture, tmp_path) -> None:
    """editcap's pcapng of the same packets: another file (capture), the same flows (ids)."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap (wireshark-common) is not installed")
    ng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(lo_capture.path), str(ng)], check=True)
    first = _scan_json(db_url, lo_capture.path)
    second = _scan_json(db_url, ng)
    assert second["captures"][0]["format"] == "pcapng"
    assert second["packets"] == first["packets"] and second["flows"] == first["flows"]
    with open_store(db_url) as store:
        assert count_rows(store)["captures"] == 2
        assert count_rows(store)["flows"] == first["flows"]  # unique by flow_id
        # pcapng names its link types in interface blocks, read with the packets
        assert [c["link_types"] for c in list_captures(store)] == ["1", "1"]


def test_table_summary(lo_capture, tmp_path) -> None:
    code, out, err = _run("scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", str(lo_capture.path))
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal, no warnings
    for word in ("packets", "flows", "hosts", "warnings", "elapsed", "packets/s", "protocols"):
        assert word in out


def test_scan_ndpi_captures(db_url, ndpi_pcaps) -> None:
    files = [ndpi_pcaps / n for n in ("hl7.pcap", "mqtt.pcap", "modbus.pcap")]
    s = _scan_json(db_url, *files)
    assert [c["source"] for c in s["captures"]] == [str(f) for f in files]
    assert all(c["flows"] > 0 for c in s["captures"])
    with open_store(db_url) as store:
        assert count_rows(store)["captures"] == 3
        assert count_rows(store)["flows"] == s["flows"]
        # every other event kind lands in `events` and reads back as its typed record
        hl7_capture = s["captures"][0]["capture_id"]
        kinds = {type(e).__struct_config__.tag for e in iter_events(store, capture=hl7_capture)}
        assert "protocol" in kinds and any(k.startswith("hl7") for k in kinds)


def _event_kinds(store, capture_id: str) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for e in iter_events(store, capture=capture_id):
        tag = type(e).__struct_config__.tag
        kinds[tag] = kinds.get(tag, 0) + 1
    return kinds


def test_flows_only_then_full_then_flows_only_again(db_url, ndpi_pcaps) -> None:
    """--flows-only stores the same flows and protocol labels as a full scan, no dissector
    event, and says so on the capture row; a full scan of the same file then adds the
    dissectors' events, and a later --flows-only pass neither lowers the depth nor drops them."""
    hl7 = ndpi_pcaps / "hl7.pcap"
    code, out, err = _run("scan", "--db", db_url, "--format", "json", "--flows-only", str(hl7))
    assert code == 0, err
    fast = json.loads(out)
    [cap] = fast["captures"]
    assert cap["depth"] == "flows"
    cid = cap["capture_id"]
    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["depth"] == "flows"
        assert _event_kinds(store, cid) == {"protocol": fast["flows"]}
        stored_flows = count_rows(store)["flows"]

    full = _scan_json(db_url, hl7)
    assert full["captures"][0]["depth"] == "full"
    assert (full["flows"], full["protocols"]) == (fast["flows"], fast["protocols"])
    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["depth"] == "full"
        kinds = _event_kinds(store, cid)
        assert kinds["protocol"] == fast["flows"]  # the labels were not stored twice
        assert kinds.get("hl7_message", 0) > 0
        assert count_rows(store)["flows"] == stored_flows
        rows = count_rows(store)

    code, out, err = _run("scan", "--db", db_url, "--format", "json", "--flows-only", str(hl7))
    assert code == 0, err
    assert json.loads(out)["captures"][0]["depth"] == "flows"  # what this scan did
    with open_store(db_url) as store:
        [row] = list_captures(store)
        assert row["depth"] == "full"  # what the store holds
        assert count_rows(store) == rows
        assert _event_kinds(store, cid) == kinds


def test_flows_only_table_and_report_say_so(ndpi_pcaps, tmp_path) -> None:
    """The summary table has the depth; the report's scope line warns that a capture read for
    flows only gave no payload findings, until a full scan reads it."""
    from medsentry.report.collect import collect
    from medsentry.report.render import render_html

    url = f"sqlite:///{tmp_path / 's.db'}"
    hl7 = str(ndpi_pcaps / "hl7.pcap")
    code, out, err = _run("scan", "--db", url, "--flows-only", "--engines", "none", hl7)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "capture" in line and "status" in line)
    assert "depth" in header
    with open_store(url) as store:
        r = collect(store, checkpoint=False)
    assert (r["scope"]["captures"], r["scope"]["captures_flows_only"]) == (1, 1)
    assert "read for flows only" in render_html(r, full=True)
    assert _run("scan", "--db", url, "--engines", "none", hl7)[0] == 0
    with open_store(url) as store:
        r = collect(store, checkpoint=False)
    assert r["scope"]["captures_flows_only"] == 0
    assert "read for flows only" not in render_html(r, full=True)


def _damaged_copy(src: Path, dst: Path, record: int) -> int:
    """Copy `src` with the header of record `record` claiming 4 GB; return its offset."""
    data = bytearray(src.read_bytes())
    off = pcap_records(bytes(data))[record]
    data[off + 8 : off + 12] = (0xFFFFFFF0).to_bytes(4, "little")
    dst.write_bytes(bytes(data))
    return off


def test_damage_in_the_middle_keeps_packets_before_it(db_url, lo_capture, tmp_path) -> None:
    bad = tmp_path / "damaged.pcap"
    off = _damaged_copy(lo_capture.path, bad, 30)
    code, out, err = _run("scan", "--db", db_url, "--format", "json", str(bad))
    assert code == 0, err
    assert f"medsentry: warning: {bad} at byte {off}" in err
    assert "Traceback" not in err
    s = json.loads(out)
    assert s["packets"] == 30 and len(s["warnings"]) == 1
    assert s["captures"][0]["status"] == "damaged"
    with open_store(db_url) as store:
        assert list_captures(store)[0]["status"] == "damaged"
        assert count_rows(store)["flows"] == s["flows"] > 0


def test_truncated_last_record_is_a_warning(lo_capture, tmp_path) -> None:
    data = lo_capture.path.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 5])
    code, out, err = _run(
        "scan", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--format", "json", str(cut)
    )
    assert code == 0 and "medsentry: warning: " in err and str(cut) in err
    assert json.loads(out)["packets"] == len(pcap_records(data)) - 1


def test_bad_capture_midway_keeps_earlier_captures(db_url, lo_capture, tmp_path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("these are meeting notes, not a capture\n" * 10)
    later = tmp_path / "later.pcap"
    shutil.copy(lo_capture.path, later)
    code, out, err = _run("scan", "--db", db_url, str(lo_capture.path), str(bad), str(later))
    _assert_one_error_line(code, out, err, str(bad))
    with open_store(db_url) as store:
        caps = list_captures(store)
        assert [c["source"] for c in caps] == [str(lo_capture.path)]
        assert caps[0]["status"] == "complete"
        assert count_rows(store)["flows"] == 4


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated"),  # 6 of the 24 header bytes
        (b"\x1f\x8b\x08\x00" + b"\0" * 40, "gzip"),
    ],
)
def test_unreadable_files(tmp_path, content, fragment) -> None:
    f = tmp_path / "x.pcap"
    f.write_bytes(content)
    code, out, err = _run("scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", str(f))
    _assert_one_error_line(code, out, err, str(f))
    assert fragment in err.lower()
    with open_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        assert count_rows(store)["captures"] == 0


def test_missing_file_fails_before_any_work(lo_capture, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    code, out, err = _run("scan", "--db", db, str(lo_capture.path), str(tmp_path / "nope.pcap"))
    _assert_one_error_line(code, out, err, "nope.pcap: no such file")
    assert not (tmp_path / "m.db").exists()
    code, out, err = _run("scan", "--db", db, str(tmp_path))
    _assert_one_error_line(code, out, err, "is a directory")


def test_bad_database_and_data_dir(lo_capture, tmp_path) -> None:
    code, out, err = _run(
        "scan", "--db", "postgresql://postgres@127.0.0.1:1/x", str(lo_capture.path)
    )
    _assert_one_error_line(code, out, err, "cannot open database")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = _run(
        "scan", str(lo_capture.path), env={"MEDSENTRY_HOME": str(blocker / "home")}
    )
    _assert_one_error_line(code, out, err, "cannot create data directory")
    code, out, err = _run(
        "scan",
        "--db",
        f"sqlite:///{tmp_path / 'ok.db'}",
        str(lo_capture.path),
        env={"MEDSENTRY_HOME": str(blocker / "home")},
    )
    _assert_one_error_line(code, out, err, "cannot read or create the PHI key")


def test_no_arguments_is_a_usage_error() -> None:
    code, _out, err = _run("scan")
    assert code == 2 and "Traceback" not in err


def test_real_process_exit_codes(lo_capture, tmp_path) -> None:
    """The installed entry point, as a user runs it: exit 0 then 2, never a traceback."""
    env = {**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")}
    exe = [sys.executable, "-m", "medsentry"] if not shutil.which("medsentry") else ["medsentry"]
    ok = subprocess.run(
        [*exe, "scan", "-q", str(lo_capture.path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "home" / "medsentry.db").is_file()
    bad = subprocess.run(
        [*exe, "scan", str(tmp_path / "missing.pcap")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("medsentry: error: ") and "Traceback" not in bad.stderr


def test_python_dash_m_medsentry_is_the_command(tmp_path) -> None:
    """`python -m medsentry` (no console script on PATH, as the install's kernel warm-up runs
    it): the same command, its name, exit codes and one-line errors."""
    env = {**os.environ, "MEDSENTRY_HOME": str(tmp_path / "home")}
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, timeout=120)
    version = run([sys.executable, "-m", "medsentry", "--version"])
    assert version.returncode == 0 and version.stdout.startswith("medsentry, version ")
    helped = run([sys.executable, "-m", "medsentry", "scan", "--help"])
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: medsentry scan ")
    bad = run([sys.executable, "-m", "medsentry", "scan", str(tmp_path / "missing.pcap")])
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("medsentry: error: ") and "Traceback" not in bad.stderr


def test_only_the_captures_own_damage_is_a_capture_warning() -> None:
    """Reader warnings (source = the file) mark damage; dissector warnings are only counted."""
    from medsentry.cli.scan import ScanTally
    from medsentry.events import DecodeWarning

    tally = ScanTally()
    tally.see(
        [
            DecodeWarning(ts_ns=1, source="a.pcap", offset=24, message="corrupt record header"),
            DecodeWarning(ts_ns=2, source="tls dissector, flow ab", offset=None, message="odd"),
        ],
        "a.pcap",
    )
    summary = tally.summary(1.0, "sqlite://")
    assert summary["warnings"] == ["a.pcap at byte 24: corrupt record header"]
    assert summary["dissector_warnings"] == 1
