"""Compile medsentry's numba kernels into their on-disk cache once, right after an install.

numba compiles a kernel the first time it is called with a new combination of argument types and
keeps the machine code beside the module (`cache=True`: `__pycache__/*.nbi`, `*.nbc`). Whatever
the install leaves uncompiled, a user's first command pays for: measured on the 1.2M-packet
benchmark capture, the first scan after an install took 14.2 s instead of 10.2 s because the
Half-Space Trees of the flow models compiled then (their first learning window is 250 flows,
which the demo capture never fills).

`warm(work)` runs each compiled path once, through the code that runs it in use, on small inputs
made here: the demo hospital capture scanned with every engine, as pcap and as pcapng; an Apple
PKTAP capture, a PCAPdroid capture and an Apple pcapng with process blocks (the capture's own
record of which app sent each packet); BLE HCI logs as btsnoop and PacketLogger; flow records
and monitored flows across the end of a learning period (the flow models learn, then score);
and a live capture on the loopback interface when this process may open one. Everything it
writes stays under `work` (its own home, database and ledger), never the user's, except the
parsed data files (medsentry.yamlcache), which it copies into the user's cache at the end.

    python -m medsentry.warmup [-v] [WORKDIR]       # scripts/install.sh runs this
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from medsentry.capture.writer import LINKTYPE_ETHERNET, PcapWriter

_LINKTYPE_PKTAP = 258  # Apple PKTAP (tcpdump print-pktap.c)
_PCAPDROID_MAGIC = 0x01072021
_BTSNOOP_EPOCH_DELTA_US = 0x00DCDDB30F2F8000  # btsnoop counts from year 0 (capture/btsnoop.py)


# --- capture files made from the demo's frames ----------------------------------------------------
def _pcap_frames(path: Path) -> list[tuple[int, bytes]]:
    """(microseconds, frame) of a little-endian classic pcap (the demo's writer)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    scale = 1000 if magic == 0xA1B23C4D else 1  # nanosecond pcap -> µs divisor
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, pos)
        out.append((sec * 1_000_000 + frac // scale, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return out


def _pcap(linktype: int, records: list[tuple[int, bytes]]) -> bytes:
    """A classic pcap of (microseconds, frame) records, by the project's own writer."""
    out = io.BytesIO()
    w = PcapWriter(out, linktype=linktype)
    for ts_us, frame in records:
        w.write(frame, ts_us * 1000)
    return out.getvalue()


def _block(btype: int, body: bytes) -> bytes:
    """A pcapng block (draft-ietf-opsawg-pcapng §3.1): type, total length, body, length."""
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _epb(ts_us: int, frame: bytes, opts: bytes = b"") -> bytes:
    """Enhanced Packet Block (§4.3) on interface 0, microsecond timestamps."""
    head = struct.pack("<IIIII", 0, ts_us >> 32, ts_us & 0xFFFFFFFF, len(frame), len(frame))
    return _block(6, head + frame + b"\0" * (-len(frame) % 4) + opts + _opt(0, b""))


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(linktype: int) -> bytes:
    return _block(1, struct.pack("<HHI", linktype, 0, 262144) + _opt(9, b"\x06") + _opt(0, b""))


def _pcapng(frames: list[tuple[int, bytes]]) -> bytes:
    return _shb() + _idb(LINKTYPE_ETHERNET) + b"".join(_epb(ts, f) for ts, f in frames)


def _apple_pcapng(frames: list[tuple[int, bytes]]) -> bytes:
    """An Apple pcapng: a Process Information Block (type 0x80000001: pid, name) and packets
    naming it by index (EPB option 0x8001), as macOS tcpdump -k writes."""
    pib = _block(0x80000001, struct.pack("<I", 4242) + _opt(2, b"CompanionApp") + _opt(0, b""))
    pib_index = _opt(0x8001, struct.pack("<I", 0)) + _opt(2, struct.pack("<I", 2))
    packets = b"".join(_epb(t, f, pib_index) for t, f in frames)
    return _shb() + _idb(LINKTYPE_ETHERNET) + pib + packets


def _pktap(frames: list[tuple[int, bytes]]) -> bytes:
    """LINKTYPE_PKTAP: Apple's 108-octet header (pid and command name) before each frame."""
    head = struct.pack(
        "<III24sIIIII20sIHHI20s", 108, 1, LINKTYPE_ETHERNET, b"en0", 0, 2, 14, 0, 4242,
        b"CompanionApp", 0, 6, 0, 4242, b"CompanionApp",
    )  # fmt: skip
    return _pcap(_LINKTYPE_PKTAP, [(ts, head + f) for ts, f in frames])


def _pcapdroid(frames: list[tuple[int, bytes]]) -> bytes:
    """PCAPdroid's trailer: zeroed MACs, then magic, app uid, app name and FCS after the frame."""
    out = []
    for ts, f in frames:
        trailer = struct.pack(">Ii", _PCAPDROID_MAGIC, 10123) + b"org.example.app".ljust(20, b"\0")
        out.append((ts, b"\0" * 12 + f[12:] + trailer + b"\0\0\0\0"))
    return _pcap(LINKTYPE_ETHERNET, out)


# --- BLE HCI logs ---------------------------------------------------------------------------------
def _le_advertising_report() -> bytes:
    """HCI LE Meta event, LE Advertising Report (Core 5.4 Vol 4 Part E §7.7.65.2): one report,
    a public address, flags and a complete local name."""
    ad = bytes([2, 0x01, 0x06]) + bytes([8, 0x09]) + b"Monitor"
    report = bytes([1, 0, 0]) + bytes.fromhex("c0ffee000001")[::-1] + bytes([len(ad)]) + ad
    params = bytes([0x02]) + report + bytes([0xC4])  # subevent, report, RSSI -60 dBm
    return bytes([0x3E, len(params)]) + params


def _btsnoop() -> bytes:
    """btsnoop, H4 datalink (1002): "btsnoop\\0", version 1; records of an event (flags 3)."""
    out = [b"btsnoop\0" + struct.pack(">II", 1, 1002)]
    pkt = b"\x04" + _le_advertising_report()
    for k in range(4):
        us = 1_700_000_000_000_000 + k * 1000 + _BTSNOOP_EPOCH_DELTA_US
        out.append(struct.pack(">IIIIq", len(pkt), len(pkt), 3, 0, us) + pkt)
    return b"".join(out)


def _pklg() -> bytes:
    """Apple PacketLogger: records of length, seconds, microseconds, type (1: event), packet."""
    pkt = _le_advertising_report()
    return b"".join(
        struct.pack(">III", 9 + len(pkt), 1_700_000_000 + k, 0) + b"\x01" + pkt for k in range(4)
    )


# --- the detection models -------------------------------------------------------------------------
def _models() -> None:
    """Flow records and monitored flows through every default detector: a learning period long
    enough for the Half-Space Trees to fill windows (learned in batches), then flows scored."""
    from medsentry.detect.engine import DetectionEngine
    from medsentry.detect.registry import default_detectors
    from medsentry.events.flow import FlowRecord
    from medsentry.events.telemetry import MonitoredFlow

    t0, step = 1_700_000_000 * 10**9, 10**9
    learn = 1_200  # flows in the learning period: several windows of 250
    engine = DetectionEngine(default_detectors(), None, learning_ns=learn * step, ledger=False)

    def events(i: int) -> list:
        ts = t0 + i * step
        client, server = f"10.0.{i % 7}.{10 + i % 50}", f"10.1.0.{1 + i % 5}"
        return [
            FlowRecord(
                ts_ns=ts, flow_id=f"warm{i:06d}", last_ns=ts + step // (2 + i % 5),
                transport="tcp", ip_version=4, client=client, server=server,
                client_port=40000 + i % 20000, server_port=(104, 2575, 443)[i % 3],
                packets_c2s=4 + i % 9, packets_s2c=3 + i % 7, bytes_c2s=400 + 37 * (i % 50),
                bytes_s2c=300 + 53 * (i % 40), payload_c2s=200 + 37 * (i % 50),
                payload_s2c=100 + 53 * (i % 40), tcp_flags_c2s=0x1B, tcp_flags_s2c=0x1B,
                iat_mean_us=1000.0 + i % 300, iat_std_us=50.0 + i % 20, iat_min_us=10.0,
                iat_max_us=5000.0 + i % 900, app_protocol=("dicom", "hl7-mllp", "tls")[i % 3],
                app_method="signature",
            ),
            MonitoredFlow(
                ts_ns=ts, flow_id=f"warm-m{i:06d}", client=client, server=server,
                client_port=40000 + i % 20000, server_port=1111, duration_s=0.5 + (i % 10) / 10,
                packets=8 + i % 5, bytes_c2s=500 + i % 300, bytes_s2c=400 + i % 200,
                load_c2s_bps=8000.0 + i % 700, load_s2c_bps=6000.0 + i % 500,
                rate_pps=16.0 + i % 4, iat_c2s_ms=60.0 + i % 9, iat_s2c_ms=55.0 + i % 7,
                jitter_c2s_ms=1.0 + (i % 5) / 5, jitter_s2c_ms=1.2 + (i % 3) / 3,
                max_size_c2s=120 + i % 40, max_size_s2c=110 + i % 30, min_size_c2s=60,
                min_size_s2c=60,
            ),
        ]  # fmt: skip

    batch: list = []
    for i in range(learn + 300):
        batch += events(i)
        if len(batch) >= 500:
            engine.process(batch)
            batch = []
    engine.process(batch)


# --- live capture ---------------------------------------------------------------------------------
def _live() -> str | None:
    """Datagrams captured on the loopback interface, through the pipeline as `monitor` runs
    them (a live batch's buffer is writable, a file's is not: other machine code); why not,
    when no live capture can be opened here."""
    from medsentry.capture.live import LiveSource
    from medsentry.errors import CaptureError
    from medsentry.pipeline import Pipeline, ScanConfig

    try:
        src = LiveSource("lo", block_size=1 << 16, block_count=4, block_timeout_ms=10,
                         duration=5.0, max_packets=4)  # fmt: skip
    except (CaptureError, OSError) as exc:  # no CAP_NET_RAW, no packet ring (a container)
        return str(exc)
    with src, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        stop = threading.Event()

        def send() -> None:  # until the capture has seen enough
            while not stop.wait(0.02):
                tx.sendto(b"medsentry warm-up", ("127.0.0.1", 9))  # discard (RFC 863)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            Pipeline(ScanConfig()).run_source(src, lambda events: None)
        finally:
            stop.set()
            sender.join()
    return None


# --- the whole warm-up ----------------------------------------------------------------------------
def compiled() -> dict[str, int]:
    """The kernels this process compiled because their cache had no machine code for the
    argument types (numba's per-dispatcher cache statistics), by module.function."""
    from numba.core.registry import CPUDispatcher

    out: dict[str, int] = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith("medsentry.") or mod is None:
            continue
        for fn_name, fn in vars(mod).items():
            if isinstance(fn, CPUDispatcher) and fn.__module__ == name:
                misses = sum(fn.stats.cache_misses.values())
                if misses:
                    out[f"{name}.{fn_name}"] = misses
    return dict(sorted(out.items()))


def warm(work: Path, say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Run every compiled path once with files under `work`; returns what was skipped, and why.

    The caller sets MEDSENTRY_HOME to a directory under `work` first (`main` does): the scans
    write a database, keys and an audit ledger there."""
    from medsentry.cli import main as cli
    from medsentry.demo.hospital import build

    work.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{work / 'warm.db'}"

    def scan(path: Path, *engines: str) -> None:
        args = ["scan", str(path), "--db", db, "-q"] + (["--engines", *engines] if engines else [])
        with open(os.devnull, "w") as devnull:
            stdout, sys.stdout = sys.stdout, devnull
            try:
                cli(args, standalone_mode=False)
            finally:
                sys.stdout = stdout

    demo = work / "demo-hospital.pcap"
    build(demo)
    frames = _pcap_frames(demo)
    say("scan: pcap, every engine")
    scan(demo)
    files = {
        "demo.pcapng": _pcapng(frames),
        "pktap.pcap": _pktap(frames[:40]),
        "pcapdroid.pcap": _pcapdroid(frames[:40]),
        "apple.pcapng": _apple_pcapng(frames[:40]),
        "hci.btsnoop": _btsnoop(),
        "hci.pklg": _pklg(),
    }
    for name, data in files.items():
        say(f"scan: {name}")
        (work / name).write_bytes(data)
        scan(work / name, "none")
    say("detection models: learning, then scoring")
    _models()
    say("live capture on lo")
    why = _live()
    return [] if why is None else [f"live capture: {why}"]


def keep_parsed_data(src: Path, dst: Path) -> int:
    """Copy the parsed data files the warm-up cached (medsentry.yamlcache, under cache dir `src`)
    into the user's cache dir `dst`: their first command reads them back instead of parsing
    them. Entries are named by the hash of their text, so a copy is never stale; each lands
    whole (os.replace) or not at all. Returns how many were kept; a cache that cannot be
    written keeps none, as the cache itself does."""
    kept = 0
    for entry in sorted((src / "yaml").glob("*.marshal")):
        target = dst / "yaml" / entry.name
        tmp = target.with_name(f".{entry.name}.{os.getpid()}")
        try:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(entry, tmp)
            os.replace(tmp, target)
            kept += 1
        except OSError:
            with contextlib.suppress(OSError):  # ENOTDIR, EACCES: nothing was written
                tmp.unlink()
    return kept


def main(argv: list[str] | None = None) -> int:
    """`python -m medsentry.warmup [-v] [WORKDIR]`: the skips and a count; -v: each step."""
    from medsentry import paths

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args
    args = [a for a in args if a != "-v"]
    users_cache = paths.cache_dir()  # before MEDSENTRY_HOME points at the warm-up's own home
    with tempfile.TemporaryDirectory(prefix="medsentry-warmup-") as tmp:
        work = Path(args[0]) if args else Path(tmp)
        os.environ["MEDSENTRY_HOME"] = str(work / "home")
        say = (lambda s: print(f"warm-up: {s}", flush=True)) if verbose else (lambda _: None)
        for note in warm(work, say=say):
            print(f"warm-up: skipped {note}", flush=True)
        kept = keep_parsed_data(paths.cache_dir(), users_cache)
        say(f"{kept} parsed data files kept in {users_cache}")
    done = compiled()
    print(f"warm-up: {sum(done.values())} kernel signatures compiled ({len(done)} kernels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
