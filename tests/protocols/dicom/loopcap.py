"""Capture real loopback traffic with tcpdump and scan it with the real pipeline (for tests)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freeport import free_port  # noqa: F401  (re-exported to the tests)
from medsentry.events import encode_json
from medsentry.events.base import Event
from medsentry.pipeline import Pipeline, ScanConfig
from medsentry.protocols.base import FlowContext

KEY = b"k" * 32


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def dcmtk(tool: str) -> str:
    """The dcmtk binary (pynetdicom installs Python apps of the same names earlier on PATH)."""
    for path in (f"/usr/bin/{tool}", shutil.which(tool)):
        if path and os.access(path, os.X_OK):
            out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            if "dcmtk" in out.lower():
                return path
    pytest.skip(f"dcmtk's {tool} is not installed (Debian package dcmtk)")


def settle(path: Path, quiet_s: float = 0.3, limit_s: float = 5.0) -> None:
    """Wait until the capture file stops growing (tcpdump drops unread packets on SIGINT)."""
    deadline, size, since = time.time() + limit_s, -1, time.time()
    while time.time() < deadline:
        now = path.stat().st_size if path.exists() else 0
        size, since = (now, time.time()) if now != size else (size, since)
        if time.time() - since >= quiet_s:
            return
        time.sleep(0.05)


TCPDUMP_LO = ["-i", "lo", "-n", "-U", "--immediate-mode", "-s", "0", "-B", "65536"]


def assert_no_drops(tail: str) -> None:
    """tcpdump's exit statistics say the kernel dropped nothing (a lost segment is not ours)."""
    dropped = re.search(r"(\d+) packets? dropped by kernel", tail)
    assert dropped is None or dropped.group(1) == "0", f"tcpdump lost packets: {tail.strip()}"


@contextlib.contextmanager
def capture_lo(path: Path, ports: list[int]) -> Iterator[Path]:
    """tcpdump on lo for the given TCP ports while the block runs; the pcap is at `path`."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed")
    expr = " or ".join(f"tcp port {p}" for p in ports)
    proc = subprocess.Popen(
        # -B: with -s 0 each ring slot holds 256 KiB, so the default 2 MiB buffer has 8 of them
        # and a burst of loopback segments overflows it while tcpdump waits for a CPU
        [tcpdump, *TCPDUMP_LO, "-w", str(path), expr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline() if proc.stderr else ""
    if "listening" not in line:
        proc.kill()
        proc.wait()
        pytest.skip(f"cannot capture on lo: {line.strip()}")
    try:
        yield path
    finally:
        settle(path)  # let the last segments reach the capture
        proc.send_signal(signal.SIGINT)
        _, tail = proc.communicate(timeout=10)
        assert_no_drops(tail)


def scan(pcap: Path) -> list[Event]:
    events: list[Event] = []
    Pipeline(ScanConfig(phi_key=KEY)).scan_files([pcap], events.extend)
    return events


def all_json(events: list[Event]) -> str:
    return "\n".join(encode_json(e).decode() for e in events)


def tshark_fields(
    pcap: Path, decode_as: str, fields: list[str], filt: str, prefs: tuple[str, ...] = ()
) -> list[list[str]]:
    """tshark's own dissector on the same capture: one row per matching packet."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    cmd = [tshark, "-r", str(pcap), "-n", "-d", decode_as, "-Y", filt, "-T", "fields"]
    for pref in prefs:
        cmd += ["-o", pref]
    cmd += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def tshark_command_sets(pcap: Path, port: int) -> list[dict[int, int | str]]:
    """Every DIMSE command set (PS3.7 §9.3, group 0000) tshark's DICOM dissector decodes on
    `port`, in order, as {tag: value}: US/UL as integers, UI/AE/LO as text (the UID name tshark
    appends is dropped). Read from tshark's PDML with the dissector's tag tree turned on."""
    import xml.etree.ElementTree as ET

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    cmd = [tshark, "-r", str(pcap), "-n", "-o", "dicom.tag_tree:TRUE", "-d"]
    cmd += [f"tcp.port=={port},dicom", "-Y", f"dicom && tcp.port == {port}", "-T", "pdml"]
    root = ET.fromstring(subprocess.run(cmd, capture_output=True, check=True).stdout)
    out: list[dict[int, int | str]] = []
    for pdv in root.iter("field"):
        flags = [c for c in pdv if c.get("name") == "dicom.pdv.flags"]
        if not flags or not int(flags[0].get("show", "0"), 16) & 0x01:
            continue  # not a command fragment (PS3.8 §E.2: bit 0 of the header)
        tags: dict[int, int | str] = {}
        for node in pdv.iter("field"):
            kids = {c.get("name"): c.get("show", "") for c in node}
            if "dicom.tag" not in kids:
                continue
            tag = int(kids["dicom.tag"], 16)
            if tag >> 16 != 0:
                continue
            for name, show in kids.items():
                if name and name.startswith("dicom.tag.value."):
                    if name.endswith(("16u", "32u")):
                        tags[tag] = int(show)
                    elif name.endswith(".str"):
                        tags[tag] = re.sub(r" \([^()]*\)$", "", show).strip()
        if tags:
            out.append(tags)
    return out


def command_as_tags(cmd: Any) -> dict[int, int | str]:
    """A DicomCommand event as the command-group elements it reports (PS3.7 §E.1); the SOP
    instance UID, which the event keeps only as a keyed hash, is left out (see `instance_hash`)."""
    fields = {
        0x00000002: cmd.affected_sop_class_uid,
        0x00000003: cmd.requested_sop_class_uid,
        0x00000100: cmd.command_field,
        0x00000110: cmd.message_id,
        0x00000120: cmd.message_id_responded,
        0x00000600: cmd.move_destination,
        0x00000700: cmd.priority,
        0x00000900: cmd.status,
        0x00001002: cmd.event_type_id,
        0x00001008: cmd.action_type_id,
        0x00001020: cmd.remaining_suboperations,
        0x00001021: cmd.completed_suboperations,
        0x00001022: cmd.failed_suboperations,
        0x00001023: cmd.warning_suboperations,
        0x00001030: cmd.move_originator_ae,
        0x00001031: cmd.move_originator_message_id,
    }
    return {k: v for k, v in fields.items() if v is not None}


def instance_hash(tags: dict[int, int | str]) -> str | None:
    """The keyed hash the dissector gives the affected (else requested) SOP instance UID."""
    uid = tags.get(0x00001000) or tags.get(0x00001001)
    if not uid:
        return None
    return FlowContext("tshark", None, KEY).phi_hash(str(uid))  # type: ignore[arg-type]


def tshark_undecoded_commands(pcap: Path, port: int) -> int:
    """Frames with a last command fragment in which tshark found no Command Field.

    tshark 4.0 misreads a P-DATA-TF whose 6-byte PDU header arrived in a TCP segment of its own
    (dcmtk writes the header and the PDV separately; the DICOM dissector then decodes the PDV
    from the wrong offset, showing an "(0000,8001) UN" element) and skips that command set."""
    rows = tshark_fields(
        pcap,
        f"tcp.port=={port},dicom",
        ["frame.number"],
        f"dicom.pdv.flags == 0x03 && !(dicom.tag == 0x00000100) && tcp.port == {port}",
        prefs=("dicom.tag_tree:TRUE",),
    )
    return len(rows)


def assert_commands_match_tshark(commands: list[Any], pcap: Path, port: int) -> None:
    """Every DIMSE command set tshark's DICOM dissector decodes from the capture agrees, element
    by element and in order, with one the dissector reported; the only ones tshark may lack
    are those it fails to decode (see `tshark_undecoded_commands`)."""
    theirs = tshark_command_sets(pcap, port)
    ours = sorted(commands, key=lambda c: c.ts_ns)
    undecoded = tshark_undecoded_commands(pcap, port)
    assert theirs and len(ours) == len(theirs) + undecoded
    assert undecoded <= max(1, len(ours) // 10)  # tshark's slip is rare; ours must not be
    i = 0
    for tags in theirs:
        while True:  # the next of ours with the same command and message ID
            assert i < len(ours), f"tshark decoded a command we did not report: {tags}"
            cmd = ours[i]
            i += 1
            mine = command_as_tags(cmd)
            key = (0x100, 0x110, 0x120)
            if all(mine.get(k) == tags.get(k) for k in key):
                break
        assert mine == {k: v for k, v in tags.items() if k in mine}, cmd.command
        missing = set(tags) - set(mine) - {0x0, 0x800, 0x1000, 0x1001, 0x0902}
        assert not missing, (cmd.command, sorted(hex(m) for m in missing))
        assert cmd.data_set_present == (tags[0x00000800] != 0x0101)
        assert cmd.sop_instance_hash == instance_hash(tags)
        assert cmd.error_comment_present == (0x00000902 in tags)
