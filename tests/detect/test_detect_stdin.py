"""`medsentry detect -`: a capture replayed from standard input (a pipe) or a FIFO, as a user runs
it (`tcpdump -w - | medsentry detect -`), raises the alerts the same bytes raise as a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_detect_cli import _spoof_pcap

from clierrors import one_error_line

EXE = [sys.executable, "-m", "medsentry"]
# rules and baselines: the models' start-up (seconds) adds nothing to what is read, or how
DETECT = ["detect", "--no-models", "--format", "json"]


def _medsentry(*args: str, stdin: bytes | int | None = None) -> subprocess.CompletedProcess:
    """Run the real command; bytes given as `stdin` reach it through a pipe."""
    kw: dict = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(
        [*EXE, *args], capture_output=True, timeout=300, env=os.environ.copy(), **kw
    )


def _alerts(*args: str, stdin: bytes | None = None) -> list[dict]:
    done = _medsentry(*DETECT, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"", done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture
def spoof(tmp_path: Path) -> Path:
    return _spoof_pcap(tmp_path / "spoof.pcap")


def test_piped_capture_raises_the_files_alerts(spoof: Path) -> None:
    from_file = _alerts("--ephemeral", str(spoof))
    piped = _alerts("--ephemeral", "-", stdin=spoof.read_bytes())
    assert piped == from_file
    assert "arp.binding_change" in {a["rule_id"] for a in piped}


def test_piped_capture_alerts_are_stored(spoof: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    [alert] = [a for a in _alerts("--db", db, "-", stdin=spoof.read_bytes())
               if a["rule_id"] == "arp.binding_change"]  # fmt: skip
    listed = _medsentry("alerts", "--db", db, "--format", "json")
    [stored] = [a for a in json.loads(listed.stdout) if a["rule_id"] == "arp.binding_change"]
    assert stored["alert_id"] == alert["alert_id"]


def test_a_fifo_named_on_the_command_line(spoof: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def write() -> None:  # open() waits for detect to open the other end
        with open(fifo, "wb") as fh:
            fh.write(spoof.read_bytes())

    t = threading.Thread(target=write, daemon=True)
    t.start()
    piped = _alerts("--ephemeral", str(fifo))
    t.join(10)
    assert piped == _alerts("--ephemeral", str(spoof))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "<stdin> at byte 0: empty input"),
        (b"these are meeting notes, not a capture\n" * 5, "<stdin> at byte 0: not a pcap"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "<stdin> at byte 6: pcap file header truncated"),
    ],
)
def test_bad_streams_are_one_error_line(
    spoof: Path, tmp_path: Path, data: bytes, fragment: str
) -> None:
    """After a good file: one error line, exit 2, and what the file raised stays stored."""
    db = f"sqlite:///{tmp_path / 'd.db'}"
    one_error_line(_medsentry(*DETECT, "--db", db, str(spoof), "-", stdin=data), fragment)
    listed = _medsentry("alerts", "--db", db, "--format", "json")
    assert "arp.binding_change" in {a["rule_id"] for a in json.loads(listed.stdout)}


def test_stream_cut_mid_record_warns_and_keeps_the_packets_before(spoof: Path) -> None:
    """tcpdump killed mid-record: a warning naming <stdin> and the offset, as `scan` gives,
    and the alerts of the packets before it."""
    data = spoof.read_bytes()
    third = 24 + 2 * (len(data) - 24) // 4  # the pcap header, then 4 records of one size
    cut = data[: third + 10]
    done = _medsentry(*DETECT, "--ephemeral", "-", stdin=cut)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    [line] = err.strip().splitlines()
    assert line.startswith(f"medsentry: warning: <stdin> at byte {third}: "), err
    assert "kept 2 packets" in line
    assert "arp.binding_change" in {a["rule_id"] for a in json.loads(done.stdout)}


def test_stdin_from_a_terminal_is_an_error() -> None:
    """The message shows how to pipe a capture into the command run: detect, not scan."""
    import pty

    master, slave = pty.openpty()
    try:
        done = _medsentry(*DETECT, "--ephemeral", "-", stdin=slave)
    finally:
        os.close(master)
        os.close(slave)
    line = one_error_line(done, "<stdin>", "terminal", "(e.g. tcpdump -w - | medsentry detect -)")
    assert "medsentry scan" not in line


def test_help_mentions_standard_input() -> None:
    done = _medsentry("detect", "--help")
    out = done.stdout.decode()
    assert done.returncode == 0 and "FILE|-..." in out and "standard input" in out
