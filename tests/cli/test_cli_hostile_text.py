"""Text chosen by whoever wrote a packet or a document reaches the analyst's terminal as text.

An ESC sequence (ECMA-48 CSI/OSC) in a CMMS field, an HL7 application name or a file name must
not retitle, recolour or clear the terminal; "[/bold]" must not be read as rich markup (it
stopped the listing with a MarkupError); and a NUL (U+0000), which PostgreSQL text cannot hold,
must not turn an import into an internal error (it is stored as U+FFFD there).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.table import Table

from medsentry.cli import _load, main
from medsentry.cli.terminal import console, printable

_load()
HOSTILE = "GE\x1b]0;owned\x07 \x1b[2J\x1b[31mRED\r[/bold] \u202eevil\x9b31m\x7f"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_printable_shows_controls_as_escapes() -> None:
    assert printable("plain text, Umlaut ä, 日本, tab\tand\nnewline") == (
        "plain text, Umlaut ä, 日本, tab\tand\nnewline"
    )
    out = printable(HOSTILE)
    assert not any(ch in out for ch in "\x1b\x07\r\u202e\x9b\x7f")
    for shown in ("\\x1b]0;owned\\x07", "\\x1b[2J", "\\x0d", "\\u202e", "\\x9b", "\\x7f"):
        assert shown in out
    assert printable("\x00") == "\\x00"


def test_console_reads_no_markup_and_prints_no_control(capsys: pytest.CaptureFixture) -> None:
    table = Table()
    table.add_column("vendor")
    table.add_row(HOSTILE)
    con = console(width=200)
    con.print(table)
    con.print(f"plain {HOSTILE}")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert out.count("[/bold]") == 2 and out.count("\\x1b[2J") == 2


def _hostile_cmms(path: Path) -> Path:
    path.write_text(
        "Asset Tag,MAC,Manufacturer,Model,Location\n"
        f'BME-1,00:1b:2c:3d:4e:5f,"{HOSTILE}",Alaris\x00 8015,"ICU [/x] bed 4"\n',
        encoding="utf-8",
    )
    return path


def test_hostile_cmms_import_and_listing(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    src = _hostile_cmms(tmp_path / "assets.csv")
    r = runner.invoke(main, ["inventory", "import", str(src), "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "[/bold]" in r.output and "\\x1b[2J" in r.output
    r = runner.invoke(main, ["inventory", "reconcile", "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "ICU [/x] bed 4" in r.output
    # the JSON keeps the values themselves (RFC 8259 §7 escapes the C0 controls)
    r = runner.invoke(main, ["inventory", "export", "--db", db_url, "--format", "json"])
    assert r.exit_code == 0, r.output
    row = next(a for a in json.loads(r.output) if a.get("asset_tag") == "BME-1")
    assert row["vendor"].startswith("GE\x1b]0;owned") and "[/bold]" in row["vendor"]
    nul = "\ufffd" if db_url.startswith("postgresql") else "\x00"  # PostgreSQL text holds no NUL
    assert row["model"] == f"Alaris{nul} 8015"


def test_csaf_with_nul_in_title_imports(db_url: str, tmp_path: Path) -> None:
    files = sorted((SHARED / "cisa_csaf_icsma" / "csaf_files").rglob("*.json"))
    if not files:
        pytest.skip("CISA CSAF advisories not found beside the checkout")
    doc = json.loads(files[0].read_text(encoding="utf-8"))
    doc["document"]["title"] += "\u0000 \x1b[2J"
    src = tmp_path / "advisory.json"
    src.write_text(json.dumps(doc), encoding="utf-8")
    r = CliRunner().invoke(main, ["intel", "import", str(src), "--db", db_url])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["intel", "status", "--db", db_url, "--format", "json"])
    assert r.exit_code == 0, r.output


def test_error_naming_a_hostile_file_name(tmp_path: Path) -> None:
    missing = tmp_path / "capture\x1b[2J[/b].pcap"
    r = CliRunner().invoke(main, ["scan", str(missing), "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert r.exit_code == 2
    assert "\x1b" not in r.stderr and "\\x1b[2J[/b].pcap" in r.stderr


def test_hostile_hl7_application_scanned_and_shown(db_url: str, tmp_path: Path) -> None:
    """An HL7 sender over a real loopback TCP connection names its application with ESC
    sequences, markup and a NUL (MSH-3): the scan stores it, `device` shows it as escapes."""
    import socket
    import sys
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocols" / "hl7"))
    from hl7_build import adt_a01, mllp
    from netcap import tcpdump

    from freeport import bound_socket

    msg = adt_a01().replace("MSH|^~\\&|", "MSH|^~\\&|EPIC\x00\x1b]0;owned\x07[/b]|", 1)
    srv = bound_socket(socket.SOCK_STREAM)
    port = srv.getsockname()[1]
    srv.listen(1)

    def receive() -> None:
        conn, _ = srv.accept()
        with conn:
            got = b""
            while not got.endswith(b"\x1c\r"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk

    pcap = tmp_path / "hl7.pcap"
    with tcpdump(pcap, f"tcp port {port}"):
        t = threading.Thread(target=receive)
        t.start()
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(mllp(msg))
        t.join(10)
    srv.close()
    runner = CliRunner()
    r = runner.invoke(main, ["scan", str(pcap), "--db", db_url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["device", "127.0.0.1", "--db", db_url])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "EPIC\\x00" in r.output  # shown as escapes (the cell is cut to its column)


def test_csv_export_runs_no_formula_and_reads_back(db_url: str, tmp_path: Path) -> None:
    """OWASP CSV injection: a cell starting with = + - @ would run as a formula when the export
    is opened in a spreadsheet; it is written with a leading apostrophe, which import removes."""
    import csv
    import io

    vendor = '=HYPERLINK("http://attacker.example/","click")'
    src = tmp_path / "assets.csv"
    src.write_text(
        "Asset Tag,Manufacturer,Model,Location\n"
        f'BME-7,"{vendor.replace(chr(34), chr(34) * 2)}",+1-555,@ward 3\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(main, ["inventory", "import", str(src), "--db", db_url]).exit_code == 0
    r = runner.invoke(main, ["inventory", "export", "--db", db_url, "--format", "csv"])
    assert r.exit_code == 0, r.output
    row = next(x for x in csv.DictReader(io.StringIO(r.output)) if x["asset_tag"] == "BME-7")
    assert row["vendor"] == "'" + vendor and row["model"] == "'+1-555"
    assert row["location"] == "'@ward 3"
    assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    # the export imports back to the same values
    again = tmp_path / "export.csv"
    again.write_text(r.output, encoding="utf-8")
    url2 = f"sqlite:///{tmp_path / 'again.db'}"
    assert runner.invoke(main, ["inventory", "import", str(again), "--db", url2]).exit_code == 0
    r = runner.invoke(main, ["inventory", "export", "--db", url2, "--format", "json"])
    back = next(a for a in json.loads(r.output) if a.get("asset_tag") == "BME-7")
    assert (back["vendor"], back["model"], back["location"]) == (vendor, "+1-555", "@ward 3")
