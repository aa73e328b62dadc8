"""The app behind each connection, from captures that name it: PCAPdroid (Android) with its
trailer or its pcapng blocks, Apple PKTAP and Apple pcapng process blocks (macOS, iOS).

Real TLS traffic (app_captures.py) written in each container as its writer lays it out; the
per-packet attribution is checked against tshark's own dissection where tshark has one (PKTAP
header fields, pcapng packet comments, the Ethernet trailer bytes); the inventory then names the
phone a companion-app host rather than the medical device its app talks for.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from app_captures import (
    CGM_APP,
    CGM_COMMAND,
    CGM_PACKAGE,
    CGM_SERVER,
    CGM_UID,
    DAEMON,
    PHONE,
    WEB_APP,
    WEB_COMMAND,
    WEB_PACKAGE,
    WEB_UID,
    Frame,
    apple_pcapng,
    pcapdroid_pcapng,
    pcapdroid_trailer,
    pktap,
    record,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture.reader import open_capture
from medsentry.errors import CaptureError
from medsentry.events.flow import FlowRecord
from medsentry.events.process import ProcessTraffic
from medsentry.pipeline import Pipeline, ScanConfig

pytestmark = pytest.mark.xdist_group("net_live_captures")  # loopback captures: one worker

KEY = b"k" * 32
WRITERS = {
    "pcapdroid-trailer": pcapdroid_trailer,
    "pcapdroid-pcapng": pcapdroid_pcapng,
    "pktap": pktap,
    "apple-pcapng": apple_pcapng,
}


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Frame]:
    out = record(tmp_path_factory.mktemp("apps"))
    assert {f.app for f in out} == {"cgm", "web"} and any(not f.sent for f in out)
    return out


@pytest.fixture(scope="module")
def files(frames: list[Frame], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("containers")
    return {name: w(frames, d / f"{name}.cap") for name, w in WRITERS.items()}


def scan(path: Path) -> list:
    events: list = []
    Pipeline(ScanConfig(phi_key=KEY)).scan_files([path], events.extend)
    return events


def per_packet(path: Path) -> list[tuple[str | None, int | None, int]]:
    """(process name, its id, direction) of every packet, as the reader attributes them."""
    out: list[tuple[str | None, int | None, int]] = []
    with open_capture(path) as r:
        for rb in r:
            pr = rb.processes
            assert pr is not None
            for p, d in zip(pr.proc.tolist(), pr.direction.tolist(), strict=True):
                info = pr.table[p] if p >= 0 else None
                out.append((info.name if info else None, info.ident if info else None, d))
    return out


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", "-Y", "tcp"]
    for f in fields:
        args += ["-e", f]
    rows = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [r.split("\t") for r in rows.splitlines()]


EXPECTED = {  # name -> ({process: (label, via)}, the capture gives the direction)
    "pcapdroid-trailer": ({CGM_PACKAGE: (None, None), WEB_PACKAGE: (None, None)}, False),
    "pcapdroid-pcapng": ({CGM_PACKAGE: (CGM_APP, None), WEB_PACKAGE: (WEB_APP, None)}, False),
    "pktap": ({CGM_COMMAND: (None, DAEMON), WEB_COMMAND: (None, None)}, True),
    "apple-pcapng": ({CGM_COMMAND: (None, DAEMON), WEB_COMMAND: (None, None)}, True),
}


SOURCES = {
    "pcapdroid-trailer": "pcapdroid",
    "pcapdroid-pcapng": "pcapdroid",
    "pktap": "pktap",
    "apple-pcapng": "apple-pcapng",
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_one_event_per_connection_and_app(files: dict[str, Path], name: str) -> None:
    events = scan(files[name])
    ev = [e for e in events if isinstance(e, ProcessTraffic)]
    procs, directed = EXPECTED[name]
    assert {e.process: (e.label, e.via) for e in ev} == procs
    assert len(ev) == 2  # two connections, one app each
    for e in ev:
        assert e.endpoints.client == PHONE and e.endpoints.server_port == 443
        assert e.endpoints.client_port > 1024 and e.endpoints.transport == "tcp"
        assert e.local_known is directed
        assert e.source == SOURCES[name]
    cgm = next(e for e in ev if e.process in (CGM_PACKAGE, CGM_COMMAND))
    assert cgm.endpoints.server == CGM_SERVER
    # each names the flow record of its connection, told before that record
    flows = {e.flow_id: (i, e) for i, e in enumerate(events) if isinstance(e, FlowRecord)}
    for e in ev:
        i, f = flows[e.flow_id]
        assert events.index(e) < i
        assert {f.client, f.server} == {e.endpoints.client, e.endpoints.server}
        assert {f.client_port, f.server_port} == {e.endpoints.client_port, 443}
    assert len({e.flow_id for e in ev}) == 2


def test_pktap_matches_tshark(files: dict[str, Path]) -> None:
    """pth_comm / pth_ecomm / pth_flags as tshark's PKTAP dissector reads them, packet by
    packet: the effective process when there is one, and the direction."""
    mine = per_packet(files["pktap"])
    rows = tshark_fields(files["pktap"], "pktap.cmdname", "pktap.ecmdname", "pktap.flags")
    assert len(rows) == len(mine) > 0
    for (name, _, d), (comm, ecomm, flags) in zip(mine, rows, strict=True):
        assert name == (ecomm or comm)
        assert d == {1: 1, 2: 2}[int(flags, 16) & 3]


def test_pcapdroid_pcapng_matches_tshark(files: dict[str, Path]) -> None:
    """The uid of every packet is its "u-<uid>" comment as tshark shows it, and the Custom
    Block is PCAPdroid's (tshark's frame.cb_pen)."""
    mine = per_packet(files["pcapdroid-pcapng"])
    rows = tshark_fields(files["pcapdroid-pcapng"], "frame.comment")
    assert [f"u-{uid}" for _, uid, _ in mine] == [r[0] for r in rows]
    pens = subprocess.run(
        ["tshark", "-r", str(files["pcapdroid-pcapng"]), "-T", "fields", "-e", "frame.cb_pen"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert pens == ["62652", "62652"]  # one uid map per app
    assert {name for name, _, _ in mine} == {CGM_PACKAGE, WEB_PACKAGE}


def test_pcapdroid_trailer_matches_tshark(files: dict[str, Path]) -> None:
    """The trailer as tshark shows it (Ethernet trailer bytes): magic, uid, app name."""
    mine = per_packet(files["pcapdroid-trailer"])
    rows = tshark_fields(files["pcapdroid-trailer"], "eth.trailer")
    assert len(rows) == len(mine) > 0
    for (name, uid, _), (trailer,) in zip(mine, rows, strict=True):
        at = trailer.index("01072021")  # after the alignment padding
        raw = bytes.fromhex(trailer[at:])
        assert int.from_bytes(raw[4:8], "big") == uid
        assert raw[8:28].split(b"\0")[0].decode() == name
    assert {uid for _, uid, _ in mine} == {CGM_UID, WEB_UID}


def test_apple_pcapng_read_by_tshark_too(files: dict[str, Path]) -> None:
    """tshark (4.0) does not dissect Apple's Process Information Blocks; it reads the same
    packets (ports) around them, and ours names each one's process."""
    mine = per_packet(files["apple-pcapng"])
    rows = tshark_fields(files["apple-pcapng"], "tcp.srcport")
    assert len(rows) == len(mine)
    assert {name for name, _, _ in mine} == {CGM_COMMAND, WEB_COMMAND}
    assert all(d in (1, 2) for _, _, d in mine)


def test_ordinary_captures_name_no_process(frames: list[Frame], tmp_path: Path) -> None:
    """Zeroed MACs alone (a loopback capture) are not PCAPdroid's trailer."""
    from app_captures import _pcap

    plain = tmp_path / "plain.pcap"
    plain.write_bytes(_pcap(1, [(f.ts_us, f.data) for f in frames]))
    with open_capture(plain) as r:
        assert all(rb.processes is None for rb in r)
    assert not [e for e in scan(plain) if isinstance(e, ProcessTraffic)]


@pytest.mark.parametrize("name", list(WRITERS))
def test_inventory_names_the_companion_app_host(
    files: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """The phone that runs a CGM app and talks to Dexcom's cloud is a companion-app host: not a
    Dexcom CGM (which is what its cloud traffic alone would say), and its app is the evidence."""
    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    eng = InventoryEngine()
    eng.feed(scan(files[name]))
    with open_store(f"sqlite:///{tmp_path / 'inv.db'}") as store:
        eng.finish(store, "apps")
        devices = {d.device_id: d for d in load_devices(store)}
    phone = devices[f"ip:{PHONE}"]
    assert phone.category is not None
    assert phone.category.value == "remote-monitoring.companion-app"
    assert phone.vendor is None or phone.vendor.value != "Dexcom"
    sources = {e.source for e in phone.category.evidence}
    assert sources & {"app.package", "app.name", "app.process"}
    if name.startswith("pcapdroid"):
        assert phone.os is not None and phone.os.value == "Android"


def test_without_app_names_the_phone_looks_like_the_device(
    frames: list[Frame], tmp_path: Path
) -> None:
    """The same traffic without the app names: the cloud rule alone calls the host a Dexcom
    CGM. This is what the attribution corrects (and why it is worth reading)."""
    from app_captures import _pcap

    from medsentry.inventory.engine import InventoryEngine
    from medsentry.inventory.store import load_devices
    from medsentry.store import open_store

    plain = tmp_path / "plain.pcap"
    plain.write_bytes(_pcap(1, [(f.ts_us, f.data) for f in frames]))
    eng = InventoryEngine()
    eng.feed(scan(plain))
    with open_store(f"sqlite:///{tmp_path / 'inv.db'}") as store:
        eng.finish(store, "plain")
        phone = {d.device_id: d for d in load_devices(store)}[f"ip:{PHONE}"]
    assert phone.vendor is not None and phone.vendor.value == "Dexcom"


@pytest.mark.parametrize("name", ["pcapdroid-pcapng", "pktap"])
def test_flows_listing_names_the_app(files: dict[str, Path], name: str, db_url: str) -> None:
    """`medsentry flows` shows the app behind each flow the capture names it for (the app
    column appears only then) and `--app` selects them by part of a name, in any case, on
    SQLite and PostgreSQL alike."""
    import json

    from click.testing import CliRunner

    from medsentry.cli import main as cli

    run = CliRunner().invoke
    assert run(cli, ["scan", str(files[name]), "--db", db_url, "-q"]).exit_code == 0
    res = run(cli, ["flows", "--db", db_url, "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    droid = name == "pcapdroid-pcapng"
    cgm = "Dexcom G7 (com.dexcom.g7)" if droid else "Dexcom G7 via nsurlsessiond"
    web = "Chrome (com.android.chrome)" if droid else "Safari"
    apps = {(r["server"], r["server_port"]): r["app"] for r in rows}
    assert apps[(CGM_SERVER, 443)] == cgm
    assert sorted(a for a in apps.values() if a) == sorted([cgm, web])
    for query in ("DEXCOM", "g7", "dexcom g"):
        res = run(cli, ["flows", "--db", db_url, "--app", query, "--format", "json"])
        assert [(r["server"], r["app"]) for r in json.loads(res.output)] == [(CGM_SERVER, cgm)]
    res = run(cli, ["flows", "--db", db_url, "--app", "100%_"])  # LIKE characters are literal
    assert res.exit_code == 0 and "0 flows" in res.output
    table = run(cli, ["flows", "--db", db_url]).output
    assert " app " in table and "Dexcom G7" in table
    res = run(cli, ["flows", "--db", db_url, "--app", " "])
    assert res.exit_code == 2 and "--app is empty" in res.output


def test_findings_evidence_names_the_app(tmp_path: Path) -> None:
    """The CGM app also sends its Basic credentials over plain HTTP: the finding's evidence
    names the app that sent them (JSON and `findings show`)."""
    import json

    from click.testing import CliRunner

    from medsentry.cli import main as cli

    cap = pcapdroid_pcapng(record(tmp_path, cleartext=True), tmp_path / "clear.pcapng")
    db = f"sqlite:///{tmp_path / 'f.db'}"
    run = CliRunner().invoke
    assert run(cli, ["scan", str(cap), "--db", db, "-q"]).exit_code == 0
    found = json.loads(run(cli, ["findings", "--db", db, "--format", "json"]).output)
    basic = [f for f in found if f["type"] == "http-basic-cleartext"]
    assert len(basic) == 1
    shown = run(cli, ["findings", "show", basic[0]["finding_id"], "--db", db, "--format", "json"])
    evidence = json.loads(shown.output)["evidence"]
    assert evidence and all(e["app"] == f"{CGM_APP} ({CGM_PACKAGE})" for e in evidence)
    assert all(e["server"] == CGM_SERVER and e["server_port"] == 80 for e in evidence)
    text = run(cli, ["findings", "show", basic[0]["finding_id"], "--db", db]).output
    assert f"[app: {CGM_APP} ({CGM_PACKAGE})]" in text


def test_flows_listing_of_an_ordinary_capture_has_no_app_column(
    frames: list[Frame], tmp_path: Path
) -> None:
    from app_captures import _pcap
    from click.testing import CliRunner

    from medsentry.cli import main as cli

    plain = tmp_path / "plain.pcap"
    plain.write_bytes(_pcap(1, [(f.ts_us, f.data) for f in frames]))
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert CliRunner().invoke(cli, ["scan", str(plain), "--db", db, "-q"]).exit_code == 0
    table = CliRunner().invoke(cli, ["flows", "--db", db]).output
    assert "2 flows" in table and " app " not in table


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_hostile_metadata(files: dict[str, Path], tmp_path_factory, data) -> None:
    """Any bytes in the process metadata (options, PIBs, Custom Blocks, trailers, PKTAP
    headers): the read ends with packets or a CaptureError, never another exception."""
    name = data.draw(st.sampled_from(list(WRITERS)))
    raw = bytearray(files[name].read_bytes())
    rnd = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    for _ in range(data.draw(st.integers(1, 24))):
        raw[rnd.randrange(24, len(raw))] = rnd.randrange(256)
    path = tmp_path_factory.mktemp("fuzz") / "f.cap"
    path.write_bytes(bytes(raw))
    try:
        with open_capture(path) as r:
            for rb in r:
                if rb.processes is not None:
                    pr = rb.processes
                    assert pr.proc.shape == rb.off.shape == pr.direction.shape
                    assert int(pr.proc.max(initial=-1)) < len(pr.table)
        scan(path)
    except CaptureError:
        pass


def test_more_process_blocks_than_read_attribute_nothing(frames: list[Frame], tmp_path: Path):
    """Past the per-window limit of metadata blocks the PIB indices can no longer be followed:
    packets are left unattributed rather than given to the wrong process."""
    import struct

    from app_captures import _block, _epb, _opt, _shb

    from medsentry.capture.processes import MAX_META_BLOCKS

    out = [_shb(), _block(1, struct.pack("<HHI", 1, 0, 65535))]
    many = MAX_META_BLOCKS + 10
    out += [_block(0x80000001, struct.pack("<I", i) + _opt(2, b"p%d" % i)) for i in range(many)]
    out += [_epb(0, f.ts_us, f.data, _opt(0x8001, struct.pack("<I", many - 1))) for f in frames[:4]]
    path = tmp_path / "many.pcapng"
    path.write_bytes(b"".join(out))
    names = [name for name, _, _ in per_packet(path)]
    assert names == [None] * 4
