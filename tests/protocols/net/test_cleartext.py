"""Cleartext credentials: ftplib against a pyftpdlib server on loopback (captured, checked with
tshark), real Telnet/POP3/IMAP/SNMP/FTP captures (nDPI corpus), RFC example dialogues; fuzzed.
Every test also checks that no password reached an event."""

from __future__ import annotations

import base64
import ftplib
import threading
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, free_port, run, tcpdump, tshark

from medsentry.events import encode_json
from medsentry.events.credentials import CleartextCredentials
from medsentry.protocols.base import ParseError
from medsentry.protocols.cleartext import (
    FtpDissector,
    ImapDissector,
    Pop3Dissector,
    TelnetDissector,
)
from medsentry.protocols.snmp import SnmpDissector

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

H = ctx_for().phi_hash


def _creds(ev: list) -> list[CleartextCredentials]:
    return [e for e in ev if isinstance(e, CleartextCredentials)]


def _no(secret: bytes, ev: list) -> None:
    assert secret not in b"".join(encode_json(e) for e in ev)


def _values(obj: object) -> list[str]:
    """Every string value of an event, field names left out (a password may be a common word)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _values(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _values(v)]
    return []


def _no_value(secret: str, ev: list) -> None:
    assert not [v for e in ev for v in _values(msgspec.to_builtins(e)) if secret in v]


@pytest.fixture(scope="module")
def ftp_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pyftpdlib")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    tmp = tmp_path_factory.mktemp("ftp")
    auth = DummyAuthorizer()
    auth.add_user("radtech", "Xr4y-pass", str(tmp), perm="elr")
    auth.add_anonymous(str(tmp))
    handler = type("H", (FTPHandler,), {"authorizer": auth})
    port = free_port()
    server = FTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    t.start()
    pcap = tmp / "ftp.pcap"
    try:
        with tcpdump(pcap, f"tcp port {port}"):
            for user, pw in (
                ("radtech", "Xr4y-pass"),
                ("radtech", "wrong-pass"),
                ("anonymous", "guest@"),
            ):
                f = ftplib.FTP()
                f.connect("127.0.0.1", port, timeout=5)
                try:
                    f.login(user, pw)
                    f.pwd()
                except ftplib.error_perm:
                    pass
                f.close()
    finally:
        server.close_all()
    return pcap


def test_ftp_logins(ftp_capture: Path) -> None:
    fls = sorted((f for f in flows(ftp_capture)), key=lambda f: f.items[0][2])
    ev = [e for fl in fls for e in run(FtpDissector(ctx_for(fl.endpoints)), fl.items)]
    assert [(c.username_hash, c.accepted, c.anonymous, c.password_sent) for c in _creds(ev)] == [
        (H("radtech"), True, False, True),
        (H("radtech"), False, False, True),
        (H("anonymous"), True, True, True),
    ]
    _no(b"Xr4y", ev)
    _no(b"radtech", ev)
    dec = f"tcp.port=={fls[0].server[1]},ftp"
    rows = tshark(ftp_capture, 'ftp.request.command == "USER"', "ftp.request.arg", decode_as=dec)
    assert [H(r[0]) for r in rows] == [c.username_hash for c in _creds(ev)]
    codes = tshark(
        ftp_capture,
        "ftp.response.code == 230 || ftp.response.code == 530",
        "ftp.response.code",
        decode_as=dec,
    )
    assert [r[0] == "230" for r in codes] == [c.accepted for c in _creds(ev)]


def _ndpi(ndpi_pcaps: Path, name: str, cls, *ports: int) -> list:
    return [
        e
        for fl in flows(ndpi_pcaps / name)
        if {fl.server[1], fl.client[1]} & set(ports)
        for e in run(cls(ctx_for(fl.endpoints)), fl.items, strict=False)
    ]


def test_ndpi_telnet_login(ndpi_pcaps: Path) -> None:
    """The OpenBSD login dialogue in telnet.pcap: "login: fake", "Password: user"."""
    ev = _ndpi(ndpi_pcaps, "telnet.pcap", TelnetDissector, 23)
    (c,) = _creds(ev)
    assert c.protocol == "telnet" and c.username_hash == H("fake") and c.password_sent
    _no(b"fake", ev)
    _no_value("user", ev)  # the password typed after "Password:"


def test_ndpi_pop3(ndpi_pcaps: Path) -> None:
    ev = _ndpi(ndpi_pcaps, "pop3.pcap", Pop3Dissector, 110)
    creds = _creds(ev)
    assert H("cicciopernacchio@mail.com") in {c.username_hash for c in creds}
    # one AUTH PLAIN the server refused ("-ERR authentication failed"), the others accepted
    assert sorted((c.mechanism, c.accepted) for c in creds) == [
        ("auth-plain", False),
        ("auth-plain", True),
        ("auth-plain", True),
        ("user-pass", True),
    ]
    assert H("digitalinvestigator@networksims.com") in {c.username_hash for c in creds}
    _no(b"pippozzo", ev)
    _no(b"napier", ev)


def test_ndpi_imap(ndpi_pcaps: Path) -> None:
    ev = _ndpi(ndpi_pcaps, "imap.pcap", ImapDissector, 143)
    rows = tshark(ndpi_pcaps / "imap.pcap", 'imap.request contains "LOGIN"', "imap.request")
    user = rows[0][0].split()[2]
    (c,) = _creds(ev)
    assert c.username_hash == H(user) and c.mechanism == "login" and c.accepted is True
    _no(rows[0][0].split()[3].encode(), ev)


def test_ndpi_snmp_community(ndpi_pcaps: Path) -> None:
    ev = _ndpi(ndpi_pcaps, "snmp.pcap", SnmpDissector, 161, 162)
    rows = tshark(ndpi_pcaps / "snmp.pcap", "snmp.community", "snmp.community")
    communities = {r[0] for r in rows}
    assert {c.username_hash for c in _creds(ev)} == {H(x) for x in communities}
    assert all(c.default_credential for c in _creds(ev)) == (communities <= {"public", "private"})
    _no(b"public", ev)


def test_ndpi_ftp(ndpi_pcaps: Path) -> None:
    ev = _ndpi(ndpi_pcaps, "ftp.pcap", FtpDissector, 21)
    (c,) = _creds(ev)
    assert c.anonymous and c.username_hash == H("anonymous")
    rows = tshark(ndpi_pcaps / "ftp.pcap", 'ftp.request.command == "PASS"', "ftp.request.arg")
    (password,) = {r[0] for r in rows}
    _no(password.encode(), ev)


def test_rfc1939_apop_and_sasl() -> None:
    """RFC 1939 §7 APOP example; RFC 4616 PLAIN; RFC 1939 USER/PASS rejected."""
    d = Pop3Dissector(ctx_for())
    d.feed(1, b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n", 1)
    d.feed(0, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", 2)
    ev = d.feed(1, b"+OK mrose's maildrop has 2 messages (320 octets)\r\n", 3)
    assert [(c.mechanism, c.username_hash, c.password_sent, c.accepted) for c in ev] == [
        ("apop", H("mrose"), False, True)
    ]
    plain = base64.b64encode(b"\0tim\0tanstaaftanstaaf")
    d = Pop3Dissector(ctx_for())
    d.feed(0, b"AUTH PLAIN\r\n", 1)
    d.feed(1, b"+ \r\n", 2)
    d.feed(0, plain + b"\r\n", 3)
    ev = d.feed(1, b"-ERR nope\r\n", 4)
    assert [(c.mechanism, c.username_hash, c.accepted) for c in ev] == [
        ("auth-plain", H("tim"), False)
    ]
    _no(b"tanstaaf", ev)


def test_imap_literal_quoted_and_starttls() -> None:
    d = ImapDissector(ctx_for())
    d.feed(0, b'a001 LOGIN "fred \\"x\\"" "open sesame"\r\n', 1)
    ev = d.feed(1, b"a001 OK LOGIN completed\r\n", 2)
    assert [c.username_hash for c in ev] == [H('fred "x"')]
    _no(b"sesame", ev)
    d = ImapDissector(ctx_for())
    d.feed(0, b"a002 LOGIN {5}\r\n", 1)
    d.feed(0, b"smith {6}\r\n", 2)
    ev = d.feed(1, b"a002 NO bad\r\n", 3)
    assert [(c.username_hash, c.accepted) for c in ev] == [(H("smith"), False)]
    d = ImapDissector(ctx_for())
    d.feed(0, b"a1 STARTTLS\r\n", 1)
    d.feed(1, b"a1 OK Begin TLS\r\n", 2)
    assert d.feed(0, b"a2 LOGIN bob secret\r\n", 3) == [] and d.close(4) == []


def test_snmp_v2c_ber_built_by_hand() -> None:
    """RFC 3416 GetRequest, community "private" (a default): BER per X.690."""
    oid = bytes.fromhex("06082b06010201010100")  # 1.3.6.1.2.1.1.1.0 sysDescr.0
    varbind = b"\x30" + bytes([len(oid) + 2]) + oid + b"\x05\x00"
    vbl = b"\x30" + bytes([len(varbind)]) + varbind
    pdu_body = b"\x02\x01\x07\x02\x01\x00\x02\x01\x00" + vbl
    pdu = b"\xa0" + bytes([len(pdu_body)]) + pdu_body
    body = b"\x02\x01\x01\x04\x07private" + pdu
    msg = b"\x30" + bytes([len(body)]) + body
    d = SnmpDissector(ctx_for())
    assert d.feed(0, msg, 1) == []
    resp = msg.replace(b"\xa0", b"\xa2", 1)
    ev = d.feed(1, resp, 2)
    assert [(c.username_hash, c.default_credential, c.accepted) for c in ev] == [
        (H("private"), True, True)
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=200)), max_size=12),
    st.sampled_from(
        [
            b"USER a\r\nPASS b\r\n",
            b"a LOGIN {3}\r\n",
            b"AUTH LOGIN\r\n",
            b"login: ",
            b"\xff\xfa\x18",
            b"0\x82\x01\x00\x02\x01\x01\x04",
        ]
    ),
)
def test_fuzz_all(chunks: list[tuple[int, bytes]], seed: bytes) -> None:
    for cls in (FtpDissector, Pop3Dissector, ImapDissector, TelnetDissector, SnmpDissector):
        d = cls(ctx_for())
        try:
            for direction, data in [(0, seed), *chunks]:
                d.feed(direction, data, 1)
            d.close(2)
        except ParseError:
            pass
        for b in getattr(d, "bufs", ()):
            assert len(b) <= 8192 + 200
