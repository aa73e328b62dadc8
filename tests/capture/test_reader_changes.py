"""A capture another program changes while it is read: one clear error, never SIGBUS or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from capture_build import pcap_file

from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError

RECS = [(1_700_000_000_000_000_000 + i * 1000, bytes([i % 251]) * 200, 200) for i in range(5000)]

_CHILD = """
import sys
from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError
r = open_capture(sys.argv[1], chunk_bytes=65536)
it = iter(r)
next(it)
print("mapped" if r._windows.mapped else "read", flush=True)
sys.stdin.readline()  # the parent's truncate() is waiting on this process's lease now
try:
    for _ in it:
        pass
except CaptureError as exc:
    print(exc, flush=True)
r.close()
"""


@pytest.mark.skipif(not hasattr(os, "truncate") or sys.platform != "linux", reason="Linux leases")
def test_truncation_by_another_process_while_mapped(tmp_path: Path) -> None:
    """The reader maps the file under a read lease: another process's truncate() waits for it,
    the reader stops at its next window with CaptureError, and then the truncate goes on."""
    path = pcap_file(tmp_path / "c.pcap", RECS)
    size = path.stat().st_size
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "mapped"
    done: list[float] = []
    t = threading.Thread(target=lambda: (os.truncate(path, 4096), done.append(time.time())))
    t0 = time.time()
    t.start()
    time.sleep(0.5)
    assert not done and path.stat().st_size == size  # held back while the reader maps it
    child.stdin.write("go\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=60)
    t.join(60)
    assert child.returncode == 0, err  # not -SIGBUS
    assert "another program opened the file for writing or truncated it" in out
    assert "nothing of it is stored" in out and str(path) in out
    assert done and done[0] - t0 < 30 and path.stat().st_size == 4096


def test_truncation_while_read_raises_and_does_not_spin(tmp_path: Path) -> None:
    """Read (not mapped: a file another program has open for writing, or off the main thread),
    a file that shrinks ends in CaptureError at the short read; it used to wait forever for the
    rest of the record it cut."""
    path = pcap_file(tmp_path / "c.pcap", RECS)
    reader = open_capture(path, chunk_bytes=65536, use_mmap=False)
    n = 0
    with pytest.raises(CaptureError, match="opened the file for writing or truncated it"):
        for i, batch in enumerate(reader):
            n += len(batch)
            if i == 2:
                os.truncate(path, 100_000)
    reader.close()
    assert 0 < n < len(RECS)


def test_a_file_open_for_writing_elsewhere_is_read_not_mapped(tmp_path: Path) -> None:
    """No lease can be had while another descriptor writes the file (a capture still being
    written): the reader reads it, and sees the packets it had when opened."""
    path = pcap_file(tmp_path / "c.pcap", RECS)
    with open(path, "ab") as writer:
        reader = open_capture(path, chunk_bytes=65536)
        it = iter(reader)
        first = next(it)
        assert reader._windows is not None and not reader._windows.mapped
        writer.write(b"\0" * 100)  # a record header still being written: outside the size read
        writer.flush()
        n = len(first) + sum(len(b) for b in it)
        reader.close()
    assert n == len(RECS) and reader.warnings == []
