"""`medsentry scan -`: a capture read from standard input (a pipe), as a user runs it
(`tcpdump -w - | medsentry scan -`), stored exactly as the same bytes scanned as a file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_cli_scan import _damaged_copy, pcap_records

from clierrors import one_error_line
from medsentry.store import count_rows, list_captures, open_store

EXE = [sys.executable, "-m", "medsentry"]
_VOLATILE = {"source", "scanned_at"}  # where the bytes came from, and when


def _medsentry(
    *args: str, stdin: bytes | int | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real command; bytes given as `stdin` reach it through a pipe."""
    kw: dict = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(
        [*EXE, *args], capture_output=True, timeout=timeout, env=os.environ.copy(), **kw
    )


def _scan(db: str, *inputs: str, stdin: bytes | int | None = None) -> dict:
    done = _medsentry("scan", "--db", db, "--format", "json", *inputs, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def _rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of `captures`, `flows` and `events`, in storage order, without the columns
    that say where and when the capture was read."""
    out = {}
    with sqlite3.connect(db) as conn:
        for table in ("captures", "flows", "events"):
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            keep = ", ".join(c for c in cols if c not in _VOLATILE)
            out[table] = conn.execute(f"SELECT {keep} FROM {table} ORDER BY rowid").fetchall()
    return out


def _assert_same_as_file(capture: Path, tmp_path: Path, piped: dict[str, list[tuple]]) -> None:
    file_db = tmp_path / "file.db"
    _scan(f"sqlite:///{file_db}", str(capture))
    want = _rows(file_db)
    assert piped == want
    assert len(want["flows"]) > 0 and len(want["events"]) > 0


def test_piped_capture_is_stored_as_the_file(lo_capture, tmp_path: Path) -> None:
    """A real loopback capture through a pipe: the same captures row (but its source), flows
    and events as the file, under the file's SHA-256."""
    data = lo_capture.path.read_bytes()
    db = tmp_path / "pipe.db"
    s = _scan(f"sqlite:///{db}", "-", stdin=data)
    [cap] = s["captures"]
    assert cap["source"] == "<stdin>" and cap["format"] == "pcap"
    assert cap["capture_id"] == hashlib.sha256(data).hexdigest()
    assert s["packets"] == len(pcap_records(data)) and s["warnings"] == []
    assert s["flows"] == lo_capture.tcp_flows + lo_capture.udp_flows
    piped = _rows(db)
    with open_store(f"sqlite:///{db}") as store:
        [row] = list_captures(store)
        assert row["source"] == "<stdin>" and row["size_bytes"] == len(data)
    _assert_same_as_file(lo_capture.path, tmp_path, piped)


def test_editcap_pcapng_piped_into_scan(lo_capture, tmp_path: Path) -> None:
    """`editcap -F pcapng in - | medsentry scan -`: two real processes joined by a pipe."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap (wireshark-common) is not installed")
    ng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(lo_capture.path), str(ng)], check=True)
    db = tmp_path / "pipe.db"
    editcap = subprocess.Popen(
        ["editcap", "-F", "pcapng", str(lo_capture.path), "-"], stdout=subprocess.PIPE
    )
    try:
        s = _scan(f"sqlite:///{db}", "-", stdin=editcap.stdout.fileno())
    finally:
        editcap.stdout.close()
        assert editcap.wait(timeout=60) == 0
    [cap] = s["captures"]
    assert cap["format"] == "pcapng" and cap["source"] == "<stdin>"
    assert cap["capture_id"] == hashlib.sha256(ng.read_bytes()).hexdigest()  # editcap is stable
    _assert_same_as_file(ng, tmp_path, _rows(db))


def test_rescan_from_a_pipe_or_a_file_duplicates_nothing(db_url, lo_capture) -> None:
    data = lo_capture.path.read_bytes()
    first = _scan(db_url, str(lo_capture.path))
    with open_store(db_url) as store:
        before = count_rows(store)
    again = _scan(db_url, "-", stdin=data)
    assert again["captures"][0]["capture_id"] == first["captures"][0]["capture_id"]
    _scan(db_url, str(lo_capture.path))
    with open_store(db_url) as store:
        assert count_rows(store) == before
        assert before["captures"] == 1 and before["flows"] == 4


def test_dash_among_files_in_order(lo_capture, tmp_path: Path) -> None:
    data = lo_capture.path.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: pcap_records(data)[20]])  # another capture: its first 20 packets
    s = _scan(f"sqlite:///{tmp_path / 'x.db'}", str(cut), "-", str(lo_capture.path), stdin=data)
    assert [c["source"] for c in s["captures"]] == [str(cut), "<stdin>", str(lo_capture.path)]
    n = len(pcap_records(data))
    assert [c["packets"] for c in s["captures"]] == [20, n, n]
    assert s["captures"][1]["capture_id"] == s["captures"][2]["capture_id"]


def test_dash_twice_is_an_error(lo_capture, tmp_path: Path) -> None:
    done = _medsentry(
        "scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", "-", "-", stdin=b"\xd4\xc3\xb2\xa1"
    )
    one_error_line(done, "'-' is given twice")
    assert not (tmp_path / "x.db").exists()


def test_stdin_from_a_terminal_is_an_error(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    try:
        done = _medsentry("scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", "-", stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    one_error_line(done, "<stdin>", "terminal", "(e.g. tcpdump -w - | medsentry scan -)")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "<stdin> at byte 0: empty input"),
        (b"these are meeting notes, not a capture\n" * 5, "<stdin> at byte 0: not a pcap"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "<stdin> at byte 6: pcap file header truncated"),
        (b"\x1f\x8b\x08\x00" + b"\0" * 40, "<stdin> at byte 0: gzip"),
    ],
)
def test_bad_streams_are_one_error_line(tmp_path: Path, data: bytes, fragment: str) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    one_error_line(_medsentry("scan", "--db", db, "-", stdin=data), fragment)
    with open_store(db) as store:
        assert count_rows(store)["captures"] == 0


def test_stream_cut_mid_record_keeps_the_packets_before(lo_capture, tmp_path: Path) -> None:
    """The writer died mid-record: a warning naming <stdin> and the offset, exit 0, the
    packets before it stored, the capture `damaged` under the SHA-256 of what came."""
    data = lo_capture.path.read_bytes()
    offsets = pcap_records(data)
    cut = data[: offsets[25] + 30]  # 30 bytes into record 25
    done = _medsentry("scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--format", "json", "-",
                      stdin=cut)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert f"medsentry: warning: <stdin> at byte {offsets[25]}: " in err and "Traceback" not in err
    s = json.loads(done.stdout)
    [cap] = s["captures"]
    assert s["packets"] == 25 and cap["status"] == "damaged"
    assert cap["capture_id"] == hashlib.sha256(cut).hexdigest()


def test_damage_in_a_stream_reads_the_rest_for_the_id(lo_capture, tmp_path: Path) -> None:
    """A corrupt record header midway: packets before it kept, the bytes after it counted in
    the warning and hashed, so the capture id is the file's."""
    bad = tmp_path / "damaged.pcap"
    off = _damaged_copy(lo_capture.path, bad, 30)
    data = bad.read_bytes()
    done = _medsentry("scan", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--format", "json", "-",
                      stdin=data)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert f"<stdin> at byte {off}: " in err and f"ignored {len(data) - off} bytes" in err
    s = json.loads(done.stdout)
    assert s["packets"] == 30 and s["captures"][0]["status"] == "damaged"
    assert s["captures"][0]["capture_id"] == hashlib.sha256(data).hexdigest()


def test_a_fifo_named_on_the_command_line(lo_capture, tmp_path: Path) -> None:
    data = lo_capture.path.read_bytes()
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def write() -> None:  # open() waits for the scan to open the other end
        with open(fifo, "wb") as fh:
            fh.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    s = _scan(f"sqlite:///{tmp_path / 'x.db'}", str(fifo))
    t.join(10)
    [cap] = s["captures"]
    assert cap["source"] == str(fifo)
    assert cap["capture_id"] == hashlib.sha256(data).hexdigest()


def test_help_mentions_standard_input() -> None:
    done = _medsentry("scan", "--help")
    out = done.stdout.decode()
    assert done.returncode == 0 and "FILE|-..." in out and "standard input" in out


def test_live_tcpdump_piped_into_scan(tmp_path: Path) -> None:
    """`tcpdump -i lo -U -w - -c N | tee copy | medsentry scan -` while datagrams are sent:
    tcpdump stops after N packets, the scan stores them under the SHA-256 of the stream."""
    from freeport import bound_socket

    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    n = 6
    srv = bound_socket(socket.SOCK_DGRAM)
    port = srv.getsockname()[1]
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-c", str(n), "-w", "-",
         f"udp and dst port {port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    copy = tmp_path / "copy.pcap"
    tee = subprocess.Popen(["tee", str(copy)], stdin=dump.stdout, stdout=subprocess.PIPE)
    dump.stdout.close()
    db = tmp_path / "live.db"
    scan = subprocess.Popen(
        [*EXE, "scan", "--db", f"sqlite:///{db}", "--format", "json", "-"],
        stdin=tee.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    tee.stdout.close()
    try:
        line = dump.stderr.readline().decode()
        if "listening" not in line:
            pytest.skip(f"tcpdump cannot capture on lo: {line.strip()}")
        with srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cli:
            for i in range(n):
                cli.sendto(b"reading %d" % i, ("127.0.0.1", port))
                srv.recvfrom(100)
                time.sleep(0.02)
        out, err = scan.communicate(timeout=300)
    finally:
        for proc in (dump, tee, scan):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        dump.stderr.close()
    assert scan.returncode == 0, err.decode()
    s = json.loads(out)
    [cap] = s["captures"]
    assert s["packets"] == n and s["flows"] == 1 and cap["source"] == "<stdin>"
    assert cap["capture_id"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    with open_store(f"sqlite:///{db}") as store:
        [row] = list_captures(store)
        assert row["packets"] == n and row["status"] == "complete"


def _scan_on_a_terminal(db: str, *inputs: str, stdin: bytes | None = None) -> str:
    """Run `scan` with stderr on a pseudo-terminal (so the progress display is drawn) and
    return what it drew there, its final frame included (rich draws it before erasing)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        scan = subprocess.run(
            [*EXE, "scan", "--db", db, "--format", "json", *inputs],
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            timeout=300,
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    assert scan.returncode == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")


def test_progress_of_a_stream_counts_packets_and_bytes(lo_capture, tmp_path: Path) -> None:
    """A pipe has no size to make a bar of: the display counts the packets and bytes read;
    a file keeps its bytes of the total."""
    data = lo_capture.path.read_bytes()
    n = len(pcap_records(data))
    piped = _scan_on_a_terminal(f"sqlite:///{tmp_path / 'p.db'}", "-", stdin=data)
    assert f"{n:,} packets · {len(data) / 1000:.1f} kB" in piped, piped
    from_file = _scan_on_a_terminal(f"sqlite:///{tmp_path / 'f.db'}", str(lo_capture.path))
    assert "packets ·" not in from_file
    assert f"{len(data) / 1000:.1f}/{len(data) / 1000:.1f} kB" in from_file, from_file
