"""Device logs: util-linux `logger` (a real syslog client) sends RFC 5424 and RFC 3164 over UDP
and TCP (octet counting and LF framing) to the receiver and to `medsentry logs listen`; files
are imported; rules fire on failed logins, configuration changes and service mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from freeport import free_port
from medsentry.cli import main
from medsentry.detect.engine import DetectionEngine, context_from_devices
from medsentry.detect.logs import SyslogReceiver, parse_syslog
from medsentry.detect.rules import build_rules
from medsentry.events import decode_json, encode_json
from medsentry.inventory.model import Device
from medsentry.store import iter_events, open_store

LOGGER = shutil.which("logger")
SECRET_USER = "dr.quimby"  # must never surface: only its keyed hash


def _free_port() -> int:
    return free_port()


def _logger(port: int, *args: str) -> None:
    if LOGGER is None:
        pytest.skip("util-linux logger is not installed")
    subprocess.run([LOGGER, "-n", "127.0.0.1", "-P", str(port), *args], check=True, timeout=10)


def test_logger_over_udp_and_tcp_reaches_the_receiver() -> None:
    got = []
    port = _free_port()
    rx = SyslogReceiver(got.append, host="127.0.0.1", port=port).start()
    try:
        msg = f"Failed password for {SECRET_USER} from 10.1.2.3 port 52814 ssh2"
        _logger(port, "--rfc5424", "-d", "-t", "sshd", "-p", "auth.warning", msg)
        _logger(
            port,
            "--rfc3164",
            "-d",
            "-t",
            "pump",
            "-p",
            "local0.notice",
            "Drug library updated by biomed via service port",
        )
        _logger(
            port,
            "--rfc5424",
            "-T",
            "--octet-count",
            "-t",
            "console",
            "-p",
            "auth.info",
            "Service mode entered from front panel, user tech",
        )
        _logger(
            port,
            "--rfc5424",
            "-T",
            "-t",
            "login",
            "-p",
            "auth.err",
            f"FAILED LOGIN (1) on '/dev/pts/1' FROM '10.1.2.3' FOR '{SECRET_USER}', "
            "Authentication failure",
        )
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        rx.close()
    assert len(got) == 4 and rx.rejected == 0
    by_app = {e.app_name: e for e in got}
    ssh = by_app["sshd"]
    assert (ssh.format, ssh.transport, ssh.facility, ssh.severity) == ("rfc5424", "udp", 4, 4)
    assert ssh.source_ip == "127.0.0.1" and ssh.matches == ["sshd.failed_password"]
    assert ssh.user_hash and ssh.user_hash == by_app["login"].user_hash
    assert by_app["pump"].format == "rfc3164" and by_app["pump"].categories == ["config_change"]
    assert by_app["console"].transport == "tcp" and by_app["console"].categories == ["service_mode"]
    assert by_app["login"].categories == ["failed_login"]
    assert abs(ssh.ts_ns - time.time_ns()) < 60 * 10**9  # the message's own timestamp
    assert all(SECRET_USER not in encode_json(e).decode() for e in got)


def test_parser_reads_rfc_examples_and_rejects_garbage() -> None:
    from medsentry.errors import InputError

    key = b"k" * 32
    # RFC 5424 §6.5 examples 1 and 3
    e1 = parse_syslog(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
        key=key,
    )
    assert (e1.facility, e1.severity, e1.hostname, e1.app_name, e1.msgid) == (
        4,
        2,
        "mymachine.example.com",
        "su",
        "ID47",
    )
    assert e1.ts_ns == 1065910455003000000
    e3 = parse_syslog(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        b"An application event log entry...",
        key=key,
    )
    assert e3.sd_ids == ["exampleSDID@32473"] and e3.length == len(
        "An application event log entry..."
    )
    # RFC 3164 §5.4 example
    e4 = parse_syslog(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", key=key
    )
    assert (e4.format, e4.hostname, e4.app_name, e4.severity) == ("rfc3164", "mymachine", "su", 2)
    for bad in (b"", b"\x00\x01\x02binary", b"just some words"):
        with pytest.raises(InputError):
            parse_syslog(bad, key=key)


def test_log_rules_fire_per_device(tmp_path: Path) -> None:
    key = b"k" * 32
    pump = Device(
        device_id="mac:00:09:fb:00:00:01",
        mac="00:09:fb:00:00:01",
        ips=["10.3.0.7"],
        hostname="pump-icu-07",
        medical=True,
    )
    engine = DetectionEngine(build_rules(), context=context_from_devices([pump]))
    lines = [
        f"<38>1 2026-11-23T10:00:0{i}Z pump-icu-07 sshd - - - Failed password for root "
        f"from 10.9.9.9 port 4000{i} ssh2".encode()
        for i in range(5)
    ]
    lines.append(b"<38>1 2026-11-23T10:01:00Z pump-icu-07 app - - - Drug library updated by x")
    lines.append(b"<38>1 2026-11-23T10:02:00Z 10.3.0.8 app - - - Entered maintenance mode")
    events = [parse_syslog(x, key=key, source_ip="10.3.0.99") for x in lines]
    alerts = engine.process(events)
    got = {(a.rule_id, a.device_id, a.technique_id) for a in alerts}
    assert got == {
        ("log.failed_logins", "mac:00:09:fb:00:00:01", "T0859"),
        ("log.config_change", "mac:00:09:fb:00:00:01", "T0836"),
        ("log.service_mode", "ip:10.3.0.99", "T0858"),  # unknown hostname: the sender's address
    }


def test_logs_import_cli_stores_events_and_rejects_bad_lines(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    log = tmp_path / "messages"
    log.write_text(
        "".join(
            f"Nov 23 10:00:0{i} ct-scanner-2 sshd[812]: Invalid user {SECRET_USER} from "
            f"10.9.9.9 port 5000{i}\n"
            for i in range(6)
        )
        + "Nov 23 10:05:00 ct-scanner-2 app[1]: %SYS-5-CONFIG_I: Configured from console\n"
    )
    out = CliRunner().invoke(main, ["logs", "import", str(log), "--db", db, "--format", "json"])
    assert out.exit_code == 0, out.output
    rules = sorted(a["rule_id"] for a in json.loads(out.stdout))
    assert rules == ["log.config_change", "log.failed_logins"]
    with open_store(db) as store:
        evs = list(iter_events(store, kinds=["syslog"]))
    assert len(evs) == 7
    assert all(SECRET_USER not in encode_json(e).decode() for e in evs)
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"Nov 23 10:00:00 h a: ok\n\x00\x01\x02 garbage\n")
    out = CliRunner().invoke(main, ["logs", "import", str(bad), "--db", db])
    assert out.exit_code == 2
    assert f"{bad}:2" in out.output and "Traceback" not in out.output
    with open_store(db) as store:
        assert len(list(iter_events(store, kinds=["syslog"]))) == 7  # nothing lost, nothing added


def test_message_words_are_not_header_fields(tmp_path: Path) -> None:
    """RFC 3164 lines without HOSTNAME (§4.1.2: a host name or an address) and RFC 5424 MSGIDs
    that are no token: the message's words never become HOSTNAME, TAG, PID or MSGID."""
    key = b"k" * 32
    cases = {
        b"<134>Jan  1 12:00:01 infusion: QXTAGWORD: bolus started": (None, "infusion", None),
        b"<134>Jan  1 12:00:02 QXNOHOST QXALPHA admitted to ward 3": (None, None, None),
        b"Jan  1 12:00:04 QXFILEHOST QXFILETAG[QX998877]: no PRI line": (None, None, None),
        b"<134>Jan  1 12:00:05 pump7 sshd[1]: Failed password": ("pump7", "sshd", "1"),
        b"<134>Jan  1 12:00:06 10.1.2.3 Patient admitted": ("10.1.2.3", None, None),
        b"<134>Jan  1 12:00:07 pump7.icu.example.org bolus done": (
            "pump7.icu.example.org",
            None,
            None,
        ),
    }
    for line, expected in cases.items():
        e = parse_syslog(line, key=key)
        assert (e.hostname, e.app_name, e.procid) == expected, line
    e = parse_syslog(
        b"<134>1 2024-01-01T12:00:00Z pump-7 ALARIS 4242 QXMSGID-QX998877 "
        b'[QXSDID@32473 a="b"][origin ip="10.1.2.3"] text',
        key=key,
    )
    assert e.msgid is not None and e.msgid.startswith("#") and "QX99" not in e.msgid
    assert e.sd_ids == ["QXSDID@32473", "origin"]  # SD-NAMEs of token form (RFC 5424 §6.3.2)
    # through `logs import` into SQLite: the alert's evidence names no word of the message
    db = tmp_path / "s.db"
    log = tmp_path / "device.log"
    log.write_text("Nov 23 10:05:00 QXNOHOST %SYS-5-CONFIG_I: Configured from console\n")
    out = CliRunner().invoke(
        main, ["logs", "import", str(log), "--db", f"sqlite:///{db}", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    assert [a["rule_id"] for a in json.loads(out.stdout)] == ["log.config_change"]
    assert "QXNOHOST" not in out.output
    assert b"QXNOHOST" not in db.read_bytes()


def test_logs_listen_command_receives_from_logger(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    port = _free_port()
    env = {**os.environ}
    proc = subprocess.Popen(
        [
            shutil.which("medsentry") or "medsentry",
            "logs",
            "listen",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            db,
            "--count",
            "5",
            "--duration",
            "30",
            "--interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening for syslog" in line, line
        for i in range(5):
            _logger(
                port,
                "--rfc5424",
                "-T" if i % 2 else "-d",
                "-t",
                "sshd",
                f"Failed password for admin from 10.9.9.{i} port 22 ssh2",
            )
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "log.failed_logins" in out and "5 messages received" in err
    with open_store(db) as store:
        evs = [decode_json(encode_json(e)) for e in iter_events(store, kinds=["syslog"])]
    assert len(evs) == 5 and {e.transport for e in evs} == {"udp", "tcp"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parser_and_framing_never_crash_on_arbitrary_bytes(data: bytes) -> None:
    from medsentry.detect.logs import octet_frames
    from medsentry.errors import InputError

    for msg in (data, b"<13>1 " + data, b"<13>Nov 23 10:00:00 h a: " + data):
        try:
            ev = parse_syslog(msg, key=b"k" * 32)
        except InputError:
            continue
        assert ev.length >= 0 and ev.format in ("rfc5424", "rfc3164", "unknown")
    buf = bytearray(data)
    frames = list(octet_frames(buf))
    assert sum(len(f) for f in frames) <= len(data)


def test_parser_takes_only_ascii_digits_and_times_a_store_can_hold() -> None:
    """Found by mutation fuzzing: "<¹>" passed str.isdigit and crashed int(); a year-9999
    timestamp overflowed the store's 64-bit nanoseconds; Feb 31 rolled into March."""
    from medsentry.errors import InputError

    key = b"k" * 32
    for bad in ("<\u00b9>x", "<1\u00b2>1 2026-01-01T00:00:00Z h a - - - x", "<\u0661\u0663>x"):
        with pytest.raises(InputError):
            parse_syslog(bad.encode(), key=key)
    recv = 1_700_000_000 * 10**9
    for stamp in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        ev = parse_syslog(f"<13>1 {stamp} h a - - - x".encode(), key=key, received_ns=recv)
        assert ev.format == "rfc5424" and ev.ts_ns == recv  # out of range: the receive time
    ev = parse_syslog(b"<13>Feb 31 10:00:00 host app: x", key=key, received_ns=recv)
    assert ev.ts_ns == recv and ev.hostname == "host"
    ev = parse_syslog(b"<13>Feb 28 10:00:00 host app: x", key=key, received_ns=recv)
    assert ev.ts_ns == 1677578400 * 10**9  # 2023-02-28T10:00:00Z, the receive year


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=4), st.text(max_size=40), st.text(max_size=60))
def test_parser_never_crashes_on_arbitrary_text(pri: str, stamp: str, rest: str) -> None:
    from medsentry.errors import InputError

    for msg in (f"<{pri}>{rest}", f"<13>1 {stamp} h a - - - {rest}", f"<13>{stamp} h a: {rest}"):
        try:
            ev = parse_syslog(msg.encode("utf-8", "surrogatepass"), key=b"k" * 32)
        except InputError:
            continue
        assert 0 <= ev.ts_ns < 1 << 63
