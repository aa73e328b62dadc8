"""TLS: python ssl client and server (self-signed certificate made with `cryptography`) on
loopback, TLS 1.2 and 1.3, captured with tcpdump and cross-checked with tshark; JA4 checked
against the FoxIO specification's worked example and nDPI's values on real captures."""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, free_port, run, self_signed, tcpdump, tshark

from medsentry.events.tls import TlsCertificate, TlsClientHello, TlsServerHello
from medsentry.protocols import ja4 as fp
from medsentry.protocols.base import ParseError
from medsentry.protocols.tls import TlsDissector

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")


def test_ja4_spec_example() -> None:
    """The worked example of JA4.md (FoxIO), with GREASE values added that must be ignored."""
    cs = [
        0x1301,
        0x1302,
        0x1303,
        0xC02B,
        0xC02F,
        0xC02C,
        0xC030,
        0xCCA9,
        0xCCA8,
        0xC013,
        0xC014,
        0x009C,
        0x009D,
        0x002F,
        0x0035,
    ]
    ex = [
        0x001B,
        0x0000,
        0x0033,
        0x0010,
        0x4469,
        0x0017,
        0x002D,
        0x000D,
        0x0005,
        0x0023,
        0x0012,
        0x002B,
        0xFF01,
        0x000B,
        0x000A,
        0x0015,
    ]
    sig = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    j, raw = fp.ja4(
        0x0303, [0x0A0A, *cs], [0x1A1A, *ex, 0x2A2A], [0x3A3A, 0x0304, 0x0303], b"h2", sig
    )
    assert j == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert raw == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,"
        "c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,"
        "4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
    )
    # no signature algorithms: the list ends without an underscore (JA4.md)
    assert fp.ja4(0x0303, cs, ex, [0x0304], b"h2", [])[0].endswith("_6d807ffa2a79")
    # ALPN rules: http/1.1 -> h1, non-alphanumeric -> hex first/last, none -> 00
    assert fp.ja4(0x0303, cs, [0x0010], None, b"http/1.1", [])[0][8:10] == "h1"
    assert fp.ja4(0x0303, cs, [0x0010], None, b"\xab\xcd", [])[0][8:10] == "ad"
    assert fp.ja4(0x0303, cs, [0x0010], None, b"\x30\xab\xcd\x31", [])[0][8:10] == "01"
    assert fp.ja4(0x0301, [], [], None, None, [])[0] == "t10i000000_000000000000_000000000000"


def test_ja4s_spec_example() -> None:
    assert fp.ja4s(0x0303, None, 0xC030, [0x0005, 0x0017, 0xFF01, 0x0000], None) == (
        "t120400_c030_4e8089b08790"
    )


# A real Chrome ClientHello (to content-autofill.googleapis.com) and a Google ServerHello, as
# record bytes; they are stream 29 of FoxIO's ja4 test capture tls-handshake.pcapng, whose
# published snapshot (rust/ja4/src/snapshots/ja4__insta@tls-handshake.pcapng.snap) gives
# ja4 t13d1516h2_8daaf6152771_e5627efa2ab1 and ja4s t130200_1301_234ea6891581. The hex is the
# sample used by CyberChef's JA4/JA4S operation tests; the padding extension (21) is 184 zeros.
CHROME_CLIENT_HELLO = bytes.fromhex(
    "1603010200010001fc0303b2c03e7ba990ef540c316a665d4d925f8e9079ac4b15687e587dc99016e75a6c20"
    "d0b0099243c9296a0c84153ea4ada7d87ad017f4211c2ea1350b0b3cc5514d5f00205a5a130113021303c02b"
    "c02fc02cc030cca9cca8c013c014009c009d002f003501000193fafa000000000024002200001f636f6e7465"
    "6e742d6175746f66696c6c2e676f6f676c65617069732e636f6d0033002b00293a3a000100001d0020fb2cd8"
    "ef3d605b96ab03119ec4f30a6e2088cb1af86c41a81feace8706068c50000d00120010040308040401050308"
    "0505010806060100230000000b00020100ff01000100000a000a00083a3a001d00170018001b000302000244"
    "690005000302683200120000002d000201010010000e000c02683208687474702f312e310005000501000000"
    "00002b0007060a0a03040303001700001a1a000100001500b8"
) + bytes(184)
GOOGLE_SERVER_HELLO = bytes.fromhex(
    "160303007a020000760303236d214556452c55a0754487e64b1a8b0262c50ba23004c9d504166a6de3439920"
    "d0b0099243c9296a0c84153ea4ada7d87ad017f4211c2ea1350b0b3cc5514d5f130100002e00330024001d00"
    "2099e3cc43a2c9941ae75af1b2c7a629bee3ee7031973cad85c82f2f23677fb244002b00020304"
)


def test_ja4_of_real_hellos_matches_foxio_published_values() -> None:
    d = TlsDissector(ctx_for())
    (ch,) = d.feed(0, CHROME_CLIENT_HELLO[:300], 1) + d.feed(0, CHROME_CLIENT_HELLO[300:], 2)
    assert isinstance(ch, TlsClientHello)
    assert ch.server_name == "content-autofill.googleapis.com"
    assert ch.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ch.alpn == ["h2", "http/1.1"] and ch.max_version == "TLS 1.3"
    assert 0x5A5A in ch.cipher_suites  # GREASE kept in the lists, ignored by JA4
    (sh,) = d.feed(1, GOOGLE_SERVER_HELLO, 3)
    assert isinstance(sh, TlsServerHello)
    assert sh.ja4s == "t130200_1301_234ea6891581"
    assert sh.cipher_name == "TLS_AES_128_GCM_SHA256" and sh.selected_version == 0x0304


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    return self_signed(
        tmp,
        "infusion-gw.example",
        org="Acme Medical",
        serial=0x1234ABCD,
        not_before=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dns=("infusion-gw.example",),
        ips=("127.0.0.1",),
    )


@pytest.fixture(scope="module")
def tls_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("tls")
    cpath, kpath = _self_signed(tmp)
    port = free_port()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cpath, kpath)
    sctx.set_alpn_protocols(["http/1.1"])
    lsock = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        for _ in range(2):
            conn, _ = lsock.accept()
            try:
                with sctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(100)
                    s.sendall(b"pong")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    pcap = tmp / "tls.pcap"
    with tcpdump(pcap, f"tcp port {port}"):
        for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.load_verify_locations(cpath)
            cctx.maximum_version = maxv
            cctx.set_alpn_protocols(["h2", "http/1.1"])
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                cctx.wrap_socket(raw, server_hostname="infusion-gw.example") as s,
            ):
                s.sendall(b"ping")
                s.recv(100)
    t.join(5)
    lsock.close()
    return pcap


def _tls_events(pcap: Path) -> list[list]:
    return [
        run(TlsDissector(ctx_for(fl.endpoints)), fl.items, strict=False)
        for fl in sorted(flows(pcap), key=lambda f: f.items[0][2])
    ]


def test_loopback_tls12_and_13(tls_capture: Path) -> None:
    per_flow = _tls_events(tls_capture)
    assert len(per_flow) == 2
    for ev, version in zip(per_flow, ("TLS 1.2", "TLS 1.3"), strict=True):
        ch = next(e for e in ev if isinstance(e, TlsClientHello))
        sh = next(e for e in ev if isinstance(e, TlsServerHello))
        assert ch.server_name == "infusion-gw.example"
        assert ch.alpn == ["h2", "http/1.1"]
        assert ch.ja4.startswith(("t12d", "t13d")) and ch.ja4[8:10] == "h2"
        assert sh.version == version
        # TLS 1.3 moves the ALPN choice into the encrypted EncryptedExtensions (RFC 8446 §4.3.1)
        assert sh.alpn == ("http/1.1" if version == "TLS 1.2" else None)
        assert sh.cipher_name is not None
        certs = [e for e in ev if isinstance(e, TlsCertificate)]
        if version == "TLS 1.2":
            (c,) = certs
            assert c.subject_cn == "infusion-gw.example" and c.subject_o == "Acme Medical"
            assert c.self_signed and c.issuer == c.subject
            assert c.san_dns == ["infusion-gw.example"] and c.san_ip == ["127.0.0.1"]
            assert c.serial == "1234abcd" and c.public_key == "EC-secp256r1"
            assert c.not_before == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        else:
            assert certs == []  # TLS 1.3 encrypts the Certificate message


def test_cross_check_with_tshark(tls_capture: Path) -> None:
    per_flow = _tls_events(tls_capture)
    hellos = [next(e for e in ev if isinstance(e, TlsClientHello)) for ev in per_flow]
    rows = tshark(
        tls_capture,
        "tls.handshake.type == 1",
        "tls.handshake.extensions_server_name",
        "tls.handshake.ciphersuite",
        "tls.handshake.extension.type",
        "tls.handshake.sig_hash_alg",
        "tls.handshake.extensions.supported_version",
        "tls.handshake.version",
        "tls.handshake.extensions_alpn_str",
    )
    assert len(rows) == len(hellos)
    for row, ch in zip(rows, hellos, strict=True):
        sni, ciphers, exts, sigs, versions, legacy, alpn = row
        ints = [lambda f: [int(x, 0) for x in f.split("|") if x]][0]
        assert sni == ch.server_name
        assert ints(ciphers) == ch.cipher_suites
        assert ints(exts) == ch.extensions
        assert ints(sigs) == ch.signature_algorithms
        assert ints(versions) == ch.supported_versions
        assert int(legacy, 0) == ch.legacy_version
        # JA4 recomputed from tshark's own view of the hello agrees with ours
        first_alpn = alpn.split("|")[0].encode() if alpn else None
        assert (
            fp.ja4(
                int(legacy, 0),
                ints(ciphers),
                ints(exts),
                ints(versions) or None,
                first_alpn,
                ints(sigs),
            )[0]
            == ch.ja4
        )
    srows = tshark(tls_capture, "tls.handshake.type == 2", "tls.handshake.ciphersuite")
    shellos = [next(e for e in ev if isinstance(e, TlsServerHello)) for ev in per_flow]
    assert [int(r[0], 0) for r in srows] == [s.cipher_suite for s in shellos]
    crows = tshark(
        tls_capture, "tls.handshake.certificate", "x509sat.uTF8String", "x509af.serialNumber"
    )
    assert "infusion-gw.example" in crows[0][0]


def test_hello_split_over_records_and_segments(tls_capture: Path) -> None:
    """One ClientHello cut into 7-byte records (RFC 8446 §5.1 allows it), fed byte by byte."""
    fl = sorted(flows(tls_capture), key=lambda f: f.items[0][2])[0]
    stream = fl.stream(0)
    n = (stream[3] << 8) | stream[4]
    hs = stream[5 : 5 + n]
    recs = b"".join(
        b"\x16\x03\x01" + len(hs[i : i + 7]).to_bytes(2, "big") + hs[i : i + 7]
        for i in range(0, len(hs), 7)
    )
    d = TlsDissector(ctx_for())
    ev = [e for i in range(len(recs)) for e in d.feed(0, recs[i : i + 1], i)]
    whole = run(TlsDissector(ctx_for()), [(0, stream[: 5 + n], 0)])
    assert [e.ja4 for e in ev] == [e.ja4 for e in whole] and len(ev) == 1


TLS_PCAPS = [
    "443-curl.pcap",
    "443-firefox.pcap",
    "443-safari.pcap",
    "443-git.pcap",
    "tls_2_reasms.pcapng",
    "tls_verylong_certificate.pcap",
    "no_sni.pcap",
    "netflix.pcap",
    "1kxun.pcap",
    "google_chat.pcapng",
    "tls_ech.pcapng",
]


@pytest.mark.parametrize("name", TLS_PCAPS)
def test_ja4_against_ndpi(ndpi_pcaps: Path, name: str) -> None:
    """nDPI's JA4 values on real captures. Two fields of nDPI's JA4_a depart from the FoxIO
    spec: the SNI letter (nDPI: whether a host name is known; spec: whether the server_name
    extension is present) and the ALPN characters (nDPI: the first two, "ht" for http/1.1;
    spec: first and last, "h1"). Those two are checked against the spec rule; the version,
    the counts and both hashes must equal nDPI's."""
    result = (ndpi_pcaps.parent / "result" / f"{name}.out").read_text("latin-1")
    addr = r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):(\d+)"
    expected = {}
    for a, p, b, q, j in re.findall(f"TCP {addr} <-> {addr} .*?\\[JA4: ([^\\]]+)\\]", result):
        expected[(a.strip("[]"), int(p))] = expected[(b.strip("[]"), int(q))] = j
    checked = 0
    for fl in flows(ndpi_pcaps / name):
        want = expected.get(fl.client)
        if want is None:
            continue
        ev = run(TlsDissector(ctx_for(fl.endpoints)), fl.items, strict=False)
        ch = next(e for e in ev if isinstance(e, TlsClientHello))
        got = ch.ja4
        assert got[:3] + got[4:8] + got[10:] == want[:3] + want[4:8] + want[10:]
        assert got[3] == ("d" if 0 in ch.extensions else "i")
        first = ch.alpn[0] if ch.alpn else ""
        assert got[8:10] == (first[0] + first[-1] if first else "00")
        checked += 1
    assert checked >= 1


def test_ndpi_certificate_fields(ndpi_pcaps: Path) -> None:
    ev = [
        e
        for fl in flows(ndpi_pcaps / "443-curl.pcap")
        for e in run(TlsDissector(ctx_for(fl.endpoints)), fl.items, strict=False)
    ]
    c = next(e for e in ev if isinstance(e, TlsCertificate) and e.chain_index == 0)
    # nDPI's expected output: Subject CN=www.ntop.org, Issuer Let's Encrypt Authority X3,
    # validity 2019-12-17 01:17:28 - 2020-03-16 01:17:28
    assert c.subject_cn == "www.ntop.org" and c.issuer_cn == "Let's Encrypt Authority X3"
    assert c.not_before == dt.datetime(2019, 12, 17, 1, 17, 28, tzinfo=dt.UTC)
    assert c.not_after == dt.datetime(2020, 3, 16, 1, 17, 28, tzinfo=dt.UTC)
    assert not c.self_signed


def test_not_tls_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        TlsDissector(ctx_for()).feed(0, b"GET / HTTP/1.1\r\n\r\n", 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=400)), max_size=10))
def test_fuzz_any_bytes(chunks: list[tuple[int, bytes]]) -> None:
    d = TlsDissector(ctx_for())
    try:
        for direction, data in chunks:
            d.feed(direction, b"\x16\x03\x01" + data if data[:1] == b"\x00" else data, 1)
        d.close(2)
    except ParseError:
        pass
    assert all(len(s.records) <= 5 + (1 << 14) + 2048 + 400 for s in d.sides)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_hellos(tls_capture: Path, data: st.DataObject) -> None:
    fl = sorted(flows(tls_capture), key=lambda f: f.items[0][2])[0]
    for direction in (0, 1):
        buf = bytearray(fl.stream(direction)[:3000])
        for _ in range(data.draw(st.integers(1, 6))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
        d = TlsDissector(ctx_for())
        cut = data.draw(st.integers(0, len(buf)))
        try:
            d.feed(direction, bytes(buf[:cut]), 1)
            d.feed(direction, bytes(buf[cut:]), 2)
        except ParseError:
            pass
